"""`--download`: fetch CIFAR-10 (python version) and Fashion-MNIST from their official locations, as users do.

What it promises: nothing is fetched unless asked; data already there is never fetched again; a file appears
under its final name only after its published checksum matched (the transfer goes to `<file>.part`, which is
resumed with an HTTP Range request next time, or restarted when the server ignores Range); an archive is
unpacked into a temporary folder next to the target and renamed into place, so a half-unpacked tree never
looks complete; the tar members are checked first (no absolute paths, no `..`, no links or devices, nothing
outside the expected top folder, capped sizes). Every failure is one DatasetError line naming the URL and
the file and saying what to do.

Why hand-written (stdlib urllib + hashlib + tarfile) and not a library: pooch (1.9.0, on PyPI and installable
here) does the checksum, the atomic rename and a tqdm bar, but it has no Range resume (its HTTPDownloader always
starts from byte 0, a 170 MB CIFAR archive on a flaky link never finishes), and it pulls in requests,
platformdirs and packaging for what is ~200 lines here. torchvision's download_url has neither resume nor an
atomic unpack and would make the NumPy-only data path import torch.

Where sources come from (precedence): an entry of the JSON file named by QCFS_DOWNLOAD_MANIFEST (for mirrors
that host other builds, e.g. a re-packed archive, and for tests: URL *and* md5 must both be given, and a notice
on stderr says the checksums are not the official ones), else QCFS_DOWNLOAD_MIRROR (a base URL; the file name
is appended; checksums stay the official ones), else the official URL below.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from qcfs.errors import DatasetError
from qcfs.safe_io import read_json

TIMEOUT_S = 60.0  # per socket operation (connect, each read); a stalled server fails in one line, resumable
CHUNK = 1 << 20
MAX_DOWNLOAD_BYTES = 1 << 30  # one file: the real ones are <= 170 MB; a server that sends more is refused
MAX_UNPACKED_BYTES = 1 << 30  # CIFAR-10 unpacks to ~180 MB
MAX_MEMBERS = 1000  # the official archive holds 9 entries
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


@dataclass(frozen=True)
class Source:
    name: str  # file name in the data folder (the loader expects exactly these names)
    url: str
    md5: str


# Checksums copied from their publishers, never guessed (checked 2026-12-02):
# CIFAR-10: the "Download" table of https://www.cs.toronto.edu/~kriz/cifar.html ("CIFAR-10 python version,
# 163 MB, c58f30108f718f92721af3b95e74349a"), the same URL and md5 as torchvision/datasets/cifar.py
# (CIFAR10.url / tgz_md5).
# Fashion-MNIST: URLs and md5s from the "Get the Data" table of the README of
# https://github.com/zalandoresearch/fashion-mnist, identical to torchvision/datasets/mnist.py
# (FashionMNIST.mirrors / resources). That host serves plain http only; the md5 is what makes it trustworthy.
_FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MANIFEST: dict[str, tuple[Source, ...]] = {
    "cifar10": (
        Source("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
               "c58f30108f718f92721af3b95e74349a"),
    ),
    "fashion-mnist": (
        Source("train-images-idx3-ubyte.gz", _FASHION_BASE + "train-images-idx3-ubyte.gz",
               "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Source("train-labels-idx1-ubyte.gz", _FASHION_BASE + "train-labels-idx1-ubyte.gz",
               "25c81989df183df01b3e8a0aad5dffbe"),
        Source("t10k-images-idx3-ubyte.gz", _FASHION_BASE + "t10k-images-idx3-ubyte.gz",
               "bef4ecab320f06d8554ea6380940ec79"),
        Source("t10k-labels-idx1-ubyte.gz", _FASHION_BASE + "t10k-labels-idx1-ubyte.gz",
               "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
}


def cache_dir(dataset: str) -> Path:
    """Where downloads go without --data-dir: ($QCFS_CACHE_DIR or ~/.cache/qcfs)/<dataset>."""
    return Path(os.environ.get("QCFS_CACHE_DIR", Path.home() / ".cache" / "qcfs")) / dataset


def ensure_dataset(dataset: str, data_dir: str | os.PathLike | None, *, progress: bool = True) -> str | None:
    """For `--download`: make `dataset` present and return the data folder the loader should read (the one
    given, else the usual location if the data is there, else the cache folder). Fetches only what is missing."""
    if dataset == "digits":
        return None if data_dir is None else str(data_dir)  # bundled with scikit-learn: nothing to fetch
    if dataset == "imagenet":
        raise DatasetError("imagenet: --download is not possible (ILSVRC-2012 needs a registration at "
                           "https://image-net.org/download.php); download it there, unpack train/ and val/ "
                           "into class folders and pass --data-dir DIR")
    if dataset not in MANIFEST:
        raise DatasetError(f"--download: no download source for dataset {dataset!r}")
    root = _target_dir(dataset, data_dir)
    if dataset == "cifar10":
        if not _cifar_present(root):
            _prepare_dir(root)
            with _lock(root):
                if not _cifar_present(root):
                    _fetch_cifar(root, sources(dataset)[0], progress)
    else:
        if not all(_fashion_file_present(root, s.name) for s in MANIFEST[dataset]):
            _prepare_dir(root)
            with _lock(root):
                for src in sources(dataset):
                    if not _fashion_file_present(root, src.name):
                        fetch(src, root, progress)
    return str(root)


def _target_dir(dataset: str, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("QCFS_CIFAR10_DIR" if dataset == "cifar10" else "QCFS_FASHION_MNIST_DIR")
    if env:
        return Path(env)
    if dataset == "fashion-mnist":
        from qcfs.data import DATASETS

        system = Path(DATASETS["fashion-mnist"].default_dir or "")
        if all(_fashion_file_present(system, s.name) for s in MANIFEST["fashion-mnist"]):
            return system  # the Debian package is installed: use it, fetch nothing
    return cache_dir(dataset)


def _fashion_file_present(root: Path, name: str) -> bool:
    return (root / name).is_file() or (root / name.removesuffix(".gz")).is_file()


def _cifar_present(root: Path) -> bool:
    """Everything the CIFAR-10 loader reads is there: all six pickle batches, or an ImageFolder tree."""
    for base in (root, root / CIFAR_FOLDER):
        if all((base / b).is_file() for b in CIFAR_BATCHES):
            return True
    return any((base / "train").is_dir() and (base / "test").is_dir() for base in (root, root / "cifar10"))


def _prepare_dir(root: Path) -> None:
    """The data folder exists (created if missing) and is a writable directory; else one line."""
    if root.exists() and not root.is_dir():
        raise DatasetError(f"--download: data folder {root} exists and is not a directory; pass --data-dir with "
                           "a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"--download: cannot create the data folder {root} ({err.strerror or err})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise DatasetError(f"--download: data folder {root} is not writable; pass --data-dir with a writable folder")


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """One download per data folder at a time: two processes appending to one .part would corrupt it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(root, os.O_RDONLY)  # the folder itself is the lock: no lock file is left behind
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DatasetError(f"--download: another download into {root} is running; wait for it to finish") from None
        yield
    finally:
        os.close(fd)  # releases the lock


