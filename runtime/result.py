"""What every SNN backend returns, so tables, JSON, counts and bit-exactness checks are backend-agnostic."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SimResult:
    """Results of one simulation of T_max steps, sampled at every requested T ≤ T_max.

    logits[T]          accumulated readout current after T steps, [N, classes] (int64 in integer mode,
                       float64 in float mode)
    spikes[T][layer]   spike count of each sample over its first T steps, summed over the layer, int64 [N];
                       with graded spikes (max_spikes > 1) the number of spike *messages* (neuron-steps with s > 0)
    values[T][layer]   graded spikes only: the sum of the spikes' payloads s (the count a binary network would
                       have emitted); empty for binary spikes, where it equals `spikes`
    max_spikes         the network's max_spikes_per_step m (1: binary IF)
    raster             optional: layer -> bool [T_max, k] spikes of the first k neurons of sample 0
    pre_steps          ρ of two-phase inference: counts and logits cover the T steps after the ρ pre-steps
    pre_spikes[layer]  two-phase inference: spike messages of each sample during the ρ pre-steps (they cost
                       synaptic operations too; metrics and the energy table add them)
    """

    Ts: list[int]
    logits: dict[int, np.ndarray]
    spikes: dict[int, dict[str, np.ndarray]]
    raster: dict[str, np.ndarray] = field(default_factory=dict)
    backend: str = "numpy"
    timing: str = "sync"
    pre_steps: int = 0  # two-phase inference: steps run before the counted window (0: one phase)
    values: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    max_spikes: int = 1
    pre_spikes: dict[str, np.ndarray] = field(default_factory=dict)  # per layer, spikes in the ρ pre-steps [N]

    def spike_values(self, T: int) -> dict[str, np.ndarray]:
        """Per layer the summed payload over T steps (= spikes for binary networks)."""
        return self.values.get(T, self.spikes[T])

    @property
    def T_max(self) -> int:
        return max(self.Ts)

    def predictions(self, T: int) -> np.ndarray:
        return np.argmax(self.logits[T], axis=1)

    def accuracy(self, labels: np.ndarray) -> dict[int, float]:
        """Top-1 accuracy (a fraction in [0, 1]) at every simulated T against integer `labels` [N]."""
        y = np.asarray(labels).reshape(-1)
        n = len(self.logits[self.T_max])
        if len(y) != n:
            raise ValueError(f"{len(y)} labels for {n} simulated samples")
        return {T: float(np.mean(self.predictions(T) == y)) for T in self.Ts}

    def spikes_per_sample(self, T: int) -> float:
        """Mean spikes per sample over all IF layers in the first T steps."""
        return float(np.mean(sum(np.asarray(c, np.int64) for c in self.spikes[T].values())))

    def counts_arrays(self) -> dict[str, np.ndarray]:
        """The `--counts` NPZ content: per layer int64 [N] spike counts over T_max, and `logits` at T_max."""
        out = {name: np.asarray(c, dtype=np.int64) for name, c in self.spikes[self.T_max].items()}
        for name, c in self.values.get(self.T_max, {}).items():  # graded spikes: payload sums too
            out[f"values:{name}"] = np.asarray(c, dtype=np.int64)
        out["logits"] = np.asarray(self.logits[self.T_max])
        if out["logits"].dtype.kind in "iu":
            out["logits"] = out["logits"].astype(np.int64)
        return out


def sync_inputs(input_shape: tuple[int, ...], images01: np.ndarray, Ts: list[int]) -> tuple[np.ndarray, list[int]]:
    """The arguments of a layer-synchronous backend, checked: images as float64 [N, C, H, W] (a missing channel
    axis added) and the sorted distinct T values; ValueError for a T < 1 or images of another shape."""
    Ts = sorted({int(t) for t in Ts})
    if not Ts or Ts[0] < 1:
        raise ValueError("every T must be a positive integer")
    images01 = np.asarray(images01, dtype=np.float64)
    if images01.ndim == 3:
        images01 = images01[:, None]
    if tuple(images01.shape[1:]) != tuple(input_shape):
        raise ValueError(f"images have shape {images01.shape[1:]}, the network expects {tuple(input_shape)}")
    return images01, Ts


class ChunkResults:
    """Per-T logits and per-layer cumulative counts of N samples, filled chunk by chunk by a backend that gets
    them for every step 1..T_max at once ([T_max, b, …] arrays), then returned as one SimResult."""

    def __init__(self, n: int, Ts: list[int], num_classes: int, layers: list[str], max_spikes: int) -> None:
        self.Ts, self.m = Ts, max_spikes
        self.logits = {t: np.zeros((n, num_classes), dtype=np.int64) for t in Ts}
        self.spikes = {t: {name: np.zeros(n, dtype=np.int64) for name in layers} for t in Ts}
        self.values = {t: {name: np.zeros(n, dtype=np.int64) for name in layers} for t in Ts} if max_spikes > 1 else {}

    def put(self, start: int, logits: np.ndarray, spikes: dict[str, np.ndarray],
            values: dict[str, np.ndarray]) -> None:
        """Samples start… of one chunk: logits [T_max, b, classes], spikes/values {layer: [T_max, b]}."""
        b = logits.shape[1]
        for t in self.Ts:
            self.logits[t][start : start + b] = logits[t - 1].reshape(b, -1)
            for name, c in spikes.items():
                self.spikes[t][name][start : start + b] = c[t - 1]
            for name, v in values.items():
                self.values[t][name][start : start + b] = v[t - 1]

    def result(self, backend: str) -> SimResult:
        return SimResult(Ts=self.Ts, logits=self.logits, spikes=self.spikes, backend=backend, timing="sync",
                         values=self.values, max_spikes=self.m)


def concat_results(parts: list[SimResult]) -> SimResult:
    """The results of consecutive chunks or shards of one sample list, as one result in sample order.

    Exact because every sample is simulated independently of the others in its batch (no backend couples
    samples), so splitting the list and concatenating changes no integer. The raster is sample 0's: the first
    part's.
    """
    if not parts:
        raise ValueError("no results to concatenate")
    first = parts[0]
    for p in parts[1:]:
        if (p.Ts, p.backend, p.timing, p.pre_steps, p.max_spikes) != (first.Ts, first.backend, first.timing,
                                                                     first.pre_steps, first.max_spikes):
            raise ValueError("results of different runs cannot be concatenated "
                             f"({(p.Ts, p.backend, p.timing, p.pre_steps)} vs "
                             f"{(first.Ts, first.backend, first.timing, first.pre_steps)})")
        if set(p.spikes[p.T_max]) != set(first.spikes[first.T_max]):
            raise ValueError("results of different networks cannot be concatenated (layer names differ)")
    if len(parts) == 1:
        return first
    logits = {t: np.concatenate([p.logits[t] for p in parts]) for t in first.Ts}
    spikes = {t: {name: np.concatenate([p.spikes[t][name] for p in parts]) for name in first.spikes[t]}
              for t in first.Ts}
    values = {t: {name: np.concatenate([p.values[t][name] for p in parts]) for name in first.values[t]}
              for t in first.values}
    return SimResult(Ts=list(first.Ts), logits=logits, spikes=spikes, raster=dict(first.raster),
                     backend=first.backend, timing=first.timing, pre_steps=first.pre_steps, values=values,
                     max_spikes=first.max_spikes,
                     pre_spikes={name: np.concatenate([p.pre_spikes[name] for p in parts]) for name in first.pre_spikes})
