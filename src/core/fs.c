/* fs.c - see fs.h. */
#include "core/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

larch_status larch_mkdir_p(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return larch_fail(LARCH_ERR_IO, "directory name too long: %s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return larch_fail(LARCH_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return larch_fail(LARCH_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
    return LARCH_OK;
}

larch_status larch_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return larch_fail(LARCH_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL)                /* some file systems cannot sync directories */
        return larch_fail(LARCH_ERR_IO, "cannot sync %s: %s", path, strerror(err));
    return LARCH_OK;
}
