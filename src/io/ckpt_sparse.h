/* ckpt_sparse.h - the switch of checkpoint_masks.c (without hdf5.h, for
 * callers outside the checkpoint files): whether tensors at least half zero
 * are stored deflated (on by default). Off writes every tensor dense, which
 * the `prune` compression method uses to measure the dense size of the file
 * it writes. Returns the previous setting; not thread-safe (one process
 * writing). */
#ifndef LARCH_IO_CKPT_SPARSE_H
#define LARCH_IO_CKPT_SPARSE_H
int larch_ckpt_sparse_storage(int on);
#endif
