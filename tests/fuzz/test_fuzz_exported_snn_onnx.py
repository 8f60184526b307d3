"""Fuzz (hypothesis): edited `.snn.onnx` files (issue 22, section 3 class 2).

`--backend ort` runs the graph; the network is stated by the metadata. Any edit of the graph (an initializer
value — weights, v_init, thresholds inside Scan bodies are attributes' graphs —, a node attribute, an added
node, an output, the opset, the recorded kernels) must give, through the real qcfs-run: exit 2 with one line
naming the file and nothing written, or exactly the results of the network the file states. Example counts
are small (2-core CI); tests/test_exported_verify.py covers each case of the issue deterministically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exported_files import assert_refused_or_stated, base_bytes, edited_value

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import AttributeProto, helper, numpy_helper  # noqa: E402

FUZZ = settings(max_examples=int(os.environ.get("QCFS_FUZZ_EXAMPLES", "12")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
KIND = "snn-onnx"


def _run_edited(edit) -> bool:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.snn.onnx"
        model = onnx.load_model_from_string(base_bytes(KIND))
        edit(model)
        path.write_bytes(model.SerializeToString())
        return assert_refused_or_stated(KIND, path)


def _graphs(model) -> list:  # type: ignore[no-untyped-def]
    """The main graph and every Scan body (the IF recurrences: θ, limits live there)."""
    out, stack = [], [model.graph]
    while stack:
        g = stack.pop()
        out.append(g)
        stack += [a.g for n in g.node for a in n.attribute if a.type == AttributeProto.GRAPH]
    return out


@FUZZ
@given(data=st.data())
def test_edited_initializers_are_refused_or_run_as_stated(data: st.DataObject) -> None:
    def edit(model) -> None:  # type: ignore[no-untyped-def]
        graphs = [g for g in _graphs(model) if len(g.initializer)]
        g = data.draw(st.sampled_from(graphs))
        t = data.draw(st.sampled_from(list(g.initializer)))
        new = edited_value(data, numpy_helper.to_array(t))
        if isinstance(new, (bytes, str)):
            new = np.frombuffer(new.encode() if isinstance(new, str) else new, np.uint8)
        t.CopyFrom(numpy_helper.from_array(np.asarray(new), t.name))
    _run_edited(edit)


@FUZZ
@given(data=st.data())
def test_edited_node_attributes_are_refused_or_run_as_stated(data: st.DataObject) -> None:
    def edit(model) -> None:  # type: ignore[no-untyped-def]
        nodes = [n for g in _graphs(model) for n in g.node
                 if any(a.type in (AttributeProto.INT, AttributeProto.INTS) for a in n.attribute)]
        node = data.draw(st.sampled_from(nodes))
        attr = data.draw(st.sampled_from([a for a in node.attribute
                                          if a.type in (AttributeProto.INT, AttributeProto.INTS)]))
        value = data.draw(st.integers(-3, 20))
        if attr.type == AttributeProto.INT:
            attr.i = value
        elif len(attr.ints):
            attr.ints[data.draw(st.integers(0, len(attr.ints) - 1))] = value
    _run_edited(edit)


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["add node", "drop output", "rename output", "opset", "kernels",
                                             "drop node"]))
def test_graph_edits_are_refused(data: st.DataObject, kind: str) -> None:
    def edit(model) -> None:  # type: ignore[no-untyped-def]
        g = model.graph
        if kind == "add node":  # an Identity on an output: same values, a different graph
            out = data.draw(st.sampled_from([o.name for o in g.output]))
            for node in g.node:
                node.output[:] = [f"{out}_pre" if o == out else o for o in node.output]
            g.node.append(helper.make_node("Identity", [f"{out}_pre"], [out]))
        elif kind == "drop output":
            del g.output[data.draw(st.integers(0, len(g.output) - 1))]
        elif kind == "rename output":
            g.output[data.draw(st.integers(0, len(g.output) - 1))].name = "renamed"
        elif kind == "opset":
            model.opset_import[0].version = data.draw(st.integers(1, 99).filter(lambda v: v != 17))
        elif kind == "kernels":
            for p in model.metadata_props:
                if p.key == "qcfs_kernels":
                    p.value = data.draw(st.sampled_from(["float32", "auto", "", "int4"]))
        else:
            del g.node[data.draw(st.integers(0, len(g.node) - 1))]
    assert _run_edited(edit)
