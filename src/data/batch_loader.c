/* batch_loader.c - the sharded, deterministic, prefetching batch loader
 * (contract in include/larch/data.h).
 *
 * The global order of epoch e is one permutation drawn from the stream
 * (seed, LARCH_RNG_SHUFFLE, e, 0). Global batch s covers positions
 * [s G, (s + 1) G) of that order; rank r of `world` takes the contiguous
 * slice [r b, (r + 1) b), b = G / world (an incomplete last batch is split
 * as evenly as possible). A sample's augmentation (crop offset, flip) comes
 * from (seed, LARCH_RNG_AUGMENT, e, sample index), so the batches of every
 * rank count are slices of the same global batch, bit for bit. Labels and
 * float targets are gathered in the same order as the samples.
 *
 * With prefetch, one worker thread assembles the next batch into the back
 * buffer while the caller trains on the front one (double buffering under
 * a mutex and a condition variable). When the caller asks for a batch the
 * worker has not started yet (on a loaded machine the worker may wait long
 * for a core beside the BLAS threads), the caller assembles it itself
 * instead of waiting; the batch is the same either way. Buffers are
 * allocated once at create;
 * assembling a batch allocates nothing.
 */
#include "larch/data.h"
#include "larch/rng.h"
#include "core/dispatch.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct buf_t {
    larch_batch b;
    float *x;
    int32_t *labels[LARCH_MAX_TARGETS];   /* label set 0 and the derived sets */
    float *targets;                       /* float regression targets, or NULL */
    void *raw;                            /* out of core: the batch's samples as read */
    int epoch, step;
} buf_t;

struct larch_loader {
    const larch_dataset *ds;
    larch_loader_opts o;
    int local, steps;              /* max local batch, global batches per epoch */
    size_t dim;                    /* floats per sample                          */
    int nc;                        /* normalization channels: 1 or shape.c       */
    float *lut;                    /* (nc, 256): u8 pixel of channel c -> normalized value */
    float mean[LARCH_NORM_MAX], inv_std[LARCH_NORM_MAX];   /* f32: (x - mean) * inv_std */
    float pad[LARCH_NORM_MAX];     /* what a padded (black) pixel becomes, per channel */
    float norm_mean, norm_std;     /* one channel: the table's mean and std (u8_normalize) */
    int32_t *perm;                 /* order of perm_epoch (owned by the assembler) */
    int perm_epoch;
    /* class-balanced sampler: the samples of eligible class e are
     * members[start[e] .. start[e + 1]) (index order; cls[e] is its label),
     * reshuffled in place per epoch; deck is the classes' shuffled order */
    int n_elig, *start, *cls, *pos, *cycle;
    int32_t *deck;                 /* (2 C): the deck, then the current batch's classes */
    int32_t *sorted, *members;     /* (n): in index order, and the current passes */
    int epoch, step;               /* the batch the next call returns            */
    buf_t buf[2];
    int front;                     /* index of the buffer last returned          */
    /* prefetch */
    pthread_t thread;
    int threaded;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, busy, has_req, req_epoch, req_step, req_buf;
    int ready, ready_buf;
    /* out of core */
    size_t sample_bytes;
    larch_status io_status;        /* the first read error (sticky)              */
    char io_msg[4600];
};

static void make_balanced(larch_loader *l, int epoch);

/* The order of `epoch`: identity or a Fisher-Yates shuffle (or the
 * class-balanced order). */
static void make_perm(larch_loader *l, int epoch)
{
    if (l->o.sampler == LARCH_SAMPLER_BALANCED) { make_balanced(l, epoch); return; }
    int n = l->ds->n;
    for (int i = 0; i < n; i++) l->perm[i] = i;
    if (l->o.shuffle) {
        larch_rng r;
        larch_rng_init(&r, l->o.seed, LARCH_RNG_SHUFFLE, (uint32_t)epoch, 0);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)larch_rng_below(&r, (uint32_t)i + 1);
            int32_t t = l->perm[i]; l->perm[i] = l->perm[j]; l->perm[j] = t;
        }
    }
    l->perm_epoch = epoch;
}

/* Fisher-Yates shuffle of a[0..n) drawn from r. */
static void shuffle_ints(larch_rng *r, int32_t *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)larch_rng_below(r, (uint32_t)i + 1);
        int32_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

