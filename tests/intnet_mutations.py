"""Bad IntNet files, one named mutation each, shared by tests/test_intnet_validate.py and tests/fuzz/.

Each mutation edits the header (JSON) and/or arrays of a valid integer-mode IntNet file and names the field
the one-line error must mention."""

from __future__ import annotations

import io
import json
from typing import Callable

import numpy as np

Arrays = dict[str, np.ndarray]
Mutation = Callable[[dict, Arrays], None]


def read(blob: bytes) -> tuple[dict, Arrays]:
    with np.load(io.BytesIO(blob)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(arrays["__header__"].tobytes()), arrays


def write(header: object, arrays: Arrays) -> bytes:
    arrays = dict(arrays)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _layer(h: dict, i: int) -> dict:
    return h["layers"][i]


def _set(i: int, key: str, value: object) -> Mutation:
    return lambda h, a: _layer(h, i).__setitem__(key, value)


def _syn(i: int, key: str, value: object) -> Mutation:
    return lambda h, a: _layer(h, i)["synapses"][0].__setitem__(key, value)


def _arr(key: Callable[[dict], str], fn: Callable[[np.ndarray], np.ndarray]) -> Mutation:
    def m(h: dict, a: Arrays) -> None:
        k = key(h)
        a[k] = fn(a[k])
    return m


def _w(i: int) -> Callable[[dict], str]:
    return lambda h: f"{h['layers'][i]['name']}/syn0/weight"


def _b(i: int) -> Callable[[dict], str]:
    return lambda h: f"{h['layers'][i]['name']}/bias"


def _poke(value: float, dtype=np.float64) -> Callable[[np.ndarray], np.ndarray]:  # type: ignore[no-untyped-def]
    def f(x: np.ndarray) -> np.ndarray:
        y = x.astype(dtype).copy()
        y.flat[0] = value
        return y
    return f


def _per_channel_v_init(value: float) -> Mutation:
    def m(h: dict, a: Arrays) -> None:
        lh = h["layers"][0]
        c = lh["shape"][0]
        lh["v_init"] = None
        v = np.full(c, lh["threshold"] // 2, dtype=np.float64)
        v[0] = value
        a[f"{lh['name']}/v_init"] = v
    return m


def _header(fn: Callable[[dict], None]) -> Mutation:
    return lambda h, a: fn(h)


# name -> (mutation, text the error line must contain)
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "theta zero": (_set(0, "threshold", 0), "threshold θ must be positive"),
    "theta negative": (_set(0, "threshold", -4), "threshold θ must be positive"),
    "theta odd": (_set(0, "threshold", 7), "must be even"),
    "theta fraction": (_set(0, "threshold", 6.5), "must be an integer"),
    "theta too wide": (_set(0, "threshold", 2 ** 30), "does not fit 24 bits"),
    "theta string": (_set(0, "threshold", "8"), "threshold must be a number"),
    "v_init out of range": (_set(0, "v_init", 2 ** 40), "v_init range"),
    "v_init fraction": (_set(0, "v_init", 1.5), "v_init holds non-integer"),
    "v_init per-channel NaN": (_per_channel_v_init(np.nan), "v_init holds 1 non-finite"),
    "v_init per-channel wrong length": (lambda h, a: (_per_channel_v_init(0)(h, a), a.__setitem__(
        f"{h['layers'][0]['name']}/v_init", np.zeros(h['layers'][0]['shape'][0] + 1)))[-1],
        "v_init must be one value or one per channel"),
    "graded m zero": (_header(lambda h: h.update(version=3, max_spikes_per_step=0)),
                      "max_spikes_per_step must be an integer ≥ 1"),
    "graded m fraction": (_header(lambda h: h.update(version=3, max_spikes_per_step=2.5)),
                          "max_spikes_per_step must be an integer ≥ 1"),
    "graded payload too wide": (_header(lambda h: h.update(version=3, max_spikes_per_step=2 ** 30)),
                                "needs 31-bit graded spikes"),
    "input scale NaN": (_header(lambda h: h["input"].__setitem__("scale", float("nan"))), "input.scale must be finite"),
    "input scale zero": (_header(lambda h: h["input"].__setitem__("scale", 0)), "input.scale must be a finite positive"),
    "input scale null": (_header(lambda h: h["input"].__setitem__("scale", None)), "input.scale must be a finite"),
    "input std zero": (_header(lambda h: h["input"].__setitem__("std", [0.0])), "input.std must be positive"),
    "mode unknown": (_header(lambda h: h.__setitem__("mode", "fixed")), "mode must be one of"),
    "layer kind unknown": (_set(0, "kind", "lif"), "kind must be one of"),
    "synapse kind unknown": (_syn(0, "kind", "lstm"), "synapse 0: kind must be one of"),
    "weights fractional": (_arr(_w(0), _poke(0.5)), "synapse 0 weight holds non-integer"),
    "weights NaN": (_arr(_w(0), _poke(np.nan)), "synapse 0 weight holds 1 non-finite"),
    "weights too wide": (_arr(_w(0), _poke(300, np.int64)), "synapse 0 weight range"),
    "weights strings": (_arr(_w(0), lambda x: x.astype(str)), "non-numeric dtype"),
    "bias inf": (_arr(_b(0), _poke(np.inf)), "bias holds 1 non-finite"),
    "bias too wide": (_arr(_b(0), _poke(2 ** 40, np.int64)), "bias range"),
    "bias wrong length": (_arr(_b(0), lambda x: np.zeros(x.size + 1, dtype=np.int64)), "bias must have one value"),
    "weight bits zero": (_header(lambda h: h["profile"].__setitem__("weight_bits", 0)), "profile.weight_bits"),
    "membrane bits huge": (_header(lambda h: h["profile"].__setitem__("membrane_bits", 99)), "profile.membrane_bits"),
    "L zero": (_header(lambda h: h.__setitem__("L", 0)), "L must be a positive integer"),
    "phi out of range": (_header(lambda h: h.__setitem__("phi", 1.5)), "phi"),
    "stride zero": (_syn(0, "stride", [0, 1]), "stride must be ≥ 1"),
    "padding negative": (_syn(0, "padding", [-1, 0, 0, 0]), "padding must be ≥ 0"),
    "groups not dividing": (_syn(0, "groups", 3), "groups"),
    "groups fractional": (_syn(0, "groups", 1.5), "groups must be an integer"),
    "delay negative": (_syn(1, "delay", -1), "delay must be an integer ≥ 0"),
    "conv shape disagrees": (lambda h, a: _layer(h, 0).__setitem__(
        "shape", [_layer(h, 0)["shape"][0], _layer(h, 0)["shape"][1] + 1, _layer(h, 0)["shape"][2]]),
        "conv output shape"),
    "dense fan-in disagrees": (_arr(_w(-1), lambda x: np.zeros((x.shape[0], x.shape[1] + 1), dtype=np.int64)),
                               "dense weight must be"),
    "source later layer": (lambda h, a: _layer(h, 1)["synapses"][0].__setitem__("source", h["layers"][2]["name"]),
                           "is not 'input' or an earlier IF layer"),
    "source unknown": (_syn(0, "source", "nowhere"), "is not 'input' or an earlier IF layer"),
    "readout not last": (lambda h, a: h["layers"].reverse(), "the readout must be last"),
    "depth wrong": (_set(1, "depth", 7), "depth 7 != depth"),
    "float32_exact lies": (lambda h, a: (_set(0, "float32_exact", True)(h, a),
                                         _arr(_w(0), lambda x: np.full_like(x, 127))(h, a),
                                         _header(lambda hh: hh["profile"].__setitem__("input_bits", 16))(h, a),
                                         _header(lambda hh: hh["input"].__setitem__("bits", 16))(h, a)),
                           "float32_exact is true"),
    "header not an object": (lambda h, a: h.clear() or h.__setitem__("__list__", True), "not a JSON object"),
}


def mutate(blob: bytes, name: str) -> bytes:
    header, arrays = read(blob)
    fn, _ = MUTATIONS[name]
    fn(header, arrays)
    if "__list__" in header:  # header that is a JSON array, not an object
        return write([1, 2, 3], arrays)
    return write(header, arrays)
