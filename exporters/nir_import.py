"""NIR graph (`.nir`) -> network structure, and -> the identical IntNet when the graph is one of ours.

Two readers over one graph walk (`graph_layers`): every neuron node (IF, or I for an accumulating readout)
collects the synapse chains that end in it — [Delay] → [SumPool2d] → [Flatten] → Conv2d | Affine | Linear — and several
chains into one node are a sum (a residual add). `load_nir_intnet` then takes the IntNet header from the
graph's qcfs metadata and every array (weights, biases, per-channel v_init) from the nodes, reads them as an
IntNet file (qcfs.intnet.load_intnet: the one validator of every IntNet source), and accepts the file only
if it is exactly what that network exports to (nir_verify: every node parameter — r, v_threshold, v_reset,
conv geometry, metadata — and every edge); qcfs.runtime.nir_stock runs the same walk with stock NIR
semantics. Bad files: one line naming the node and field (ModelFileError). HDF5 links, external storage and
absurd declared sizes are refused before nir reads the file (hdf5_guard.scan_hdf5).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import ModelFileError
from qcfs.exporters.hdf5_guard import h5py_module, scan_hdf5
from qcfs.exporters.nir_export import FORMAT_NAME, FORMAT_VERSION, PROFILES, _nir, node_name
from qcfs.intnet import IntNet, SumPool, Synapse, load_intnet

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
    h5py = h5py_module()
    try:
        with h5py.File(path, "r") as f:
            scan_hdf5(path, f)  # links to other files, link cycles, bombs: refused before nir reads anything
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: not a readable NIR graph ({type(err).__name__}: {err})") from None
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
    # profile snntorch (nir_export) writes the IF layers as LIF nodes that snnTorch runs as IF; only there
    snntorch_profile = _text((graph.metadata or {}).get("qcfs_nir_profile")) == "snntorch"
    neuron_types = NEURONS + (("LIF",) if snntorch_profile else ())
    for k, n in nodes.items():
        typ = type(n).__name__
        if typ not in neuron_types + SYNAPSES + ("Input", "Output", "Flatten", "Delay", "SumPool2d"):
            raise ModelFileError(f"node {k}: type {typ}; qcfs reads Input, Conv2d, Affine, Linear, Flatten, Delay, "
                                 f"SumPool2d, IF, I, Output")
    ro = preds.get(out_name, [])
    # profile "readers" (nir_export): the readout's synapse nodes feed the Output node, which stands for the
    # readout (the sum of its outputs over the steps is what an I node would hold)
    direct = bool(ro) and all(type(nodes[p]).__name__ in SYNAPSES for p in ro)
    if not direct and (len(ro) != 1 or type(nodes[ro[0]]).__name__ not in neuron_types):
        raise ModelFileError(f"node {out_name}: must have exactly one IF/I node, or the readout's Conv2d/Affine/"
                             f"Linear nodes, as input; has {ro}")
    readout = _text((graph.metadata or {}).get("qcfs_readout_node", "readout")) if direct else ro[0]
    if direct and readout in nodes:
        raise ModelFileError(f"graph metadata qcfs_readout_node {readout!r} names an existing node")
    neurons = [(k, n) for k, n in nodes.items() if type(n).__name__ in neuron_types]
    if direct:
        neurons.append((readout, nodes[out_name]))
    layers: dict[str, GraphLayer] = {}
    for k, n in neurons:
        typ = type(n).__name__
        if typ == "Output":
            shape = tuple(int(s) for s in np.asarray(n.output_type["output"]).reshape(-1))
        else:
            shape = tuple(int(s) for s in np.asarray(n.r).shape)
        gl = GraphLayer(name=k, node=n, kind="readout" if k == readout else "if", shape=shape)
        if gl.kind == "if" and typ == "I":
            raise ModelFileError(f"node {k}: an I (integrator) node that is not the readout; qcfs needs IF")
        bias = np.zeros(shape[0] if len(shape) == 3 else int(np.prod(shape)))
        for sn in preds.get(out_name if typ == "Output" else k, []):
            sn_node = nodes[sn]
            if type(sn_node).__name__ not in SYNAPSES:
                raise ModelFileError(f"node {k}: input {sn} is a {type(sn_node).__name__}, expected Conv2d/Affine/Linear")
            chain, delay, pool = preds.get(sn, []), 0, None
            if len(chain) != 1:
                raise ModelFileError(f"node {sn}: needs exactly one input, has {len(chain)}")
            src = chain[0]
            for _ in range(3):
                t = type(nodes[src]).__name__
                if t not in ("Flatten", "Delay", "SumPool2d"):
                    break
                if t == "SumPool2d":
                    node = nodes[src]
                    ph, pw = _pair(node.padding)
                    pool = SumPool(_pair(node.kernel_size), _pair(node.stride), (ph, pw, ph, pw))
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
            if st not in neuron_types + ("Input",):
                raise ModelFileError(f"node {sn}: chain starts at {src} ({st}), not at a neuron or the Input")
            syn, b = _synapse(f"node {sn}", sn_node, "input" if src == in_name else src, delay)
            syn.pool = pool
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
        ready = [k for k, gl in pending.items() if all(s.source in done for s in gl.synapses) and k != readout]
        if not ready:
            if list(pending) == [readout]:
                ready = [readout]
            else:
                raise ModelFileError(f"nodes {sorted(pending)}: a cycle or an unreachable source (recurrence is "
                                     f"not part of qcfs networks)")
        for k in ready:
            order.append(pending.pop(k))
            done.add(k)
    return in_shape, order


def _node_arrays(graph, hdr: dict[str, Any]) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """The IntNet arrays (`<layer>/bias`, `<layer>/syn<j>/weight`, per-channel `<layer>/v_init`) the graph's
    nodes hold for the layers of the header, after checking that the wiring is the header's."""
    _, glayers = graph_layers(graph)
    by_node = {gl.name: gl for gl in glayers}
    arrays: dict[str, np.ndarray] = {}
    if len(glayers) != len(hdr["layers"]):
        raise ModelFileError(f"graph has {len(glayers)} neuron nodes, the header {len(hdr['layers'])} layers")
    for lh in hdr["layers"]:
        name = lh["name"]
        nn = node_name(name)
        if nn not in by_node:
            raise ModelFileError(f"no node {nn} for layer {name}")
        gl = by_node[nn]
        if gl.kind != lh["kind"] or list(gl.shape) != list(lh["shape"]):
            raise ModelFileError(f"node {nn}: kind/shape {gl.kind} {gl.shape} differ from the header")
        for j, sh in enumerate(lh["synapses"]):
            sn = f"{nn}.syn{j}"
            if sn not in gl.syn_nodes:
                raise ModelFileError(f"node {sn} (synapse {j} of {name}) missing or not wired")
            s = gl.synapses[gl.syn_nodes.index(sn)]
            want = (sh["source"], sh["kind"], tuple(sh["stride"]), tuple(sh["padding"]), sh["groups"], sh["delay"],
                    _pool_of(sh.get("pool")))
            got = (s.source if s.source == "input" else by_node[s.source].name, s.kind, tuple(s.stride),
                   tuple(s.padding), s.groups, s.delay, s.pool)
            want = (node_name(want[0]) if want[0] != "input" else "input",) + want[1:]
            if s.kind == "dense":  # dense stride/padding/groups are not in NIR; the header's stand
                got = got[:2] + want[2:5] + got[5:]
            if got != want:
                raise ModelFileError(f"node {sn}: {got} differs from the header's {want}")
            arrays[f"{name}/syn{j}/weight"] = s.weight
        if lh["kind"] == "if":
            th = np.asarray(gl.node.v_threshold)
            if th.dtype.kind not in "iuf":
                raise ModelFileError(f"node {nn}: v_threshold has dtype {th.dtype}; expected a number per neuron")
            theta = lh["threshold"]
            if not isinstance(theta, (int, float)) or isinstance(theta, bool) or th.size == 0 or \
                    np.unique(th).size != 1 or th.reshape(-1)[0] != theta:
                raise ModelFileError(f"node {nn}: v_threshold {np.unique(th)[:3].tolist()} differs from the "
                                     f"header's threshold {lh['threshold']!r}")
        if lh["v_init"] is None:
            v0 = (gl.node.metadata or {}).get("qcfs_v_init")
            if v0 is None:
                raise ModelFileError(f"node {nn}: per-channel v_init but no qcfs_v_init metadata")
            v0 = np.asarray(v0)
            if v0.dtype.kind not in "iuf" or v0.ndim != 1:
                raise ModelFileError(f"node {nn}: field qcfs_v_init must be one number per channel, got dtype "
                                     f"{v0.dtype} shape {list(v0.shape)}")
            arrays[f"{name}/v_init"] = v0
        arrays[f"{name}/bias"] = gl.bias
    return arrays


