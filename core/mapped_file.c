#include "mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int t2_mapped_file_open(t2_mapped_file *mf, const char *path, t2_err *err)
{
    mf->data = NULL;
    mf->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return t2_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return t2_err_set(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return t2_err_set(err, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return t2_err_set(err, "%s: cannot mmap: %s", path, strerror(e));
        }
        mf->data = p;
        mf->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void t2_mapped_file_close(t2_mapped_file *mf)
{
    if (mf->data)
        munmap((void *)mf->data, mf->size);
    mf->data = NULL;
    mf->size = 0;
}
