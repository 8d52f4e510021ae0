#!/usr/bin/env bash
# layout_deps.sh SRC - the source folders depend on each other without a
# cycle, in the order of docs/design.md ("Where things live").
#
# Every `#include "x/y.h"` of src/<folder>/*.c and *.h and every
# `#include "larch/y.h"` of include/larch/*.h is an edge from the includer's
# folder to the folder of the header: an internal header "nn/layers.h"
# belongs to its folder (nn); a public header to the folder that implements
# it (the map below). Public headers are followed transitively (their own
# includes are edges of their folder), so src/io including larch/checkpoint.h
# depends on what checkpoint.h includes too. An unmapped header, a cycle (the
# cycle is printed), an edge against the intended order, or the umbrella
# larch/larch.h outside src/cli fails. Bash only, no Python.
#
# The script first checks itself on small synthetic trees (a cycle, an
# unmapped header, the umbrella outside cli), so it cannot pass vacuously.
set -u
SRC=${1:?usage: layout_deps.sh SRC}

# The intended order: a folder may include only from folders before it.
# datasets/ (top level: the converters of `larch data convert`) sits
# between the library and the program that links them.
ORDER=(core nn optim parallel data io train compress datasets cli)

# public header -> the folder that implements it
declare -A PUBLIC=(
  [error.h]=core [rng.h]=core [version.h]=core
  [model.h]=nn [flow.h]=nn
  [optim.h]=optim
  [comm.h]=parallel
  [data.h]=data
  [cfg.h]=io [checkpoint.h]=io [safetensors.h]=io
  [model_cfg.h]=train [optim_cfg.h]=train [train.h]=train
  [compress.h]=compress
  [larch.h]=umbrella
)

