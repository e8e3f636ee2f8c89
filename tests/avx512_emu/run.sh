#!/usr/bin/env bash
# run.sh - runs test_infer (and, if given, `test_conv_fast --wide-only`) on an emulated AVX-512
# CPU, so that the AVX-512 inference kernels (src/infer/kern_avx512.c) and training GEMM kernels
# (src/ops/x86/conv2d_gemm_avx512.c) execute and are checked even where no machine with AVX-512 is
# at hand.
#
# Bochs (Debian's bochs, which implements AVX-512 in software) emulates a Skylake-X; GRUB boots
# Debian's cloud kernel with an initramfs holding only init.c (PID 1), test_infer and its shared
# libraries; the serial console goes to a file, which this script reads. Passes when the emulated
# CPU reports AVX-512F to the program, test_infer runs its AVX-512 cases (and compares them bit
# for bit with the AVX2-built twin) and exits 0. Takes about 6 minutes (~70 million emulated
# instructions per second).
#
# Usage: tests/avx512_emu/run.sh TEST_INFER WORK_DIR [TEST_CONV_FAST]
# Needs (.ci/packages.txt): bochs bochs-term bochsbios grub-pc-bin grub-common xorriso mtools cpio;
# downloads the kernel package with apt-get download into WORK_DIR once.
set -euo pipefail
bin=$(realpath "$1")
dir=$2
conv=""
[ -n "${3:-}" ] && conv=$(realpath "$3")
here=$(cd "$(dirname "$0")" && pwd)
for t in bochs grub-mkrescue xorriso cpio script gzip apt-get dpkg-deb; do
    command -v "$t" >/dev/null || { echo "FAILED: avx512_emu needs $t (.ci/packages.txt)"; exit 1; }
done
mkdir -p "$dir"
cd "$dir"

# Debian's cloud kernel: small (no drivers for real hardware), boots in about a minute here
if ! ls kernel/boot/vmlinuz-* >/dev/null 2>&1; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    rm -rf kernel dl && mkdir dl
    # (as root apt warns that its _apt user cannot write here; the download works regardless)
    (cd dl && apt-get download "$pkg" >../apt-download.log 2>&1) ||
        { cat apt-download.log; echo "FAILED: apt-get download $pkg"; exit 1; }
    dpkg-deb -x dl/*.deb kernel
fi

# initramfs: init, the tests and the libraries ldd names (with the dynamic loader)
rm -rf root iso && mkdir -p root iso/boot/grub
gcc -O2 -static "$here/init.c" -o root/init
cp "$bin" root/test_infer
[ -n "$conv" ] && cp "$conv" root/test_conv_fast
for lib in $( (ldd "$bin"; [ -n "$conv" ] && ldd "$conv") |
        awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
    mkdir -p "root$(dirname "$lib")"
    cp -L "$lib" "root$lib"
done
(cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1) > iso/boot/initrd.gz
cp kernel/boot/vmlinuz-* iso/boot/vmlinuz
# clearcpuid=xsaves,xsavec: Bochs 2.7's Skylake-X reports the standard XSAVE area size for the
# compacted format, which Linux 6.1 takes as an inconsistency and then disables XSAVE, and AVX
# with it; without XSAVES/XSAVEC the kernel uses the standard format, whose sizes agree.
cat > iso/boot/grub/grub.cfg <<'EOF'
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
menuentry avx512emu {
  linux /boot/vmlinuz console=ttyS0 panic=-1 quiet loglevel=3 clearcpuid=xsaves,xsavec
  initrd /boot/initrd.gz
}
EOF
grub-mkrescue -o boot.iso iso >grub-mkrescue.log 2>&1

cat > bochsrc <<'EOF'
megs: 1024
cpu: model=corei7_skylake_x, count=1, ips=400000000, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
ata0-master: type=cdrom, path=boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=serial.txt
display_library: term
clock: sync=none, time0=local
log: bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
EOF
# Debian's Bochs has its debugger built in and stops before the first instruction: "c" goes on.
# The term display wants a terminal, which script(1) provides. A run takes ~270 s here; the
# timeout (3x that) ends a hung boot, which otherwise never returns.
echo c > debugger.rc
rm -f serial.txt
start=$(date +%s)
TERM=xterm timeout 900 script -qfc "bochs -q -f bochsrc -rc debugger.rc" /dev/null \
    >bochs.out 2>&1 </dev/null || true
echo "avx512_emu: emulation took $(($(date +%s) - start)) s"

[ -f serial.txt ] || { echo "FAILED: no serial output (see $dir/bochs.out, bochs.log)"; exit 1; }
serial=serial.log
tr -d '\r' <serial.txt >"$serial" # the console ends lines with CR LF and starts some with CR
grep -a -E 'avx512emu:|passed, [0-9]+ failed|FAILED' "$serial" || true
n512=$(grep -a -c '^  ok .*/avx512 ' "$serial" || true)
if grep -a -q '^avx512emu: cpu avx2 1 fma 1 avx512f 1' "$serial" &&
    grep -a -q '^avx512emu: test_infer exit status 0' "$serial" &&
    grep -a -q ' passed, 0 failed' "$serial" && ! grep -a -q 'FAILED' "$serial" &&
    [ "$n512" -ge 100 ] &&
    { [ -z "$conv" ] || { grep -a -q '^avx512emu: test_conv_fast exit status 0' "$serial" &&
        grep -a -q 'wide (AVX-512) GEMM kernels: bitwise against AVX2' "$serial"; }; }; then
    extra=""
    [ -n "$conv" ] && extra="; the AVX-512 training GEMM kernels bitwise equal to AVX2"
    echo "avx512_emu: passed ($n512 checks of the avx512 kernel set on the emulated CPU$extra)"
else
    echo "FAILED: avx512_emu ($n512 avx512 checks; serial console in $dir/$serial)"
    exit 1
fi
