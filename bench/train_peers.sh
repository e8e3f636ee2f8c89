#!/usr/bin/env bash
# train_peers.sh - images/s of whole training steps of the RepVGG-A0 train form (10 classes), in
# repvgg.c (`repvgg bench --train`) and PyTorch 1.13 (bench/train_peers_torch.py) in one run, on the
# three shapes of issue 5, and the ratio ours/PyTorch. Each runtime reports the median of RUNS steps
# after warm-up; with ROUNDS > 1 they take turns and the medians of the round medians are shown.
# KERNELS is repvgg.c's `--kernels` for the training GEMMs: auto (fp32) or amx (bf16x3 on AMX tiles).
#
#   bench/train_peers.sh [BUILD_DIR] [THREADS] [RUNS] [ROUNDS] [KERNELS]   defaults: build 2 20 1 auto
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:-build}" && pwd)"
threads="${2:-2}"
runs="${3:-20}"
rounds="${4:-1}"
kernels="${5:-auto}"
py=/usr/bin/python3
printf "%-12s %6s %14s %14s %8s %16s\n" "input" "batch" "repvgg.c img/s" "PyTorch img/s" "ratio" "peak MB (ours/pt)"
for shape in "1 28 64" "3 32 64" "3 224 8"; do
    set -- $shape
    ours=() theirs=() rss_o=0 rss_t=0
    for r in $(seq "$rounds"); do
        o=$(OMP_NUM_THREADS=$threads "$build/repvgg" bench --arch A0 --in-ch "$1" --classes 10 \
            --size "$2" --batch "$3" --train --threads "$threads" --runs "$runs" --kernels "$kernels" --json)
        t=$("$py" "$here/train_peers_torch.py" "$1" "$2" "$3" "$threads" "$runs")
        ours+=("$(echo "$o" | sed -n 's/.*"images_per_s":\([0-9.e+-]*\).*/\1/p')")
        theirs+=("$(echo "$t" | sed -n 's/.*"images_per_s": \([0-9.e+-]*\).*/\1/p')")
        rss_o=$(echo "$o" | sed -n 's/.*"peak_rss_mb":\([0-9.e+-]*\).*/\1/p')
        rss_t=$(echo "$t" | sed -n 's/.*"peak_rss_mb": \([0-9.e+-]*\).*/\1/p')
    done
    med() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
    mo=$(med "${ours[@]}")
    mt=$(med "${theirs[@]}")
    printf "%-12s %6s %14.1f %14.1f %7.2fx %8.0f/%-8.0f\n" "${1}x${2}x${2}" "$3" "$mo" "$mt" \
        "$(awk -v a="$mo" -v b="$mt" 'BEGIN { print a / b }')" "$rss_o" "$rss_t"
done
