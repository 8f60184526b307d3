"""HDF5 files (netx `.net.h5`, NIR `.nir`) are read only after two checks: the file is self-contained and
small enough to read (`scan_hdf5`), and it is the file the network it states exports to (`first_difference`).

Why a scan before any read: h5py follows soft and external links and external/virtual storage silently, so
a netx or NIR file could pull arrays from another file, loop on a soft-link cycle, or declare a terabyte
behind a few compressed bytes. qcfs writes none of these, so each is refused in one line, before a dataset
is read. Why a structural comparison: qcfs's exporters are deterministic, so re-deriving the file from its
embedded network (in memory) and comparing every group, dataset and attribute refuses any edit (an added,
removed or changed weight, bias, threshold, v_init or neuron parameter) generically; a field added to an
exporter is covered with no change here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qcfs.errors import ModelFileError, QCFSError

MAX_OBJECTS = 1_000_000  # groups + datasets; ours hold a few per layer


def h5py_module():  # type: ignore[no-untyped-def]
    try:
        import h5py
    except ImportError:
        raise QCFSError("h5py is not installed (needed for netx and NIR files): run make setup") from None
    return h5py


def scan_hdf5(path: str | Path, f: Any) -> None:
    """Refuse (ModelFileError naming the object) soft/external/user-defined links, objects reachable twice
    (hard-link cycles), external or virtual dataset storage, and datasets declaring more than
    qcfs.safe_io.max_unpacked_bytes() in total. Reads no dataset. `f`: an open h5py.File."""
    from qcfs.safe_io import max_unpacked_bytes

    h5py = h5py_module()
    fix = "qcfs writes none; re-export the file with qcfs-export"
    seen = {f.id}
    stack: list[tuple[str, Any]] = [("", f)]
    total, largest = 0, ("", 0)
    while stack:
        where, group = stack.pop()
        for name in group:  # link names; iterating resolves nothing
            obj_path = f"{where}/{name}" if where else name
            try:
                link = group.get(name, getlink=True)
            except TypeError:  # h5py: "Unknown link type" (user-defined)
                raise ModelFileError(f"{path}: {obj_path} is a user-defined HDF5 link; {fix}") from None
            if isinstance(link, h5py.SoftLink):
                raise ModelFileError(f"{path}: {obj_path} is an HDF5 soft link (to {link.path}); {fix}")
            if isinstance(link, h5py.ExternalLink):
                raise ModelFileError(f"{path}: {obj_path} is an HDF5 external link (to {link.filename}:"
                                     f"{link.path}); links to other files are refused; {fix}")
            obj = group[name]
            if obj.id in seen:
                raise ModelFileError(f"{path}: {obj_path} is an object already reached by another path (an HDF5 "
                                     f"hard-link cycle or shared object); {fix}")
            seen.add(obj.id)
            if len(seen) > MAX_OBJECTS:
                raise ModelFileError(f"{path}: more than {MAX_OBJECTS} HDF5 objects; not a qcfs network file")
            if isinstance(obj, h5py.Group):
                stack.append((obj_path, obj))
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    raise ModelFileError(f"{path}: dataset {obj_path} keeps its data in an external file "
                                         f"({obj.external[0][0]}); {fix}")
                if getattr(obj, "is_virtual", False):
                    raise ModelFileError(f"{path}: dataset {obj_path} is a virtual dataset (data from other "
                                         f"files); {fix}")
                size = int(obj.size or 0) * int(obj.dtype.itemsize)
                total += size
                largest = max(largest, (obj_path, size), key=lambda t: t[1])
    cap = max_unpacked_bytes()
    if total > cap:
        raise ModelFileError(f"{path}: its datasets declare {total / (1 << 20):.0f} MB (largest: {largest[0]}, "
                             f"{largest[1] / (1 << 20):.0f} MB), over the {cap / (1 << 20):.0f} MB limit; "
                             "refusing to read (QCFS_MAX_UNPACKED_MB raises the limit)")


def in_memory(write: Callable[[Any], None]):  # type: ignore[no-untyped-def]
    """An h5py.File (read-only, in memory) holding what `write(file)` writes; close it after use."""
    h5py = h5py_module()
    buf = io.BytesIO()
    with h5py.File(buf, "w") as w:
        write(w)
    return h5py.File(buf, "r")


def _same(got: Any, want: Any) -> bool:
    """Equal dtype, shape and values (NaN equals nothing, so a NaN is always a difference)."""
    g, w = np.asarray(got), np.asarray(want)
    if g.dtype != w.dtype or g.shape != w.shape:
        return False
    if w.dtype.kind == "O":
        return g.tolist() == w.tolist()
    return bool(np.array_equal(g, w))


def _attrs_difference(got: Any, want: Any, where: str) -> str | None:
    gk, wk = set(got.attrs.keys()), set(want.attrs.keys())
    for key in sorted(wk - gk):
        return f"{where} attribute {key} (missing)"
    for key in sorted(gk - wk):
        return f"{where} attribute {key} (unexpected)"
    for key in sorted(wk):
        ga, wa = got.attrs.get_id(key), want.attrs.get_id(key)
        if ga.shape != wa.shape or ga.dtype != wa.dtype or not _same(got.attrs[key], want.attrs[key]):
            return f"{where} attribute {key}"
    return None


def first_difference(got: Any, want: Any, skip: frozenset[str] = frozenset(), where: str = "") -> str | None:
    """Path of the first group/dataset/attribute where `got` differs from `want` (both h5py Groups; `got`
    scanned by scan_hdf5), None when equal. Objects in `skip` must exist; their values are not compared."""
    h5py = h5py_module()
    diff = _attrs_difference(got, want, where or "/")
    if diff:
        return diff
    gk, wk = set(got.keys()), set(want.keys())
    for name in sorted(wk - gk):
        return f"{where}/{name}".lstrip("/") + " (missing)"
    for name in sorted(gk - wk):
        return f"{where}/{name}".lstrip("/") + " (unexpected)"
    for name in sorted(wk):
        p = f"{where}/{name}".lstrip("/")
        g, w = got[name], want[name]
        if isinstance(w, h5py.Group):
            if not isinstance(g, h5py.Group):
                return f"{p} (not a group)"
            diff = first_difference(g, w, skip, p)
            if diff:
                return diff
            continue
        if not isinstance(g, h5py.Dataset):
            return f"{p} (not a dataset)"
        if p in skip:
            continue
        diff = _attrs_difference(g, w, p)
        if diff:
            return diff
        # shape and dtype first: a dataset is read only once it is known to be as large as the derived one
        if g.shape != w.shape or g.dtype != w.dtype or not _same(g[()], w[()]):
            return p
    return None
