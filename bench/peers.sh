#!/usr/bin/env bash
# peers.sh - times ONNX Runtime and PyTorch on the same RepVGG weights as bench_infer, and prints
# peer_time / our_time for (threads, batch) = (2, 1), (2, 8), (1, 1), plus ResNet-18 in ORT.
# Ours runs with the default (fp32) kernels and, where the CPU has Intel AMX, once more with the
# AMX kernel set (RVG_INFER_ISA=amx, bf16x3; docs/inference.md), each in its own rows.
#
#   bench/peers.sh [BUILD_DIR] [MODEL] [RUNS] [ROUNDS]     defaults: build-infer a0 30 1
#
# With ROUNDS > 1 the three runtimes take turns ROUNDS times (RUNS timed runs each per turn) and
# the table shows the median of the per-round medians: on a machine shared with other jobs, the
# load then falls on all runtimes alike. A second table gives each runtime's peak resident set at
# batch 1 and 8 (2 threads), measured in a process of its own per batch.
#
# Needs: BUILD_DIR/bench_infer (cmake --build BUILD_DIR --target bench_infer), Debian's
# /usr/bin/python3 with python3-torch, node + npm, and onnxruntime-node: the one scripts/setup.sh
# put in the checkout's node_modules, or else one installed with `ONNXRUNTIME_NODE_INSTALL=skip npm
# install --prefix BUILD_DIR/peers` (nothing lands in the source tree). All three runtimes are timed in turn on the same machine; on a shared machine, run it
# twice and compare. Exits non-zero if any peer's logits disagree with ours.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:-build-infer}" && pwd)"
model="${2:-a0}"
runs="${3:-30}"
rounds="${4:-1}"
py=/usr/bin/python3
work="$build/peers"
mkdir -p "$work"

# onnxruntime-node: the one scripts/setup.sh installed at the top of the checkout, else one
# installed here into $work (--prefix: without it npm walks up to the nearest package root).
mods="$(cd "$here/.." && pwd)/node_modules"
if [ ! -d "$mods/onnxruntime-node" ]; then
    mods="$work/node_modules"
    if [ ! -d "$mods/onnxruntime-node" ]; then
        echo "installing onnxruntime-node into $work" >&2
        ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$work" --no-save --no-audit --no-fund \
            onnxruntime-node >/dev/null
    fi
fi

"$build/bench_infer" --model "$model" --dump "$work/$model.safetensors"
sets=(auto)
if RVG_INFER_ISA=amx "$build/bench_infer" --model "$model" --runs 1 --json > /dev/null 2>&1; then
    sets+=(amx)
fi
out="$work/results_$model.jsonl"
: > "$out"
for round in $(seq "$rounds"); do
    for set in "${sets[@]}"; do
        echo "== round $round/$rounds: ours (bench_infer, kernels $set)" >&2
        RVG_INFER_ISA=$set "$build/bench_infer" --model "$model" --runs "$runs" --json \
            | tee -a "$out"
    done
    echo "== PyTorch TorchScript (frozen + optimize_for_inference)" >&2
    "$py" "$here/peers_torch.py" "$work/$model.safetensors" "$work" "$runs" | tee -a "$out"
    ortv="$(node -p "require('$mods/onnxruntime-node/package.json').version")"
    echo "== ONNX Runtime $ortv" >&2
    NODE_PATH="$mods" node "$here/peers_ort.js" "$work/$model.onnx" "$model" "$runs" \
        "$work/${model}_input.f32" "$work/${model}_logits.f32" | tee -a "$out"
    NODE_PATH="$mods" node "$here/peers_ort.js" "$work/resnet18.onnx" resnet18 \
        "$runs" | tee -a "$out"
done

# Peak resident set: one process per runtime and batch (2 threads), so each number is that
# configuration's, with the runtime and the model's weights included.
echo "== peak memory (one process per runtime and batch)" >&2
for batch in 1 8; do
    for set in "${sets[@]}"; do
        RVG_INFER_ISA=$set "$build/bench_infer" --model "$model" --threads 2 --batch "$batch" \
            --runs 10 --json | sed 's/^{/{"mem":1,/' | tee -a "$out"
    done
    "$py" "$here/peers_torch.py" "$work/$model.safetensors" "$work" 10 "rss:$batch" | tee -a "$out"
    NODE_PATH="$mods" node "$here/peers_ort.js" "$work/$model.onnx" "$model" 10 "rss:$batch" \
        | tee -a "$out"
done

"$py" "$here/peers_summary.py" "$out" "$model" "$ortv"
