/* checkpoint_chunks.c - writing a checkpoint tensor chunk by chunk with
 * larch's own Fletcher32 checksums (ckpt_internal.h).
 *
 * HDF5's filter pipeline computes Fletcher32 one 16-bit word at a time and
 * copies every chunk through it; parallel HDF5 can only write filtered
 * datasets collectively, which Open MPI 4.1 does at a fraction of the disk's
 * speed (docs/checkpoints.md, "Speed"). The writer here creates the same
 * dataset (the same chunk shape, the Fletcher32 filter in its pipeline, so
 * every reader checks the checksums as before) and stores each chunk already
 * filtered with H5Dwrite_chunk: the chunk's bytes followed by the checksum
 * HDF5's filter would have appended, computed here in blocks the compiler
 * vectorizes. The files are the ones the filter would write, byte for byte
 * in every chunk (tests/test_checkpoint.c compares the two).
 */
#include "io/ckpt_internal.h"
#include "core/dispatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FLETCHER_BLOCK 256   /* 16-bit words per block: the weighted sum stays below 2^32 */

LARCH_HOT uint32_t larch_ckpt_fletcher32(const void *data, size_t bytes)
{
    /* HDF5's Fletcher32 reads big-endian 16-bit words w_1..w_n and sums
     * s1 = sum w_i and s2 = sum of the prefix sums, each modulo 65535 in
     * one's-complement form: a sum that is a nonzero multiple of 65535 is
     * 0xffff, and 0 only for all-zero data (its partial reductions
     * (x & 0xffff) + (x >> 16) keep a positive sum positive). Exact sums
     * modulo 65535 and that rule give its value whatever its blocking. */
    const uint8_t *p = data;
    size_t n = bytes / 2;
    uint64_t s1 = 0, s2 = 0;
    uint32_t any = 0;
    while (n) {
        size_t len = n < FLETCHER_BLOCK ? n : FLETCHER_BLOCK;
        uint32_t a = 0, b = 0, nz = 0;
        /* within the block: s2 gains len * s1_before + sum (len - i) w_i */
        for (size_t i = 0; i < len; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t w = (uint16_t)((h >> 8) | (h << 8));   /* the big-endian word */
            a += w;
            b += (uint32_t)(len - i) * w;
            nz |= w;
        }
        s2 = (s2 + (uint64_t)len * s1 + b) % 65535u;
        s1 = (s1 + a) % 65535u;
        any |= nz;
        p += 2 * len;
        n -= len;
    }
    if (!any) return 0;
    if (s1 == 0) s1 = 65535u;
    if (s2 == 0) s2 = 65535u;
    return (uint32_t)(s2 << 16) | (uint32_t)s1;
}

void larch_ckpt_chunk_dims(int ndim, const hsize_t *dims, hsize_t *chunk)
{
    for (int k = 0; k < ndim; k++) chunk[k] = dims[k];
    for (int k = 0; k < ndim; k++) {
        hsize_t rest = 1;
        for (int j = k + 1; j < ndim; j++) rest *= dims[j];
        if (rest <= LARCH_CKPT_CHUNK_FLOATS) {
            hsize_t rows = LARCH_CKPT_CHUNK_FLOATS / rest;
            chunk[k] = dims[k] < rows ? dims[k] : rows;
            break;
        }
        chunk[k] = 1;
    }
}

hid_t larch_ckpt_dataset_dcpl(int ndim, const hsize_t *dims)
{
    hsize_t chunk[CKPT_MAX_DIMS];
    larch_ckpt_chunk_dims(ndim, dims, chunk);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0) return -1;
    if (H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0 ||
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0) {
        H5Pclose(dcpl);
        return -1;
    }
    return dcpl;
}

