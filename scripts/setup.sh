#!/usr/bin/env bash
# Installs the Debian 12 packages SigmaQuant needs. Idempotent: installs only what is missing,
# and runs `apt-get update` only when something has to be installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config zlib1g-dev
  libtorch-dev libopenblas-dev          # training / QAT (LibTorch, CPU) and a fast BLAS for it
  dataset-fashion-mnist                 # the default data (idx files, gzip)
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  libboost-dev                          # Boost.Math: Student's t for the seed statistics
  libonnx-dev libprotobuf-dev           # ONNX import/export (protobuf messages + checker)
  libglpk-dev                           # the allocators' exact integer programs (GLPK)
  libgloo-dev                           # Gloo headers for c10d::ProcessGroupGloo (data parallelism)
  chromium                              # the report-rendering test (headless screenshot)
  pybind11-dev python3-pybind11         # the Python module (python/)
  python3-numpy python3-pytest          # its arrays and its tests
  verilator yosys                       # the shift-add accelerator's RTL: simulation and synthesis
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm   # the C export on a Cortex-M (QEMU)
)
# ONNX Runtime for the export tests comes from npm (onnxruntime-node); Debian's nodejs/npm unless
# a Node.js with npm is already installed.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: missing packages: ${missing[*]}" >&2
  echo "setup.sh: run as root (or install them with apt-get) and try again" >&2
  exit 1
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
