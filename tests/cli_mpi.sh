#!/usr/bin/env bash
# cli_mpi.sh - data-parallel training under mpirun (MPI builds only): 2 ranks with --sync-bn at
# half the batch each end with the weights of 1 rank at the full batch, only rank 0 writes and
# prints, a run started with --init starts every rank from the weights, --ema averages on rank 0
# as one process does, a resume may change the number of ranks, a bad global batch is refused,
# and a rank that dies ends the whole job with a non-zero status instead of leaving the others
# waiting.
#
# Usage: cli_mpi.sh TOOL SCRATCH_DIR [PYTHON]. Exit 77 (skip) when TOOL was built without MPI
# (its `train --help` does not offer --sync-bn), when mpirun or the data set is missing.
set -u
TOOL=$1
SCRATCH=$2
PY=${3:-python3}
DATA=/usr/share/datasets/fashion-mnist
if ! "$TOOL" train --help | grep -q -- --sync-bn; then
    echo "skipped: $TOOL was built without MPI (configure with -DRVG_MPI=ON)"
    exit 77
fi
if ! command -v mpirun > /dev/null; then
    echo "skipped: mpirun not found (Debian: openmpi-bin)"
    exit 77
fi
if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -e "$DATA/train-images-idx3-ubyte" ]; then
    echo "skipped: $DATA not found"
    exit 77
fi
command -v "$PY" > /dev/null || PY=python3
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
# Every MPI run is bounded: a hang is a failure (124), never a stuck test.
mpi() { # mpi NP ARGS...
    local np=$1
    shift
    timeout 120 mpirun --allow-run-as-root --oversubscribe -np "$np" "$TOOL" "$@"
}

# Compares two safetensors files tensor by tensor, |a-b| <= atol + rtol*|b|; standard library only.
# Tolerance: the runs differ only in summation order (per-rank partial sums of the BN statistics
# and of the gradients, added across ranks), i.e. fp32 rounding; after 16 SGD steps the observed
# maximum difference is ~2e-7, so atol 1e-5 + rtol 1e-4 is loose for rounding and far below the
# ~0.3 that unsynchronised BN gives (which the test also checks, to show it discriminates).
cat > "$SCRATCH/cmp.py" << 'PYEOF'
import json, struct, sys
from array import array
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        a = array({'F32': 'f', 'I64': 'q'}[v['dtype']])
        a.frombytes(b[8 + n + s:8 + n + e])
        out[k] = a
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
atol, rtol = float(sys.argv[3]), float(sys.argv[4])
if a.keys() != b.keys():
    sys.exit('different tensors: %s' % sorted(set(a) ^ set(b)))
worst, bad = 0.0, []
for k in a:
    for x, y in zip(a[k], b[k]):
        d = abs(x - y)
        worst = max(worst, d)
        if d > atol + rtol * abs(y):
            bad.append(k)
            break
print('max |diff| %.3g over %d tensors; %d beyond atol %g + rtol %g %s'
      % (worst, len(a), len(bad), atol, rtol, bad[:3]))
sys.exit(1 if bad else 0)
PYEOF
close() { "$PY" "$SCRATCH/cmp.py" "$1" "$2" 1e-5 1e-4; }
differ() { ! "$PY" "$SCRATCH/cmp.py" "$1" "$2" 1e-3 1e-2 > /dev/null; }

ARCH=custom:blocks=1,1,1,1:width=0.25,0.25,0.25,0.25
# 512 images, global batch 64: 8 steps per epoch, 16 in all; crop + flip stay on (the loader's
# randomness depends only on (seed, epoch, sample), so both splits see the same images).
COMMON=(--arch "$ARCH" --data fashion-mnist --limit-train 512 --limit-val 256 --epochs 2
        --batch 64 --threads 1 --workers 1)

# ---- 1 rank x 64 vs 2 ranks x 32, synchronised BN -----------------------------------------------
mpi 1 train "${COMMON[@]}" --sync-bn --out "$SCRATCH/one" > "$SCRATCH/one.out" 2>&1
check "1 rank trains (status $?)" test -s "$SCRATCH/one/last.safetensors"
mpi 2 train "${COMMON[@]}" --sync-bn --out "$SCRATCH/two" > "$SCRATCH/two.out" 2> "$SCRATCH/two.err"
rc=$?
check "2 ranks train (status $rc): $(tail -n 3 "$SCRATCH/two.err")" test "$rc" -eq 0
check "2 ranks x 32 == 1 rank x 64 (sync-BN)" \
    close "$SCRATCH/one/last.safetensors" "$SCRATCH/two/last.safetensors"
check "only rank 0 prints the epoch summaries" test "$(grep -c '^epoch ' "$SCRATCH/two.out")" -eq 2
check "the run reports its ranks" grep -q "data parallel over 2 ranks" "$SCRATCH/two.err"
check "log.csv has 2 epochs" test "$(tail -n +2 "$SCRATCH/two/log.csv" | wc -l)" -eq 2

# ---- --init: rank 0 reads the weights, every rank starts from them ------------------------------
mpi 1 train "${COMMON[@]}" --sync-bn --init "$SCRATCH/one/last.safetensors" --quiet \
    --out "$SCRATCH/i1" > /dev/null 2>&1
