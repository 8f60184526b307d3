"""Does a spike-driven synapse beat the dense int8 GEMM on this CPU? A probe for the fused backend's design.

For each 3×3 stride-1 convolution shape of resnet20 (32×32×16→16, 16×16×32→32, 8×8×64→64) and random binary
spike maps of a set density, two single-threaded ways to get the same int32 currents:
* dense: the fused backend's own path (its numba im2col, then onnxruntime's MatMulInteger, u8 × s8 → int32,
  VNNI where the CPU has it), every input multiplied whether it spiked or not;
* spike-driven: a numba scatter loop (below) that, for every spike only, adds the weight rows of the outputs it
  reaches (the event-driven form a neuromorphic core runs). It is a probe, not a backend: it lives here so the
  measurement that kept it out of the fused backend can be rerun.
Both are checked equal before timing. Interleaved repetitions, median; ratio = spike-driven / dense, same run.

    python benchmarks/event_vs_gemm.py [--maps 64] [--reps 5] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import interleaved, load_snapshot, run_header  # noqa: E402
from md_section import publish  # noqa: E402

from qcfs.runtime.fused_snn import _session, kernels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ((32, 16, 16), (16, 32, 32), (8, 64, 64))  # (H = W, C in, C out) of resnet20's three stages
DENSITIES = (0.01, 0.02, 0.05, 0.10, 0.19, 0.30)
MD_START, MD_END = "<!-- event_vs_gemm:start -->", "<!-- event_vs_gemm:end -->"


def _scatter():  # type: ignore[no-untyped-def]
    from numba import njit

    @njit(cache=True, nogil=True)
    def scatter_conv(s, w, top, left, out):  # pragma: no cover - compiled
        # out[n, y − a + top, x − b + left, :] += w[a, b, c, :] for every spike s[n, y, x, c] (stride 1, same grid)
        m, h, wd, c_in = s.shape
        kh, kw, _, o_n = w.shape
        out[:] = 0
        for n in range(m):
            for y in range(h):
                for x in range(wd):
                    for c in range(c_in):
                        if s[n, y, x, c] == 0:
                            continue
                        for a in range(kh):
                            i = y - a + top
                            if i < 0 or i >= h:
                                continue
                            for b in range(kw):
                                j = x - b + left
                                if j < 0 or j >= wd:
                                    continue
                                for o in range(o_n):
                                    out[n, i, j, o] += w[a, b, c, o]

    return scatter_conv


def measure(maps: int, reps: int) -> list[dict]:
    _, im2col, _ = kernels()
    scatter = _scatter()
    rng = np.random.default_rng(0)
    rows_out = []
    for h, c, o in SHAPES:
        w8 = rng.integers(-127, 128, (3, 3, c, o)).astype(np.int8)
        w32 = w8.astype(np.int32)
        sess = _session(SimpleNamespace(name=f"probe{h}"), w8.reshape(9 * c, o), None)
        rows = np.empty((maps * h * h, 9 * c), np.uint8)
        cur = np.empty((maps * h * h, o), np.int32)
        out = np.empty((maps, h, h, o), np.int32)
        for d in DENSITIES:
            s = (rng.random((maps, h, h, c)) < d).astype(np.uint8)

            def dense(s=s) -> np.ndarray:
                im2col(s.reshape(maps, h, h * c), 3, 3, 1, 1, 1, 1, rows.reshape(maps, h, h, 3, 3 * c))
                bind = sess.io_binding()
                bind.bind_cpu_input("rows", rows)
                bind.bind_output("cur", "cpu", 0, np.int32, list(cur.shape), cur.ctypes.data)
                sess.run_with_iobinding(bind)
                return cur

            def event(s=s) -> np.ndarray:
                scatter(s, w32, 1, 1, out)
                return out

            if not np.array_equal(dense().reshape(out.shape), event()):
                raise AssertionError(f"spike-driven and dense currents differ at {h}×{h}×{c}, density {d}")
            times = interleaved({"dense": dense, "event": event}, reps)
            ratio = statistics.median(e / g for e, g in zip(times["event"], times["dense"]))
            row = {"shape": [h, h, c, o], "density": float(np.count_nonzero(s)) / s.size, "times_s": times,
                   "ratio_event_to_dense": ratio}
            rows_out.append(row)
            print(f"  {h}×{h}×{c}→{o} density {row['density']:.3f}: dense {statistics.median(times['dense']) * 1e3:.2f}"
                  f" ms, spike-driven {statistics.median(times['event']) * 1e3:.2f} ms ({ratio:.2f}×)", flush=True)
    return rows_out


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for h, c, o in SHAPES:
        pts = [r for r in doc["rows"] if r["shape"][:3] == [h, h, c]]
        ax.plot([r["density"] for r in pts], [r["ratio_event_to_dense"] for r in pts], "o-", label=f"{h}×{h}×{c}→{o}")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="input spike density", ylabel="spike-driven / dense int8 GEMM time",
           title="3×3 conv currents, one thread")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def md_section(doc: dict) -> str:
    m = doc["machine"]
    isa = ", ".join(f for f in m.get("isa", []) if f.startswith("avx")) or "?"
    lines = [MD_START, f"`{doc['command']}` on {doc['date']} — {m.get('cpu_model')} ({m.get('cpus')} cores; ISA: {isa}), "
             f"onnxruntime {m.get('onnxruntime')}, numba target {m.get('numba_target', '?')}; "
             f"load average before/after {doc['load_before']['loadavg'][0]:.1f} / {doc['load_after']['loadavg'][0]:.1f}. "
             "Raw: `benchmarks/results/event_vs_gemm.json`, plot `benchmarks/results/event_vs_gemm.png`. Median ms "
             f"over {doc['reps']} interleaved rounds, {doc['maps']} spike maps per call, one thread each:", "",
             "| conv (H×W×C→O) | spike density | dense int8 GEMM ms | spike-driven ms | spike-driven / dense |",
             "|---|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        h, _, c, o = r["shape"]
        lines.append(f"| {h}×{h}×{c}→{o} | {r['density']:.3f} | {statistics.median(r['times_s']['dense']) * 1e3:.2f} | "
                     f"{statistics.median(r['times_s']['event']) * 1e3:.2f} | {r['ratio_event_to_dense']:.2f} |")
    return "\n".join(lines + [MD_END])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maps", type=int, default=64, help="spike maps per call (images × steps)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "event_vs_gemm.json")
    ap.add_argument("--md", type=Path, help="rewrite this file's event_vs_gemm section")
    args = ap.parse_args()
    doc = run_header("event_vs_gemm.py", maps=args.maps, reps=args.reps)
    doc["rows"] = measure(args.maps, args.reps)
    doc["load_after"] = load_snapshot()
    publish(doc, args.out, args.md, MD_START, MD_END, md_section(doc), "### Spike-driven vs dense int8 (event_vs_gemm.py)")
    plot(doc, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
