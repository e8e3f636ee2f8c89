#!/usr/bin/env bash
# cli_train.sh - end-to-end test of `repvgg train`, `repvgg eval` and `repvgg plot` on a slice of
# Fashion-MNIST with a tiny custom architecture: outputs exist and parse, eval agrees with the
# training log, a run stopped mid-epoch and resumed ends bit-identical to an uninterrupted one
# (plain recipe, paper200 with mixup, --ema, --erase, --clean-epochs, --kernels amx-twin), --ema
# validates and writes the weights' average, the bf16x3 training GEMM trains close to fp32, --init
# starts from another run's weights, the preprocessing record lets `repvgg predict` on PNG files
# agree with eval, and bad input fails cleanly with a message.
#
# Usage: cli_train.sh TOOL SCRATCH_DIR [PYTHON]. Exit 77 (skip) without the data set.
set -u
TOOL=$1
SCRATCH=$2
DATA=/usr/share/datasets/fashion-mnist
if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -e "$DATA/train-images-idx3-ubyte" ]; then
    echo "skipped: $DATA not found"
    exit 77
fi
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"

passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAILED: $*" >&2; }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok; else bad "$what"; fi
}
# same A B: two numbers within 1e-5
same() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-5 && d > -1e-5) }'; }

ARCH=custom:blocks=1,1,1,1:width=0.25,0.25,0.25,0.25
COMMON=(--arch "$ARCH" --data fashion-mnist --limit-train 512 --limit-val 256 --epochs 3
        --batch 64 --threads 1 --quiet)

# ---- run A: uninterrupted --------------------------------------------------------------------
A=$SCRATCH/a
check "run A trains" "$TOOL" train "${COMMON[@]}" --out "$A"
for f in last.safetensors best.safetensors last.ckpt.safetensors best.ckpt.safetensors \
         log.csv curves.png; do
    check "run A wrote $f" test -s "$A/$f"
done
HEADER=epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,seconds,data_wait_s
check "log.csv header" grep -qx "$HEADER" "$A/log.csv"
check "log.csv has 3 epochs" test "$(tail -n +2 "$A/log.csv" | wc -l)" -eq 3
check "log.csv rows have 9 fields" awk -F, 'NR > 1 && NF != 9 { exit 1 }' "$A/log.csv"
check "curves.png is a PNG" \
    bash -c "head -c 8 '$A/curves.png' | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'"

# ---- eval on the plain weights ----------------------------------------------------------------
if "$TOOL" eval --weights "$A/last.safetensors" --data fashion-mnist --limit-val 256 --batch 50 \
        --json > "$SCRATCH/eval.json" 2> "$SCRATCH/eval.err"; then
    ok
    check "eval --json has the fields" \
        grep -q '"top1".*"top5".*"per_class".*"confusion"' "$SCRATCH/eval.json"
    check "eval --json counts 256 images" grep -q '"n":256' "$SCRATCH/eval.json"
    # eval (batch 50) must reproduce the last epoch's val top-1 of the log (batch 64)
    top1=$(sed -n 's/.*"top1":\([0-9.e-]*\).*/\1/p' "$SCRATCH/eval.json")
    logtop1=$(tail -n 1 "$A/log.csv" | cut -d, -f6)
    check "eval top-1 $top1 matches the log's $logtop1" \
        same "$top1" "$logtop1"
    if [ -n "${3:-}" ] && [ -x "${3:-}" ]; then
        check "eval --json is valid JSON" "$3" -c "import json, sys
d = json.load(open(sys.argv[1]))
assert len(d['confusion']) == 10 and sum(map(sum, d['confusion'])) == 256" "$SCRATCH/eval.json"
    fi
else
    bad "eval --json on last.safetensors: $(cat "$SCRATCH/eval.err")"
fi
check "eval (text) on the checkpoint file" \
    "$TOOL" eval --weights "$A/last.ckpt.safetensors" --limit-val 64
# --tta flip: each prediction is the argmax of the mean of the logits of the image and of its
# mirror, which predict computes here from the test images prepared in numpy
if [ -n "${3:-}" ] && [ -x "${3:-}" ]; then
    "$TOOL" eval --weights "$A/last.safetensors" --limit-val 64 --tta flip --json \
        --predictions "$SCRATCH/tta_pred.txt" > "$SCRATCH/tta.json" 2> "$SCRATCH/tta.err" \
        || bad "eval --tta flip: $(cat "$SCRATCH/tta.err")"
    check "eval --tta flip says so in its JSON" grep -q '"tta":"flip"' "$SCRATCH/tta.json"
    "$3" - "$A/last.safetensors" "$DATA" "$SCRATCH" <<'EOF' || bad "python: tta inputs"
