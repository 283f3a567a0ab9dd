#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int io_code(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EFBIG ? 507 : 500;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int t2_write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
                         int *err_code, t2_err *err)
{
    char tmp[4096], dst[4096];
    if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", dir, name) >= (int)sizeof tmp ||
        snprintf(dst, sizeof dst, "%s/%s", dir, name) >= (int)sizeof dst) {
        *err_code = 500;
        return t2_err_set(err, "path too long");
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        *err_code = io_code(errno);
        return t2_err_set(err, "%s: cannot create a temporary file: %s", dir, strerror(errno));
    }
    int rc = write_all(fd, data, len);
    if (rc == 0)
        rc = fchmod(fd, 0644);
    if (rc == 0)
        rc = fsync(fd);
    int e = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc == 0 && rename(tmp, dst) != 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        *err_code = io_code(e);
        return t2_err_set(err, "%s: cannot write: %s", dst,
                          e == ENOSPC ? "disk full" : strerror(e));
    }
    fsync_dir(dir); /* best effort: the rename itself is atomic */
    return 0;
}

void t2_atomic_cleanup(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' && strstr(ent->d_name, ".tmp-")) {
            char p[4096];
            if (snprintf(p, sizeof p, "%s/%s", dir, ent->d_name) < (int)sizeof p)
                unlink(p);
        }
    }
    closedir(d);
}

int t2_remove_file_durable(const char *dir, const char *name, int *err_code, t2_err *err)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) {
        *err_code = 500;
        return t2_err_set(err, "path too long");
    }
    if (unlink(p) != 0) {
        *err_code = errno == ENOENT ? 404 : 500;
        return t2_err_set(err, "%s: cannot remove: %s", p, strerror(errno));
    }
    fsync_dir(dir);
    return 0;
}

int t2_mkdir_p(const char *path, t2_err *err)
{
    if (!*path)
        return t2_err_set(err, "empty directory name");
    char *p = strdup(path);
    if (!p)
        return t2_err_set(err, "out of memory");
    int rc = 0;
    /* each component in turn: "a", "a/b", ... up to the whole path */
    for (char *c = p + 1; rc == 0; c++) {
        bool end = *c == '\0';
        if (*c != '/' && !end)
            continue;
        *c = '\0';
        struct stat st;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = t2_err_set(err, "%s: cannot create directory: %s", p, strerror(errno));
        else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = t2_err_set(err, "%s: not a directory", p);
        if (end)
            break;
        *c = '/';
    }
    free(p);
    return rc;
}
