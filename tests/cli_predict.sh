#!/usr/bin/env bash
# cli_predict.sh - `repvgg predict` on JPEG and PNG files. Args: TOOL SCRATCH PYTHON.
#
# Random train-form models from Python (torch); images from tests/ref/write_images.py (standard
# library only: RGB and grey PNG, RGB and grey baseline JPEG). Checks:
#   - output well formed: one "PATH:" line per image in command-line order, then K lines
#     "index probability [label]", indices distinct and in range, probabilities descending;
#     with K = all classes the probabilities sum to 1; --topk is respected (and clamped);
#   - labels: --labels names are printed; a 1000-class model finds data/imagenet_classes.txt by
#     itself (run from another directory);
#   - preprocessing: the logits of the PNGs (--output) equal those of a .npy that Python prepares
#     from the same pixels with torch (shorter side 256, bilinear interpolate without antialias,
#     centre crop 224, ImageNet mean/std), within 1e-4 x max|logit|;
#   - the .npy path (--input X.npy --output Y.npy) still works;
#   - converted to the deploy form, the model runs on the fast engine by default and gives the
#     train form's logits (1e-4 x max|logit|) at 224x224 and at 45x37, as does `--engine model`
#     on the deploy form and `--engine fast` on the train form;
#   - the preprocessing `repvgg train` records in the weights (repvgg.mean/std/size/eval): a
#     1-channel model gets the luma of the image and a 3-channel one the recorded transform, each
#     equal to torch's preprocessing of the same pixels; --center-crop overrides the record;
#   - bad input fails with a message and exit 1 (missing, corrupt JPEG, not an image, 1-channel
#     model without a record, labels of the wrong length) or 2 (usage).
set -u
tool=$1 dir=$2 py=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dir" && mkdir -p "$dir"
export PYTHONPATH="$here/ref"
pass=0 fail=0
ok() { echo "  ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }

"$py" "$here/ref/random_model.py" "$dir/m10.safetensors" --blocks 1,1,1,1 \
    --width 0.25,0.25,0.25,0.25 --classes 10 --seed 3
rc=$?
if [ $rc -eq 77 ]; then echo "SKIPPED: no torch"; exit 77; fi
[ $rc -eq 0 ] && ok "python wrote a 10-class model" || bad "random_model.py m10 ($rc)"
"$py" "$here/ref/random_model.py" "$dir/m1000.safetensors" --blocks 1,1,1,1 \
    --width 0.25,0.25,0.25,0.25 --classes 1000 --seed 4 \
    && "$py" "$here/ref/random_model.py" "$dir/gray_model.safetensors" --blocks 1,1,1,1 \
        --width 0.25,0.25,0.25,0.25 --classes 10 --in-ch 1 --seed 5 \
    && ok "python wrote a 1000-class and a 1-channel model" || bad "random_model.py"
"$py" "$here/ref/write_images.py" "$dir" && ok "python wrote PNG and JPEG files" \
    || bad "write_images.py"
for i in 0 1 2 3 4 5 6 7 8 9; do echo "class $i name"; done >"$dir/labels10.txt"
imgs=("$dir/rgb.png" "$dir/gray.jpg" "$dir/rgb.jpg" "$dir/gray.png")

# Checks a predict transcript: check_out FILE K CLASSES [LABELS] (image order from $imgs).
check_out() {
    "$py" - "$@" "${imgs[@]}" <<'EOF'
import sys
out, k, classes, labels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
paths = sys.argv[5:]
names = open(labels).read().split("\n")[:classes] if labels != "-" else None
lines = open(out).read().rstrip("\n").split("\n")
assert len(lines) == len(paths) * (k + 1), "%d lines for %d images x (%d + 1)" % (
    len(lines), len(paths), k)
for i, path in enumerate(paths):
    block = lines[i * (k + 1):(i + 1) * (k + 1)]
    assert block[0] == path + ":", "header %r, want %r" % (block[0], path + ":")
    idx, probs = [], []
    for row in block[1:]:
        assert row.startswith("  "), "row %r not indented" % row
        parts = row.split(None, 2)
        j, p = int(parts[0]), float(parts[1])
        assert 0 <= j < classes and 0 <= p <= 1, row
        if names is not None:
            assert len(parts) == 3 and parts[2] == names[j], "label of %d: %r vs %r" % (
                j, parts[2:], names[j])
        else:
            assert len(parts) == 2, "unexpected label in %r" % row
        idx.append(j)
        probs.append(p)
    assert len(set(idx)) == k, "repeated class in %s" % idx
    assert probs == sorted(probs, reverse=True), "not descending: %s" % probs
    if k == classes:
        assert abs(sum(probs) - 1) < 1e-4, "probabilities sum to %.7f" % sum(probs)
print("%d images x %d classes well formed" % (len(paths), k))
EOF
}

run() { # name, args... : runs predict, keeps stdout in $dir/name.out
    local name=$1
    shift
    "$tool" predict "$@" >"$dir/$name.out" 2>"$dir/$name.err"
}

# ---- output format, topk, labels --------------------------------------------------------------
if run all --weights "$dir/m10.safetensors" --input "${imgs[0]}" "${imgs[1]}" --input "${imgs[2]}" \
    "${imgs[3]}" --topk 10 --labels "$dir/labels10.txt" --output "$dir/logits_img.npy"; then
    msg=$(check_out "$dir/all.out" 10 10 "$dir/labels10.txt" 2>&1) && ok "all classes: $msg" \
        || bad "all classes: $msg"
else
    bad "predict on 4 images"
    cat "$dir/all.err"
fi
run top3 --weights "$dir/m10.safetensors" --input "${imgs[@]}" --topk 3 \
    && msg=$(check_out "$dir/top3.out" 3 10 - 2>&1) && ok "--topk 3, no labels: $msg" \
    || bad "--topk 3: ${msg:-}"
run default --weights "$dir/m10.safetensors" --input "${imgs[@]}" \
    && msg=$(check_out "$dir/default.out" 5 10 - 2>&1) && ok "default top 5: $msg" \
    || bad "default topk: ${msg:-}"
run clamp --weights "$dir/m10.safetensors" --input "${imgs[@]}" --topk 50 \
    && msg=$(check_out "$dir/clamp.out" 10 10 - 2>&1) && ok "--topk 50 clamped to 10: $msg" \
    || bad "--topk 50: ${msg:-}"
# --json: the same classes, probabilities and labels as the text, in input order, and the
# probabilities are the softmax of the logits that --output wrote
run json --weights "$dir/m10.safetensors" --input "${imgs[0]}" "${imgs[1]}" --input "${imgs[2]}" \
    "${imgs[3]}" --topk 10 --labels "$dir/labels10.txt" --json \
    && "$py" - "$dir" "${imgs[0]}" "${imgs[1]}" "${imgs[2]}" "${imgs[3]}" <<'EOF' \
    && ok "--json: the text output's classes, probabilities, labels; softmax of the logits" \
    || bad "--json output"
import json, sys
import numpy as np
d, paths = sys.argv[1], sys.argv[2:]
o = json.load(open(d + "/json.out"))
assert [p["input"] for p in o["predictions"]] == paths, "inputs out of order"
text = [l.rstrip("\n") for l in open(d + "/all.out")]
logits = np.load(d + "/logits_img.npy").astype(np.float64)
for i, p in enumerate(o["predictions"]):
    rows = text[i * 11 + 1:i * 11 + 11]
    want = [(int(r.split(None, 2)[0]), float(r.split(None, 2)[1]), r.split(None, 2)[2])
            for r in rows]
    got = [(t["class"], t["probability"], t["label"]) for t in p["top"]]
    assert [g[0] for g in got] == [w[0] for w in want], (got, want)
    assert [g[2] for g in got] == [w[2] for w in want], (got, want)
    assert all(abs(g[1] - w[1]) < 1e-6 for g, w in zip(got, want)), (got, want)
    e = np.exp(logits[i] - logits[i].max())
    sm = e / e.sum()
    assert all(abs(sm[c] - pr) < 1e-6 for c, pr, _ in got), (sm, got)
EOF
"$tool" predict --weights "$dir/m10.safetensors" --input "$dir/logits_img.npy" \
    --output "$dir/never.npy" --json >/dev/null 2>&1
[ $? -eq 2 ] && ok "--json with a .npy input is refused (exit 2)" || bad "--json with .npy"
# the default ImageNet names, found from another working directory
labels1000="$(dirname "$here")/data/imagenet_classes.txt"
[ "$(wc -l <"$labels1000")" -eq 1000 ] && ok "data/imagenet_classes.txt has 1000 lines" \
    || bad "data/imagenet_classes.txt line count"
(cd "$dir" && "$tool" predict --weights m1000.safetensors --input "${imgs[@]}" --topk 4 \
    >"$dir/m1000.out" 2>"$dir/m1000.err") \
    && msg=$(check_out "$dir/m1000.out" 4 1000 "$labels1000" 2>&1) \
    && ok "1000 classes get ImageNet names by default: $msg" \
    || { bad "default ImageNet labels: ${msg:-}"; cat "$dir/m1000.err"; }

# ---- preprocessing against torch ---------------------------------------------------------------
"$py" - "$dir" <<'EOF' && ok "python prepared the PNG pixels with torch" || bad "python reference"
import sys
import numpy as np
import torch
import torch.nn.functional as F
d = sys.argv[1]
xs = []
for name in ("rgb", "gray"):
    px = torch.from_numpy(np.load("%s/pixels_%s.npy" % (d, name))).permute(2, 0, 1).float()
    h, w = px.shape[1:]
    # torchvision Resize(256): shorter side 256, the other int(256 * long / short)
    nh, nw = (256, int(256 * w / h)) if h <= w else (int(256 * h / w), 256)
    r = F.interpolate(px[None], size=(nh, nw), mode="bilinear", align_corners=False,
                      antialias=False)[0]
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    c = r[:, top:top + 224, left:left + 224] / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    xs.append((c - mean) / std)
np.save("%s/x_ref.npy" % d, torch.stack(xs).numpy().astype(np.float32))
EOF
# close_logits WHAT A.npy B.npy: same shape, max|A - B| <= 1e-4 x max|B|
close_logits() {
    local msg
    msg=$("$py" - "$2" "$3" <<'EOF'
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
err, scale = float(np.abs(a - b).max()), float(np.abs(b).max())
print("max|diff| %.3g, max|logit| %.3g" % (err, scale))
sys.exit(0 if a.shape == b.shape and err <= 1e-4 * scale else 1)
EOF
    ) && ok "$1 ($msg)" || bad "$1: ${msg:-}"
}
same_logits() { # what, weights, reference .npy
    if "$tool" predict --weights "$2" --input "$3" --output "$dir/l_ref.npy" >/dev/null \
        && "$tool" predict --weights "$2" --input "$dir/rgb.png" "$dir/gray.png" \
            --output "$dir/l_png.npy" >/dev/null; then
        close_logits "$1: PNG logits == torch-preprocessed logits" "$dir/l_png.npy" \
            "$dir/l_ref.npy"
    else
        bad "$1: predict failed"
    fi
}
same_logits "ImageNet transform (no record)" "$dir/m10.safetensors" "$dir/x_ref.npy"

# ---- deploy-form weights run on the fast engine ---------------------------------------------------
# Converted, the model gives through the engine (the default for the deploy form) the logits the
# train form gives through the model's forward, at 224x224 and at an odd size.
"$py" -c "import numpy as np, sys
np.save(sys.argv[1], np.random.RandomState(7).randn(3, 3, 45, 37).astype(np.float32))" \
    "$dir/x_odd.npy"
if "$tool" convert "$dir/m10.safetensors" "$dir/m10_deploy.safetensors" >/dev/null; then
    for x in x_ref x_odd; do
        "$tool" predict --weights "$dir/m10.safetensors" --input "$dir/$x.npy" \
            --output "$dir/t_$x.npy" >/dev/null \
            && "$tool" predict --weights "$dir/m10_deploy.safetensors" --input "$dir/$x.npy" \
                --output "$dir/d_$x.npy" >/dev/null \
            && "$tool" predict --weights "$dir/m10_deploy.safetensors" --input "$dir/$x.npy" \
                --output "$dir/dm_$x.npy" --engine model --batch 2 >/dev/null \
            && "$tool" predict --weights "$dir/m10.safetensors" --input "$dir/$x.npy" \
                --output "$dir/tf_$x.npy" --engine fast --threads 1 >/dev/null \
            || bad "predict on $x.npy with the deploy form"
        close_logits "$x: engine (deploy form) == model forward (train form)" \
            "$dir/d_$x.npy" "$dir/t_$x.npy"
        close_logits "$x: engine == the deploy form's model forward (batches of 2)" \
            "$dir/d_$x.npy" "$dir/dm_$x.npy"
        close_logits "$x: --engine fast on train-form weights == the engine" \
            "$dir/tf_$x.npy" "$dir/d_$x.npy"
    done
else
    bad "convert m10"
fi

# ---- the preprocessing `repvgg train` records (repvgg.mean/std/size/eval) -----------------------
# A 1-channel model sees the luma of the image, resized whole to the recorded size; a 3-channel
# one recorded with "resize" gets the plain resize, its own mean/std and size.
"$py" "$here/ref/random_model.py" "$dir/gray_meta.safetensors" --blocks 1,1,1,1 \
    --width 0.25,0.25,0.25,0.25 --classes 10 --in-ch 1 --seed 5 --meta repvgg.mean=0.3 \
    --meta repvgg.std=0.4 --meta repvgg.size=28 --meta repvgg.eval=resize \
    && "$py" "$here/ref/random_model.py" "$dir/rgb_meta.safetensors" --blocks 1,1,1,1 \
        --width 0.25,0.25,0.25,0.25 --classes 10 --seed 6 --meta repvgg.mean=0.5,0.4,0.3 \
        --meta repvgg.std=0.2,0.25,0.3 --meta repvgg.size=36 --meta repvgg.eval=resize \
    && ok "python wrote a 1- and a 3-channel model with a preprocessing record" \
    || bad "random_model.py --meta"
"$py" - "$dir" <<'EOF' && ok "python prepared the recorded preprocessing with torch" \
    || bad "python reference (recorded preprocessing)"
import sys
import numpy as np
import torch
import torch.nn.functional as F
d = sys.argv[1]
grey, rgb = [], []
for name in ("rgb", "gray"):
    px = np.load("%s/pixels_%s.npy" % (d, name)).astype(np.float64)
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    # luma (ITU-R BT.601; a grey image is exactly itself), then the whole image resized
    lum = px[..., 0] * 0.299 + px[..., 1] * 0.587 + px[..., 2] * 0.114
    if name == "gray":
        lum = px[..., 0]
    t = torch.from_numpy(lum).float()[None, None]
    r = F.interpolate(t, size=(28, 28), mode="bilinear", align_corners=False, antialias=False)[0]
    grey.append((r / 255.0 - 0.3) / 0.4)
    c = torch.from_numpy(px).permute(2, 0, 1).float()[None]
    r = F.interpolate(c, size=(36, 36), mode="bilinear", align_corners=False, antialias=False)[0]
    mean = torch.tensor([0.5, 0.4, 0.3])[:, None, None]
    std = torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    rgb.append((r / 255.0 - mean) / std)
np.save("%s/x_grey.npy" % d, torch.stack(grey).numpy().astype(np.float32))
np.save("%s/x_rgb36.npy" % d, torch.stack(rgb).numpy().astype(np.float32))
EOF
same_logits "1-channel model, recorded mean/std/size 28, resize" "$dir/gray_meta.safetensors" \
    "$dir/x_grey.npy"
same_logits "3-channel model, recorded mean/std/size 36, resize" "$dir/rgb_meta.safetensors" \
    "$dir/x_rgb36.npy"
# --center-crop overrides the record (other logits than the resize's just above)
"$tool" predict --weights "$dir/rgb_meta.safetensors" --input "$dir/rgb.png" --center-crop \
    --output "$dir/l_crop.npy" >/dev/null \
    && "$py" -c "import numpy as np, sys; a = np.load(sys.argv[1]); b = np.load(sys.argv[2]);
sys.exit(0 if np.abs(a[0] - b[0]).max() > 1e-3 else 1)" "$dir/l_crop.npy" "$dir/l_png.npy" \
    && ok "--center-crop overrides the recorded resize" || bad "--center-crop"

# ---- bad input ---------------------------------------------------------------------------------
fails() { # expected exit, what, grep pattern for stderr, args...
    local want=$1 what=$2 pat=$3
    shift 3
    "$tool" predict "$@" >/dev/null 2>"$dir/err.log"
    local rc=$?
    if [ $rc -eq "$want" ] && grep -q -- "$pat" "$dir/err.log"; then
        ok "$what -> exit $rc: $(head -1 "$dir/err.log")"
    else
        bad "$what: exit $rc (want $want), stderr:"
        cat "$dir/err.log"
    fi
}
m=$dir/m10.safetensors
fails 1 "missing image" "missing.png" --weights "$m" --input "$dir/rgb.png" "$dir/missing.png"
fails 1 "corrupt JPEG" "corrupt.jpg" --weights "$m" --input "$dir/corrupt.jpg"
fails 1 "text file named .png" "not a .npy array, a JPEG or a PNG" --weights "$m" \
    --input "$dir/text.png"
fails 1 "1-channel model without a preprocessing record" "no input normalisation" \
    --weights "$dir/gray_model.safetensors" --input "$dir/rgb.png"
fails 2 "--resize with --center-crop" "exclude" --weights "$m" --input "$dir/rgb.png" --resize \
    --center-crop
fails 1 "labels of the wrong length" "names" --weights "$m" --input "$dir/rgb.png" \
    --labels "$labels1000"
fails 1 "missing labels file" "labels" --weights "$m" --input "$dir/rgb.png" \
    --labels "$dir/none.txt"
fails 2 "no input" "required" --weights "$m"
fails 2 "--topk 0" "topk" --weights "$m" --input "$dir/rgb.png" --topk 0
fails 2 ".npy mixed with images" ".npy" --weights "$m" --input "$dir/x_ref.npy" "$dir/rgb.png" \
    --output "$dir/y.npy"
# --output onto an input or the weights would destroy it: refused, the file left as it was
cp "$dir/x_ref.npy" "$dir/x_keep.npy"
fails 2 "--output onto the .npy input" "is the input" --weights "$m" --input "$dir/x_keep.npy" \
    --output "$dir/x_keep.npy"
fails 2 "--output onto the weights" "is the weights file" --weights "$m" --input "$dir/rgb.png" \
    --output "$m"
cmp -s "$dir/x_ref.npy" "$dir/x_keep.npy" && ok "... the input is unchanged" ||
    bad "--output onto the input changed it"
# recorded class names that do not fit the model: a warning, indices printed, exit 0
"$py" "$here/ref/random_model.py" "$dir/m10_badlabels.safetensors" --blocks 1,1,1,1 \
    --width 0.25,0.25,0.25,0.25 --classes 10 --seed 3 --meta 'repvgg.labels=["a", "b"]'
if "$tool" predict --weights "$dir/m10_badlabels.safetensors" --input "$dir/rgb.png" \
    >"$dir/badlabels.out" 2>"$dir/badlabels.err" &&
    grep -q "warning: the class names recorded in the weights" "$dir/badlabels.err" &&
    ! grep -q " a$" "$dir/badlabels.out"; then
    ok "recorded labels of the wrong length: a warning, indices printed"
else
    bad "recorded labels of the wrong length: $(cat "$dir/badlabels.err")"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