larch_status larch_ckpt_write_chunked(hid_t file, hid_t lcpl, const char *path, const char *dpath, int ndim,
                                      const hsize_t *dims, const float *src)
{
    char why[256] = "";
    hsize_t chunk[CKPT_MAX_DIMS], grid[CKPT_MAX_DIMS], at[CKPT_MAX_DIMS] = {0}, off[CKPT_MAX_DIMS];
    larch_ckpt_chunk_dims(ndim, dims, chunk);
    size_t per = 1, n_chunks = 1;
    for (int k = 0; k < ndim; k++) {
        per *= (size_t)chunk[k];
        grid[k] = (dims[k] + chunk[k] - 1) / chunk[k];
        n_chunks *= (size_t)grid[k];
    }
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = larch_ckpt_dataset_dcpl(ndim, dims);
    hid_t d = space < 0 || dcpl < 0 ? -1 : H5Dcreate2(file, dpath, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT);
    unsigned char *buf = malloc(per * sizeof(float) + 4);
    int rc = d < 0 || !buf ? -1 : 0;
    if (d < 0) larch_ckpt_h5_why(why, sizeof why);
    else if (!buf) snprintf(why, sizeof why, "out of memory for a chunk buffer");
    /* Chunks of whole trailing dimensions (larch_ckpt_chunk_dims): a chunk's
     * elements inside the tensor are one contiguous run of the row-major
     * tensor, the chunk's first elements; an edge chunk is stored whole, its
     * rest zero. Chunks go in row-major grid order, so the runs follow each
     * other. */
    size_t flat = 0;
    for (size_t c = 0; rc == 0 && c < n_chunks; c++) {
        size_t inside = 1;
        for (int k = 0; k < ndim; k++) {
            off[k] = at[k] * chunk[k];
            hsize_t left = dims[k] - off[k];
            inside *= (size_t)(left < chunk[k] ? left : chunk[k]);
        }
        memcpy(buf, src + flat, inside * sizeof(float));
        if (inside < per) memset(buf + inside * sizeof(float), 0, (per - inside) * sizeof(float));
        uint32_t sum = larch_ckpt_fletcher32(buf, per * sizeof(float));
        unsigned char *tail = buf + per * sizeof(float);   /* stored little-endian, as HDF5's filter does */
        tail[0] = (unsigned char)sum;
        tail[1] = (unsigned char)(sum >> 8);
        tail[2] = (unsigned char)(sum >> 16);
        tail[3] = (unsigned char)(sum >> 24);
        if (H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, per * sizeof(float) + 4, buf) < 0) {
            larch_ckpt_h5_why(why, sizeof why);
            rc = -1;
        }
        flat += inside;
        for (int k = ndim - 1; k >= 0; k--) {        /* next grid position */
            if (++at[k] < grid[k]) break;
            at[k] = 0;
        }
    }
    free(buf);
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    if (rc) return larch_fail(LARCH_ERR_IO, "writing %s of %s: %s", dpath, path, why);
    return LARCH_OK;
}

int larch_ckpt_read_chunked(hid_t d, int ndim, const hsize_t *dims, float *dst)
{
    /* only the datasets larch writes: its chunk shape, Fletcher32 alone */
    hsize_t chunk[CKPT_MAX_DIMS], have[CKPT_MAX_DIMS], grid[CKPT_MAX_DIMS], at[CKPT_MAX_DIMS] = {0}, off[CKPT_MAX_DIMS];
    larch_ckpt_chunk_dims(ndim, dims, chunk);
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) return 1;
    int ok = H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, CKPT_MAX_DIMS, have) == ndim &&
             H5Pget_nfilters(dcpl) == 1;
    for (int k = 0; ok && k < ndim; k++) ok = have[k] == chunk[k];
    if (ok) {
        unsigned flags = 0, conf = 0;
        size_t nelm = 0;
        char name[64];
        ok = H5Pget_filter2(dcpl, 0, &flags, &nelm, NULL, 0, name, &conf) == H5Z_FILTER_FLETCHER32;
    }
    H5Pclose(dcpl);
    if (!ok) return 1;
    size_t per = 1, n_chunks = 1;
    for (int k = 0; k < ndim; k++) {
        per *= (size_t)chunk[k];
        grid[k] = (dims[k] + chunk[k] - 1) / chunk[k];
        n_chunks *= (size_t)grid[k];
    }
    size_t bytes = per * sizeof(float) + 4, flat = 0;
    unsigned char *buf = malloc(bytes);
    if (!buf) return 1;
    int rc = 0;
    for (size_t c = 0; rc == 0 && c < n_chunks; c++) {
        size_t inside = 1;
        for (int k = 0; k < ndim; k++) {
            off[k] = at[k] * chunk[k];
            hsize_t left = dims[k] - off[k];
            inside *= (size_t)(left < chunk[k] ? left : chunk[k]);
        }
        hsize_t stored = 0;
        uint32_t mask = 1;
        if (H5Dget_chunk_storage_size(d, off, &stored) < 0 || stored != bytes ||
            H5Dread_chunk(d, H5P_DEFAULT, off, &mask, buf) < 0 || mask != 0) {
            H5Eclear2(H5E_DEFAULT);
            rc = 1;
            break;
        }
        uint32_t sum = larch_ckpt_fletcher32(buf, per * sizeof(float));
        const unsigned char *t = buf + per * sizeof(float);
        if (sum != ((uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24)) {
            rc = 1;              /* HDF5's read says what is wrong (and accepts its old byte order) */
            break;
        }
        memcpy(dst + flat, buf, inside * sizeof(float));
        flat += inside;
        for (int k = ndim - 1; k >= 0; k--) {
            if (++at[k] < grid[k]) break;
            at[k] = 0;
        }
    }
    free(buf);
    return rc;
}
