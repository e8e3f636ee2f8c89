#!/usr/bin/env bash
# test.sh - the project's test command: builds and runs the whole test suite three times, as a
# Release build, as a portable build without SIMD kernels, and under AddressSanitizer +
# UndefinedBehaviorSanitizer, then runs the fuzzers briefly. PyTorch reference tensors are
# generated on the fly by tests/ref/gen_*.py.
# An MPI build (-DRVG_MPI=ON) then runs the data-parallel tests (tests/cli_mpi.sh, which the
# default build skips) when MPI is installed (Debian libopenmpi-dev, openmpi-bin).
# On a CPU without AVX-512 the Release test_infer and `test_conv_fast --wide-only` then run once
# more on an emulated one (tests/avx512_emu/run.sh, Bochs; about 5 minutes), so the AVX-512
# inference and training GEMM kernels execute there too; where the CPU has AVX-512F, every suite
# already ran them natively and the emulated run is skipped (RVG_AVX512_EMU=1 runs it anyway).
# Usage: scripts/test.sh [fast]   ("fast" skips the portable and sanitizer builds, the emulated
# AVX-512 run and the fuzzers)
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
    if grep -qw avx512f /proc/cpuinfo 2>/dev/null && [ "${RVG_AVX512_EMU:-0}" != 1 ]; then
        echo "== emulated AVX-512 run skipped: this CPU has AVX-512F, the suites ran it natively"
    else
        echo "== AVX-512 inference and training GEMM kernels on an emulated Skylake-X (Bochs)"
        bash tests/avx512_emu/run.sh build-test/test_infer build-test/avx512-emu \
            build-test/test_conv_fast
    fi
    # The build for CPUs without AVX2 (or other compilers' targets): plain-C micro-kernels and
    # transforms everywhere, so the whole-network PyTorch tests run on the portable twins too.
    echo "== portable build (-DRVG_SIMD=OFF)"
    run_suite build-portable -DRVG_SIMD=OFF
    echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_suite build-asan -DRVG_SANITIZE=ON
    if [ -x fuzz/run.sh ] || [ -f fuzz/run.sh ]; then
        echo "== fuzzers (30 s each)"
        bash fuzz/run.sh 30
    fi
fi
echo "all tests passed"
