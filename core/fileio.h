/* Whole-file reads for small text files (config.json, index files). */
#ifndef T2_FILEIO_H
#define T2_FILEIO_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* Reads path into a malloc'd NUL-terminated buffer; fails for files
 * larger than max_bytes. */
int t2_read_file(const char *path, size_t max_bytes, char **out, size_t *len, t2_err *err);
bool t2_file_exists(const char *path);
/* dir + "/" + name into a malloc'd string (NULL on out of memory). */
char *t2_path_join(const char *dir, const char *name);

#endif
