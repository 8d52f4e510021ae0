/* larch/larch.h - the whole public API of liblarch. */
#ifndef LARCH_LARCH_H
#define LARCH_LARCH_H
#include "larch/error.h"
#include "larch/rng.h"
#include "larch/cfg.h"
#include "larch/model.h"
#include "larch/model_cfg.h"
#include "larch/data.h"
#include "larch/optim.h"
#include "larch/comm.h"
#include "larch/train.h"
LARCH_API const char *larch_version(void);
#endif
