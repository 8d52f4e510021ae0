/* methods.h - the compression methods' entry points (private to liblarch);
 * the table is methods.c, the public face larch/compress.h. */
#ifndef LARCH_COMPRESS_METHODS_H
#define LARCH_COMPRESS_METHODS_H

#include "larch/compress.h"

#endif