/* Class e's samples in a fresh order: pass `cycle` through them in epoch
 * `epoch`, from (seed, LARCH_RNG_SHUFFLE, epoch, 2 + cycle * n_elig + e)
 * (the ordinary sampler uses counter 0, the class deck 1). */
static void shuffle_class(larch_loader *l, int epoch, int e)
{
    int32_t *m = l->members + l->start[e];
    int n = l->start[e + 1] - l->start[e];
    memcpy(m, l->sorted + l->start[e], (size_t)n * sizeof *m);    /* a function of (epoch, cycle, e) alone */
    larch_rng r;
    larch_rng_init(&r, l->o.seed, LARCH_RNG_SHUFFLE, (uint32_t)epoch, 2u + (uint32_t)l->cycle[e] * (uint32_t)l->n_elig + (uint32_t)e);
    shuffle_ints(&r, m, n);
    l->pos[e] = 0;
}

/* The class-balanced order of `epoch` (include/larch/data.h): steps batches
 * of P classes x K samples into perm[0 .. steps G), class after class. The
 * P classes of a batch are the next ones of the deck (a shuffled list of
 * the eligible classes, reshuffled when used up); a class already in the
 * batch is swapped with the next one that is not, so a batch never holds a
 * class twice. The rest of perm keeps valid indices (out-of-core
 * read-ahead may look there). */
static void make_balanced(larch_loader *l, int epoch)
{
    const int P = l->o.classes_per_batch, K = l->o.samples_per_class, C = l->n_elig;
    for (int i = 0; i < l->ds->n; i++) l->perm[i] = i;
    for (int e = 0; e < C; e++) {                                   /* every epoch starts afresh */
        l->cycle[e] = 0;
        shuffle_class(l, epoch, e);
    }
    larch_rng deck_r;
    larch_rng_init(&deck_r, l->o.seed, LARCH_RNG_SHUFFLE, (uint32_t)epoch, 1);
    int dpos = C;                                                   /* empty: shuffle at first use */
    int32_t *out = l->perm;
    for (int s = 0; s < l->steps; s++) {
        int chosen = 0;
        int32_t *batch_cls = l->deck + C;                           /* this batch's classes */
        while (chosen < P) {
            if (dpos == C) {
                for (int e = 0; e < C; e++) l->deck[e] = e;
                shuffle_ints(&deck_r, l->deck, C);
                dpos = 0;
            }
            int j = dpos, dup = 1;
            while (dup) {                                           /* the first class not in this batch */
                dup = 0;
                for (int q = 0; q < chosen; q++) if (batch_cls[q] == l->deck[j]) { dup = 1; break; }
                if (dup) j++;
            }
            int32_t t = l->deck[dpos]; l->deck[dpos] = l->deck[j]; l->deck[j] = t;
            batch_cls[chosen++] = l->deck[dpos++];
        }
        for (int q = 0; q < P; q++) {
            int e = batch_cls[q];
            if (l->pos[e] + K > l->start[e + 1] - l->start[e]) {   /* used up: the next pass through the class */
                l->cycle[e]++;
                shuffle_class(l, epoch, e);
            }
            memcpy(out, l->members + l->start[e] + l->pos[e], (size_t)K * sizeof *out);
            l->pos[e] += K;
            out += K;
        }
    }
    l->perm_epoch = epoch;
}

/* Out of core: reads the samples idx[0..n) of the file into raw, then
 * advises the kernel to read ahead the rows of `next` (n_next of them, the
 * batch after this one). A failure is kept in l->io_status. */
static void read_samples(larch_loader *l, const int32_t *idx, int n, void *raw, const int32_t *next, int n_next)
{
    const larch_dataset *ds = l->ds;
    const size_t sb = l->sample_bytes;
    for (int j = 0; j < n; j++) {
        int64_t row = ds->rows ? ds->rows[idx[j]] : idx[j];
        char *dst = (char *)raw + (size_t)j * sb;
        off_t at = (off_t)(ds->ooc_offset + row * (int64_t)sb);
        size_t got = 0;
        while (got < sb) {
            ssize_t r = pread(ds->ooc_fd, dst + got, sb - got, at + (off_t)got);
            if (r > 0) { got += (size_t)r; continue; }
            if (r < 0 && errno == EINTR) continue;
            if (!l->io_status) {
                l->io_status = LARCH_ERR_IO;
                snprintf(l->io_msg, sizeof l->io_msg, "%s: reading sample %lld: %s", ds->source, (long long)row,
                         r < 0 ? strerror(errno) : "the file ended (truncated while training?)");
            }
            memset(dst, 0, sb);
            break;
        }
    }
    for (int j = 0; j < n_next; j++) {
        int64_t row = ds->rows ? ds->rows[next[j]] : next[j];
        posix_fadvise(ds->ooc_fd, (off_t)(ds->ooc_offset + row * (int64_t)sb), (off_t)sb, POSIX_FADV_WILLNEED);
    }
}

