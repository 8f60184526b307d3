"""onnxruntime backend: the exported .snn.onnx graph gives counts and logits bit-identical to the NumPy
reference, with both kernel choices, per-channel v_init, saturation, residual/grouped/pooled synapses, the
int64-membrane and float32-fallback paths, and on the shipped models; the CLIs fail in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from snn_reference import random_net  # noqa: E402
from test_layer_major import _per_channel  # noqa: E402

from qcfs.cli import export as export_cli  # noqa: E402
from qcfs.cli import run as run_cli  # noqa: E402
from qcfs.exporters.snn_onnx import build_snn_onnx  # noqa: E402
from qcfs.intnet import IntNet  # noqa: E402
from qcfs.runtime.numpy_snn import simulate  # noqa: E402
from qcfs.runtime.ort_snn import load_snn_onnx, simulate_ort  # noqa: E402
from qcfs.runtime.result import SimResult  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"


def _identical(a: SimResult, b: SimResult) -> None:
    assert a.Ts == b.Ts
    for t in a.Ts:
        assert a.logits[t].dtype == b.logits[t].dtype == np.int64
        np.testing.assert_array_equal(a.logits[t], b.logits[t], err_msg=f"logits T={t}")
        assert set(a.spikes[t]) == set(b.spikes[t])
        for name in a.spikes[t]:
            np.testing.assert_array_equal(a.spikes[t][name], b.spikes[t][name], err_msg=f"T={t} {name}")


def _check(net: IntNet, images: np.ndarray, Ts: list[int], kernels: str = "int8", batch: int = 3) -> SimResult:
    ref = simulate(net, images, Ts, progress=False, order="step")
    got = simulate_ort(net, images, Ts, batch_size=batch, progress=False, kernels=kernels)
    assert got.backend == "ort" and got.timing == "sync"
    assert sum(int(c.sum()) for c in ref.spikes[max(Ts)].values()) > 0, "degenerate net: no spikes"
    _identical(ref, got)
    return got


def _images(n: int, seed: int, shape=(2, 8, 8)) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape))


@pytest.mark.isa
@pytest.mark.parametrize("kernels", ["int8", "float32"])
@pytest.mark.parametrize("membrane_bits", [24, 10])  # 10 bits: membranes saturate
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_net_bit_identical(seed: int, membrane_bits: int, kernels: str) -> None:
    _check(random_net(seed, "int", membrane_bits=membrane_bits), _images(7, seed), [1, 3, 8], kernels)


@pytest.mark.isa
@pytest.mark.parametrize("kernels", ["int8", "float32"])
def test_per_channel_v_init(kernels: str) -> None:
    net = _per_channel(random_net(3, "int", membrane_bits=12), 3)
    _check(net, _images(5, 3), [2, 6], kernels)


def test_wide_membrane_int64_and_float32_refuses() -> None:
    net = random_net(4, "int", membrane_bits=33)  # |v| up to 2^32: int64 membranes in the graph
    graph = build_snn_onnx(net)
    bodies = [a.g for n in graph.graph.node if n.op_type == "Scan" for a in n.attribute if a.name == "body"]
    assert bodies and all(b.input[0].type.tensor_type.elem_type == 7 for b in bodies)  # INT64
    _check(net, _images(4, 4), [5])
    with pytest.raises(ValueError, match="not exact in float32"):
        build_snn_onnx(net, "float32")


def test_weights_beyond_int8_use_exact_float32() -> None:
    net = random_net(5, "int")
    net.layer("c4").synapses[0].weight[0, 0, 0, 0] = 300  # not int8: float32 MatMul (bound < 2^24)
    ops = {n.op_type for n in build_snn_onnx(net, "int8").graph.node}
    assert {"MatMul", "MatMulInteger"} <= ops
    _check(net, _images(4, 5), [4])
    net.layer("c4").float32_exact = False  # neither int8 nor provably float32-exact: refuse
    for kernels in ("int8", "auto"):
        with pytest.raises(ValueError, match="exact neither"):
            build_snn_onnx(net, kernels)


def test_wide_input_bits() -> None:
    net = random_net(6, "int")
    net.input.bits, net.input.scale = 12, 512.0  # 12-bit input: the constant current in float32
    _check(net, _images(4, 6), [3])


def test_float_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="integer-mode"):
        build_snn_onnx(random_net(0, "float"))


def test_digits_checkpoint_bit_identical(digits_checkpoint: Path) -> None:
    from qcfs import pipeline
    from qcfs.data import load_split

    net = pipeline.to_intnet(pipeline.canonical_onnx(digits_checkpoint), mode="int")
    images, _ = load_split("digits", "test")
    for kernels in ("int8", "float32"):
        _check(net, images[:60], [1, 4, 16], kernels, batch=25)


@pytest.mark.isa
@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10"])
def test_shipped_models_bit_identical(dataset: str) -> None:
    """Shipped models on a few images (random ones where the dataset is not installed: exactness does not
    depend on the images)."""
    from qcfs import pipeline

    net = pipeline.to_intnet(pipeline.canonical_onnx(MODELS / dataset / "model.onnx"), mode="int")
    images = _images(4, 7, tuple(net.input.shape))
    try:
        from qcfs.data import load_split

        images = load_split(dataset, "test")[0][:4]
    except Exception:  # noqa: BLE001 - dataset not installed here
        pass
    got = _check(net, images, [1, 4], batch=4)
    assert got.logits[4].shape == (4, net.num_classes)


def test_cli_export_and_run_equal_numpy(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "d.snn.onnx"
    assert export_cli.main([str(MODELS / "digits" / "model.onnx"), "--backend", "snn-onnx", "-o", str(model)]) == 0
    proto, net = load_snn_onnx(model)
    assert net.mode == "int" and any(o.name == "logits" for o in proto.graph.output)
    out = {}
    for name, argv in (("ort", ["--model", str(model)]),
                       ("numpy", ["--model", str(MODELS / "digits" / "model.onnx"), "--backend", "numpy"])):
        path = tmp_path / f"{name}.npz"
        assert run_cli.main([*argv, "--dataset", "digits", "--T", "1,6", "--limit", "40", "--batch", "16",
                             "--counts", str(path), "--no-progress"]) == 0
        with np.load(path) as npz:
            out[name] = {k: npz[k] for k in npz.files}
    assert "backend ort" in capsys.readouterr().out
    assert set(out["ort"]) == set(out["numpy"])
    for key, arr in out["numpy"].items():
        np.testing.assert_array_equal(arr, out["ort"][key], err_msg=key)


def _one_line(capsys, main, argv: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "d.snn.onnx"
    assert export_cli.main([str(MODELS / "digits" / "model.onnx"), "--backend", "snn-onnx", "-o", str(model),
                            "--snn-kernels", "float32"]) == 0
    capsys.readouterr()
    _one_line(capsys, export_cli.main, [str(MODELS / "digits" / "model.onnx"), "--backend", "snn-onnx",
                                        "--mode", "float", "-o", str(tmp_path / "f.snn.onnx")], "integer-mode")
    _one_line(capsys, run_cli.main, ["--model", str(model), "--dataset", "digits", "--timing", "pipelined"],
              "layer-synchronous")
    bad = tmp_path / "bad.snn.onnx"
    bad.write_bytes(b"not a protobuf at all")
    _one_line(capsys, run_cli.main, ["--model", str(bad), "--dataset", "digits"], "bad.snn.onnx")
    import onnx

    proto = onnx.load_model(str(model))
    for p in proto.metadata_props:
        if p.key == "qcfs_intnet_sha256":
            p.value = "0" * 64
    onnx.save_model(proto, str(tmp_path / "tampered.snn.onnx"))
    _one_line(capsys, run_cli.main, ["--model", str(tmp_path / "tampered.snn.onnx"), "--dataset", "digits"],
              "digest")


@pytest.mark.parametrize("dataset, kernels", [("fashion-mnist", "int8"), ("cifar10", "int8"),
                                              ("cifar10-resnet20", "float32")])
def test_auto_picks_the_kernels_measured_fastest_on_the_shipped_models(dataset: str, kernels: str) -> None:
    """The choices benchmarks/results/auto_kernels.json and speed_fused.json measured (AVX-512 and the issue's AVX2)."""
    from qcfs import pipeline
    from qcfs.exporters import snn_onnx

    net = pipeline.to_intnet(pipeline.canonical_onnx(MODELS / dataset / "model.onnx"), mode="int")
    assert snn_onnx.choose_kernels(net) == kernels


def test_auto_kernels_choice(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qcfs.exporters import snn_onnx

    net = random_net(0, "int")  # 2…6 input channels per conv, every layer float32-exact
    assert snn_onnx.choose_kernels(net) == "float32"
    kinds = {p.key: p.value for p in build_snn_onnx(net).metadata_props}
    assert kinds["qcfs_kernels"] == "float32"
    assert snn_onnx.choose_kernels(random_net(0, "int", membrane_bits=33)) == "int8"  # float32 not exact
    monkeypatch.setattr(snn_onnx, "AUTO_INT8_CHANNELS", 4)  # MAC-weighted mean C_in here is between 4 and 6
    assert snn_onnx.choose_kernels(net) == "int8"
    monkeypatch.setattr(snn_onnx, "AUTO_INT8_CHANNELS", 7)
    assert snn_onnx.choose_kernels(net) == "float32"
