# FindLibYAML.cmake - libyaml (the YAML 1.1 parser, pkg-config module
# yaml-0.1) as the imported target LibYAML::LibYAML. Used to build larch
# and, installed beside larchConfig.cmake, by the projects that link larch
# (the search runs again on the consumer's machine).
#
# Cache variables: LibYAML_INCLUDE_DIR (the directory of yaml.h),
# LibYAML_LIBRARY. Result: LibYAML_FOUND, LibYAML_VERSION (when pkg-config
# knows it), LibYAML_INCLUDE_DIRS, LibYAML_LIBRARIES.

if(TARGET LibYAML::LibYAML)
  set(LibYAML_FOUND TRUE)
  return()
endif()

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_LibYAML QUIET yaml-0.1)
endif()

find_path(LibYAML_INCLUDE_DIR NAMES yaml.h HINTS ${PC_LibYAML_INCLUDE_DIRS})
find_library(LibYAML_LIBRARY NAMES yaml HINTS ${PC_LibYAML_LIBRARY_DIRS})
set(LibYAML_VERSION "${PC_LibYAML_VERSION}")

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LibYAML
  REQUIRED_VARS LibYAML_LIBRARY LibYAML_INCLUDE_DIR
  VERSION_VAR LibYAML_VERSION)
mark_as_advanced(LibYAML_INCLUDE_DIR LibYAML_LIBRARY)

if(LibYAML_FOUND)
  set(LibYAML_INCLUDE_DIRS "${LibYAML_INCLUDE_DIR}")
  set(LibYAML_LIBRARIES "${LibYAML_LIBRARY}")
  add_library(LibYAML::LibYAML UNKNOWN IMPORTED)
  set_target_properties(LibYAML::LibYAML PROPERTIES
    IMPORTED_LOCATION "${LibYAML_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LibYAML_INCLUDE_DIR}")
endif()
