/* GGUF model loading (core/model_gguf.c through t2_model_load, which takes
 * a path): the input is written to a memfd and loaded from /proc/self/fd. */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.gguf", 0);
    FUZZ_CHECK(fd >= 0);
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        FUZZ_CHECK(w > 0);
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    t2_model *m;
    t2_err err;
    if (t2_model_load(&m, path, &err) == 0)
        t2_model_free(m);
    close(fd);
    return 0;
}
