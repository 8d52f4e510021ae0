/* checkpoint_model.c - one model saved as a model-only checkpoint at a
 * path of the caller's choice (include/larch/checkpoint.h,
 * larch_ckpt_save_model): what `larch import` and the compression methods
 * write. larch_ckpt_save writes DIR/ckpt-<step>.h5, so the file goes into a
 * fresh directory beside the path and is renamed. */
#include "larch/checkpoint.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

larch_status larch_ckpt_save_model(const char *path, const larch_comm *c, const larch_model *m,
                                   const larch_node *cfg, const larch_ckpt_meta *keep)
{
    if (c->size != 1)
        return larch_fail(LARCH_ERR_INVALID, "writing %s: a model file is written by one process (not under mpirun -n %d)",
                          path, c->size);
    char dir[4200], written[4400], tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", path);
    if (snprintf(dir, sizeof dir, "%s/.larch-model-XXXXXX", dirname(tmp)) >= (int)sizeof dir)
        return larch_fail(LARCH_ERR_INVALID, "%s: path too long", path);
    if (!mkdtemp(dir)) return larch_fail(LARCH_ERR_IO, "%s: cannot create a directory beside it: %s", path, strerror(errno));
    larch_ckpt_meta meta;
    char lineage[64];
    if (keep) {
        meta = *keep;
    } else {
        memset(&meta, 0, sizeof meta);
        meta.world_size = 1;
        meta.global_batch = larch_cfg_int(larch_map_get(cfg, "train"), "batch_size");
        meta.steps_per_epoch = 1;
        larch_ckpt_new_run_id(meta.run_id, sizeof meta.run_id);
        snprintf(lineage, sizeof lineage, "%s:0", meta.run_id);
        meta.lineage = lineage;
    }
    size_t len = 0;
    char *text = NULL;
    FILE *mf = open_memstream(&text, &len);
    larch_status s = mf ? larch_cfg_write(cfg, mf) : larch_fail(LARCH_ERR_NOMEM, "config text");
    if (mf) fclose(mf);
    meta.config = text;
    written[0] = 0;
    if (!s) s = larch_ckpt_save(dir, 0, c, m, NULL, &meta, written, sizeof written);
    free(text);
    if (!s && rename(written, path) != 0) s = larch_fail(LARCH_ERR_IO, "cannot move %s to %s: %s", written, path, strerror(errno));
    if (s && written[0]) remove(written);
    rmdir(dir);
    return s;
}