/* A random resized crop of the sample (u or f), flipped with p = 0.5 when
 * o.flip, normalized into dst (h, w, c); draws from r. */
static void resized_crop(const larch_loader *l, larch_rng *r, const uint8_t *u, const float *f, float *restrict dst)
{
    const larch_dataset *ds = l->ds;
    const int H = ds->shape.h, W = ds->shape.w, C = ds->shape.c, cs = l->nc == 1 ? 0 : 1;
    const double area = (double)H * W, lr0 = log(l->o.ratio_lo), lr1 = log(l->o.ratio_hi);
    double ch = H, cw = W, y0 = 0, x0 = 0;
    int found = 0;
    for (int t = 0; t < 10 && !found; t++) {               // torchvision's ten tries
        double a = area * (l->o.scale_lo + (l->o.scale_hi - l->o.scale_lo) * larch_rng_uniform(r));
        double ar = exp(lr0 + (lr1 - lr0) * larch_rng_uniform(r));
        double w = round(sqrt(a * ar)), h = round(sqrt(a / ar));
        if (w >= 1 && h >= 1 && w <= W && h <= H) {
            y0 = floor(larch_rng_uniform(r) * (H - h + 1));
            x0 = floor(larch_rng_uniform(r) * (W - w + 1));
            ch = h;
            cw = w;
            found = 1;
        }
    }
    if (!found) {                                           // the centre crop of the clamped ratio
        double ar = (double)W / H;
        if (ar < l->o.ratio_lo) { cw = W; ch = round(W / l->o.ratio_lo); }
        else if (ar > l->o.ratio_hi) { ch = H; cw = round(H * l->o.ratio_hi); }
        if (ch > H) ch = H;
        if (cw > W) cw = W;
        y0 = floor((H - ch) / 2);
        x0 = floor((W - cw) / 2);
    }
    int flip = l->o.flip ? (int)(larch_rng_u32(r) & 1u) : 0;
    for (int y = 0; y < H; y++) {
        double sy = y0 + (y + 0.5) * ch / H - 0.5;         // centre-aligned source row
        if (sy < y0) sy = y0;
        if (sy > y0 + ch - 1) sy = y0 + ch - 1;
        int iy = (int)sy, iy1 = iy + 1 < y0 + ch ? iy + 1 : iy;
        float fy = (float)(sy - iy);
        for (int x = 0; x < W; x++) {
            int xo = flip ? W - 1 - x : x;
            double sx = x0 + (xo + 0.5) * cw / W - 0.5;
            if (sx < x0) sx = x0;
            if (sx > x0 + cw - 1) sx = x0 + cw - 1;
            int ix = (int)sx, ix1 = ix + 1 < x0 + cw ? ix + 1 : ix;
            float fx = (float)(sx - ix);
            size_t a00 = ((size_t)iy * W + ix) * C, a01 = ((size_t)iy * W + ix1) * C;
            size_t a10 = ((size_t)iy1 * W + ix) * C, a11 = ((size_t)iy1 * W + ix1) * C;
            float *d = dst + ((size_t)y * W + x) * C;
            for (int c = 0; c < C; c++) {
                float v00 = u ? u[a00 + c] : f[a00 + c], v01 = u ? u[a01 + c] : f[a01 + c];
                float v10 = u ? u[a10 + c] : f[a10 + c], v11 = u ? u[a11 + c] : f[a11 + c];
                float v = (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11);
                d[c] = ((u ? v / 255.0f : v) - l->mean[c * cs]) * l->inv_std[c * cs];
            }
        }
    }
}

/* n pixels of one channel, normalized: (u / 255 - mean) / std in float,
 * the operations of the table l->lut in the same order, so every clone
 * (src/core/dispatch.h) writes the table's values bit for bit
 * (tests/test_loader.c checks all 256). Vectorized it is about twice as
 * fast as the table lookup, which the compiler does not vectorize. */
