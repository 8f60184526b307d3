"""Two-phase inference (`qcfs-run --pre-steps ρ`, qcfs.semantics.offset_restart): the rule itself, identical
numpy and torch results, ρ = 0 is plain inference, and the CLI's latency accounting and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lava_nets
from qcfs.runtime.numpy_snn import simulate
from qcfs.semantics import offset_restart


def test_offset_restart_takes_whole_surplus_spikes_off_the_next_window() -> None:
    v = np.array([-9, -3, 0, 3, 4, 9], dtype=np.int64)  # residuals after ρ steps, θ = 4
    offset_restart(v, 2, 4, (-(1 << 23), (1 << 23) - 1))
    # floor(v/θ) = -3, -1, 0, 0, 1, 2  -> v_init + θ·offset
    assert v.tolist() == [2 - 12, 2 - 4, 2, 2, 2 + 4, 2 + 8]
    v = np.array([-5], dtype=np.int64)
    offset_restart(v, np.array([1]), 4, (-3, 3))  # saturates like every membrane update
    assert v.tolist() == [-3]


@pytest.mark.parametrize("make", [lava_nets.digits_net, lava_nets.residual_net], ids=lambda f: f.__name__)
def test_numpy_and_torch_agree_bit_for_bit_with_pre_steps(make) -> None:  # type: ignore[no-untyped-def]
    from qcfs.runtime.torch_snn import simulate_torch

    net = make()
    x = lava_nets.images(net, 12, seed=2)
    a = simulate(net, x, [1, 2, 4], progress=False, pre_steps=3)
    b = simulate_torch(net, x, [1, 2, 4], progress=False, pre_steps=3)
    assert a.pre_steps == b.pre_steps == 3
    for t in (1, 2, 4):
        assert np.array_equal(a.logits[t], b.logits[t])
        assert all(np.array_equal(a.spikes[t][k], b.spikes[t][k]) for k in a.spikes[t])
    plain = simulate(net, x, [1, 2, 4], progress=False)
    assert any(not np.array_equal(a.logits[t], plain.logits[t]) for t in (1, 2, 4))  # it does something
    zero = simulate(net, x, [1, 2, 4], progress=False, pre_steps=0)
    assert all(np.array_equal(zero.logits[t], plain.logits[t]) for t in (1, 2, 4))


def test_pre_steps_need_sync_timing() -> None:
    net = lava_nets.digits_net()
    with pytest.raises(ValueError, match="timing='sync'"):
        simulate(net, lava_nets.images(net, 2), [2], timing="pipelined", progress=False, pre_steps=2)


def test_cli_reports_latency_with_pre_steps_and_refuses_lava(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qcfs.cli import run as run_cli

    net = lava_nets.digits_net()
    path = net.save(tmp_path / "d.intnet.npz")
    js = tmp_path / "r.json"
    assert run_cli.main(["--model", str(path), "--dataset", "digits", "--T", "1,2", "--pre-steps", "2", "--limit",
                         "20", "--json", str(js), "--no-progress"]) == 0
    doc = json.loads(js.read_text())
    assert [(r["T"], r["pre_steps"], r["latency_steps"]) for r in doc["results"]] == \
        [(1, 2, 2 + 1 + net.readout.depth), (2, 2, 2 + 2 + net.readout.depth)]
    capsys.readouterr()
    for extra in (["--backend", "lava"], ["--timing", "pipelined"]):
        code = run_cli.main(["--model", str(path), "--dataset", "digits", "--pre-steps", "2", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "phase schedule" in err
