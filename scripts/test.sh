#!/usr/bin/env bash
# test.sh - the project's test command: builds and runs the whole test suite twice, once as a
# Release build and once under AddressSanitizer + UndefinedBehaviorSanitizer, then runs the
# fuzzers briefly. PyTorch reference tensors are generated on the fly by tests/ref/gen_*.py.
# An MPI build (-DRVG_MPI=ON) then runs the data-parallel tests (tests/cli_mpi.sh, which the
# default build skips) when MPI is installed (Debian libopenmpi-dev, openmpi-bin).
# Usage: scripts/test.sh [fast]   ("fast" skips the sanitizer build and the fuzzers)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
run_suite() { # name, cmake options...
    local dir=$1
    shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
    cmake --build "$dir" -j"$jobs" >/dev/null
    (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 1800)
}
echo "== Release build"
run_suite build-test
if command -v mpicc > /dev/null && command -v mpirun > /dev/null; then
    echo "== MPI build: data-parallel training"
    cmake -S . -B build-mpi-test -DCMAKE_BUILD_TYPE=Release -DRVG_MPI=ON >/dev/null
    cmake --build build-mpi-test -j"$jobs" --target repvgg >/dev/null
    (cd build-mpi-test && ctest --output-on-failure -R mpi --timeout 600)
else
    echo "== MPI build skipped: no mpicc/mpirun (install libopenmpi-dev openmpi-bin)"
fi
if [ "${1:-}" != fast ]; then
    echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_suite build-asan -DRVG_SANITIZE=ON
    if [ -x fuzz/run.sh ] || [ -f fuzz/run.sh ]; then
        echo "== fuzzers (30 s each)"
        bash fuzz/run.sh 30
    fi
fi
echo "all tests passed"