# --- sources --------------------------------------------------------------------------------------------
def sources(dataset: str) -> tuple[Source, ...]:
    """The dataset's files with the URL and checksum to use (see the module docstring for the precedence)."""
    mirror = os.environ.get("QCFS_DOWNLOAD_MIRROR", "").strip()
    if mirror:
        _check_url(mirror, "QCFS_DOWNLOAD_MIRROR")
    override = _manifest_override(dataset)
    out = []
    for src in MANIFEST[dataset]:
        if src.name in override:
            out.append(override[src.name])
        elif mirror:
            out.append(Source(src.name, mirror.rstrip("/") + "/" + src.name, src.md5))
        else:
            out.append(src)
    return tuple(out)


def _check_url(url: str, what: str) -> None:
    if not re.match(r"https?://[^/\s]+", url):
        raise DatasetError(f"{what}: {url!r} is not an http:// or https:// URL")


def _manifest_override(dataset: str) -> dict[str, Source]:
    path = os.environ.get("QCFS_DOWNLOAD_MANIFEST")
    if not path:
        return {}
    what = f"QCFS_DOWNLOAD_MANIFEST={path}"
    doc = read_json(path, what, DatasetError)
    if not isinstance(doc, dict) or not all(k in MANIFEST for k in doc):
        raise DatasetError(f"{what}: expected an object with keys among {', '.join(MANIFEST)}, each mapping file "
                           'names to {"url": ..., "md5": ...}')
    entries = doc.get(dataset, {})
    known = {s.name for s in MANIFEST[dataset]}
    if not isinstance(entries, dict):
        raise DatasetError(f"{what}: {dataset!r} must map file names to {{\"url\": ..., \"md5\": ...}}")
    out = {}
    for name, entry in entries.items():
        if name not in known:
            raise DatasetError(f"{what}: {dataset} has no file {name!r}; its files are {', '.join(sorted(known))}")
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or \
                not re.fullmatch(r"[0-9a-f]{32}", str(entry.get("md5", "")).lower()):
            raise DatasetError(f"{what}: {dataset}/{name} needs a \"url\" and a 32-hex-digit \"md5\"")
        _check_url(entry["url"], f"{what}: {dataset}/{name}")
        out[name] = Source(name, entry["url"], entry["md5"].lower())
    if out:
        print(f"qcfs: --download: {', '.join(sorted(out))} from {what} (checksums from that file, not the "
              "official ones)", file=sys.stderr)
    return out


