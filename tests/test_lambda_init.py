"""Data-based λ initialisation: each QCFS λ becomes the 99.9th percentile of its positive inputs."""

from __future__ import annotations

import torch

from qcfs.frontend.lambda_init import calibrate_lambdas
from qcfs.frontend.models import ModelConfig, build_model
from qcfs.frontend.qcfs_act import QCFS


def test_first_layer_lambda_is_the_percentile_of_its_inputs() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig("cnn", 1, 10, 8))
    x = torch.randn(64, 1, 8, 8)
    chosen = calibrate_lambdas(model, x)
    first = model.features[2]
    assert isinstance(first, QCFS)
    bn = model.features[1]
    with torch.no_grad():
        conv = model.features[0](x)
        mean, var = conv.mean(dim=(0, 2, 3), keepdim=True), conv.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        pre = ((conv - mean) / torch.sqrt(var + bn.eps)).flatten()  # batch statistics, as calibration uses
    want = float(torch.quantile(pre[pre > 0], 0.999))
    assert abs(float(first.lam.detach()) - want) < 1e-4 and chosen["features.2"] == float(first.lam.detach())
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # running statistics untouched
    assert set(chosen) == {n for n, m in model.named_modules() if isinstance(m, QCFS)}
    assert all(0 < v < 8.0 for v in chosen.values())  # far below the paper's fixed start for this input
    assert model.training  # the caller's mode is restored


def test_training_with_lambda_from_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qcfs.frontend.checkpoint import read_checkpoint
    from qcfs.frontend.train import TrainConfig, train_model

    out = tmp_path / "m.pt"
    rec = train_model(TrainConfig(model="cnn", dataset="digits", output=str(out), epochs=1, lam_from_data=True,
                                  progress=False), log=lambda _: None)
    assert all(v < 6.0 for v in rec["lambda"].values())  # λ started at the data's scale, not at 8
    assert read_checkpoint(out)["train_config"]["lam_from_data"] is True
