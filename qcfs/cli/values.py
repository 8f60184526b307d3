"""argparse value types that refuse what would crash or silently misbehave later: NaN, ±inf, numbers out of
range, integers written as floats. Each returns a callable for `type=`; a bad value becomes argparse's one-line
error (exit 2) naming the flag, instead of a traceback deep in training or simulation."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           what: str = "a number") -> Callable[[str], float]:
    """A finite float in [lo, hi] (lo excluded when `lo_open`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {text}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi:g}, got {text}")
        return value

    return parse


def integer(lo: int, hi: int, what: str = "an integer") -> Callable[[str], int]:
    """An integer in [lo, hi], written as an integer (no '1e20', no '4.0')."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in {lo}..{hi}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} in {lo}..{hi}, got {value}")
        return value

    return parse


MAX_L = 1024  # QCFS levels: the paper uses 2..32; 1024 leaves headroom, 1e20 is a typo (and overflows floats)
MAX_SEED = 2**32 - 1  # numpy's seed range (torch accepts more; the trainer seeds both)
MAX_TIMEOUT_S = 30 * 24 * 3600.0  # a month: beyond that a "timeout" is a typo

L_VALUE = integer(1, MAX_L, "a number of quantization levels")
SEED = integer(0, MAX_SEED, "a seed")
