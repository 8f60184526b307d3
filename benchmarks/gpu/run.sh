#!/usr/bin/env bash
# One command for a GPU machine (the `device` tool, or any CUDA box with torch, onnx, onnxruntime,
# onnx-ir, onnxscript, tqdm, scikit-learn, pillow): trains the zoo models on CIFAR-10 / Fashion-MNIST with
# time budgets, exports, converts, and evaluates the integer and float SNN on the GPU for every T.
# Usage: benchmarks/gpu/run.sh OUT_DIR CIFAR_TAR_OR_DIR [FASHION_DIR] [extra args for run_gpu.py]
set -euo pipefail
out=${1:?OUT_DIR}; cifar=${2:?CIFAR-10 tar.gz or folder}; fmnist=${3:-/usr/share/datasets/fashion-mnist}
shift $(( $# < 3 ? $# : 3 ))
here=$(cd "$(dirname "$0")/../.." && pwd)
site=$(mktemp -d)
# Mirror pyproject's package-dir mapping (qcfs/ + frontend/ exporters/ toolchain/ runtime/ report/ as
# qcfs.<name>) by copying: needs no pip, no build backend and no network on the GPU machine.
mkdir -p "$site/qcfs"
cp -r "$here"/qcfs/. "$site/qcfs/"
for pkg in frontend exporters toolchain runtime report; do cp -r "$here/$pkg" "$site/qcfs/$pkg"; done
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -f "$cifar" ]; then
  dir=$(mktemp -d); tar -xzf "$cifar" -C "$dir"; cifar=$dir
fi
mkdir -p "$out"
python3 "$here/benchmarks/gpu/run_gpu.py" --out "$out" --cifar-dir "$cifar" --fashion-dir "$fmnist" "$@"
