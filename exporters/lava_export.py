"""IntNet -> `.lava.npz`: the same integer network in the layouts and encodings Lava's processes expect.

Why a file of its own: Lava differs from the IntNet conventions in three places that are easy to get wrong
and that we want to inspect/diff once, outside any simulator:
  * tensors are (W, H, C), so a Dense after a flatten reads its source in (W, H, C) order;
  * Lava's Conv computes a TRUE convolution with kernels laid out (C_out, kw, kh, C_in/groups);
  * Lava's fixed-point Dense truncates mixed-sign weights to even values (1 bit of the 8 is the sign
    extension), so integer weights w are stored as 2w with weight_exp = -1 (exact: 2w is even and the
    final arithmetic right shift divides an even sum exactly).
Nothing is re-derived: thresholds, v_init, biases, depths and weights come from the IntNet unchanged.
NumPy only (the parent process never imports Lava).

File: .npz with "__header__" (UTF-8 JSON: format "qcfs-lava", version 2, intnet provenance, input spec,
layers with Lava parameters), "<layer>/bias" and "<layer>/v_init" (IF layers; full shape, Lava layout; new in
version 2, which carries per-channel initial membranes) and "<layer>/syn<j>/weight". Version 3 (written only
when a synapse has a sum-pool stage, IntNet Synapse.pool): such a synapse's entry has "pool" (a Lava Conv
with weights 1 per channel whose graded window sums feed the synapse; num_message_bits holds kh·kw).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import BackendError, ModelFileError
from qcfs.intnet import IntNet, Layer, Synapse
from qcfs.semantics import membrane_limits, payload_bits

FORMAT_NAME = "qcfs-lava"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # version 1: one v_init per layer, in the header; 3: synapse "pool" stages
DENSE_WEIGHT_EXP = -1  # weights stored as 2w, see module docstring
ACC_LIMIT = 2**23  # keep every dendritic sum inside Loihi's signed 24-bit accumulator


def whc(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava shape of an IntNet tensor shape: (C, H, W) -> (W, H, C); 1-D shapes unchanged."""
    if len(shape) == 3:
        return (shape[2], shape[1], shape[0])
    if len(shape) == 1:
        return tuple(shape)
    raise BackendError(f"Lava backend supports (C,H,W) and 1-D layer shapes, got {tuple(shape)}")


def to_whc(x: np.ndarray, shape_chw: tuple[int, ...]) -> np.ndarray:
    """Reorder an array laid out as `shape_chw` (leading axes) into Lava order."""
    return x.reshape(shape_chw).transpose(2, 1, 0) if len(shape_chw) == 3 else x.reshape(shape_chw)


def _flat_perm(shape_chw: tuple[int, ...]) -> np.ndarray:
    """perm such that flat_whc = flat_chw[perm]."""
    n = int(np.prod(shape_chw))
    return to_whc(np.arange(n), shape_chw).reshape(-1)


