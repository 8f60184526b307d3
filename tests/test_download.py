"""Issue 14 part 4: `--download` against a local HTTP server on 127.0.0.1 (no machine here has internet).

The server serves a tiny CIFAR-10 archive of the real layout (cifar-10-batches-py with pickled batches) and tiny
Fashion-MNIST idx.gz files; QCFS_DOWNLOAD_MANIFEST points the manifest at it with the tiny files' md5s (the
mechanism a mirror hosting other builds uses). Cases: success through both CLIs, nothing fetched twice, resume
after a cut-off transfer (Range), a server that ignores Range, corrupted / truncated / refused / stalled /
HTTP-error downloads (one line, exit 2), malicious tar members, a data folder that is a file, and no network
access at all without --download.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import socket
import struct
import tarfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from qcfs.data import download
from qcfs.data import load_split
from qcfs.errors import DatasetError

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
FASHION = [s.name for s in download.MANIFEST["fashion-mnist"]]


# --- fixtures: tiny datasets of the real layout ---------------------------------------------------------
def _cifar_batches() -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(0)
    return {b: (rng.integers(0, 256, (2 if b != "test_batch" else 4, 3072), dtype=np.uint8),
                [i % 10 for i in range(2 if b != "test_batch" else 4)]) for b in BATCHES}


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _cifar_archive(extra: tuple[tuple[tarfile.TarInfo, bytes | None], ...] = ()) -> bytes:
    top = tarfile.TarInfo("cifar-10-batches-py")
    top.type = tarfile.DIRTYPE
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [(top, None)]
    for name, (x, y) in _cifar_batches().items():  # the official batches are protocol-2 pickles of dicts
        members.append(_file(f"cifar-10-batches-py/{name}", pickle.dumps({b"data": x, b"labels": y}, protocol=2)))
    members.append(_file("cifar-10-batches-py/batches.meta", pickle.dumps({b"num_cases_per_batch": 2}, protocol=2)))
    return _tar_gz([*members, *extra])


def _fashion_files() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8)
        out[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        out[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(struct.pack(">II", 2049, n) + y.tobytes())
    return out


# --- the local server -----------------------------------------------------------------------------------
class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}  # name -> "truncate_once" | "ignore_range" | "stall"
        self.requests: list[tuple[str, str | None]] = []  # (name, Range header)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state: _State = self.server.state  # type: ignore[attr-defined]
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        state.requests.append((name, rng))
        body, mode = state.files.get(name), state.modes.get(name, "")
        if body is None:
            self.send_error(404, "Not Found")
            return
        if mode == "stall":
            time.sleep(1.5)
            return
        start = 0
        if rng and mode != "ignore_range":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if mode == "truncate_once":  # half the body, then the connection closes (HTTP/1.0)
            state.modes.pop(name)
            self.wfile.write(chunk[: len(chunk) // 2])
            return
        self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


Srv = tuple[str, "_State"]  # base URL of the local server, its state


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, _State]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def srv(server: tuple[str, _State], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, _State]:
    """A reset server, the cache in tmp_path, no dataset env vars, and no progress bars."""
    base, state = server
    state.files.clear()
    state.modes.clear()
    state.requests.clear()
    monkeypatch.setenv("QCFS_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("no_proxy", "NO_PROXY"):  # a proxy configured for the registries must not see 127.0.0.1
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    for var in ("QCFS_CIFAR10_DIR", "QCFS_FASHION_MNIST_DIR", "QCFS_DOWNLOAD_MIRROR", "QCFS_DOWNLOAD_MANIFEST"):
        monkeypatch.delenv(var, raising=False)
    return base, state


def _serve(srv: tuple[str, _State], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str,
           files: dict[str, bytes], md5_of: dict[str, bytes] | None = None, base: str | None = None) -> None:
    """Serve `files` and point QCFS_DOWNLOAD_MANIFEST at them (md5 of `md5_of[name]`, default the served bytes)."""
    url, state = srv
    state.files.update(files)
    entries = {n: {"url": f"{base or url}/{n}", "md5": hashlib.md5((md5_of or files).get(n, b)).hexdigest()}
               for n, b in files.items()}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({dataset: entries}))
    monkeypatch.setenv("QCFS_DOWNLOAD_MANIFEST", str(manifest))


def _error_line(capsys: pytest.CaptureFixture, prog: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# --- success, and nothing fetched twice -----------------------------------------------------------------
def test_cifar_download_through_qcfs_run_then_loads(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    from qcfs.cli.run import main

    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: _cifar_archive()})
    data = tmp_path / "data"
    argv = ["--dataset", "cifar10", "--download", "--data-dir", str(data), "--T", "1", "--limit", "2", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "2 test samples" in capsys.readouterr().out
    assert [p.name for p in data.iterdir()] == ["cifar-10-batches-py"]  # no archive, .part or half-unpacked tree
    x, y = load_split("cifar10", "test", data)
    want_x, want_y = _cifar_batches()["test_batch"]
    assert np.array_equal((x * 255).round().astype(np.uint8).reshape(4, -1), want_x) and y.tolist() == want_y
    assert len(srv[1].requests) == 1
    assert main(argv) == 0  # second call: the data is there, nothing is fetched
    assert len(srv[1].requests) == 1


def _system_fashion_dir(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """Pretend the Debian package folder is `where` (this machine may have the real one installed)."""
    from qcfs import data

    info = data.DATASETS["fashion-mnist"]
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", dataclasses.replace(info, default_dir=str(where)))


def test_default_folder_is_the_cache_and_the_loader_finds_it_later(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _serve(srv, tmp_path, monkeypatch, "fashion-mnist", _fashion_files())
    _system_fashion_dir(monkeypatch, tmp_path / "no-debian-package")
    got = download.ensure_dataset("fashion-mnist", None, progress=False)
    assert got == str(tmp_path / "cache" / "fashion-mnist")
    assert sorted(n for n, _ in srv[1].requests) == sorted(FASHION)
    x, y = load_split("fashion-mnist", "test", None)  # without --data-dir, later: found in the cache folder
    assert x.shape == (4, 1, 28, 28) and y.tolist() == [0, 1, 2, 3]
    assert download.ensure_dataset("fashion-mnist", None, progress=False) == got and len(srv[1].requests) == 4
    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: _cifar_archive()})
    assert download.ensure_dataset("cifar10", None, progress=False) == str(tmp_path / "cache" / "cifar10")
    assert load_split("cifar10", "test", None)[1].tolist() == _cifar_batches()["test_batch"][1]


def test_installed_debian_package_is_used_not_fetched(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    system = tmp_path / "usr-share"
    system.mkdir()
    for name, body in _fashion_files().items():
        (system / name.removesuffix(".gz")).write_bytes(gzip.decompress(body))  # the package ships them unpacked
    _serve(srv, tmp_path, monkeypatch, "fashion-mnist", _fashion_files())
    _system_fashion_dir(monkeypatch, system)
    assert download.ensure_dataset("fashion-mnist", None, progress=False) == str(system)
    assert srv[1].requests == [] and not (tmp_path / "cache").exists()


def test_train_cli_download_wiring(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    """qcfs-train --download fetches before training; a cut-off transfer is one line, exit 2, .part kept; the
    same command again resumes and trains."""
    from qcfs.cli.train import main

    files = _fashion_files()
    _serve(srv, tmp_path, monkeypatch, "fashion-mnist", files)
    srv[1].modes["t10k-images-idx3-ubyte.gz"] = "truncate_once"
    data = tmp_path / "fm"
    argv = ["--model", "cnn", "--dataset", "fashion-mnist", "--download", "--data-dir", str(data),
            "-o", str(tmp_path / "m.pt"), "--no-progress", "--epochs", "1"]
    assert main(argv) == 2
    line = _error_line(capsys, "qcfs-train")
    assert "t10k-images-idx3-ubyte.gz" in line and "resume" in line and "of" in line
    assert (data / "t10k-images-idx3-ubyte.gz.part").is_file() and not (data / "t10k-images-idx3-ubyte.gz").exists()
    assert not (tmp_path / "m.pt").exists()
    srv[1].requests.clear()
    assert main(argv) == 0, capsys.readouterr().err  # resumes the one partial file, then trains on the data
    assert srv[1].requests[0] == ("t10k-images-idx3-ubyte.gz", f"bytes={len(files['t10k-images-idx3-ubyte.gz']) // 2}-")
    assert [n for n, _ in srv[1].requests[1:]] == ["t10k-labels-idx1-ubyte.gz"]  # the rest, once each
    assert (tmp_path / "m.pt").is_file()


# --- resume ---------------------------------------------------------------------------------------------
def test_resume_after_truncated_transfer(srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _fashion_files()
    _serve(srv, tmp_path, monkeypatch, "fashion-mnist", files)
    name = "train-images-idx3-ubyte.gz"
    srv[1].modes[name] = "truncate_once"
    data = tmp_path / "d"
    with pytest.raises(DatasetError) as exc:
        download.ensure_dataset("fashion-mnist", data, progress=False)
    msg = _one_line(exc)
    half = len(files[name]) // 2
    assert f"after {half} of {len(files[name])} bytes" in msg and "run the same command again to resume" in msg
    assert (data / (name + ".part")).stat().st_size == half and not (data / name).exists()
    srv[1].requests.clear()
    assert download.ensure_dataset("fashion-mnist", data, progress=False) == str(data)
    assert (name, f"bytes={half}-") in srv[1].requests  # resumed with a Range request, not from 0
    assert (data / name).read_bytes() == files[name] and not list(data.glob("*.part"))
    assert load_split("fashion-mnist", "train", data)[0].shape == (6, 1, 28, 28)


def test_server_ignoring_range_restarts_from_zero(srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _fashion_files()
    _serve(srv, tmp_path, monkeypatch, "fashion-mnist", files)
    name = "t10k-images-idx3-ubyte.gz"
    data = tmp_path / "d"
    data.mkdir()
    (data / (name + ".part")).write_bytes(b"\0" * 100)  # a stale partial file the server cannot continue
    srv[1].modes[name] = "ignore_range"
    download.ensure_dataset("fashion-mnist", data, progress=False)
    assert (name, "bytes=100-") in srv[1].requests
    assert (data / name).read_bytes() == files[name]  # the 200 answer replaced the partial file, not appended


def test_complete_part_file_is_installed_after_416(srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _fashion_files()
    _serve(srv, tmp_path, monkeypatch, "fashion-mnist", files)
    data = tmp_path / "d"
    data.mkdir()
    name = "t10k-labels-idx1-ubyte.gz"
    (data / (name + ".part")).write_bytes(files[name])  # interrupted just before the rename
    download.ensure_dataset("fashion-mnist", data, progress=False)
    assert (name, f"bytes={len(files[name])}-") in srv[1].requests
    assert (data / name).read_bytes() == files[name]


# --- failures: one line, nothing that looks complete ----------------------------------------------------
def test_corrupted_archive_is_one_line_and_leaves_nothing(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    from qcfs.cli.run import main

    good = _cifar_archive()
    bad = good[:-40] + bytes(40)
    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: bad}, md5_of={CIFAR_ARCHIVE: good})
    data = tmp_path / "data"
    assert main(["--dataset", "cifar10", "--download", "--data-dir", str(data), "--no-progress"]) == 2
    line = _error_line(capsys, "qcfs-run")
    assert "checksum mismatch" in line and f"{srv[0]}/{CIFAR_ARCHIVE}" in line
    assert hashlib.md5(good).hexdigest() in line and hashlib.md5(bad).hexdigest() in line and "run again" in line
    assert not (data / CIFAR_ARCHIVE).exists() and not list(data.glob("*.part"))
    assert not (data / "cifar-10-batches-py").exists()


def test_mirror_variable_keeps_the_official_checksums(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QCFS_DOWNLOAD_MIRROR changes where files come from, never what they must hash to."""
    srv[1].files.update({f"mirror/{n}": b for n, b in _fashion_files().items()})
    monkeypatch.setenv("QCFS_DOWNLOAD_MIRROR", srv[0] + "/mirror/")
    with pytest.raises(DatasetError) as exc:
        download.ensure_dataset("fashion-mnist", tmp_path / "d", progress=False)
    msg = _one_line(exc)
    assert f"{srv[0]}/mirror/train-images-idx3-ubyte.gz" in msg and "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in msg
    assert srv[1].requests == [("mirror/train-images-idx3-ubyte.gz", None)]


