"""IntNet: the one integer (or float) IF network file that every backend reads.

Why a format of our own: NIR has no reset-by-subtraction and lava-dl's netx format has no pooling,
residual or subtractive reset; QCFS semantics (θ, v_init = θ/2, per-layer scales) must travel unchanged.

File: a single NumPy .npz (loaded with allow_pickle=False) holding
  "__header__"                 uint8 bytes of a UTF-8 JSON object (below), format "qcfs-intnet", version 1
  "<layer>/bias"               per-channel (conv) or per-unit (dense) bias, added every step
  "<layer>/syn<j>/weight"      weights of the j-th incoming synapse stage of <layer>
  "<layer>/v_init"             (version 2, only when per-channel) initial membrane per channel / unit;
                               version 3 also: one per neuron (the layer's C,H,W flattened), from calibration
Header keys: format, version (the lowest that holds the network: 3 when it has graded spikes, a per-neuron
v_init or a separate pool stage, else 2, so a version-2 network's header and digest are unchanged; versions 1 and 2 still load),
mode ("int" | "float"), input {shape [C,H,W], mean, std, scale, bits},
L, phi, profile {name, weight_bits, bias_bits, threshold_bits, membrane_bits, input_bits, source, and from
version 3 spike_payload_bits}, max_spikes_per_step (version 3; absent = 1: binary IF; m > 1: graded spikes,
qcfs.semantics),
layers [ {name, kind "if"|"readout", shape, threshold, v_init (a number, or null when per-channel),
          depth, float32_exact,
          synapses [ {source, kind "conv"|"dense", stride, padding, groups, delay,
                      pool (version 3: null, or {kernel [kh,kw], stride [sh,sw], padding [t,l,b,r]})} ] } ],
readout_scale (accumulated readout / readout_scale ≈ T · ANN logits), metadata {…free-form provenance…}.

Conventions (all backends): tensors are C,H,W (torch order). Conv weights are [C_out, C_in/groups, kh, kw]
cross-correlation (torch/ONNX); padding is (top, left, bottom, right) with zeros. A dense synapse whose source
has a C,H,W shape reads that source flattened in C,H,W order. Layers are in topological order; the last one
is the readout. A synapse with a `pool` first sums each pooling window of its source's spikes (zero
padding; a separate average-pooling stage whose 1/(kh·kw) is folded into this synapse's weights), then applies
its weights to the window sums. Integer mode: weights, biases, thresholds and v_init are integer-valued (stored int64);
float mode: float64 and no input quantization. Semantics: qcfs.semantics.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qcfs.errors import ModelFileError

FORMAT_NAME = "qcfs-intnet"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # version 3 adds graded spikes, per-neuron v_init and the synapse field "pool"
BASE_VERSION = 2  # written when a network uses nothing of version 3


@dataclass(frozen=True)
class HardwareProfile:
    """Bit widths an integer network must fit. Defaults: Loihi 2 as modelled by Lava's fixed-point
    simulator (see README "Hardware profile" for sources)."""

    name: str = "loihi2-lava-fixed-pt"
    weight_bits: int = 8
    bias_bits: int = 24
    threshold_bits: int = 24
    membrane_bits: int = 24
    input_bits: int = 8
    source: str = "lava-nc 0.10.0 fixed_pt models; Loihi 2 neuro-core 24-bit state"
    # graded spike payload: lava-nc 0.10.0's graded neurons (lava/proc/graded/models.py, lava/proc/sdn/models.py)
    # declare their s_out ports with precision=24; we assume Loihi 2 carries the same 24-bit payload
    spike_payload_bits: int = 24


@dataclass(frozen=True)
class SumPool:
    """A sum-pooling stage in front of a synapse: each window of the source's spikes (zero padding) is summed
    and the integer sum is what the synapse's weights multiply (average pooling kept as its own stage; its
    1/(kh·kw) lives in the synapse's weights). Pipelined timing: the stage adds one step."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def size(self) -> int:
        """Spikes per window: the largest window sum a spike source can produce."""
        return int(self.kernel[0]) * int(self.kernel[1])

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(C, H', W') of the window sums of a (C, H, W) source."""
        c, h, w = shape
        (kh, kw), (sh, sw), (t, l, b, r) = self.kernel, self.stride, self.padding
        return (int(c), (int(h) + t + b - kh) // sh + 1, (int(w) + l + r - kw) // sw + 1)

    def header(self) -> dict[str, list[int]]:
        return {"kernel": list(self.kernel), "stride": list(self.stride), "padding": list(self.padding)}


@dataclass
class Synapse:
    """One synapse stage into a layer: conv or dense from `source` ("input" or an IF layer's name), optionally
    reading the window sums of a sum-pooling stage (`pool`) instead of the spikes themselves."""

    source: str
    kind: Literal["conv", "dense"]
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    delay: int = 0
    pool: SumPool | None = None


@dataclass
class Layer:
    """A population of IF neurons ("if") or the accumulate-only output ("readout")."""

    name: str
    kind: Literal["if", "readout"]
    shape: tuple[int, ...]
    bias: np.ndarray
    threshold: float
    v_init: float | np.ndarray  # one value, or one per channel (conv: shape[0]) / unit (dense), or one per
    # neuron (1-D, the layer's C,H,W flattened; version 3) — calibration
    synapses: list[Synapse]
    depth: int = 1
    float32_exact: bool = False

    @property
    def channels(self) -> int:
        """Channels (conv, C of C,H,W) or units (dense): the length of per-channel bias and v_init."""
        return int(self.shape[0]) if len(self.shape) == 3 else int(np.prod(self.shape))

    @property
    def per_channel_v_init(self) -> bool:
        """True when v_init is an array (per channel or per neuron): the file stores it as `<layer>/v_init`."""
        return np.ndim(self.v_init) > 0

    @property
    def per_neuron_v_init(self) -> bool:
        """True when v_init holds one value per neuron of a conv layer (more than one per channel)."""
        return np.ndim(self.v_init) > 0 and np.size(self.v_init) != self.channels

    def v_init_per_channel(self) -> np.ndarray:
        """v_init as one value per channel/unit (a scalar v_init repeated), float64. A per-neuron v_init has
        no such form: ValueError, so a consumer that only knows channels cannot drop it silently."""
        if self.per_neuron_v_init:
            raise ValueError(f"layer {self.name}: v_init is per neuron; this consumer handles per-channel only")
        return np.broadcast_to(np.asarray(self.v_init, dtype=np.float64), (self.channels,)).copy()

    def v_init_full(self) -> np.ndarray:
        """v_init for every neuron, float64 of the layer's shape (C,H,W or [N]), whatever form it is stored in."""
        shape = tuple(int(d) for d in self.shape)
        if self.per_neuron_v_init:
            return np.asarray(self.v_init, dtype=np.float64).reshape(shape).copy()
        per_c = self.v_init_per_channel()
        return (per_c.reshape(-1, 1, 1) * np.ones(shape) if len(shape) == 3 else per_c.reshape(shape)).copy()


@dataclass
class InputSpec:
    """How images in [0, 1] become the first layer's constant current (qcfs.semantics.encode_input)."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float | None  # None in float mode
    bits: int = 8


@dataclass
class IntNet:
    mode: Literal["int", "float"]
    input: InputSpec
    layers: list[Layer]
    L: int
    phi: float = 0.5
    profile: HardwareProfile = field(default_factory=HardwareProfile)
    readout_scale: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)
    max_spikes_per_step: int = 1  # m: graded spikes carry 1..m per step (qcfs.semantics); 1 = binary IF

    # --- queries -------------------------------------------------------------------------------
    @property
    def readout(self) -> Layer:
        return self.layers[-1]

    @property
    def if_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind == "if"]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.readout.shape))

    @property
    def graded(self) -> bool:
        return int(self.max_spikes_per_step) > 1

    def version(self) -> int:
        """The lowest file version that holds this network (see the module docstring)."""
        v3 = (self.graded or any(layer.per_neuron_v_init for layer in self.layers)
              or self.profile.spike_payload_bits != HardwareProfile.spike_payload_bits
              or any(s.pool is not None for layer in self.layers for s in layer.synapses))
        return FORMAT_VERSION if v3 else BASE_VERSION

    # --- (de)serialisation -----------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        layers = []
        for layer in self.layers:
            syns = [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()
                 if k not in ("weight", "pool")} | {"pool": s.pool.header() if s.pool is not None else None}
                for s in layer.synapses
            ]
            layers.append(
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "shape": list(layer.shape),
                    "threshold": _num(layer.threshold),
                    "v_init": None if layer.per_channel_v_init else _num(layer.v_init),
                    "depth": layer.depth,
                    "float32_exact": layer.float32_exact,
                    "synapses": syns,
                }
            )
        inp = asdict(self.input)
        inp["shape"] = list(self.input.shape)
        inp["mean"], inp["std"] = list(self.input.mean), list(self.input.std)
        version = self.version()
        profile = asdict(self.profile)
        hdr = {
            "format": FORMAT_NAME,
            "version": version,
            "mode": self.mode,
            "input": inp,
            "L": self.L,
            "phi": self.phi,
            "profile": profile,
            "layers": layers,
            "readout_scale": self.readout_scale,
            "metadata": self.metadata,
        }
        if version >= 3:
            hdr["max_spikes_per_step"] = self.max_spikes_per_step
        else:  # a version-2 header exactly as version 2 wrote it (digests of existing files stay valid)
            del profile["spike_payload_bits"]
            for layer_hdr in layers:
                for syn_hdr in layer_hdr["synapses"]:
                    del syn_hdr["pool"]  # always None here
        return hdr

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "wb") as fh:  # np.savez would append ".npz" to other suffixes
            fh.write(self.to_bytes())
        return path

    def to_bytes(self, compress: bool = True) -> bytes:
        """The .npz file content (also embedded in .lava.npz files, so they carry their source network)."""
        dtype = np.int64 if self.mode == "int" else np.float64
        arrays: dict[str, np.ndarray] = {
            "__header__": np.frombuffer(json.dumps(self.header()).encode("utf-8"), dtype=np.uint8)
        }
        for layer in self.layers:
            arrays[f"{layer.name}/bias"] = np.asarray(layer.bias, dtype=dtype)
            if layer.per_channel_v_init:
                arrays[f"{layer.name}/v_init"] = np.asarray(layer.v_init, dtype=dtype).reshape(-1)
            for j, syn in enumerate(layer.synapses):
                arrays[f"{layer.name}/syn{j}/weight"] = np.asarray(syn.weight, dtype=dtype)
        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        return buf.getvalue()


def _num(x: float | int) -> float | int:
    """JSON-friendly scalar that keeps integers integral."""
    xf = float(x)
    return int(xf) if xf.is_integer() else xf


def is_intnet_file(path: str | Path) -> bool:
    """True when `path` is a zip (npz) with a qcfs-intnet header; never raises."""
    try:
        with zipfile.ZipFile(path) as zf:
            return "__header__.npy" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def load_intnet(path: str | Path | io.BytesIO, name: str | None = None) -> IntNet:
    """Read an IntNet file (or its bytes), validating format/version; bad files raise ModelFileError, which
    start with `name` (default: the path; "embedded IntNet" for bytes, never the buffer's repr; for bytes
    embedded in another file, that file and field). A file whose arrays do not fit in memory is one line naming
    it and what it needed, not a MemoryError."""
    label = name or ("embedded IntNet" if isinstance(path, io.BytesIO) else str(path))
    try:
        return _load_intnet(path, label)
    except MemoryError as err:
        from qcfs.safe_io import declared_unpacked_bytes

        size = declared_unpacked_bytes(path)
        arrays = f"its arrays unpack to {size / (1 << 20):.0f} MB, " if size else ""
        raise ModelFileError(f"{label}: not enough memory to load it ({arrays}{str(err) or 'an allocation failed'}); "
                             "free memory or use a machine with more") from None


def _load_intnet(path: str | Path | io.BytesIO, label: str) -> IntNet:
    if not isinstance(path, io.BytesIO):
        path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise ModelFileError(f"{label}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ModelFileError(f"{label}: not a readable qcfs integer network (.npz): {err}") from None
    if "__header__" not in arrays:
        raise ModelFileError(f"{label}: .npz without a qcfs-intnet header; export one with qcfs-export")
    try:
        hdr = json.loads(arrays["__header__"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{label}: corrupt qcfs-intnet header: {err}") from None
    if not isinstance(hdr, dict):
        raise ModelFileError(f"{label}: qcfs-intnet header is not a JSON object (got {type(hdr).__name__})")
    version = hdr.get("version")
    # `True in (1, 2, 3)` and `2.0 in (1, 2, 3)` hold in Python: a JSON true or 2.0 is not a version
    if hdr.get("format") != FORMAT_NAME or type(version) is not int or version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{label}: format {hdr.get('format')!r} version {hdr.get('version')!r}; "
            f"this qcfs reads {FORMAT_NAME} versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if hdr["version"] < 3 and "max_spikes_per_step" in hdr:
        raise ModelFileError(f"{path}: field max_spikes_per_step in a version-{hdr['version']} file (it is new in "
                             f"version 3); re-export the network with this qcfs")
    # raw header values go in unconverted (int(3.7) would hide a bad field); validate_intnet checks every one
    try:
        layers = []
        for lh in hdr["layers"]:
            syns = [
                Synapse(
                    source=sh["source"],
                    kind=sh["kind"],
                    weight=arrays[f"{lh['name']}/syn{j}/weight"],
                    stride=tuple(sh["stride"]) if isinstance(sh["stride"], list) else sh["stride"],
                    padding=tuple(sh["padding"]) if isinstance(sh["padding"], list) else sh["padding"],
                    groups=sh["groups"],
                    delay=sh["delay"],
                    pool=_pool(sh.get("pool")),
                )
                for j, sh in enumerate(lh["synapses"])
            ]
            layers.append(
                Layer(
                    name=lh["name"],
                    kind=lh["kind"],
                    shape=tuple(lh["shape"]) if isinstance(lh["shape"], list) else lh["shape"],
                    bias=arrays[f"{lh['name']}/bias"],
                    threshold=lh["threshold"],
                    v_init=arrays[f"{lh['name']}/v_init"] if lh["v_init"] is None else lh["v_init"],
                    synapses=syns,
                    depth=lh["depth"],
                    float32_exact=lh["float32_exact"],
                )
            )
        inp = hdr["input"]
        net = IntNet(
            mode=hdr["mode"],
            input=InputSpec(
                shape=tuple(inp["shape"]) if isinstance(inp["shape"], list) else inp["shape"],
                mean=tuple(inp["mean"]) if isinstance(inp["mean"], list) else inp["mean"],
                std=tuple(inp["std"]) if isinstance(inp["std"], list) else inp["std"],
                scale=inp["scale"],
                bits=inp["bits"],
            ),
            layers=layers,
            L=hdr["L"],
            phi=hdr["phi"],
            profile=HardwareProfile(**hdr["profile"]),
            readout_scale=hdr["readout_scale"],
            metadata=hdr.get("metadata", {}),
            max_spikes_per_step=hdr.get("max_spikes_per_step", 1) if hdr["version"] >= 3 else 1,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{label}: qcfs-intnet file is incomplete or inconsistent ({err!r})") from None
    from qcfs.intnet_validate import validate_intnet

    validate_intnet(net, label)
    return _normalised(net)


def as_embedded(net: IntNet) -> IntNet:
    """`net` exactly as a reader of its file bytes sees it (validated, normalised dtypes). Exporters that embed
    the IntNet derive the rest of their file from this, so a loader re-derives the file bit for bit."""
    return load_intnet(io.BytesIO(net.to_bytes(compress=False)))


def _pool(raw: Any) -> SumPool | None:
    """A header's pool entry (version 3) as a SumPool, values unconverted (validate_intnet checks them)."""
    if raw is None:
        return None
    return SumPool(kernel=_tuple(raw["kernel"]), stride=_tuple(raw["stride"]), padding=_tuple(raw["padding"]))


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _normalised(net: IntNet) -> IntNet:
    """After validation: the dtypes every backend expects (int64 in integer mode, float64 in float mode).
    Arrays already of that dtype are kept, not copied (an ImageNet VGG-16 holds 3.4 GiB of int64 weights)."""
    dtype = np.int64 if net.mode == "int" else np.float64
    net.phi, net.readout_scale = float(net.phi), float(net.readout_scale)
    if net.input.scale is not None:
        net.input.scale = float(net.input.scale)
    for layer in net.layers:
        layer.bias = np.asarray(layer.bias).astype(dtype, copy=False)
        net.max_spikes_per_step = int(net.max_spikes_per_step)
        if layer.per_channel_v_init:
            layer.v_init = np.asarray(layer.v_init).astype(dtype, copy=False)
        layer.float32_exact = bool(layer.float32_exact)
        for syn in layer.synapses:
            syn.weight = np.asarray(syn.weight).astype(dtype, copy=False)
            syn.stride, syn.padding = tuple(int(v) for v in syn.stride), tuple(int(v) for v in syn.padding)
            if syn.pool is not None:
                syn.pool = SumPool(*(tuple(int(v) for v in f) for f in (syn.pool.kernel, syn.pool.stride,
                                                                          syn.pool.padding)))
    return net
