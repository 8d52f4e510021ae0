# FindDNNL.cmake - oneDNN (libdnnl, Debian's libdnnl-dev) and its C API header
# oneapi/dnnl/dnnl.h as the imported target DNNL::DNNL. Used by larch's build
# when LARCH_ONEDNN is not OFF and, installed beside larchConfig.cmake, by
# projects that link the static larch built with oneDNN. A plain search
# rather than oneDNN's own dnnl-config.cmake, which also looks for OpenCL
# (Debian's build has a GPU runtime larch does not use).
# Cache variables: DNNL_INCLUDE_DIR (the directory holding oneapi/),
# DNNL_LIBRARY. Result: DNNL_FOUND, DNNL_VERSION (from dnnl_version.h),
# DNNL_INCLUDE_DIRS, DNNL_LIBRARIES.

if(TARGET DNNL::DNNL)
  set(DNNL_FOUND TRUE)
  return()
endif()

find_path(DNNL_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.h)
find_library(DNNL_LIBRARY NAMES dnnl)
set(DNNL_VERSION "")
if(DNNL_INCLUDE_DIR AND EXISTS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h")
  file(STRINGS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _dnnl_v REGEX "#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "DNNL_VERSION_${part} ([0-9]+)" _m "${_dnnl_v}")
    set(_dnnl_${part} "${CMAKE_MATCH_1}")
  endforeach()
  set(DNNL_VERSION "${_dnnl_MAJOR}.${_dnnl_MINOR}.${_dnnl_PATCH}")
  unset(_dnnl_v)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(DNNL
  REQUIRED_VARS DNNL_LIBRARY DNNL_INCLUDE_DIR
  VERSION_VAR DNNL_VERSION)
mark_as_advanced(DNNL_INCLUDE_DIR DNNL_LIBRARY)

if(DNNL_FOUND)
  set(DNNL_INCLUDE_DIRS "${DNNL_INCLUDE_DIR}")
  set(DNNL_LIBRARIES "${DNNL_LIBRARY}")
  add_library(DNNL::DNNL UNKNOWN IMPORTED)
  set_target_properties(DNNL::DNNL PROPERTIES
    IMPORTED_LOCATION "${DNNL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
endif()
