"""Semantic validation of an IntNet: what every backend silently assumes, checked once, in one place.

Why: the file format (qcfs.intnet) only says where values live; a file with θ ≤ 0, an odd θ in integer mode,
NaN weights, stride 0 or shapes that disagree along a synapse would otherwise run — and each backend would
compute something different (or crash deep inside). `validate_intnet` is called by `load_intnet` on every
file and by the converter on every network it emits; the first violation raises ModelFileError as one line
naming the file, the layer and the field.

Checked (integer mode = "int"):
  header     mode ∈ {int, float}; L ≥ 1 integer; 0 ≤ φ < 1; readout_scale finite > 0; metadata an object;
             profile bit widths in sane ranges (weights 2..16, input 2..16, bias/threshold/membrane 2..32,
             spike payload 1..32); max_spikes_per_step m an integer ≥ 1 whose payload ⌈log2(m+1)⌉ bits
             (m > 1) fits profile.spike_payload_bits
  input      shape [C, H, W] positive; mean/std finite, std > 0, one per channel or one for all;
             int mode: scale finite > 0 and bits = profile.input_bits; float mode: scale null
  layers     unique names; IF layers then exactly one readout, last; kind ∈ {if, readout}; shape [C,H,W] or
             [N], positive; depth = depth(source) + 1 + delay for every synapse; float32_exact a bool that
             only claims what the weights allow
  IF neuron  θ finite > 0 (int: an even integer that fits threshold_bits, so θ/2 is exact); v_init scalar,
             one per channel or one per neuron, finite (int: integral and inside the membrane range)
  arrays     numeric, finite; int mode: integral, weights within weight_bits, bias within bias_bits
  synapses   kind ∈ {conv, dense}; source "input" or an EARLIER IF layer; delay ≥ 0; pool (version 3): null
             or kernel ≥ 1, stride ≥ 1, padding ≥ 0 and < kernel, source an IF layer (its window sums are the
             source shape the weights must match; depth counts the pool stage's step); conv: weight
             [O, I/g, kh, kw] with O = C_out, I = C_in, g ≥ 1 dividing both, stride ≥ 1, padding ≥ 0, and
             the conv output shape equal to the layer's shape; dense: weight [units, fan-in] matching both ends
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from qcfs.errors import ModelFileError
from qcfs.semantics import membrane_limits, payload_bits

if TYPE_CHECKING:
    from qcfs.intnet import IntNet, Layer

MODES = ("int", "float")
LAYER_KINDS = ("if", "readout")
SYNAPSE_KINDS = ("conv", "dense")
BIT_RANGES = {"weight_bits": (2, 16), "input_bits": (2, 16), "bias_bits": (2, 32), "threshold_bits": (2, 32),
              "membrane_bits": (2, 32), "spike_payload_bits": (1, 32)}
FLOAT32_EXACT_LIMIT = 1 << 24


class _Fail(Exception):
    """Internal: (where, message) of the first violation; turned into one ModelFileError line."""


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise _Fail(msg)


def _ints(value: Any, n: int, field: str, minimum: int) -> tuple[int, ...]:
    ok = isinstance(value, (list, tuple)) and len(value) == n and all(_is_int(v) for v in value)
    _check(ok, f"{field} must be {n} integers, got {value!r}")
    _check(all(int(v) >= minimum for v in value), f"{field} must be ≥ {minimum}, got {list(value)}")
    return tuple(int(v) for v in value)


def _shape(value: Any, field: str) -> tuple[int, ...]:
    ok = isinstance(value, (list, tuple)) and len(value) in (1, 3) and all(_is_int(v) and v > 0 for v in value)
    _check(ok, f"{field} must be [C, H, W] or [N] positive integers, got {value!r}")
    return tuple(int(v) for v in value)


def _array(a: Any, field: str, integer: bool, bits: int | None = None) -> np.ndarray:
    """Numeric and finite; integral (and, with `bits`, inside the signed range) in integer mode."""
    _check(isinstance(a, np.ndarray), f"{field} is not an array")
    _check(a.dtype.kind in "iuf" and a.dtype.kind != "c", f"{field} has non-numeric dtype {a.dtype}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        _check(not bad.any(), f"{field} holds {int(bad.sum())} non-finite value(s) (NaN/inf)")
    if integer:
        if a.dtype.kind == "f":
            _check(bool(np.all(a == np.rint(a))), f"{field} holds non-integer values in integer mode")
        if bits is not None and a.size:
            lo, hi = membrane_limits(bits)
            amin, amax = a.min(), a.max()
            _check(lo <= amin and amax <= hi,
                   f"{field} range [{amin:.0f}, {amax:.0f}] does not fit {bits} bits [{lo}, {hi}]")
    return a


def _scalar(x: Any, field: str) -> float:
    _check(_is_num(x), f"{field} must be a number, got {x!r}")
    xf = float(x)
    _check(math.isfinite(xf), f"{field} must be finite, got {x!r}")
    return xf


def float32_exact(layer: Layer, input_bits: int, max_spikes: int = 1) -> bool:
    """Every partial sum of the layer's current is an integer below 2^24, so float32 BLAS is exact (a spike
    carries at most `max_spikes`, the network's graded payload)."""
    total = 0.0
    for syn in layer.synapses:
        fan_in = int(np.prod(syn.weight.shape[1:]))
        peak_in = float(1 << (input_bits - 1)) if syn.source == "input" else float(max_spikes)
        if getattr(syn, "pool", None) is not None:
            peak_in *= syn.pool.size  # a window sum of up to kh·kw messages of up to m spikes each
        w = syn.weight  # max |w| without np.abs's weight-sized copy (3 GB for an ImageNet FC); in float, so
        # even an int64 minimum (whose abs overflows) counts at its size
        total += fan_in * max(float(w.max(initial=0)), -float(w.min(initial=0))) * peak_in
    return total < FLOAT32_EXACT_LIMIT


