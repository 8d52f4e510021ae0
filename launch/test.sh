#!/usr/bin/env bash
# The whole test suite: install what is missing, build larch twice (optimized,
# and with AddressSanitizer + UndefinedBehaviorSanitizer), and run every CTest
# test in both builds. CTest sets the MPI root/oversubscribe variables itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh --test
JOBS=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"
cmake -S . -B build-asan -DLARCH_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-asan -j"$JOBS"
ctest --test-dir build-asan --output-on-failure -j"$JOBS"
