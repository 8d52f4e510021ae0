/* version.c - the library version. */
#include "larch/larch.h"
const char *larch_version(void) { return LARCH_VERSION_STRING; }
