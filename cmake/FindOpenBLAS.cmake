# FindOpenBLAS.cmake - OpenBLAS and its CBLAS header as the imported target
# OpenBLAS::OpenBLAS. Used to build larch and, installed beside
# larchConfig.cmake, by the projects that link larch (nothing of the build
# machine is recorded: the search runs again on the consumer's machine).
#
# pkg-config's `openblas` module, when there is one, gives the hints (Debian
# keeps OpenBLAS under an alternatives directory such as openblas-pthread/);
# otherwise the usual prefixes are searched. Cache variables:
#   OpenBLAS_INCLUDE_DIR (the directory of cblas.h), OpenBLAS_LIBRARY.
# Result: OpenBLAS_FOUND, OpenBLAS_VERSION (when pkg-config knows it),
# OpenBLAS_INCLUDE_DIRS, OpenBLAS_LIBRARIES.

if(TARGET OpenBLAS::OpenBLAS)          # defined already (OpenBLAS's own config, or an earlier call)
  set(OpenBLAS_FOUND TRUE)
  return()
endif()

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_OpenBLAS QUIET openblas)
endif()

find_path(OpenBLAS_INCLUDE_DIR NAMES cblas.h
  HINTS ${PC_OpenBLAS_INCLUDE_DIRS}
  PATH_SUFFIXES openblas openblas-pthread openblas-openmp)
# Debian's OpenMP build of OpenBLAS (package libopenblas0-openmp) first:
# its threads are the same OpenMP pool as larch's loops and oneDNN's, so
# the three never spin against each other (docs/performance.md). Linked by
# its path; the program and liblarch.so keep that directory in their run
# path, whatever the system's libopenblas.so.0 alternative points to.
# OpenBLAS_THREADING=pthread skips it.
set(OpenBLAS_THREADING "openmp" CACHE STRING "Preferred OpenBLAS build: openmp or pthread")
if(OpenBLAS_THREADING STREQUAL "openmp" AND CMAKE_LIBRARY_ARCHITECTURE)
  find_library(OpenBLAS_LIBRARY NAMES libopenblas.so.0
    PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
endif()
find_library(OpenBLAS_LIBRARY NAMES openblas
  HINTS ${PC_OpenBLAS_LIBRARY_DIRS}
  PATH_SUFFIXES openblas-pthread openblas-openmp)
set(OpenBLAS_VERSION "${PC_OpenBLAS_VERSION}")

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenBLAS
  REQUIRED_VARS OpenBLAS_LIBRARY OpenBLAS_INCLUDE_DIR
  VERSION_VAR OpenBLAS_VERSION)
mark_as_advanced(OpenBLAS_INCLUDE_DIR OpenBLAS_LIBRARY)

if(OpenBLAS_FOUND)
  set(OpenBLAS_INCLUDE_DIRS "${OpenBLAS_INCLUDE_DIR}")
  set(OpenBLAS_LIBRARIES "${OpenBLAS_LIBRARY}")
  add_library(OpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
    IMPORTED_LOCATION "${OpenBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIR}")
  if(OpenBLAS_LIBRARY MATCHES "\\.a$")
    # A static OpenBLAS needs what its pkg-config file lists as private
    # (threads, libm, gfortran for LAPACK).
    set_property(TARGET OpenBLAS::OpenBLAS PROPERTY
      INTERFACE_LINK_LIBRARIES "${PC_OpenBLAS_STATIC_LDFLAGS}")
  endif()
endif()
