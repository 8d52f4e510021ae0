#!/usr/bin/env bash
# ThreadSanitizer over larch's own threads (docs/build.md, "Thread sanitizer"):
#   bash launch/tsan.sh [BUILD_DIR]      (default build-tsan)
# Builds larch with -fsanitize=thread (LARCH_NATIVE=ON: TSan cannot run the
# ifunc resolvers of the run-time dispatched kernels) and runs what starts a
# thread besides OpenMP: the loader's prefetch thread (test_loader), the
# gradient communication thread and the watchdog (mpi_grad_sync on 2 and 4
# ranks; a 2-rank training run with dist.comm_thread, SyncBatchNorm and
# checkpoints). One OpenMP thread: GCC's libgomp is not instrumented, so
# TSan cannot see its barriers and reports every parallel loop (use an
# Archer/LLVM OpenMP runtime for those). Prints one JSON line per run with
# the number of reports; exits 1 if any run reported.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-tsan}
bash launch/setup.sh
cmake -S . -B "$B" -DLARCH_NATIVE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="-fsanitize=thread" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" > /dev/null
cmake --build "$B" -j"$(nproc)" --target test_loader mpi_grad_sync larch_cli > /dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 LARCH_TEST_DATA=$PWD/tests/data
export TSAN_OPTIONS="halt_on_error=0 report_signal_unsafe=0 suppressions=$PWD/tests/tsan.supp"
TMP=$(mktemp -d /tmp/larch_tsan_XXXXXX); trap 'rm -rf "$TMP"' EXIT
bad=0
check() {  # check NAME COMMAND...: run, count TSan reports
  local name=$1; shift
  local st=0; timeout 900 "$@" > "$TMP/$name.log" 2>&1 || st=$?
  local n; n=$(grep -c 'WARNING: ThreadSanitizer' "$TMP/$name.log" || true)
  echo "{\"tsan\":\"$name\",\"exit\":$st,\"reports\":$n}"
  if [ "$n" -gt 0 ] || [ "$st" -ne 0 ]; then bad=1; grep -A20 'WARNING: ThreadSanitizer' "$TMP/$name.log" | head -60 >&2; fi
}
check test_loader "$B/tests/test_loader"
check mpi_grad_sync_np2 mpiexec -n 2 "$B/tests/mpi_grad_sync"
check mpi_grad_sync_np4 mpiexec -n 4 "$B/tests/mpi_grad_sync"
check train_comm_thread_np2 mpiexec -n 2 "$B/larch" train tests/configs/synth_cnn_sync.yaml --out "$TMP/run" \
  --set dist.comm_thread=true --set train.max_steps=12 --set checkpoint.every_steps=5
exit $bad
