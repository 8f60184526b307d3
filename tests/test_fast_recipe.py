"""The fast training recipe's building blocks (frontend/fast_recipe.py), a short seeded run of it, and the
cifarnet architecture through export -> IntNet -> NumPy and Lava."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import qcfs.frontend.train as train_mod
from qcfs.frontend.checkpoint import read_checkpoint
from qcfs.frontend.fast_recipe import (FAST, WeightEMA, fast_lr, init_whitening, param_groups, prepare_model,
                                      whitening_basis)
from qcfs.frontend.models import ModelConfig, build_model
from qcfs.frontend.train import TrainConfig, train_model


def _correlated_images(n: int, seed: int = 0) -> torch.Tensor:
    """Images whose channels and neighbouring pixels are correlated (as in natural images)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, 33, 33, generator=g)
    smooth = F.avg_pool2d(base, 2, stride=1)  # neighbouring pixels share terms
    mix = torch.tensor([[1.0], [0.8], [0.5]]).view(1, 3, 1, 1)
    return smooth * mix + 0.1 * torch.randn(n, 3, 32, 32, generator=g)


def test_whitening_basis_is_the_patch_covariance_eigenbasis() -> None:
    x = _correlated_images(64)
    eps = 1e-3
    basis = whitening_basis(x, 2, eps).double()
    d = 3 * 2 * 2
    assert basis.shape == (2 * d, 3, 2, 2)
    assert torch.equal(basis[d:], -basis[:d])  # both signs of every direction
    patches = F.unfold(x.double(), 2).transpose(1, 2).reshape(-1, d)
    cov = patches.T @ patches / patches.shape[0]
    evals = torch.linalg.eigvalsh(cov).flip(0)  # descending, as the basis is ordered
    w = basis[:d].reshape(d, d)
    # W Σ Wᵀ = diag(e / (e + eps)): the outputs are uncorrelated, unit variance up to eps. The basis is stored
    # in float32 (relative rounding 2^-24 per entry, d-term sums): 1e-5 bounds that with margin.
    whitened = w @ cov @ w.T
    expected = torch.diag(evals / (evals + eps))
    assert torch.allclose(whitened, expected, atol=1e-5, rtol=0)


def test_init_whitening_fixes_the_first_conv_and_keeps_it_out_of_the_optimizer() -> None:
    model = build_model(ModelConfig("cifarnet", 3, 10, 32))
    x = _correlated_images(32)
    assert init_whitening(model, x)
    assert torch.equal(model.whiten.weight, whitening_basis(x, 2))
    assert not model.whiten.weight.requires_grad and torch.count_nonzero(model.whiten.bias) == 0
    optimized = {id(p) for g in param_groups(model, 5e-4) for p in g["params"]}
    assert id(model.whiten.weight) not in optimized and id(model.whiten.bias) in optimized
    assert not init_whitening(build_model(ModelConfig("resnet20", 3, 10, 32)), x)  # no whitening layer: untouched


def test_prepare_model_sets_fast_batchnorm_statistics_only() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig("cifarnet", 3, 10, 32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepare_model(model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.momentum == FAST.bn_momentum for bn in bns)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # no weight changed


def test_param_groups_give_each_parameter_one_role() -> None:
    from qcfs.frontend.qcfs_act import QCFS

    model = build_model(ModelConfig("cifarnet", 3, 10, 32))
    wd = 1e-3
    groups = param_groups(model, wd, head_scale=0.125)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen))  # no parameter in two groups
    assert set(seen) == {id(p) for p in model.parameters() if p.requires_grad}  # and none left out

    def group_of(p: torch.Tensor) -> dict:
        return next(g for g in groups if any(q is p for q in g["params"]))

    lam = next(m for m in model.modules() if isinstance(m, QCFS)).lam
    assert group_of(lam)["weight_decay"] == wd  # decayed as in the paper: it sets the quantization step
    g = group_of(model.whiten.bias)
    assert g["until_epoch"] == FAST.whiten_bias_epochs and g["lr_scale"] == 1.0
    g = group_of(model.fc.weight)
    assert g["lr_scale"] == 0.125**2 and g["weight_decay"] == pytest.approx(wd / 0.125**2)
    conv = next(m for m in model.blocks if isinstance(m, nn.Conv2d))
    assert group_of(conv.weight) is group_of(lam) and "until_epoch" not in group_of(conv.weight)


def test_fast_lr_warms_up_then_decays_to_zero() -> None:
    assert fast_lr(1.0, 0.0) == pytest.approx(0.1)
    assert fast_lr(1.0, FAST.warmup) == pytest.approx(1.0)
    assert fast_lr(1.0, 1.0) == 0.0
    values = [fast_lr(1.0, p / 100) for p in range(101)]
    peak = values.index(max(values))
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1]))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1 :]))


