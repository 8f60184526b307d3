"""One call that turns run results into a report folder: report.json, PNG figures and report.md.

Used by `qcfs-run --report DIR` and the example notebook:

    from qcfs.report.writer import write_report
    paths = write_report("out/report", run_json=run, float_json=None, lava_json=None, net=net,
                         raster=sim.raster)

`run_json` (and the optional float / Lava runs) are the dicts `qcfs-run --json` writes. Counts are copied
as given; everything derived (operation counts, energy) is recomputed here from `net` so the report does
not depend on which backend produced the spikes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from qcfs import safe_io
from qcfs.intnet import IntNet
from qcfs.report import plots
from qcfs.report.chip_profiles import LOIHI2
from qcfs.report.energy import FIGURES, EnergyRow, energy_table, network_ops
from qcfs.report.resources import FitReport, fit_report

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FIGURE_FILES = ("accuracy.png", "spikes_per_layer.png", "firing_rate.png", "raster.png", "energy.png")
REPORT_FILES = (REPORT_JSON, REPORT_MD, *FIGURE_FILES)  # everything write_report may write (output checks)


def write_report(
    outdir: str | Path,
    *,
    run_json: Mapping[str, Any],
    float_json: Mapping[str, Any] | None = None,
    lava_json: Mapping[str, Any] | None = None,
    net: IntNet,
    raster: Mapping[str, np.ndarray] | None = None,
) -> list[Path]:
    """Write the report into `outdir` (created if needed); returns the paths written, report.md last.

    Figures need what they show: spike and energy figures need "spikes_per_layer" in run_json's results,
    the raster needs `raster` (SimResult.raster, layer -> bool [T_max, k]); absent inputs skip a figure
    rather than fail, and report.md says which figures exist."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ops = network_ops(net)
    results = sorted(run_json.get("results", []), key=lambda r: int(r["T"]))
    per_T = {int(r["T"]): r["spikes_per_layer"] for r in results if "spikes_per_layer" in r}
    pre = {int(r["T"]): r["pre_spikes_per_layer"] for r in results if r.get("pre_spikes_per_layer")}
    rho = max([int(r.get("pre_steps") or 0) for r in results] + [0])
    rows = energy_table(net, per_T, pre_steps=rho, pre_spikes=pre) if per_T else []
    fit = fit_report(net, LOIHI2)  # will it fit: an estimate (report.resources)

    figures: list[tuple[str, str]] = []  # (file name, caption)

    def figure(name: str, fig: Any, caption: str) -> None:
        plots.save_png(fig, out / name)
        figures.append((name, caption))

    if results:
        figure("accuracy.png", plots.plot_accuracy(run_json, float_json, lava_json),
               "Top-1 accuracy vs time steps T (log2 axis); dotted line: the ANN.")
    if per_T:
        figure("spikes_per_layer.png", plots.plot_spikes_per_layer(run_json),
               "Mean spikes per sample of each layer, one bar per T.")
        figure("firing_rate.png", plots.plot_firing_rate(run_json, ops.neurons),
               "Firing rate: spikes per neuron per time step, per layer.")
    if raster:
        figure("raster.png", plots.plot_raster(raster),
               "Spike raster of the first neurons of each layer for sample 0.")
    if rows:
        figure("energy.png", plots.plot_energy(rows),
               "Estimated energy per sample vs T from published per-operation energies (docs/energy.md).")

    report = {
        "command": run_json.get("command"),
        "model": run_json.get("model"),
        "dataset": run_json.get("dataset"),
        "runs": {"snn": run_json, "float": float_json, "lava": lava_json},
        "operations": {
            "ann_macs_per_sample": ops.ann_macs,
            "input_macs_per_step": ops.input_macs_per_step,
            "input_connections_per_step": ops.input_connections_per_step,
            "neurons": ops.neurons,
            "fanout_mean": ops.fanout_mean,
            "fanout_total": ops.fanout_total,
            "readout_depth": ops.readout_depth,
            "synapses": [vars(s) for s in ops.synapses],
        },
        "energy": [r.to_dict() for r in rows],
        "energy_figures": [f.to_dict() for f in FIGURES],
        "resources": fit.to_dict(),
        "raster": {k: np.asarray(v, dtype=np.uint8).tolist() for k, v in (raster or {}).items()},
        "figures": [name for name, _ in figures],
    }
    json_path = out / REPORT_JSON
    safe_io.write_text(json_path, json.dumps(report, indent=1, default=_json_default))
    md_path = out / REPORT_MD
    safe_io.write_text(md_path, _markdown(run_json, float_json, lava_json, rows, figures, fit))
    return [json_path, *(out / name for name, _ in figures), md_path]