import gzip, json, struct, sys
import numpy as np
w, data, out = sys.argv[1:4]
raw = open(w, "rb").read()
meta = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])["__metadata__"]
assert meta["repvgg.size"] == "28" and meta["repvgg.eval"] == "resize", meta
mean, std = float(meta["repvgg.mean"]), float(meta["repvgg.std"])
px = np.frombuffer(gzip.open(data + "/t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
x = ((px.reshape(-1, 1, 28, 28)[:64].astype(np.float32) / 255 - mean) / std).astype(np.float32)
np.save(out + "/tta_x.npy", x)
np.save(out + "/tta_xf.npy", np.ascontiguousarray(x[..., ::-1]))
EOF
    "$TOOL" predict --weights "$A/last.safetensors" --input "$SCRATCH/tta_x.npy" --batch 64 \
        --output "$SCRATCH/tta_y.npy" && "$TOOL" predict --weights "$A/last.safetensors" \
        --input "$SCRATCH/tta_xf.npy" --batch 64 --output "$SCRATCH/tta_yf.npy" \
        || bad "predict on the tta inputs"
    check "eval --tta flip: argmax and loss of (logits + mirrored logits) / 2" "$3" -c "
import gzip, json, sys, numpy as np
s, data = sys.argv[1], sys.argv[2]
y, yf = np.load(s + '/tta_y.npy'), np.load(s + '/tta_yf.npy')
avg = ((y + yf) * np.float32(0.5)).astype(np.float64)
got = np.loadtxt(s + '/tta_pred.txt', dtype=int)
assert (got == avg.argmax(1)).all(), (got, avg.argmax(1))
lab = np.frombuffer(gzip.open(data + '/t10k-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)[:64]
z = avg - avg.max(1, keepdims=True)
loss = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(64), lab]))
got_loss = json.load(open(s + '/tta.json'))['loss']
assert abs(got_loss - loss) < 1e-4 * max(1.0, loss), (got_loss, loss)" "$SCRATCH" "$DATA"
    # digits: a mirrored digit is not the same digit, so flip TTA is refused
    "$3" - "$SCRATCH/digits" <<'EOF' || bad "python: digits IDX"
import os, struct, sys
import numpy as np
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for split, n in (("train", 20), ("t10k", 10)):
    with open("%s/%s-images-idx3-ubyte" % (d, split), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 28 * 28))
    with open("%s/%s-labels-idx1-ubyte" % (d, split), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + bytes(np.arange(n) % 10))
EOF
    "$TOOL" eval --weights "$A/last.safetensors" --data "idx:$SCRATCH/digits" --tta flip \
        > /dev/null 2> "$SCRATCH/tta_digits.err"
    rc=$?
    if [ $rc -eq 1 ] && grep -q "mirrored image" "$SCRATCH/tta_digits.err"; then ok; else
        bad "eval --tta flip on digits: exit $rc, $(cat "$SCRATCH/tta_digits.err")"
    fi
fi
check "plot redraws" "$TOOL" plot "$A" --out "$SCRATCH/replot.png"
check "plot wrote a PNG" test -s "$SCRATCH/replot.png"

# ---- run B: stopped during epoch 2, then resumed -> identical to A ---------------------------
B=$SCRATCH/b
"$TOOL" train "${COMMON[@]}" --out "$B" --stop-after-steps 12 2> "$SCRATCH/b.err"
rc=$?
check "run B stops with status 3 (got $rc)" test "$rc" -eq 3
check "run B's checkpoint is from epoch 1" test "$(tail -n +2 "$B/log.csv" | wc -l)" -eq 1
check "run B resumes" "$TOOL" train --resume "$B" --threads 1 --quiet
check "resumed last.safetensors == uninterrupted" cmp "$A/last.safetensors" "$B/last.safetensors"
check "resumed best.safetensors == uninterrupted" cmp "$A/best.safetensors" "$B/best.safetensors"
check "resumed log has 3 epochs" test "$(tail -n +2 "$B/log.csv" | wc -l)" -eq 3
check "resume of a finished run fails" bash -c "! '$TOOL' train --resume '$B' 2>/dev/null"

# resumes_identically WHAT NAME STOP ARGS...: `train ARGS` runs uninterrupted into $SCRATCH/NAME,
# and stopped after STEP steps and resumed into $SCRATCH/NAME2; the two end with the same weights
resumes_identically() {
    local what=$1 name=$2 stop=$3
    shift 3
    check "$what run trains" "$TOOL" train "$@" --out "$SCRATCH/$name"
    "$TOOL" train "$@" --out "$SCRATCH/${name}2" --stop-after-steps "$stop" 2>/dev/null
    check "$what run resumes" "$TOOL" train --resume "$SCRATCH/${name}2" --threads 1 --quiet
    check "$what resumed == uninterrupted" \
        cmp "$SCRATCH/$name/last.safetensors" "$SCRATCH/${name}2/last.safetensors"
}

# ---- the same with paper200 (warm-up, smoothing, mixup generator, AutoAugment) --------------
P200=(--arch "$ARCH" --limit-train 256 --limit-val 128 --epochs 2 --batch 64 --threads 1 --quiet
      --recipe paper200 --warmup-epochs 1 --custom-l2 --nesterov)
resumes_identically paper200 p200 6 "${P200[@]}"

# ---- --ema: the average is validated and written as the weights, the checkpoint keeps the raw ----
# weights (training is unaffected: run A's) and the average, and a resume is bit-identical
EMA=("${COMMON[@]}" --ema 0.9)
resumes_identically --ema ema 12 "${EMA[@]}"
for f in best.safetensors last.ckpt.safetensors; do
    check "--ema resumed $f == uninterrupted" cmp "$SCRATCH/ema/$f" "$SCRATCH/ema2/$f"
