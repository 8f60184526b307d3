"""User-facing errors: every bad input becomes one line and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
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


class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived: unwinds the stack like Ctrl-C so every `finally` (temp folders, the Lava
    worker's process group, half-written outputs) is cleaned up before the exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _terminate_as_exception():  # type: ignore[no-untyped-def]
    """While a CLI runs, SIGTERM and SIGHUP raise Terminated (the default action kills without cleanup)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def cli_entry(func: F) -> F:
    """Wrap a console-script `main` so QCFSError (and Ctrl-C, SIGTERM) become one line on stderr and an exit
    code, after the stack has unwound (temporary files and subprocesses cleaned up)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        prog = func.__module__.rsplit(".", 1)[-1]
        try:
            with _terminate_as_exception():
                return func(*args, **kwargs) or 0
        except QCFSError as err:
            print(f"qcfs-{prog}: error: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt:
            print(f"qcfs-{prog}: interrupted", file=sys.stderr)
            return 130
        except Terminated as sig:
            print(f"qcfs-{prog}: terminated by signal {sig.signum}", file=sys.stderr)
            return 128 + sig.signum

    return wrapper  # type: ignore[return-value]
