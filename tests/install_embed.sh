#!/usr/bin/env bash
# install_embed.sh - the library as another program uses it: `cmake --install` into a scratch
# prefix, examples/classify.c compiled against the installed headers and librvg.a with
# `pkg-config --cflags --libs repvgg` alone, then run on JPEG/PNG images: its top-5 classes and
# probabilities must be those of `repvgg predict --topk 5` on the same weights and images (a
# 3-channel model without a preprocessing record, so the ImageNet transform at 224, and a
# 1-channel model whose record asks for a 28x28 resize, in the train form and converted).
#
# Usage: install_embed.sh BUILD_DIR SOURCE_DIR SCRATCH CC [PYTHON]. Exit 77 (skip) without torch
# or pkg-config. Not registered in sanitizer or MPI builds (their librvg needs the sanitizer
# runtime or mpicc, which the plain .pc file does not give).
set -u
build=$1 src=$2 dir=$3 cc=$4 py=${5:-/usr/bin/python3}
rm -rf "$dir" && mkdir -p "$dir"
pass=0 fail=0
ok() { echo "  ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }
command -v pkg-config > /dev/null || { echo "SKIPPED: no pkg-config"; exit 77; }

if cmake --install "$build" --prefix "$dir/prefix" > "$dir/install.log" 2>&1; then
    ok "cmake --install"
else
    bad "cmake --install: $(tail -3 "$dir/install.log")"
    exit 1
fi
for f in lib/librvg.a include/rvg/infer.h include/rvg/deploy.h bin/repvgg \
         lib/pkgconfig/repvgg.pc; do
    [ -e "$dir/prefix/$f" ] && ok "installed $f" || bad "missing $dir/prefix/$f"
done
export PKG_CONFIG_PATH=$dir/prefix/lib/pkgconfig
# shellcheck disable=SC2046  # pkg-config's flags are meant to split
if "$cc" -std=c11 -Wall -Wextra -Werror -O2 "$src/examples/classify.c" \
        $(pkg-config --cflags --libs repvgg) -o "$dir/classify" 2> "$dir/cc.log"; then
    ok "examples/classify.c builds with pkg-config --cflags --libs repvgg"
else
    bad "examples/classify.c: $(head -5 "$dir/cc.log")"
    exit 1
fi

export PYTHONPATH=$src/tests/ref
"$py" "$src/tests/ref/random_model.py" "$dir/rgb.safetensors" --blocks 1,1,1,1 \
    --width 0.25,0.25,0.25,0.25 --classes 10 --seed 11
rc=$?
if [ $rc -eq 77 ]; then echo "SKIPPED: no torch"; exit 77; fi
[ $rc -eq 0 ] && ok "python wrote a 3-channel model" || bad "random_model.py ($rc)"
"$py" "$src/tests/ref/random_model.py" "$dir/grey.safetensors" --blocks 1,1,1,1 \
    --width 0.25,0.25,0.25,0.25 --classes 10 --in-ch 1 --seed 12 --meta repvgg.mean=0.3 \
    --meta repvgg.std=0.4 --meta repvgg.size=28 --meta repvgg.eval=resize \
    && "$py" "$src/tests/ref/write_images.py" "$dir" \
    && ok "python wrote a 1-channel model with a record, and images" || bad "python inputs"
"$dir/prefix/bin/repvgg" convert "$dir/grey.safetensors" "$dir/grey_deploy.safetensors" \
    > /dev/null && ok "installed repvgg converts" || bad "installed repvgg convert"

for w in rgb grey grey_deploy; do
    for img in rgb.png gray.jpg; do
        "$dir/classify" "$dir/$w.safetensors" "$dir/$img" > "$dir/c.txt" 2> "$dir/c.err" \
            || { bad "classify $w $img: $(cat "$dir/c.err")"; continue; }
        "$dir/prefix/bin/repvgg" predict --weights "$dir/$w.safetensors" --input "$dir/$img" \
            --topk 5 | tail -n +2 > "$dir/p.txt"
        if awk 'NR == FNR { i[FNR] = $1; p[FNR] = $2; n++; next }
                { if ($1 != i[FNR] || (p[FNR] - $2) ^ 2 > 1e-10) bad = 1; m++ }
                END { exit bad || n != 5 || m != 5 }' "$dir/c.txt" "$dir/p.txt"; then
            ok "$w on $img: classify's top 5 == repvgg predict's"
        else
            bad "$w on $img: classify $(tr '\n' ' ' < "$dir/c.txt") vs predict $(tr '\n' ' ' \
                < "$dir/p.txt")"
        fi
    done
done
"$dir/classify" "$dir/none.safetensors" "$dir/rgb.png" > /dev/null 2> "$dir/e.err"
rc=$?
[ $rc -eq 1 ] && [ -s "$dir/e.err" ] && ok "a missing weights file: exit 1 with a message" \
    || bad "missing weights: exit $rc"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
