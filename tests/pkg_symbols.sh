#!/usr/bin/env bash
# pkg_symbols.sh - liblarch.so exports exactly the public API and carries the
# soname of docs/build.md.
#   bash tests/pkg_symbols.sh LIBLARCH_SO PROJECT_VERSION INCLUDE_DIR [SANITIZE]
# (registered in tests/CMakeLists.txt with the built library,
# ${PROJECT_VERSION}, include/larch and ${LARCH_SANITIZE}).
#  - every defined dynamic symbol starts with larch_ (the sources are built
#    with hidden visibility; only LARCH_API declarations are exported); in
#    a sanitized build, AddressSanitizer adds an ODR indicator
#    __odr_asan.larch_X beside each exported object larch_X, and those (only
#    those) are accepted too;
#  - the exported names are exactly the LARCH_API declarations of the public
#    headers: none missing (a consumer could not link a declared function),
#    none extra;
#  - the SONAME is liblarch.so.MAJOR.MINOR while the major version is 0 and
#    liblarch.so.MAJOR from 1.0 on, and the file is liblarch.so.VERSION.
# Fails listing the offending names.
set -u
lib=$1 version=$2 incdir=$3 sanitize=${4:-OFF}
fail=0
err() { echo "pkg_symbols: $*" >&2; fail=1; }

[ -f "$lib" ] || { echo "pkg_symbols: $lib: no such file" >&2; exit 1; }
command -v nm >/dev/null && command -v objdump >/dev/null || { echo "pkg_symbols: needs binutils (nm, objdump)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Defined dynamic symbols: "ADDRESS TYPE NAME" (undefined ones are the
# library's own imports from libc, MPI, ...).
nm -D --defined-only "$lib" > "$tmp/nm" || { echo "pkg_symbols: nm -D $lib failed" >&2; exit 1; }
awk 'NF >= 3 { print $3 }' "$tmp/nm" | sed 's/@.*//' | sort -u > "$tmp/all"
case $sanitize in
    ON|on|1|TRUE|true|YES|yes)
        # ODR indicators of exported larch_ objects (and only of those).
        grep '^__odr_asan\.' "$tmp/all" | sed 's/^__odr_asan\.//' | sort > "$tmp/odr"
        grep -v '^__odr_asan\.' "$tmp/all" > "$tmp/exported"
        comm -23 "$tmp/odr" "$tmp/exported" | sed 's/^/__odr_asan./' >> "$tmp/exported"
        sort -o "$tmp/exported" "$tmp/exported" ;;
    *) cp "$tmp/all" "$tmp/exported" ;;
esac
n_exported=$(wc -l < "$tmp/exported")
[ "$n_exported" -gt 0 ] || err "$lib exports no symbols at all"

grep -v '^larch_' "$tmp/exported" > "$tmp/foreign"
if [ -s "$tmp/foreign" ]; then
    err "$lib exports $(wc -l < "$tmp/foreign") symbol(s) without the larch_ prefix:"
    sed 's/^/    /' "$tmp/foreign" >&2
fi

# The LARCH_API declarations: the declared name is the first larch_ identifier
# followed by '(' (a function) or '[' / ';' (an object) on the line.
grep -h 'LARCH_API' "$incdir"/*.h | grep -v '^#' \
    | grep -o 'larch_[A-Za-z0-9_]*[[:space:]]*[[(;]' | sed 's/[[:space:]]*[[(;]$//' \
    | sort -u > "$tmp/declared"
n_declared=$(wc -l < "$tmp/declared")
n_lines=$(grep -h 'LARCH_API' "$incdir"/*.h | grep -vc '^#')
[ "$n_declared" -eq "$n_lines" ] \
    || err "found $n_declared names on $n_lines LARCH_API lines of $incdir/*.h (a declaration this script cannot read)"

comm -23 "$tmp/declared" "$tmp/exported" > "$tmp/missing"
if [ -s "$tmp/missing" ]; then
    err "declared LARCH_API in $incdir but not exported by $lib:"
    sed 's/^/    /' "$tmp/missing" >&2
fi
comm -13 "$tmp/declared" "$tmp/exported" | grep '^larch_' > "$tmp/extra"
if [ -s "$tmp/extra" ]; then
    err "exported by $lib but not declared LARCH_API in $incdir (internal symbols leak):"
    sed 's/^/    /' "$tmp/extra" >&2
fi

# The soname policy.
IFS=. read -r major minor _ <<< "$version"
if [ "$major" = 0 ]; then want="liblarch.so.$major.$minor"; else want="liblarch.so.$major"; fi
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = "$want" ] || err "SONAME of $lib is '${soname:-<none>}', expected '$want' (version $version)"
case $(basename "$lib") in
    "liblarch.so.$version") ;;
    *) err "the shared library file is $(basename "$lib"), expected liblarch.so.$version" ;;
esac

[ $fail = 0 ] && echo "pkg_symbols: $n_exported exported symbols = the $n_declared LARCH_API declarations; SONAME $soname"
exit $fail
