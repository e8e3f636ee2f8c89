#!/usr/bin/env bash
# cli_onnx.sh - `repvgg export` writes ONNX that ONNX Runtime runs to the same logits as
# `repvgg predict`. Args: TOOL SCRATCH PYTHON.
#
# Two random train-form models from Python (no metadata: the architecture is inferred): one with
# a grouped layer and an identity branch, one with squeeze-excitation. Each is exported in the
# deploy form (re-parameterised on export) and the train form (BatchNormalization branches), run
# in onnxruntime-node (tests/onnx_run.js) at batch sizes 1 and 3 (the batch dimension is symbolic),
# and compared with `repvgg predict` within 1e-4 x max|logit|. tests/ref/onnx_inspect.py checks the
# protobuf itself: IR/opset, input/output shapes, initializers bit-identical to the weights under
# their official names, topological order, operators of each form. Bad requests must fail.
#
# onnxruntime-node is looked up in NODE_PATH, then node_modules in the build directory and the
# repository root (scripts/setup.sh installs it there). Exit 77 (skipped) only when node or
# onnxruntime-node cannot be found, or Python has no torch.
set -u
tool=$1 dir=$2 py=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=$(cd "$(dirname "$tool")" && pwd)
rm -rf "$dir" && mkdir -p "$dir"
export PYTHONPATH="$here/ref"
pass=0 fail=0
ok() { echo "  ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }

if ! command -v node >/dev/null 2>&1; then
    echo "SKIPPED: node not found (Debian package nodejs)"
    exit 77
fi
ort_found=0
for d in ${NODE_PATH:+${NODE_PATH//:/ }} "$build/node_modules" "$root/node_modules"; do
    if [ -d "$d/onnxruntime-node" ]; then
        export NODE_PATH="$d${NODE_PATH:+:$NODE_PATH}"
        ort_found=1
        break
    fi
done
if [ $ort_found -eq 0 ] || ! node -e "require('onnxruntime-node')" >/dev/null 2>&1; then
    echo "SKIPPED: onnxruntime-node not found (run at the repository root:"
    echo "  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save onnxruntime-node)"
    exit 77
fi
echo "onnxruntime-node from $NODE_PATH"

# ---- random models and inputs ------------------------------------------------------------------
"$py" "$here/ref/random_model.py" "$dir/g.safetensors" --blocks 1,2,1,1 --width 0.25,0.25,0.25,0.5 \
    --groups 2@2 --classes 10 --seed 1 \
    --input "$dir/x1.npy" 1 3 48 48 --input "$dir/x3.npy" 3 3 48 48 \
    --input "$dir/x_odd.npy" 1 3 40 40
rc=$?
if [ $rc -eq 77 ]; then echo "SKIPPED: no torch"; exit 77; fi
[ $rc -eq 0 ] && ok "python wrote a grouped train-form model" || bad "random_model.py g ($rc)"
"$py" "$here/ref/random_model.py" "$dir/se.safetensors" --blocks 1,1,2,1 --width 0.5,0.5,0.5,0.5 \
    --se --classes 7 --seed 2 --input "$dir/xs1.npy" 1 3 40 56 --input "$dir/xs3.npy" 3 3 40 56 \
    && ok "python wrote a squeeze-excitation train-form model" || bad "random_model.py se"
"$tool" convert "$dir/g.safetensors" "$dir/g_deploy.safetensors" >/dev/null \
    && "$tool" convert "$dir/se.safetensors" "$dir/se_deploy.safetensors" >/dev/null \
    && ok "repvgg convert (deploy weights to compare initializers with)" || bad "repvgg convert"

# ---- export ------------------------------------------------------------------------------------
ex() { # name, args...
    local name=$1
    shift
    "$tool" export "$@" >"$dir/$name.log" 2>&1 && ok "export $name" \
        || { bad "export $name"; cat "$dir/$name.log"; }
}
ex g_deploy --weights "$dir/g.safetensors" --onnx "$dir/g_deploy.onnx" --size 48
ex g_train --weights "$dir/g.safetensors" --onnx "$dir/g_train.onnx" --size 48 --form train
ex g_from_deploy --weights "$dir/g_deploy.safetensors" --onnx "$dir/g_from_deploy.onnx" --size 48
ex se_deploy --weights "$dir/se.safetensors" --onnx "$dir/se_deploy.onnx" --size dynamic
ex se_train --weights "$dir/se.safetensors" --onnx "$dir/se_train.onnx" --size dynamic \
    --form train --opset 13
cmp -s "$dir/g_deploy.onnx" "$dir/g_from_deploy.onnx" \
    && ok "deploy export of train weights == export of converted weights (byte for byte)" \
    || bad "deploy export differs between train and converted weights"

# ---- structure ---------------------------------------------------------------------------------
insp() { # onnx, weights, form, H, W
    "$py" "$here/ref/onnx_inspect.py" "$@" >"$dir/inspect.log" 2>&1 \
        && ok "structure of $(basename "$1")" \
        || { bad "structure of $(basename "$1")"; cat "$dir/inspect.log"; }
}
insp "$dir/g_deploy.onnx" "$dir/g_deploy.safetensors" deploy 48 48
insp "$dir/g_train.onnx" "$dir/g.safetensors" train 48 48
insp "$dir/se_deploy.onnx" "$dir/se_deploy.safetensors" deploy 0 0
insp "$dir/se_train.onnx" "$dir/se.safetensors" train 0 0

# ---- ONNX Runtime vs repvgg predict ------------------------------------------------------------
same() { # onnx, weights, input, what
    local tag
    tag=$(basename "$1" .onnx)_$(basename "$3" .npy)
    if ! "$tool" predict --weights "$2" --input "$3" --output "$dir/$tag.c.npy" >/dev/null; then
        bad "$4: repvgg predict"
        return
    fi
    if ! node "$here/onnx_run.js" "$1" "$3" "$dir/$tag.ort.npy" >"$dir/$tag.log" 2>&1; then
        bad "$4: onnxruntime"
        cat "$dir/$tag.log"
        return
    fi
    local msg
    if msg=$("$py" - "$dir/$tag.c.npy" "$dir/$tag.ort.npy" <<'EOF'
import sys
import numpy as np
c, o = np.load(sys.argv[1]), np.load(sys.argv[2])
assert c.shape == o.shape, "shapes %s vs %s" % (c.shape, o.shape)
err, scale = float(np.abs(c - o).max()), float(np.abs(c).max())
print("shape %s, max|diff| %.3g, max|logit| %.3g" % (c.shape, err, scale))
sys.exit(0 if scale > 0 and err <= 1e-4 * scale else 1)
EOF
    ); then
        ok "$4: ORT == repvgg predict ($msg)"
    else
        bad "$4: ORT vs repvgg predict: $msg"
    fi
}
for n in 1 3; do
    same "$dir/g_deploy.onnx" "$dir/g.safetensors" "$dir/x$n.npy" "grouped deploy, batch $n"
    same "$dir/g_train.onnx" "$dir/g.safetensors" "$dir/x$n.npy" "grouped train form, batch $n"
    same "$dir/se_deploy.onnx" "$dir/se.safetensors" "$dir/xs$n.npy" "SE deploy, batch $n, 40x56"
    same "$dir/se_train.onnx" "$dir/se.safetensors" "$dir/xs$n.npy" "SE train form, batch $n, 40x56"
done
# symbolic H and W take another size too
same "$dir/se_deploy.onnx" "$dir/se.safetensors" "$dir/x3.npy" "SE deploy, dynamic size 48x48"
# a fixed size is enforced by the runtime
node "$here/onnx_run.js" "$dir/g_deploy.onnx" "$dir/x_odd.npy" "$dir/odd.npy" >/dev/null 2>&1 \
    && bad "ORT accepted 40x40 for a model exported at 48x48" \
    || ok "ORT refuses 40x40 for a model exported at 48x48 (the size is fixed)"
# weights as `repvgg train` writes them: without --size the input size is the recorded
# repvgg.size, and a training checkpoint (momentum.* beside the weights) exports its raw weights
"$py" "$here/ref/with_meta.py" "$dir/g.safetensors" "$dir/g_s40.safetensors" repvgg.size=40 \
    && "$py" "$here/ref/with_meta.py" "$dir/g.safetensors" "$dir/g_ckpt.safetensors" \
        repvgg.size=48 --copy-prefix momentum. \
    && "$py" "$here/ref/with_meta.py" "$dir/g.safetensors" "$dir/g_s48.safetensors" \
        repvgg.size=48 \
    && "$py" "$here/ref/with_meta.py" "$dir/g.safetensors" "$dir/g_badsize.safetensors" \
        repvgg.size=40x \
    && ok "python wrote weights with repvgg.size 40, a checkpoint, a malformed size" \
    || bad "with_meta.py"
ex g_recorded --weights "$dir/g_s40.safetensors" --onnx "$dir/g_recorded.onnx"
grep -q "input (N, 3, 40x40)" "$dir/g_recorded.log" \
    && ok "export without --size takes the recorded 40x40" \
    || bad "recorded size not taken: $(cat "$dir/g_recorded.log")"
same "$dir/g_recorded.onnx" "$dir/g.safetensors" "$dir/x_odd.npy" "deploy at the recorded 40x40"
"$py" - "$dir/g_recorded.onnx" <<'EOF' \
    && ok "the recorded size is in the ONNX metadata_props (repvgg.size = 40)" \
    || bad "no repvgg.size entry in the exported metadata_props"
import sys
# ModelProto.metadata_props (field 14, tag 0x72) holding StringStringEntryProto {key 1, value 2}
entry = b"\x0a\x0brepvgg.size\x12\x0240"
sys.exit(0 if b"\x72" + bytes([len(entry)]) + entry in open(sys.argv[1], "rb").read() else 1)
EOF
ex g_ckpt --weights "$dir/g_ckpt.safetensors" --onnx "$dir/g_ckpt.onnx"
ex g_s48 --weights "$dir/g_s48.safetensors" --onnx "$dir/g_s48.onnx"
cmp -s "$dir/g_ckpt.onnx" "$dir/g_s48.onnx" \
    && ok "a checkpoint exports its raw weights (byte for byte the plain weights' export)" \
    || bad "checkpoint export differs from the plain weights' export"
# other opsets load and agree
for v in 17 21; do
    ex "se_opset$v" --weights "$dir/se.safetensors" --onnx "$dir/se_opset$v.onnx" --size dynamic \
        --opset "$v" --form train
    same "$dir/se_opset$v.onnx" "$dir/se.safetensors" "$dir/xs3.npy" "opset $v"
done

# ---- bad requests ------------------------------------------------------------------------------
fails() { # expected exit, what, args...
    local want=$1 what=$2
    shift 2
    "$tool" export "$@" >"$dir/err.log" 2>&1
    local rc=$?
    if [ $rc -eq "$want" ] && [ -s "$dir/err.log" ]; then
        ok "$what -> exit $rc: $(head -1 "$dir/err.log")"
    else
        bad "$what: exit $rc, want $want"
        cat "$dir/err.log"
    fi
}
fails 1 "train form of deploy weights" --weights "$dir/g_deploy.safetensors" \
    --onnx "$dir/no.onnx" --form train
fails 1 "missing weights" --weights "$dir/none.safetensors" --onnx "$dir/no.onnx"
fails 1 "unwritable output" --weights "$dir/g.safetensors" --onnx "$dir/no/such/dir/x.onnx"
fails 2 "opset 12" --weights "$dir/g.safetensors" --onnx "$dir/no.onnx" --opset 12
fails 2 "bad form" --weights "$dir/g.safetensors" --onnx "$dir/no.onnx" --form fused
fails 2 "bad size" --weights "$dir/g.safetensors" --onnx "$dir/no.onnx" --size 0
fails 2 "no --onnx" --weights "$dir/g.safetensors"
fails 1 "malformed recorded size" --weights "$dir/g_badsize.safetensors" \
    --onnx "$dir/no.onnx"
[ ! -e "$dir/no.onnx" ] && ! ls "$dir"/*.tmp.* >/dev/null 2>&1 \
    && ok "failed exports leave no output and no temporary file" || bad "leftover files"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
