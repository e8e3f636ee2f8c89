#!/usr/bin/env bash
# cli_safetensors.sh - PyTorch writes safetensors and .pth checkpoints, C reads them; C writes,
# PyTorch reads.
# A random train-form state dict saved by Python (no metadata: the architecture is inferred) goes
# through `repvgg convert` and `repvgg predict`; Python checks the deploy tensors against its own
# conversion and the logits against its own forward pass. Args: TOOL SCRATCH PYTHON.
set -u
tool=$1 dir=$2 py=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dir" && mkdir -p "$dir"
export PYTHONPATH="$here/ref"
pass=0 fail=0
ok() { echo "  ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }

"$py" "$here/ref/st_roundtrip.py" make "$dir"
rc=$?
if [ $rc -eq 77 ]; then echo "SKIPPED: no torch"; exit 77; fi
[ $rc -eq 0 ] && ok "python wrote a train-form state dict" || bad "python make ($rc)"

"$tool" convert "$dir/train.safetensors" "$dir/deploy.safetensors" && ok "repvgg convert" || bad "repvgg convert"
"$tool" predict --weights "$dir/deploy.safetensors" --input "$dir/x.npy" --output "$dir/pred.npy" \
    && ok "repvgg predict" || bad "repvgg predict"
"$py" "$here/ref/st_roundtrip.py" check "$dir" && ok "python reads C's deploy file and agrees" \
    || bad "python check"
# the train form, predicted directly, agrees too
"$tool" predict --weights "$dir/train.safetensors" --input "$dir/x.npy" --output "$dir/pred.npy" \
    && "$py" "$here/ref/st_roundtrip.py" check "$dir" >/dev/null && ok "train form predicts the same" \
    || bad "train-form predict"

# PyTorch checkpoints (torch.save zip archives): official train form, `module.` inside a
# state_dict wrapper, deploy form with `module.`, timm names; logits must equal PyTorch's
for f in train train_module deploy_module timm; do
    "$tool" predict --weights "$dir/$f.pth" --input "$dir/x.npy" --output "$dir/pred_$f.npy" \
        && "$py" "$here/ref/st_roundtrip.py" logits "$dir" "$dir/pred_$f.npy" \
        && ok "$f.pth predicts PyTorch's logits" || bad "$f.pth"
done
# and convert takes a .pth directly
"$tool" convert "$dir/timm.pth" "$dir/from_timm.safetensors" \
    && "$tool" predict --weights "$dir/from_timm.safetensors" --input "$dir/x.npy" --output "$dir/pred_conv.npy" \
    && "$py" "$here/ref/st_roundtrip.py" logits "$dir" "$dir/pred_conv.npy" \
    && ok "convert timm .pth -> deploy safetensors keeps the logits" || bad "convert timm.pth"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
