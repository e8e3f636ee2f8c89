#!/usr/bin/env bash
# cli_errors.sh - bad input gets a clear message and a non-zero exit, never a crash.
# Each case runs the tool, requires a non-zero exit that is not a signal (status < 128) and a
# message on stderr containing an expected phrase. Args: TOOL SCRATCH PYTHON.
set -u
tool=$1 dir=$2 py=${3:-/usr/bin/python3}
rm -rf "$dir" && mkdir -p "$dir"
pass=0 fail=0

# expect_fail PHRASE CMD...: CMD must exit 1..127 and print PHRASE (case-insensitive) on stderr
expect_fail() {
    local phrase=$1
    shift
    "$@" >"$dir/out" 2>"$dir/err"
    local rc=$?
    if [ $rc -ge 1 ] && [ $rc -lt 128 ] && grep -qi -- "$phrase" "$dir/err"; then
        echo "  ok   [$rc] $(head -c 150 "$dir/err" | head -1)"
        pass=$((pass + 1))
    else
        echo "FAILED: '$*' exited $rc; stderr: $(cat "$dir/err")"
        fail=$((fail + 1))
    fi
}
expect_ok() {
    if "$@" >"$dir/out" 2>"$dir/err"; then pass=$((pass + 1)); else
        echo "FAILED: '$*' exited $?: $(cat "$dir/err")"; fail=$((fail + 1)); fi
}

# a small valid model to corrupt
"$tool" info --arch A0 --json >/dev/null && pass=$((pass + 1)) || { echo "FAILED info"; fail=$((fail + 1)); }
expect_fail "unknown command" "$tool" frobnicate
# --version names the version and the kernel set an engine would pick on this CPU
if "$tool" --version >"$dir/out" 2>"$dir/err" && grep -q '^repvgg [0-9]' "$dir/out" &&
    grep -Eq '^inference kernels: (avx512|avx2|portable) \(available: portable' "$dir/out"; then
    pass=$((pass + 1))
else
    echo "FAILED: repvgg --version: $(cat "$dir/out" "$dir/err")"; fail=$((fail + 1))
fi
# an engine kernel set that does not exist, or that the CPU lacks, is refused by name
expect_fail "RVG_INFER_ISA=sse9" env RVG_INFER_ISA=sse9 "$tool" bench --arch A0 --size 32 --runs 1
if ! grep -q avx512f /proc/cpuinfo 2>/dev/null; then
    expect_fail "needs AVX-512F" env RVG_INFER_ISA=avx512 "$tool" bench --arch A0 --size 32 --runs 1
fi
expect_fail "unknown architecture" "$tool" info --arch Z9
expect_fail "custom arch" "$tool" info --arch custom:blocks=1,2
expect_fail "--classes" "$tool" info --arch A0 --classes 0
expect_fail "--size" "$tool" info --arch A0 --size abc
expect_fail "unknown" "$tool" info --arch A0 --bogus
expect_fail "give --arch or --weights" "$tool" info
expect_fail "give --arch or --weights" "$tool" info --arch A0 --weights x.safetensors
expect_fail "cannot open" "$tool" info --weights /nonexistent/w.safetensors
expect_fail "groups" "$tool" info --arch custom:blocks=1,1,1,1:width=0.25,0.25,0.25,0.25:groups=3@1
# custom specs that used to be taken and did something else: groups on a layer the network lacks,
# se=2 read as se=1 and se=yes as se=0, a NaN width
expect_fail "the network has 4 layers" "$tool" info \
    --arch custom:blocks=1,1,1,1:width=1,1,1,1:groups=2@5
expect_fail "se must be 0 or 1" "$tool" info --arch custom:blocks=1,1,1,1:width=1,1,1,1:se=2
expect_fail "se must be 0 or 1" "$tool" info --arch custom:blocks=1,1,1,1:width=1,1,1,1:se=yes
expect_fail "width in (0, 64]" "$tool" info --arch custom:blocks=1,1,1,1:width=nan,1,1,1
expect_ok "$tool" info --arch custom:blocks=1,1,1,1:width=1,1,1,1:groups=2@4:se=1
expect_fail "cannot open" "$tool" convert "$dir/missing.safetensors" "$dir/out.safetensors"
# bench: options checked, and --json carries the fields scripts read
expect_fail "--batch" "$tool" bench --arch A0 --batch 0
expect_fail "--runs" "$tool" bench --arch A0 --runs 0
expect_fail "--form" "$tool" bench --arch A0 --form bogus
expect_fail "exactly one" "$tool" bench
if "$tool" bench --train --arch A0 --in-ch 1 --classes 10 --size 16 --batch 2 --runs 2 --json \
    >"$dir/bench.json" 2>"$dir/err" &&
    "$py" -c 'import json, sys
