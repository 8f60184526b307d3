"""Which test samples a `--limit N` run sees.

Why not a prefix: ImageFolder copies of CIFAR-10 are sorted by class, so the first N samples are one or two
classes and the accuracy of a prefix says little about the set (the project's own early GPU numbers fell into
it). The default rule "spread" takes N indices evenly over the whole set, deterministically
(round(linspace(0, n-1, N))): the same N always gives the same samples, each class contributes in
proportion when the set is sorted by class, and N = n is the whole set in order. "prefix" keeps the old
behaviour (the first N) for comparisons with earlier runs.
"""

from __future__ import annotations

import numpy as np

RULES = ("spread", "prefix")


def subset_indices(n: int, limit: int | None, rule: str = "spread") -> np.ndarray:
    """Sorted, distinct int64 indices into a set of `n` samples; all of them when `limit` is None or ≥ n."""
    if rule not in RULES:
        raise ValueError(f"subset rule must be one of {RULES}, got {rule!r}")
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if rule == "prefix":
        return np.arange(limit, dtype=np.int64)
    # exact integer form of rint(linspace(0, n-1, limit)): distinct because the step (n-1)/(limit-1) >= 1
    if limit == 1:
        return np.zeros(1, dtype=np.int64)
    k = np.arange(limit, dtype=np.int64)
    return (2 * k * (n - 1) + (limit - 1)) // (2 * (limit - 1))


def describe(n: int, limit: int | None, rule: str) -> dict:
    """What the --json output records about the subset: rule, set size and the indices (None: all)."""
    idx = subset_indices(n, limit, rule)
    full = len(idx) == n
    return {"rule": "all" if full else rule, "of": int(n), "count": int(len(idx)),
            "indices": None if full else idx.tolist()}
