#!/usr/bin/env bash
# setup.sh - installs everything repvgg.c needs on a fresh Debian 12 machine: the compilers and
# libraries (.ci/packages.txt), PyTorch (the test oracle), Fashion-MNIST (the default data set),
# and ONNX Runtime for Node.js (the inference peer in benchmarks and the ONNX export test).
# Run as root (or with sudo available). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
pkgs=$(grep -v '^#' .ci/packages.txt | tr '\n' ' ')
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $pkgs >/dev/null
# Node.js and npm (for onnxruntime-node): Debian's packages unless a Node.js with its own npm (as
# NodeSource ships, which conflicts with Debian's npm package) is already installed.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
# onnxruntime-node: the CPU binaries ship inside the npm package; its install step would try to
# download GPU files, which ONNXRUNTIME_NODE_INSTALL=skip turns off.
if [ ! -d node_modules/onnxruntime-node ]; then
    ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save --no-audit --no-fund --silent \
        onnxruntime-node >/dev/null
fi
echo "setup: done ($(gcc --version | head -1); torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'))"
