"""NumPy kernels shared by the passes' checks and the ANN-equivalent evaluator (float64, exact for
integer-valued data below 2^53). Conventions as in qcfs.intnet: N,C,H,W; torch/ONNX cross-correlation."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    stride: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    groups: int = 1,
) -> np.ndarray:
    """Grouped 2-D cross-correlation with zero padding (top, left, bottom, right); x [N,C,H,W]."""
    t, l, b, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    kh, kw = w.shape[2:]
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]  # N,C,Ho,Wo,kh,kw
    n, c, ho, wo = win.shape[:4]
    o = w.shape[0]
    if groups == 1:
        return np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    cg, og = c // groups, o // groups
    win = win.reshape(n, groups, cg, ho, wo, kh, kw)
    wg = w.reshape(groups, og, cg, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True)
    return out.reshape(n, o, ho, wo)


def dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x [N, ...] read flattened (C,H,W order) times w [O, I]ᵀ."""
    return x.reshape(x.shape[0], -1) @ w.T


def add_bias(y: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Per-channel (conv, [N,C,H,W]) or per-unit (dense, [N,O]) bias."""
    return y + bias.reshape((1, -1) + (1,) * (y.ndim - 2))
