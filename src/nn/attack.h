/* attack.h - adversarial attacks on a model and a batch (private to
 * liblarch and its tests; docs/adversarial.md).
 *
 * FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) under the
 * L-infinity or L2 norm, with random start, steps, step size, restarts,
 * untargeted or targeted. The attack works in the units of the raw input:
 * for image data the pixel scale u = x/255 in [0, 1], which the model sees
 * normalized, x' = (u - mean[c]) / std[c]. The batch holds x'; the attack
 * maps it back to u, perturbs u within ||delta|| <= eps and the valid range
 * [lo, hi], and hands the model (u' - mean) / std. The gradient with
 * respect to u is the model's input gradient divided by std[c].
 *
 * Randomness (random starts, targets) is drawn from (seed, LARCH_RNG_ATTACK,
 * global sample index, stream + restart) with the counter-based RNG: one
 * sample is attacked the same way whatever rank holds it.
 *
 * The model must be planned with larch_model_set_input_grad(m, 1). Each
 * attack step is a forward, the loss's gradient (grad_scale 1: each
 * sample's own loss) and a backward that skips the parameter gradients
 * (the layers' need_dw is off during the attack); the parameter gradient
 * buffer is left unspecified, so attack before the training backward of a
 * step. Nothing is allocated per call: the workspace is sized once.
 */
#ifndef LARCH_NN_ATTACK_H
#define LARCH_NN_ATTACK_H

#include "larch/model.h"

typedef enum { LARCH_ATTACK_FGSM = 0, LARCH_ATTACK_PGD = 1 } larch_attack_method;
typedef enum { LARCH_ATTACK_LINF = 0, LARCH_ATTACK_L2 = 1 } larch_attack_norm;

typedef struct larch_attack_opts {
    larch_attack_method method;
    larch_attack_norm norm;
    float eps;            /* radius in raw units (pixels: 0..1), >= 0                    */
    float step_size;      /* raw units; 0: fgsm eps (1.25 eps with random start), pgd 2.5 eps / steps */
    int steps;            /* pgd: gradient steps >= 1 (fgsm: 1)                          */
    int restarts;         /* pgd: random restarts >= 1; a sample counts as fooled when any fools it */
    int random_start;     /* start from a uniform point of the eps ball (pgd: 1; fgsm: 0 = FGSM, 1 = Wong et al.'s) */
    int targeted;         /* 1: push towards a random other class (drawn per sample) */
    int keep_best;        /* 1 (evaluation): keep, per sample, the first iterate that fools it, over steps and restarts;
                             0 (training): the last iterate */
    /* the pass the attack runs (train: training mode, batch statistics, dropout) */
    int train;
    uint64_t seed;
    uint32_t step;        /* pass step coordinate (dropout) */
    uint32_t stream;      /* RNG coordinate b of the random starts (training: the optimizer step) */
    const larch_comm_hooks *comm;
    /* the raw range and the normalization: x' = (u - mean[c]) / std[c], c = channel
     * (n_norm 1: one pair for all channels); clip: keep u in [lo, hi] */
    int n_norm;
    const float *mean, *std;
    int clip;
    float lo, hi;
} larch_attack_opts;

typedef struct larch_attack_ws larch_attack_ws;

/* Checks the options (LARCH_ERR_INVALID naming the option). */
larch_status larch_attack_check(const larch_attack_opts *o);
/* The workspace for batches of up to max_batch samples of m; the model's
 * losses must score class labels (loss 0's predictions give the accuracy). */
larch_status larch_attack_ws_create(larch_attack_ws **out, const larch_model *m, int max_batch);
void larch_attack_ws_free(larch_attack_ws *ws);
/* The step size the options resolve to. */
float larch_attack_step_size(const larch_attack_opts *o);
/* Attacks batch b (normalized x, labels): writes the adversarial inputs,
 * normalized, into x_adv (b->n * input size floats; may not alias b->x) and,
 * when pred is not NULL, loss 0's predicted class on them (keep_best: the
 * prediction on the kept iterate; otherwise one more forward). Targeted:
 * target (when not NULL) receives each sample's target class. */
larch_status larch_attack_run(larch_model *m, larch_attack_ws *ws, const larch_batch *b, const larch_attack_opts *o,
                              float *x_adv, int32_t *pred, int32_t *target);

/* ---- TRADES (Zhang et al. 2019) ----
 * loss = CE(f(x), y) + beta KL(softmax f(x) || softmax f(x')), with x' the
 * maximizer of the KL within the eps ball, found by `steps` signed (or L2)
 * gradient steps from x + 0.001 N(0, 1) (raw units). The model must have one
 * softmax_ce loss (larch_trades_check). */
larch_status larch_trades_check(const larch_model *m);
/* x' for batch b (o: eps, steps, step size, norm, pass; method, restarts,
 * targeted and keep_best are ignored) into x_adv, normalized. Runs one clean
 * forward (p = softmax f(x)) and `steps` forward/backward passes on the KL. */
larch_status larch_trades_craft(larch_model *m, larch_attack_ws *ws, const larch_batch *b, const larch_attack_opts *o,
                                float *x_adv);
/* After a forward of the clean batch: keeps p = softmax f(x) of its n samples. */
void larch_trades_keep_clean(larch_model *m, larch_attack_ws *ws, int n);
/* After a forward of x': writes d(scale KL)/d f(x') = scale (q - p) into the
 * loss node's gradient (for larch_model_backward), keeps log q; returns the
 * sum over the n samples of KL(p || q). */
double larch_trades_adv_grad(larch_model *m, larch_attack_ws *ws, int n, float scale);
/* After a forward of the clean batch and larch_model_loss (which wrote the
 * CE gradient): adds d(scale KL)/d f(x) = scale p (log p - log q - KL) to it. */
void larch_trades_clean_grad(larch_model *m, larch_attack_ws *ws, int n, float scale);

/* The node whose outputs give loss 0's predictions (argmax: the class). */
int larch_attack_node(const larch_model *m);

/* The class a targeted attack aims sample `index` at: uniform over the
 * classes other than `label`. */
int32_t larch_attack_target(uint64_t seed, uint32_t index, int32_t label, int classes);

#endif
