/* loss.h - private: loss and penalty helpers shared by model.c and loss.c. */
#ifndef LARCH_NN_LOSS_H
#define LARCH_NN_LOSS_H
#include "larch/model.h"
#endif
