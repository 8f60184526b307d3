"""IntNet -> `.snn.onnx`: the integer SNN itself as an ONNX graph, so any ONNX runtime reproduces it bit for bit.

Why ONNX: onnxruntime has integer kernels (ConvInteger/MatMulInteger: u8 spikes × s8 weights, int32 sums,
VNNI on x86) that are exact, and the file is a product on its own. Graph (layer-synchronous timing):
  inputs   images  float64 [N, C, H, W] in [0, 1] (float32 images convert exactly)
           T       int64 scalar, the number of steps (one file serves every T)
  outputs  logits          int64 [T, N, classes]: accumulated readout current after 1, 2, …, T steps
           spikes:<layer>  int64 [T, N]: the layer's spike count of each sample after 1, 2, …, T steps
                           (graded spikes, max_spikes_per_step m > 1: spike messages, s > 0)
           values:<layer>  int64 [T, N], graded networks only: the summed payloads s ∈ 1..m
Graded spikes: the Scan body computes s = clip(floor(v/θ), 0, m) (integer Div truncates, which differs from
floor only below 0, where the clip gives 0 either way) and v − θ·s; spikes travel as uint8 ≤ m.
Encoding is qcfs.semantics.encode_input in float64 (same IEEE ops: sub, div, mul, round-half-even, clip).
Layer-major, as the NumPy runtime: a layer's current over all T steps is one ConvInteger/MatMulInteger over
the T·N spike maps of its sources ([T, N, …] reshaped to [T·N, …]); the IF recurrence is a Scan over t
whose body is qcfs.semantics.fire (add, saturate, v ≥ θ, subtract θ). Input-fed currents are computed once
and reach the Scan body from the outer scope.

Exactness (checked per layer here, ValueError otherwise): int8 weights and 0/1 spikes go to the integer
kernels when every partial sum is < 2^31 (int32 accumulation); weights beyond int8 use float32 Conv/MatMul
where the layer's float32_exact flag and numpy_synapse.exact_bound (< 2^24) prove it exact. The membrane is
int32 when |v| + |current| < 2^31 can be proved, else int64. The readout accumulates in int64.
The source IntNet travels in the metadata (base64 .npz + sha256), so qcfs-run can report on the same network;
loading (qcfs.exporters.snn_onnx_verify) rebuilds the graph from it and refuses any difference.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qcfs.errors import ModelFileError
from qcfs.intnet import IntNet, Layer, SumPool, Synapse, load_intnet
from qcfs.runtime.numpy_synapse import FLOAT32_EXACT_LIMIT, _pool_factor, channel_last, exact_bound
from qcfs.semantics import membrane_limits

FORMAT_NAME = "qcfs-snn-onnx"
FORMAT_VERSION = 1
OPSET = 17
INT32_LIMIT = 2**31
KERNELS = ("auto", "int8", "float32")
AUTO_INT8_CHANNELS = 48  # see choose_kernels
META_INTNET, META_DIGEST = "qcfs_intnet_npz_b64", "qcfs_intnet_sha256"


@dataclass
class _Graph:
    """Nodes and initializers under construction, with unique names."""

    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    n: int = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{hint}_{self.n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs) -> str:  # type: ignore[no-untyped-def]
        from onnx import helper

        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _int8(w: np.ndarray) -> bool:
    return bool(np.all((w >= -128) & (w <= 127)))


def _taps(g: _Graph, x: str, kh: int, kw: int, stride: tuple[int, int], out_hw: tuple[int, int]) -> list[str]:
    """The kh·kw strided views [M, Ho, Wo, C] of a padded NHWC source that im2col concatenates."""
    (sh, sw), (ho, wo) = stride, out_hw
    views = []
    for ky in range(kh):
        for kx in range(kw):
            starts = g.const("st", np.array([ky, kx], np.int64))
            ends = g.const("en", np.array([ky + sh * (ho - 1) + 1, kx + sw * (wo - 1) + 1], np.int64))
            views.append(g.op("Slice", [x, starts, ends, g.const("ax", np.array([1, 2], np.int64)),
                                        g.const("sp", np.array([sh, sw], np.int64))], "tap"))
    return views


def _conv_matrix(w: np.ndarray, groups: int) -> np.ndarray:
    """[C_out, C_in/g, kh, kw] -> [(kh, kw, C_in), C_out] matching NHWC im2col rows; groups block-diagonal
    (zeros between groups: exact, and simpler than one GEMM per group)."""
    o, cg, kh, kw = w.shape
    og = o // groups
    full = np.zeros((o, cg * groups, kh, kw), dtype=w.dtype)
    for gi in range(groups):
        full[gi * og : (gi + 1) * og, gi * cg : (gi + 1) * cg] = w[gi * og : (gi + 1) * og]
    return full.transpose(2, 3, 1, 0).reshape(kh * kw * cg * groups, o)


def _synapse(g: _Graph, syn: Synapse, src: str, src_shape: tuple[int, ...], x_max: float, layer: Layer,
             kernels: str, force_float: bool = False) -> tuple[str, float]:
    """Current of one synapse over an NHWC [M, …] source as int32 [M, …out NHWC]; returns (name, bound).

    Convolutions are im2col (strided Slices, Concat on channels) + one MatMulInteger: onnxruntime's
    ConvInteger loops over images and ran ~10× slower than its float Conv here, MatMulInteger ~4× faster."""
    w = np.asarray(syn.weight)
    bound = exact_bound(w, x_max)
    f32_ok = layer.float32_exact and bound < FLOAT32_EXACT_LIMIT
    use_int = not force_float and _int8(w) and bound < INT32_LIMIT and (kernels == "int8" or not f32_ok)
    if not use_int and not f32_ok:
        raise ValueError(f"layer {layer.name}: synapse from {syn.source} is exact neither in the int8 kernels "
                         f"(weights int8: {_int8(w)}, bound {bound:.3g}) nor in float32")

    def gemm(x: str, mat: np.ndarray) -> str:
        if use_int:
            return g.op("MatMulInteger", [x, g.const(f"{layer.name}.w", mat.astype(np.int8))], "mmi")
        xf = g.op("Cast", [x], to=1)
        return g.op("Cast", [g.op("MatMul", [xf, g.const(f"{layer.name}.w", mat.astype(np.float32))])], to=6)

    if syn.kind == "dense":
        if len(src_shape) == 3:  # weight columns are C,H,W; the source is H,W,C
            c, h, wd = src_shape
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        x = g.op("Reshape", [src, g.const("flat", np.array([-1, int(np.prod(src_shape))], np.int64))])
        return gemm(x, w.T), bound
    c, h, wd = src_shape
    x, stride, padding = src, tuple(syn.stride), tuple(syn.padding)
    small = _pool_factor(w, syn, h, wd)
    if small is not None:  # s×s sum-pool (uint8 sums ≤ s²), then a stride-1 conv on the pooled grid
        s = syn.stride[0]
        views = _taps(g, x, s, s, (s, s), (h // s, wd // s))
        x = views[0]
        for v in views[1:]:
            x = g.op("Add", [x, v], "pooled")
        w, h, wd, stride, padding = small, h // s, wd // s, (1, 1), tuple(p // s for p in syn.padding)
    o, _, kh, kw = w.shape
    top, left, bottom, right = padding
    ho, wo = (h + top + bottom - kh) // stride[0] + 1, (wd + left + right - kw) // stride[1] + 1
    if any(padding):
        x = g.op("Pad", [x, g.const("pads", np.array([0, top, left, 0, 0, bottom, right, 0], np.int64))], "pad")
    views = _taps(g, x, kh, kw, stride, (ho, wo)) if (kh, kw, stride) != (1, 1, (1, 1)) else [x]
    cols = views[0] if len(views) == 1 else g.op("Concat", views, "im2col", axis=3)
    flat = g.op("Reshape", [cols, g.const("rows", np.array([-1, kh * kw * c], np.int64))], "rows")
    out = gemm(flat, _conv_matrix(w, int(syn.groups)))
    return g.op("Reshape", [out, g.const("nhwc", np.array([-1, ho, wo, o], np.int64))], "conv"), bound


def _window_sums(g: _Graph, src: str, shape: tuple[int, ...], pool: SumPool, f32: bool, layer: Layer
                 ) -> tuple[str, tuple[int, ...]]:
    """The sum-pool stage of a synapse (IntNet Synapse.pool) over spikes: float32 NCHW as a depthwise Conv with
    weights 1 (sums ≤ kh·kw are exact), uint8 NHWC as the sum of the kh·kw strided taps (≤ 255 checked)."""
    out = pool.out_shape(shape)
    (kh, kw), (sh, sw), (t, l, b, r) = pool.kernel, pool.stride, pool.padding
    if f32:
        ones = np.ones((shape[0], 1, kh, kw), np.float32)
        return g.op("Conv", [src, g.const("ones", ones)], "sumpool", strides=[sh, sw], pads=[t, l, b, r],
                    group=int(shape[0])), out
    if pool.size > 255:
        raise ValueError(f"layer {layer.name}: window sums up to {pool.size} do not fit the uint8 spikes of the "
                         f"int8 kernels; export with --snn-kernels float32")
    x = src
    if t or l or b or r:
        x = g.op("Pad", [x, g.const("pads", np.array([0, t, l, 0, 0, b, r, 0], np.int64))], "pad")
    views = _taps(g, x, kh, kw, (sh, sw), out[1:])
    x = views[0]
    for v in views[1:]:
        x = g.op("Add", [x, v], "sumpool")
    return x, out


def _if_body(layer: Layer, shape: tuple[int, ...], mem: int, spike: int, has_spike: bool, const: str | None,
             lim: tuple[int, int], max_spikes: int = 1):  # type: ignore[no-untyped-def]
    """Scan body (v, I_t) -> (v', spikes_t): qcfs.semantics.fire after integrating I_t (+ const, from the
    outer scope). `mem` is the membrane/current dtype, `spike` the dtype the next synapses read."""
    from onnx import TensorProto, helper

    b = _Graph()
    np_t = {TensorProto.INT32: np.int32, TensorProto.INT64: np.int64, TensorProto.FLOAT: np.float32}[mem]
    dims = ["n", *shape]
    v = "v_in"
    if has_spike:
        v = b.op("Add", [v, "cur_t"], "v")
    if const is not None:
        v = b.op("Add", [v, const], "v")
    v = b.op("Clip", [v, b.const("lo", np.array(lim[0], np_t)), b.const("hi", np.array(lim[1], np_t))], "vsat")
    th = b.const("theta", np.array(int(layer.threshold), np_t))
    if max_spikes > 1:  # graded: s = clip(floor(v/θ), 0, m) in the membrane dtype
        q = b.op("Div", [v, th], "quot")
        if mem == TensorProto.FLOAT:
            q = b.op("Floor", [q], "floor")
        s = b.op("Clip", [q, b.const("zero", np.array(0, np_t)), b.const("m", np.array(max_spikes, np_t))], "graded")
    else:
        s = b.op("GreaterOrEqual", [v, th], "fired")
    # v - θ·s with a Cast and a Mul: onnxruntime's Where was several times slower here
    b.nodes.append(helper.make_node("Cast", [s], ["s_out"], to=spike))
    s_mem = "s_out" if spike == mem else b.op("Cast", [s], "s_mem", to=mem)
    b.nodes.append(helper.make_node("Sub", [v, b.op("Mul", [s_mem, th], "drop")], ["v_out"]))
    inputs = [helper.make_tensor_value_info("v_in", mem, dims),
              helper.make_tensor_value_info("cur_t", mem if has_spike else TensorProto.INT64,
                                            dims if has_spike else [])]
    outputs = [helper.make_tensor_value_info("v_out", mem, dims),
               helper.make_tensor_value_info("s_out", spike, dims)]
    return helper.make_graph(b.nodes, f"{layer.name}_if", inputs, outputs, b.inits)


def _f32_synapse(g: _Graph, syn: Synapse, src: str, src_shape: tuple[int, ...], x_max: float, layer: Layer
                 ) -> tuple[str, float]:
    """float32 NCHW current of one synapse (onnxruntime's Conv/MatMul); exact when the bound is < 2^24."""
    w = np.asarray(syn.weight)
    bound = exact_bound(w, x_max)
    if not (layer.float32_exact and bound < FLOAT32_EXACT_LIMIT):
        raise ValueError(f"layer {layer.name}: synapse from {syn.source} is not provably exact in float32 "
                         f"(flag {layer.float32_exact}, bound {bound:.3g})")
    if syn.kind == "dense":
        x = g.op("Reshape", [src, g.const("flat", np.array([-1, int(np.prod(src_shape))], np.int64))])
        return g.op("MatMul", [x, g.const(f"{layer.name}.w", w.T.astype(np.float32))], "mm"), bound
    c, h, wd = src_shape
    x, stride, padding = src, list(syn.stride), list(syn.padding)
    small = _pool_factor(w, syn, h, wd)
    if small is not None:  # s×s sum-pool as AveragePool·s² (quarters are exact), then the small conv
        s = syn.stride[0]
        avg = g.op("AveragePool", [x], "avg", kernel_shape=[s, s], strides=[s, s])
        x = g.op("Mul", [avg, g.const("s2", np.array(float(s * s), np.float32))], "pooled")
        w, stride, padding = small, [1, 1], [p // s for p in syn.padding]
    pads = [padding[0], padding[1], padding[2], padding[3]]
    out = g.op("Conv", [x, g.const(f"{layer.name}.w", w.astype(np.float32))], "conv", strides=stride,
               pads=pads, group=int(syn.groups))
    return out, bound


def choose_kernels(net: IntNet) -> str:
    """"auto": int8 when the MAC-weighted mean input channel count of the spike-fed convolutions is ≥ 48,
    else float32 if every layer is provably exact in it. Why: im2col copies runs of C bytes, which are short
    for small C. Measured with benchmarks/bench_speed.py: onnxruntime's float Conv was faster on resnet20 (mean
    C 35) and MatMulInteger on VGG-16 (251) and cifarnet (180) in every run; on the Fashion-MNIST cnn (53) int8
    was as fast or faster in 5 of 6 runs on the AVX-512 EPYC (benchmarks/results/auto_kernels.json: 1.08× vs
    1.18× the ANN, 2026-12-06) and the fastest exact kernel on the issue-24 AVX2 EPYC, so the bound moved from 64
    to 48 (both CPU kinds agree on every shipped net)."""
    macs = chans = 0.0
    for layer in net.layers:
        for syn in layer.synapses:
            if syn.kind == "conv" and syn.source != "input":
                w = np.asarray(syn.weight)
                m = float(np.prod(layer.shape)) * float(np.prod(w.shape[1:]))
                macs += m
                chans += m * w.shape[1] * syn.groups
    if macs and chans / macs >= AUTO_INT8_CHANNELS:
        return "int8"
    try:
        build_snn_onnx(net, "float32")
    except ValueError:
        return "int8"
    return "float32"


def build_snn_onnx(net: IntNet, kernels: str = "auto"):  # -> onnx.ModelProto
    """The ONNX graph of an integer-mode IntNet (see module docstring); ValueError when not exact.

    kernels="auto": see choose_kernels. kernels="int8": NHWC, im2col + MatMulInteger (u8 spikes × s8 weights, int32), int32/int64 membranes.
    kernels="float32": NCHW, onnxruntime's float Conv/MatMul and float32 membranes, only where every value
    (partial sums, currents, membranes) is an integer below 2^24 in magnitude, which float32 holds exactly."""
    import onnx
    from onnx import TensorProto, helper

    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    if net.mode != "int" or net.input.scale is None:
        raise ValueError("the snn-onnx export needs an integer-mode IntNet (export with --mode int)")
    if kernels == "auto":
        kernels = choose_kernels(net)
    f32 = kernels == "float32"
    m = int(net.max_spikes_per_step)
    if m > 255:
        raise ValueError(f"max_spikes_per_step {m} does not fit the graph's uint8 spike maps (≤ 255)")
    g = _Graph()
    c, h, w = net.input.shape
    lo_in, hi_in = membrane_limits(net.input.bits)
    mean = np.broadcast_to(np.asarray(net.input.mean, np.float64), (c,)).reshape(1, c, 1, 1)
    std = np.broadcast_to(np.asarray(net.input.std, np.float64), (c,)).reshape(1, c, 1, 1)
    x = g.op("Div", [g.op("Sub", ["images", g.const("mean", mean)], "centred"), g.const("std", std)], "x")
    q = g.op("Round", [g.op("Mul", [x, g.const("scale", np.array(float(net.input.scale)))])], "q")
    q = g.op("Clip", [q, g.const("lo", np.array(float(lo_in))), g.const("hi", np.array(float(hi_in)))], "qc")
    x_int8 = net.input.bits <= 8 and not f32
    xq = g.op("Cast", [q], "x_q", to=TensorProto.INT8 if x_int8 else TensorProto.FLOAT)
    if not f32:
        xq = g.op("Transpose", [xq], "x_nhwc", perm=[0, 2, 3, 1])  # channel-last from here on
    layout = (lambda shp: tuple(shp)) if f32 else channel_last
    T1 = g.op("Reshape", ["T", g.const("one", np.array([1], np.int64))], "T1")
    N1 = g.op("Slice", [g.op("Shape", ["images"]), g.const("s0", np.array([0], np.int64)),
                        g.const("s1", np.array([1], np.int64))], "N1")
    steps = g.op("Range", [g.const("zero", np.array(0, np.int64)), "T", g.const("inc", np.array(1, np.int64))])
    lim = membrane_limits(net.profile.membrane_bits)
    shapes: dict[str, tuple[int, ...]] = {"input": (c, h, w)}
    flat: dict[str, str] = {}  # IF layer -> its spikes as [T·N, …] (uint8 NHWC or float32 NCHW)
    outputs = []
    for layer in net.layers:
        shape = tuple(int(d) for d in layer.shape)
        lshape = layout(shape)
        bias = np.asarray(layer.bias)
        if not np.array_equal(bias, np.rint(bias)):
            raise ValueError(f"layer {layer.name}: non-integer bias")
        spike_cur, const_cur, bound, const_bound = None, None, 0.0, 0.0
        for syn in layer.synapses:
            src, x_max = (xq, float(-lo_in)) if syn.source == "input" else (flat[syn.source], float(m))
            src_shape = shapes[syn.source]
            if syn.pool is not None:  # the separate sum-pool stage: the weights read window sums
                src, src_shape = _window_sums(g, src, src_shape, syn.pool, f32, layer)
                x_max = float(syn.pool.size) * float(m)
            if f32:
                cur, b_ = _f32_synapse(g, syn, src, src_shape, x_max, layer)
            else:
                cur, b_ = _synapse(g, syn, src, src_shape, x_max, layer, kernels,
                                   force_float=syn.source == "input" and not x_int8)
            if syn.source == "input":
                const_cur = cur if const_cur is None else g.op("Add", [const_cur, cur])
                const_bound += b_
            else:
                spike_cur = cur if spike_cur is None else g.op("Add", [spike_cur, cur])
                bound += b_
        bias_max = float(np.abs(bias).max(initial=0))
        total = bound + const_bound + bias_max
        readout = layer.kind == "readout"
        v_max = total + 2 ** (net.profile.membrane_bits - 1)
        if f32:
            if total >= FLOAT32_EXACT_LIMIT or (not readout and v_max >= FLOAT32_EXACT_LIMIT):
                raise ValueError(f"layer {layer.name}: currents/membranes up to {v_max:.3g} are not exact "
                                 f"in float32; use the int8 kernels")
            mem, np_mem = TensorProto.FLOAT, np.float32
        else:
            if total >= INT32_LIMIT:
                raise ValueError(f"layer {layer.name}: currents up to {total:.3g} do not fit int32 sums")
            mem = TensorProto.INT32 if readout or v_max < INT32_LIMIT else TensorProto.INT64
            np_mem = np.int32 if mem == TensorProto.INT32 else np.int64
        bias_v = bias.reshape(-1, 1, 1) if f32 and len(shape) == 3 else bias.reshape(-1)
        bias_c = g.const(f"{layer.name}.b", bias_v.astype(np.float32 if f32 else np.int32))
        if const_cur is not None:
            const_cur = g.op("Add", [const_cur, bias_c], "const")
        elif spike_cur is not None:
            spike_cur = g.op("Add", [spike_cur, bias_c], "cur")
        else:
            raise ValueError(f"layer {layer.name}: no synapses")
        if spike_cur is not None:  # [T·N, …] -> [T, N, …]
            tshape = g.op("Concat", [T1, g.const("rest", np.array([-1, *lshape], np.int64))], axis=0)
            spike_cur = g.op("Reshape", [spike_cur, tshape], "cur_tn")
        if readout:
            acc = g.op("Cast", [spike_cur], to=TensorProto.INT64) if spike_cur is not None else None
            if const_cur is not None:
                c64 = g.op("Cast", [const_cur], to=TensorProto.INT64)
                per_step = g.op("Unsqueeze", [c64, g.const("ax0", np.array([0], np.int64))])
                if acc is None:  # constant every step: expand over T
                    acc = g.op("Expand", [per_step, g.op("Concat", [T1, g.op("Shape", [c64])], axis=0)])
                else:
                    acc = g.op("Add", [acc, per_step])
            if f32 and len(shape) == 3:  # logits in channel-last order, as the NumPy runtime flattens them
                acc = g.op("Transpose", [acc], perm=[0, 1, 3, 4, 2])
            acc = g.op("Reshape", [acc, g.op("Concat", [T1, N1, g.const("k", np.array([-1], np.int64))], axis=0)])
            g.nodes.append(helper.make_node("CumSum", [acc, g.const("axis", np.array(0, np.int64))], ["logits"]))
            outputs.append(helper.make_tensor_value_info("logits", TensorProto.INT64, ["T", "N", net.num_classes]))
            continue
        if mem == TensorProto.INT64:
            spike_cur = g.op("Cast", [spike_cur], to=mem) if spike_cur is not None else None
            const_cur = g.op("Cast", [const_cur], to=mem) if const_cur is not None else None
        if layer.per_neuron_v_init:  # one per neuron, in the graph's layout (NCHW for float32, else NHWC)
            v0 = layer.v_init_full()
            v0 = v0.transpose(1, 2, 0) if not f32 and len(shape) == 3 else v0
        else:
            v0 = layer.v_init_per_channel()
            v0 = v0.reshape(-1, 1, 1) if f32 and len(shape) == 3 else v0  # per channel, broadcast over H, W
        if not np.array_equal(v0, np.rint(v0)) or not float(layer.threshold).is_integer():
            raise ValueError(f"layer {layer.name}: non-integer v_init or threshold")
        v0_full = g.op("Expand", [g.const(f"{layer.name}.v0", v0.astype(np_mem)),
                                  g.op("Concat", [N1, g.const("shp", np.array(lshape, np.int64))], axis=0)], "v0")
        spike_t = TensorProto.FLOAT if f32 else TensorProto.UINT8
        body = _if_body(layer, lshape, mem, spike_t, spike_cur is not None, const_cur, lim, m)
        spikes = g.name(f"{layer.name}.spikes")
        g.nodes.append(helper.make_node("Scan", [v0_full, spike_cur if spike_cur is not None else steps],
                                        [g.name("v_final"), spikes], body=body, num_scan_inputs=1))
        n = int(np.prod(shape))
        flat[layer.name] = g.op("Reshape", [spikes, g.const("flat", np.array([-1, *lshape], np.int64))], "s_flat")

        def per_step_sum(spk: str) -> str:
            if f32:  # per sample and step: float32 sums of integers ≤ m below 2^24 are exact
                axes = g.const("axes", np.arange(2, 2 + len(shape), dtype=np.int64))
                return g.op("Cast", [g.op("ReduceSum", [spk, axes], keepdims=0)], to=TensorProto.INT64)
            # counts as a u8 GEMM with a ones column: much cheaper here than Cast + ReduceSum
            rows = g.op("Reshape", [spk, g.const("rows", np.array([-1, n], np.int64))])
            cnt = g.op("MatMulInteger", [rows, g.const("ones", np.ones((n, 1), np.uint8))], "count")
            return g.op("Reshape", [g.op("Cast", [cnt], to=TensorProto.INT64), g.op("Concat", [T1, N1], axis=0)],
                        "per_step")

        sums = {"spikes": spikes}
        if m > 1:  # messages are the nonzero entries; the payload sum is what the spike maps add up to
            zero = g.const("zero", np.array(0, np.float32 if f32 else np.uint8))
            sums = {"spikes": g.op("Cast", [g.op("Greater", [spikes, zero])], "events", to=spike_t),
                    "values": spikes}
        for kind, spk in sums.items():
            out = f"{kind}:{layer.name}"
            g.nodes.append(helper.make_node("CumSum", [per_step_sum(spk), g.const("axis", np.array(0, np.int64))],
                                            [out]))
            outputs.append(helper.make_tensor_value_info(out, TensorProto.INT64, ["T", "N"]))
        shapes[layer.name] = shape
    inputs = [helper.make_tensor_value_info("images", TensorProto.DOUBLE, ["N", c, h, w]),
              helper.make_tensor_value_info("T", TensorProto.INT64, [])]
    graph = helper.make_graph(g.nodes, "qcfs_snn", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qcfs")
    model.ir_version = 8
    from qcfs.exporters.lava_export import intnet_digest

    helper.set_model_props(model, {"qcfs_format": FORMAT_NAME, "qcfs_version": str(FORMAT_VERSION),
                                   "qcfs_kernels": kernels,
                                   META_INTNET: base64.b64encode(net.to_bytes()).decode("ascii"),
                                   META_DIGEST: intnet_digest(net)})
    onnx.checker.check_model(model)
    return model


def export_snn_onnx(net: IntNet, out: str | Path, kernels: str = "auto") -> Path:
    import onnx

    from qcfs.errors import QCFSError

    from qcfs.intnet import as_embedded

    try:
        model = build_snn_onnx(as_embedded(net), kernels)  # the graph of exactly the network it embeds
    except ValueError as err:
        raise QCFSError(f"cannot export this network as snn-onnx: {err}") from None
    out = Path(out)
    onnx.save_model(model, str(out))
    return out


def is_snn_onnx(model) -> bool:  # type: ignore[no-untyped-def]
    return any(p.key == "qcfs_format" and p.value == FORMAT_NAME for p in model.metadata_props)


def embedded_intnet(model, path: str | Path = "model") -> IntNet:  # type: ignore[no-untyped-def]
    """The IntNet an .snn.onnx model was exported from, checked against its digest."""
    from qcfs.exporters.lava_export import intnet_digest

    props = {p.key: p.value for p in model.metadata_props}
    if props.get("qcfs_format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a qcfs snn-onnx model (no qcfs_format={FORMAT_NAME} metadata)")
    if props.get("qcfs_version") != str(FORMAT_VERSION):
        raise ModelFileError(f"{path}: snn-onnx version {props.get('qcfs_version')!r}; this qcfs reads "
                             f"{FORMAT_VERSION}")
    try:
        raw = base64.b64decode(props[META_INTNET], validate=True)
    except (KeyError, ValueError) as err:
        raise ModelFileError(f"{path}: snn-onnx without a readable source network ({err!r})") from None
    from qcfs.safe_io import check_zip_members

    label = f"{path}: metadata {META_INTNET}"
    check_zip_members(io.BytesIO(raw), label)
    net = load_intnet(io.BytesIO(raw), name=label)
    if intnet_digest(net) != props.get(META_DIGEST):
        raise ModelFileError(f"{path}: embedded network does not match its digest")
    return net
