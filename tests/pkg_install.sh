#!/usr/bin/env bash
# pkg_install.sh - larch installs as a package and other projects build
# against the installed tree (docs/build.md).
#   bash tests/pkg_install.sh BUILD_DIR SOURCE_DIR LIBDIR SANITIZE CC [CMAKE]
# (registered in tests/CMakeLists.txt: the build tree, the source tree,
# ${CMAKE_INSTALL_LIBDIR}, ${LARCH_SANITIZE}, ${CMAKE_C_COMPILER} and
# ${CMAKE_COMMAND}).
#  1. `cmake --install BUILD --prefix TMP` installs the headers, both
#     libraries (with the soname links), the program, the CMake package and
#     larch.pc, and no installed CMake or pkg-config file names the build or
#     source tree or HDF5's include directory;
#  2. tests/consumer/cmake configures with find_package(larch) against TMP
#     only, builds consumer_shared (larch::larch) and consumer_static
#     (larch::larch_static); both run and pass their checks; the shared one
#     loads TMP's liblarch.so, the static one loads no liblarch.so at all;
#  3. tests/consumer/pkgconfig builds with `pkg-config --cflags --libs larch`
#     (shared; it loads TMP's liblarch.so) and with `pkg-config --static
#     --libs larch` and liblarch.a (no liblarch.so needed); both run and pass
#     their checks.
# With SANITIZE=ON (the ASan/UBSan build) the consumers are compiled and
# linked with the same sanitizers, as the installed code needs.
set -u
build=$1 src=$2 libdir=$3 sanitize=$4 cc=$5 cmake=${6:-cmake}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail=0
err() { echo "pkg_install: $*" >&2; fail=1; }
# Runs a step; on failure prints its log and ends the test.
step() {
    local name=$1; shift
    if ! "$@" > "$tmp/$name.log" 2>&1; then
        echo "pkg_install: $name failed: $*" >&2
        tail -n 40 "$tmp/$name.log" >&2
        exit 1
    fi
}

san_flags=
case $sanitize in
    ON|on|1|TRUE|true|YES|yes) san_flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" ;;
esac

# ---- 1. install ----
step install "$cmake" --install "$build" --prefix "$prefix"
lib=$prefix/$libdir
version=$("$prefix/bin/larch" --version 2>/dev/null | awk '{ print $2 }')
[ -n "$version" ] || { echo "pkg_install: the installed program $prefix/bin/larch does not run" >&2; exit 1; }
IFS=. read -r major minor _ <<< "$version"
if [ "$major" = 0 ]; then soversion=$major.$minor; else soversion=$major; fi
for f in include/larch/larch.h include/larch/model.h include/larch/error.h bin/larch \
         "$libdir/liblarch.a" "$libdir/liblarch.so.$version" "$libdir/liblarch.so.$soversion" "$libdir/liblarch.so" \
         "$libdir/cmake/larch/larchConfig.cmake" "$libdir/cmake/larch/larchConfigVersion.cmake" \
         "$libdir/cmake/larch/larchTargets.cmake" "$libdir/cmake/larch/FindOpenBLAS.cmake" \
         "$libdir/cmake/larch/FindLibYAML.cmake" "$libdir/pkgconfig/larch.pc"; do
    [ -e "$prefix/$f" ] || err "not installed: $f"
done
[ "$(readlink "$lib/liblarch.so")" = "liblarch.so.$soversion" ] || err "liblarch.so does not link to liblarch.so.$soversion"
# Installed package files name no path of the build machine's trees, and
# HDF5's include directory appears nowhere (it is private).
for pat in "$(cd "$build" && pwd)" "$(cd "$src" && pwd)" "include/hdf5"; do
    hits=$(grep -rl -F -- "$pat" "$lib/cmake/larch" "$lib/pkgconfig" 2>/dev/null)
    [ -z "$hits" ] || err "installed files name '$pat': $hits"
done
# liblarch.a's link interface names its private dependencies as link-only
# imported targets, never as paths.
targets=$(cat "$lib"/cmake/larch/larchTargets*.cmake)
for t in OpenBLAS::OpenBLAS LibYAML::LibYAML ZLIB::ZLIB HDF5::HDF5; do
    grep -q -F "\$<LINK_ONLY:$t>" <<< "$targets" || err "larch::larch_static does not carry $t as a link-only dependency"
