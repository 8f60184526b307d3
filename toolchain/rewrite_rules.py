"""onnxscript rewrite rules that recognise decomposed QCFS activations and fuse each into one qcfs::QCFS node.

One rule per pattern; spelling variants of the same pattern (Div(L) vs Mul(1/L), x·L/λ vs x/λ·L) are
`OrValue` alternatives inside the rule, operand order is handled by the rule set's `commute=True`, and
Max/Min clipping is turned into Clip first by onnxscript's own rules. Constants may be initializers or
(lifted) Constant nodes, possibly behind Identity (eliminated before matching by onnx-ir passes).

Patterns (λ, L, φ scalar constants; the two λ and the two L occurrences may be different values of equal
content, e.g. separate initializers):
  clip-first  : Mul(Div(Floor(Add(Mul(Clip(Div(x, λ), 0, 1), L), φ)), L), λ)        (the paper's code)
  floor-first : Mul(Clip(Div(Floor(Add(Div(Mul(x, L), λ), φ)), L), 0, 1), λ)         (the formula)
  straight-through floor: Add(a, Sub(Floor(a), a)) -> Floor(a)                      (STE written inline)
A structurally matched QCFS whose constants are invalid (λ ≤ 0 or non-finite, L not a positive integer)
raises QCFSError: such a file is not a QCFS network we could convert without silently changing it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.rules.common import max_min_rule, min_max_rule

from qcfs.errors import QCFSError
from qcfs.exporters.canonical import QCFS_DOMAIN, QCFS_OP

_RTOL = 1e-6
_LAM_IDS = itertools.count()


def _scalar(value: ir.Value | None) -> float | None:
    """The value of a size-1 constant (initializer or lifted Constant), else None."""
    if value is None or value.const_value is None:
        return None
    arr = value.const_value.numpy()
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        return None
    return float(arr.reshape(()))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_RTOL, abs_tol=0.0)


def _qcfs_constants(x: ir.Value, lam1: ir.Value, lam2: ir.Value, L1: ir.Value, down: ir.Value, down_kind: str,
                    phi: ir.Value, lo: ir.Value, hi: ir.Value) -> tuple[float | np.ndarray, int, float] | None:
    """(λ, L, φ) if the constants make a QCFS, None if they are not this pattern, QCFSError if invalid.
    λ is a float, or an array (per-channel clip levels, in the broadcasting shape the graph uses)."""
    vals = [_scalar(v) for v in (L1, down, phi, lo, hi)]
    lam_a, lam_b = _constant(lam1), _constant(lam2)
    if any(v is None for v in vals) or lam_a is None or lam_b is None:
        return None
    L, d, shift, low, high = vals  # type: ignore[misc]
    if lam_a.size == 1 and lam_b.size == 1:
        same = float(lam_a.reshape(-1)[0]) == float(lam_b.reshape(-1)[0])
    else:
        same = lam_a.shape == lam_b.shape and bool(np.array_equal(lam_a, lam_b))
    if low != 0.0 or high != 1.0 or not same:
        return None
    if not (0.0 <= shift < 1.0):  # the two orders agree only for 0 ≤ φ < 1 (docs/canonical_onnx.md)
        return None
    if d != L if down_kind == "div" else not _close(d * L, 1.0):
        return None
    where = x.name or "?"
    flat = lam_a.astype(np.float64).reshape(-1)
    bad = flat[~(np.isfinite(flat) & (flat > 0))]
    if bad.size:
        raise QCFSError(f"QCFS activation after '{where}' has clip level λ = {float(bad[0])}; λ must be positive "
                        "and finite")
    if L != round(L) or L < 1:
        raise QCFSError(f"QCFS activation after '{where}' has L = {L}; L must be a positive integer")
    lam: float | np.ndarray = float(flat[0]) if flat.size == 1 else lam_a.astype(np.float64)
    return lam, int(round(L)), shift


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """A non-empty numeric constant (initializer or lifted Constant), else None."""
    if value is None or value.const_value is None:
        return None
    arr = value.const_value.numpy()
    return arr if arr.size >= 1 and np.issubdtype(arr.dtype, np.number) else None


def _scale_down(op, level, L2, invL):  # type: ignore[no-untyped-def]
    """level / L, written as Div(level, L) or Mul(level, 1/L); `down_kind` says which matched."""
    return pattern.OrValue([op.Div(level, L2), op.Mul(level, invL)], tag_var="down_kind", tag_values=["div", "mul"])


def _constants(x, lam1, lam2, L1, phi, lo, hi, down_kind, L2=None, invL=None, **_):  # type: ignore[no-untyped-def]
    return _qcfs_constants(x, lam1, lam2, L1, L2 if down_kind == "div" else invL, down_kind, phi, lo, hi)


def _qcfs_check(context, **bindings) -> bool:  # type: ignore[no-untyped-def]
    return _constants(**bindings) is not None


def _qcfs_replacement(op, **bindings):  # type: ignore[no-untyped-def]
    found = _constants(**bindings)
    assert found is not None  # the check ran on the same bindings
    lam, L, shift = found
    name = f"qcfs_lam_{next(_LAM_IDS)}"  # unique (λ values may be shared); renamed after its layer later
    lam_init = op.initializer(ir.tensor(np.array(lam, dtype=np.float32)), name=name)
    return op.QCFS(bindings["x"], lam_init, L=L, shift=shift, _domain=QCFS_DOMAIN)


def _clip_first_pattern(op, x, lam1, lam2, L1, phi, lo, hi, L2, invL):  # type: ignore[no-untyped-def]
    y = op.Clip(op.Div(x, lam1), lo, hi)
    level = op.Floor(op.Add(op.Mul(y, L1), phi))
    return op.Mul(_scale_down(op, level, L2, invL), lam2)


def _floor_first_pattern(op, x, lam1, lam2, L1, phi, lo, hi, L2, invL):  # type: ignore[no-untyped-def]
    scaled = pattern.OrValue([op.Div(op.Mul(x, L1), lam1), op.Mul(op.Div(x, lam1), L1)])
    level = op.Floor(op.Add(scaled, phi))
    return op.Mul(op.Clip(_scale_down(op, level, L2, invL), lo, hi), lam2)


def _qcfs_rule(target, name: str) -> pattern.RewriteRule:  # type: ignore[no-untyped-def]
    return pattern.RewriteRule(target, _qcfs_replacement, _qcfs_check, name=name)


def _ste_floor_pattern(op, a):  # type: ignore[no-untyped-def]
    return op.Add(a, op.Sub(op.Floor(a), a))


def _ste_floor_replacement(op, a):  # type: ignore[no-untyped-def]
    return op.Floor(a)


ste_floor_rule = pattern.RewriteRule(_ste_floor_pattern, _ste_floor_replacement, name="StraightThroughFloor")
qcfs_clip_first_rule = _qcfs_rule(_clip_first_pattern, "QCFSClipFirst")
qcfs_floor_first_rule = _qcfs_rule(_floor_first_pattern, "QCFSFloorFirst")

# Order matters only across rule sets: normalise (STE, Max/Min) first, then fuse.
# Max/Min -> Clip are onnxscript's rules; they handle operand order themselves (variadic Max/Min).
NORMALIZE_RULES = pattern.RewriteRuleSet([*ste_floor_rule.commute(), min_max_rule, max_min_rule])
QCFS_RULES = pattern.RewriteRuleSet([qcfs_clip_first_rule, qcfs_floor_first_rule], commute=True)


def is_qcfs(node: ir.Node) -> bool:
    return node.domain == QCFS_DOMAIN and node.op_type == QCFS_OP
