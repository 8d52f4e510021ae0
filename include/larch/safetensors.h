/* larch/safetensors.h - reading and writing safetensors files, and moving
 * tensors between them (PyTorch names and layouts) and a larch model
 * (docs/backbones.md).
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON ({"<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin,
 * end]}, ..., "__metadata__": {...}}) and the raw little-endian data, the
 * offsets counting from the first byte after the header. larch reads and
 * writes F32, F16 and BF16 tensors; in memory they are always float32.
 *
 * Names: a rules file (larch_st_map_read) maps PyTorch names to larch's
 * "<layer>.<tensor>"; without one, the convention is PyTorch's module path
 * with '.' replaced by '_' as the layer name ("layer1.0.conv1.weight" ->
 * "layer1_0_conv1.weight"), and a batch-norm layer's weight and bias are
 * larch's scale and shift. Layouts: a conv2d weight is (out, in, kh, kw) in
 * PyTorch and (out, kh, kw, in) in larch; a dense weight is (out, in) in
 * both, its input columns reordered from PyTorch's (c, h, w) flattening to
 * larch's channels-last (h, w, c) when the dense layer reads a spatial map;
 * batch-norm running_mean/running_var are larch buffers. PyTorch's
 * num_batches_tracked is ignored.
 */
#ifndef LARCH_SAFETENSORS_H
#define LARCH_SAFETENSORS_H

#include <stdint.h>
#include <stdio.h>
#include "larch/error.h"
#include "larch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LARCH_ST_MAX_DIMS 8

typedef enum { LARCH_ST_F32, LARCH_ST_F16, LARCH_ST_BF16 } larch_st_dtype;

typedef struct larch_st_tensor {
    char *name;                       /* malloc'ed                              */
    larch_st_dtype dtype;             /* as stored in the file                  */
    int ndim;                         /* 0..LARCH_ST_MAX_DIMS                   */
    int64_t shape[LARCH_ST_MAX_DIMS];
    size_t count;                     /* product of shape                       */
    float *data;                      /* count floats (malloc'ed; NULL when 0)  */
} larch_st_tensor;

typedef struct larch_st_file {
    int n;
    larch_st_tensor *t;               /* in the order of their data in the file */
} larch_st_file;

/* Reads every tensor of a safetensors file, converted to float32. Errors
 * name the file and what is wrong: a file shorter than its header, a header
 * that is not JSON (json-c's message), a tensor entry without dtype, shape
 * or data_offsets, an unsupported dtype, offsets that do not match the
 * shape, data past the end of the file (truncated). Tensors named
 * "num_batches_tracked" or "*.num_batches_tracked" (PyTorch's int64
 * batch-norm counters) are skipped, whatever their dtype. */
LARCH_API larch_status larch_st_read(const char *path, larch_st_file *out);
LARCH_API void larch_st_free(larch_st_file *f);
/* Writes n tensors (their dtype field is ignored: every one is written as
 * `dtype`) in the given order, with an empty __metadata__ but for
 * {"format": "pt"}. Names must be unique. */
LARCH_API larch_status larch_st_write(const char *path, const larch_st_tensor *t, int n, larch_st_dtype dtype);
LARCH_API const char *larch_st_dtype_name(larch_st_dtype d);   /* "F32", "F16", "BF16" */

/* ---- name rules ----
 * A rules file has one rule a line: `TORCH_PATTERN LARCH_PATTERN`; '#'
 * starts a comment. A pattern is literal text with placeholders {1}..{9},
 * each matching one or more letters and digits; both sides use the same
 * placeholders, so a rule maps names both ways (import and export). A
 * LARCH_PATTERN of "-" drops the matching PyTorch tensors on import. The
 * first rule whose pattern matches the whole name applies; a name no rule
 * matches is an error. Example:
 *     layer{1}.{2}.bn{3}.weight   layer{1}_{2}_bn{3}.scale */
typedef struct larch_st_map larch_st_map;
LARCH_API larch_status larch_st_map_read(const char *path, larch_st_map **out);
/* The same from text (`where` names it in messages). */
LARCH_API larch_status larch_st_map_parse(const char *text, const char *where, larch_st_map **out);
LARCH_API void larch_st_map_free(larch_st_map *map);

/* Import: sets every parameter and buffer of the finalized model m from the
 * file's tensors, mapped by `map` (NULL: the convention above). Every model
 * tensor must be set exactly once and every file tensor used (or dropped by
 * a "-" rule, or a num_batches_tracked); otherwise, and on a shape that
 * does not fit, an error names both names and both shapes. On failure the
 * model's values are unspecified. One line per tensor goes to `log` (may
 * be NULL). */
LARCH_API larch_status larch_st_to_model(const larch_st_file *f, const char *file_name, const larch_st_map *map,
                                         larch_model *m, FILE *log);
/* Export: every parameter and buffer of m, in model order, under its
 * PyTorch name (map reversed, or the convention) and in PyTorch's layout.
 * *out holds *n tensors; free with larch_st_free. */
LARCH_API larch_status larch_st_from_model(const larch_model *m, const larch_st_map *map, larch_st_file *out);

#ifdef __cplusplus
}
#endif
#endif