def _conv_out(n: int, k: int, s: int, lo: int, hi: int) -> int:
    return (n + lo + hi - k) // s + 1


def _check_header(net: IntNet) -> None:
    _check(isinstance(net.mode, str) and net.mode in MODES, f"mode must be one of {MODES}, got {net.mode!r}")
    _check(_is_int(net.L) and net.L >= 1, f"L must be a positive integer, got {net.L!r}")
    phi = _scalar(net.phi, "phi")
    _check(0.0 <= phi < 1.0, f"phi (shift φ) must be in [0, 1), got {phi}")
    rs = _scalar(net.readout_scale, "readout_scale")
    _check(rs > 0, f"readout_scale must be positive, got {rs}")
    _check(isinstance(net.metadata, dict), "metadata must be a JSON object")
    prof = net.profile
    for name, (lo, hi) in BIT_RANGES.items():
        v = getattr(prof, name)
        _check(_is_int(v) and lo <= v <= hi, f"profile.{name} must be an integer in {lo}..{hi}, got {v!r}")
    _check(isinstance(prof.name, str), f"profile.name must be a string, got {prof.name!r}")
    m = net.max_spikes_per_step
    _check(_is_int(m) and m >= 1, f"max_spikes_per_step must be an integer ≥ 1, got {m!r}")
    _check(payload_bits(int(m)) <= prof.spike_payload_bits,
           f"max_spikes_per_step {m} needs {payload_bits(int(m))}-bit graded spikes; profile {prof.name!r} "
           f"carries {prof.spike_payload_bits} (spike_payload_bits): use a smaller --spikes-per-step")
    pooled = [layer.name for layer in net.layers for s in layer.synapses if getattr(s, "pool", None) is not None]
    _check(int(m) == 1 or not pooled,
           f"graded spikes (max_spikes_per_step {m}) with a separate pool stage (into layer {pooled[:1]}) are not "
           f"supported yet: export with --pool compose or without --spikes-per-step")
    inp = net.input
    shape = _shape(inp.shape, "input.shape")
    _check(len(shape) == 3, f"input.shape must be [C, H, W], got {list(shape)}")
    c = shape[0]
    for field in ("mean", "std"):
        vals = getattr(inp, field)
        ok = isinstance(vals, (list, tuple)) and len(vals) in (1, c) and all(_is_num(v) for v in vals)
        _check(ok, f"input.{field} must be 1 or {c} numbers, got {vals!r}")
        _check(all(math.isfinite(float(v)) for v in vals), f"input.{field} must be finite, got {list(vals)}")
    _check(all(float(s) > 0 for s in inp.std), f"input.std must be positive, got {list(inp.std)}")
    if net.mode == "int":
        scale = _scalar(inp.scale, "input.scale") if inp.scale is not None else None
        _check(scale is not None and scale > 0, f"input.scale must be a finite positive number in integer mode, "
                                                f"got {inp.scale!r}")
        _check(_is_int(inp.bits) and inp.bits == prof.input_bits,
               f"input.bits must equal profile.input_bits ({prof.input_bits}), got {inp.bits!r}")
    else:
        _check(inp.scale is None, f"input.scale must be null in float mode (no input quantization), got {inp.scale!r}")


