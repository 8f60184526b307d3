"""A `.nir` is trusted only as far as it re-derives from the network it states (qcfs_header + node arrays).

Why: the importer takes the header and the weights, biases and v_init from the graph, but a stock NIR reader
(and qcfs's NIR interpreter) also read every other node parameter: r, v_threshold, v_reset, conv geometry,
edges. An edited r = 2 or a readout I with r = 3 would otherwise run as r = 1 in qcfs and as something else
elsewhere. So the whole file is re-derived in memory with the exporter (nir_export.to_nir_graph + nir.write)
and compared object by object (hdf5_guard.first_difference), as netx_verify does for `.net.h5`; the header
JSON is compared by value (numbers as numbers), since it is the source the network was read from.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from qcfs.errors import ModelFileError
from qcfs.exporters.hdf5_guard import first_difference, h5py_module, scan_hdf5
from qcfs.exporters.nir_export import NirFormatError, _nir, to_nir_graph
from qcfs.intnet import IntNet

HEADER = "node/metadata/qcfs_header"
VERSION = "version"  # the nir package's version string: not part of the network
FIX = "re-export it with qcfs-export --backend nir"


def _describe(diff: str) -> str:
    """'node/nodes/c1/r' -> 'node c1: field r'; 'node/edges' -> 'graph edges'."""
    head, _, rest = diff.partition(" ")
    parts = head.split("/")
    if parts[:2] == ["node", "nodes"] and len(parts) > 2:
        text = f"node {parts[2]}" + (f": field {'/'.join(parts[3:])}" if len(parts) > 3 else "")
    elif parts[:2] == ["node", "metadata"] and len(parts) > 2:
        text = f"graph metadata {'/'.join(parts[2:])}"
    elif parts[:1] == ["node"] and len(parts) == 2:
        text = f"graph {parts[1]}"
    else:
        text = head
    return f"{text} {rest}".rstrip()


def same_json(got: Any, want: Any) -> bool:
    """JSON values equal, numbers compared as numbers (1 == 1.0) but never as booleans; dict keys of `got`
    must be keys of `want` (a field the reader defaults may be absent)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) <= set(want) and all(same_json(got[k], want[k]) for k in got)
    if isinstance(want, (list, tuple)):
        return isinstance(got, list) and len(got) == len(want) and all(map(same_json, got, want))
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and got == want
    return type(got) is type(want) and got == want


def verify_nir_file(path: str | Path, net: IntNet, header: dict[str, Any], profile: str = "qcfs") -> None:
    """ModelFileError at the first object of the file at `path` that `net` does not export to (under the NIR
    profile the file says it was written with)."""
    nir, h5py = _nir(), h5py_module()
    try:
        graph = to_nir_graph(net, profile)
    except NirFormatError as err:
        raise ModelFileError(f"{path}: the network it states cannot be a NIR export ({err}); {FIX}") from None
    buf = io.BytesIO()
    nir.write(buf, graph)
    want_header = json.loads(json.dumps(net.header()))
    if not same_json({k: v for k, v in header.items() if k != "version"}, want_header):
        raise ModelFileError(f"{path}: graph metadata qcfs_header differs from the network read from it (an "
                             f"unknown or mistyped field); {FIX}")
    try:
        with h5py.File(path, "r") as f, h5py.File(buf, "r") as want:
            scan_hdf5(path, f)
            diff = first_difference(f, want, skip=frozenset({HEADER, VERSION}))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: not a readable NIR graph ({type(err).__name__}: {err})") from None
    if diff:
        raise ModelFileError(f"{path}: {_describe(diff)} differs from the network the file states (qcfs_header "
                             f"and node arrays): an edited or foreign file; {FIX}")
