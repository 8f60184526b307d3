"""Fuzz (hypothesis): edited NIR `.nir` files (issue 22, section 3 class 3).

Any edit of a valid file's datasets (weights, biases, r, v_threshold, v_reset, qcfs_v_init, conv geometry, edges,
metadata), the qcfs_header JSON or the structure (objects removed or added, links) must give, through the real
qcfs-run: exit 2 with one line naming the file and nothing written, or (an edit that changes nothing)
exactly the results of the network the file states. Example counts are small (2-core CI);
tests/test_exported_verify.py covers each case of the issue deterministically.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exported_files import assert_refused_or_stated, base_bytes, edited_value, h5_datasets, h5_json, h5_replace

h5py = pytest.importorskip("h5py")

FUZZ = settings(max_examples=int(os.environ.get("QCFS_FUZZ_EXAMPLES", "12")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
KIND, SUFFIX, SOURCE = "nir", ".nir", "node/metadata/qcfs_header"  # fuzzed as JSON below


@functools.lru_cache(maxsize=1)
def _layout() -> tuple[list[str], list[str]]:
    """(dataset paths, group paths) of the valid file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{SUFFIX}"
        path.write_bytes(base_bytes(KIND))
        groups: list[str] = []
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: groups.append(name) if isinstance(obj, h5py.Group) else None)
        return h5_datasets(path, skip=(SOURCE,)), sorted(groups)


def _fresh(tmp: str) -> Path:
    path = Path(tmp) / f"m{SUFFIX}"
    path.write_bytes(base_bytes(KIND))
    return path


@FUZZ
@given(data=st.data())
def test_edited_datasets_are_refused_or_run_as_stated(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(_layout()[0]))
    with tempfile.TemporaryDirectory() as tmp:
        path = _fresh(tmp)
        h5_replace(path, key, lambda old: edited_value(data, old))
        assert_refused_or_stated(KIND, path)


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.lists(st.integers(-3, 3), max_size=4),
)


def _leaves(h: object, prefix: tuple = ()) -> list[tuple]:
    """Every leaf position of the header (dict keys / list indices)."""
    if isinstance(h, dict):
        return [p for k, v in h.items() for p in _leaves(v, prefix + (k,))] or [prefix]
    if isinstance(h, list):
        return [p for i, v in enumerate(h) for p in _leaves(v, prefix + (i,))] or [prefix]
    return [prefix]


@FUZZ
@given(data=st.data())
def test_edited_header_values_are_refused_or_run_as_stated(data: st.DataObject) -> None:
    """qcfs_header states the network (with the node arrays): a changed value is a changed network, refused
    unless it is valid and changes nothing the results depend on (then the results are the stated ones)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _fresh(tmp)

        def edit(header: dict) -> None:
            where = data.draw(st.sampled_from(_leaves(header)))
            node = header
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = data.draw(JSON_VALUES)
        h5_json(path, SOURCE, edit)
        assert_refused_or_stated(KIND, path)


@FUZZ
@given(data=st.data(), edit=st.sampled_from(["delete", "add", "soft", "external", "hard"]))
def test_structure_edits_are_refused(data: st.DataObject, edit: str) -> None:
    datasets, groups = _layout()
    with tempfile.TemporaryDirectory() as tmp:
        path = _fresh(tmp)
        with h5py.File(path, "r+") as f:
            if edit == "delete":
                del f[data.draw(st.sampled_from([*datasets, *groups]))]
            else:
                group = f[data.draw(st.sampled_from(groups))]
                link = {"add": lambda: np.zeros(data.draw(st.integers(0, 3)), np.int64),
                        "soft": lambda: h5py.SoftLink("/" + data.draw(st.sampled_from(datasets))),
                        "external": lambda: h5py.ExternalLink(str(path), "/" + data.draw(st.sampled_from(datasets))),
                        "hard": lambda: f[data.draw(st.sampled_from(groups))]}[edit]()
                group["fuzz"] = link
        assert assert_refused_or_stated(KIND, path)
