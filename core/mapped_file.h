/* Read-only memory mapping of a whole file (model weights, GGUF, experts). */
#ifndef T2_MAPPED_FILE_H
#define T2_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct t2_mapped_file {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
} t2_mapped_file;

int t2_mapped_file_open(t2_mapped_file *mf, const char *path, t2_err *err);
void t2_mapped_file_close(t2_mapped_file *mf);

#endif
