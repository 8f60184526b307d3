"""User-facing errors: every bad input becomes one line and exit code 2, never a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., int | None])


class QCFSError(Exception):
    """An error caused by the user's input (file, flag, data); printed as one line, exit code 2."""

    exit_code = EXIT_USAGE


class UnsupportedOpError(QCFSError):
    """The graph holds an op the toolchain cannot convert; the message names node and op."""


class ModelFileError(QCFSError):
    """A model file is missing, not ONNX/checkpoint/IntNet, truncated or corrupt."""


class DatasetError(QCFSError):
    """A dataset is missing or malformed; the message says where we looked and how to get it."""


class HardwareFitError(QCFSError):
    """A weight, bias, threshold or membrane value does not fit the hardware profile (names the layer)."""


class BackendError(QCFSError):
    """A backend (e.g. the Lava simulator subprocess) failed, timed out or is not installed."""


def cli_entry(func: F) -> F:
    """Wrap a console-script `main` so QCFSError (and Ctrl-C) become one line on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        prog = func.__module__.rsplit(".", 1)[-1]
        try:
            return func(*args, **kwargs) or 0
        except QCFSError as err:
            print(f"qcfs-{prog}: error: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt:
            print(f"qcfs-{prog}: interrupted", file=sys.stderr)
            return 130

    return wrapper  # type: ignore[return-value]