done
eval_loss() { # eval_loss WEIGHTS: the val loss of `repvgg eval --json`
    "$TOOL" eval --weights "$1" --limit-val 256 --json | sed -n 's/.*"loss":\([0-9.e-]*\).*/\1/p'
}
emalog=$(tail -n 1 "$SCRATCH/ema/log.csv" | cut -d, -f5)
alog=$(tail -n 1 "$A/log.csv" | cut -d, -f5)
e1=$(eval_loss "$SCRATCH/ema/last.safetensors")
e2=$(eval_loss "$SCRATCH/ema/last.ckpt.safetensors")
check "--ema: last.safetensors (val loss $e1) is what the log validated ($emalog)" same "$e1" "$emalog"
check "--ema: the checkpoint's raw weights (val loss $e2) are run A's ($alog)" same "$e2" "$alog"
check "--ema: the average ($emalog) is not the raw weights ($alog)" \
    awk -v a="$emalog" -v b="$alog" 'BEGIN { d = a - b; exit !(d > 1e-3 || d < -1e-3) }'
# ---- --erase: random erasing changes the run, is recorded, and a resume is still bit-identical ---
ERASE=("${COMMON[@]}" --erase 0.5 --erase-fill zero)
resumes_identically --erase er 12 "${ERASE[@]}"
check "--erase changes the training" \
    bash -c "! cmp -s '$A/last.safetensors' '$SCRATCH/er/last.safetensors'"
check "--erase is in the checkpoint's config" \
    grep -q 'erase\\":0.5,\\"erase_zero\\":true' "$SCRATCH/er/last.ckpt.safetensors"
# ---- --clean-epochs: the last epochs without erasing; epoch 1 as with erasing throughout, the
# end not; recorded; a resume inside the clean epochs is still bit-identical
CLEAN=("${ERASE[@]}" --clean-epochs 2)
resumes_identically --clean-epochs cl 12 "${CLEAN[@]}"
check "--clean-epochs: epoch 1 as with erasing throughout" \
    test "$(sed -n 2p "$SCRATCH/cl/log.csv" | cut -d, -f1-7)" = \
    "$(sed -n 2p "$SCRATCH/er/log.csv" | cut -d, -f1-7)"
check "--clean-epochs: epoch 2 differs" \
    test "$(sed -n 3p "$SCRATCH/cl/log.csv" | cut -d, -f3)" != \
    "$(sed -n 3p "$SCRATCH/er/log.csv" | cut -d, -f3)"
check "--clean-epochs is in the checkpoint's config" \
    grep -q 'clean_epochs\\":2' "$SCRATCH/cl/last.ckpt.safetensors"
# ---- --clip-grad: a bound below every step's gradient norm clips all 8 steps of an epoch and
# changes the run; the epoch line says so; recorded; a resume is bit-identical; and a resume of a
# run started without it may set it
CLIP=("${COMMON[@]}" --clip-grad 0.01)
resumes_identically --clip-grad cg 12 "${CLIP[@]}"
check "--clip-grad changes the training" \
    bash -c "! cmp -s '$A/last.safetensors' '$SCRATCH/cg/last.safetensors'"
check "--clip-grad is in the checkpoint's config" \
    grep -q 'clip_grad\\":0.01' "$SCRATCH/cg/last.ckpt.safetensors"
"$TOOL" train "${COMMON[@]}" --out "$SCRATCH/cgr" --stop-after-steps 12 2>/dev/null
check "--resume --clip-grad" "$TOOL" train --resume "$SCRATCH/cgr" --clip-grad 0.01 --threads 1 \
    --quiet > "$SCRATCH/cgr.out"
check "--resume --clip-grad: epochs 2 and 3 clip all 8 steps" \
    test "$(grep -Ec '^epoch [23]/3 .*grad norm max [0-9.e+-]+, 8 steps clipped' \
        "$SCRATCH/cgr.out")" -eq 2
check "--resume --clip-grad: recorded" \
    grep -q 'clip_grad\\":0.01' "$SCRATCH/cgr/last.ckpt.safetensors"
check "--resume --clip-grad: epoch 1 is run A's, the end is not" \
    test "$(sed -n 2p "$SCRATCH/cgr/log.csv" | cut -d, -f1-7)" = \
    "$(sed -n 2p "$A/log.csv" | cut -d, -f1-7)" -a \
    "$(sed -n 4p "$SCRATCH/cgr/log.csv" | cut -d, -f3)" != "$(sed -n 4p "$A/log.csv" | cut -d, -f3)"
# a resume whose log.csv was deleted trains on, and says what the log will lack
"$TOOL" train "${COMMON[@]}" --out "$SCRATCH/nolog" --stop-after-steps 12 2>/dev/null
rm -f "$SCRATCH/nolog/log.csv"
check "--resume without log.csv" "$TOOL" train --resume "$SCRATCH/nolog" --threads 1 --quiet \
    2> "$SCRATCH/nolog.err" > /dev/null
check "... warns that epoch 1's row is gone" grep -q "rows for 0 of the 1 finished epochs" \
    "$SCRATCH/nolog.err"
# a checkpoint whose average is missing, of the wrong shape, or not in its config: a message and
# exit 1 on --resume, never a run without it (safetensors rewritten with the standard library)
if [ -n "${3:-}" ] && [ -x "${3:-}" ]; then
    cat > "$SCRATCH/st_edit.py" << 'PYEOF'