done
grep -E 'INTERFACE_(INCLUDE_DIRECTORIES|COMPILE_DEFINITIONS)' <<< "$targets" | grep -q -i hdf5 \
    && err "HDF5 include directories or definitions are in larch's public interface"
[ $fail = 0 ] || exit 1

# ---- 2. find_package consumer ----
step cmake_configure "$cmake" -S "$src/tests/consumer/cmake" -B "$tmp/cm" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_C_FLAGS="$san_flags" -DCMAKE_EXE_LINKER_FLAGS="$san_flags"
found=$(sed -n 's/^larch_DIR:PATH=//p' "$tmp/cm/CMakeCache.txt")
[ "$found" = "$lib/cmake/larch" ] || err "find_package(larch) used '$found', not the installed $lib/cmake/larch"
step cmake_build "$cmake" --build "$tmp/cm" -j2
found_version=$(cat "$tmp/cm/larch_found_version.txt")
[ "$found_version" = "$version" ] || err "find_package reports version '$found_version', the program $version"

if "$tmp/cm/consumer_shared" "$found_version" > "$tmp/shared.out" 2>&1; then
    cat "$tmp/shared.out"
else
    err "consumer_shared (larch::larch) failed:"; cat "$tmp/shared.out" >&2
fi
loaded=$(ldd "$tmp/cm/consumer_shared" | awk '$1 ~ /^liblarch\.so/ { print $1, $3 }')
[ "$loaded" = "liblarch.so.$soversion $lib/liblarch.so.$soversion" ] \
    || err "consumer_shared loads '$loaded', expected liblarch.so.$soversion from $lib"

if "$tmp/cm/consumer_static" "$found_version" > "$tmp/static.out" 2>&1; then
    cat "$tmp/static.out"
else
    err "consumer_static (larch::larch_static) failed:"; cat "$tmp/static.out" >&2
fi
objdump -p "$tmp/cm/consumer_static" | grep -q 'NEEDED.*liblarch' \
    && err "consumer_static (larch::larch_static) needs liblarch.so"
nm "$tmp/cm/consumer_static" | grep -q ' T larch_model_create$' \
    || err "consumer_static does not contain larch_model_create (not linked statically?)"

# ---- 3. pkg-config consumer ----
export PKG_CONFIG_PATH=$lib/pkgconfig
pc_version=$(pkg-config --modversion larch 2>"$tmp/pc.err") || { cat "$tmp/pc.err" >&2; err "pkg-config does not find larch in $PKG_CONFIG_PATH"; exit 1; }
[ "$pc_version" = "$version" ] || err "pkg-config says version '$pc_version', the program $version"
mkdir -p "$tmp/pc"
step pkgconfig_build make -f "$src/tests/consumer/pkgconfig/Makefile" OUT="$tmp/pc" CC="$cc" EXTRA_CFLAGS="$san_flags"
if "$tmp/pc/consumer_pkgconfig" "$pc_version" > "$tmp/pc.out" 2>&1; then
    cat "$tmp/pc.out"
else
    err "consumer_pkgconfig failed:"; cat "$tmp/pc.out" >&2
fi
loaded=$(ldd "$tmp/pc/consumer_pkgconfig" | awk '$1 ~ /^liblarch\.so/ { print $3 }')
[ "$(readlink -f "$loaded")" = "$(readlink -f "$lib/liblarch.so.$soversion")" ] \
    || err "consumer_pkgconfig loads liblarch from '$loaded', not from $lib"
if "$tmp/pc/consumer_pkgconfig_static" "$pc_version" > "$tmp/pcs.out" 2>&1; then
    cat "$tmp/pcs.out"
else
    err "consumer_pkgconfig_static (pkg-config --static, liblarch.a) failed:"; cat "$tmp/pcs.out" >&2
fi
objdump -p "$tmp/pc/consumer_pkgconfig_static" | grep -q 'NEEDED.*liblarch' \
    && err "consumer_pkgconfig_static needs liblarch.so"

[ $fail = 0 ] && echo "pkg_install: installed larch $version to a temporary prefix; find_package and pkg-config consumers (shared and static) built and passed"
exit $fail
