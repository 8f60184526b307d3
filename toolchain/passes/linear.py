"""Linear-map algebra for the passes: per-channel affine maps as conv/dense nodes, and the composition of
two convolutions (or conv then dense) into one, with the exactness conditions that zero padding imposes.

Composition (per spatial axis): conv1 (k1, s1, pads b1/e1) then conv2 (k2, s2, b2/e2) is one conv with
kernel K = (k2−1)·s1 + k1, stride S = s1·s2, begin padding B = b2·s1 + b1 and weights
Wc[o, i, a·s1 + u] = Σ_m W2[o, m, a] · W1[m, i, u]. It equals the two-step map iff every position of the
intermediate map that conv2 reads as zero padding corresponds, in the composed conv, to input positions that
are zero padding too (conv1's window there lies wholly outside the input), and conv1's bias is zero when
conv2 reads padding at all (the composed bias is added everywhere).
"""

from __future__ import annotations

from math import gcd

import numpy as np

from qcfs.toolchain.graph import Node, conv_out_len


def affine_node(name: str, inp: str, shape: tuple[int, ...], scale: np.ndarray, shift: np.ndarray,
                like: Node) -> Node:
    """x·scale + shift per channel as a depthwise 1×1 conv ([C,H,W]) or a diagonal dense ([N])."""
    c = shape[0]
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (c,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (c,)).copy()
    if len(shape) == 3:
        attrs = dict(weight=scale.reshape(c, 1, 1, 1).copy(), bias=shift, stride=(1, 1), pads=(0, 0, 0, 0), groups=c)
        return Node(name, "conv", [inp], shape, attrs, like.onnx_name, like.onnx_op)
    return Node(name, "dense", [inp], shape, dict(weight=np.diag(scale), bias=shift), like.onnx_name, like.onnx_op)


