"""`make demo`: the whole pipeline on the embedded digits set, through the user-facing commands.

train (or reuse the shipped model) -> qcfs-export ONNX -> qcfs-export Lava -> qcfs-run NumPy T=1..32 ->
qcfs-run Lava T=4 on a subset -> report folder. Every step is a real CLI call, printed before it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "demo"
BIN = Path(sys.executable).parent


def step(title: str, *argv: str) -> None:
    cmd = [str(BIN / argv[0]), *argv[1:]]
    print(f"\n== {title}\n$ {' '.join([argv[0], *argv[1:]])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        print(f"demo: step failed with exit code {proc.returncode}: {title}", file=sys.stderr)
        sys.exit(proc.returncode)
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = OUT / "cnn-digits.pt"
    shipped = ROOT / "models" / "digits" / "model.pt"
    if shipped.exists():
        shutil.copyfile(shipped, ckpt)
        print(f"== using the shipped model {shipped.relative_to(ROOT)} (see models/README.md for its command)")
    else:
        step("train a QCFS cnn on digits", "qcfs-train", "--model", "cnn", "--dataset", "digits", "-o", str(ckpt))
    onnx = OUT / "cnn-digits.onnx"
    step("export to ONNX (one qcfs::QCFS node per activation)", "qcfs-export", str(ckpt), "--backend", "onnx",
         "-o", str(onnx))
    lava = OUT / "cnn-digits.lava.npz"
    step("convert to an integer IF network for Lava", "qcfs-export", str(onnx), "--backend", "lava",
         "-o", str(lava), "--show-passes")
    step("NumPy reference runtime, integer mode, T = 1..32, whole test split", "qcfs-run", "--model", str(onnx),
         "--dataset", "digits", "--T", "1,2,4,8,16,32", "--json", str(OUT / "numpy.json"),
         "--counts", str(OUT / "numpy-counts.npz"), "--report", str(OUT / "report"))
    step("Lava fixed-point simulator, T = 4, first 50 test samples", "qcfs-run", "--model", str(lava),
         "--backend", "lava", "--dataset", "digits", "--T", "4", "--limit", "50",
         "--json", str(OUT / "lava.json"), "--counts", str(OUT / "lava-counts.npz"))
    print(f"\nreport: {OUT / 'report'} (report.md and PNG plots); JSON and counts in {OUT}")


if __name__ == "__main__":
    main()
