"""A `.lava.npz` is trusted only as far as it re-derives from the IntNet embedded in it.

Why: the header's sha256 covers the embedded IntNet, not the Lava arrays and header fields next to it
(weights, thresholds, v_init, bias, input scale, depths, paddings). A file whose Lava side was edited would
run something else on `--backend lava` than on numpy/torch, silently. So on load every Lava field is
recomputed from the embedded network with the exporter itself (`lava_payload`) and compared; the first
difference is refused in one line naming layer and field. The Lava backend then runs a copy freshly derived
from the same verified network (backend._lava_file), so what runs on every backend comes from one digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import BackendError, ModelFileError
from qcfs.exporters.lava_export import (
    EMBEDDED_INTNET, LavaFile, lava_payload, load_lava_file, read_embedded_intnet,
)
from qcfs.intnet import IntNet


def _first_difference(got: Any, want: Any, path: str) -> str | None:
    """Path of the first field where `got` (file) differs from `want` (derived), None when equal."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return path or "header"
        for key in want:
            if key not in got:
                return f"{path}.{key}".lstrip(".") + " (missing)"
            diff = _first_difference(got[key], want[key], f"{path}.{key}")
            if diff:
                return diff
        extra = sorted(set(got) - set(want))
        return f"{path}.{extra[0]}".lstrip(".") + " (unexpected)" if extra else None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return path.lstrip(".")
        for i, (g, w) in enumerate(zip(got, want)):
            diff = _first_difference(g, w, f"{path}[{i}]")
            if diff:
                return diff
        return None
    # exact types: an untampered file round-trips them (ints stay ints, floats floats), so 1.0 for 1 is an edit
    return None if type(got) is type(want) and got == want else path.lstrip(".")


def _describe(path: str, header: dict[str, Any]) -> str:
    """'layers[2].synapses[0].stride' -> "layer 'conv2': field synapses[0].stride"."""
    if path.startswith("layers[") and "]" in path:
        idx = path[len("layers["):path.index("]")]
        rest = path[path.index("]") + 1:].lstrip(".") or "(whole layer)"
        layers = header.get("layers") if isinstance(header.get("layers"), list) else []
        name = layers[int(idx)].get("name", idx) if idx.isdigit() and int(idx) < len(layers) and \
            isinstance(layers[int(idx)], dict) else idx
        return f"layer {name!r}: field {rest}"
    return f"header field {path}"


def _array_field(key: str) -> str:
    """'conv2/syn0/weight' -> "layer 'conv2': array syn0/weight"."""
    for suffix in ("/bias", "/v_init"):
        if key.endswith(suffix):
            return f"layer {key[: -len(suffix)]!r}: array {suffix[1:]}"
    if "/syn" in key:
        name, rest = key.rsplit("/syn", 1)
        return f"layer {name!r}: array syn{rest}"
    return f"array {key!r}"


def verify_against(path: str | Path, lf: LavaFile, net: IntNet) -> None:
    """ModelFileError at the first Lava header field or array that `net` does not re-derive to."""
    try:
        header, arrays = lava_payload(net)
    except BackendError as err:
        raise ModelFileError(f"{path}: the embedded network cannot be a Lava export ({err})") from None
    if lf.header.get("version") == 1:  # version 1: one v_init per layer in the header, no v_init arrays
        for lh in header["layers"]:
            if lh["kind"] == "if" and lh["v_init"] in ("per-channel", "per-neuron"):
                raise ModelFileError(f"{path}: layer {lh['name']!r}: per-channel v_init in a version-1 Lava file")
        header["version"] = 1
        arrays = {k: v for k, v in arrays.items() if not k.endswith("/v_init")}
    want = json.loads(json.dumps(header))
    diff = _first_difference(lf.header, want, "")
    if diff:
        raise ModelFileError(f"{path}: {_describe(diff, lf.header)} differs from the embedded network it was "
                             "exported from (edited Lava file?); re-export it with qcfs-export")
    got_keys = set(lf.arrays) - {EMBEDDED_INTNET}
    for key in sorted(set(arrays) - got_keys):
        raise ModelFileError(f"{path}: {_array_field(key)} is missing; re-export it with qcfs-export")
    for key in sorted(got_keys - set(arrays)):
        raise ModelFileError(f"{path}: {_array_field(key)} is not part of the embedded network (unexpected array)")
    for key in arrays:
        got = lf.arrays[key]
        if got.shape != arrays[key].shape or got.dtype.kind not in "iu" or not np.array_equal(got, arrays[key]):
            raise ModelFileError(f"{path}: {_array_field(key)} differs from the embedded network it was exported "
                                 "from (edited Lava file?); re-export it with qcfs-export")


def verified_lava_file(path: str | Path) -> tuple[IntNet, LavaFile]:
    """Load a .lava.npz, check its embedded IntNet (validation + digest) and every Lava field against it."""
    lf = load_lava_file(path)
    net = read_embedded_intnet(path, lf)
    verify_against(path, lf, net)
    return net, lf