# --- one file -------------------------------------------------------------------------------------------
def fetch(src: Source, root: Path, progress: bool = True) -> Path:
    """`root/src.name`, downloaded via `<name>.part` (resumed if present) and renamed only once its md5 matches."""
    final, part = root / src.name, root / (src.name + ".part")
    if part.is_symlink() or (part.exists() and not part.is_file()):  # never truncate what a link points at
        raise DatasetError(f"--download: {part} is a link or not a regular file; remove it and run again")
    offset = part.stat().st_size if part.is_file() else 0
    print(f"qcfs: --download: {src.url} -> {final}" + (f" (resuming at byte {offset})" if offset else ""),
          file=sys.stderr)
    try:
        resp = _open(src.url, offset)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise _http_error(src, err) from None
        # 416: nothing after `offset`: the .part may be complete already (else it is stale): check, else restart
        if md5_of(part) == src.md5:
            return _install(part, final)
        part.unlink()
        offset = 0
        try:
            resp = _open(src.url, 0)
        except urllib.error.HTTPError as err2:
            raise _http_error(src, err2) from None
    with resp:
        status = resp.status
        if offset and status == 206 and _range_start(resp) != offset:
            raise DatasetError(f"{src.url}: the server answered the resume request for {part} with another range "
                               f"({resp.headers.get('Content-Range')}); delete {part} and run again")
        if offset and status != 206:  # the server ignored Range: start over
            offset = 0
        length = _int_header(resp, "Content-Length")
        total = offset + length if length is not None else None
        if total is not None and total > MAX_DOWNLOAD_BYTES:
            raise DatasetError(f"{src.url}: the server announces {total} bytes, more than the "
                               f"{MAX_DOWNLOAD_BYTES >> 20} MB any dataset file here has; refusing")
        got = _stream(resp, src, part, offset, total, progress)
    if total is not None and got < total:
        raise DatasetError(f"{src.url}: the transfer stopped after {got} of {total} bytes; the partial file {part} "
                           "is kept: run the same command again to resume")
    digest = md5_of(part)
    if digest != src.md5:
        part.unlink()
        raise DatasetError(f"{src.url}: checksum mismatch for {src.name}: expected md5 {src.md5}, got {digest}; "
                           "the file was deleted: run again, and if it repeats check the mirror "
                           "(QCFS_DOWNLOAD_MIRROR / QCFS_DOWNLOAD_MANIFEST) or your proxy")
    return _install(part, final)


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": "qcfs-download/0.1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise DatasetError(f"{url}: no answer within {TIMEOUT_S:g} s; check the network, then run again") from None
        raise DatasetError(f"{url}: cannot connect ({getattr(reason, 'strerror', None) or reason}); check the "
                           "network, or set QCFS_DOWNLOAD_MIRROR to a reachable mirror") from None
    except (TimeoutError, socket.timeout):
        raise DatasetError(f"{url}: no answer within {TIMEOUT_S:g} s; check the network, then run again") from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise DatasetError(f"{url}: request failed ({type(err).__name__}: {err}); run again") from None


def _http_error(src: Source, err: urllib.error.HTTPError) -> DatasetError:
    with contextlib.suppress(Exception):
        err.close()
    return DatasetError(f"{src.url}: HTTP {err.code} {err.reason} for {src.name}; check the address "
                        "(QCFS_DOWNLOAD_MIRROR / QCFS_DOWNLOAD_MANIFEST) or try again later")


def _int_header(resp: http.client.HTTPResponse, name: str) -> int | None:
    raw = resp.headers.get(name)
    return int(raw) if raw is not None and raw.strip().isdigit() else None


