"""torch runtime: counts and logits bit-identical to the NumPy reference (sync), and the CLI's torch options.

Why bit for bit: the torch runtime exists only to evaluate large test sets faster; any disagreement with the
reference, even one spike, would make its accuracy numbers a different network's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from snn_reference import random_net  # noqa: E402
from test_cli_run import _fails_one_line, digits_intnet  # noqa: E402

from qcfs.cli import run as run_cli  # noqa: E402
from qcfs.intnet import IntNet  # noqa: E402
from qcfs.runtime.numpy_snn import simulate  # noqa: E402
from qcfs.runtime.result import SimResult  # noqa: E402
from qcfs.runtime.torch_snn import simulate_torch  # noqa: E402


def _assert_identical(a: SimResult, b: SimResult) -> None:
    """Same Ts, and every counts_arrays() entry equal in dtype, shape and value, at every T."""
    assert a.Ts == b.Ts
    ca, cb = a.counts_arrays(), b.counts_arrays()
    assert set(ca) == set(cb)
    for name in ca:
        assert ca[name].dtype == cb[name].dtype, name
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)
    for t in a.Ts:
        np.testing.assert_array_equal(a.logits[t], b.logits[t], err_msg=f"logits T={t}")
        for name in a.spikes[t]:
            np.testing.assert_array_equal(a.spikes[t][name], b.spikes[t][name], err_msg=f"T={t} {name}")


def _both(net: IntNet, images: np.ndarray, Ts: list[int], batch: int) -> tuple[SimResult, SimResult]:
    ref = simulate(net, images, Ts, timing="sync", batch_size=batch, progress=False)
    got = simulate_torch(net, images, Ts, batch_size=batch, device="cpu", progress=False)
    return ref, got


@pytest.mark.parametrize("membrane_bits", [24, 12])  # 12 bits: c1 saturates, so the clamp is exercised
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_intnet_bit_identical(seed: int, membrane_bits: int) -> None:
    net = random_net(seed, "int", membrane_bits=membrane_bits)  # conv, pooled conv, grouped, residual, dense
    images = np.random.default_rng(seed).uniform(0, 1, (7, 2, 8, 8))
    ref, got = _both(net, images, [1, 3, 8], batch=3)  # 3: a partial last batch too
    assert got.backend == "torch" and got.timing == "sync"
    assert sum(int(c.sum()) for c in ref.spikes[8].values()) > 0, "degenerate net: no spikes"
    _assert_identical(ref, got)


@pytest.fixture(scope="module")
def digits_int_net(digits_checkpoint: Path) -> IntNet:
    from qcfs import pipeline

    return pipeline.to_intnet(pipeline.canonical_onnx(digits_checkpoint), mode="int")


def test_digits_checkpoint_bit_identical(digits_int_net: IntNet) -> None:
    from qcfs.data import load_split

    images, _ = load_split("digits", "test")
    ref, got = _both(digits_int_net, images[:120], [1, 2, 4, 8, 16], batch=50)
    assert ref.logits[16].dtype == np.int64
    _assert_identical(ref, got)


def test_cli_torch_counts_equal_numpy(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = digits_intnet().save(tmp_path / "net.intnet.npz")
    out = {}
    for backend in ("numpy", "torch"):
        path = tmp_path / f"{backend}.npz"
        argv = ["--model", str(model), "--dataset", "digits", "--T", "1,5", "--limit", "30", "--batch", "8",
                "--backend", backend, "--counts", str(path), "--no-progress"]
        assert run_cli.main(argv) == 0
        with np.load(path) as npz:
            out[backend] = {k: npz[k] for k in npz.files}
    assert "backend torch" in capsys.readouterr().out
    assert set(out["numpy"]) == set(out["torch"])
    for name, arr in out["numpy"].items():
        np.testing.assert_array_equal(arr, out["torch"][name], err_msg=name)


def test_torch_pipelined_is_rejected(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = digits_intnet().save(tmp_path / "net.intnet.npz")
    _fails_one_line(capsys, ["--model", str(model), "--dataset", "digits", "--backend", "torch",
                             "--timing", "pipelined"], "layer-synchronous")


def test_cuda_without_gpu_is_one_line(capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = digits_intnet().save(tmp_path / "net.intnet.npz")
    _fails_one_line(capsys, ["--model", str(model), "--dataset", "digits", "--backend", "torch",
                             "--device", "cuda"], "no CUDA GPU")


def test_device_needs_torch_backend(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = digits_intnet().save(tmp_path / "net.intnet.npz")
    _fails_one_line(capsys, ["--model", str(model), "--dataset", "digits", "--device", "cpu"], "--backend torch")
