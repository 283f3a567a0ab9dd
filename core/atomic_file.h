/* Crash-safe file replacement: write a temp file in the same directory,
 * fsync it, rename it over the target, fsync the directory. Readers see
 * the old or the new content, never a partial file. */
#ifndef T2_ATOMIC_FILE_H
#define T2_ATOMIC_FILE_H

#include <stddef.h>

#include "error.h"

/* Temp files are named ".<name>.tmp-XXXXXX" (hidden, cleaned by
 * t2_atomic_cleanup). *err_code: 507 when the disk is full (ENOSPC,
 * EDQUOT, EFBIG), 500 otherwise. */
int t2_write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
                         int *err_code, t2_err *err);
/* Removes leftover temp files of interrupted writes in dir. */
void t2_atomic_cleanup(const char *dir);
/* unlink + fsync of the directory. *err_code 404 when missing. */
int t2_remove_file_durable(const char *dir, const char *name, int *err_code, t2_err *err);
/* mkdir -p */
int t2_mkdir_p(const char *path, t2_err *err);

#endif