def _check_neuron(net: IntNet, layer: Layer, integer: bool) -> None:
    prof = net.profile
    theta = _scalar(layer.threshold, "threshold")
    _check(theta > 0, f"threshold θ must be positive, got {layer.threshold!r}")
    if integer:
        _check(theta == int(theta), f"threshold θ must be an integer in integer mode, got {layer.threshold!r}")
        _check(int(theta) % 2 == 0, f"threshold θ must be even in integer mode (θ/2 exact), got {int(theta)}")
        tmax = membrane_limits(prof.threshold_bits)[1]
        _check(theta <= tmax, f"threshold θ = {int(theta)} does not fit {prof.threshold_bits} bits (≤ {tmax})")
    if np.ndim(layer.v_init) == 0:
        v = np.asarray([_scalar(layer.v_init if not isinstance(layer.v_init, np.ndarray) else layer.v_init.item(),
                                "v_init")])
    else:
        v = np.asarray(layer.v_init)
        neurons = int(np.prod(layer.shape))
        _check(v.ndim == 1 and v.shape[0] in (layer.channels, neurons),
               f"v_init must be one value or one per channel ({layer.channels}) or one per neuron ({neurons}), "
               f"got shape {list(v.shape)}")
    _array(v, "v_init", integer, prof.membrane_bits if integer else None)


def _check_synapse(net: IntNet, layer: Layer, j: int, shapes: dict[str, tuple[int, ...]],
                   depths: dict[str, int], integer: bool) -> None:
    syn = layer.synapses[j]
    f = f"synapse {j}"
    _check(isinstance(syn.kind, str) and syn.kind in SYNAPSE_KINDS,
           f"{f}: kind must be one of {SYNAPSE_KINDS}, got {syn.kind!r}")
    _check(isinstance(syn.source, str) and syn.source in shapes,
           f"{f}: source {syn.source!r} is not 'input' or an earlier IF layer")
    _check(_is_int(syn.delay) and syn.delay >= 0, f"{f}: delay must be an integer ≥ 0, got {syn.delay!r}")
    src = shapes[syn.source]
    if syn.pool is not None:
        src = _check_pool(syn, src, f)
    want = depths[syn.source] + 1 + int(syn.delay) + (syn.pool is not None)
    _check(layer.depth == want, f"depth {layer.depth!r} != depth({syn.source}) + 1 + delay"
                                f"{' + 1 (pool stage)' if syn.pool is not None else ''} = {want} ({f})")
    w = _array(syn.weight, f"{f} weight", integer, net.profile.weight_bits if integer else None)
    stride = _ints(syn.stride, 2, f"{f} stride", 1)
    pads = _ints(syn.padding, 4, f"{f} padding", 0)
    _check(_is_int(syn.groups) and syn.groups >= 1, f"{f}: groups must be an integer ≥ 1, got {syn.groups!r}")
    if syn.kind == "dense":
        _check(stride == (1, 1) and pads == (0, 0, 0, 0) and syn.groups == 1,
               f"{f}: a dense synapse has stride [1, 1], padding [0, 0, 0, 0] and groups 1")
    if syn.kind == "conv":
        _check(len(src) == 3 and len(layer.shape) == 3, f"{f}: conv needs [C,H,W] source and layer shapes, "
                                                        f"got {list(src)} -> {list(layer.shape)}")
        _check(w.ndim == 4 and min(w.shape) > 0, f"{f}: conv weight must be [O, I/g, kh, kw], got {list(w.shape)}")
        g = int(syn.groups)
        _check(src[0] % g == 0 and w.shape[0] % g == 0,
               f"{f}: groups {g} must divide input channels {src[0]} and output channels {w.shape[0]}")
        _check(w.shape[1] * g == src[0], f"{f}: weight {list(w.shape)} with groups {g} does not read "
                                         f"{src[0]} input channels")
        out = (w.shape[0], _conv_out(src[1], w.shape[2], stride[0], pads[0], pads[2]),
               _conv_out(src[2], w.shape[3], stride[1], pads[1], pads[3]))
        _check(out == tuple(layer.shape), f"{f}: conv output shape {list(out)} != layer shape {list(layer.shape)}")
    else:
        n_in, n_out = int(np.prod(src)), int(np.prod(layer.shape))
        _check(w.ndim == 2 and w.shape == (n_out, n_in),
               f"{f}: dense weight must be [{n_out}, {n_in}] ({list(layer.shape)} <- {list(src)}), got {list(w.shape)}")


