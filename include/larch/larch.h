/* larch/larch.h - the whole public API of liblarch (one include for
 * programs; the library's own sources include only the headers they use). */
#ifndef LARCH_LARCH_H
#define LARCH_LARCH_H
#include "larch/error.h"
#include "larch/version.h"
#include "larch/rng.h"
#include "larch/cfg.h"
#include "larch/model.h"
#include "larch/model_cfg.h"
#include "larch/flow.h"
#include "larch/data.h"
#include "larch/optim.h"
#include "larch/optim_cfg.h"
#include "larch/comm.h"
#include "larch/checkpoint.h"
#include "larch/safetensors.h"
#include "larch/train.h"
#include "larch/compress.h"
#endif