import json, struct, sys
src, dst, mode = sys.argv[1:4]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h, data = json.loads(b[8:8 + n]), b[8 + n:]
meta = h.pop('__metadata__')
out, blobs, off = {}, [], 0
for k, v in h.items():
    if mode == 'drop' and k.startswith('ema.'):
        continue
    raw = data[v['data_offsets'][0]:v['data_offsets'][1]]
    if mode == 'shape' and k == 'ema.linear.bias':
        raw, v = raw[:-4], dict(v, shape=[v['shape'][0] - 1])
    out[k] = dict(v, data_offsets=[off, off + len(raw)])
    blobs.append(raw)
    off += len(raw)
if mode == 'config':
    meta['repvgg.ckpt.config'] = meta['repvgg.ckpt.config'].replace('"ema":0.9', '"ema":0')
out['__metadata__'] = meta
hj = json.dumps(out).encode()
hj += b' ' * ((8 - len(hj) % 8) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(hj)) + hj + b''.join(blobs))
PYEOF
    for mode in drop shape config; do
        rm -rf "$SCRATCH/ema_$mode"
        mkdir -p "$SCRATCH/ema_$mode"
        "$3" "$SCRATCH/st_edit.py" "$SCRATCH/ema2/last.ckpt.safetensors" \
            "$SCRATCH/ema_$mode/last.ckpt.safetensors" "$mode"
        "$TOOL" train --resume "$SCRATCH/ema_$mode" --threads 1 --quiet 2> "$SCRATCH/ema_$mode.err"
        rc=$?
        check "--resume of a checkpoint with its average broken ($mode): exit 1, got $rc" \
            test "$rc" -eq 1
        check "... with a message naming the average ($mode)" \
            grep -q "moving average" "$SCRATCH/ema_$mode.err"
    done
fi

# ---- a larger input size: crop at 28x28, resize to 40x40; eval reads the size from the weights --
S40=(--arch "$ARCH" --limit-train 128 --limit-val 64 --epochs 1 --batch 32 --threads 1 --quiet
     --size 40)
check "--size 40 run trains" "$TOOL" train "${S40[@]}" --out "$SCRATCH/s40"
if "$TOOL" eval --weights "$SCRATCH/s40/last.safetensors" --limit-val 64 --json \
        > "$SCRATCH/s40.json" 2> "$SCRATCH/s40.err"; then
    top1=$(sed -n 's/.*"top1":\([0-9.e-]*\).*/\1/p' "$SCRATCH/s40.json")
    logtop1=$(tail -n 1 "$SCRATCH/s40/log.csv" | cut -d, -f6)
    check "--size 40: eval top-1 $top1 matches the log's $logtop1" \
        same "$top1" "$logtop1"
else
    bad "eval of the --size 40 run: $(cat "$SCRATCH/s40.err")"
fi
"$TOOL" bench --weights "$SCRATCH/s40/last.safetensors" --runs 1 --warmup 0 --json \
    > "$SCRATCH/b40.json" 2>&1
check "bench --weights times the recorded 40x40 input" grep -q '"size":40,' "$SCRATCH/b40.json"
"$TOOL" bench --weights "$SCRATCH/s40/last.ckpt.safetensors" --form train --runs 1 --warmup 0 \
    --json > "$SCRATCH/b40c.json" 2>&1
check "bench takes a checkpoint (its raw weights)" grep -q '"size":40,' "$SCRATCH/b40c.json"
"$TOOL" info --weights "$SCRATCH/s40/last.ckpt.safetensors" --json > "$SCRATCH/i40.json" 2>&1
check "info --weights shows the recorded size" grep -q '"size":40,' "$SCRATCH/i40.json"
check "info --weights shows a checkpoint's epoch" \
    grep -q '"checkpoint":{"epoch":1,"epochs":1,' "$SCRATCH/i40.json"
check "info --weights shows the class names" grep -q '"Ankle boot"' "$SCRATCH/i40.json"
# the same files read as a plain IDX set (no class names): eval names the classes from the weights
check "eval on idx: names the classes the weights recorded" grep -q '"Ankle boot"' \
    <("$TOOL" eval --weights "$SCRATCH/s40/last.safetensors" --data "idx:$DATA" --limit-val 64 \
    --json)

# ---- a validation batch smaller than the plan's: at 28x28 the 4x4 planes of stage 2's stride-1
# block take Winograd in a full batch of 32 (512 values per channel), im2col + GEMM in the last
# validation batch of 4 (64 values), on the same plan and workspace (the sanitizer build would
# catch an overrun) --------------------------------------------------------------------------------
check "a run whose last validation batch is small trains" "$TOOL" train \
    --arch custom:blocks=1,1,2,1:width=0.25,0.25,0.25,0.25 --limit-train 64 --limit-val 100 \
    --epochs 1 --batch 32 --threads 1 --quiet --out "$SCRATCH/tail"

# ---- fine-tuning: --init starts from run A's weights ------------------------------------------
# With a learning rate of 1e-12 the weights do not move, so the first epoch validates what the
# run started from: near run A's final top-1 with --init, chance (~10%) without.
TINY=(--epochs 1 --lr 1e-12)
check "--init run trains" "$TOOL" train "${COMMON[@]}" "${TINY[@]}" --init "$A/last.safetensors" \
    --out "$SCRATCH/i"
check "fresh run with the same lr trains" "$TOOL" train "${COMMON[@]}" "${TINY[@]}" \
    --out "$SCRATCH/f"
