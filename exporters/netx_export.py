"""IntNet -> lava-dl netx HDF5 (`.net.h5`): a file stock `lava.lib.dl.netx.hdf5.Network` loads as is, plus a
`qcfs/` group with the exact IF parameters netx cannot say.

Why both: netx is how Lava users hand a network to Lava (and Loihi 2), but its neurons are CUBA/LIF: spike
when v > vThMant·2^6, hard reset v ← 0, v(0) = 0. QCFS needs reset by subtraction and v(0) = θ/2. So the
`layer/` groups hold the closest stock parameters (below) and `qcfs/` holds θ, per-channel v_init, the exact
bias and the readout; qcfs.runtime.lava.netx_network reads both and is bit-exact with the NumPy runtime.

`layer/` (what slayer's block.*.export_hdf5 writes; netx reads it in chain order, no edges):
  0        type "input", shape [C, H, W] (no neuron: netx then feeds the first synapse directly; run it with
           `Network(path, input_message_bits=8)` and the 8-bit integer image of qcfs.semantics.encode_input)
  k        type "conv"  shape [C, H, W], weight [C_out, C_in/g, kh, kw] (torch cross-correlation; netx flips
           it for Lava's true convolution), bias [C], stride/padding/dilation [y, x], groups
           type "flatten" (before a dense layer whose source is C, H, W; netx flattens in C, H, W order)
           type "dense" shape [units], weight [out, in], bias [out]
           neuron/ type "CUBA", iDecay 4096 (no current memory), vDecay 0 (no leak), refDelay 1,
           gradedSpike 0, vThMant θ − 1 (netx spikes on v > vThMant·2^6 with v = 2^6·Σ(a + bias), i.e. on
           Σ ≥ θ: the same comparison as qcfs); readout: vThMant 2^17 − 1 (never reached in practice),
           logits = its membrane v / 2^6.
  Approximation of the stock file (measured in BENCHMARKS.md "Formats"): hard reset instead of subtraction,
  v(0) = 0 instead of v_init, and Lava's LIF ranges (bias 13-bit mantissa, vThMant 17 bits, u/v 24 bits in
  units of 2^-6, so sums saturate 64× earlier than the qcfs membrane).

`qcfs/` attrs format "qcfs-netx", version 1, semantics (text), reset "subtract", spike "v >= threshold", readout
(layer name), input_shape/input_mean/input_std/input_scale/input_bits (the 8-bit input encoding),
readout_scale; datasets `intnet` (the source IntNet file
bytes, for metrics and provenance) and `layers/<k>/` for every netx layer k that has a neuron: attrs name,
kind ("if" | "readout"); datasets threshold, v_init [C] (per channel), bias [C], v_min, v_max.
Loading (`load_netx_intnet`, qcfs.exporters.netx_verify) re-derives the whole file from `qcfs/intnet` and
refuses any difference, so every group above is exactly what the embedded network states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import HardwareFitError, ModelFileError, QCFSError
from qcfs.intnet import IntNet, Layer, as_embedded
from qcfs.semantics import membrane_limits

FORMAT_NAME = "qcfs-netx"
FORMAT_VERSION = 1
SUFFIX = ".net.h5"
INPUT_MESSAGE_BITS = 8
VTH_MANT_MAX = (1 << 17) - 1  # Lava LIF vth: unsigned 17 bits
SEMANTICS = ("qcfs: integrate v += a + bias; spike s = v >= threshold; reset v -= threshold*s (subtraction); "
             "v(0) = v_init per channel at every sample window; readout accumulates a + bias; dt = 1; "
             "input = clip(rint((x-mean)/std*scale)) as 8-bit signed current")


class NetxFormatError(QCFSError):
    """The network cannot be written as netx (names the layer and why)."""


def _h5py():  # type: ignore[no-untyped-def]
    try:
        import h5py
    except ImportError:
        raise QCFSError("h5py is not installed (needed for netx files): run make setup") from None
    return h5py


def _str(group, key: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """A string the way slayer writes it (fixed-length ASCII, shape (1,)); netx decodes it that way."""
    group.create_dataset(key, (1,), f"S{max(1, len(text))}", [text.encode("ascii")])


def _neuron(group, vth_mant: int) -> None:  # type: ignore[no-untyped-def]
    n = group.create_group("neuron")
    _str(n, "type", "CUBA")
    for key, val in (("iDecay", 4096), ("vDecay", 0), ("vThMant", vth_mant), ("refDelay", 1), ("gradedSpike", 0)):
        n.create_dataset(key, data=np.int64(val))


def _check_chain(net: IntNet) -> None:
    if net.mode != "int":
        raise NetxFormatError("netx holds integer networks only: export with --mode int")
    prev = "input"
    for layer in net.layers:
        if len(layer.synapses) != 1:
            raise NetxFormatError(f"layer {layer.name}: {len(layer.synapses)} incoming synapses "
                                  f"({', '.join(s.source for s in layer.synapses)}): a residual add; netx has "
                                  f"no skip layer (chain networks only)")
        syn = layer.synapses[0]
        if syn.source != prev:
            raise NetxFormatError(f"layer {layer.name}: reads {syn.source!r}, not the previous layer {prev!r}; "
                                  f"netx layers form a chain")
        if syn.delay:
            raise NetxFormatError(f"layer {layer.name}: synapse delay {syn.delay}; netx chain layers have none")
        if syn.pool is not None:
            raise NetxFormatError(f"layer {layer.name}: reads a separate sum-pool stage; a netx pool block is followed "
                                  f"by spiking neurons, not graded window sums: export with --pool compose")
        prev = layer.name
    if net.readout.kind != "readout" or any(layer.kind != "if" for layer in net.layers[:-1]):
        raise NetxFormatError("IntNet must be IF layers followed by one readout layer")


def _conv_params(layer: Layer) -> dict[str, Any]:
    syn = layer.synapses[0]
    pt, pl, pb, pr = syn.padding
    if pt != pb or pl != pr:
        raise NetxFormatError(f"layer {layer.name}: asymmetric padding {tuple(syn.padding)} (top, left, bottom, "
                              f"right); netx/Lava Conv pads symmetrically")
    return {"stride": np.asarray(syn.stride, dtype=np.int64), "padding": np.asarray((pt, pl), dtype=np.int64),
            "dilation": np.ones(2, dtype=np.int64), "groups": np.int64(syn.groups)}


def _netx_v_init(layer: Layer) -> np.ndarray:
    """qcfs/layers/<k>/v_init: per channel [C], or per neuron in netx/Lava (W, H, C) order (broadcasts as is)."""
    if layer.per_neuron_v_init:
        full = layer.v_init_full()
        return full.transpose(2, 1, 0) if full.ndim == 3 else full
    return layer.v_init_per_channel()


def _int_array(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if not np.array_equal(a, np.rint(a)):
        raise NetxFormatError(f"{what}: non-integer values (netx needs an integer-mode IntNet)")
    return a.astype(np.int64)


def export_netx(net: IntNet, out: str | Path) -> Path:
    """Write `out` (.net.h5); NetxFormatError names the layer when netx cannot hold the network. The file is
    derived from the network exactly as it embeds it (`as_embedded`), so loading re-derives it bit for bit."""
    h5py = _h5py()
    out = Path(out)
    net = as_embedded(net)
    _check_chain(net)  # before the file is created
    with h5py.File(out, "w") as f:
        write_netx(net, f)
    return out


def write_netx(net: IntNet, f) -> None:  # type: ignore[no-untyped-def]
    """The netx layout of `net` into the open h5py File `f` (the exporter, and netx_verify's re-derivation)."""
    _check_chain(net)
    if net.max_spikes_per_step > 1:
        raise NetxFormatError(f"graded spikes (max_spikes_per_step {net.max_spikes_per_step}) are not expressed in "
                              f"the netx export; use --backend lava or the IntNet itself")
    v_min, v_max = membrane_limits(net.profile.membrane_bits)
    layers = f.create_group("layer")
    q = f.create_group("qcfs")
    q.attrs["format"], q.attrs["version"], q.attrs["semantics"] = FORMAT_NAME, FORMAT_VERSION, SEMANTICS
    q.attrs["reset"], q.attrs["spike"], q.attrs["readout"] = "subtract", "v >= threshold", net.readout.name
    q.attrs["input_shape"], q.attrs["input_bits"] = np.asarray(net.input.shape), net.input.bits
    q.attrs["input_mean"], q.attrs["input_std"] = np.asarray(net.input.mean), np.asarray(net.input.std)
    q.attrs["input_scale"], q.attrs["readout_scale"] = float(net.input.scale), float(net.readout_scale)
    q.create_dataset("intnet", data=np.frombuffer(net.to_bytes(), dtype=np.uint8))
    qlayers = q.create_group("layers")
    g0 = layers.create_group("0")
    _str(g0, "type", "input")
    g0.create_dataset("shape", data=np.asarray(net.input.shape, dtype=np.int64))
    k, src_shape = 1, tuple(net.input.shape)
    for layer in net.layers:
        syn = layer.synapses[0]
        w = _int_array(syn.weight, f"layer {layer.name} weight")
        bias = _int_array(layer.bias, f"layer {layer.name} bias")
        if syn.kind == "dense" and len(src_shape) == 3:
            _str(layers.create_group(str(k)), "type", "flatten")
            k += 1
        g = layers.create_group(str(k))
        _str(g, "type", syn.kind)
        g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
        if syn.kind == "conv":
            for key, val in _conv_params(layer).items():
                g.create_dataset(key, data=val)
        else:
            w = w.reshape(w.shape[0], -1)
            if w.min(initial=0) < -256 or w.max(initial=0) > 254:
                raise NetxFormatError(f"layer {layer.name}: dense weights in [{w.min()}, {w.max()}] do not fit "
                                      f"netx's 8-bit synapse (optimize_weight_bits: [-256, 254])")
        g.create_dataset("weight", data=w)
        g.create_dataset("bias", data=bias)
        theta = int(_int_array(layer.threshold, f"layer {layer.name} threshold")) if layer.kind == "if" else 0
        vth = theta - 1 if layer.kind == "if" else VTH_MANT_MAX
        if not 0 <= vth <= VTH_MANT_MAX:
            raise HardwareFitError(f"layer {layer.name}: threshold {theta} does not fit netx's 17-bit vThMant")
        _neuron(g, vth)
        ql = qlayers.create_group(str(k))
        ql.attrs["name"], ql.attrs["kind"] = layer.name, layer.kind
        ql.create_dataset("threshold", data=np.int64(theta))
        v0 = _netx_v_init(layer) if layer.kind == "if" else np.zeros(layer.channels)
        ql.create_dataset("v_init", data=_int_array(v0, f"layer {layer.name} v_init"))
        ql.create_dataset("bias", data=bias)
        ql.create_dataset("v_min", data=np.int64(v_min))
        ql.create_dataset("v_max", data=np.int64(v_max))
        k += 1
        src_shape = tuple(layer.shape)


# --- reading our own files ---------------------------------------------------------------------------
def is_netx_file(path: str | Path) -> bool:
    """True for an HDF5 file (by signature); the layout is checked by load_netx_intnet."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def read_qcfs_layers(path: str | Path) -> dict[int, dict[str, Any]]:
    """{netx layer index: exact IF parameters} from the `qcfs/` group; ModelFileError names the group."""
    h5py = _h5py()
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            _check_header(path, f)
            out = {}
            for key, g in f["qcfs/layers"].items():
                where = f"qcfs/layers/{key}"
                try:
                    out[int(key)] = {
                        "name": str(g.attrs["name"]), "kind": str(g.attrs["kind"]),
                        "threshold": int(g["threshold"][()]), "v_init": np.asarray(g["v_init"][()], np.int64),
                        "bias": np.asarray(g["bias"][()], np.int64), "v_min": int(g["v_min"][()]),
                        "v_max": int(g["v_max"][()]),
                    }
                except (KeyError, ValueError, TypeError) as err:
                    raise ModelFileError(f"{path}: group {where} is incomplete ({err})") from None
                if out[int(key)]["kind"] not in ("if", "readout"):
                    raise ModelFileError(f"{path}: group {where}: kind {out[int(key)]['kind']!r}")
                if f"layer/{key}" not in f:
                    raise ModelFileError(f"{path}: group {where} has no matching layer/{key}")
            return out
    except OSError as err:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({err})") from None


def _check_header(path: Path, f) -> None:  # type: ignore[no-untyped-def]
    if "layer" not in f:
        raise ModelFileError(f"{path}: no group layer/; not a netx network file")
    if "qcfs" not in f:
        raise ModelFileError(f"{path}: netx file without a qcfs/ group (not written by qcfs-export --backend "
                             f"netx); qcfs runs only its own netx files")
    if not isinstance(f["qcfs"], _h5py().Group):
        raise ModelFileError(f"{path}: qcfs is not a group; not a qcfs netx file")
    fmt, ver = f["qcfs"].attrs.get("format"), f["qcfs"].attrs.get("version")
    if not (isinstance(fmt, str) and fmt == FORMAT_NAME and isinstance(ver, (int, np.integer))
            and not isinstance(ver, (bool, np.bool_)) and int(ver) == FORMAT_VERSION):
        raise ModelFileError(f"{path}: group qcfs/: format {fmt!r} version {ver!r}; expected {FORMAT_NAME} "
                             f"version {FORMAT_VERSION}")
    for key in ("intnet", "layers"):
        if key not in f["qcfs"]:
            raise ModelFileError(f"{path}: group qcfs/ has no {key}")


def load_netx_intnet(path: str | Path) -> IntNet:
    """The IntNet a .net.h5 was exported from, after checking that every group, dataset and attribute of the
    file (layer/ weights, biases, neurons; qcfs/ thresholds, v_init, biases, ranges) is what that network
    exports to (qcfs.exporters.netx_verify); ModelFileError otherwise."""
    from qcfs.exporters.netx_verify import verified_netx

    return verified_netx(path)
