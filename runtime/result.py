"""What every SNN backend returns, so tables, JSON, counts and bit-exactness checks are backend-agnostic."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SimResult:
    """Results of one simulation of T_max steps, sampled at every requested T ≤ T_max.

    logits[T]          accumulated readout current after T steps, [N, classes] (int64 in integer mode,
                       float64 in float mode)
    spikes[T][layer]   spike count of each sample over its first T steps, summed over the layer, int64 [N]
    raster             optional: layer -> bool [T_max, k] spikes of the first k neurons of sample 0
    pre_steps          ρ of two-phase inference: counts and logits cover the T steps after the ρ pre-steps
    """

    Ts: list[int]
    logits: dict[int, np.ndarray]
    spikes: dict[int, dict[str, np.ndarray]]
    raster: dict[str, np.ndarray] = field(default_factory=dict)
    backend: str = "numpy"
    timing: str = "sync"
    pre_steps: int = 0  # two-phase inference: steps run before the counted window (0: one phase)

    @property
    def T_max(self) -> int:
        return max(self.Ts)

    def predictions(self, T: int) -> np.ndarray:
        return np.argmax(self.logits[T], axis=1)

    def counts_arrays(self) -> dict[str, np.ndarray]:
        """The `--counts` NPZ content: per layer int64 [N] spike counts over T_max, and `logits` at T_max."""
        out = {name: np.asarray(c, dtype=np.int64) for name, c in self.spikes[self.T_max].items()}
        out["logits"] = np.asarray(self.logits[self.T_max])
        if out["logits"].dtype.kind in "iu":
            out["logits"] = out["logits"].astype(np.int64)
        return out