o = json.load(open(sys.argv[1]))
assert o["mode"] == "train-step" and o["images_per_s"] > 0 and o["median_ms"] > 0, o
assert o["min_ms"] <= o["median_ms"] and o["phases"] >= 0 and o["phase_wait_ms"] >= 0, o' \
    "$dir/bench.json"; then pass=$((pass + 1)); else
    echo "FAILED: bench --train --json: $(cat "$dir/bench.json" "$dir/err")"; fail=$((fail + 1)); fi
expect_fail "--profile" "$tool" bench --arch A0 --train --profile
expect_fail "--profile" "$tool" bench --arch A0 --form train --profile
# bench --profile: one entry per layer (A0: 22, block names), times that add up to most of a run
if "$tool" bench --arch A0 --in-ch 1 --classes 10 --size 32 --batch 2 --runs 3 --profile --json \
    >"$dir/prof.json" 2>"$dir/err" &&
    "$py" -c 'import json, sys
o = json.load(open(sys.argv[1]))
ls = o["layers"]
assert len(ls) == 22 and ls[0]["name"] == "stage0" and ls[-1]["name"] == "stage4.0", ls
assert all(l["ms"] >= 0 and l["algo"] in ("direct", "wino4", "wino5", "wino6") for l in ls), ls
w = [l for l in ls if l["algo"] != "direct"]
assert w and all(l["input_ms"] + l["gemm_ms"] + l["output_ms"] <= l["ms"] * 1.01 + 1e-3 for l in w), w
# the layers lie inside the profiled runs (means over the same runs; not the timed runs, whose
# median an outlier among the profiled ones does not move)
assert 0 < sum(l["ms"] for l in ls) <= o["profile_run_ms"] * 1.001 + 1e-3, (o, ls)' \
    "$dir/prof.json"; then pass=$((pass + 1)); else
    echo "FAILED: bench --profile --json: $(cat "$dir/prof.json" "$dir/err")"; fail=$((fail + 1)); fi
"$tool" bench --arch A0 --size 32 --runs 2 --profile >"$dir/prof.txt" 2>"$dir/err" &&
    grep -q "stage3.13 .*wino\|stage3.13 .*direct" "$dir/prof.txt" && grep -q "all layers" "$dir/prof.txt" &&
    pass=$((pass + 1)) || { echo "FAILED: bench --profile: $(cat "$dir/prof.txt" "$dir/err")"; fail=$((fail + 1)); }
expect_fail "expected IN and OUT" "$tool" convert onlyone

# a real train-form file, written by the tool itself through a conversion round trip
if [ -x "$py" ] && "$py" -c "import torch" 2>/dev/null; then
    here=$(cd "$(dirname "$0")" && pwd)
    PYTHONPATH="$here/ref" "$py" "$here/ref/st_roundtrip.py" make "$dir" >/dev/null
    good="$dir/train.safetensors"
    expect_ok "$tool" convert "$good" "$dir/deploy.safetensors"
    # truncated file
    head -c 5000 "$good" >"$dir/trunc.safetensors"
    expect_fail "truncated" "$tool" convert "$dir/trunc.safetensors" "$dir/o.safetensors"
    # wrong magic / not safetensors
    printf 'hello world, not a weights file at all' >"$dir/junk.safetensors"
    expect_fail "safetensors" "$tool" convert "$dir/junk.safetensors" "$dir/o.safetensors"
    # a deploy file refused by --strict
    expect_fail "already in deploy form" "$tool" convert --strict "$dir/deploy.safetensors" "$dir/o.safetensors"
    # shape mismatch: input with the wrong channel count
    "$py" -c "import numpy as np; np.save('$dir/x1.npy', np.zeros((2,1,40,40), np.float32))"
    expect_fail "channels" "$tool" predict --weights "$good" --input "$dir/x1.npy" --output "$dir/y.npy"
    "$py" -c "import numpy as np; np.save('$dir/x3.npy', np.zeros((2,3,40), np.float32))"
    expect_fail "dimensions" "$tool" predict --weights "$good" --input "$dir/x3.npy" --output "$dir/y.npy"
    expect_fail "not a .npy" "$tool" predict --weights "$good" --input "$good" --output "$dir/y.npy"
    expect_fail "is a directory" "$tool" predict --weights "$good" --input "$dir"
    # name mismatch: an extra tensor, and a missing one
    PYTHONPATH="$here/ref" "$py" - "$dir" <<'PYEOF'
