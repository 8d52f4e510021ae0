/* ckpt_quant.h - quantized tensors of checkpoints (/quant/<layer>/...,
 * checkpoint_quant.c), the hooks of checkpoint.c's save and load. */
#ifndef LARCH_IO_CKPT_QUANT_H
#define LARCH_IO_CKPT_QUANT_H

#include "larch/model.h"
#include <hdf5.h>

/* Save: whether parameter p is written under /quant instead of /params. */
int larch_ckpt_quant_replaces(const larch_model *m, const larch_param *p);
/* Save (the writing rank): every layer's /quant group. */
larch_status larch_ckpt_quant_write(hid_t file, hid_t lcpl, const char *path, const larch_model *m);
/* Load: whether the file holds parameter p under /quant (then /params lacks it). */
int larch_ckpt_quant_in_file(hid_t file, const larch_model *m, const larch_param *p);
/* Load: reads every /quant group into m (dequantized weights, int8 kernels,
 * QAT ranges); a group naming no layer of m is an error. */
larch_status larch_ckpt_quant_read(hid_t file, const char *path, larch_model *m);

/* model.init_from: when the file holds "<layer>/<tensor>" (src) under
 * /quant in 16 bits, dpath becomes its path (read as float through HDF5);
 * int8 is an error (its scales are needed); otherwise dpath is unchanged. */
larch_status larch_ckpt_quant_init_path(hid_t file, const char *path, const char *src, char *dpath, size_t len);

#endif
