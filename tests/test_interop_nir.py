"""Our files in other people's tools, run unmodified: the `.nir` file in sinabs 3.1.3, snnTorch 1.0.0 and Norse
1.1.0 (the real readers, installed by scripts/setup_env.sh), and the `.snn.onnx` file in a second ONNX runtime
(onnx.reference.ReferenceEvaluator), which must give onnxruntime's integers exactly.

The readers' neuron semantics stated in README "Formats" and qcfs.runtime.nir_readers are checked here on one
neuron whose spikes are the graph's output, so the statement is what the readers compute, not a reading of
their docs."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from qcfs.data import load_split  # noqa: E402
from qcfs.exporters.nir_export import export_nir, to_nir_graph  # noqa: E402
from qcfs.exporters.nir_import import load_nir_intnet  # noqa: E402
from qcfs.intnet import InputSpec, IntNet, Layer, Synapse, load_intnet  # noqa: E402
from qcfs.runtime.nir_stock import simulate_nir  # noqa: E402
from qcfs.runtime.numpy_snn import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS_ONNX = ROOT / "models" / "digits" / "model.onnx"


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory: pytest.TempPathFactory) -> IntNet:
    from qcfs import pipeline

    net = pipeline.to_intnet(pipeline.canonical_onnx(DIGITS_ONNX))
    return load_intnet(net.save(tmp_path_factory.mktemp("nir") / "digits.intnet.npz"))


@pytest.fixture(scope="module")
def readers_file(digits_net: IntNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_nir(digits_net, tmp_path_factory.mktemp("nir") / "digits.readers.nir", profile="readers")


def one_neuron(theta: int, current: int) -> IntNet:
    """input (1 pixel) -> IF neuron (weight 1, bias `current`, threshold θ) -> readout (weight 1): the graph's
    output at each step is the neuron's spikes of that step. The pixel is 0, so the bias is the only current."""
    layers = [
        Layer("n", "if", (1,), np.array([current]), theta, theta // 2, [Synapse("input", "dense", np.ones((1, 1)))]),
        Layer("out", "readout", (1,), np.zeros(1), 1, 0, [Synapse("n", "dense", np.ones((1, 1)))], depth=2),
    ]
    return IntNet(mode="int", input=InputSpec((1, 1, 1), (0.0,), (1.0,), 1.0), layers=layers, L=4)


def per_step(result, T: int) -> list[float]:  # type: ignore[no-untyped-def]
    """The graph's output at steps 1..T (differences of the running sums the readers' SimResult holds)."""
    sums = [0.0] + [float(result.logits[t][0, 0]) for t in range(1, T + 1)]
    return [b - a for a, b in zip(sums, sums[1:])]


# --- the readers profile is the same network ------------------------------------------------------------------
def test_readers_profile_has_no_integrator_and_imports_identically(digits_net: IntNet, readers_file: Path) -> None:
    graph = nir.read(readers_file, type_check=False)
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert "I" not in kinds and {"Input", "IF", "Affine", "Output"} <= kinds
    back = load_nir_intnet(readers_file)
    assert back.header() == digits_net.header() and back.to_bytes() == digits_net.to_bytes()
    x = load_split("digits", "test")[0][:30]
    ref = simulate(digits_net, x, [1, 4], progress=False)
    got = simulate_nir(readers_file, x, [1, 4], semantics="qcfs", progress=False)
    for T in (1, 4):
        assert np.array_equal(got.logits[T], ref.logits[T])
        assert all(np.array_equal(got.spikes[T][k], v) for k, v in ref.spikes[T].items())


def test_unknown_profile_is_one_line(digits_net: IntNet) -> None:
    from qcfs.errors import QCFSError

    with pytest.raises(QCFSError, match="NIR profile must be one of qcfs, readers"):
        to_nir_graph(digits_net, "norse")


# --- sinabs -------------------------------------------------------------------------------------------------
def test_sinabs_neuron_semantics(tmp_path: Path) -> None:
    """IAFSqueeze as sinabs.from_nir builds it: v(0) = 0, v += I, trunc(v/θ) spikes (several per step),
    subtract them·θ. θ = 6 (integer networks keep θ even, so θ/2 is exact): current 4 -> v 4, 8 (1 spike, v 2),
    6 (1, v 0), 4, 8 (1, v 2), 6 (1, v 0), ...; current 13 -> 2 spikes at step 1 (v 13 -> 1), then 14 -> 2 (v 2),
    where qcfs's binary IF emits at most one per step."""
    pytest.importorskip("sinabs")
    from qcfs.runtime.nir_readers import simulate_sinabs

    x = np.zeros((1, 1, 1, 1), np.float32)
    res = simulate_sinabs(export_nir(one_neuron(6, 4), tmp_path / "n4.nir", profile="readers"), x, list(range(1, 9)))
    assert per_step(res, 8) == [0, 1, 1, 0, 1, 1, 0, 1]
    res = simulate_sinabs(export_nir(one_neuron(6, 13), tmp_path / "n13.nir", profile="readers"), x, [1, 2])
    assert per_step(res, 2) == [2, 2]


def test_sinabs_runs_the_digits_file(readers_file: Path, digits_net: IntNet, tmp_path: Path) -> None:
    """Both profiles: sinabs maps the default profile's I node to nothing and outputs the readout current."""
    pytest.importorskip("sinabs")
    from qcfs.runtime.nir_readers import simulate_sinabs

    x, y = load_split("digits", "test")
    x, y = x[::6], y[::6]  # 60 samples spread over the test split
    res = simulate_sinabs(readers_file, x, [1, 4, 16])
    default = simulate_sinabs(export_nir(digits_net, tmp_path / "default.nir"), x, [1, 4, 16])
    assert all(np.array_equal(default.logits[T], res.logits[T]) for T in res.Ts)
    for T in res.Ts:
        assert np.array_equal(res.logits[T], np.rint(res.logits[T]))  # integer weights and inputs: exact
    acc = res.accuracy(y)
    assert acc[16] > 0.85 and acc[1] < acc[16], acc  # measured: BENCHMARKS.md section 5


# --- snnTorch -----------------------------------------------------------------------------------------------
def test_snntorch_refuses_the_integrator_readout(digits_net: IntNet, tmp_path: Path) -> None:
    """Why the qcfs profile does not do for snnTorch: snnTorch 1.0.0 has no mapping for NIR's I node."""
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    with pytest.raises(Exception, match="Unknown node type"):
        import_from_nir(nir.read(export_nir(digits_net, tmp_path / "default.nir"), type_check=False))


def test_snntorch_cannot_run_if_nodes(readers_file: Path) -> None:
    """Why the snntorch profile exists: snnTorch 1.0.0 imports IF as Leaky(init_hidden=False), whose
    (spikes, membrane) tuple nirtorch 2.6 passes to the next module."""
    pytest.importorskip("snntorch")
    from qcfs.runtime.nir_readers import simulate_snntorch

    with pytest.raises(TypeError, match="tuple"):  # linear() or conv2d() "got tuple" (the next layer)
        simulate_snntorch(readers_file, load_split("digits", "test")[0][:1], [1])


def test_snntorch_neuron_semantics(tmp_path: Path) -> None:
    """Profile snntorch: each IF as the LIF snnTorch reads as Leaky(beta=1, reset to zero): v(0) = 0, v += I,
    one spike when v > θ, then v = 0. θ = 4, current 3: v 3, 6 (spike, 0), 3, 6 (spike, 0), ...;
    θ = 6: v 3, 6 (not > 6), 9 (spike, 0), 3, 6, 9 (spike)."""
    pytest.importorskip("snntorch")
    from qcfs.runtime.nir_readers import simulate_snntorch

    x = np.zeros((1, 1, 1, 1), np.float32)
    res = simulate_snntorch(export_nir(one_neuron(4, 3), tmp_path / "n4.nir", profile="snntorch"), x, list(range(1, 9)))
    assert per_step(res, 8) == [0, 1, 0, 1, 0, 1, 0, 1]
    res = simulate_snntorch(export_nir(one_neuron(6, 3), tmp_path / "n6.nir", profile="snntorch"), x, list(range(1, 7)))
    assert per_step(res, 6) == [0, 0, 1, 0, 0, 1]


def test_snntorch_equals_the_nir_stock_model(digits_net: IntNet, tmp_path: Path) -> None:
    """qcfs.runtime.nir_stock's "stock" semantics (the NIR spec's IF) is what snnTorch runs on the snntorch
    profile: same logits and spike counts, bit for bit (integer currents: exact in both)."""
    pytest.importorskip("snntorch")
    from qcfs.runtime.nir_readers import simulate_snntorch
    from qcfs.runtime.nir_stock import strip_qcfs_metadata

    x = load_split("digits", "test")[0][::24]  # 15 samples
    path = export_nir(digits_net, tmp_path / "d.snntorch.nir", profile="snntorch")
    assert load_nir_intnet(path).to_bytes() == digits_net.to_bytes()
    got = simulate_snntorch(path, x, [4, 16])
    stock = tmp_path / "stock.nir"
    nir.write(stock, strip_qcfs_metadata(to_nir_graph(digits_net)))
    ref = simulate_nir(stock, x, [4, 16], input_spec=digits_net.input, progress=False)
    for T in (4, 16):
        assert np.array_equal(got.logits[T], ref.logits[T]), T
        assert sorted(v.sum() for v in got.spikes[T].values()) == sorted(v.sum() for v in ref.spikes[T].values())
    assert sum(v.sum() for v in ref.spikes[16].values()) > 0


# --- Norse --------------------------------------------------------------------------------------------------
def test_norse_neuron_semantics(tmp_path: Path) -> None:
    """Profile readers: each IF as Norse's IAFCell: v(0) = 0, v += I, one spike when v > θ, then v = 0 — the NIR
    spec's IF, where qcfs (the NumPy reference on the same network) starts at θ/2, spikes on v ≥ θ and subtracts θ.
    θ = 4, current 3: Norse v 3, 6 (spike, 0), 3, 6 (spike, 0), ...; qcfs v 2+3 = 5 (spike, 1), 4 (spike, 0), 3,
    6 (spike, 2), 5 (spike, 1), 4 (spike, 0), 3, 6 (spike): 6 spikes in 8 steps where Norse has 4.
    θ = 6, current 3: Norse v 3, 6 (not > 6), 9 (spike, 0), ...; qcfs v 6 (spike, 0), 3, 6 (spike), ...
    θ = 6, current 13: one spike per step in both (binary IF; sinabs emits 2)."""
    pytest.importorskip("norse")
    from qcfs.runtime.nir_readers import simulate_norse

    x = np.zeros((1, 1, 1, 1), np.float32)
    Ts = list(range(1, 9))
    for theta, current, norse_steps, qcfs_steps in ((4, 3, [0, 1, 0, 1, 0, 1, 0, 1], [1, 1, 0, 1, 1, 1, 0, 1]),
                                                    (6, 3, [0, 0, 1, 0, 0, 1, 0, 0], [1, 0, 1, 0, 1, 0, 1, 0]),
                                                    (6, 13, [1] * 8, [1] * 8)):
        net = one_neuron(theta, current)
        got = simulate_norse(export_nir(net, tmp_path / f"n{theta}_{current}.nir", profile="readers"), x, Ts)
        assert per_step(got, 8) == norse_steps, (theta, current)
        assert per_step(simulate(net, x, Ts, progress=False), 8) == qcfs_steps, (theta, current)


def test_norse_equals_the_nir_stock_model(digits_net: IntNet, readers_file: Path, tmp_path: Path) -> None:
    """What Norse computes on the digits file is qcfs.runtime.nir_stock's "stock" semantics (the NIR spec's IF):
    same logits and spike counts, bit for bit (integer weights, inputs and thresholds: exact in float32). The
    default profile's I node, which Norse maps to nothing, gives the same logits as the readers profile."""
    pytest.importorskip("norse")
    from qcfs.runtime.nir_readers import simulate_norse
    from qcfs.runtime.nir_stock import strip_qcfs_metadata

    x, y = load_split("digits", "test")
    x, y = x[::24], y[::24]  # 15 samples spread over the test split
    got = simulate_norse(readers_file, x, [1, 4, 16])
    stock = tmp_path / "stock.nir"
    nir.write(stock, strip_qcfs_metadata(to_nir_graph(digits_net)))
    ref = simulate_nir(stock, x, [1, 4, 16], input_spec=digits_net.input, progress=False)
    for T in (1, 4, 16):
        assert np.array_equal(got.logits[T], ref.logits[T]), T
        assert sorted(v.sum() for v in got.spikes[T].values()) == sorted(v.sum() for v in ref.spikes[T].values())
    assert sum(v.sum() for v in ref.spikes[16].values()) > 0
    assert got.accuracy(y)[16] > 0.8  # measured on all samples: BENCHMARKS.md section 5
    default = simulate_norse(export_nir(digits_net, tmp_path / "default.nir"), x, [1, 4, 16])
    assert all(np.array_equal(default.logits[T], got.logits[T]) for T in got.Ts)


# --- SNN-ONNX in a second runtime ---------------------------------------------------------------------------
class _ReferenceSession:
    """onnx.reference.ReferenceEvaluator behind the two calls simulate_ort makes of an onnxruntime session."""

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        import onnx
        from onnx.reference import ReferenceEvaluator

        proto = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
        self.evaluator = ReferenceEvaluator(proto)

    def get_outputs(self) -> list[types.SimpleNamespace]:
        return [types.SimpleNamespace(name=n) for n in self.evaluator.output_names]

    def run(self, _names, feeds):  # type: ignore[no-untyped-def]
        return self.evaluator.run(None, feeds)


@pytest.mark.parametrize("kernels", ["int8", "float32"])
def test_snn_onnx_gives_the_same_integers_in_onnx_reference(digits_net: IntNet, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, kernels: str) -> None:
    from qcfs.exporters.snn_onnx import export_snn_onnx
    from qcfs.runtime import ort_snn

    path = export_snn_onnx(digits_net, tmp_path / f"digits-{kernels}.snn.onnx", kernels=kernels)
    x = load_split("digits", "test")[0][:12]
    ref = ort_snn.simulate_ort(digits_net, x, [1, 3], model=path, progress=False)
    monkeypatch.setattr(ort_snn, "session", lambda model, threads=0: _ReferenceSession(model))
    got = ort_snn.simulate_ort(digits_net, x, [1, 3], model=path, progress=False)
    numpy_ref = simulate(digits_net, x, [1, 3], progress=False)
    for T in (1, 3):
        assert np.array_equal(got.logits[T], ref.logits[T]) and np.array_equal(got.logits[T], numpy_ref.logits[T])
        for k, v in ref.spikes[T].items():
            assert np.array_equal(got.spikes[T][k], v), (T, k)
    assert sum(int(v.sum()) for v in got.spikes[3].values()) > 0


def test_cli_nir_profile(digits_net: IntNet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qcfs.cli import export as export_cli

    out = tmp_path / "d.nir"
    assert export_cli.main([str(DIGITS_ONNX), "--backend", "nir", "--nir-profile", "readers", "-o", str(out)]) == 0
    assert "I" not in {type(n).__name__ for n in nir.read(out, type_check=False).nodes.values()}
    assert load_nir_intnet(out).to_bytes() == digits_net.to_bytes()
    back = tmp_path / "back.nir"  # .nir -> .nir only to change the profile (same file otherwise: refused)
    assert export_cli.main([str(out), "--backend", "nir", "-o", str(back)]) == 2
    assert export_cli.main([str(out), "--backend", "nir", "--nir-profile", "readers", "-o", str(back)]) == 0
    assert export_cli.main([str(out), "--backend", "intnet", "-o", str(tmp_path / "d.intnet.npz")]) == 0
    assert export_cli.main([str(DIGITS_ONNX), "--backend", "lava", "--nir-profile", "readers",
                            "-o", str(tmp_path / "x.lava.npz")]) == 2
    err = capsys.readouterr().err
    assert "--nir-profile applies to --backend nir only" in err and "Traceback" not in err
