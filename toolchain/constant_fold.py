"""Constants first: graphs exported without constant folding canonicalise like folded ones.

Why: the legacy TorchScript exporter with do_constant_folding=False (and hand-built graphs) hide plain
constants behind Cast/Constant/Identity chains (`Clip(x, Cast(0), Cast(1))`) and compute the flatten's target
shape at run time (`Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))`). The QCFS patterns need
constant operands and the lifter needs a constant Reshape target, so before fusion:
  * onnxscript's constant folder evaluates every all-constant subgraph (Cast of a constant, Shape of a
    static-shaped value, Concat/Unsqueeze/Gather of constants). It only folds nodes whose inputs are ALL
    constant, so λ — an initializer that meets the activation in Div(x, λ)/Mul(·, λ) — is never multiplied
    into a weight: QCFS fusion still sees it as the clip level;
  * one rewrite rule turns the run-time flatten `Reshape(x, [dim0(x), -1])` (dim0 read from the SAME x by
    Shape→Gather(0) or Shape(start=0, end=1)) into Flatten(x, axis=1), which it provably equals.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript import optimizer
from onnxscript.rewriter import pattern


def _is_const(value: ir.Value | None, want: list[int]) -> bool:
    if value is None or value.const_value is None:
        return False
    arr = value.const_value.numpy()
    return arr.dtype.kind in "iu" and arr.reshape(-1).tolist() == want


def _flatten_gather(op, x, zero, axes, minus_one):  # type: ignore[no-untyped-def]
    batch = op.Unsqueeze(op.Gather(op.Shape(x), zero, _allow_other_attributes=True), axes)
    return op.Reshape(x, op.Concat(batch, minus_one, axis=0), _allow_other_attributes=True)


def _flatten_gather_check(context, x, zero, axes, minus_one, **_) -> bool:  # type: ignore[no-untyped-def]
    return _is_const(zero, [0]) and _is_const(axes, [0]) and _is_const(minus_one, [-1])


def _flatten_slice(op, x, minus_one):  # type: ignore[no-untyped-def]
    batch = op.Shape(x, start=0, end=1)
    return op.Reshape(x, op.Concat(batch, minus_one, axis=0), _allow_other_attributes=True)


def _flatten_slice_check(context, x, minus_one, **_) -> bool:  # type: ignore[no-untyped-def]
    return _is_const(minus_one, [-1])


def _to_flatten(op, x, **_):  # type: ignore[no-untyped-def]
    return op.Flatten(x, axis=1)


RUNTIME_FLATTEN_RULES = pattern.RewriteRuleSet([
    pattern.RewriteRule(_flatten_gather, _to_flatten, _flatten_gather_check, name="RuntimeFlattenGather"),
    pattern.RewriteRule(_flatten_slice, _to_flatten, _flatten_slice_check, name="RuntimeFlattenSlice"),
])


def fold_constants(model: ir.Model) -> None:
    """Evaluate all-constant subgraphs, then rewrite run-time flattens (see the module docstring)."""
    optimizer.fold_constants(model)
    RUNTIME_FLATTEN_RULES.apply_to_model(model)
