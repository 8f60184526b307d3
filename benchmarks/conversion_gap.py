"""Where does the low-T conversion gap come from, and what closes it without cheating?

Measures, on the embedded digits set (whole test split) and optionally a Fashion-MNIST model, integer-SNN
accuracy at every T for: the quantization step count L used in training (T = L is where QCFS is exact),
the initial membrane (QCFS's φ·θ = θ/2 versus 0, the classic IF start), how long λ is trained, and where λ
starts (the paper's 8 versus the 99.9th percentile of each layer's inputs, `qcfs-train --lam-init data`).
Everything runs through the project's own API (train → ONNX → passes → NumPy runtime). Prints a table,
writes JSON, a markdown table and a PNG.

    python benchmarks/conversion_gap.py [--fashion-model models/fashion-mnist/model.onnx --fashion-limit 1000]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from qcfs.data import load_split
from qcfs.intnet import IntNet
from qcfs.pipeline import canonical_onnx, to_intnet
from qcfs.runtime.numpy_snn import simulate

TS = [1, 2, 4, 8, 16, 32]


def accuracies(net: IntNet, x: np.ndarray, y: np.ndarray) -> dict[int, float]:
    sim = simulate(net, x, TS, progress=False)
    return {T: round(100.0 * float((sim.predictions(T) == y).mean()), 2) for T in TS}


def zero_start(net: IntNet) -> IntNet:
    """The same network with v(0) = 0 instead of θ/2 (plain IF conversion, no shift)."""
    other = copy.deepcopy(net)
    for layer in other.if_layers:
        layer.v_init = 0
    return other


def train_digits(L: int, epochs: int, workdir: Path, lam_from_data: bool = False) -> tuple[IntNet, float]:
    from qcfs.frontend.train import TrainConfig, train_model

    ckpt = workdir / f"cnn-L{L}-e{epochs}-{'data' if lam_from_data else 'fixed'}.pt"
    rec = train_model(TrainConfig(model="cnn", dataset="digits", output=str(ckpt), L=L, epochs=epochs,
                                  lam_from_data=lam_from_data, progress=False), log=lambda _: None)
    return to_intnet(canonical_onnx(ckpt), mode="int"), float(rec["test_acc"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/conversion_gap")
    ap.add_argument("--fashion-model", help="ONNX/checkpoint of a Fashion-MNIST model for the v_init study")
    ap.add_argument("--fashion-limit", type=int, default=1000)
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x, y = load_split("digits", "test")
    rows: list[dict] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for L, epochs, lam_data in [(2, 30, False), (4, 30, False), (8, 30, False), (16, 30, False),
                                    (4, 10, False), (4, 90, False), (4, 30, True), (2, 30, True)]:
            net, ann = train_digits(L, epochs, Path(tmp), lam_data)
            rows.append({"dataset": "digits", "L": L, "epochs": epochs, "v_init": "θ/2", "ann": ann,
                         "lam_init": "data (p99.9)" if lam_data else "8", "snn": accuracies(net, x, y)})
            if (L, epochs, lam_data) == (4, 30, False):
                rows.append({"dataset": "digits", "L": L, "epochs": epochs, "v_init": "0", "ann": ann,
                             "lam_init": "8", "snn": accuracies(zero_start(net), x, y)})
            print(json.dumps(rows[-1]), flush=True)
    if args.fashion_model:
        fx, fy = load_split("fashion-mnist", "test")
        fx, fy = fx[: args.fashion_limit], fy[: args.fashion_limit]
        net = to_intnet(canonical_onnx(Path(args.fashion_model)), mode="int")
        for label, variant in (("θ/2", net), ("0", zero_start(net))):
            rows.append({"dataset": f"fashion-mnist (first {len(fy)})", "L": net.L, "epochs": None,
                         "v_init": label, "ann": None, "lam_init": "8", "snn": accuracies(variant, fx, fy)})
            print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "python benchmarks/conversion_gap.py" + (f" --fashion-model {args.fashion_model} "
                                                               f"--fashion-limit {args.fashion_limit}" if args.fashion_model else ""),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
            "seconds": round(time.perf_counter() - t0, 1)}
    Path(f"{out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"Command: `{meta['command']}` ({meta['date']}, {meta['machine']}, {meta['seconds']} s). "
             "Integer SNN (NumPy runtime), accuracy in %.", "",
             "| dataset | L | epochs | initial λ | v(0) | ANN | " + " | ".join(f"T={T}" for T in TS) + " |",
             "|---|---:|---:|---|---|---:|" + "---:|" * len(TS)]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['L']} | {r['epochs'] or '—'} | {r['lam_init']} | {r['v_init']} | "
                     f"{r['ann'] if r['ann'] is not None else '—'} | "
                     + " | ".join(f"{r['snn'][T]:.2f}" for T in TS) + " |")
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    _plot(rows, Path(f"{out}.png"))
    print("\n".join(lines))


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors[: len(rows)])  # one distinct colour per row
    for r in rows:
        label = f"{r['dataset']}: L={r['L']}, {r['epochs'] or '?'} ep, λ0={r['lam_init']}, v(0)={r['v_init']}"
        ax.plot(TS, [r["snn"][T] for T in TS], marker="s" if "fashion" in r["dataset"] else "o",
                linestyle="--" if "fashion" in r["dataset"] else "-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(TS, [str(T) for T in TS])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("integer SNN accuracy (%)")
    ax.set_title("Conversion gap vs T: L, initial membrane, initial λ, λ training length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
