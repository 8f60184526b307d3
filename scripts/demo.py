"""`make demo`: the whole pipeline on the embedded digits set, through the user-facing commands.

train (or reuse the shipped model) -> qcfs-export ONNX -> qcfs-export Lava -> qcfs-run Lava T=4 on 50 samples
-> the NumPy runtime on the same samples, counts compared bit for bit -> qcfs-run NumPy T=1..32 (int and float)
-> report folder with the Lava points -> low latency: the same network calibrated for T = 1 on training images
(qcfs-export --snn-calib auto), Lava vs NumPy bit for bit again, and NumPy on the whole test split.
Every step is a real CLI call, printed before it runs.
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


def compare_counts(lava: Path, numpy_: Path, what: str = "") -> None:
    """Lava and the NumPy runtime must agree bit for bit: every layer's spike counts and the logits."""
    import numpy as np

    with np.load(lava) as a, np.load(numpy_) as b:
        same = sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
        layers = len(a.files) - 1
    print(f"\n== Lava vs NumPy --counts{what} ({layers} layers + logits, 50 samples): "
          f"{'identical, bit for bit' if same else 'DIFFERENT'}")
    if not same:
        sys.exit(1)


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
    step("Lava fixed-point simulator, T = 4, 50 test samples spread over the split", "qcfs-run", "--model", str(lava),
         "--backend", "lava", "--dataset", "digits", "--T", "4", "--limit", "50",
         "--json", str(OUT / "lava.json"), "--counts", str(OUT / "lava-counts.npz"))
    step("NumPy reference runtime on the same 50 samples", "qcfs-run", "--model", str(lava), "--backend", "numpy",
         "--dataset", "digits", "--T", "4", "--limit", "50", "--counts", str(OUT / "numpy50-counts.npz"))
    compare_counts(OUT / "lava-counts.npz", OUT / "numpy50-counts.npz")
    step("NumPy reference runtime, integer and float mode, T = 1..32, whole test split, with report",
         "qcfs-run", "--model", str(onnx), "--backend", "numpy", "--dataset", "digits", "--T", "1,2,4,8,16,32",
         "--json", str(OUT / "numpy.json"), "--counts", str(OUT / "numpy-counts.npz"),
         "--report", str(OUT / "report"), "--lava-json", str(OUT / "lava.json"))
    cal = OUT / "cnn-digits-T1.lava.npz"
    step("low latency: calibrate the integer network for T = 1 on training images (biases, initial membranes)",
         "qcfs-export", str(onnx), "--backend", "lava", "-o", str(cal), "--snn-calib", "auto", "--target-T", "1",
         "--dataset", "digits", "--show-passes")
    step("calibrated network on Lava, T = 1,2,4, 50 test samples", "qcfs-run", "--model", str(cal), "--backend",
         "lava", "--dataset", "digits", "--T", "1,2,4", "--limit", "50", "--counts", str(OUT / "lava-cal-counts.npz"))
    step("calibrated network on NumPy, same samples", "qcfs-run", "--model", str(cal), "--backend", "numpy",
         "--dataset", "digits", "--T", "1,2,4", "--limit", "50", "--counts", str(OUT / "numpy50-cal-counts.npz"))
    compare_counts(OUT / "lava-cal-counts.npz", OUT / "numpy50-cal-counts.npz", " of the calibrated network")
    step("calibrated network, NumPy, whole test split, every T (calibration is for T = 1; see what it does "
         "elsewhere)", "qcfs-run", "--model", str(cal), "--dataset", "digits", "--T", "1,2,4,8,16,32",
         "--json", str(OUT / "numpy-calibrated.json"))
    print(f"\nreport: {OUT / 'report'} (report.md and PNG plots); JSON and counts in {OUT}")


if __name__ == "__main__":
    main()