def _json_default(obj: Any) -> Any:
    """NumPy scalars/arrays from in-memory runs become plain JSON numbers/lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _acc(run: Mapping[str, Any] | None) -> dict[int, float]:
    if not run:
        return {}
    res = run.get("results", [])
    vals = plots.percent([r["accuracy"] for r in res])
    return {int(r["T"]): v for r, v in zip(res, vals)}


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def _markdown(run: Mapping[str, Any], float_run: Mapping[str, Any] | None, lava_run: Mapping[str, Any] | None,
              rows: list[EnergyRow], figures: list[tuple[str, str]], fit: FitReport | None = None) -> str:
    title = " · ".join(str(run[k]) for k in ("model", "dataset") if run.get(k)) or "qcfs run"
    lines = [f"# qcfs report — {title}", ""]
    cmd = run.get("command")
    if cmd:
        lines += ["Produced by:", "", "```", cmd if isinstance(cmd, str) else " ".join(map(str, cmd)), "```", ""]
    ann = run.get("ann_accuracy")
    lines += [
        f"Backend: {run.get('backend', '?')}, mode: {run.get('mode', '?')}, samples: {run.get('samples', '?')}, "
        f"spikes per step m: {run.get('max_spikes_per_step', 1)}, "
        f"ANN accuracy: {_fmt(plots.percent([ann])[0]) + ' %' if ann is not None else '—'}.",
        "",
        "## Accuracy and activity",
        "",
        "| T | SNN acc. (%) | float SNN acc. (%) | Lava acc. (%) | spikes / sample |",
        "|---:|---:|---:|---:|---:|",
    ]
    main, flt, lava = _acc(run), _acc(float_run), _acc(lava_run)
    spikes = {int(r["T"]): r.get("spikes_per_sample") for r in run.get("results", [])}
    for T in sorted(set(main) | set(flt) | set(lava)):
        sp = spikes.get(T)
        lines.append(f"| {T} | {_fmt(main.get(T))} | {_fmt(flt.get(T))} | {_fmt(lava.get(T))} | "
                     f"{_fmt(None if sp is None else float(sp), '.4g')} |")
    if rows:
        lines += [
            "",
            "## Operations and energy per sample (estimates)",
            "",
            "| T | ρ | m | latency (steps) | ANN MACs | SNN SOPs | SNN input MACs | ANN 45 nm (µJ) | SNN 45 nm (µJ) "
            "| SNN Loihi (µJ) | ANN / SNN 45 nm |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            ratio = r.energy_ann_pj / r.energy_snn_pj if r.energy_snn_pj else None
            lines.append(
                f"| {r.T} | {r.pre_steps} | {r.max_spikes_per_step} | {r.latency_steps} | {r.ann_macs:.4g} | "
                f"{r.snn_sops:.4g} | {r.snn_input_macs:.4g} | "
                f"{r.energy_ann_pj * 1e-6:.4g} | {r.energy_snn_pj * 1e-6:.4g} | {r.energy_loihi_pj * 1e-6:.4g} | "
                f"{_fmt(ratio)} |")
        lines += ["", "Per-operation energies (published figures, not measurements of this network):", ""]
        lines += [f"- {f.name}: {f.pj} pJ — {f.source}" for f in FIGURES]
        lines += ["", "Counting rules and limits: docs/energy.md. Latency = ρ + T + pipeline depth of the readout "
                  "(ρ: two-phase pre-steps, whose spikes are in the SOPs); m > 1: graded spikes, each SOP priced as "
                  "a MAC at 45 nm (an assumption, report/energy.py)."]
    if fit is not None:
        lines += ["", f"## Will it fit: {fit.profile.name} resources (an estimate)", "", "```", fit.table(), "```", "",
                  "Limits, their sources and the partitioning rule: README \"Hardware profile\" (report.resources)."]
    lines += ["", "## Figures", ""]
    for name, caption in figures:
        lines += [f"### {name}", "", caption, "", f"![{name}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"
