/* main.c - the `larch` command-line program: dispatches subcommands. */
#include "cli/cli.h"
#include "larch/larch.h"

#include "core/blas.h"
#include "train/run_report.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* OpenBLAS 0.3.21 (Debian 12) does not recognize recent AVX-512 Xeons and
 * falls back to its Haswell (AVX2) kernels, which reach about half of the
 * machine's sgemm speed. OpenBLAS reads OPENBLAS_CORETYPE only when it is
 * loaded, so when the CPU has AVX-512 (F, BW, DQ, VL) and OpenBLAS chose
 * Haswell, larch sets OPENBLAS_CORETYPE=SkylakeX and re-executes itself
 * (before MPI starts). A user's own OPENBLAS_CORETYPE always wins. */
static void prefer_avx512_blas(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
        return;
    if (strcasecmp(larch_blas_corename(), "Haswell") != 0) return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv);                /* only returns on failure: go on with Haswell */
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: larch <command> [options]\n"
            "\n"
            "commands:\n"
            "  train CONFIG [--set key=value ...] [--out DIR]\n"
            "        train a model; progress on stdout, DIR/metrics.jsonl and DIR/config.yaml\n"
            "        (DIR defaults to runs/<config name>). Run under mpirun/srun for data parallelism.\n"
            "  eval CONFIG --checkpoint FILE [--set key=value ...] [--out DIR]\n"
            "        evaluate a checkpoint's parameters on the test set\n"
            "  eval CONFIG --checkpoint FILE --embedding NODE --classes LIST (--fewshot N,K | --zeroshot TABLE)\n"
            "        few-shot (N-way K-shot), retrieval and zero-shot evaluation of a layer's embeddings on\n"
            "        held-out classes (docs/fewshot.md; larch eval --fewshot 5,1 --help)\n"
            "  ckpt info|verify FILE\n"
            "        print a checkpoint's metadata and tensors, or check its integrity\n"
            "  config CONFIG [--set key=value ...]\n"
            "        validate a config and print it resolved, with every default\n"
            "  bench step CONFIG [--batch N] [--threads T] [--set key=value ...]\n"
            "        time one training step against OpenBLAS sgemm on the model's GEMM shapes\n"
            "  data convert FORMAT SOURCE OUT.h5 | data info FILE\n"
            "        convert a dataset (idx, cifar, npy, folder) to larch's HDF5 layout, or describe one\n"
            "  predict CONFIG --checkpoint FILE --data FILE.h5[:/group] --out OUT.h5 [--layer NAME] [--batch N]\n"
            "        eval-mode outputs (logits or a layer's) of every sample, in file order\n"
            "  sample CONFIG --checkpoint FILE --png OUT.png [--n N] [--temperature T]\n"
            "        samples of a normalizing flow as a PNG grid (docs/flows.md)\n"
            "  compress CONFIG --checkpoint FILE [--method NAME[:key=value,...]]... [--add LABEL=CFG:CKPT]...\n"
            "        quantize, prune or factorize a trained model and measure every result (docs/compression.md)\n"
            "  attack CONFIG --checkpoint FILE [--eps LIST] [--method fgsm,pgd] [--json F] [--png F] [--grid F]\n"
            "        robust accuracy under FGSM / PGD attacks per epsilon (docs/adversarial.md)\n"
            "  ntk CONFIG --samples N [--checkpoint FILE] [--kernel empirical|analytic|both] [--regress M] [--out F]\n"
            "        empirical and analytic neural tangent kernels, their spectra, kernel regression (docs/ntk.md)\n"
            "  biasvar CONFIG --models K [--bootstrap|--fresh] [--out DIR]\n"
            "        train K models through groups and decompose their test error into bias and variance\n"
            "        (docs/biasvar.md; dist.groups and sweeps of larch train: docs/groups.md)\n"
            "  import FILE.safetensors --config CFG [--map RULES] --out CKPT.h5\n"
            "  export CKPT.h5 --config CFG --format safetensors --out FILE [--map RULES]\n"
            "        PyTorch weights (safetensors) to a larch checkpoint and back (docs/backbones.md)\n"
            "  schedule CONFIG [--set key=value ...] [--every N] [--png FILE]\n"
            "        print (or plot) the learning rate of every step without training\n"
            "  plot RUN_DIR [RUN_DIR ...] --png FILE [--x step|epoch|time]\n"
            "        training and test curves, learning rate, samples/s and time by phase of runs, overlaid\n"
            "  report RUN_DIR [--out FILE]\n"
            "        write the run's self-contained HTML report (RUN_DIR/report.html; docs/watching.md)\n"
            "\n"
            "options:\n"
            "  -h, --help     this help (also: larch <command> --help)\n"
            "  -V, --version  print the version\n");
}

int main(int argc, char **argv)
{
    /* A file-size limit (ulimit -f) then fails writes with EFBIG, reported
     * as write errors, instead of killing larch without a word. */
    signal(SIGXFSZ, SIG_IGN);
    /* `larch train`: the stop signals are held from here (across the
     * re-exec, which keeps them pending) until their handlers are in place,
     * before MPI starts and data loads, so that none is lost. */
    int train = argc > 1 && (!strcmp(argv[1], "train") || !strcmp(argv[1], "biasvar"));
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGUSR1);
    if (train) sigprocmask(SIG_BLOCK, &stops, NULL);
    prefer_avx512_blas(argv);
    if (train) {
        larch_report_set_command(argc, argv);     /* recorded in RUN_DIR/run.json */
        larch_catch_stop_signals();
        sigprocmask(SIG_UNBLOCK, &stops, NULL);
    }
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) { printf("larch %s\n", larch_version()); return 0; }
    if (!strcmp(cmd, "train")) return larch_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) {
        for (int i = 2; i < argc; i++)                /* evaluation of embeddings: docs/fewshot.md */
            if (!strcmp(argv[i], "--fewshot") || !strcmp(argv[i], "--zeroshot") || !strcmp(argv[i], "--embedding"))
                return larch_cmd_eval_embedding(argc - 1, argv + 1);
        return larch_cmd_eval(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "ckpt")) return larch_cmd_ckpt(argc - 1, argv + 1);
    if (!strcmp(cmd, "config")) return larch_cmd_config(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return larch_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "schedule")) return larch_cmd_schedule(argc - 1, argv + 1);
    if (!strcmp(cmd, "plot")) return larch_cmd_plot(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return larch_cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return larch_cmd_data(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return larch_cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "sample")) return larch_cmd_sample(argc - 1, argv + 1);
    if (!strcmp(cmd, "compress")) return larch_cmd_compress(argc - 1, argv + 1);
    if (!strcmp(cmd, "attack")) return larch_cmd_attack(argc - 1, argv + 1);
    if (!strcmp(cmd, "ntk")) return larch_cmd_ntk(argc - 1, argv + 1);
    if (!strcmp(cmd, "biasvar")) return larch_cmd_biasvar(argc - 1, argv + 1);
    if (!strcmp(cmd, "import")) return larch_cmd_import(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return larch_cmd_export(argc - 1, argv + 1);
    fprintf(stderr, "larch: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