def test_connection_refused_http_error_and_stall_are_one_line(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    from qcfs.cli.run import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: b"x"}, base=dead)
    assert main(["--dataset", "cifar10", "--download", "--data-dir", str(tmp_path / "a"), "--no-progress"]) == 2
    assert "cannot connect" in _error_line(capsys, "qcfs-run")

    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: b"x"})
    srv[1].files.pop(CIFAR_ARCHIVE)
    assert main(["--dataset", "cifar10", "--download", "--data-dir", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "HTTP 404" in _error_line(capsys, "qcfs-run")

    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: b"x"})
    srv[1].modes[CIFAR_ARCHIVE] = "stall"
    monkeypatch.setattr(download, "TIMEOUT_S", 0.3)
    assert main(["--dataset", "cifar10", "--download", "--data-dir", str(tmp_path / "c"), "--no-progress"]) == 2
    assert "no answer within 0.3 s" in _error_line(capsys, "qcfs-run")


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("member", [
    _file("cifar-10-batches-py/../../escaped", b"x"),
    _file("/tmp/qcfs-absolute-member", b"x"),
    _link("cifar-10-batches-py/evil", "/etc/passwd", tarfile.SYMTYPE),
    _link("cifar-10-batches-py/hard", "/etc/passwd", tarfile.LNKTYPE),
    _link("cifar-10-batches-py/dev", "", tarfile.CHRTYPE),
    _file("elsewhere.txt", b"x"),
], ids=["dotdot", "absolute", "symlink", "hardlink", "device", "outside-top"])
def test_malicious_archive_members_are_refused(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: tuple[tarfile.TarInfo, bytes | None],
) -> None:
    archive = _cifar_archive((member,))  # the checksum matches: only the unpacking stands in the way
    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: archive})
    data = tmp_path / "deep" / "data"
    with pytest.raises(DatasetError) as exc:
        download.ensure_dataset("cifar10", data, progress=False)
    assert "refusing to unpack" in _one_line(exc) or "not inside" in _one_line(exc)
    assert not (data / "cifar-10-batches-py").exists() and not list(data.glob(".cifar-10-batches-py.unpack-*"))
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    assert not Path("/tmp/qcfs-absolute-member").exists()