def test_scaled_head_groups_equal_sgd_on_scaled_logits() -> None:
    """param_groups' identity: SGD on w with lr η·s², decay λ/s², from w0 = s·u0, equals SGD on u with lr η,
    decay λ when the logits are s·(u x) — step for step, momentum and Nesterov included."""
    torch.manual_seed(0)
    s, lr, wd = 0.125, 0.3, 5e-4
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    u = nn.Linear(5, 3, bias=True).double()
    w = nn.Linear(5, 3, bias=True).double()
    w.load_state_dict(u.state_dict())
    groups = param_groups(w, wd, head_scale=s)  # scales w's weights by s
    opt_w = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    for g in opt_w.param_groups:
        g["lr"] = lr * g["lr_scale"]
    opt_u = torch.optim.SGD(u.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    for _ in range(5):
        for opt, logits in ((opt_u, s * u(x)), (opt_w, w(x))):
            opt.zero_grad()
            F.cross_entropy(logits, y).backward()
            opt.step()
    for a, b in zip(u.parameters(), w.parameters()):
        assert torch.allclose(s * a, b, rtol=1e-12, atol=1e-15)


def test_weight_ema_ramps_and_averages() -> None:
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = WeightEMA(lin, decay=0.5)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)  # decay min(0.5, 2/11) = 2/11
    assert torch.allclose(ema.state["weight"], torch.full((1, 2), 9 / 11))
    ema.update(lin)  # min(0.5, 3/12) = 1/4 -> 9/11·1/4 + 3/4
    assert torch.allclose(ema.state["weight"], torch.full((1, 2), 9 / 44 + 3 / 4))


def _tiny_cifar(monkeypatch: pytest.MonkeyPatch, n_train: int = 192, n_test: int = 64) -> None:
    """cifar10-shaped random images in [0, 1], so the recipe runs in seconds (no data files needed)."""
    rng = np.random.default_rng(7)

    def fake_load_split(dataset: str, split: str, data_dir=None):  # type: ignore[no-untyped-def]
        n = n_train if split == "train" else n_test
        x = rng.random((n, 3, 32, 32), dtype=np.float32)
        y = (x[:, 0, :16].mean(axis=(1, 2)) * 10).astype(np.int64) % 10  # a learnable label
        return x, y

    monkeypatch.setattr(train_mod, "load_split", fake_load_split)


def _fast(out: Path, epochs: int = 2, log=lambda _: None, val: int = 0) -> dict:  # type: ignore[no-untyped-def]
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(model="cifarnet", dataset="cifar10", output=str(out), epochs=epochs, recipe="fast", batch=64,
                      lr=FAST.lr, wd=FAST.wd, resume=True, progress=False, val=val)
    train_model(cfg, log=log)
    return read_checkpoint(out)


