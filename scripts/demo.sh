#!/usr/bin/env bash
# demo.sh - the main job, end to end on a fresh machine (after scripts/setup.sh):
#   1. train RepVGG-A0 (1 input channel, 10 classes) on Fashion-MNIST for a few minutes,
#   2. convert the trained train-form model to the deploy form,
#   3. evaluate both forms on the whole test set (the train form through the model's forward, its
#      branches as written; the deploy form on the fast inference engine, as it is deployed) and
#      compare their predictions one by one,
#   4. time both forms on the same input and print the speed-up of the conversion.
# Where the CPU has Intel AMX, the deploy form is also evaluated and timed on the amx kernel set
# (bf16x3, opt-in: docs/inference.md); its predictions are compared too.
# Environment: EPOCHS (default 2), LIMIT (training images used, default 10000), BATCH (64),
# OUT (run directory, default runs/demo). Builds into build/ if the tool is not there yet.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-2}
LIMIT=${LIMIT:-10000}
BATCH=${BATCH:-64}
OUT=${OUT:-runs/demo}
if [ ! -x build/repvgg ]; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j"$(nproc)" >/dev/null
fi
R=build/repvgg
rm -rf "$OUT"

echo "== 1. train A0 on Fashion-MNIST ($EPOCHS epochs, $LIMIT training images, batch $BATCH)"
$R train --arch A0 --data fashion-mnist --epochs "$EPOCHS" --batch "$BATCH" \
    --limit-train "$LIMIT" --out "$OUT" --quiet

echo "== 2. convert to the deploy form"
$R convert "$OUT/best.safetensors" "$OUT/deploy.safetensors"

echo "== 3. evaluate both forms on the 10000 test images"
$R eval --weights "$OUT/best.safetensors" --json --predictions "$OUT/pred_train.txt" >"$OUT/eval_train.json"
$R eval --weights "$OUT/deploy.safetensors" --json --predictions "$OUT/pred_deploy.txt" >"$OUT/eval_deploy.json"
top1() { sed -n 's/.*"top1":\([0-9.e-]*\).*/\1/p' "$1"; }
differ=$(paste -d' ' "$OUT/pred_train.txt" "$OUT/pred_deploy.txt" | awk '$1 != $2' | wc -l)
total=$(wc -l <"$OUT/pred_train.txt")
printf "   train form  (model forward) top-1 %.4f\n   deploy form (fast engine)   top-1 %.4f\n" \
    "$(top1 "$OUT/eval_train.json")" "$(top1 "$OUT/eval_deploy.json")"
echo "   predictions that differ between the forms: $differ of $total"
amx=0
if $R --version | grep -q "available:.* amx"; then
    amx=1
    $R eval --weights "$OUT/deploy.safetensors" --kernels amx --json \
        --predictions "$OUT/pred_amx.txt" >"$OUT/eval_amx.json"
    printf "   deploy form (AMX kernels)   top-1 %.4f, predictions that differ from the train\n" \
        "$(top1 "$OUT/eval_amx.json")"
    echo "   form's: $(paste -d' ' "$OUT/pred_train.txt" "$OUT/pred_amx.txt" | awk '$1 != $2' | wc -l) of $total"
fi

echo "== 4. speed of both forms (batch 64 at 28x28, median of 20 runs)"
$R bench --weights "$OUT/best.safetensors" --form train --size 28 --batch 64 --runs 20 --json >"$OUT/bench_train.json"
$R bench --weights "$OUT/deploy.safetensors" --size 28 --batch 64 --runs 20 --json >"$OUT/bench_deploy.json"
ms() { sed -n 's/.*"median_ms":\([0-9.e-]*\).*/\1/p' "$1"; }
t=$(ms "$OUT/bench_train.json")
d=$(ms "$OUT/bench_deploy.json")
printf "   train form  %.2f ms\n   deploy form %.2f ms\n   deploy form is %.1fx faster\n" "$t" "$d" \
    "$(awk -v a="$t" -v b="$d" 'BEGIN { print a / b }')"
if [ "$amx" -eq 1 ]; then
    $R bench --weights "$OUT/deploy.safetensors" --kernels amx --size 28 --batch 64 --runs 20 \
        --json >"$OUT/bench_amx.json"
    x=$(ms "$OUT/bench_amx.json")
    printf "   deploy form on the AMX kernels %.2f ms: %.1fx the train form's speed\n" "$x" \
        "$(awk -v a="$t" -v b="$x" 'BEGIN { print a / b }')"
fi
echo "training curves: $OUT/curves.png, log: $OUT/log.csv"
[ "$differ" -eq 0 ]
