"""IntNet -> NIR graph (`.nir`, the `nir` package's HDF5) and back, losslessly.

Why: NIR is the interchange format snnTorch, Norse, sinabs, Rockpool, Lava-DL, SpiNNaker2 … read. It has no
reset by subtraction and no initial state, so the graph says what a stock reader can run and the metadata
says what qcfs means; qcfs's own importer (nir_import) reads both and rebuilds the identical IntNet.

Graph (node names are layer names, "/" written as "|"):
  input                      Input, shape [C, H, W]
  <layer>.delay<j>           Delay (only for a synapse with delay > 0), delay per source neuron
  <layer>.pool<j>            SumPool2d (only for a synapse with a sum-pool stage, IntNet Synapse.pool): the
                             window sums of the source's spikes that the synapse's weights read
  <layer>.flatten<j>         Flatten (C, H, W -> C·H·W, C-order; before an Affine whose source is C, H, W)
  <layer>.syn<j>             Conv2d (weight [C_out, C_in/g, kh, kw], torch cross-correlation, symmetric
                             padding) or Affine (weight [out, in]); the layer's bias on syn0, zeros on the
                             others. Values are integers (float32 when exact there, else float64).
  <layer>                    IF (r = 1, v_threshold = θ, v_reset = 0) for IF layers; I (r = 1) for the readout.
                             A residual layer has two (or more) edges into it: NIR sums its inputs.
  output                     Output
Profile "readers" (`qcfs-export --backend nir --nir-profile readers`): no I node; the readout's synapse nodes
feed the Output node, so the graph outputs the readout current every step and the logits after T steps are the
sum of the first T outputs (what the I node would hold), for readers without an I node (sinabs 3.1 runs both
profiles alike: it maps the I node to nothing and outputs the current into it).
Profile "snntorch": the readers profile with every IF written as the LIF that snnTorch 1.0 runs as an IF with
reset to zero (SNNTORCH_TAU below; its own IF import cannot run a multi-layer graph). qcfs's importer reads all
three profiles to the identical IntNet (README "Formats").
Metadata: the graph carries qcfs_format "qcfs-nir", qcfs_version, qcfs_header (the IntNet header JSON:
everything but the arrays) and qcfs_semantics; every IF node qcfs_reset "subtract", qcfs_spike "v >= theta",
qcfs_v_init (per channel) and qcfs_dt 1; the readout qcfs_readout. Grouped convs: nir 1.0.8's type
inference ignores `groups`, so such files load with nir.read(path, type_check=False) (qcfs's reader does). Stock NIR semantics (spike on v > θ, reset
to v_reset, v(0) = 0) are modelled by qcfs.runtime.nir_stock and measured in BENCHMARKS.md "Formats".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import QCFSError
from qcfs.intnet import IntNet, Layer, Synapse

FORMAT_NAME = "qcfs-nir"
FORMAT_VERSION = 1
SUFFIX = ".nir"
PROFILES = ("qcfs", "readers", "snntorch")
# profile snntorch: snnTorch 1.0.0 imports IF as Leaky(init_hidden=False), whose (spikes, membrane) tuple nirtorch
# 2.6 hands to the next module (TypeError), so no graph with an IF before another layer runs there. Its LIF
# import works: beta = 1 - dt/tau with its fixed dt = 1e-4, w_scale = r·dt/tau. tau = 1e12 makes beta exactly 1.0
# in float64 (dt/tau < 2^-53) and r = tau/dt makes w_scale 1: an IF with reset to zero, as snnTorch runs it.
SNNTORCH_DT = 1e-4
SNNTORCH_TAU = 1e12
SEMANTICS = ("qcfs IF, dt = 1: v(0) = qcfs_v_init (per channel) at every sample; v += I (I = sum of the "
             "incoming synapse nodes, bias included); spike when v >= v_threshold; then v -= v_threshold "
             "(reset by subtraction, not to v_reset); readout I node accumulates, prediction = argmax; input = "
             "clip(rint((x - mean)/std * scale), -128, 127) held constant (qcfs_header.input)")


class NirFormatError(QCFSError):
    """The network cannot be written as NIR (names the layer and why)."""


def _nir():  # type: ignore[no-untyped-def]
    try:
        import nir
    except ImportError:
        raise QCFSError("the nir package is not installed: run make setup") from None
    return nir


def node_name(layer_name: str) -> str:
    return layer_name.replace("/", "|")


def _values(a: Any) -> np.ndarray:
    """Integers as float32 when that is exact (what stock readers expect), else float64."""
    a = np.asarray(a, dtype=np.float64)
    f32 = a.astype(np.float32)
    return f32 if np.array_equal(f32.astype(np.float64), a) else a


def _synapse_node(nir, net: IntNet, layer: Layer, j: int, syn: Synapse, src_shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    bias = np.asarray(layer.bias, np.float64) if j == 0 else np.zeros(layer.channels)
    if syn.kind == "conv":
        pt, pl, pb, pr = syn.padding
        if pt != pb or pl != pr:
            raise NirFormatError(f"layer {layer.name}: asymmetric padding {tuple(syn.padding)} (top, left, bottom, "
                                 f"right); NIR Conv2d pads symmetrically")
        if len(src_shape) != 3:
            raise NirFormatError(f"layer {layer.name}: conv synapse from a {len(src_shape)}-D source")
        return nir.Conv2d(input_shape=(int(src_shape[1]), int(src_shape[2])), weight=_values(syn.weight),
                          stride=tuple(int(s) for s in syn.stride), padding=(int(pt), int(pl)), dilation=(1, 1),
                          groups=int(syn.groups), bias=_values(bias))
    w = np.asarray(syn.weight)
    return nir.Affine(weight=_values(w.reshape(w.shape[0], -1)), bias=_values(bias),
                      metadata={"qcfs_weight_shape": np.asarray(w.shape, np.int64)})


def _sum_pool_node(nir, layer: Layer, syn: Synapse):  # type: ignore[no-untyped-def]
    pt, pl, pb, pr = syn.pool.padding
    if pt != pb or pl != pr:
        raise NirFormatError(f"layer {layer.name}: sum-pool padding {tuple(syn.pool.padding)} (top, left, bottom, "
                             f"right) is asymmetric; NIR SumPool2d pads symmetrically")
    return nir.SumPool2d(kernel_size=np.asarray(syn.pool.kernel), stride=np.asarray(syn.pool.stride),
                         padding=np.asarray((pt, pl)))


def to_nir_graph(net: IntNet, profile: str = "qcfs"):  # type: ignore[no-untyped-def]
    """The NIRGraph of `net` (see module docstring); profile "readers" ends in the readout's synapses."""
    if profile not in PROFILES:
        raise QCFSError(f"NIR profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    nir = _nir()
    if net.max_spikes_per_step > 1:
        raise NirFormatError(f"graded spikes (max_spikes_per_step {net.max_spikes_per_step}): NIR's IF node has no "
                             f"multi-spike output; export --backend lava or keep the IntNet")
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(net.input.shape)})}
    edges: list[tuple[str, str]] = []
    shapes = {"input": tuple(net.input.shape)}
    for layer in net.layers:
        name = node_name(layer.name)
        shape = np.asarray(layer.shape)
        # profile readers: the readout's synapses feed the Output node (the graph outputs the readout current)
        target = "output" if layer.kind == "readout" and profile != "qcfs" else name
        if layer.kind == "if":
            v0 = layer.v_init_full().reshape(-1) if layer.per_neuron_v_init else layer.v_init_per_channel()
            meta = {"qcfs_reset": "subtract", "qcfs_spike": "v >= theta", "qcfs_dt": 1,
                    "qcfs_v_init": np.asarray(v0, np.float64)}  # per channel, or per neuron (C, H, W flattened)
            th = np.full(tuple(shape), float(layer.threshold))
            if profile == "snntorch":
                meta["qcfs_snntorch"] = "LIF read by snnTorch (dt 1e-4) as an IF with reset to zero"
                nodes[name] = nir.LIF(tau=np.full(tuple(shape), SNNTORCH_TAU),
                                      r=np.full(tuple(shape), SNNTORCH_TAU / SNNTORCH_DT),
                                      v_leak=np.zeros(tuple(shape)), v_threshold=th, metadata=meta)
            else:
                nodes[name] = nir.IF(r=np.ones(tuple(shape)), v_threshold=th, v_reset=np.zeros(tuple(shape)),
                                     metadata=meta)
        elif target == name:
            nodes[name] = nir.I(r=np.ones(tuple(shape)), metadata={"qcfs_readout": "accumulate; argmax"})
        for j, syn in enumerate(layer.synapses):
            if syn.source not in shapes:
                raise NirFormatError(f"layer {layer.name}: source {syn.source!r} is not an earlier layer")
            src_shape = shapes[syn.source]
            prev = node_name(syn.source)
            if syn.delay:
                dn = f"{name}.delay{j}"
                nodes[dn] = nir.Delay(delay=np.full(src_shape, float(syn.delay)))
                edges.append((prev, dn))
                prev = dn
            if syn.pool is not None:  # the separate sum-pool stage: NIR's SumPool2d (symmetric padding)
                pn = f"{name}.pool{j}"
                nodes[pn] = _sum_pool_node(nir, layer, syn)
                edges.append((prev, pn))
                prev = pn
                src_shape = syn.pool.out_shape(src_shape)
            if syn.kind == "dense" and len(src_shape) == 3:
                fn = f"{name}.flatten{j}"
                nodes[fn] = nir.Flatten(input_type={"input": np.asarray(src_shape)}, start_dim=0, end_dim=-1)
                edges.append((prev, fn))
                prev = fn
            sn = f"{name}.syn{j}"
            nodes[sn] = _synapse_node(nir, net, layer, j, syn, src_shape)
            edges += [(prev, sn), (sn, target)]
        shapes[layer.name] = tuple(layer.shape)
    nodes["output"] = nir.Output(output_type={"output": np.asarray(net.readout.shape)})
    meta = {"qcfs_format": FORMAT_NAME, "qcfs_version": FORMAT_VERSION, "qcfs_header": json.dumps(net.header()),
            "qcfs_semantics": SEMANTICS}
    if profile != "qcfs":
        meta["qcfs_nir_profile"], meta["qcfs_readout_node"] = profile, node_name(net.readout.name)
        meta["qcfs_semantics"] = SEMANTICS.replace("readout I node accumulates", "the Output node receives the "
                                                   "readout current every step, logits = its sum over the steps")
    else:
        edges.append((node_name(net.readout.name), "output"))
    # nir 1.0.8 infers a Conv2d's input channels as weight.shape[1], ignoring groups: a grouped conv fails its
    # type check, so such graphs are built (and must be read) with type_check=False
    grouped = any(s.kind == "conv" and s.groups > 1 for layer in net.layers for s in layer.synapses)
    # nir 1.0.8's SumPool2d has no input/output type until NIRGraph.infer_types: not checked either
    pooled = any(s.pool is not None for layer in net.layers for s in layer.synapses)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=not grouped and not pooled)


def export_nir(net: IntNet, out: str | Path, profile: str = "qcfs") -> Path:
    """Write `out` (.nir) with nir.write, derived from the network exactly as the file states it
    (`as_embedded`), so qcfs's importer re-derives the file bit for bit (nir_verify)."""
    from qcfs.intnet import as_embedded

    nir = _nir()
    out = Path(out)
    nir.write(out, to_nir_graph(as_embedded(net), profile))
    return out
