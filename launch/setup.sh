#!/usr/bin/env bash
# Install what larch needs from Debian's packages. Idempotent: packages that
# are already installed are skipped, so a second run does nothing.
# Usage: bash launch/setup.sh [--test]
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin
      libopenblas-dev libopenblas0-openmp liblapacke-dev libdnnl-dev
      libhdf5-openmpi-dev hdf5-tools
      libyaml-dev zlib1g-dev libpng-dev libjpeg-dev libjson-c-dev
      dataset-fashion-mnist gnuplot-nox)
# --test (launch/test.sh): also what only the tests use; Debian's chromium
# renders the HTML run report in tests/report_browser.sh (skipped without it).
if [ "${1:-}" = "--test" ]; then PKGS+=(chromium); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "larch setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
