"""A pickle reader for CIFAR-10's python batches that cannot run code.

Why: `pickle.load` calls any importable callable the file names (os.system, builtins.eval, ...), so a crafted
`test_batch` runs code as soon as it is read. The real batches (Python 2 pickles, protocol 2) contain only a
dict of bytes keys, a list of ints, a list of bytes and one uint8 NumPy array, which needs exactly three
globals: numpy's `_reconstruct`, `ndarray` and `dtype` (protocol-5 re-pickles use `_frombuffer` instead,
Python-3 protocol-2 re-pickles `_codecs.encode` and `bytes` for the raw bytes). Those are the only globals allowed, and
each is wrapped so it can build nothing but a plain ndarray of a numeric dtype: no object arrays (whose
elements would be unpickled objects) and no subclasses.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

# dtype codes a batch may use: numeric only ('O' object arrays, 'V' void records and strings are refused)
_NUMERIC_KINDS = "biuf"


class ForbiddenPickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (it would run code or build arbitrary objects)."""


MAX_ARRAY_BYTES = 1 << 30  # no array in a dataset batch is larger than the (capped) file it came from


class _NdarrayToken:
    """Stands for numpy.ndarray in the pickle: accepted as _reconstruct's subtype, refused when called (a direct
    ndarray(shape) call could allocate any amount of memory)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise ForbiddenPickleError("direct numpy.ndarray(...) call in the pickle")


def _dtype(obj: Any, *args: Any) -> np.dtype:
    if isinstance(obj, bytes):
        obj = obj.decode("latin1")
    # always a fresh copy: the pickle's BUILD step calls __setstate__ on what we return, and np.dtype('u1') without
    # copy=True is numpy's shared uint8 descriptor, which must never be mutated by a file
    dt = np.dtype(obj, False, True)
    if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise ForbiddenPickleError(f"array dtype {dt} is not a plain numeric type")
    return dt


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not _NdarrayToken:
        raise ForbiddenPickleError("array subclass in the pickle")
    dt = _dtype(dtype_code)
    try:
        n = int(np.prod(np.asarray(shape, dtype=np.int64))) if np.ndim(shape) else int(shape)
    except (TypeError, ValueError, OverflowError):
        raise ForbiddenPickleError(f"array shape {shape!r} in the pickle") from None
    if n < 0 or n * dt.itemsize > MAX_ARRAY_BYTES:
        raise ForbiddenPickleError(f"array of {n} elements in the pickle is larger than any dataset batch")
    return np.ndarray.__new__(np.ndarray, shape, dt)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    dt = _dtype(dtype)
    if not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise ForbiddenPickleError("array buffer is not bytes")
    return np.frombuffer(buf, dt).reshape(shape, order=order if order in ("C", "F") else "C")


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise ForbiddenPickleError("unexpected codecs.encode call")
    return codecs.encode(text, encoding)


def _bytes(*args: Any) -> bytes:
    """bytes() as protocol-2 pickles spell empty or latin-1 bytes; never bytes(n) (n zero bytes: a memory bomb)."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if len(args) == 2 and isinstance(args[0], str):
        return _encode(args[0], args[1])
    raise ForbiddenPickleError("unexpected bytes(...) call")


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric",
                  "numpy")
ALLOWED: dict[tuple[str, str], Any] = {("_codecs", "encode"): _encode, ("__builtin__", "bytes"): _bytes,
                                       ("builtins", "bytes"): _bytes}
for _mod in _NUMPY_MODULES:
    ALLOWED[(_mod, "_reconstruct")] = _reconstruct
    ALLOWED[(_mod, "_frombuffer")] = _frombuffer
    ALLOWED[(_mod, "ndarray")] = _NdarrayToken
    ALLOWED[(_mod, "dtype")] = _dtype


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenPickleError(f"refusing to load {module}.{name} (only NumPy arrays, bytes, lists and "
                                       "dicts are allowed in a dataset batch)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleError("persistent ids are not allowed in a dataset batch")


def loads_restricted(data: bytes) -> Any:
    """Unpickle `data` allowing only what CIFAR-10 python batches contain (encoding='bytes', as for Python 2)."""
    return _Unpickler(io.BytesIO(data), encoding="bytes").load()