mpi 2 train "${COMMON[@]}" --sync-bn --init "$SCRATCH/one/last.safetensors" --quiet \
    --out "$SCRATCH/i2" > /dev/null 2> "$SCRATCH/i2.err"
check "2 ranks train from --init (status $?)" test -s "$SCRATCH/i2/last.safetensors"
check "2 ranks --init == 1 rank --init (sync-BN)" \
    close "$SCRATCH/i1/last.safetensors" "$SCRATCH/i2/last.safetensors"
check "--init changed where the run went" \
    differ "$SCRATCH/one/last.safetensors" "$SCRATCH/i2/last.safetensors"

# ---- --ema: rank 0 keeps the average; the same as one process's -----------------------------------
mpi 1 train "${COMMON[@]}" --sync-bn --ema 0.9 --quiet --out "$SCRATCH/e1" > /dev/null 2>&1
mpi 2 train "${COMMON[@]}" --sync-bn --ema 0.9 --quiet --out "$SCRATCH/e2" > /dev/null \
    2> "$SCRATCH/e2.err"
check "2 ranks train with --ema (status $?)" test -s "$SCRATCH/e2/last.ckpt.safetensors"
check "2 ranks --ema == 1 rank --ema (sync-BN; weights, momentum, average)" \
    close "$SCRATCH/e1/last.ckpt.safetensors" "$SCRATCH/e2/last.ckpt.safetensors"
check "the --ema weights are the average, not the raw weights" \
    differ "$SCRATCH/two/last.safetensors" "$SCRATCH/e2/last.safetensors"

# ---- per-rank BN (the default) runs, and really differs from the global-batch statistics -------
mpi 2 train "${COMMON[@]}" --quiet --out "$SCRATCH/local" > /dev/null 2>&1
check "2 ranks with per-rank BN train" test -s "$SCRATCH/local/last.safetensors"
check "per-rank BN differs from sync-BN (the comparison discriminates)" \
    differ "$SCRATCH/one/last.safetensors" "$SCRATCH/local/last.safetensors"

# ---- a resume may change the number of ranks ----------------------------------------------------
mpi 2 train "${COMMON[@]}" --sync-bn --quiet --out "$SCRATCH/r21" --stop-after-steps 12 \
    > /dev/null 2>&1
check "2-rank run stopped after epoch 1" test "$(tail -n +2 "$SCRATCH/r21/log.csv" | wc -l)" -eq 1
check "resume on 1 rank" mpi 1 train --resume "$SCRATCH/r21" --threads 1 --quiet
check "2 -> 1 ranks == uninterrupted" \
    close "$SCRATCH/two/last.safetensors" "$SCRATCH/r21/last.safetensors"
mpi 1 train "${COMMON[@]}" --sync-bn --quiet --out "$SCRATCH/r12" --stop-after-steps 12 \
    > /dev/null 2>&1
check "1-rank run stopped after epoch 1" test "$(tail -n +2 "$SCRATCH/r12/log.csv" | wc -l)" -eq 1
check "resume on 2 ranks" mpi 2 train --resume "$SCRATCH/r12" --threads 1 --quiet
check "1 -> 2 ranks == uninterrupted" \
    close "$SCRATCH/one/last.safetensors" "$SCRATCH/r12/last.safetensors"

# ---- bad input -----------------------------------------------------------------------------------
mpi 2 train "${COMMON[@]}" --batch 63 --out "$SCRATCH/odd" > /dev/null 2> "$SCRATCH/odd.err"
rc=$?
check "--batch 63 on 2 ranks fails (status $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "--batch 63 names the problem" grep -q "multiple of the 2 ranks" "$SCRATCH/odd.err"

# ---- ranks whose copies differ are stopped before training, with the cause -------------------
# rank 1 reads 256 training images where rank 0 reads 512 (a shorter copy of the data)
cat > "$SCRATCH/rankwrap.sh" << 'EOF'
#!/usr/bin/env bash
tool=$1
shift
if [ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ]; then exec "$tool" "$@" --limit-train 256; fi
exec "$tool" "$@"
EOF
chmod +x "$SCRATCH/rankwrap.sh"
timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 "$SCRATCH/rankwrap.sh" "$TOOL" \
    train "${COMMON[@]}" --quiet --out "$SCRATCH/differ" > /dev/null 2> "$SCRATCH/differ.err"
rc=$?
check "ranks with different data fail (status $rc, 124 = hung)" test "$rc" -ne 0 -a "$rc" -ne 124
check "... naming the training data" grep -q "the ranks' training data differ" "$SCRATCH/differ.err"
check "... before any checkpoint" test ! -e "$SCRATCH/differ/last.ckpt.safetensors"

# ---- a rank that dies ends the job, bounded ------------------------------------------------------
t0=$(date +%s)
mpi 2 train "${COMMON[@]}" --quiet --out "$SCRATCH/die" --die-at-step 3 > /dev/null \
    2> "$SCRATCH/die.err"
rc=$?
t1=$(date +%s)
check "a dead rank fails the job (status $rc, 124 = hung)" test "$rc" -ne 0 -a "$rc" -ne 124
check "the job says which rank died" grep -q "rank 1 dying at step 3" "$SCRATCH/die.err"
check "the job ended within 60 s (took $((t1 - t0)) s)" test $((t1 - t0)) -lt 60
check "no checkpoint from the dead job" test ! -e "$SCRATCH/die/last.ckpt.safetensors"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
