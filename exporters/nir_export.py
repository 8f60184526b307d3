"""IntNet -> NIR graph (`.nir`, the `nir` package's HDF5) and back, losslessly.

Why: NIR is the interchange format snnTorch, Norse, sinabs, Rockpool, Lava-DL, SpiNNaker2 … read. It has no
reset by subtraction and no initial state, so the graph says what a stock reader can run and the metadata
says what qcfs means; qcfs's own importer (nir_import) reads both and rebuilds the identical IntNet.

Graph (node names are layer names, "/" written as "|"):
  input                      Input, shape [C, H, W]
  <layer>.delay<j>           Delay (only for a synapse with delay > 0), delay per source neuron
  <layer>.flatten<j>         Flatten (C, H, W -> C·H·W, C-order; before an Affine whose source is C, H, W)
  <layer>.syn<j>             Conv2d (weight [C_out, C_in/g, kh, kw], torch cross-correlation, symmetric
                             padding) or Affine (weight [out, in]); the layer's bias on syn0, zeros on the
                             others. Values are integers (float32 when exact there, else float64).
  <layer>                    IF (r = 1, v_threshold = θ, v_reset = 0) for IF layers; I (r = 1) for the readout.
                             A residual layer has two (or more) edges into it: NIR sums its inputs.
  output                     Output
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


def to_nir_graph(net: IntNet):  # type: ignore[no-untyped-def]
    """The NIRGraph of `net` (see module docstring)."""
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
        if layer.kind == "if":
            v0 = layer.v_init_full().reshape(-1) if layer.per_neuron_v_init else layer.v_init_per_channel()
            meta = {"qcfs_reset": "subtract", "qcfs_spike": "v >= theta", "qcfs_dt": 1,
                    "qcfs_v_init": np.asarray(v0, np.float64)}  # per channel, or per neuron (C, H, W flattened)
            th = np.full(tuple(shape), float(layer.threshold))
            nodes[name] = nir.IF(r=np.ones(tuple(shape)), v_threshold=th, v_reset=np.zeros(tuple(shape)), metadata=meta)
        else:
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
            if syn.kind == "dense" and len(src_shape) == 3:
                fn = f"{name}.flatten{j}"
                nodes[fn] = nir.Flatten(input_type={"input": np.asarray(src_shape)}, start_dim=0, end_dim=-1)
                edges.append((prev, fn))
                prev = fn
            sn = f"{name}.syn{j}"
            nodes[sn] = _synapse_node(nir, net, layer, j, syn, src_shape)
            edges += [(prev, sn), (sn, name)]
        shapes[layer.name] = tuple(layer.shape)
    nodes["output"] = nir.Output(output_type={"output": np.asarray(net.readout.shape)})
    edges.append((node_name(net.readout.name), "output"))
    meta = {"qcfs_format": FORMAT_NAME, "qcfs_version": FORMAT_VERSION, "qcfs_header": json.dumps(net.header()),
            "qcfs_semantics": SEMANTICS}
    # nir 1.0.8 infers a Conv2d's input channels as weight.shape[1], ignoring groups: a grouped conv fails its
    # type check, so such graphs are built (and must be read) with type_check=False
    grouped = any(s.kind == "conv" and s.groups > 1 for layer in net.layers for s in layer.synapses)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=not grouped)


def export_nir(net: IntNet, out: str | Path) -> Path:
    """Write `out` (.nir) with nir.write."""
    nir = _nir()
    out = Path(out)
    nir.write(out, to_nir_graph(net))
    return out
