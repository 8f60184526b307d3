"""`qcfs-run --report DIR`: the runs a report puts side by side and the folder written from them.

The report's "snn" run is the integer network (the hardware one: spikes, energy, raster) and its "float" run
the float network. A run of a checkpoint or ONNX model has a companion: the other mode of the same canonical
ONNX on the same samples and T, on the NumPy runtime, so the accuracy plot shows the ANN, the float SNN and the
integer SNN. An exported file holds one mode only and has no companion.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qcfs.intnet import IntNet
from qcfs.runtime.result import SimResult

if TYPE_CHECKING:
    import onnx

    from qcfs.simulate import SimOptions

RASTER_NEURONS = 16  # neurons per layer in the report's raster plot (sample 0)


@dataclasses.dataclass
class Run:
    """One simulated network with its results, as the report needs them."""

    net: IntNet
    result: SimResult
    doc: dict[str, Any]


def companion_network(canon: onnx.ModelProto | None, mode: str) -> IntNet | None:
    """The other mode (float for int, int for float) of the canonical ONNX (already renormalized by
    --normalize, if given); None without one (an exported file)."""
    if canon is None:
        return None
    from qcfs.toolchain.convert import convert

    return convert(canon, mode="float" if mode == "int" else "int")


def companion_options(opts: SimOptions) -> SimOptions:
    """The companion runs on NumPy with the main run's samples and T (and its timing when that ran on numpy,
    else sync), recording a raster, never from the model file."""
    timing = opts.timing if opts.backend == "numpy" else "sync"
    return dataclasses.replace(opts, backend="numpy", timing=timing, raster_neurons=RASTER_NEURONS,
                               lava_file=None, snn_onnx_file=None, netx_file=None)


def report_raster(run: Run, images: np.ndarray, Ts: list[int], pre_steps: int = 0) -> dict[str, np.ndarray]:
    """Raster of sample 0 from the NumPy runtime: reuse the run's own when numpy made it, else simulate
    that one sample (torch and Lava record no raster)."""
    if run.result.raster:
        return dict(run.result.raster)
    from qcfs.simulate import simulate_numpy

    one = simulate_numpy(run.net, images[:1], [max(Ts)], "sync", 1, RASTER_NEURONS, False, pre_steps)
    return dict(one.raster)


def write_run_report(outdir: str | Path, images: np.ndarray, main: Run, companion: Run | None,
                     lava_doc: dict[str, Any] | None, Ts: list[int], pre_steps: int = 0) -> list[Path]:
    """The report of `main` (and its companion): the integer run as "snn", the float run as "float", whichever
    of them --mode asked for; an IntNet file has only its own. `images`: at least sample 0 (the raster)."""
    runs = {r.net.mode: r for r in (main, companion) if r is not None}
    primary = runs.get("int", main)
    secondary = runs.get("float") if primary.net.mode == "int" else None
    from qcfs.report.writer import write_report

    return write_report(outdir, run_json=primary.doc, float_json=secondary.doc if secondary else None,
                        lava_json=lava_doc, net=primary.net, raster=report_raster(primary, images, Ts, pre_steps))
