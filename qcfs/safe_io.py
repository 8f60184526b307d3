"""File rules every CLI follows, in one place: what may be read, where results may be written, and how.

Why: a model path can name a FIFO (open() blocks forever), a symlink to /dev/zero (reads never end), or a
.npz whose members declare gigabytes; an output path can name the user's own model, a directory, a device
node or a folder that does not exist. Each is refused here with one line, *before* any work is done, and
results are written to a temporary file in the target folder that replaces the target only on success
(an interrupted or failed run leaves the old file untouched and no partial file behind).

Rules:
  * inputs must be regular files (symlinks are followed); zip/npz members may declare at most
    `max_unpacked_bytes()` in total (QCFS_MAX_UNPACKED_MB overrides the 4096 MB default);
  * an output is a regular file or a new path in an existing, writable folder, and never the same file
    (os.path.samefile, or the same resolved path) as any input or any other output.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from qcfs.errors import ModelFileError, QCFSError

DEFAULT_MAX_UNPACKED_MB = 4096  # VGG-16 as an int64 IntNet is ~120 MB; 4 GB leaves room, stops bombs


def max_unpacked_bytes() -> int:
    raw = os.environ.get("QCFS_MAX_UNPACKED_MB")
    try:
        mb = float(raw) if raw else DEFAULT_MAX_UNPACKED_MB
    except ValueError:
        raise QCFSError(f"QCFS_MAX_UNPACKED_MB must be a number of megabytes, got {raw!r}") from None
    if not mb > 0 or mb == float("inf"):
        raise QCFSError(f"QCFS_MAX_UNPACKED_MB must be a positive finite number, got {raw!r}")
    return int(mb * (1 << 20))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def regular_input(path: str | os.PathLike, what: str = "model file",
                  error: type[QCFSError] = ModelFileError, label: str | None = None) -> Path:
    """`path` if it is (a symlink to) an existing regular file; else one-line `error`, which starts with
    `label` (default: the path). Never opens it."""
    p = Path(path)
    label = label or str(p)
    try:
        st = p.stat()  # follows symlinks: a link to /dev/zero is a character device
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except OSError as err:
        raise error(f"{label}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(st.st_mode):
        target = f" (-> {os.path.realpath(p)})" if p.is_symlink() else ""
        raise error(f"{label}{target}: is {_kind(st.st_mode)}, expected a regular {what}")
    return p


def read_json(path: str | os.PathLike, label: str, error: type[QCFSError] = QCFSError) -> object:
    """The JSON document in the regular file `path`; a missing, non-regular, unreadable or non-JSON file is one
    line `error` prefixed with `label` (the flag or variable that named the file)."""
    regular_input(path, "JSON file", error, label)
    try:
        return json.loads(Path(path).read_text())
    except OSError as err:
        raise error(f"{label}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise error(f"{label}: not JSON ({err})") from None


def declared_unpacked_bytes(source: str | os.PathLike | IO[bytes]) -> int | None:
    """What the members of a zip/npz declare uncompressed, in bytes (None: not a readable zip)."""
    try:
        if hasattr(source, "seek"):
            source.seek(0)  # type: ignore[union-attr]
        with zipfile.ZipFile(source) as zf:
            return sum(max(0, i.file_size) for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None


def check_zip_members(source: str | os.PathLike | IO[bytes], name: str | None = None,
                      error: type[QCFSError] = ModelFileError) -> None:
    """Refuse a zip/npz whose members declare more than `max_unpacked_bytes()` uncompressed, before any
    member is inflated. Python's zipfile stops at the declared size, so the declaration bounds the memory.
    Not a zip: nothing to check (the reader gives its own error)."""
    label = name or str(source)
    cap = max_unpacked_bytes()
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    total = sum(max(0, i.file_size) for i in infos)
    if total > cap:
        big = max(infos, key=lambda i: i.file_size)
        raise error(f"{label}: its members would unpack to {total / (1 << 20):.0f} MB (largest: {big.filename}, "
                    f"{big.file_size / (1 << 20):.0f} MB), over the {cap / (1 << 20):.0f} MB limit; "
                    "refusing to decompress (QCFS_MAX_UNPACKED_MB raises the limit)")


def safe_model_input(path: str | os.PathLike) -> Path:
    """A model file that is safe to open: regular, and (if a zip: .pt/.npz) not a decompression bomb."""
    p = regular_input(path, "model file")
    check_zip_members(p)
    return p


# --- outputs --------------------------------------------------------------------------------------------
def same_file(a: Path, b: Path) -> bool:
    """Same file on disk (os.path.samefile when both exist), else the same resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (),
                 others: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse (one line, QCFSError) an output path that would destroy something or fail after the work:
    an input or another output, a directory or non-regular file, a missing or unwritable folder.
    Returns the path to write (a symlink resolved to its target, so the link keeps working)."""
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise QCFSError(f"{flag} {path!r}: not a file name")
    real = Path(os.path.realpath(p))
    for other in inputs:
        if other is None:
            continue
        if same_file(p, Path(other)):
            raise QCFSError(f"{flag} {p}: is the input {other}; refusing to overwrite an input, choose another path")
        if Path(other).is_dir() and real.is_relative_to(os.path.realpath(other)):
            raise QCFSError(f"{flag} {p}: is inside the input folder {other}; choose a path outside it")
    for other in others:
        if other is not None and same_file(p, Path(other)):
            raise QCFSError(f"{flag} {p}: is also the path of another output ({other}); give each output its own path")
    try:
        st = real.stat()
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise QCFSError(f"{flag} {p}: cannot check ({err.strerror or err})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise QCFSError(f"{flag} {p}: is {_kind(st.st_mode)}; outputs must be regular files or new paths")
    folder = real.parent
    if not folder.is_dir():
        raise QCFSError(f"{flag} {p}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise QCFSError(f"{flag} {p}: folder {folder} is not writable")
    _probe_folder(folder, f"{flag} {p}")
    return real


def _probe_folder(folder: Path, label: str) -> None:
    """Create and remove one temporary file in `folder`: access() says yes to root everywhere and to pseudo
    file systems (/proc, /sys) that refuse new files, so only trying tells, before any work is done."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".qcfs-probe.", suffix=".tmp-probe")
    except OSError as err:
        raise QCFSError(f"{label}: cannot create files in {folder} ({err.strerror or err}); choose another "
                        "folder") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_output_dir(path: str | os.PathLike, flag: str, names: Iterable[str],
                     inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """A folder of outputs (--report DIR): an existing directory or a new one in a writable folder, and none of
    the files it will receive (`names`) may be an input."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise QCFSError(f"{flag} {p}: exists and is not a directory")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise QCFSError(f"{flag} {p}: directory is not writable")
        _probe_folder(p, f"{flag} {p}")
    else:
        parent = Path(os.path.realpath(p)).parent
        if not parent.is_dir():
            raise QCFSError(f"{flag} {p}: folder {parent} does not exist; create it first")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise QCFSError(f"{flag} {p}: folder {parent} is not writable")
        _probe_folder(parent, f"{flag} {p}")
    inputs = [i for i in inputs if i is not None]
    for name in names:
        for other in inputs:
            if same_file(p / name, Path(other)):
                raise QCFSError(f"{flag} {p}: would overwrite the input {other} ({name}); choose another folder")
    return p


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path in `target`'s folder (same name ending, so writers that look at the suffix
    behave); on success it replaces `target` atomically (os.replace), on any exception it is removed."""
    target = Path(os.path.realpath(target))
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp-{target.name}")
    except OSError as err:
        raise QCFSError(f"{target}: cannot create files in {target.parent} ({err.strerror or err}); choose "
                        "another folder") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _default_mode(tmp, target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _default_mode(tmp: Path, target: Path) -> None:
    """mkstemp creates 0600; give the file the mode a plain open() would (or the replaced file's)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike, text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))
