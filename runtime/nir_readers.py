"""Run a `.nir` file in the NIR readers people use — sinabs (`sinabs.from_nir`), snnTorch
(`snntorch.import_nir.import_from_nir`) and Norse (`norse.torch.from_nir`) — unmodified, and return a SimResult:
their accuracy per T is measured by running them, not modelled.

Both readers get what every qcfs backend gets: the integer input of the graph's own encoding (qcfs_header:
clip(rint((x - mean)/std · scale), -128, 127)) as a constant current every step. The logits after T steps are
the sum of the graph's outputs over steps 1..T; in a file written with `--nir-profile readers` the output is
the readout current, whose running sum is exactly what qcfs's readout holds. One run of max(T) steps gives every
T (the readers are causal). Spike counts: the readers' neuron modules' outputs, summed (sinabs emits several
spikes per step when v ≥ 2θ, so its counts are spikes, not spiking events).

What each reader makes of our IF node (their code: sinabs 3.1.3 sinabs/nir.py, snntorch 1.0.0 import_nir.py,
norse 1.1.0 norse/torch/utils/import_nir.py + functional/iaf.py; checked on one neuron in tests/test_interop_nir.py):
  sinabs    (profile readers) IAFSqueeze(spike_threshold=θ, min_v_mem=-θ), MultiSpike, MembraneSubtract:
            v += I; s = max(0, trunc(v/θ)); v -= s·θ; v = max(v, -θ); v(0) = 0.
  snnTorch  (profile snntorch: each IF written as a LIF with tau = 1e12, r = tau/dt) Leaky(beta=1,
            reset_mechanism="zero"): v += I; s = [v > θ]; v = 0 where s; v(0) = 0 — the NIR spec's IF, which
            qcfs.runtime.nir_stock "stock" models (bit for bit, tested). snnTorch's own IF import, Leaky(beta=0.9,
            init_hidden=False), returns a (spikes, membrane) tuple that nirtorch 2.6 passes to the next module, so
            a graph with IF nodes cannot run there.
  Norse     (profile readers) IAFCell(IAFParameters(v_th=θ)), iaf_feed_forward_step: v += I (r not read; ours is
            1; dt unused); s = heaviside(v − θ) = [v > θ]; v = 0 where s (IAFParameters' default v_reset; the
            file's v_reset, 0 in ours, is not read); v(0) = v_reset = 0 — the NIR spec's IF, the same as
            snnTorch on the snntorch profile and as qcfs.runtime.nir_stock "stock" (bit for bit, tested). Norse
            reads a LIF as LIFBoxCell, dv = dt/τ·(I + v_leak − v) with its dt = 1e-3, so the snntorch profile's
            τ = 1e12 LIF never spikes there: Norse needs the readers profile. Not qcfs's IF (v(0) = θ/2, spike
            on v ≥ θ, v −= θ): all three differ, asserted next to the NumPy reference on one neuron in the test.
None reads the qcfs_v_init metadata (NIR has no initial state), so all start from v = 0, not θ/2, and only
sinabs keeps reset by subtraction. None reads an I node (the default profile's readout): snnTorch refuses it;
sinabs maps it to nothing and outputs the current into it, so sinabs runs the default and the readers profile
alike; Norse maps it to nothing too (nirtorch drops its edges and returns the last module's output).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from qcfs.errors import BackendError, ModelFileError
from qcfs.runtime.result import SimResult
from qcfs.semantics import encode_input

READERS = ("sinabs", "snntorch", "norse")


def _graph(graph_or_path):  # type: ignore[no-untyped-def]
    from qcfs.exporters.nir_import import read_nir

    return read_nir(graph_or_path) if isinstance(graph_or_path, (str, Path)) else graph_or_path


def encoded_input(graph, images01: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The qcfs integer input of `images01` under the graph's qcfs_header encoding, float32 [N, C, H, W]."""
    import json

    from qcfs.exporters.nir_import import _text

    raw = (graph.metadata or {}).get("qcfs_header")
    if raw is None:
        raise ModelFileError("NIR graph without qcfs_header metadata: the input encoding is unknown")
    spec = json.loads(_text(raw))["input"]
    x = encode_input(np.asarray(images01), tuple(spec["mean"]), tuple(spec["std"]), spec["scale"], int(spec["bits"]))
    return np.ascontiguousarray(x, dtype=np.float32)  # |x| <= 2^(bits-1): exact in float32


