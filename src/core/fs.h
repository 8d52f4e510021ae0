/* fs.h - small file-system helpers shared by the trainer and checkpoints. */
#ifndef LARCH_CORE_FS_H
#define LARCH_CORE_FS_H

#include "larch/error.h"

/* mkdir -p; errors name the directory. */
larch_status larch_mkdir_p(const char *dir);
/* fsync of a file or directory by path (durability of a rename). */
larch_status larch_fsync_path(const char *path);

#endif