# analyze ROOT: prints the edges and problems; returns 1 on any problem.
analyze() {
  local root=$1 bad=0
  declare -A rank=() edges=() why=()
  local i
  for i in "${!ORDER[@]}"; do rank[${ORDER[$i]}]=$i; done

  # folder_of HEADER: sets FOLDER to its folder ("" when unmapped)
  folder_of() {
    local h=$1
    FOLDER=""
    case $h in
      larch/*) FOLDER=${PUBLIC[${h#larch/}]:-} ;;
      */*) [ -n "${rank[${h%%/*}]:-}" ] && FOLDER=${h%%/*} ;;
    esac
  }
  add_edge() {   # FROM TO FILE HEADER
    local from=$1 to=$2
    [ "$from" = "$to" ] && return
    if [ -z "${edges[$from]:-}" ] || [[ " ${edges[$from]} " != *" $to "* ]]; then
      edges[$from]="${edges[$from]:-} $to"
      why[$from>$to]="$3 includes \"$4\""
    fi
  }
  scan() {   # FILE FOLDER
    local file=$1 from=$2 h to
    while IFS= read -r h; do
      folder_of "$h"; to=$FOLDER
      if [ -z "$to" ]; then
        echo "unmapped header \"$h\" (included by ${file#$root/}): add it to PUBLIC in tests/layout_deps.sh"
        bad=1; continue
      fi
      if [ "$to" = umbrella ]; then
        if [ "$from" != cli ]; then
          echo "${file#$root/} includes the umbrella \"larch/larch.h\": only src/cli may; include the headers it uses"
          bad=1
        fi
        continue
      fi
      add_edge "$from" "$to" "${file#$root/}" "$h"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
  }
  local f dir folder
  for dir in "$root"/src/*/; do
    folder=$(basename "$dir")
    if [ -z "${rank[$folder]:-}" ]; then echo "src/$folder is not in the intended order (ORDER in tests/layout_deps.sh)"; bad=1; continue; fi
    for f in "$dir"*.c "$dir"*.h; do [ -e "$f" ] && scan "$f" "$folder"; done
  done
  for f in "$root"/datasets/*.c "$root"/datasets/*.h; do [ -e "$f" ] && scan "$f" datasets; done
  for f in "$root"/include/larch/*.h; do
    [ -e "$f" ] || continue
    folder=${PUBLIC[$(basename "$f")]:-}
    if [ -z "$folder" ]; then echo "unmapped header \"larch/$(basename "$f")\": add it to PUBLIC in tests/layout_deps.sh"; bad=1; continue; fi
    [ "$folder" = umbrella ] && continue
    scan "$f" "$folder"
  done

  # cycles: depth-first search, printing the first cycle found
  declare -A state=()
  local -a stack=()
  local cycle=""
  dfs() {
    local n=$1 m k
    state[$n]=1; stack+=("$n")
    for m in ${edges[$n]:-}; do
      [ -n "$cycle" ] && return
      if [ "${state[$m]:-0}" = 1 ]; then
        cycle=""
        for ((k = ${#stack[@]} - 1; k >= 0; k--)); do
          cycle="${stack[$k]} -> ${cycle}"
          [ "${stack[$k]}" = "$m" ] && break
        done
        cycle="$cycle$m"
        return
      fi
      [ "${state[$m]:-0}" = 0 ] && dfs "$m"
    done
    unset 'stack[${#stack[@]}-1]'
    state[$n]=2
  }
  local n
  for n in "${ORDER[@]}"; do [ -z "$cycle" ] && [ "${state[$n]:-0}" = 0 ] && dfs "$n"; done
  if [ -n "$cycle" ]; then
    echo "folder cycle: $cycle"
    local -a c; read -r -a c <<<"${cycle//->/}"
    for ((k = 0; k + 1 < ${#c[@]}; k++)); do echo "  ${c[$k]} -> ${c[$k+1]}: ${why[${c[$k]}>${c[$k+1]}]}"; done
    bad=1
  fi
  # the intended order
  local m
  for n in "${ORDER[@]}"; do
    for m in ${edges[$n]:-}; do
      if [ "${rank[$m]}" -ge "${rank[$n]}" ]; then
        echo "$n depends on $m, against the order ${ORDER[*]}: ${why[$n>$m]}"
        bad=1
      fi
    done
  done
  for n in "${ORDER[@]}"; do echo "graph: $n ->${edges[$n]:-}"; done
  return $bad
}

fails=0
self_check() {   # NAME NEEDLE SETUP-FUNCTION: a synthetic tree that must fail with NEEDLE
  local t; t=$(mktemp -d /tmp/layout_deps_XXXXXX)
  mkdir -p "$t/src/core" "$t/src/nn" "$t/include/larch"
  "$3" "$t"
  local out; out=$(analyze "$t"); local st=$?
  rm -rf "$t"
  if [ $st -ne 0 ] && grep -qF -- "$2" <<<"$out"; then echo "ok: self-check: $1"
  else echo "FAIL: self-check: $1 (exit $st, want the message '$2'): $out"; fails=$((fails + 1)); fi
}
tree_cycle() {
  printf '#include "nn/layers.h"\n' > "$1/src/core/blas.c"
  printf '#include "larch/error.h"\n' > "$1/src/nn/layers.h"
  printf '#include "larch/model.h"\n' > "$1/include/larch/error.h"   # core's public header includes nn's
  printf '#include "larch/error.h"\n' > "$1/include/larch/model.h"
}
tree_unmapped() { printf '#include "larch/mystery.h"\n' > "$1/src/nn/a.c"; }
tree_umbrella() { printf '#include "larch/larch.h"\n' > "$1/src/core/a.c"; }
tree_order() { printf '#include "larch/model.h"\n' > "$1/src/core/a.c"; printf '#include "larch/error.h"\n' > "$1/include/larch/model.h"; }
self_check "a cycle is named" "folder cycle: core -> nn -> core" tree_cycle
self_check "an unmapped header is named" 'unmapped header "larch/mystery.h" (included by src/nn/a.c)' tree_unmapped
self_check "the umbrella outside cli" 'src/core/a.c includes the umbrella' tree_umbrella
self_check "an edge against the order" 'core depends on nn, against the order' tree_order

out=$(analyze "$SRC"); st=$?
echo "$out"
if [ $st -eq 0 ]; then echo "ok: the folders of $SRC form an acyclic graph in the order ${ORDER[*]}"
else echo "FAIL: the folder graph of $SRC (above)"; fails=$((fails + 1)); fi
echo "layout_deps: $fails failed"
[ "$fails" -eq 0 ]
