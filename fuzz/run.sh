#!/usr/bin/env bash
# run.sh DURATION - builds the libFuzzer targets with clang in build-fuzz/ and runs each one for
# DURATION seconds (default 30), one after the other (the machine has two cores; the build uses
# both). Seeds come from fuzz/corpus/<name>/ and are only read; what the fuzzer discovers goes to
# build-fuzz/corpus/<name>/, crashes to build-fuzz/artifacts/. Exits non-zero when a fuzzer finds
# a crash, a leak, a sanitizer report, a timeout or an out-of-memory, or when the build fails.
set -euo pipefail

duration=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz

# Warnings are not errors here: clang warns about things gcc (the CI compiler) does not, and this
# build exists to find crashes. OpenMP and BLAS stay off so their runtimes don't confuse the
# sanitizers, and so do the SIMD kernels (RVG_SIMD=OFF): the fuzzed parsers never reach them, and
# clang with the fuzzer and sanitizers spent over 15 minutes compiling the AVX-512 test twin
# (kern_avx512_twin.c, whose 32-channel kernels spill 48 accumulators per pixel).
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DRVG_FUZZ=ON -DRVG_WERROR=OFF -DRVG_OPENMP=OFF -DRVG_BLAS=OFF -DRVG_SIMD=OFF >/dev/null
cmake --build "$build" -j2 --target fuzz_pickle fuzz_safetensors

status=0
mkdir -p "$build/artifacts"
for name in pickle safetensors; do
    work=$build/corpus/$name
    mkdir -p "$work"
    dict=()
    [ -f "$root/fuzz/$name.dict" ] && dict=(-dict="$root/fuzz/$name.dict")
    echo "== fuzz_$name for ${duration}s"
    if ! "$build/fuzz_$name" -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 \
            -max_len=16384 -print_final_stats=1 -artifact_prefix="$build/artifacts/$name-" \
            "${dict[@]}" "$work" "$root/fuzz/corpus/$name" 2>"$build/fuzz_$name.log"; then
        tail -n 60 "$build/fuzz_$name.log"
        echo "fuzz_$name: FAILED (artifacts in $build/artifacts, log in $build/fuzz_$name.log)"
        status=1
    else
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done)" "$build/fuzz_$name.log" \
            || true
        echo "fuzz_$name: clean"
    fi
done
exit $status