static LARCH_HOT void u8_normalize(const uint8_t *restrict u, float *restrict dst, size_t n, float mean, float std)
{
    for (size_t j = 0; j < n; j++) dst[j] = ((float)u[j] / 255.0f - mean) / std;
}

/* One sample (its pixels u or features f), normalized and augmented, into
 * dst (h, w, c); idx keys its augmentation. */
static void put_sample(const larch_loader *l, int idx, const uint8_t *u, const float *f, int epoch, float *restrict dst)
{
    const larch_dataset *ds = l->ds;
    const int H = ds->shape.h, W = ds->shape.w, C = ds->shape.c;
    if (!l->o.flip && !l->o.crop_pad && !l->o.resized_crop) {
        if (l->nc == 1) {
            const float mean = l->mean[0], inv_std = l->inv_std[0];
            if (u) u8_normalize(u, dst, l->dim, l->norm_mean, l->norm_std);
            else for (size_t j = 0; j < l->dim; j++) dst[j] = (f[j] - mean) * inv_std;
            return;
        }
        for (size_t p = 0; p < l->dim; p += (size_t)C)                 // per pixel, per channel
            for (int c = 0; c < C; c++)
                dst[p + c] = u ? l->lut[c * 256 + u[p + c]] : (f[p + c] - l->mean[c]) * l->inv_std[c];
        return;
    }
    const int cs = l->nc == 1 ? 0 : 1;                                  // channel stride of the tables
    larch_rng r;
    larch_rng_init(&r, l->o.seed, LARCH_RNG_AUGMENT, (uint32_t)epoch, (uint32_t)idx);
    if (l->o.resized_crop) { resized_crop(l, &r, u, f, dst); return; }
    int p = l->o.crop_pad;
    int oy = p ? (int)larch_rng_below(&r, 2u * p + 1) - p : 0;      // crop offset in [-p, p]
    int ox = p ? (int)larch_rng_below(&r, 2u * p + 1) - p : 0;
    int flip = l->o.flip ? (int)(larch_rng_u32(&r) & 1u) : 0;       // mirror with p = 0.5
    for (int y = 0; y < H; y++) {
        int sy = y + oy;
        for (int x = 0; x < W; x++) {
            int sx = (flip ? W - 1 - x : x) + ox;
            float *d = dst + ((size_t)y * W + x) * C;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W) {             // zero padding (a black pixel)
                for (int c = 0; c < C; c++) d[c] = l->pad[c * cs];
                continue;
            }
            size_t s = ((size_t)sy * W + sx) * C;
            if (u) for (int c = 0; c < C; c++) d[c] = l->lut[c * cs * 256 + u[s + c]];
            else for (int c = 0; c < C; c++) d[c] = (f[s + c] - l->mean[c * cs]) * l->inv_std[c * cs];
        }
    }
}

/* This rank's part of global batch (epoch, step) into b. */
static void assemble(larch_loader *l, int epoch, int step, buf_t *b)
{
    if (l->perm_epoch != epoch) make_perm(l, epoch);
    const int G = l->o.global_batch, n = l->ds->n;
    int start = step * G, m = n - start < G ? n - start : G;        // samples in this global batch
    int lo, cnt;
    if (m == G) { lo = l->o.rank * l->local; cnt = l->local; }
    else {                                                          // incomplete: split evenly
        int base = m / l->o.world, extra = m % l->o.world;
        lo = l->o.rank * base + (l->o.rank < extra ? l->o.rank : extra);
        cnt = base + (l->o.rank < extra);
    }
    const larch_dataset *ds = l->ds;
    if (ds->ooc) {                                                  /* this rank's samples from the file */
        int nstart = start + G, nm = n - nstart < G ? n - nstart : G, nlo = lo, ncnt = cnt;
        if (nm < G) { nlo = 0; ncnt = 0; }                          /* no read-ahead into an incomplete batch */
        if (nstart >= n) ncnt = 0;
        read_samples(l, l->perm + start + lo, cnt, b->raw, ncnt ? l->perm + nstart + nlo : NULL, ncnt);
    }
    for (int j = 0; j < cnt; j++) {
        int idx = l->perm[start + lo + j];
        const uint8_t *u = ds->u8 ? ds->u8 + (size_t)idx * l->dim
                         : ds->ooc && ds->ooc_u8 ? (const uint8_t *)b->raw + (size_t)j * l->dim : NULL;
        const float *f = ds->f32 ? ds->f32 + (size_t)idx * l->dim
                       : ds->ooc && !ds->ooc_u8 ? (const float *)b->raw + (size_t)j * l->dim : NULL;
        put_sample(l, idx, u, f, epoch, b->x + (size_t)j * l->dim);
        b->labels[0][j] = l->ds->labels[idx];
        for (int t = 0; t < l->ds->n_derived; t++) b->labels[t + 1][j] = l->ds->derived[t][idx];
        if (b->targets)
            memcpy(b->targets + (size_t)j * l->ds->n_targets, l->ds->targets + (size_t)idx * l->ds->n_targets,
                   (size_t)l->ds->n_targets * sizeof(float));
    }
    b->b.n = cnt;
    b->b.sample0 = (uint32_t)lo;
    b->epoch = epoch;
    b->step = step;
}

