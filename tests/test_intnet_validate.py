"""Issue 13, class 3: semantically invalid IntNet files are refused on load in one line naming layer and field
(each of these ran with exit 0 before)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from intnet_mutations import MUTATIONS, mutate
from lava_nets import digits_net, residual_net
from qcfs.cli.run import main as run_main
from qcfs.errors import ModelFileError
from qcfs.intnet import load_intnet


@pytest.fixture(scope="module")
def blob() -> bytes:
    return residual_net().to_bytes()  # conv layers, an identity shortcut with delay, dense readout


def test_valid_networks_load(blob: bytes) -> None:
    net = load_intnet(io.BytesIO(blob))
    assert net.mode == "int" and net.layers[-1].kind == "readout"
    assert all(s.weight.dtype == np.int64 for layer in net.layers for s in layer.synapses)
    load_intnet(io.BytesIO(digits_net().to_bytes()))


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_invalid_intnet_is_refused(blob: bytes, name: str) -> None:
    with pytest.raises(ModelFileError) as info:
        load_intnet(io.BytesIO(mutate(blob, name)))
    msg = str(info.value)
    assert MUTATIONS[name][1] in msg and "\n" not in msg, msg


@pytest.mark.parametrize("name", ["theta odd", "weights NaN", "stride zero", "mode unknown"])
def test_cli_refuses_in_one_line_naming_file_and_layer(blob: bytes, name: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.intnet.npz"
    path.write_bytes(mutate(blob, name))
    code = run_main(["--model", str(path), "--dataset", "digits", "--T", "1", "--limit", "2", "--no-progress"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert str(path) in lines[0] and MUTATIONS[name][1] in lines[0]
    if name != "mode unknown":
        assert "layer '" in lines[0]


def test_per_channel_v_init_other_than_theta_half_is_valid(blob: bytes) -> None:
    """Calibration may set v_init per channel: integral and inside the membrane range is all that is required."""
    net = load_intnet(io.BytesIO(blob))
    layer = net.layers[0]
    layer.v_init = np.arange(layer.channels, dtype=np.int64) - 3
    again = load_intnet(io.BytesIO(net.to_bytes()))
    assert np.array_equal(again.layers[0].v_init, layer.v_init)


def test_conversion_output_is_validated() -> None:
    """The converter validates what it emits: a pass that produced an odd θ would be caught at emit."""
    from qcfs.intnet_validate import validate_intnet

    net = digits_net()
    net.layers[0].threshold = 3
    with pytest.raises(ModelFileError, match="must be even"):
        validate_intnet(net, "converted network")