a1=$(tail -n 1 "$A/log.csv" | cut -d, -f6)
i1=$(tail -n 1 "$SCRATCH/i/log.csv" | cut -d, -f6)
f1=$(tail -n 1 "$SCRATCH/f/log.csv" | cut -d, -f6)
check "--init run validates at $i1, near run A's $a1" \
    awk -v i="$i1" -v a="$a1" 'BEGIN { exit !(i > a - 0.05) }'
check "a fresh run validates at $f1, far below run A's $a1" \
    awk -v f="$f1" -v a="$a1" 'BEGIN { exit !(f < a - 0.25) }'
# from the checkpoint file (its momentum buffers are not taken), with the report line
LOUD=("${COMMON[@]:0:${#COMMON[@]}-1}") # without --quiet, the last of COMMON
"$TOOL" train "${LOUD[@]}" "${TINY[@]}" --init "$A/last.ckpt.safetensors" --out "$SCRATCH/i2" \
    > "$SCRATCH/i2.out" 2>&1
check "--init prints what it took" grep -q "^init: .* tensors from $A/last.ckpt.safetensors" \
    "$SCRATCH/i2.out"
check "--init from the checkpoint == from the weights" \
    cmp "$SCRATCH/i/last.safetensors" "$SCRATCH/i2/last.safetensors"
check "--init without --arch trains the weights' network" "$TOOL" train --init \
    "$A/last.safetensors" --limit-train 128 --limit-val 64 --epochs 1 --batch 64 --threads 1 \
    --quiet --out "$SCRATCH/i3"
check "... whose architecture is recorded" \
    bash -c "head -c 4096 '$SCRATCH/i3/last.safetensors' | grep -a -q -F '\"$ARCH\"'"
# fine-tuning keeps the input size the weights were trained at (the 40x40 run above), and says
# so; --size overrides it
"$TOOL" train --init "$SCRATCH/s40/last.safetensors" --limit-train 64 --limit-val 64 --epochs 1 \
    --batch 32 --threads 1 --out "$SCRATCH/i40" > "$SCRATCH/i40.out" 2>&1
check "--init of 40x40 weights trains at 40x40" \
    grep -q '^repvgg train: .* was trained at 40x40: training at that size' "$SCRATCH/i40.out"
check "... and records it" grep -q '"size":40,' <("$TOOL" info --weights \
    "$SCRATCH/i40/last.safetensors" --json)
check "--init with --size 32 trains at 32x32" "$TOOL" train --init "$SCRATCH/s40/last.safetensors" \
    --size 32 --limit-train 64 --limit-val 64 --epochs 1 --batch 32 --threads 1 --quiet \
    --out "$SCRATCH/i32"
check "... and records it" grep -q '"size":32,' <("$TOOL" info --weights \
    "$SCRATCH/i32/last.safetensors" --json)

# ---- bad input: non-zero exit, a message, no crash (status > 128 is a signal) --------------------
expect_fail() { # expect_fail DESCRIPTION ARGS...
    local what=$1
    shift
    "$TOOL" "$@" > "$SCRATCH/bad.out" 2> "$SCRATCH/bad.err"
    local rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && [ -s "$SCRATCH/bad.err" ]; then
        ok
    else
        bad "$what (exit $rc, stderr: $(head -c 300 "$SCRATCH/bad.err"))"
    fi
}
expect_fail "unknown --arch" train --arch Z9 --epochs 1 --out "$SCRATCH/e1"
expect_fail "--epochs 0" train --arch "$ARCH" --epochs 0 --out "$SCRATCH/e2"
expect_fail "--batch -1" train --arch "$ARCH" --epochs 1 --batch -1 --out "$SCRATCH/e3"
expect_fail "missing data dir" train --arch "$ARCH" --epochs 1 \
    --data "fashion-mnist:$SCRATCH/nowhere" --out "$SCRATCH/e4"
mkdir -p "$SCRATCH/empty"
expect_fail "--resume of an empty dir" train --resume "$SCRATCH/empty"
expect_fail "unknown option" train --arch "$ARCH" --epochs 1 --out "$SCRATCH/e5" --bogus
expect_fail "--classes inconsistent with the data" \
    train "${COMMON[@]}" --classes 7 --out "$SCRATCH/e6"
expect_fail "--resume with another option" train --resume "$B" --lr 0.5
expect_fail "reusing a run directory without --resume" train "${COMMON[@]}" --out "$A"
expect_fail "--warmup-epochs >= --epochs" \
    train --arch "$ARCH" --epochs 2 --warmup-epochs 2 --out "$SCRATCH/e7"
expect_fail "--mixup negative" train --arch "$ARCH" --epochs 1 --mixup -1 --out "$SCRATCH/e8"
expect_fail "--ema 1" train --arch "$ARCH" --epochs 1 --ema 1 --out "$SCRATCH/e13"
expect_fail "--ema with --resume" train --resume "$B" --ema 0.99
expect_fail "--erase 1.5" train --arch "$ARCH" --epochs 1 --erase 1.5 --out "$SCRATCH/e14"
expect_fail "--erase-fill bogus" train --arch "$ARCH" --epochs 1 --erase-fill grey \
    --out "$SCRATCH/e15"
expect_fail "--erase with --resume" train --resume "$B" --erase 0.5
expect_fail "--clean-epochs > --epochs" \
    train --arch "$ARCH" --epochs 2 --clean-epochs 3 --out "$SCRATCH/e16"
expect_fail "--clean-epochs -1" \
    train --arch "$ARCH" --epochs 2 --clean-epochs -1 --out "$SCRATCH/e17"
