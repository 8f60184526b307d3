"""Will it fit (report.resources): counts against a hand count, the partitioning rule just under and just over
each per-core limit, one-line refusals, and the qcfs-export --fit CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lava_nets import NetBuilder
from qcfs.errors import HardwareFitError
from qcfs.intnet import IntNet, SumPool
from qcfs.report.chip_profiles import LOIHI2, chip_profile
from qcfs.report.resources import ESTIMATE_NOTE, check_fit, fit_report

MODELS = Path(__file__).resolve().parents[1] / "models"


def small_net() -> IntNet:
    """input 1×8×8 → c1 conv 4×1×3×3 pad 1 (4×8×8) → 2×2 sum-pool stage → f1 dense 16 ← 4·4·4 → out 10."""
    b = NetBuilder((1, 8, 8), seed=0)
    b.add("c1", [b.conv_syn("input", 4, 3, pad=1)])
    f1 = b.dense_syn("c1", 16)[0]
    f1.weight = f1.weight[:, :64]
    f1.pool = SumPool((2, 2), (2, 2))
    b.shapes["c1"] = (4, 8, 8)
    b.depths["c1"] = 1
    b.add("f1", [(f1, (16,))])
    b.layers[-1].depth = 3  # one step for the synapse, one for the pool stage
    b.depths["f1"] = 3
    b.add("out", [b.dense_syn("f1", 10)], kind="readout")
    return b.net()


def test_sums_match_a_hand_count() -> None:
    rep = fit_report(small_net())
    rows = {p.name: p for p in rep.populations}
    assert list(rows) == ["c1", "f1.pool0", "f1", "out"]
    c1, pool, f1, out = rows["c1"], rows["f1.pool0"], rows["f1"], rows["out"]
    # neurons
    assert (c1.neurons, pool.neurons, f1.neurons, out.neurons) == (256, 64, 16, 10)
    # synapses as stored (shared conv kernels: once; pool: C·kh·kw; dense: out·in) and bytes at 8 bits
    assert (c1.synapses, pool.synapses, f1.synapses, out.synapses) == (36, 16, 1024, 160)
    assert (c1.memory_bytes, f1.memory_bytes) == (36, 1024)
    assert (c1.fan_in, pool.fan_in, f1.fan_in, out.fan_in) == (9, 4, 64, 16)
    assert (c1.axons_in, pool.axons_in, f1.axons_in, out.axons_in) == (64, 256, 64, 16)
    # fan-out: each c1 neuron lies in one window; each window sum reaches 16 f1 units; f1 reaches 10
    assert (c1.fan_out, pool.fan_out, f1.fan_out, out.fan_out) == (1.0, 16.0, 10.0, 0.0)
    assert rep.totals == {"neurons": 346, "synapses": 1236, "memory_bytes": 1236, "cores": 4}
    assert rep.chips_needed == 1 and rep.pool_stages == 1 and rep.latency_steps_added == 1
    # dense (unrolled) conv storage: 4 output channels × 22 row-taps × 22 column-taps inside the 8×8 image
    dense = fit_report(small_net(), dataclasses.replace(LOIHI2, conv_storage="dense"))
    rows = {p.name: p for p in dense.populations}
    assert rows["c1"].synapses == 4 * 22 * 22 and rows["f1.pool0"].synapses == 256
    text = rep.table()
    assert ESTIMATE_NOTE in text.splitlines()[0] and "estimate" in text.splitlines()[-1]
    assert json.loads(rep.to_json())["estimate"] is True


def _dense_net(units: int, fan_in: int) -> IntNet:
    """input 1×1×fan_in → one dense IF layer of `units` → readout 2."""
    b = NetBuilder((1, 1, fan_in), seed=1)
    b.add("h", [b.dense_syn("input", units)])
    b.add("out", [b.dense_syn("h", 2)], kind="readout")
    return b.net()


@pytest.mark.parametrize("units, cores", [(16, 1), (17, 2)])
def test_partition_neurons_per_core_just_under_and_over(units: int, cores: int) -> None:
    prof = dataclasses.replace(LOIHI2, neurons_per_core=16)
    h = fit_report(_dense_net(units, 4), prof).populations[0]
    assert h.cores == cores
    assert (h.binding == "") == (cores == 1) and (cores == 1 or "neurons per core" in h.binding)


@pytest.mark.parametrize("fan_in, cores", [(64, 1), (65, 2)])
def test_partition_synaptic_memory_just_under_and_over(fan_in: int, cores: int) -> None:
    prof = dataclasses.replace(LOIHI2, synaptic_memory_per_core=16 * 64)  # 16 units × 64 inputs × 1 byte
    h = fit_report(_dense_net(16, fan_in), prof).populations[0]
    assert h.memory_bytes == 16 * fan_in and h.cores == cores
    assert cores == 1 or "synaptic memory per core" in h.binding


@pytest.mark.parametrize("limit, cores", [(1024, 1), (1023, 2)])
def test_partition_synapses_per_core_just_under_and_over(limit: int, cores: int) -> None:
    prof = dataclasses.replace(LOIHI2, synapses_per_core=limit)
    assert fit_report(_dense_net(16, 64), prof).populations[0].cores == cores


def test_shared_kernels_repeat_when_split_finer_than_a_channel() -> None:
    prof = dataclasses.replace(LOIHI2, neurons_per_core=16)  # c1: 4 channels × 64 neurons → 16 cores
    c1 = fit_report(small_net(), prof).populations[0]
    assert c1.cores == 16 and c1.synapses == 36 * 4  # each channel's kernel on its 4 cores


def test_refusal_names_the_first_layer_and_the_limit() -> None:
    prof = dataclasses.replace(LOIHI2, neurons_per_core=16, cores_per_chip=8)
    rep = fit_report(small_net(), prof, chips=1)
    assert not rep.fits and rep.refusal.startswith("layer c1:") and "neuron cores" in rep.refusal
    with pytest.raises(HardwareFitError) as err:
        check_fit(small_net(), prof, chips=1)
    assert "\n" not in str(err.value) and "c1" in str(err.value)
    # c1 16 cores, pool 4, f1 1, readout 1: two chips (16 cores) hold c1 but not the pool stage after it
    assert fit_report(small_net(), prof, chips=2).refusal.startswith("layer f1.pool0:")
    assert check_fit(small_net(), prof, chips=3).fits and fit_report(small_net(), prof).chips_needed == 3

def test_unplaceable_neuron_is_refused() -> None:
    prof = dataclasses.replace(LOIHI2, synaptic_memory_per_core=63)  # f1's 64-synapse fan-in does not fit a core
    rep = fit_report(small_net(), prof, chips=1)
    assert rep.refusal.startswith("layer f1:") and "synaptic memory per core" in rep.refusal


def test_profile_overrides_and_errors() -> None:
    from qcfs.errors import QCFSError

    prof = chip_profile("loihi2", {"synaptic_memory_per_core": "196608"})
    assert prof.synaptic_memory_per_core == 196608 and "overridden" in prof.limit_sources()["synaptic_memory_per_core"]
    for bad in ({"nope": "1"}, {"neurons_per_core": "x"}, {"neurons_per_core": "0"}, {"conv_storage": "z"}):
        with pytest.raises(QCFSError):
            chip_profile("loihi2", bad)
    with pytest.raises(QCFSError):
        chip_profile("spinnaker9")
    assert all(v for v in LOIHI2.limit_sources().values())


def test_cli_prints_the_table_and_writes_json(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from qcfs.cli.export import main

    out, js = tmp_path / "d.lava.npz", tmp_path / "fit.json"
    rc = main([str(MODELS / "digits" / "model.pt"), "--backend", "lava", "-o", str(out), "--fit", "loihi2",
               "--chips", "1", "--fit-json", str(js)])
    assert rc == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "estimate" in printed.splitlines()[0] and "pool0" in printed  # --fit defaults to --pool separate
    doc = json.loads(js.read_text())
    assert doc["estimate"] is True and doc["fits"] and doc["chips_needed"] == 1


@pytest.mark.parametrize("argv, words", [
    (["--fit", "loihi2", "--chips", "1", "--fit-set", "cores_per_chip=2", "--fit-set", "neurons_per_core=64"],
     ["layer", "neuron cores"]),
    (["--fit", "loihi2", "--fit-set", "synaptic_memory_per_core=8"], ["layer", "synaptic memory per core"]),
    (["--chips", "2"], ["--fit"]),
    (["--fit", "tpu"], ["unknown chip profile"]),
    (["--fit", "loihi2", "--fit-set", "oops"], ["FIELD=VALUE"]),
])
def test_cli_refusals_are_one_line(tmp_path: Path, capsys, argv, words) -> None:  # type: ignore[no-untyped-def]
    from qcfs.cli.export import main

    out = tmp_path / "d.lava.npz"
    rc = main([str(MODELS / "digits" / "model.pt"), "--backend", "lava", "-o", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert all(w in err for w in words), err


def test_report_folder_includes_the_estimate(tmp_path: Path) -> None:
    from qcfs.report.writer import write_report

    paths = write_report(tmp_path / "rep", run_json={"model": "small", "results": []}, net=small_net())
    md = paths[-1].read_text()
    assert "Will it fit: loihi2 resources (an estimate)" in md and "f1.pool0" in md
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["resources"]["estimate"] is True and doc["resources"]["totals"]["synapses"] == 1236
