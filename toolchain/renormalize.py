"""`qcfs-run --normalize`: change a model's input normalization without leaving a stale 8-bit input scale.

Why: integer mode quantizes the normalized image with scale = 127 / max|normalized pixel|, chosen at
conversion from the normalization (Quantize.input_scale), and divides the first layer's weights by it. A new
mean/std changes that range; keeping the old scale saturates every pixel beyond it (47 % of inputs in one
reported case) without a word. So: for an ONNX/checkpoint the new mean/std go into the metadata *before*
conversion and the scale is recomputed; an exported IntNet keeps its scale only when no pixel saturates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from qcfs.errors import QCFSError
from qcfs.exporters.canonical import set_metadata
from qcfs.semantics import encode_input, membrane_limits

# --normalize warns when more than this fraction of the quantized input values sit at the ends of the signed
# range (±(2^(bits-1) − 1)): the full-range scale puts only the pixel values 0 or 1 there, so a quarter of all
# values means a common pixel value (a background) was mapped to the extreme by a mean/std far from the data's.
# Measured with pinned_fraction on 256 spread test images of each shipped model (2026-12-05): its own
# normalization 9.6 % (digits), 0.8 % (fashion-mnist), 0.4 % (cifar10); --normalize 0.5,0.5: 59 %, 50 %, 1.9 %;
# 1.0,0.05: 50 %, 50 %, 0.8 % (CIFAR-10 has no common extreme pixel value).
PINNED_WARN_FRACTION = 0.25
PINNED_SAMPLES = 256  # how many of the run's samples the check encodes (cheap: one batch)


def broadcast_channels(mean: tuple[float, ...], std: tuple[float, ...], channels: int
                       ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(mean) not in (1, channels) or len(std) != len(mean):
        raise QCFSError(f"--normalize gives {len(mean)} channel(s), the model has {channels}")
    if len(mean) == 1:
        mean, std = mean * channels, std * channels
    return tuple(map(float, mean)), tuple(map(float, std))


def with_normalization(canon: onnx.ModelProto, mean: tuple[float, ...], std: tuple[float, ...]) -> onnx.ModelProto:
    """A copy of the canonical model whose qcfs.normalize.* metadata are `mean`/`std` (broadcast to its channels)."""
    dims = canon.graph.input[0].type.tensor_type.shape.dim
    channels = dims[1].dim_value if len(dims) > 1 and dims[1].dim_value > 0 else len(mean)
    mean, std = broadcast_channels(mean, std, channels)
    out = onnx.ModelProto()
    out.CopyFrom(canon)
    set_metadata(out, {"qcfs.normalize.mean": list(mean), "qcfs.normalize.std": list(std)})
    return out


def check_scale_fits(inp, mean: tuple[float, ...], std: tuple[float, ...], where: str) -> None:  # type: ignore[no-untyped-def]
    """Refuse a normalization under which some pixel in [0, 1] would saturate the file's quantized input."""
    if inp.scale is None:  # float mode: no quantization, any normalization is exact
        return
    m, s = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    ends = np.stack([(0.0 - m) / s, (1.0 - m) / s]) * float(inp.scale)
    lo, hi = membrane_limits(int(inp.bits))
    q = np.rint(ends)
    if q.min() < lo or q.max() > hi:
        peak = float(np.abs(np.stack([(0.0 - m) / s, (1.0 - m) / s])).max())
        raise QCFSError(f"--normalize: normalized pixels reach ±{peak:.4g}, but {where} quantizes its input with "
                        f"the fixed {inp.bits}-bit scale {float(inp.scale):.6g} (range ±{hi / float(inp.scale):.4g}), "
                        "so pixels would saturate; pass the ONNX or checkpoint instead (the scale is then "
                        "recomputed) or export again with the new normalization")


def renormalized(net, mean: tuple[float, ...], std: tuple[float, ...], where: str):  # type: ignore[no-untyped-def]
    """An exported IntNet with a new input normalization: its input scale was fixed at export, so it is kept
    only if no pixel of the new normalization saturates the quantized input (else one-line refusal: re-export
    from the ONNX or checkpoint)."""
    mean, std = broadcast_channels(mean, std, net.input.shape[0])
    check_scale_fits(net.input, mean, std, where)
    return dataclasses.replace(net, input=dataclasses.replace(net.input, mean=mean, std=std))


def pinned_fraction(inp, images: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """Fraction of the quantized input values of `images` ([N, C, H, W] in [0, 1]) at ±(2^(bits−1) − 1) or
    beyond; 0 in float mode (no quantization)."""
    if inp.scale is None or images.size == 0:
        return 0.0
    q = encode_input(images, inp.mean, inp.std, inp.scale, int(inp.bits))
    return float((np.abs(q) >= (1 << (int(inp.bits) - 1)) - 1).mean())


def pinned_warning(inp, images: np.ndarray) -> str | None:  # type: ignore[no-untyped-def]
    """One warning line when --normalize pins more than PINNED_WARN_FRACTION of the input at the range ends."""
    frac = pinned_fraction(inp, images[:PINNED_SAMPLES])
    if frac <= PINNED_WARN_FRACTION:
        return None
    top = (1 << (int(inp.bits) - 1)) - 1
    return (f"--normalize maps {100 * frac:.0f} % of the input values to the ends of the {inp.bits}-bit input range "
            f"(±{top}; more than {100 * PINNED_WARN_FRACTION:.0f} % means a mean/std far from the data's): is it "
            "the normalization the network was trained with?")