expect_fail "--clean-epochs with --resume" train --resume "$B" --clean-epochs 1
expect_fail "--clip-grad -1" train --arch "$ARCH" --epochs 1 --clip-grad -1 --out "$SCRATCH/e18"
expect_fail "--clip-grad nan" train --arch "$ARCH" --epochs 1 --clip-grad nan --out "$SCRATCH/e19"
expect_fail "--norm bogus" train --arch "$ARCH" --epochs 1 --norm bogus --out "$SCRATCH/e9"
# a class folder renamed after training (which renumbers the sorted classes): eval and a resume
# refuse, naming the class, where they used to shift every label silently
if [ -n "${3:-}" ] && [ -x "${3:-}" ] && "$3" -c "import PIL" 2>/dev/null; then
    "$3" - "$SCRATCH/fold" << 'PYEOF'
import os, sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for split in ("train", "val"):
    for cls in ("ant", "bee", "cat"):
        os.makedirs("%s/%s/%s" % (sys.argv[1], split, cls), exist_ok=True)
        for i in range(8):
            px = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
            Image.fromarray(px).save("%s/%s/%s/%d.png" % (sys.argv[1], split, cls, i))
PYEOF
    FOLD=(--arch "$ARCH" --data "folder:$SCRATCH/fold" --size 16 --epochs 2 --batch 8 --threads 1
          --quiet)
    "$TOOL" train "${FOLD[@]}" --out "$SCRATCH/fr" --stop-after-steps 4 2>/dev/null
    check "folder run stopped in epoch 2" test "$(tail -n +2 "$SCRATCH/fr/log.csv" | wc -l)" -eq 1
    check "eval before the rename" "$TOOL" eval --weights "$SCRATCH/fr/last.safetensors" \
        --data "folder:$SCRATCH/fold"
    # a tree with only val/ (evaluation on another machine) numbers its own classes
    mkdir -p "$SCRATCH/valonly" && cp -r "$SCRATCH/fold/val" "$SCRATCH/valonly/"
    check "eval of a tree with only val/" "$TOOL" eval --weights "$SCRATCH/fr/last.safetensors" \
        --data "folder:$SCRATCH/valonly"
    for split in train val; do mv "$SCRATCH/fold/$split/ant" "$SCRATCH/fold/$split/dog"; done
    expect_fail "eval after a class folder was renamed" eval --weights \
        "$SCRATCH/fr/last.safetensors" --data "folder:$SCRATCH/fold"
    check "... names the class" grep -q "class 0 is 'bee' there, 'ant' in the weights" \
        "$SCRATCH/bad.err"
    expect_fail "--resume after a class folder was renamed" train --resume "$SCRATCH/fr"
    check "... names the class" grep -q "class 0 is 'bee' there, 'ant' in the weights" \
        "$SCRATCH/bad.err"
fi
# two runs into one directory: the second is refused while the first holds DIR/.lock
# (its first epoch, of 30000 images, outlasts the second's start; before its first checkpoint the
# directory does not yet "hold a run", so only the lock stops the second)
"$TOOL" train "${COMMON[@]}" --limit-train 30000 --out "$SCRATCH/busy" > /dev/null 2>&1 &
busy=$!
for _ in $(seq 100); do [ -e "$SCRATCH/busy/.lock" ] && break; sleep 0.05; done
expect_fail "a second run into a directory in use" train "${COMMON[@]}" --out "$SCRATCH/busy"
check "... says who holds it" grep -q "another repvgg train is writing" "$SCRATCH/bad.err"
kill "$busy" 2>/dev/null
wait "$busy" 2>/dev/null
# an IDX val split whose labels stop at 3 (so it counts 4 classes) trains with a train split of 10
if [ -n "${3:-}" ] && [ -x "${3:-}" ]; then
    "$3" - "$SCRATCH/idx4" << 'PYEOF'
import os, struct, sys
import numpy as np
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for split, n, k in (("train", 20, 10), ("t10k", 8, 4)):
    px = np.random.default_rng(0).integers(0, 256, n * 28 * 28).astype(np.uint8)
    with open("%s/%s-images-idx3-ubyte" % (d, split), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + px.tobytes())
    with open("%s/%s-labels-idx1-ubyte" % (d, split), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + bytes(np.arange(n) % k))
PYEOF
    check "an IDX val split with fewer classes than the train split trains" "$TOOL" train \
        --arch "$ARCH" --data "idx:$SCRATCH/idx4" --epochs 1 --batch 4 --threads 1 --quiet \
        --out "$SCRATCH/idx4run"
    # a relative data path is recorded absolute: the run resumes from another directory
    (cd "$SCRATCH" && "$TOOL" train --arch "$ARCH" --data idx:idx4 --epochs 2 --batch 4 \
        --threads 1 --quiet --out relrun --stop-after-steps 6 > /dev/null 2>&1)
    check "a run started with a relative --data resumes from elsewhere" \
        bash -c "cd / && '$TOOL' train --resume '$SCRATCH/relrun' --threads 1 --quiet > /dev/null"
fi
# weights holding a NaN: eval (either engine) and predict stop with a message, where they used to
# report a NaN loss, a top-1 of 0 and every image as class 0
if [ -n "${3:-}" ] && [ -x "${3:-}" ]; then
    "$3" - "$A/last.safetensors" "$SCRATCH/nan.safetensors" "$SCRATCH/zeros.npy" << 'PYEOF'
