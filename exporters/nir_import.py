"""NIR graph (`.nir`) -> network structure, and -> the identical IntNet when the graph is one of ours.

Two readers over one graph walk (`graph_layers`): every neuron node (IF, or I for an accumulating readout)
collects the synapse chains that end in it — [Delay] → [Flatten] → Conv2d | Affine | Linear — and several
chains into one node are a sum (a residual add). `load_nir_intnet` then takes the IntNet header from the
graph's qcfs metadata and every array (weights, biases, per-channel v_init) from the nodes, and checks that
the nodes say what the header says; qcfs.runtime.nir_stock runs the same walk with stock NIR semantics.
Bad files: one line naming the node (ModelFileError).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import ModelFileError
from qcfs.exporters.nir_export import FORMAT_NAME, FORMAT_VERSION, _nir, node_name
from qcfs.intnet import HardwareProfile, InputSpec, IntNet, Layer, Synapse

NEURONS = ("IF", "I")
SYNAPSES = ("Conv2d", "Affine", "Linear")


@dataclass
class GraphLayer:
    """A neuron node with the synapse chains into it (IntNet-shaped, arrays as float64)."""

    name: str
    node: Any
    kind: str  # "if" | "readout"
    shape: tuple[int, ...]
    synapses: list[Synapse] = field(default_factory=list)
    syn_nodes: list[str] = field(default_factory=list)
    bias: np.ndarray | None = None


def read_nir(path: str | Path):  # type: ignore[no-untyped-def]
    """nir.read with one-line errors."""
    nir = _nir()
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    try:
        return nir.read(path, type_check=False)  # nir's type inference ignores conv groups
    except Exception as err:  # noqa: BLE001 - nir/h5py raise anything on a foreign or broken file
        raise ModelFileError(f"{path}: not a readable NIR graph ({type(err).__name__}: {err})") from None


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO" and v.size == 1:
        return _text(v.reshape(-1)[0])
    return v


def _pair(v: Any) -> tuple[int, int]:
    a = np.broadcast_to(np.asarray(v).reshape(-1), (2,))
    return int(a[0]), int(a[1])


def _synapse(where: str, node: Any, source: str, delay: int) -> tuple[Synapse, np.ndarray]:
    typ = type(node).__name__
    w = np.asarray(node.weight, dtype=np.float64)
    if typ == "Conv2d":
        if np.any(np.asarray(node.dilation) != 1):
            raise ModelFileError(f"{where}: Conv2d dilation {np.asarray(node.dilation).tolist()}; qcfs reads 1 only")
        if isinstance(node.padding, str):
            kh, kw = w.shape[2:]
            if node.padding == "valid":
                ph = pw = 0
            elif kh % 2 and kw % 2:
                ph, pw = kh // 2, kw // 2
            else:
                raise ModelFileError(f"{where}: Conv2d padding 'same' with an even kernel")
        else:
            ph, pw = _pair(node.padding)
        syn = Synapse(source, "conv", w, stride=_pair(node.stride), padding=(ph, pw, ph, pw),
                      groups=int(np.asarray(node.groups).reshape(-1)[0]), delay=delay)
        bias = np.asarray(node.bias, np.float64).reshape(-1) if node.bias is not None else np.zeros(w.shape[0])
    else:
        shape = node.metadata.get("qcfs_weight_shape") if node.metadata else None
        if shape is not None:
            w = w.reshape(tuple(int(s) for s in np.asarray(shape).reshape(-1)))
        syn = Synapse(source, "dense", w, delay=delay)
        bias = np.asarray(node.bias, np.float64).reshape(-1) if typ == "Affine" else np.zeros(w.shape[0])
    return syn, bias


def graph_layers(graph) -> tuple[tuple[int, ...], list[GraphLayer]]:  # type: ignore[no-untyped-def]
    """(input shape, neuron layers in topological order, the readout last)."""
    nodes, edges = graph.nodes, graph.edges
    preds: dict[str, list[str]] = {}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise ModelFileError(f"edge ({a!r}, {b!r}) names a node the graph does not have")
        preds.setdefault(b, []).append(a)
    inputs = [k for k, n in nodes.items() if type(n).__name__ == "Input"]
    outputs = [k for k, n in nodes.items() if type(n).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"graph has {len(inputs)} Input and {len(outputs)} Output nodes; qcfs reads one each")
    in_name, out_name = inputs[0], outputs[0]
    in_shape = tuple(int(s) for s in np.asarray(nodes[in_name].input_type["input"]).reshape(-1))
    for k, n in nodes.items():
        typ = type(n).__name__
        if typ not in NEURONS + SYNAPSES + ("Input", "Output", "Flatten", "Delay"):
            raise ModelFileError(f"node {k}: type {typ}; qcfs reads Input, Conv2d, Affine, Linear, Flatten, Delay, "
                                 f"IF, I, Output")
    ro = preds.get(out_name, [])
    if len(ro) != 1 or type(nodes[ro[0]]).__name__ not in NEURONS:
        raise ModelFileError(f"node {out_name}: must have exactly one IF/I node as input, has {ro}")
    layers: dict[str, GraphLayer] = {}
    for k, n in nodes.items():
        typ = type(n).__name__
        if typ not in NEURONS:
            continue
        shape = tuple(int(s) for s in np.asarray(n.r).shape)
        gl = GraphLayer(name=k, node=n, kind="readout" if k == ro[0] else "if", shape=shape)
        if gl.kind == "if" and typ != "IF":
            raise ModelFileError(f"node {k}: an I (integrator) node that is not the readout; qcfs needs IF")
        bias = np.zeros(shape[0] if len(shape) == 3 else int(np.prod(shape)))
        for sn in preds.get(k, []):
            sn_node = nodes[sn]
            if type(sn_node).__name__ not in SYNAPSES:
                raise ModelFileError(f"node {k}: input {sn} is a {type(sn_node).__name__}, expected Conv2d/Affine/Linear")
            chain, delay = preds.get(sn, []), 0
            if len(chain) != 1:
                raise ModelFileError(f"node {sn}: needs exactly one input, has {len(chain)}")
            src = chain[0]
            for _ in range(2):
                t = type(nodes[src]).__name__
                if t not in ("Flatten", "Delay"):
                    break
                if t == "Delay":
                    d = np.unique(np.asarray(nodes[src].delay))
                    if d.size != 1 or float(d[0]) != int(d[0]) or d[0] < 0:
                        raise ModelFileError(f"node {src}: delay must be one non-negative integer for all neurons")
                    delay = int(d[0])
                up = preds.get(src, [])
                if len(up) != 1:
                    raise ModelFileError(f"node {src}: needs exactly one input, has {len(up)}")
                src = up[0]
            st = type(nodes[src]).__name__
            if st not in NEURONS + ("Input",):
                raise ModelFileError(f"node {sn}: chain starts at {src} ({st}), not at a neuron or the Input")
            syn, b = _synapse(f"node {sn}", sn_node, "input" if src == in_name else src, delay)
            if b.size != bias.size:
                raise ModelFileError(f"node {sn}: bias of {b.size} values for a layer of {bias.size} channels")
            bias = bias + b
            gl.synapses.append(syn)
            gl.syn_nodes.append(sn)
        if not gl.synapses:
            raise ModelFileError(f"node {k}: no incoming Conv2d/Affine/Linear")
        gl.bias = bias
        layers[k] = gl
    order: list[GraphLayer] = []
    done = {"input"}
    pending = dict(layers)
    while pending:
        ready = [k for k, gl in pending.items() if all(s.source in done for s in gl.synapses) and k != ro[0]]
        if not ready:
            if list(pending) == [ro[0]]:
                ready = [ro[0]]
            else:
                raise ModelFileError(f"nodes {sorted(pending)}: a cycle or an unreachable source (recurrence is "
                                     f"not part of qcfs networks)")
        for k in ready:
            order.append(pending.pop(k))
            done.add(k)
    return in_shape, order


def _as_mode(a: np.ndarray, integer: bool, where: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not integer:
        return a
    if not np.array_equal(a, np.rint(a)):
        raise ModelFileError(f"{where}: non-integer values in an integer-mode network")
    return a.astype(np.int64)


def load_nir_intnet(path: str | Path) -> IntNet:
    """The IntNet a qcfs `.nir` was exported from, rebuilt from header metadata + node arrays."""
    path = Path(path)
    graph = read_nir(path)
    meta = {k: _text(v) for k, v in (graph.metadata or {}).items()}
    if "qcfs_header" not in meta:
        raise ModelFileError(f"{path}: NIR graph without qcfs metadata (qcfs_header); qcfs imports only NIR files "
                             f"written by qcfs-export --backend nir (stock NIR semantics: qcfs.runtime.nir_stock)")
    if meta.get("qcfs_format") != FORMAT_NAME or int(meta.get("qcfs_version", -1)) != FORMAT_VERSION:
        raise ModelFileError(f"{path}: graph metadata qcfs_format {meta.get('qcfs_format')!r} version "
                             f"{meta.get('qcfs_version')!r}; expected {FORMAT_NAME} version {FORMAT_VERSION}")
    try:
        hdr = json.loads(meta["qcfs_header"])
    except (TypeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: graph metadata qcfs_header is not JSON ({err})") from None
    try:
        _, glayers = graph_layers(graph)
        by_node = {gl.name: gl for gl in glayers}
        integer = hdr["mode"] == "int"
        layers = []
        for lh in hdr["layers"]:
            nn = node_name(lh["name"])
            if nn not in by_node:
                raise ModelFileError(f"{path}: no node {nn} for layer {lh['name']}")
            gl = by_node[nn]
            if gl.kind != lh["kind"] or list(gl.shape) != list(lh["shape"]):
                raise ModelFileError(f"{path}: node {nn}: kind/shape {gl.kind} {gl.shape} differ from the header")
            syns = []
            for j, sh in enumerate(lh["synapses"]):
                sn = f"{nn}.syn{j}"
                if sn not in gl.syn_nodes:
                    raise ModelFileError(f"{path}: node {sn} (synapse {j} of {lh['name']}) missing or not wired")
                s = gl.synapses[gl.syn_nodes.index(sn)]
                want = (sh["source"], sh["kind"], tuple(sh["stride"]), tuple(sh["padding"]), int(sh["groups"]),
                        int(sh["delay"]))
                got = (s.source if s.source == "input" else by_node[s.source].name, s.kind, tuple(s.stride),
                       tuple(s.padding), int(s.groups), int(s.delay))
                want = (node_name(want[0]) if want[0] != "input" else "input",) + want[1:]
                if s.kind == "dense":  # dense stride/padding/groups are not in NIR; the header's stand
                    got = got[:2] + want[2:5] + got[5:]
                if got != want:
                    raise ModelFileError(f"{path}: node {sn}: {got} differs from the header's {want}")
                syns.append(Synapse(source=sh["source"], kind=sh["kind"], weight=_as_mode(s.weight, integer, f"node {sn}"),
                                    stride=tuple(sh["stride"]), padding=tuple(sh["padding"]),
                                    groups=int(sh["groups"]), delay=int(sh["delay"])))
            if lh["kind"] == "if":
                th = np.unique(np.asarray(gl.node.v_threshold))
                if th.size != 1 or float(th[0]) != float(lh["threshold"]):
                    raise ModelFileError(f"{path}: node {nn}: v_threshold {th[:3].tolist()} differs from "
                                         f"threshold {lh['threshold']}")
            if lh["v_init"] is None:
                v0 = (gl.node.metadata or {}).get("qcfs_v_init")
                if v0 is None:
                    raise ModelFileError(f"{path}: node {nn}: per-channel v_init but no qcfs_v_init metadata")
                v_init = _as_mode(np.asarray(v0).reshape(-1), integer, f"node {nn} qcfs_v_init")
            else:
                v_init = lh["v_init"]
            layers.append(Layer(name=lh["name"], kind=lh["kind"], shape=tuple(lh["shape"]),
                                bias=_as_mode(gl.bias, integer, f"node {nn}.syn0 bias"), threshold=lh["threshold"],
                                v_init=v_init, synapses=syns, depth=int(lh["depth"]),
                                float32_exact=bool(lh["float32_exact"])))
        if len(glayers) != len(layers):
            raise ModelFileError(f"{path}: graph has {len(glayers)} neuron nodes, the header {len(layers)} layers")
        inp = hdr["input"]
        return IntNet(mode=hdr["mode"],
                      input=InputSpec(shape=tuple(inp["shape"]), mean=tuple(inp["mean"]), std=tuple(inp["std"]),
                                      scale=inp["scale"], bits=int(inp["bits"])),
                      layers=layers, L=int(hdr["L"]), phi=float(hdr["phi"]), profile=HardwareProfile(**hdr["profile"]),
                      readout_scale=float(hdr["readout_scale"]), metadata=dict(hdr.get("metadata", {})),
                      max_spikes_per_step=hdr.get("max_spikes_per_step", 1))
    except ModelFileError as err:
        msg = str(err)
        raise ModelFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: qcfs_header incomplete or inconsistent with the graph ({err!r})") from None
