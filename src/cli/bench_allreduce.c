/* bench_allreduce.c - `larch bench allreduce`: the time to sum a float
 * buffer over all ranks, for sizes from 4 KiB to 256 MiB and for the
 * gradient buffers of the given configs, two ways in the same run:
 *   mpi:   one MPI_Allreduce of the whole buffer (the bare reference);
 *   larch: larch's gradient path: the buffer cut into buckets of
 *          --bucket-mb MiB (the first --first-mb), each a non-blocking
 *          allreduce started back to back, then one wait (what a step pays
 *          when backward hides nothing).
 * Times are the mean over iterations, the slowest rank's. Bandwidths as
 * nccl-tests define them: algbw = bytes / time, busbw = algbw * 2 (n - 1) / n
 * (the bytes each rank's links carry in a ring allreduce).
 * With --compress fp16|bf16 the buffers hold Gaussian values of standard
 * deviation --scale (different on each rank), and each size also reports
 * the compressed path's time and its error against the float sum:
 * rel_err = ||compressed - exact|| / ||exact|| and the worst elementwise
 * relative error among values above 1e-3 of the largest.
 * Output: one JSON line per size on rank 0's stdout; a table on stderr.
 */
#include "cli/cli.h"
#include "larch/larch.h"
#include "larch/train.h"
#include "larch/rng.h"
#include "core/half.h"

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 64

static void usage(FILE *f)
{
    fprintf(f, "usage: mpirun -n N larch bench allreduce [CONFIG ...] [--min-kib K] [--max-mib M] [--bucket-mb B]\n"
               "                                           [--first-mb F] [--iters I]\n"
               "  CONFIG      also time the gradient buffer of each config's model\n"
               "  --min-kib   smallest size (default 4), sizes grow 4x up to --max-mib (default 256)\n"
               "  --bucket-mb bucket size of larch's path (default 25, dist.bucket_mb)\n"
               "  --first-mb  first bucket (default 1, dist.first_bucket_mb)\n"
               "  --iters     timed iterations per size (default: about 1 GiB of traffic, 5..200)\n"
               "  --compress  fp16|bf16: also time 16-bit sums and measure their error\n"
               "  --scale     standard deviation of the values with --compress (default 1e-3)\n");
}

/* Mean seconds per iteration of one way of summing, the slowest rank's. */
static larch_status time_sum(const larch_comm *c, float *buf, size_t n, int iters, double bucket_mb, double first_mb,
                             int bucketed, double *out)
{
    larch_status s = LARCH_OK;
    size_t first = (size_t)(first_mb * 1048576.0 / 4), rest = (size_t)(bucket_mb * 1048576.0 / 4);
    if (first < 1) first = 1;
    if (rest < 1) rest = 1;
    for (int it = -2; it < iters && !s; it++) {           /* two warm-up rounds */
        if (it == 0) {
            if ((s = larch_comm_barrier(c))) break;
            *out = larch_comm_wtime();
        }
        if (!bucketed) { s = larch_comm_allreduce_f32(c, buf, n); continue; }
        size_t hi = n, cap = first;                       /* buckets from the end, as grad_sync */
        while (hi > 0 && !s) {
            size_t lo = hi > cap ? hi - cap : 0;
            s = larch_comm_iallreduce_f32(c, buf + lo, hi - lo);
            hi = lo;
            cap = rest;
        }
        larch_status w = larch_comm_waitall(c);
        if (!s) s = w;
    }
    if (s) return s;
    double t = (larch_comm_wtime() - *out) / iters;
    s = larch_comm_max_f64(c, &t, 1);
    *out = t;
    return s;
}

/* The 16-bit path: convert, sum, convert back; mean seconds (slowest rank)
 * and the result in `out`. */
static larch_status time_compressed(const larch_comm *c, const float *x, uint16_t *wire, float *out, size_t n,
                                    int iters, int bf16, double *t)
{
    larch_status s = LARCH_OK;
    for (int it = -2; it < iters && !s; it++) {
        if (it == 0) {
            if ((s = larch_comm_barrier(c))) break;
            *t = larch_comm_wtime();
        }
        if (bf16) larch_f32_to_bf16(x, wire, n);
        else larch_f32_to_f16(x, wire, n);
        s = larch_comm_iallreduce_16(c, wire, n, bf16);
        larch_status w = larch_comm_waitall(c);
        if (!s) s = w;
        if (bf16) larch_bf16_to_f32(wire, out, n);
        else larch_f16_to_f32(wire, out, n);
    }
    if (s) return s;
    double dt = (larch_comm_wtime() - *t) / iters;
    s = larch_comm_max_f64(c, &dt, 1);
    *t = dt;
    return s;
}

