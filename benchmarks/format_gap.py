"""What a lava-dl or NIR user gets from our exported files with *stock* neuron semantics, versus qcfs (exact).

For each model: export to netx (.net.h5) and NIR (.nir), then on the same test samples and T values
  * qcfs        the NumPy runtime on the network the file carries (= the qcfs netx run and the NIR import,
                bit for bit; tests/test_formats_*.py)
  * netx stock  qcfs.runtime.netx_stock: the file's layer/ group with Lava's CUBA/LIF (hard reset, v(0) = 0,
                spike on v > vThMant·2^6) — what `netx.hdf5.Network(path)` computes in Lava
  * NIR stock   qcfs.runtime.nir_stock on the graph with every qcfs_* metadata key stripped: IF v += I,
                spike on v > v_threshold, v ← v_reset = 0, v(0) = 0
Reports accuracy per T, the share of predictions that differ from qcfs, and spikes per sample. `--lava-check N` also runs the first N samples through Lava (qcfs and stock netx)
and checks them bit for bit against the NumPy models.

    python benchmarks/format_gap.py --dataset digits
    python benchmarks/format_gap.py --dataset fashion-mnist --limit 1000 --T 1,2,4,8,16,32
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from qcfs.data import load_split
from qcfs.exporters.netx_export import export_netx, load_netx_intnet
from qcfs.exporters.nir_export import to_nir_graph
from qcfs.pipeline import canonical_onnx, to_intnet
from qcfs.runtime.netx_stock import simulate_netx_stock
from qcfs.runtime.nir_stock import simulate_nir, strip_qcfs_metadata
from qcfs.runtime.numpy_snn import simulate


def _acc(res, y: np.ndarray, T: int) -> float:  # type: ignore[no-untyped-def]
    return round(100.0 * float((res.predictions(T) == y).mean()), 2)


def _spikes(res, T: int) -> float:  # type: ignore[no-untyped-def]
    """Spikes per sample, all layers."""
    return round(float(sum(np.asarray(c).sum() for c in res.spikes[T].values())) / len(res.logits[T]), 1)


def lava_check(path: Path, x: np.ndarray, T: int) -> dict[str, bool]:
    from qcfs.runtime.lava.netx_backend import simulate_netx

    out = {}
    for sem, ref in (("qcfs", simulate(load_netx_intnet(path), x, [T], progress=False)),
                     ("stock", simulate_netx_stock(path, x, [T], progress=False))):
        got = simulate_netx(path, x, [T], semantics=sem, progress=False, timeout_s=1800)
        out[sem] = bool(np.array_equal(got.logits[T], ref.logits[T]) and
                        all(np.array_equal(got.spikes[T][k], ref.spikes[T][k]) for k in ref.spikes[T]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", help="default: models/<dataset>/model.onnx")
    ap.add_argument("--limit", type=int, help="N test samples spread evenly over the whole test split (default: all)")
    ap.add_argument("--T", default="1,2,4,8,16,32,64")
    ap.add_argument("--lava-check", type=int, default=0, metavar="N", help="also check N samples in Lava")
    ap.add_argument("--lava-T", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/format_gap")
    args = ap.parse_args()
    Ts = sorted({int(t) for t in args.T.split(",")})
    model = Path(args.model or f"models/{args.dataset}/model.onnx")
    x, y = load_split(args.dataset, "test", None)
    if args.limit:  # spread over the whole split (qcfs-run's rule), never its first N
        from qcfs.data.subset import subset_indices

        keep = subset_indices(len(y), args.limit, "spread")
        x, y = x[keep], y[keep]
    t0 = time.time()
    net = to_intnet(canonical_onnx(model), mode="int")
    with tempfile.TemporaryDirectory() as tmp:
        path = export_netx(net, Path(tmp) / "m.net.h5")
        exact = simulate(load_netx_intnet(path), x, Ts, progress=True)
        netx = simulate_netx_stock(path, x, Ts, progress=True)
        nir = simulate_nir(strip_qcfs_metadata(to_nir_graph(net)), x, Ts, input_spec=net.input, progress=True)
        checked = lava_check(path, x[: args.lava_check], args.lava_T) if args.lava_check else None
    rows = []
    for T in Ts:
        rows.append({"T": T, "qcfs": _acc(exact, y, T), "netx_stock": _acc(netx, y, T), "nir_stock": _acc(nir, y, T),
                     "netx_pred_differs": round(100.0 * float((netx.predictions(T) != exact.predictions(T)).mean()), 1),
                     "nir_pred_differs": round(100.0 * float((nir.predictions(T) != exact.predictions(T)).mean()), 1),
                     "spikes_qcfs": _spikes(exact, T), "spikes_netx_stock": _spikes(netx, T),
                     "spikes_nir_stock": _spikes(nir, T)})
    doc = {"command": " ".join(["python", "benchmarks/format_gap.py", *__import__("sys").argv[1:]]),
           "model": str(model), "dataset": args.dataset, "samples": int(len(y)),
           "subset": "spread" if args.limit else "all", "rows": rows,
           "lava_check": {"samples": args.lava_check, "T": args.lava_T, "bit_exact": checked} if checked else None,
           "seconds": round(time.time() - t0, 1), "machine": platform.platform()}
    head = ("| T | qcfs (exact) % | netx stock % | NIR stock % | netx pred. ≠ qcfs % | NIR pred. ≠ qcfs % | "
            "spikes/sample qcfs | netx stock | NIR stock |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head] + [f"| {r['T']} | {r['qcfs']:.2f} | {r['netx_stock']:.2f} | {r['nir_stock']:.2f} | "
                      f"{r['netx_pred_differs']:.1f} | {r['nir_pred_differs']:.1f} | {r['spikes_qcfs']:.0f} | "
                      f"{r['spikes_netx_stock']:.0f} | {r['spikes_nir_stock']:.0f} |" for r in rows]
    table = "\n".join(lines)
    print(f"\n{args.dataset}: {len(y)} test samples, {doc['seconds']} s; lava check: {doc['lava_check']}")
    print(table)
    out = Path(f"{args.out}_{args.dataset}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
