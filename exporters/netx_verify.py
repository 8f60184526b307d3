"""A `.net.h5` is trusted only as far as it re-derives from the IntNet embedded in it (`qcfs/intnet`).

Why: `--backend netx` runs the weights in `layer/` and the thresholds, v_init and biases in `qcfs/layers`;
stock netx readers run `layer/` with its neuron parameters. Checking only some of them against the embedded
network let an edited file (negated or NaN weights, a changed bias or readout bias) run something else than
it states. So, as for the `.lava.npz` (lava_verify), the whole file is re-derived in memory from the
embedded network with the exporter itself (netx_export.write_netx) and compared group by group, dataset by
dataset, attribute by attribute (hdf5_guard.first_difference); the first difference is refused in one line.
Before any dataset is read, hdf5_guard.scan_hdf5 refuses links, external storage and absurd declared sizes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import HardwareFitError, ModelFileError
from qcfs.exporters.hdf5_guard import first_difference, h5py_module, in_memory, scan_hdf5
from qcfs.exporters.netx_export import NetxFormatError, _check_header, write_netx
from qcfs.intnet import IntNet, load_intnet
from qcfs.safe_io import check_zip_members

EMBEDDED = "qcfs/intnet"
FIX = "re-export it with qcfs-export --backend netx"


def _embedded(path: Path, f: Any) -> IntNet:
    """The IntNet in dataset qcfs/intnet, read only after its declared size was bounded (scan_hdf5)."""
    h5py = h5py_module()
    ds = f["qcfs"]["intnet"]
    if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 1:
        raise ModelFileError(f"{path}: dataset {EMBEDDED} is not the bytes of an IntNet file; {FIX}")
    raw = ds[()].tobytes()
    label = f"{path}: dataset {EMBEDDED}"
    check_zip_members(io.BytesIO(raw), label)
    return load_intnet(io.BytesIO(raw), name=label)


def _describe(diff: str, names: dict[str, str]) -> str:
    """'layer/3/weight' -> "layer/3/weight (layer 'fc1')": the netx index named by its IntNet layer."""
    parts = diff.split(" ")[0].split("/")
    key = parts[1] if parts[0] == "layer" and len(parts) > 1 else \
        parts[2] if parts[:2] == ["qcfs", "layers"] and len(parts) > 2 else None
    return f"{diff} (layer {names[key]!r})" if key in names else diff


def verified_netx(path: str | Path) -> IntNet:
    """The embedded IntNet of a .net.h5 whose every object equals what that network exports to."""
    h5py = h5py_module()
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            scan_hdf5(path, f)
            _check_header(path, f)
            net = _embedded(path, f)
            try:
                want = in_memory(lambda w: write_netx(net, w))
            except (NetxFormatError, HardwareFitError) as err:
                raise ModelFileError(f"{path}: the network in {EMBEDDED} cannot be a netx export ({err}); "
                                     f"{FIX}") from None
            with want:
                names = {k: str(g.attrs["name"]) for k, g in want["qcfs/layers"].items()}
                diff = first_difference(f, want, skip=frozenset({EMBEDDED}))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:  # h5py on a broken file
        raise ModelFileError(f"{path}: not a readable qcfs netx HDF5 file ({type(err).__name__}: {err})") from None
    if diff:
        raise ModelFileError(f"{path}: {_describe(diff, names)} differs from the network the file states "
                             f"({EMBEDDED}): an edited or foreign file; {FIX}")
    return net
