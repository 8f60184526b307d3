#!/usr/bin/env bash
# Creates (or reuses) the virtual environment and installs qcfs with its test tools, Lava and lava-dl (netx),
# and the NIR readers sinabs, snnTorch and Norse the interop tests run.
# Usage: scripts/setup_env.sh VENV_DIR        (QCFS_NO_LAVA=1 skips the Lava simulator)
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check -q"
# Lava's dependencies first, under numpy<2 (a one-shot --ignore-requires-python install would pick a
# scipy that needs Python 3.12).
$pip install -c "$here/constraints.txt" "numpy<2" "ml_dtypes<0.6" asteval "networkx<=2.8.7" scipy
$pip install -c "$here/constraints.txt" -e "$here[test,lava,formats,distributed,interop]"
# Real NIR readers for tests/test_interop_nir.py. sinabs 3.1.3 goes in --no-deps: it declares nir<=1.0.4 (we
# use nir 1.0.8, which the nirtorch 2.6 it calls itself requires) and samna (Speck hardware), neither needed by
# sinabs.from_nir. snntorch 1.0.0 declares no dependencies. Neither needs torchvision. Norse 1.1.0 (an sdist:
# pure Python, built here without a compiler) goes in --no-deps too: it declares torchvision (for its example
# tasks and datasets, which norse.torch.from_nir does not import; torchvision would pin its own torch), and its
# other dependencies (torch, numpy, nir, nirtorch) are installed above.
$pip install -c "$here/constraints.txt" --no-deps sinabs==3.1.3 snntorch==1.0.0 norse==1.1.0
# SpikingJelly 2.0.0, the speed benchmark's peer (benchmarks/bench_speed.py): --no-deps because it declares
# torchvision and torchaudio (a second torch build); its IF neurons need only torch and loguru.
$pip install -c "$here/constraints.txt" --no-deps spikingjelly==2.0.0 loguru==0.7.3
if [ "${QCFS_NO_LAVA:-0}" != "1" ]; then
  # lava-nc 0.10.0 declares Python < 3.11 but runs on 3.11 (qcfs.runtime.lava.compat patches the one
  # incompatibility at import time, without touching site-packages).
  $pip install -c "$here/constraints.txt" --no-deps --ignore-requires-python lava-nc==0.10.0
  # lava-dl 0.6.0 (netx) declares Python < 3.11 and pins torch 2.3/torchvision/opencv: --no-deps as for
  # lava-nc; netx needs only h5py (the [formats] extra) and stubs for its optional imports (compat.py).
  $pip install -c "$here/constraints.txt" --no-deps --ignore-requires-python lava-dl==0.6.0
fi
echo "qcfs environment ready in $venv"