static void *worker(void *arg)
{
    larch_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !l->has_req) pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) break;
        int e = l->req_epoch, s = l->req_step, bi = l->req_buf;
        l->has_req = 0;
        l->busy = 1;
        pthread_mutex_unlock(&l->mu);
        assemble(l, e, s, &l->buf[bi]);
        pthread_mutex_lock(&l->mu);
        l->busy = 0;
        l->ready = 1;
        l->ready_buf = bi;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int larch_loader_steps(const larch_loader *l) { return l->steps; }

/* The class-balanced sampler's tables, and the checks that it can fill
 * every batch: P x K = global batch, every class with samples has K of
 * them, at least P such classes. */
static larch_status balanced_setup(larch_loader *l)
{
    const larch_dataset *ds = l->ds;
    const int P = l->o.classes_per_batch, K = l->o.samples_per_class, nc = ds->n_classes;
    if (P < 1 || K < 1 || (long)P * K != l->o.global_batch)
        return larch_fail(LARCH_ERR_INVALID, "class-balanced sampler: %d classes x %d samples per class is not the batch "
                          "size %d (the global batch must be classes_per_batch x samples_per_class)", P, K, l->o.global_batch);
    if (nc < 1) return larch_fail(LARCH_ERR_INVALID, "class-balanced sampler: dataset %s has no classes", ds->name);
    int *count = calloc((size_t)nc, sizeof *count);
    if (!count) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    for (int i = 0; i < ds->n; i++) {
        if (ds->labels[i] < 0 || ds->labels[i] >= nc) {
            int lb = ds->labels[i];
            free(count);
            return larch_fail(LARCH_ERR_INVALID, "class-balanced sampler: sample %d of %s has label %d outside 0..%d", i,
                              ds->name, lb, nc - 1);
        }
        count[ds->labels[i]]++;
    }
    int elig = 0;
    for (int c = 0; c < nc; c++) {
        if (count[c] > 0 && count[c] < K) {
            int have = count[c];
            free(count);
            return larch_fail(LARCH_ERR_INVALID, "class-balanced sampler: class %d of %s has %d sample(s), fewer than the %d "
                              "samples per class a batch takes (lower data.samples_per_class, or leave the class out "
                              "with data.classes)", c, ds->name, have, K);
        }
        elig += count[c] > 0;
    }
    if (elig < P) {
        free(count);
        return larch_fail(LARCH_ERR_INVALID, "class-balanced sampler: %d classes per batch but %s has samples of only %d "
                          "class(es)", P, ds->name, elig);
    }
    l->n_elig = elig;
    l->start = malloc((size_t)(elig + 1) * sizeof *l->start);
    l->cls = malloc((size_t)elig * sizeof *l->cls);
    l->pos = calloc((size_t)elig, sizeof *l->pos);
    l->cycle = calloc((size_t)elig, sizeof *l->cycle);
    l->deck = malloc(2 * (size_t)elig * sizeof *l->deck);
    l->sorted = malloc((size_t)ds->n * sizeof *l->sorted);
    l->members = malloc((size_t)ds->n * sizeof *l->members);
    int *slot = malloc((size_t)nc * sizeof *slot);             /* class -> its next place in sorted */
    if (!l->start || !l->cls || !l->pos || !l->cycle || !l->deck || !l->sorted || !l->members || !slot) {
        free(count);
        free(slot);
        return larch_fail(LARCH_ERR_NOMEM, "out of memory for the class-balanced sampler");
    }
    l->start[0] = 0;
    for (int c = 0, e = 0; c < nc; c++) {
        if (!count[c]) { slot[c] = -1; continue; }
        l->cls[e] = c;
        slot[c] = l->start[e];
        l->start[e + 1] = l->start[e] + count[c];
        e++;
    }
    for (int i = 0; i < ds->n; i++) l->sorted[slot[ds->labels[i]]++] = i;   /* index order within a class */
    free(count);
    free(slot);
    return LARCH_OK;
}