def test_data_dir_that_is_a_file(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    from qcfs.cli.run import main

    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: _cifar_archive()})
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    assert main(["--dataset", "cifar10", "--download", "--data-dir", str(afile), "--no-progress"]) == 2
    assert "is not a directory" in _error_line(capsys, "qcfs-run")
    assert afile.read_text() == "x" and srv[1].requests == []


def test_part_file_that_is_a_link_is_not_followed(srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(srv, tmp_path, monkeypatch, "fashion-mnist", _fashion_files())
    data, precious = tmp_path / "d", tmp_path / "precious.txt"
    data.mkdir()
    precious.write_text("keep me")
    (data / "train-images-idx3-ubyte.gz.part").symlink_to(precious)
    with pytest.raises(DatasetError) as exc:
        download.ensure_dataset("fashion-mnist", data, progress=False)
    assert "is a link" in _one_line(exc) and precious.read_text() == "keep me" and srv[1].requests == []


def test_bad_manifest_override_is_one_line(srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"cifar10": {CIFAR_ARCHIVE: {"url": srv[0] + "/x"}}}))  # no md5: refused
    monkeypatch.setenv("QCFS_DOWNLOAD_MANIFEST", str(manifest))
    with pytest.raises(DatasetError) as exc:
        download.ensure_dataset("cifar10", tmp_path / "d", progress=False)
    assert "md5" in _one_line(exc) and srv[1].requests == []


