"""Integer vs float SNN of the shipped Fashion-MNIST cnn, and what a wider input register buys.

The conversion issue's criterion is "the integer SNN never more than 0.5 points below the float SNN at T ≥ 4".
This measures, on all 10,000 test images and on the first 2,000 (the prefix BENCHMARKS.md section 1's table
uses), the float SNN (exact float weights, NumPy reference), the integer SNN with the default 8-bit signed input
and the same network converted with a 10-bit input register (`HardwareProfile(input_bits=10)`), both integer ones
on the fused backend (bit-identical to the NumPy reference: tests/test_fused_snn.py). One run per network over
all 10,000; the prefix rows are the first 2,000 of the same runs.

    python benchmarks/input_bits.py [--T 4,8,16] [--data-dir DIR] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import load_snapshot, run_header  # noqa: E402
from md_section import publish  # noqa: E402

from qcfs import pipeline  # noqa: E402
from qcfs.data import load_split  # noqa: E402
from qcfs.intnet import HardwareProfile  # noqa: E402
from qcfs.runtime.fused_snn import simulate_fused  # noqa: E402
from qcfs.runtime.numpy_snn import simulate  # noqa: E402
from qcfs.toolchain.convert import convert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "fashion-mnist" / "model.onnx"
PREFIX = 2000
MD_START, MD_END = "<!-- input_bits:start -->", "<!-- input_bits:end -->"


def measure(Ts: list[int], data_dir: str | None) -> dict:
    x, y = load_split("fashion-mnist", "test", data_dir)
    canon = pipeline.canonical_onnx(MODEL)
    runs = {
        "float": lambda: simulate(convert(canon, mode="float"), x, Ts, progress=True),
        "int, 8-bit input": lambda: simulate_fused(convert(canon, mode="int"), x, Ts),
        "int, 10-bit input": lambda: simulate_fused(
            convert(canon, mode="int", profile=HardwareProfile(input_bits=10)), x, Ts),
    }
    rows = {}
    for label, run in runs.items():
        res = run()
        rows[label] = {str(t): {"all": float(np.mean(res.predictions(t) == y)),
                                "prefix": float(np.mean(res.predictions(t)[:PREFIX] == y[:PREFIX]))} for t in Ts}
        print(f"  {label}: " + ", ".join(f"T={t} {100 * rows[label][str(t)]['all']:.2f} %" for t in Ts), flush=True)
    return {"samples": int(len(y)), "prefix": PREFIX, "Ts": Ts, "accuracy": rows}


def md_section(doc: dict) -> str:
    Ts, acc = doc["Ts"], doc["accuracy"]
    lines = [MD_START, f"`{doc['command']}` on {doc['date']} — {doc['machine'].get('cpu_model')} "
             f"({doc['machine'].get('cpus')} cores). Raw: `benchmarks/results/input_bits.json`. Accuracy %, and "
             "int − float in points:", "",
             "| test images | network | " + " | ".join(f"T={t}" for t in Ts) + " |",
             "|---|---|" + "---:|" * len(Ts)]
    for part, name in (("all", f"all {doc['samples']:,}"), ("prefix", f"first {doc['prefix']:,}")):
        for label in acc:
            cells = []
            for t in Ts:
                a = 100 * acc[label][str(t)][part]
                d = a - 100 * acc["float"][str(t)][part]
                cells.append(f"{a:.2f}" if label == "float" else f"{a:.2f} ({d:+.2f})")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [MD_END])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", default="4,8,16", help="comma-separated time steps")
    ap.add_argument("--data-dir", help="Fashion-MNIST idx files (default: the Debian package's folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "input_bits.json")
    ap.add_argument("--md", type=Path, help="rewrite this file's input_bits section")
    args = ap.parse_args()
    doc = run_header("input_bits.py")
    doc.update(measure(sorted({int(t) for t in args.T.split(",")}), args.data_dir))
    doc["load_after"] = load_snapshot()
    publish(doc, args.out, args.md, MD_START, MD_END, md_section(doc), "### Integer vs float, input bits (input_bits.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