def expand_groups(w: np.ndarray, groups: int) -> np.ndarray:
    """Grouped conv weights [O, I/g, kh, kw] -> equivalent dense-in-channels weights [O, I, kh, kw]."""
    if groups == 1:
        return w
    o, ig = w.shape[:2]
    og = o // groups
    full = np.zeros((o, ig * groups) + w.shape[2:], dtype=w.dtype)
    for g in range(groups):
        full[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = w[g * og:(g + 1) * og]
    return full


BLOCK_BYTES = 64 << 20  # temporaries per block of output channels (an ImageNet FC composes to 3.3 GB)


def _nonzero_pairs(full: np.ndarray) -> np.ndarray:
    """bool [O, I]: whether any kernel weight connects output o to input i (in row blocks, no full copy)."""
    o, i = full.shape[:2]
    flat = full.reshape(o, i, -1)
    nz = np.empty((o, i), dtype=bool)
    step = max(1, BLOCK_BYTES // max(1, i * flat.shape[2]))
    for r in range(0, o, step):
        nz[r:r + step] = np.any(flat[r:r + step] != 0, axis=2)
    return nz


def compress_groups(full: np.ndarray) -> tuple[np.ndarray, int]:
    """Largest group count whose off-block weights are all zero; returns (weights [O, I/g, kh, kw], g).
    With one group the array itself is returned (callers pass a fresh array), not a copy."""
    o, i = full.shape[:2]
    n = gcd(o, i)
    nz = _nonzero_pairs(full) if n > 1 else None
    for g in sorted((d for d in range(1, n + 1) if n % d == 0), reverse=True):
        if g == 1:
            return full, 1
        og, ig = o // g, i // g
        mask = np.ones((o, i), dtype=bool)
        for k in range(g):
            mask[k * og:(k + 1) * og, k * ig:(k + 1) * ig] = False
        if not np.any(nz[mask]):  # type: ignore[index]
            return np.concatenate([full[k * og:(k + 1) * og, k * ig:(k + 1) * ig] for k in range(g)]), g
    raise AssertionError("unreachable")


def _axis(n0: int, k1: int, s1: int, b1: int, e1: int, k2: int, s2: int, b2: int, e2: int, check: bool = True
          ) -> tuple[int, int, int, int, bool] | str:
    """Composed (K, S, B, E, reads_padding) along one axis, or why the composition is not one conv
    (check=False skips the exactness conditions: tests use it to show the refused cases really differ)."""
    n1 = conv_out_len(n0, k1, s1, b1, e1)
    n2 = conv_out_len(n1, k2, s2, b2, e2)
    K, S, B = (k2 - 1) * s1 + k1, s1 * s2, b2 * s1 + b1
    m_max = (n2 - 1) * s2 - b2 + k2 - 1  # last intermediate position conv2 reads
    reads_low, reads_high = b2 > 0, m_max >= n1
    if check and reads_low and -s1 - b1 + k1 - 1 >= 0:
        return (f"the zero padding of the {n1}-wide intermediate map would read real input at the start "
                f"(kernel {k1} > stride {s1} + padding {b1})")
    if check and reads_high and n1 * s1 - b1 < n0:
        return (f"the zero padding of the {n1}-wide intermediate map would read real input at the end "
                f"(input length {n0} is not covered exactly by stride {s1})")
    last = m_max * s1 - b1 + k1 - 1
    E = max(0, last - (n0 - 1))
    if conv_out_len(n0, K, S, B, E) != n2:
        return f"the composed output length {conv_out_len(n0, K, S, B, E)} differs from {n2}"
    return K, S, B, E, reads_low or reads_high


def compose_conv(c1: dict, in_shape: tuple[int, int, int], c2: dict, check: bool = True) -> dict | str:
    """attrs of conv1 then conv2 as one conv over conv1's input (in_shape), or the reason it is not exact."""
    axes = []
    for ax in (0, 1):
        r = _axis(in_shape[1 + ax], c1["weight"].shape[2 + ax], c1["stride"][ax], c1["pads"][ax], c1["pads"][2 + ax],
                  c2["weight"].shape[2 + ax], c2["stride"][ax], c2["pads"][ax], c2["pads"][2 + ax], check)
        if isinstance(r, str):
            return r
        axes.append(r)
    (Kh, Sh, Bh, Eh, rh), (Kw, Sw, Bw, Ew, rw) = axes
    if check and (rh or rw) and np.any(c1["bias"]):
        return "the first map has a bias and the second reads zero padding (the bias would leak into the border)"
    w1, w2 = c1["weight"], expand_groups(c2["weight"], c2["groups"])  # w2: [O, M, k2h, k2w]
    s1h, s1w = c1["stride"]
    k1h, k1w = w1.shape[2:]
    o, m = w2.shape[:2]
    depthwise = c1["groups"] == m == in_shape[0] and w1.shape[1] == 1
    w1f = None if depthwise else expand_groups(w1, c1["groups"])  # [M, I, k1h, k1w]
    wc = np.zeros((o, in_shape[0], Kh, Kw))
    for a in range(w2.shape[2]):
        for b in range(w2.shape[3]):
            if depthwise:
                part = w2[:, :, a, b][:, :, None, None] * w1[None, :, 0]
            else:
                part = np.tensordot(w2[:, :, a, b], w1f, axes=(1, 0))
            wc[:, :, a * s1h:a * s1h + k1h, b * s1w:b * s1w + k1w] += part
    bias = c2["bias"] + w2.sum(axis=(2, 3)) @ c1["bias"]
    weight, groups = compress_groups(wc)
    return dict(weight=weight, bias=bias, stride=(Sh, Sw), pads=(Bh, Bw, Eh, Ew), groups=groups)


def dense_as_conv(d: dict, in_shape: tuple[int, int, int]) -> dict:
    """A dense map over a flattened [C,H,W] input is a conv whose kernel covers the whole input."""
    w = d["weight"].reshape((d["weight"].shape[0],) + tuple(in_shape))
    return dict(weight=w, bias=d["bias"], stride=(1, 1), pads=(0, 0, 0, 0), groups=1)


def conv_as_dense(c: dict, in_shape: tuple[int, int, int]) -> dict:
    """A conv with a 1×1 output is a dense map over the flattened input (kernel cropped to the real input)."""
    w = expand_groups(c["weight"], c["groups"])
    o, ch, kh, kw = w.shape
    _, h, wd = in_shape
    t, l = c["pads"][:2]
    if (t, l, kh, kw) == (0, 0, h, wd):  # the window is the input: the kernel already is the dense matrix
        return dict(weight=w.reshape(o, -1), bias=c["bias"])
    full = np.zeros((o, ch, h, wd))
    ny, nx = min(h, kh - t), min(wd, kw - l)  # input rows/cols the single window covers
    full[:, :, :ny, :nx] = w[:, :, t:t + ny, l:l + nx]
    return dict(weight=full.reshape(o, -1), bias=c["bias"])
