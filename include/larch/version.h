/* larch/version.h - the library's version. */
#ifndef LARCH_VERSION_H
#define LARCH_VERSION_H
#include "larch/error.h"
#ifdef __cplusplus
extern "C" {
#endif
/* "MAJOR.MINOR.PATCH" of the library the program runs with. */
LARCH_API const char *larch_version(void);
#ifdef __cplusplus
}
#endif
#endif