def _range_start(resp: http.client.HTTPResponse) -> int | None:
    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _stream(resp: http.client.HTTPResponse, src: Source, part: Path, offset: int, total: int | None,
            progress: bool) -> int:
    """Append the body to `part` (from `offset`; 0 truncates), with a tqdm bar on stderr; bytes now in `part`."""
    from tqdm import tqdm

    got = offset
    try:
        with open(part, "r+b" if offset else "wb") as out, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=src.name,
                     file=sys.stderr, disable=not progress, leave=False) as bar:
            out.seek(offset)
            out.truncate()
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError, socket.timeout, OSError) as err:
                    out.flush()
                    what = "stalled" if isinstance(err, (TimeoutError, socket.timeout)) else "was cut off"
                    raise DatasetError(f"{src.url}: the transfer {what} after {got} of "
                                       f"{total if total is not None else '?'} bytes; the partial file {part} is "
                                       "kept: run the same command again to resume") from None
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
                if got > MAX_DOWNLOAD_BYTES:
                    break
    except OSError as err:
        raise DatasetError(f"--download: cannot write {part} ({err.strerror or err})") from None
    if got > MAX_DOWNLOAD_BYTES:
        part.unlink()
        raise DatasetError(f"{src.url}: sends more than {MAX_DOWNLOAD_BYTES >> 20} MB, more than any dataset file "
                           "here has; refusing (nothing kept)")
    return got


def md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _install(part: Path, final: Path) -> Path:
    os.replace(part, final)
    return final


# --- CIFAR-10: the archive, unpacked safely -------------------------------------------------------------
def _fetch_cifar(root: Path, src: Source, progress: bool) -> None:
    target = root / CIFAR_FOLDER
    if target.exists():
        missing = [b for b in CIFAR_BATCHES if not (target / b).is_file()]
        raise DatasetError(f"cifar10: {target} exists but lacks {', '.join(missing)}; it is not ours to delete: "
                           "remove it (or pass another --data-dir) and run again")
    archive = root / src.name
    if archive.is_file():  # a verified download whose unpacking was interrupted, or a file the user put there
        digest = md5_of(archive)
        if digest != src.md5:
            raise DatasetError(f"cifar10: {archive} has md5 {digest}, expected {src.md5} ({src.url}); remove it "
                               "and run again")
    else:
        fetch(src, root, progress)
    unpack_tar(archive, root, CIFAR_FOLDER, CIFAR_BATCHES)
    archive.unlink()


def unpack_tar(archive: Path, root: Path, top: str, required: tuple[str, ...]) -> Path:
    """Unpack `archive` (its members all under `top/`) into a temporary folder in `root`, check that `required`
    files arrived, then rename `top` into place; on any failure nothing but the archive is left."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{top}.unpack-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                count = size = 0
                for member in tf:
                    count += 1
                    size += max(member.size, 0)
                    _check_member(member, archive, top)
                    if count > MAX_MEMBERS or size > MAX_UNPACKED_BYTES:
                        raise DatasetError(f"{archive}: more than {MAX_MEMBERS} members or "
                                           f"{MAX_UNPACKED_BYTES >> 20} MB unpacked; not a dataset archive")
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.12, 3.11.4, 3.10.12: refuses the rest too
                        tf.extract(member, tmp, set_attrs=False, filter="data")
                    else:  # pragma: no cover - older Pythons: _check_member is the whole guard
                        tf.extract(member, tmp, set_attrs=False)
        except tarfile.ReadError:  # its text lists every compression tried, one line each
            raise DatasetError(f"{archive}: is not a tar archive (plain, gzip, bzip2 or xz); delete it and run "
                               "again (check the URL or QCFS_DOWNLOAD_MANIFEST)") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            detail = " ".join(str(err).split())
            raise DatasetError(f"{archive}: cannot unpack ({type(err).__name__}: {detail}); delete it and run "
                               "again") from None
        missing = [r for r in required if not (tmp / top / r).is_file()]
        if missing:
            raise DatasetError(f"{archive}: holds no {top}/{', '.join(missing)}; not the expected archive")
        try:
            os.rename(tmp / top, root / top)
        except OSError as err:
            raise DatasetError(f"--download: cannot move the unpacked {top} into {root} "
                               f"({err.strerror or err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / top


def _check_member(member: tarfile.TarInfo, archive: Path, top: str) -> None:
    """Only regular files and folders, at relative paths inside `top/`; everything else refused in one line."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts or "\\" in name:
        raise DatasetError(f"{archive}: member {name!r} points outside the folder; refusing to unpack")
    if not (member.isfile() or member.isdir()):
        kind = "a link" if member.issym() or member.islnk() else "a device, FIFO or other special file"
        raise DatasetError(f"{archive}: member {name!r} is {kind}; refusing to unpack")
    if not parts or parts[0] != top:
        raise DatasetError(f"{archive}: member {name!r} is not inside {top}/; not the expected archive")


def requested_data_dir(dataset: str, data_dir: str | None, download: bool, *, progress: bool = True) -> str | None:
    """The CLIs' one call: with --download, `ensure_dataset`; without it, `data_dir` unchanged (never a fetch)."""
    return ensure_dataset(dataset, data_dir, progress=progress) if download else data_dir