def _prepared(graph_or_path: Any, images01: np.ndarray, Ts: list[int]) -> tuple[list[int], Any, np.ndarray]:
    """(sorted distinct Ts, a private copy of the graph (the readers may alter it), its encoded input)."""
    graph = copy.deepcopy(_graph(graph_or_path))
    return sorted({int(t) for t in Ts}), graph, encoded_input(graph, images01)


def _spike_hooks(neurons: dict[str, Any], spikes_of: Callable[[Any], Any] = lambda out: out) -> dict[str, Any]:
    """A dict that each neuron module's forward hook fills with its latest spikes (`spikes_of` its output)."""
    seen: dict[str, Any] = {}
    for name, m in neurons.items():
        m.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, spikes_of(out)))
    return seen


def _run_unbatched(x_all: np.ndarray, T_max: int, seen: dict[str, Any], names: Iterable[str],
                   steps: Callable[[Any], Iterator[Any]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(readout per step [N, T_max, classes], spikes per step per neuron module) for a reader that runs one
    [C, H, W] sample at a time: `steps(x)` starts the sample from the reader's initial state and yields the
    graph's output of each step (its neuron hooks fill `seen` meanwhile)."""
    import torch

    n = len(x_all)
    per_step: np.ndarray | None = None
    counts = {name: np.zeros((n, T_max)) for name in names}
    with torch.no_grad():
        for i in range(n):
            for t, out in zip(range(T_max), steps(torch.from_numpy(x_all[i]))):
                out = out.reshape(-1).double().numpy()
                if per_step is None:
                    per_step = np.zeros((n, T_max, out.shape[-1]))
                per_step[i, t] = out
                for name, s in seen.items():
                    counts[name][i, t] = float(s.sum())
    assert per_step is not None
    return per_step, counts


def _result(per_step: np.ndarray, counts: dict[str, np.ndarray], Ts: list[int], backend: str) -> SimResult:
    """per_step [N, T_max, classes] outputs, counts[layer] [N, T_max] spikes -> SimResult at every T."""
    run_logits = np.cumsum(per_step.astype(np.float64), axis=1)
    run_spikes = {k: np.cumsum(v, axis=1) for k, v in counts.items()}
    logits = {T: run_logits[:, T - 1] for T in Ts}
    spikes = {T: {k: np.rint(v[:, T - 1]).astype(np.int64) for k, v in run_spikes.items()} for T in Ts}
    return SimResult(Ts=list(Ts), logits=logits, spikes=spikes, backend=backend, timing="sync")


def simulate_sinabs(graph_or_path: Any, images01: np.ndarray, Ts: list[int], *, batch_size: int = 128) -> SimResult:
    """The graph as `sinabs.from_nir(graph, num_timesteps=max(T))` builds it, fed [batch·T, C, H, W]."""
    import torch

    try:
        import sinabs
        from sinabs import from_nir
    except ImportError as err:
        raise BackendError(f"sinabs is not installed ({err}); scripts/setup_env.sh installs it") from None
    Ts, graph, x_all = _prepared(graph_or_path, images01, Ts)
    T_max = max(Ts)
    model = from_nir(graph, num_timesteps=T_max).eval()
    neurons = {name: m for name, m in model.named_modules() if isinstance(m, sinabs.layers.IAFSqueeze)}
    seen = _spike_hooks(neurons)
    n = len(x_all)
    per_step: np.ndarray | None = None
    counts = {name: np.zeros((n, T_max)) for name in neurons}
    with torch.no_grad():
        for start in range(0, n, batch_size):
            xb = torch.from_numpy(x_all[start:start + batch_size])
            b = len(xb)
            sinabs.reset_states(model)
            out = model(xb.unsqueeze(1).expand(b, T_max, *xb.shape[1:]).reshape(b * T_max, *xb.shape[1:]))
            out = (out[0] if isinstance(out, tuple) else out).reshape(b, T_max, -1).double().numpy()
            if per_step is None:
                per_step = np.zeros((n, T_max, out.shape[-1]))
            per_step[start:start + b] = out
            for name, s in seen.items():
                counts[name][start:start + b] = s.reshape(b, T_max, -1).sum(-1).double().numpy()
    assert per_step is not None
    return _result(per_step, counts, Ts, "nir-sinabs")


def simulate_snntorch(graph_or_path: Any, images01: np.ndarray, Ts: list[int]) -> SimResult:
    """The graph as `snntorch.import_nir.import_from_nir` builds it, one sample at a time, one call per step.

    One sample at a time because snnTorch maps NIR's Flatten(start_dim=0) to torch.nn.Flatten(0, -1), which
    also flattens a batch axis: the imported module runs unbatched [C, H, W] inputs only."""
    import torch

    try:
        import snntorch
        from snntorch.import_nir import import_from_nir
    except ImportError as err:
        raise BackendError(f"snntorch is not installed ({err}); scripts/setup_env.sh installs it") from None
    Ts, graph, x_all = _prepared(graph_or_path, images01, Ts)
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints its RNN search
        model = import_from_nir(graph).eval()
    neurons = {name: m for name, m in model.named_modules() if isinstance(m, snntorch.Leaky)}
    seen = _spike_hooks(neurons, lambda out: out[0] if isinstance(out, tuple) else out)

    def steps(x: torch.Tensor) -> Iterator[torch.Tensor]:
        for m in neurons.values():
            m.mem = torch.zeros(0)  # a shape mismatch: the next call starts from zeros (snnTorch's own rule)
        while True:
            out = model(x)
            yield out[0] if isinstance(out, tuple) else out

    per_step, counts = _run_unbatched(x_all, max(Ts), seen, neurons, steps)
    return _result(per_step, counts, Ts, "nir-snntorch")


def simulate_norse(graph_or_path: Any, images01: np.ndarray, Ts: list[int]) -> SimResult:
    """The graph as `norse.torch.from_nir(graph)` builds it (a nirtorch GraphExecutor), one sample at a time, one
    call per step with the state the previous call returned (`out, state = model(x, state)`; state None at a
    sample's first step: every neuron starts from Norse's v_reset = 0).

    One sample at a time because Norse, like snnTorch, maps NIR's Flatten(start_dim=0) to
    torch.nn.Flatten(0, -1), which also flattens a batch axis: the imported module runs unbatched [C, H, W] inputs
    only. start_dim 0 is right for NIR (its shapes have no batch axis; nir's type check infers [C·H·W] from it),
    so the file stays as it is; torch.func.vmap cannot batch it either (Norse's SuperSpike autograd.Function
    defines no vmap rule)."""
    import torch

    try:
        import norse.torch as norse_torch
    except ImportError as err:
        raise BackendError(f"norse is not installed ({err}); scripts/setup_env.sh installs it") from None
    Ts, graph, x_all = _prepared(graph_or_path, images01, Ts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # from_nir calls nirtorch.load, deprecated in 2.x
        model = norse_torch.from_nir(graph).eval()
    neuron_types = (norse_torch.IAFCell, norse_torch.LIFBoxCell)  # what it makes of IF and LIF nodes
    neurons = {name: m for name, m in model.named_modules() if isinstance(m, neuron_types)}
    seen = _spike_hooks(neurons, lambda out: out[0])  # a cell returns (spikes, state)

    def steps(x: torch.Tensor) -> Iterator[torch.Tensor]:
        state = None  # every neuron starts from Norse's v_reset = 0
        while True:
            out, state = model(x, state)
            yield out

    per_step, counts = _run_unbatched(x_all, max(Ts), seen, neurons, steps)
    return _result(per_step, counts, Ts, "nir-norse")


def simulate_reader(reader: str, graph_or_path: Any, images01: np.ndarray, Ts: list[int]) -> SimResult:
    if reader == "sinabs":
        return simulate_sinabs(graph_or_path, images01, Ts)
    if reader == "snntorch":
        return simulate_snntorch(graph_or_path, images01, Ts)
    if reader == "norse":
        return simulate_norse(graph_or_path, images01, Ts)
    raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