def conv_weight_to_lava(w: np.ndarray) -> np.ndarray:
    """torch cross-correlation [C_out, C_in/g, kh, kw] -> Lava true-convolution [C_out, kw, kh, C_in/g]."""
    return np.ascontiguousarray(np.asarray(w)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def _lava_padding(syn: Synapse, in_hw: tuple[int, int], k_hw: tuple[int, int], out_hw: tuple[int, int]
                  ) -> tuple[int, int]:
    """A symmetric (W, H) padding for Lava's Conv that yields the IntNet output shape (the exact, possibly
    asymmetric padding travels separately and is applied by our Conv model)."""
    pt, pl, pb, pr = syn.padding
    res = []
    for size, k, s, lo, hi, want in ((in_hw[1], k_hw[1], syn.stride[1], pl, pr, out_hw[1]),
                                     (in_hw[0], k_hw[0], syn.stride[0], pt, pb, out_hw[0])):
        for p in dict.fromkeys((lo, hi, (lo + hi) // 2, (lo + hi + 1) // 2)):
            if (size + 2 * p - k) // s + 1 == want:
                res.append(p)
                break
        else:
            raise BackendError(f"padding {syn.padding} (top, left, bottom, right) gives an output shape "
                               f"Lava's Conv cannot express with a symmetric padding")
    return res[0], res[1]


def _max_abs_input(net: IntNet, source: str) -> int:
    return (1 << (net.input.bits - 1)) if source == "input" else int(net.max_spikes_per_step)


def _pool_entry(syn: Synapse, src_shape: tuple[int, ...]) -> dict[str, Any]:
    """The separate sum-pool stage as a Lava Conv with weights 1 per channel (groups = C): it receives binary
    spikes and sends each window's sum as a graded message to the synapse (one more step, as IntNet depth
    counts it)."""
    pool = syn.pool
    out = pool.out_shape(src_shape)
    as_syn = Synapse(source=syn.source, kind="conv", weight=np.zeros(0), stride=pool.stride, padding=pool.padding)
    pad_wh = _lava_padding(as_syn, tuple(src_shape[1:]), tuple(pool.kernel), tuple(out[1:]))
    return {"input_shape": list(whc(src_shape)), "kernel": [int(pool.kernel[1]), int(pool.kernel[0])],
            "stride": [int(pool.stride[1]), int(pool.stride[0])], "padding": list(pad_wh),
            "padding_tlbr": [int(p) for p in pool.padding], "channels": int(src_shape[0])}


def pool_weight(entry: dict[str, Any]) -> np.ndarray:
    """Lava Conv weights of a pool stage: (C_out, kw, kh, C_in/groups = 1), all ones."""
    kw, kh = entry["kernel"]
    return np.ones((entry["channels"], kw, kh, 1), dtype=np.int64)


def _synapse_entry(net: IntNet, layer: Layer, j: int, syn: Synapse, shapes: dict[str, tuple[int, ...]]
                   ) -> tuple[dict[str, Any], np.ndarray]:
    src_shape = shapes[syn.source]
    graded = syn.source == "input"
    w = np.asarray(syn.weight)
    if not np.all(np.equal(np.mod(w, 1), 0)):
        raise BackendError(f"layer {layer.name}: non-integer weights (Lava needs an integer-mode IntNet)")
    w = w.astype(np.int64)
    xmax = _max_abs_input(net, syn.source)
    pool = None
    if syn.pool is not None:  # the weights read graded window sums 0..kh·kw of the pool stage
        pool = _pool_entry(syn, src_shape)
        src_shape, xmax = syn.pool.out_shape(src_shape), syn.pool.size
    entry: dict[str, Any] = {
        "source": syn.source, "kind": syn.kind, "delay": int(syn.delay), "groups": int(syn.groups),
        # a pool stage's window sums (0..kh·kw) and graded spikes (m > 1) arrive as messages of that many bits;
        # binary spikes as 0 (Lava's spikes); graded spikes with separate pooling are refused by the validator
        "num_message_bits": 8 if graded else (int(xmax).bit_length() if pool else payload_bits(int(net.max_spikes_per_step))),
        "input_shape": list(whc(src_shape)),
    }
    if pool is not None:
        entry["pool"] = pool
    if syn.kind == "conv":
        if len(src_shape) != 3 or len(layer.shape) != 3:
            raise BackendError(f"layer {layer.name}: conv synapse needs (C,H,W) source and target")
        bound = xmax * int(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        lava_w = conv_weight_to_lava(w)
        pad_wh = _lava_padding(syn, tuple(src_shape[1:]), tuple(w.shape[2:]), tuple(layer.shape[1:]))
        entry.update(stride=[int(syn.stride[1]), int(syn.stride[0])], padding=list(pad_wh),
                     padding_tlbr=[int(p) for p in syn.padding], weight_exp=0)
    else:
        n_in = int(np.prod(src_shape))
        w = w.reshape(w.shape[0], -1)
        if w.shape[1] != n_in:
            raise BackendError(f"layer {layer.name}: dense weight {w.shape} does not match source {src_shape}")
        if w.min(initial=0) < -128 or w.max(initial=0) > 127:
            raise BackendError(f"layer {layer.name}: dense weights outside 8-bit [-128, 127] "
                               f"(Lava's fixed-point Dense holds 8-bit weights)")
        w = w[:, _flat_perm(tuple(src_shape))]
        if len(layer.shape) == 3:
            w = w[_flat_perm(tuple(layer.shape)), :]
        bound = xmax * int(np.abs(w).sum(axis=1).max(initial=0))
        lava_w = 2 * w
        entry.update(weight_exp=DENSE_WEIGHT_EXP, num_weight_bits=8)
    if bound >= ACC_LIMIT:
        raise BackendError(f"layer {layer.name}: synapse {j} sums can reach {bound} >= 2^23 "
                           f"(Loihi's 24-bit dendritic accumulator)")
    entry["sum_bound"] = bound
    return entry, lava_w


EMBEDDED_INTNET = "__intnet__"


def embedded_intnet(path: str | Path) -> IntNet:
    """The IntNet a .lava.npz was exported from, checked against the digest in its header AND every Lava
    array and header field re-derived from it (qcfs.exporters.lava_verify); one line on any mismatch."""
    from qcfs.exporters.lava_verify import verified_lava_file

    return verified_lava_file(path)[0]


def read_embedded_intnet(path: str | Path, lf: "LavaFile") -> IntNet:
    """The embedded IntNet of a loaded Lava file, validated and digest-checked (the Lava layers are not)."""
    import io

    from qcfs.intnet import load_intnet

    if EMBEDDED_INTNET not in lf.arrays:
        raise ModelFileError(f"{path}: Lava file without its source network; re-export it with qcfs-export")
    blob = lf.arrays[EMBEDDED_INTNET]
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise ModelFileError(f"{path}: field {EMBEDDED_INTNET}: not the bytes of an IntNet file")
    try:
        net = load_intnet(io.BytesIO(blob.tobytes()))
    except ModelFileError as err:  # name the .lava.npz, not the anonymous embedded bytes
        raise ModelFileError(f"{path}: {err}") from None
    intnet = lf.header.get("intnet")
    if not isinstance(intnet, dict) or intnet_digest(net) != intnet.get("sha256"):
        raise ModelFileError(f"{path}: embedded network does not match the Lava layers (digest differs)")
    return net


def intnet_digest(net: IntNet) -> str:
    """sha256 over the IntNet header and arrays: ties a .lava.npz to the network it came from."""
    h = hashlib.sha256(json.dumps(net.header(), sort_keys=True).encode())
    for layer in net.layers:
        h.update(np.ascontiguousarray(layer.bias, dtype=np.float64).tobytes())
        if layer.per_channel_v_init:
            h.update(np.ascontiguousarray(layer.v_init, dtype=np.float64).tobytes())
        for syn in layer.synapses:
            h.update(np.ascontiguousarray(syn.weight, dtype=np.float64).tobytes())
    return h.hexdigest()


def _full_whc(per_channel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-channel (or already full) vector expanded to the layer's full shape, in Lava's (W, H, C) order."""
    vec = np.asarray(per_channel, dtype=np.float64).reshape(-1)
    n_per = int(np.prod(shape[1:])) if len(shape) == 3 else 1
    full = np.repeat(vec, n_per) if vec.size * n_per == np.prod(shape) else vec
    return to_whc(full, shape).astype(np.int64)


def lava_payload(net: IntNet) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of the .lava.npz for `net`, nothing written; BackendError when the net cannot run
    exactly on Lava. Also what a loaded Lava file is checked against (lava_verify)."""
    if net.mode != "int":
        raise BackendError("the Lava backend runs integer-mode networks only (export with --mode int)")
    if net.readout.kind != "readout" or any(layer.kind != "if" for layer in net.layers[:-1]):
        raise BackendError("IntNet must be IF layers followed by one readout layer")
    v_min, v_max = membrane_limits(net.profile.membrane_bits)
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(net.input.shape)}
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for layer in net.layers:
        shape = tuple(layer.shape)
        lshape = whc(shape)
        arrays[f"{layer.name}/bias"] = _full_whc(layer.bias, shape)
        if layer.kind == "if":
            arrays[f"{layer.name}/v_init"] = _full_whc(layer.v_init_full().reshape(-1), shape)
        syns = []
        for j, syn in enumerate(layer.synapses):
            if syn.source not in shapes:
                raise BackendError(f"layer {layer.name}: unknown or later source {syn.source!r}")
            entry, lava_w = _synapse_entry(net, layer, j, syn, shapes)
            syns.append(entry)
            arrays[f"{layer.name}/syn{j}/weight"] = lava_w.astype(np.int64)
        thr = float(layer.threshold)
        layers.append({
            "name": layer.name, "kind": layer.kind, "shape": list(shape), "lava_shape": list(lshape),
            "threshold": int(thr), "depth": int(layer.depth),
            "v_init": ("per-neuron" if layer.per_neuron_v_init else "per-channel") if layer.per_channel_v_init
            else int(float(layer.v_init)),  # informative
            "v_min": v_min, "v_max": v_max, "synapses": syns,
        })
        shapes[layer.name] = shape
    pooled = any("pool" in e for lh in layers for e in lh["synapses"])
    header = {  # version 3 only where a sum-pool stage needs it: older readers then refuse instead of ignoring it
        "format": FORMAT_NAME, "version": FORMAT_VERSION if pooled else 2,
        "intnet": {"sha256": intnet_digest(net), "L": net.L, "phi": net.phi, "readout_scale": net.readout_scale,
                   "profile": net.header()["profile"], "metadata": net.metadata},
        "input": {"shape": list(net.input.shape), "lava_shape": list(whc(tuple(net.input.shape))),
                  "mean": list(net.input.mean), "std": list(net.input.std), "scale": net.input.scale,
                  "bits": net.input.bits},
        "layers": layers,
    }
    if net.max_spikes_per_step > 1:  # graded spikes (absent: binary, as in files written before)
        header["max_spikes_per_step"] = int(net.max_spikes_per_step)
    return header, arrays


def export_lava(net: IntNet, out: Path, *, compress: bool = True) -> Path:
    """Write `out` (.lava.npz) for the Lava backend; BackendError when the net cannot run exactly on Lava.
    `compress=False` for throw-away files (compressing VGG-16's weights costs seconds)."""
    out = Path(out)
    header, arrays = lava_payload(net)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    # the source IntNet travels inside, so `qcfs-run --model x.lava.npz` has the network's own numbers
    # (neurons, fan-out, normalization) without re-deriving anything from Lava's layouts; every Lava array
    # and header field is checked against it on load (lava_verify)
    # uncompressed for throw-away files: compressing VGG-16's embedded IntNet was ~30 % of a Lava run's start-up
    arrays[EMBEDDED_INTNET] = np.frombuffer(net.to_bytes(compress=compress), dtype=np.uint8)
    with open(out, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)
    return out


@dataclass
class LavaFile:
    """A loaded .lava.npz: the JSON header and the arrays (Lava layouts)."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def layers(self) -> list[dict[str, Any]]:
        return self.header["layers"]

    @property
    def readout(self) -> dict[str, Any]:
        return self.header["layers"][-1]

    def weight(self, layer: str, j: int) -> np.ndarray:
        return self.arrays[f"{layer}/syn{j}/weight"]

    def bias(self, layer: str) -> np.ndarray:
        return self.arrays[f"{layer}/bias"]

    def v_init(self, layer: dict[str, Any]) -> np.ndarray:
        """Initial membranes in Lava layout (version 1 files: the header's one value per layer)."""
        key = f"{layer['name']}/v_init"
        if key in self.arrays:
            return self.arrays[key]
        return np.full(tuple(layer["lava_shape"]), int(layer["v_init"]), dtype=np.int64)


def load_lava_file(path: str | Path) -> LavaFile:
    """Read a .lava.npz written by export_lava; ModelFileError (one line) on anything else."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        hdr = json.loads(arrays.pop("__header__").tobytes().decode("utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path}: not a readable qcfs Lava file (.lava.npz): {err}") from None
    if not isinstance(hdr, dict):
        raise ModelFileError(f"{path}: Lava file header is not a JSON object (got {type(hdr).__name__})")
    if hdr.get("format") != FORMAT_NAME or hdr.get("version") not in READABLE_VERSIONS:
        raise ModelFileError(f"{path}: format {hdr.get('format')!r} version {hdr.get('version')!r}; "
                             f"expected {FORMAT_NAME} version {FORMAT_VERSION}")
    return LavaFile(hdr, arrays)