larch_status larch_loader_create(larch_loader **out, const larch_dataset *ds, const larch_loader_opts *o)
{
    *out = NULL;
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return larch_fail(LARCH_ERR_INVALID, "loader: rank %d is not within a world of %d", o->rank, o->world);
    if (o->global_batch < 1 || o->global_batch % o->world != 0)
        return larch_fail(LARCH_ERR_INVALID, "batch size %d is not divisible by the %d ranks (every rank takes an equal part)",
                          o->global_batch, o->world);
    if (ds->n < 1) return larch_fail(LARCH_ERR_INVALID, "loader: dataset %s is empty", ds->name);
    if (o->resized_crop && (o->crop_pad || !(o->scale_lo > 0) || o->scale_lo > o->scale_hi || o->scale_hi > 1 ||
                            !(o->ratio_lo > 0) || o->ratio_lo > o->ratio_hi))
        return larch_fail(LARCH_ERR_INVALID, "random resized crop: scale [%g, %g] must lie in (0, 1] and ratio [%g, %g] be "
                          "positive, both ascending, without crop_pad", o->scale_lo, o->scale_hi, o->ratio_lo, o->ratio_hi);
    if (ds->n_norm > 1 && (ds->n_norm != ds->shape.c || ds->n_norm > LARCH_NORM_MAX))
        return larch_fail(LARCH_ERR_SHAPE, "loader: dataset %s has %d normalization values for %d channels", ds->name,
                          ds->n_norm, ds->shape.c);
    if (o->drop_last && ds->n < o->global_batch)
        return larch_fail(LARCH_ERR_INVALID, "batch size %d is larger than the %d samples of %s", o->global_batch, ds->n, ds->name);
    if (o->sampler != LARCH_SAMPLER_SHUFFLE && o->sampler != LARCH_SAMPLER_BALANCED)
        return larch_fail(LARCH_ERR_INVALID, "loader: sampler %d is neither shuffle (0) nor class-balanced (1)", o->sampler);
    larch_loader *l = calloc(1, sizeof *l);
    if (!l) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    l->ds = ds;
    l->o = *o;
    l->local = o->global_batch / o->world;
    l->steps = o->drop_last ? ds->n / o->global_batch : (ds->n + o->global_batch - 1) / o->global_batch;
    if (o->sampler == LARCH_SAMPLER_BALANCED) {
        larch_status s = balanced_setup(l);
        if (s) { larch_loader_free(l); return s; }
        l->steps = ds->n / o->global_batch;                     /* >= 1: the eligible classes hold P x K samples */
    }
    l->dim = larch_shape_size(ds->shape);
    l->nc = ds->n_norm > 1 ? ds->n_norm : 1;
    l->lut = malloc((size_t)l->nc * 256 * sizeof *l->lut);
    for (int c = 0; c < l->nc && l->lut; c++) {
        float mean = ds->n_norm ? ds->mean[c] : 0.0f, std = ds->n_norm ? ds->std[c] : 1.0f;
        for (int v = 0; v < 256; v++) l->lut[c * 256 + v] = ((float)v / 255.0f - mean) / std;   // (x / 255 - mean) / std
        l->mean[c] = mean;
        l->inv_std[c] = 1.0f / std;
        if (c == 0) { l->norm_mean = mean; l->norm_std = std; }
        l->pad[c] = ds->u8 || (ds->ooc && ds->ooc_u8) ? l->lut[c * 256] : (0.0f - mean) / std;
    }
    l->perm = malloc((size_t)ds->n * sizeof *l->perm);
    l->perm_epoch = -1;
    int ok = l->perm != NULL && l->lut != NULL;
    for (int i = 0; i < 2 && ok; i++) {
        l->buf[i].x = larch_aligned_alloc((size_t)l->local * l->dim * sizeof(float), "batch");
        l->buf[i].b.x = l->buf[i].x;
        ok = l->buf[i].x != NULL;
        if (ok && ds->ooc) {
            l->sample_bytes = l->dim * (ds->ooc_u8 ? 1 : sizeof(float));
            ok = (l->buf[i].raw = malloc((size_t)l->local * l->sample_bytes + 1)) != NULL;
        }
        for (int t = 0; t <= ds->n_derived && ok; t++) {
            l->buf[i].labels[t] = calloc((size_t)l->local, sizeof(int32_t));
            l->buf[i].b.label[t] = l->buf[i].labels[t];
            ok = l->buf[i].labels[t] != NULL;
        }
        if (ok && ds->n_targets > 0 && ds->targets) {
            l->buf[i].targets = larch_aligned_alloc((size_t)l->local * ds->n_targets * sizeof(float), "batch targets");
            l->buf[i].b.target[0] = l->buf[i].targets;
            l->buf[i].b.target_dim[0] = ds->n_targets;
            ok = l->buf[i].targets != NULL;
        }
    }
    if (!ok) { larch_loader_free(l); return larch_fail(LARCH_ERR_NOMEM, "out of memory for loader buffers"); }
    if (o->prefetch) {
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        if (pthread_create(&l->thread, NULL, worker, l) != 0) {
            pthread_mutex_destroy(&l->mu);
            pthread_cond_destroy(&l->cv);
            l->o.prefetch = 0;                                      /* run without the thread */
        } else {
            l->threaded = 1;
        }
    }
    *out = l;
    return LARCH_OK;
}