def test_manifest_that_is_missing_or_a_fifo_is_one_line(srv: Srv, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO would block the read forever; a missing file names the variable that pointed at it."""
    fifo = tmp_path / "m.fifo"
    os.mkfifo(fifo)
    for path, why in ((tmp_path / "none.json", "no such file"), (fifo, "expected a regular JSON file")):
        monkeypatch.setenv("QCFS_DOWNLOAD_MANIFEST", str(path))
        with pytest.raises(DatasetError) as exc:
            download.ensure_dataset("cifar10", tmp_path / "d", progress=False)
        line = _one_line(exc)
        assert line.startswith(f"QCFS_DOWNLOAD_MANIFEST={path}") and why in line and srv[1].requests == []


# --- datasets without a download, and no network without --download ------------------------------------
def test_digits_noop_and_imagenet_refused(srv: Srv, capsys: pytest.CaptureFixture) -> None:
    from qcfs.cli.run import main

    assert download.ensure_dataset("digits", None) is None and srv[1].requests == []
    assert main(["--dataset", "imagenet", "--download"]) == 2
    line = _error_line(capsys, "qcfs-run")
    assert "registration" in line and "image-net.org" in line


def test_without_download_nothing_is_fetched(
        srv: Srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    from qcfs.cli.run import main
    from qcfs.cli.train import main as train_main

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network call was made without --download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    _serve(srv, tmp_path, monkeypatch, "cifar10", {CIFAR_ARCHIVE: _cifar_archive()})
    assert main(["--dataset", "cifar10", "--no-progress"]) == 2
    assert "no data directory given" in (line := _error_line(capsys, "qcfs-run")) and "--download" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--dataset", "cifar10", "--data-dir", str(empty), "--no-progress"]) == 2
    assert "neither" in _error_line(capsys, "qcfs-run")
    assert train_main(["--model", "cnn", "--dataset", "fashion-mnist", "--data-dir", str(empty), "-o",
                       str(tmp_path / "m.pt"), "--no-progress"]) == 2
    assert "not found" in _error_line(capsys, "qcfs-train")
    assert srv[1].requests == [] and list(empty.iterdir()) == []
