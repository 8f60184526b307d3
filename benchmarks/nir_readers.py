"""What the NIR readers people use get from our `.nir` file, measured by running them: sinabs 3.1.3
(`sinabs.from_nir`), snnTorch 1.0.0 (`snntorch.import_nir.import_from_nir`) and Norse 1.1.0
(`norse.torch.from_nir`), unmodified, on the shipped model exported with `qcfs-export --backend nir
--nir-profile readers` (sinabs, Norse) and `--nir-profile snntorch`, next to qcfs's exact semantics (the NumPy
runtime on the network the file carries = `qcfs-run --model X.nir`, bit for bit) on the same samples and T.

Columns: accuracy per T, the share of predictions that differ from qcfs, spikes per sample (sinabs counts
every spike of its multi-spike steps). Readers' semantics: qcfs.runtime.nir_readers.

    python benchmarks/nir_readers.py --dataset digits
    python benchmarks/nir_readers.py --dataset fashion-mnist --limit 1000

snnTorch and Norse run one sample at a time (README "Formats"): minutes per 1,000 samples on one core.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from qcfs.data import load_split
from qcfs.exporters.nir_export import export_nir
from qcfs.pipeline import canonical_onnx, to_intnet
from qcfs.runtime.nir_readers import simulate_norse, simulate_sinabs, simulate_snntorch
from qcfs.runtime.numpy_snn import simulate

ROOT = Path(__file__).resolve().parents[1]


def _acc(res, y: np.ndarray, T: int) -> float:  # type: ignore[no-untyped-def]
    return round(100.0 * float((res.predictions(T) == y).mean()), 2)


def _spikes(res, T: int) -> float:  # type: ignore[no-untyped-def]
    return round(float(sum(np.asarray(c).sum() for c in res.spikes[T].values())) / len(res.logits[T]), 1)


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", help="default: models/<dataset>/model.onnx")
    ap.add_argument("--limit", type=int, help="N test samples spread evenly over the whole test split (default: all)")
    ap.add_argument("--T", default="1,2,4,8,16,32")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    import nir
    import norse
    import sinabs
    import snntorch

    Ts = sorted({int(t) for t in args.T.split(",")})
    model = Path(args.model or ROOT / "models" / args.dataset / "model.onnx")
    x, y = load_split(args.dataset, "test")
    if args.limit:  # spread over the whole split (qcfs-run's rule), never its first N
        from qcfs.data.subset import subset_indices

        keep = subset_indices(len(y), args.limit, "spread")
        x, y = x[keep], y[keep]
    net = to_intnet(canonical_onnx(model))
    runs, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for_sinabs = export_nir(net, Path(tmp) / "m.readers.nir", profile="readers")
        for_snntorch = export_nir(net, Path(tmp) / "m.snntorch.nir", profile="snntorch")
        for name, fn in (("qcfs", lambda: simulate(net, x, Ts, progress=False)),
                         ("sinabs", lambda: simulate_sinabs(for_sinabs, x, Ts)),
                         ("snntorch", lambda: simulate_snntorch(for_snntorch, x, Ts)),
                         ("norse", lambda: simulate_norse(for_sinabs, x, Ts))):
            t0 = time.perf_counter()
            runs[name] = fn()
            seconds[name] = round(time.perf_counter() - t0, 1)
    rows = []
    for T in Ts:
        ref = runs["qcfs"].predictions(T)
        row = {"T": T}
        for name, res in runs.items():
            row[f"{name}_acc"] = _acc(res, y, T)
            row[f"{name}_spikes"] = _spikes(res, T)
            if name != "qcfs":
                row[f"{name}_differs"] = round(100.0 * float((res.predictions(T) != ref).mean()), 1)
        rows.append(row)
    doc = {"dataset": args.dataset, "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
           "samples": int(len(y)), "subset": "all" if not args.limit else "spread", "Ts": Ts, "rows": rows, "seconds": seconds,
           "versions": {"nir": nir.__version__, "sinabs": sinabs.__version__, "snntorch": snntorch.__version__,
                        "norse": norse.__version__},
           "machine": _cpu(), "date": time.strftime("%Y-%m-%d"),
           "command": f"python benchmarks/nir_readers.py --dataset {args.dataset}"
                      + (f" --limit {args.limit}" if args.limit else "")
                      + (f" --T {args.T}" if args.T != "1,2,4,8,16,32" else "")}
    readers = ("sinabs", "snntorch", "norse")
    shown = {"sinabs": "sinabs", "snntorch": "snnTorch", "norse": "Norse"}
    head = ("| T | qcfs (exact) % | " + " | ".join(f"{shown[r]} %" for r in readers) + " | "
            + " | ".join(f"{shown[r]} pred. ≠ qcfs %" for r in readers) + " | spikes/sample qcfs | "
            + " | ".join(shown[r] for r in readers) + " |\n|" + "---:|" * (3 + 3 * len(readers)))
    lines = [head] + [f"| {r['T']} | {r['qcfs_acc']:.2f} | "
                      + " | ".join(f"{r[f'{k}_acc']:.2f}" for k in readers) + " | "
                      + " | ".join(f"{r[f'{k}_differs']:.1f}" for k in readers)
                      + f" | {r['qcfs_spikes']:.0f} | "
                      + " | ".join(f"{r[f'{k}_spikes']:.0f}" for k in readers) + " |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"nir_readers_{args.dataset}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"nir_readers_{args.dataset}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({k: doc[k] for k in ("dataset", "samples", "seconds", "versions", "machine")}))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