void larch_loader_free(larch_loader *l)
{
    if (!l) return;
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    for (int i = 0; i < 2; i++) {
        free(l->buf[i].x);
        free(l->buf[i].targets);
        free(l->buf[i].raw);
        for (int t = 0; t < LARCH_MAX_TARGETS; t++) free(l->buf[i].labels[t]);
    }
    free(l->perm);
    free(l->lut);
    free(l->start);
    free(l->cls);
    free(l->pos);
    free(l->cycle);
    free(l->deck);
    free(l->sorted);
    free(l->members);
    free(l);
}

void larch_loader_seek(larch_loader *l, int epoch, int step)
{
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        while (l->busy) pthread_cond_wait(&l->cv, &l->mu);        /* let a running assembly finish */
        l->has_req = 0;
        l->ready = 0;
        pthread_mutex_unlock(&l->mu);
    }
    l->epoch = epoch + step / l->steps;
    l->step = step % l->steps;
}

const larch_batch *larch_loader_next(larch_loader *l, int *epoch_out, int *step_out)
{
    int e = l->epoch, s = l->step;
    int ne = s + 1 == l->steps ? e + 1 : e, ns = s + 1 == l->steps ? 0 : s + 1;
    buf_t *b;
    if (!l->threaded) {
        b = &l->buf[0];
        assemble(l, e, s, b);
    } else {
        pthread_mutex_lock(&l->mu);
        for (;;) {
            if (l->ready && l->buf[l->ready_buf].epoch == e && l->buf[l->ready_buf].step == s) break;
            if (!l->busy && l->has_req && l->req_epoch == e && l->req_step == s) {
                /* the worker has not started this batch (on a busy machine it
                 * may wait long for a core): assemble it here rather than wait */
                int bi = l->req_buf;
                l->has_req = 0;
                l->ready = 0;
                l->busy = 1;                                        /* the assembler's state is ours */
                pthread_mutex_unlock(&l->mu);
                assemble(l, e, s, &l->buf[bi]);
                pthread_mutex_lock(&l->mu);
                l->busy = 0;
                l->ready = 1;
                l->ready_buf = bi;
                break;
            }
            if (!l->busy && !l->has_req) {                          /* nothing on its way: ask for it */
                l->ready = 0;
                l->has_req = 1; l->req_epoch = e; l->req_step = s; l->req_buf = 1 - l->front;
                pthread_cond_broadcast(&l->cv);
            }
            pthread_cond_wait(&l->cv, &l->mu);
        }
        l->front = l->ready_buf;
        l->ready = 0;
        b = &l->buf[l->front];
        l->has_req = 1; l->req_epoch = ne; l->req_step = ns; l->req_buf = 1 - l->front;   /* prefetch the next */
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    l->epoch = ne;
    l->step = ns;
    if (epoch_out) *epoch_out = e;
    if (step_out) *step_out = s;
    return &b->b;
}

larch_status larch_loader_status(const larch_loader *l)
{
    if (!l->io_status) return LARCH_OK;
    return larch_fail(l->io_status, "%s", l->io_msg);
}