import json, struct, sys
import numpy as np
b = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
o = 8 + n + json.loads(b[8:8 + n])['linear.bias']['data_offsets'][0]
b[o:o + 4] = struct.pack('<f', float('nan'))
open(sys.argv[2], 'wb').write(b)
np.save(sys.argv[3], np.zeros((2, 1, 28, 28), np.float32))
PYEOF
    for engine in model fast; do
        expect_fail "eval --engine $engine of NaN weights" eval --weights "$SCRATCH/nan.safetensors" \
            --limit-val 64 --engine "$engine"
        check "... says the output is not finite" grep -q "not finite" "$SCRATCH/bad.err"
    done
    expect_fail "predict with NaN weights" predict --weights "$SCRATCH/nan.safetensors" \
        --input "$SCRATCH/zeros.npy" --output "$SCRATCH/nan_logits.npy"
    check "... says the output is not finite" grep -q "not finite" "$SCRATCH/bad.err"
fi
"$TOOL" convert "$A/last.safetensors" "$SCRATCH/deploy.safetensors" > /dev/null
# A checkpoint is read as the raw weights it holds, by convert as by eval and predict (run A keeps
# no average, so they are last.safetensors' weights).
"$TOOL" convert "$A/last.ckpt.safetensors" "$SCRATCH/deploy_ckpt.safetensors" > /dev/null
check "convert of last.ckpt.safetensors == convert of last.safetensors (byte for byte)" \
    cmp -s "$SCRATCH/deploy.safetensors" "$SCRATCH/deploy_ckpt.safetensors"
# The deploy form is evaluated on the fast engine by default; it, the model's own forward of the
# deploy form, and the train form with its branches give the same class for every image.
evp() { # evp WEIGHTS OUT [eval options]: predictions of 256 validation images into OUT
    local w=$1 out=$2
    shift 2
    "$TOOL" eval --weights "$w" --limit-val 256 --json --predictions "$out" "$@"
}
evp "$SCRATCH/deploy.safetensors" "$SCRATCH/p_fast.txt" > "$SCRATCH/e_fast.json"
check "eval runs deploy-form weights on the fast engine" \
    grep -q '"form":"deploy","engine":"fast"' "$SCRATCH/e_fast.json"
evp "$SCRATCH/deploy.safetensors" "$SCRATCH/p_model.txt" --engine model > "$SCRATCH/e_model.json"
check "eval --engine model runs the model's forward" \
    grep -q '"form":"deploy","engine":"model"' "$SCRATCH/e_model.json"
evp "$A/last.safetensors" "$SCRATCH/p_train.txt" > "$SCRATCH/e_train.json"
check "eval runs the train form through the model" \
    grep -q '"form":"train","engine":"model"' "$SCRATCH/e_train.json"
evp "$A/last.safetensors" "$SCRATCH/p_train_fast.txt" --engine fast > /dev/null
check "256 predictions: engine == the deploy form's model forward" \
    cmp -s "$SCRATCH/p_fast.txt" "$SCRATCH/p_model.txt"
check "256 predictions: engine == the train form" cmp -s "$SCRATCH/p_fast.txt" "$SCRATCH/p_train.txt"
check "256 predictions: the train form converted in memory (--engine fast) == the engine" \
    cmp -s "$SCRATCH/p_fast.txt" "$SCRATCH/p_train_fast.txt"
check "eval predictions has 256 lines" test "$(wc -l < "$SCRATCH/p_fast.txt")" -eq 256
# Every kernel set gives the same classes: the AMX one (bf16x3) where the CPU has it, and its
# plain-C twin everywhere; a set the CPU lacks is an error, not a fallback.
evp "$SCRATCH/deploy.safetensors" "$SCRATCH/p_twin.txt" --kernels amx-twin > "$SCRATCH/e_twin.json"
check "eval --kernels amx-twin reports its kernels" grep -q '"kernels":"amx-twin"' "$SCRATCH/e_twin.json"
check "256 predictions: the amx-twin kernels == the default ones" \
    cmp -s "$SCRATCH/p_fast.txt" "$SCRATCH/p_twin.txt"
if "$TOOL" --version | grep -q "available:.* amx"; then
    evp "$SCRATCH/deploy.safetensors" "$SCRATCH/p_amx.txt" --kernels amx > /dev/null
    check "256 predictions: the amx kernels == the default ones" \
        cmp -s "$SCRATCH/p_fast.txt" "$SCRATCH/p_amx.txt"
else
    expect_fail "eval --kernels amx without AMX" eval --weights "$SCRATCH/deploy.safetensors" \
        --kernels amx
fi
expect_fail "eval --kernels bogus" eval --weights "$SCRATCH/deploy.safetensors" --kernels bogus

# ---- train --kernels: the bf16x3 training GEMM (amx-twin, its plain-C twin, runs on any CPU; amx
# where the CPU has AMX tiles) trains close to fp32 (run A: first-epoch training loss within 1%,
# last val loss within 5%), is recorded in the checkpoint, and a resume keeps it, bit-identical
close_pct() { # close_pct A B PCT: |A - B| <= PCT% of |B|
    awk -v a="$1" -v b="$2" -v p="$3" 'BEGIN { d = a - b; if (d < 0) d = -d
        m = b < 0 ? -b : b; exit !(a != "" && b != "" && d <= p / 100 * m) }'
}
KT=("${COMMON[@]}" --kernels amx-twin)
resumes_identically "train --kernels amx-twin" kt 12 "${KT[@]}"
check "train --kernels is in the checkpoint's config" \
    grep -q 'kernels\\":\\"amx-twin' "$SCRATCH/kt/last.ckpt.safetensors"