@pytest.mark.timeout(300)
def test_fast_recipe_is_deterministic_resumable_and_saves_the_average(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_cifar(monkeypatch)
    a = _fast(tmp_path / "a" / "m.pt")
    _tiny_cifar(monkeypatch)
    b = _fast(tmp_path / "b" / "m.pt")

    class Interrupt(Exception):
        pass

    def interrupt(_: str) -> None:
        raise Interrupt

    _tiny_cifar(monkeypatch)
    out = tmp_path / "c" / "m.pt"
    with pytest.raises(Interrupt):
        _fast(out, log=interrupt)  # stops right after epoch 1 is saved
    _tiny_cifar(monkeypatch)
    resumed = _fast(out)
    assert [r["epoch"] for r in resumed["log"]] == [1, 2]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"not deterministic: {key}"
        assert torch.equal(value, resumed["state_dict"][key]), f"resume differs: {key}"
    # what is saved as state_dict (what load_checkpoint, export and qcfs-run read) is the weight average
    moved = [k for k, v in a["live_state_dict"].items() if v.is_floating_point()
             and not torch.equal(v, a["state_dict"][k])]
    assert "fc.weight" in moved and any(k.endswith(".lam") for k in moved)
    assert a["ema_updates"] == 2 * 3  # 2 epochs of 192 / 64 steps
    # the test split is touched once, after the last epoch
    assert "test_acc" not in a["log"][0] and "test_acc" in a["log"][-1]
    # resuming under the other recipe would mix averaged and live weights: refused
    from qcfs.errors import QCFSError

    with pytest.raises(QCFSError, match="trained with --recipe fast"):
        train_model(TrainConfig(model="cifarnet", dataset="cifar10", output=str(tmp_path / "a" / "m.pt"), epochs=3,
                                resume=True, progress=False), log=lambda _: None)


@pytest.mark.timeout(300)
def test_whitening_bias_stops_training_after_its_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import qcfs.frontend.fast_recipe as recipe

    monkeypatch.setattr(recipe, "FAST", dataclasses.replace(recipe.FAST, whiten_bias_epochs=1))
    _tiny_cifar(monkeypatch)
    out = tmp_path / "m.pt"
    after_epoch: list[dict] = []
    _fast(out, epochs=2, log=lambda _: after_epoch.append(read_checkpoint(out)["live_state_dict"]))
    first, second = after_epoch
    assert torch.count_nonzero(first["whiten.bias"]) > 0  # it trained in epoch 1
    assert torch.equal(first["whiten.bias"], second["whiten.bias"])  # and not in epoch 2
    assert not torch.equal(first["fc.weight"], second["fc.weight"])  # while the rest did


@pytest.mark.timeout(300)
def test_exported_onnx_holds_the_averaged_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    from onnx import numpy_helper

    from qcfs.exporters.onnx_export import export_checkpoint

    _tiny_cifar(monkeypatch)
    ck = _fast(tmp_path / "m.pt", epochs=1, val=32)
    assert "val_acc" in ck["log"][-1]
    proto = onnx.load(str(export_checkpoint(tmp_path / "m.pt", tmp_path / "m.onnx")))
    inits = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    fc_avg = ck["state_dict"]["fc.weight"].numpy()
    fc_live = ck["live_state_dict"]["fc.weight"].numpy()
    assert any(v.shape == fc_avg.shape and np.array_equal(v, fc_avg) for v in inits)
    assert not any(v.shape == fc_live.shape and np.array_equal(v, fc_live) for v in inits)


def _narrow_cifarnet_intnet():  # type: ignore[no-untyped-def]
    """A 1/8-width cifarnet with whitening and data λ, converted to an integer IntNet (random weights)."""
    import tempfile

    from qcfs.exporters.onnx_export import export_module
    from qcfs.frontend.lambda_init import calibrate_lambdas
    from qcfs.frontend.models import CifarNet
    from qcfs.pipeline import canonical_onnx, to_intnet

    torch.manual_seed(0)
    cfg = ModelConfig("cifarnet", 3, 10, 32)
    model = CifarNet(cfg, width_div=8)
    x = _correlated_images(64)
    init_whitening(model, x)
    calibrate_lambdas(model, x)
    model.eval()
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    meta = {"config": cfg.to_dict(), "dataset": "cifar10", "normalize": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_module(model, meta, Path(tmp) / "c.onnx")
        return to_intnet(canonical_onnx(path), mode="int")


def test_cifarnet_converts_whitening_and_conv_then_pool_compose() -> None:
    net = _narrow_cifarnet_intnet()
    names = [layer.name for layer in net.layers]
    assert len(net.if_layers) == 7 and net.layers[-1].kind == "readout", names  # whiten + 2 per block
    first = net.layers[0].synapses[0]
    assert first.source == "input" and first.weight.shape[2:] == (2, 2)  # the whitening conv, unchanged
    # conv 3x3 then AvgPool 2x2 compose into one strided synapse (4x4, stride 2)
    pooled = [layer.synapses[0] for layer in net.if_layers if layer.synapses[0].stride == (2, 2)]
    assert len(pooled) == 3 and all(s.weight.shape[2:] == (4, 4) for s in pooled)


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_cifarnet_lava_equals_numpy() -> None:
    from lava_helpers import reference_counts

    from qcfs.runtime.lava.compat import lava_available

    if not lava_available():
        pytest.skip("lava-nc not installed (scripts/setup_env.sh installs it)")
    from qcfs.runtime.lava.backend import simulate_lava

    net = _narrow_cifarnet_intnet()
    x = np.random.default_rng(3).random((6, 3, 32, 32))
    res = simulate_lava(net, x, [1, 4], progress=False, timeout_s=240)
    ref = reference_counts(net, x, [1, 4])
    for T in (1, 4):
        assert np.array_equal(res.logits[T], ref[T]["logits"])
        for layer in net.if_layers:
            assert np.array_equal(res.spikes[T][layer.name], ref[T][layer.name]), (T, layer.name)
    assert sum(int(ref[4][layer.name].sum()) for layer in net.if_layers) > 0  # the network is not silent


@pytest.mark.parametrize("extra,needle", [
    (["--recipe", "adam"], "argument --recipe: invalid choice"),
    (["--recipe", "fast", "--val", "-1"], "argument --val"),
])
def test_recipe_cli_errors_are_one_line(tmp_path: Path, extra: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "qcfs.cli.train", "--model", "cifarnet", "--dataset", "digits",
                           "-o", str(tmp_path / "x.pt"), *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()


def test_fast_recipe_refuses_imagenet_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "qcfs.cli.train", "--model", "resnet34", "--dataset", "imagenet",
                           "--recipe", "fast", "--data-dir", str(tmp_path), "-o", str(tmp_path / "x.pt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--recipe fast" in proc.stderr or "imagenet" in proc.stderr.lower()
