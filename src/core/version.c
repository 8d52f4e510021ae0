/* version.c - the library version. */
#include "larch/version.h"
const char *larch_version(void) { return LARCH_VERSION_STRING; }