def _intnet_bytes(hdr: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """An IntNet file of the header and node arrays, so it is read (and validated) as any IntNet file is."""
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(hdr).encode("utf-8"), dtype=np.uint8), **arrays)
    return buf.getvalue()


def _pool_of(raw: Any) -> SumPool | None:
    """The header's pool entry (IntNet version 3) as a SumPool, to compare with the graph's SumPool2d."""
    if raw is None:
        return None
    return SumPool(tuple(int(v) for v in raw["kernel"]), tuple(int(v) for v in raw["stride"]),
                   tuple(int(v) for v in raw["padding"]))



def load_nir_intnet(path: str | Path) -> IntNet:
    """The IntNet a qcfs `.nir` states (header metadata + node arrays, read and validated as an IntNet file),
    after checking that the file is exactly what that network exports to (qcfs.exporters.nir_verify)."""
    from qcfs.exporters.nir_verify import verify_nir_file

    path = Path(path)
    graph = read_nir(path)
    meta = {k: _text(v) for k, v in (graph.metadata or {}).items()}
    if "qcfs_header" not in meta:
        raise ModelFileError(f"{path}: NIR graph without qcfs metadata (qcfs_header); qcfs imports only NIR files "
                             f"written by qcfs-export --backend nir (stock NIR semantics: qcfs.runtime.nir_stock)")
    fmt, version = meta.get("qcfs_format"), meta.get("qcfs_version")
    if fmt != FORMAT_NAME or not isinstance(version, (int, np.integer)) or int(version) != FORMAT_VERSION:
        raise ModelFileError(f"{path}: graph metadata qcfs_format {fmt!r} qcfs_version {version!r}; expected "
                             f"{FORMAT_NAME} version {FORMAT_VERSION} (an integer); re-export it with qcfs-export")
    try:
        hdr = json.loads(meta["qcfs_header"])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: graph metadata qcfs_header is not JSON ({err})") from None
    if not isinstance(hdr, dict) or not isinstance(hdr.get("layers"), list):
        raise ModelFileError(f"{path}: graph metadata qcfs_header is not an IntNet header (no layers list)")
    try:
        arrays = _node_arrays(graph, hdr)
    except ModelFileError as err:
        msg = str(err)
        raise ModelFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ModelFileError(f"{path}: qcfs_header incomplete or inconsistent with the graph ({err!r})") from None
    net = load_intnet(io.BytesIO(_intnet_bytes(hdr, arrays)), name=f"{path}: qcfs_header and nodes")
    profile = _text(meta.get("qcfs_nir_profile", "qcfs"))
    if profile not in PROFILES:
        raise ModelFileError(f"{path}: graph metadata qcfs_nir_profile {profile!r} is none of {', '.join(PROFILES)}; "
                             "re-export it with qcfs-export --backend nir")
    verify_nir_file(path, net, hdr, profile)  # the file must be what `net` exports to under its own profile
    return net
