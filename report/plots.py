"""The report's figures. Each function returns a matplotlib Figure (so tests and notebooks can inspect or
show it) and never touches pyplot's global state; `save_png` writes and closes it.

Inputs are the plain dicts of `qcfs-run --json` ("results": [{"T", "accuracy", "spikes_per_layer", ...}]),
so the figures can be redrawn from saved JSON without re-running a simulation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from qcfs.report.energy import HOROWITZ_FP32_ADD, HOROWITZ_FP32_MAC, LOIHI_SYNOP, EnergyRow

RunJSON = Mapping[str, Any]


def save_png(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write `fig` as PNG through the Agg canvas. No pyplot and no global backend switch, so importing
    this module never changes a notebook's backend; Figure() objects need no pyplot.close."""
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
    return path


def percent(values: Sequence[float]) -> list[float]:
    """Accuracies as percent. Fractions in [0, 1] are scaled; values above 1 are taken to be percent
    already (a real accuracy of ≤ 1 % would be a broken run either way)."""
    vals = [float(v) for v in values]
    return [100.0 * v for v in vals] if vals and max(vals) <= 1.0 else vals


def _results(run: RunJSON) -> list[Mapping[str, Any]]:
    return sorted(run.get("results", []), key=lambda r: int(r["T"]))


def _label(run: RunJSON, default: str) -> str:
    mode = {"int": "integer SNN", "float": "float SNN"}.get(str(run.get("mode")), default)
    backend = run.get("backend")
    return f"{mode} ({backend})" if backend else mode


def _log2_x(ax: Any, Ts: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(Ts))
    ax.set_xticklabels([str(t) for t in Ts])
    ax.minorticks_off()


def plot_accuracy(run: RunJSON, float_run: RunJSON | None = None, lava_run: RunJSON | None = None) -> Figure:
    """Top-1 accuracy vs T: ANN as a horizontal line, SNN runs as lines, Lava as separate points (it is
    usually run on fewer samples and fewer T)."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    Ts: set[int] = set()
    for data, default, style in ((run, "SNN", "o-"), (float_run, "float SNN", "s--")):
        if data is None or not _results(data):
            continue
        res = _results(data)
        x = [int(r["T"]) for r in res]
        ax.plot(x, percent([r["accuracy"] for r in res]), style, label=_label(data, default))
        Ts.update(x)
    if lava_run is not None and _results(lava_run):
        res = _results(lava_run)
        x = [int(r["T"]) for r in res]
        ax.plot(x, percent([r["accuracy"] for r in res]), "D", markersize=8, linestyle="none",
                markerfacecolor="none", label=f"Lava fixed-point ({lava_run.get('samples', '?')} samples)")
        Ts.update(x)
    ann = run.get("ann_accuracy")
    if ann is not None:
        ax.axhline(percent([ann])[0], color="k", linestyle=":", label="ANN (QCFS)")
    if Ts:
        _log2_x(ax, sorted(Ts))
    ax.set_xlabel("time steps T")
    ax.set_ylabel("top-1 accuracy (%)")
    title = " · ".join(str(run[k]) for k in ("model", "dataset") if run.get(k))
    ax.set_title(f"Accuracy vs time steps{(' — ' + title) if title else ''}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")  # outside: never hides data
    return fig


def _layer_names(res: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in res:
        for name in r.get("spikes_per_layer", {}):
            if name not in names:
                names.append(name)
    return names


def plot_spikes_per_layer(run: RunJSON) -> Figure:
    """Mean spikes per sample of each layer, one bar per T in each layer's group."""
    res = _results(run)
    names = _layer_names(res)
    fig = Figure(figsize=(max(6.4, 0.9 * len(names) + 3), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / max(len(res), 1)
    x = np.arange(len(names))
    for i, r in enumerate(res):
        vals = [float(r["spikes_per_layer"].get(n, 0.0)) for n in names]
        ax.bar(x + (i - (len(res) - 1) / 2) * width, vals, width, label=f"T = {int(r['T'])}")
    positive = [float(v) for r in res for v in r.get("spikes_per_layer", {}).values() if float(v) > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_xlabel("layer")
    ax.set_ylabel("spikes per sample (mean)")
    ax.set_title("Spikes per layer")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(ncol=min(len(res), 4), fontsize="small", loc="best")
    return fig


def plot_firing_rate(run: RunJSON, neurons: Mapping[str, int]) -> Figure:
    """Spikes per neuron per step of each layer (0..1), one line per T: where the network is busy."""
    res = _results(run)
    names = [n for n in _layer_names(res) if neurons.get(n)]
    fig = Figure(figsize=(max(6.4, 0.7 * len(names) + 3), 4.2))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for r in res:
        T = int(r["T"])
        rate = [float(r["spikes_per_layer"].get(n, 0.0)) / (neurons[n] * T) for n in names]
        ax.plot(x, rate, "o-", label=f"T = {T}")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_xlabel("layer")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    ax.set_ylim(bottom=0)
    ax.set_title("Firing rate per layer")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_raster(raster: Mapping[str, np.ndarray], sample: int = 0) -> Figure:
    """Spike times of the first k neurons of each layer for one sample: one panel per layer
    (`raster[layer]` is bool [T_max, k], SimResult.raster)."""
    names = list(raster)
    fig = Figure(figsize=(6.4, 1.2 + 1.3 * max(len(names), 1)))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0] if names else []
    for ax, name in zip(axes, names):
        r = np.asarray(raster[name], dtype=bool)
        t, n = np.nonzero(r)
        ax.scatter(t + 1, n, marker="|", s=40, color="k", linewidths=1.2)
        ax.set_ylim(-0.5, r.shape[1] - 0.5)
        ax.set_xlim(0.5, r.shape[0] + 0.5)
        ax.set_ylabel(f"{name}\nneuron", fontsize="small")
        ax.set_yticks(range(r.shape[1]) if r.shape[1] <= 8 else [0, r.shape[1] - 1])
    if names:
        axes[-1].set_xlabel("time step t")
    fig.suptitle(f"Spike raster, sample {sample}")
    return fig


def plot_energy(rows: Sequence[EnergyRow]) -> Figure:
    """Estimated energy per sample vs T (µJ, log scale): ANN at 45 nm, SNN at 45 nm, SNN on Loihi."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    rows = sorted(rows, key=lambda r: r.T)
    Ts = [r.T for r in rows]
    uj = 1e-6
    ax.plot(Ts, [r.energy_ann_pj * uj for r in rows], "k:", label=f"ANN, 45 nm ({HOROWITZ_FP32_MAC.pj} pJ/MAC)")
    ax.plot(Ts, [r.energy_snn_pj * uj for r in rows], "o-",
            label=f"SNN, 45 nm ({HOROWITZ_FP32_ADD.pj} pJ/AC + input MACs)")
    ax.plot(Ts, [r.energy_loihi_pj * uj for r in rows], "s--",
            label=f"SNN, Loihi ({LOIHI_SYNOP.pj} pJ/SOP + neuron updates)")
    if Ts:
        _log2_x(ax, Ts)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.02, 0.5, 10 — not 2×10⁻²
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("time steps T")
    ax.set_ylabel("estimated energy per sample (µJ)")
    ax.set_title("Energy estimate vs time steps (published per-op energies)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return fig
