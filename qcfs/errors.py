"""User-facing errors: every bad input becomes one line and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
import warnings
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


def out_of_memory_message(err: BaseException) -> str | None:
    """What an allocation failure needed, in one line: NumPy's MemoryError says how much and for what shape;
    torch's CPU allocator raises RuntimeError with "can't allocate memory". None for any other error."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, MemoryError):
        return text or "an allocation failed"
    if isinstance(err, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text):
        return text[:200]
    return None


def cli_entry(func: F) -> F:
    """Wrap a console-script `main` so QCFSError (and Ctrl-C, SIGTERM, running out of memory) become one line
    on stderr and an exit code, after the stack has unwound (temporary files and subprocesses cleaned up).
    Loaders that know which file needed the memory say so themselves (e.g. qcfs.intnet.load_intnet); this
    catches what is left, so that no MemoryError ever reaches the user as a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        # Python warnings (a library's RuntimeWarning on the bad values that the error then names, torch's
        # notes on a pickle it was asked to read) are held back: a refusal is its one line alone, a run that
        # goes on to succeed prints them at the end, and an unexpected error after them as well.
        with warnings.catch_warnings(record=True) as held:
            try:
                with _terminate_as_exception():
                    code = func(*args, **kwargs) or 0
            except (QCFSError, KeyboardInterrupt, Terminated, MemoryError, RuntimeError) as err:
                if isinstance(err, RuntimeError) and out_of_memory_message(err) is None:
                    _replay(held)
                raise
            except BaseException:
                _replay(held)
                raise
        _replay(held)
        return code

    @functools.wraps(func)
    def outer(*args, **kwargs):  # type: ignore[no-untyped-def]
        prog = func.__module__.rsplit(".", 1)[-1]
        try:
            return wrapper(*args, **kwargs)
        except QCFSError as err:
            print(f"qcfs-{prog}: error: {err}", file=sys.stderr)
            return err.exit_code
        except (MemoryError, RuntimeError) as err:
            need = out_of_memory_message(err)
            if need is None:
                raise
            print(f"qcfs-{prog}: error: out of memory ({need}); try fewer samples or a smaller batch where the "
                  "command takes them (--limit, --batch), or a machine with more free memory", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"qcfs-{prog}: interrupted", file=sys.stderr)
            return 130
        except Terminated as sig:
            print(f"qcfs-{prog}: terminated by signal {sig.signum}", file=sys.stderr)
            return 128 + sig.signum

    return outer  # type: ignore[return-value]


def _replay(held: list[warnings.WarningMessage]) -> None:
    """Show warnings that catch_warnings(record=True) held back, as they would have been shown."""
    for w in held:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