for k in kt $("$TOOL" --version | grep -q "available:.* amx" && echo kx); do
    if [ "$k" = kx ]; then
        check "train --kernels amx" "$TOOL" train "${COMMON[@]}" --kernels amx --out "$SCRATCH/kx"
    fi
    l_a=$(sed -n 2p "$A/log.csv" | cut -d, -f3)
    l_k=$(sed -n 2p "$SCRATCH/$k/log.csv" | cut -d, -f3)
    check "$k: first-epoch train loss $l_k within 1% of fp32's $l_a" close_pct "$l_k" "$l_a" 1
    v_a=$(tail -n 1 "$A/log.csv" | cut -d, -f5)
    v_k=$(tail -n 1 "$SCRATCH/$k/log.csv" | cut -d, -f5)
    check "$k: last val loss $v_k within 5% of fp32's $v_a" close_pct "$v_k" "$v_a" 5
done
if ! "$TOOL" --version | grep -q "available:.* amx"; then
    expect_fail "train --kernels amx without AMX" train "${COMMON[@]}" --kernels amx \
        --out "$SCRATCH/kx"
fi
expect_fail "train --kernels bogus" train "${COMMON[@]}" --kernels bogus --out "$SCRATCH/kb"
expect_fail "bench --train --kernels avx2 (an inference set)" bench --arch A0 --train \
    --kernels avx2 --runs 1
expect_fail "eval --engine gpu" eval --weights "$SCRATCH/deploy.safetensors" --engine gpu
expect_fail "predict --engine gpu" predict --weights "$SCRATCH/deploy.safetensors" \
    --engine gpu --input "$SCRATCH/none.png"
expect_fail "predict --threads 0" predict --weights "$SCRATCH/deploy.safetensors" \
    --threads 0 --input "$SCRATCH/none.png"
# The preprocessing record travels with the weights through convert, and `repvgg predict` on
# PNG files of test images (grey, 28x28) gives the classes `repvgg eval` gives the same images.
for f in "$A/last.safetensors" "$SCRATCH/deploy.safetensors"; do
    check "$f records repvgg.eval resize" grep -q '"repvgg.eval":"resize"' "$f"
done
if [ -n "${3:-}" ] && [ -x "${3:-}" ]; then
    "$3" - "$DATA" "$SCRATCH" "$(dirname "$0")/ref" << 'PYEOF'
import gzip, os, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from write_images import png
data, out = sys.argv[1:3]
path = data + "/t10k-images-idx3-ubyte"
raw = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
for i in range(8):
    png("%s/test%d.png" % (out, i), x[i])
PYEOF
    "$TOOL" eval --weights "$SCRATCH/deploy.safetensors" --limit-val 8 \
        --predictions "$SCRATCH/eval8.txt" > /dev/null
    "$TOOL" predict --weights "$SCRATCH/deploy.safetensors" --topk 1 \
        --input "$SCRATCH"/test[0-7].png | awk 'NR % 2 == 0 { print $1 }' > "$SCRATCH/pred8.txt"
    check "predict on 8 test images as PNG == eval's classes" \
        cmp -s "$SCRATCH/eval8.txt" "$SCRATCH/pred8.txt"
    "$TOOL" predict --weights "$SCRATCH/deploy.safetensors" --topk 1 --engine model \
        --threads 1 --input "$SCRATCH"/test[0-7].png | awk 'NR % 2 == 0 { print $1 }' \
        > "$SCRATCH/pred8m.txt"
    check "predict --engine model on the PNG files == the engine's classes" \
        cmp -s "$SCRATCH/pred8.txt" "$SCRATCH/pred8m.txt"
    # and names them with the data set's class names that training recorded
    "$TOOL" predict --weights "$SCRATCH/deploy.safetensors" --topk 10 \
        --input "$SCRATCH/test0.png" > "$SCRATCH/pred_names.txt"
    fm="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
    check "predict prints the recorded Fashion-MNIST class names" awk -v names="$fm" 'BEGIN {
        split(names, n, ",") }
        NR > 1 { name = $3; for (i = 4; i <= NF; i++) name = name " " $i
                 if (name != n[$1 + 1]) bad = 1; rows++ }
        END { exit bad || rows != 10 }' "$SCRATCH/pred_names.txt"
fi
expect_fail "--init of a missing file" train "${COMMON[@]}" --init "$SCRATCH/none" --out "$SCRATCH/e10"
expect_fail "--init of deploy-form weights" \
    train "${COMMON[@]}" --init "$SCRATCH/deploy.safetensors" --out "$SCRATCH/e11"
expect_fail "--init of another architecture" train "${COMMON[@]}" \
    --arch custom:blocks=1,1,1,1:width=0.5,0.25,0.25,0.25 --init "$A/last.safetensors" \
    --out "$SCRATCH/e12"
expect_fail "--init with --resume" train --resume "$B" --init "$A/last.safetensors"
expect_fail "eval without --weights" eval --data fashion-mnist
expect_fail "eval of a missing file" eval --weights "$SCRATCH/none.safetensors"
expect_fail "plot of a dir without log" plot "$SCRATCH/empty"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
