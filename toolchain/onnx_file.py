"""Read an ONNX file defensively: every way a file can be bad becomes one ModelFileError line.

External data is checked before anything is read from it: each tensor's `location` must be a relative path
that resolves (symlinks included) inside the model's folder, name an existing file, and fit offset/length,
because onnx.load would otherwise open whatever path a downloaded model names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from qcfs.errors import ModelFileError


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for g in attr.graphs:
            yield from _graph_tensors(g)


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in the model, including Constant attributes, subgraphs and function bodies."""
    yield from _graph_tensors(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node)


def _check_external(tensor: onnx.TensorProto, base: Path, path: Path) -> None:
    info = {e.key: e.value for e in tensor.external_data}
    where = f"{path}: initializer '{tensor.name}'"
    loc = info.get("location", "")
    if not loc:
        raise ModelFileError(f"{where} is stored externally but names no file")
    if os.path.isabs(loc) or Path(loc).drive:
        raise ModelFileError(f"{where} points to an absolute path ({loc}); external data must lie in the model's folder")
    target = (base / loc).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ModelFileError(f"{where} points outside the model's folder ({loc}); refusing to read it")
    if not target.is_file():
        raise ModelFileError(f"{where}: external data file {loc} not found next to the model")
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
    except ValueError:
        raise ModelFileError(f"{where}: malformed external data offset/length") from None
    size = target.stat().st_size
    if offset < 0 or offset > size or (length >= 0 and offset + length > size):
        raise ModelFileError(f"{where}: external data {loc} is shorter than offset+length (truncated?)")


def read_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse `path` (weights loaded, external data checked first) or raise ModelFileError."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, expected an ONNX file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: not an ONNX model, or truncated/corrupt protobuf ({type(err).__name__})") from None
    # random or truncated bytes can parse as an (almost) empty message: demand the parts every model has
    if model.ir_version <= 0 or not model.opset_import or not model.graph.node or not model.graph.output:
        raise ModelFileError(f"{path}: not an ONNX model, or truncated/corrupt protobuf (no graph/opset)")
    external = [t for t in all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        _check_external(tensor, path.parent, path)
    if external:
        try:
            external_data_helper.load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError) as err:
            raise ModelFileError(f"{path}: cannot load external data ({err})") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(f"{path}: invalid ONNX model ({first[:200]})") from None
    return model