def _check_pool(syn: Any, src: tuple[int, ...], f: str) -> tuple[int, ...]:
    """The pool stage's fields; returns the shape of its window sums (what the weights read)."""
    p = syn.pool
    _check(syn.source != "input", f"{f}: pool reads the input; a pooling stage sums an IF layer's spikes")
    _check(len(src) == 3, f"{f}: pool needs a [C,H,W] source, got {list(src)}")
    kernel = _ints(p.kernel, 2, f"{f} pool kernel", 1)
    _ints(p.stride, 2, f"{f} pool stride", 1)
    pads = _ints(p.padding, 4, f"{f} pool padding", 0)
    _check(all(pads[i] < kernel[i % 2] for i in range(4)),
           f"{f}: pool padding {list(pads)} must be smaller than the kernel {list(kernel)}")
    out = p.out_shape(src)
    _check(min(out) >= 1, f"{f}: pool {list(kernel)} does not fit the source {list(src)}")
    return out


def _check_layer(net: IntNet, i: int, layer: Layer, shapes: dict[str, tuple[int, ...]],
                 depths: dict[str, int]) -> None:
    integer = net.mode == "int"
    last = i == len(net.layers) - 1
    _check(isinstance(layer.kind, str) and layer.kind in LAYER_KINDS,
           f"kind must be one of {LAYER_KINDS}, got {layer.kind!r}")
    _check(not last or layer.kind == "readout", f"kind {layer.kind!r} for the last layer: the readout must be last")
    _check(last or layer.kind == "if", "a readout before the last layer: the readout must be last")
    _check(isinstance(layer.name, str) and layer.name and layer.name != "input" and layer.name not in shapes,
           f"name {layer.name!r} is empty, 'input' or used twice")
    layer.shape = _shape(layer.shape, "shape")
    _check(_is_int(layer.depth) and layer.depth >= 1, f"depth must be an integer ≥ 1, got {layer.depth!r}")
    _check(isinstance(layer.float32_exact, (bool, np.bool_)), f"float32_exact must be true/false, got "
                                                              f"{layer.float32_exact!r}")
    _check(isinstance(layer.synapses, list) and len(layer.synapses) >= 1, "has no synapses")
    bias = _array(layer.bias, "bias", integer, net.profile.bias_bits if integer else None)
    _check(bias.shape == (layer.channels,), f"bias must have one value per channel ({layer.channels}), got shape "
                                            f"{list(bias.shape)}")
    if layer.kind == "if":
        _check_neuron(net, layer, integer)
    else:  # the readout has no neuron: θ and v_init are unused, but must still be plain finite numbers
        _scalar(layer.threshold, "threshold")
        if np.ndim(layer.v_init) == 0:
            _scalar(layer.v_init.item() if isinstance(layer.v_init, np.ndarray) else layer.v_init, "v_init")
        else:
            _array(np.asarray(layer.v_init), "v_init", False)
    for j in range(len(layer.synapses)):
        _check_synapse(net, layer, j, shapes, depths, integer)
    if layer.float32_exact:
        _check(integer and float32_exact(layer, net.profile.input_bits, int(net.max_spikes_per_step)),
               "float32_exact is true but the layer's sums can exceed 2^24 (float32 would be inexact)")


def validate_intnet(net: IntNet, source: str = "network") -> IntNet:
    """Raise ModelFileError('<source>: layer <name>: <field> ...') on the first violation; return `net`."""
    where = f"{source}"
    try:
        _check_header(net)
        _check(isinstance(net.layers, list) and len(net.layers) >= 1, "has no layers")
        shapes: dict[str, tuple[int, ...]] = {"input": tuple(net.input.shape)}
        depths: dict[str, int] = {"input": 0}
        for i, layer in enumerate(net.layers):
            where = f"{source}: layer {getattr(layer, 'name', i)!r}"
            _check_layer(net, i, layer, shapes, depths)
            if layer.kind == "if":
                shapes[layer.name] = tuple(layer.shape)
                depths[layer.name] = int(layer.depth)
    except _Fail as err:
        raise ModelFileError(f"{where}: {err}") from None
    return net