import sys, bundle
t, meta = bundle.load(sys.argv[1] + "/train.safetensors")
t2 = dict(t); t2["stage9.extra.weight"] = t["linear.bias"]
bundle.save(sys.argv[1] + "/extra.safetensors", t2)
t3 = dict(t); del t3["stage1.0.rbr_1x1.conv.weight"]
bundle.save(sys.argv[1] + "/missing.safetensors", t3)
t4 = dict(t); t4["linear.weight"] = t["linear.weight"][:, :-1].contiguous()
bundle.save(sys.argv[1] + "/shape.safetensors", t4)
PYEOF
    expect_fail "unexpected tensor" "$tool" convert "$dir/extra.safetensors" "$dir/o.safetensors"
    expect_fail "missing" "$tool" convert "$dir/missing.safetensors" "$dir/o.safetensors"
    expect_fail "shape" "$tool" convert "$dir/shape.safetensors" "$dir/o.safetensors"
    # an unwritable output leaves no partial file behind
    expect_fail "cannot create" "$tool" convert "$good" "/nonexistent-dir/o.safetensors"
    [ -z "$(ls "$dir"/*.tmp.* 2>/dev/null)" ] && pass=$((pass + 1)) || { echo "FAILED: temp file left"; fail=$((fail + 1)); }
    # torch.save's legacy (non-zip) format is named as such, not read as a broken safetensors
    "$py" -c "import torch; torch.save({'a': torch.zeros(2)}, '$dir/legacy.pth',
                                       _use_new_zipfile_serialization=False)"
    expect_fail "legacy (non-zip) format" "$tool" convert "$dir/legacy.pth" "$dir/o.safetensors"
    # an unsupported .npy dtype is named alone
    "$py" -c "import numpy as np; np.save('$dir/f16.npy', np.zeros((2,3,40,40), np.float16))"
    expect_fail "dtype '<f2'; expected" "$tool" predict --weights "$good" --input "$dir/f16.npy" \
        --output "$dir/y.npy"
    # --kernels picks the fast engine's kernels: refused where the model's forward runs instead
    "$py" -c "import numpy as np; np.save('$dir/x40.npy', np.zeros((2,3,40,40), np.float32))"
    expect_fail "add --engine fast" "$tool" predict --weights "$good" --input "$dir/x40.npy" \
        --output "$dir/y.npy" --kernels portable
    expect_fail "add --engine fast" "$tool" predict --weights "$dir/deploy.safetensors" \
        --input "$dir/x40.npy" --output "$dir/y.npy" --kernels portable --engine model
    expect_ok "$tool" predict --weights "$good" --input "$dir/x40.npy" --output "$dir/y.npy" \
        --kernels portable --engine fast
    # image options on a .npy input (which they would not reach)
    expect_fail "act on images" "$tool" predict --weights "$good" --input "$dir/x40.npy" \
        --output "$dir/y.npy" --topk 3
fi
# plot of a run with no epochs logged yet
mkdir -p "$dir/norun"
echo "epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,seconds,data_wait_s" \
    >"$dir/norun/log.csv"
expect_fail "no epochs yet" "$tool" plot "$dir/norun"
# `repvgg help CMD` is `repvgg CMD --help`
if "$tool" help train >"$dir/help.out" 2>&1 && grep -q -- "--clip-grad" "$dir/help.out"; then
    pass=$((pass + 1))
else
    echo "FAILED: repvgg help train: $(head -3 "$dir/help.out")"; fail=$((fail + 1))
fi
expect_fail "no command 'bogus'" "$tool" help bogus
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