int larch_cmd_bench_allreduce(int argc, char **argv)
{
    const char *configs[MAX_SETS];
    int n_configs = 0, iters_opt = 0;
    double min_kib = 4, max_mib = 256, bucket_mb = 25, first_mb = 1, scale = 1e-3;
    int compress = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (i + 1 < argc && !strcmp(argv[i], "--min-kib")) { min_kib = atof(argv[++i]); continue; }
        if (i + 1 < argc && !strcmp(argv[i], "--max-mib")) { max_mib = atof(argv[++i]); continue; }
        if (i + 1 < argc && !strcmp(argv[i], "--bucket-mb")) { bucket_mb = atof(argv[++i]); continue; }
        if (i + 1 < argc && !strcmp(argv[i], "--first-mb")) { first_mb = atof(argv[++i]); continue; }
        if (i + 1 < argc && !strcmp(argv[i], "--iters")) { iters_opt = atoi(argv[++i]); continue; }
        if (i + 1 < argc && !strcmp(argv[i], "--scale")) { scale = atof(argv[++i]); continue; }
        if (i + 1 < argc && !strcmp(argv[i], "--compress")) {
            i++;
            compress = !strcmp(argv[i], "fp16") ? 1 : !strcmp(argv[i], "bf16") ? 2 : -1;
            if (compress < 0) { fprintf(stderr, "larch bench allreduce: --compress takes fp16 or bf16\n"); return 2; }
            continue;
        }
        if (argv[i][0] == '-' || n_configs == MAX_SETS) { fprintf(stderr, "larch bench allreduce: unexpected '%s'\n", argv[i]); usage(stderr); return 2; }
        configs[n_configs++] = argv[i];
    }
    if (min_kib <= 0 || max_mib <= 0 || bucket_mb <= 0 || first_mb <= 0 || iters_opt < 0) {
        fprintf(stderr, "larch bench allreduce: sizes and iterations must be positive\n");
        return 2;
    }
    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    /* the sizes: configs' gradient buffers first, then the sweep */
    size_t sizes[128];
    const char *labels[128];
    int n = 0;
    larch_status s = LARCH_OK;
    for (int k = 0; k < n_configs && !s; k++) {
        larch_node *cfg = NULL;
        larch_model *m = NULL;
        larch_shape shape;
        int classes;
        s = larch_run_load(configs[k], NULL, 0, &cfg);
        if (!s) s = larch_run_input(cfg, &shape, &classes);
        if (!s) s = larch_model_build(&m, shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                      larch_map_get(cfg, "regularization"), 1);
        if (!s) { size_t nf; larch_model_flat_params(m, &nf); sizes[n] = nf * sizeof(float); labels[n++] = configs[k]; }
        larch_model_free(m);
        larch_node_free(cfg);
        if (s) larch_fail_context(s, "%s", configs[k]);
    }
    for (double b = min_kib * 1024; !s && b <= max_mib * 1048576.0 + 0.5 && n < 128; b *= 4) {
        sizes[n] = (size_t)b;
        labels[n++] = "";
    }
    s = larch_comm_check(&comm, s);
    if (s) { if (comm.rank == 0) larch_cli_error("bench allreduce"); larch_comm_finalize(&comm); return 1; }
    size_t max_bytes = 0;
    for (int k = 0; k < n; k++) if (sizes[k] > max_bytes) max_bytes = sizes[k];
    float *buf = larch_aligned_alloc(max_bytes, "allreduce buffer");
    s = larch_comm_check(&comm, buf ? LARCH_OK : LARCH_ERR_NOMEM);
    if (s) { if (comm.rank == 0) larch_cli_error("bench allreduce"); free(buf); larch_comm_finalize(&comm); return 1; }
    size_t max_n = max_bytes / sizeof(float);
    float *x = NULL, *exact = NULL, *approx = NULL;
    uint16_t *wire = NULL;
    if (compress) {
        x = larch_aligned_alloc(max_bytes, "bench values");
        exact = larch_aligned_alloc(max_bytes, "bench values");
        approx = larch_aligned_alloc(max_bytes, "bench values");
        wire = larch_aligned_alloc(max_n * sizeof *wire, "bench values");
        s = larch_comm_check(&comm, x && exact && approx && wire ? LARCH_OK : LARCH_ERR_NOMEM);
        if (s) { if (comm.rank == 0) larch_cli_error("bench allreduce"); free(x); free(exact); free(approx); free(wire); free(buf); larch_comm_finalize(&comm); return 1; }
        larch_rng rng;
        larch_rng_init(&rng, 1234, 77, (uint32_t)comm.rank, 0);
        for (size_t i = 0; i < max_n; i++) x[i] = (float)scale * larch_rng_normal(&rng);
    }
    for (size_t i = 0; i < max_n; i++) buf[i] = 1e-3f * (float)(i % 1000);
    if (comm.rank == 0)
        fprintf(stderr, "larch bench allreduce: %d ranks; larch buckets %g MiB (first %g)\n"
                        "%12s %10s %10s %10s %10s %10s %10s  %s\n", comm.size, bucket_mb, first_mb,
                "bytes", "mpi_us", "mpi_algbw", "mpi_busbw", "larch_us", "larch_bus", "larch/mpi", "");
    const double bus = comm.size > 1 ? 2.0 * (comm.size - 1) / comm.size : 0.0;
    for (int k = 0; k < n && !s; k++) {
        size_t nf = sizes[k] / sizeof(float);
        int iters = iters_opt ? iters_opt : (int)(1073741824.0 / (double)sizes[k]);
        if (!iters_opt) iters = iters < 5 ? 5 : iters > 200 ? 200 : iters;
        double t_mpi = 0, t_larch = 0;
        s = time_sum(&comm, buf, nf, iters, bucket_mb, first_mb, 0, &t_mpi);
        if (!s) s = time_sum(&comm, buf, nf, iters, bucket_mb, first_mb, 1, &t_larch);
        double t_c = 0, rel = 0, worst = 0;
        if (!s && compress) {
            memcpy(exact, x, sizes[k]);
            s = larch_comm_allreduce_f32(&comm, exact, nf);
            if (!s) s = time_compressed(&comm, x, wire, approx, nf, iters, compress == 2, &t_c);
            double num = 0, den = 0, big = 0;
            for (size_t i = 0; i < nf; i++) big = fabs(exact[i]) > big ? fabs(exact[i]) : big;
            for (size_t i = 0; i < nf; i++) {
                double d = (double)approx[i] - exact[i];
                num += d * d;
                den += (double)exact[i] * exact[i];
                if (fabs(exact[i]) > 1e-3 * big && fabs(d) / fabs(exact[i]) > worst) worst = fabs(d) / fabs(exact[i]);
            }
            rel = den > 0 ? sqrt(num / den) : 0;
        }
        if (s || comm.rank != 0) continue;
        double gb = (double)sizes[k] / 1e9;
        if (compress) {
            printf("{\"bench\":\"allreduce_compressed\",\"ranks\":%d,\"bytes\":%zu,\"config\":\"%s\",\"compress\":\"%s\","
                   "\"scale\":%g,\"mpi_us\":%.2f,\"compressed_us\":%.2f,\"speedup\":%.3f,\"rel_err\":%.3g,"
                   "\"max_rel_err\":%.3g}\n", comm.size, sizes[k], labels[k], compress == 1 ? "fp16" : "bf16", scale,
                   t_mpi * 1e6, t_c * 1e6, t_mpi / t_c, rel, worst);
            fprintf(stderr, "%12zu %10.1f %10s %10s %10.1f %10s %10.3f  %s: %s rel_err %.2g, worst %.2g\n", sizes[k],
                    t_mpi * 1e6, "", "", t_c * 1e6, "", t_c / t_mpi, labels[k][0] ? labels[k] : "",
                    compress == 1 ? "fp16" : "bf16", rel, worst);
            fflush(stdout);
            continue;
        }
        printf("{\"bench\":\"allreduce\",\"ranks\":%d,\"bytes\":%zu,\"config\":\"%s\",\"iters\":%d,"
               "\"mpi_us\":%.2f,\"mpi_algbw_gbs\":%.3f,\"mpi_busbw_gbs\":%.3f,"
               "\"larch_us\":%.2f,\"larch_algbw_gbs\":%.3f,\"larch_busbw_gbs\":%.3f,\"larch_over_mpi\":%.3f,"
               "\"bucket_mb\":%g}\n", comm.size, sizes[k], labels[k], iters, t_mpi * 1e6, gb / t_mpi, gb / t_mpi * bus,
               t_larch * 1e6, gb / t_larch, gb / t_larch * bus, t_larch / t_mpi, bucket_mb);
        fprintf(stderr, "%12zu %10.1f %10.3f %10.3f %10.1f %10.3f %10.3f  %s\n", sizes[k], t_mpi * 1e6, gb / t_mpi,
                gb / t_mpi * bus, t_larch * 1e6, gb / t_larch * bus, t_larch / t_mpi, labels[k]);
        fflush(stdout);
    }
    if (s && comm.rank == 0) larch_cli_error("bench allreduce");
    free(x); free(exact); free(approx); free(wire);
    free(buf);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
