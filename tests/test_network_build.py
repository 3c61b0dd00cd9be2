"""`nomac build WHOLE.json`: the network board's bitstream at the highest PLL clock that meets timing.

CI: bad input is refused before anything is written; the pass loop runs on a stand-in
for the tools (a build script that writes the reports nextpnr and yosys would, with a
fixed Fmax, reading the PLL's dividers from the design the platform wrote), which
shows the PLL and UART settings each pass uses. Slow: the real builds for both boards
with the units that have gateware today.
"""
import json
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nomac import cli
from nomac.base.errors import NomacError
from nomac.boards.build import build_bitstream, build_network_bitstream, overfull_resources
from nomac.boards.network_board import limits_id, limits_json
from nomac.hw.network.unit import NetworkLimits
from nomac.hw.network.units import UNITS
from nomac.model.config import make_config, save_config
from nomac.model.operator_layers import AddLayer, EmbedLayer, GeluLayer, SelectTokenLayer
from lut_cases import LutCase

QUIET = {"progress": lambda text: None}
# A tiny board for the stand-in tools: one gelu step, small memories (elaborates in a moment).
TINY_LIMITS = NetworkLimits(tokens=1, features=8, model_features=8, table_words=64, activation_bytes=64, steps=4,
                            input_bytes=8, output_bytes=8, units=("gelu",))


def gelu(name, features, seed):
    table = np.random.default_rng(seed).integers(-128, 128, 256).astype(np.int8)
    return GeluLayer.from_json("case", {"name": name, "kind": "gelu", "features": features}, {"table": table})


def small_model():
    """A whole model on the gelu, add and embed units (the first units with gateware) and a view:
    a 64-byte input and a 40-byte output, the default limits' image and logits sizes."""
    offset = np.random.default_rng(15).integers(-2 ** 20, 2 ** 20, (5, 16)).astype(np.int32)
    return make_config([
        EmbedLayer.from_json("case", {"name": "embed", "kind": "embed", "tokens": 5, "features": 16, "mult": 24576,
                                      "shift": 15}, {"offset": offset}),
        gelu("gelu", 16, 1),
        AddLayer.from_json("case", {"name": "add", "kind": "add", "features": 16, "inputs": ["embed", "gelu"],
                                    "mult_a": 20000, "mult_b": 12000, "shift": 15}, {}),
        SelectTokenLayer.from_json("case", {"name": "pick", "kind": "select_token", "tokens": 2, "features": 40,
                                            "index": 1}, {}),
        gelu("out", 40, 2)])


MODEL = small_model()
MODEL_LIMITS = NetworkLimits(units=("gelu", "add", "embed"))


@pytest.mark.parametrize("options, message", [
    ({"limits": NetworkLimits(units=("gelu", "nonesuch"))}, "nonesuch has no network unit yet"),
    ({"limits": NetworkLimits(units=("gelu",))}, "layer 'embed' kind = 'embed': the network bitstream has units "
                                                 "for gelu"),
    ({"limits": NetworkLimits(tokens=4, units=("gelu", "add", "embed"))},
     "layer 'embed': tokens = 5: exceeds the network's limit 4"),
    ({"limits": NetworkLimits(table_words=16385, units=("gelu", "add", "embed"))},
     "table_words = 16385: the ice40-up5k's SPRAM holds 16384 words"),
    ({"limits": MODEL_LIMITS, "baud": 7}, "build: baud = 7: must be an integer in"),
    ({"limits": MODEL_LIMITS, "board_name": "ulx3s-85f", "baud": 40_000_000}, "build: baud = 40000000"),
    ({"limits": MODEL_LIMITS, "max_payload": 24}, "max_payload = 24"),
    ({"limits": MODEL_LIMITS, "layer_name": "gelu"}, "is a whole model, built whole as the network board"),
    ({"limits": MODEL_LIMITS, "board_name": "nonesuch"}, "board 'nonesuch': not supported"),
], ids=["unit-without-gateware", "kind-not-built", "over-the-limits", "table-beyond-spram", "baud", "ulx3s-baud",
        "max_payload", "layer", "board"])
def test_bad_input_is_refused_before_anything_is_written(options, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NomacError) as raised:
        build_bitstream(MODEL, out_dir=out, **QUIET, **options)
    assert message in str(raised.value)
    assert not out.exists()


def test_limits_are_only_for_a_whole_model(tmp_path):
    with pytest.raises(NomacError, match="only a whole model"):
        build_bitstream(LutCase("tree", 4, 5, 2, 4, {}).config(), limits=MODEL_LIMITS, out_dir=tmp_path / "out",
                        **QUIET)
    assert not (tmp_path / "out").exists()


def test_the_command_line_refuses_limits_without_gateware(tmp_path, capsys):
    save_config(MODEL, tmp_path / "whole.json")
    (tmp_path / "limits.json").write_text(json.dumps({"units": ["gelu", "nonesuch"]}))
    status = cli.main(["build", str(tmp_path / "whole.json"), "--limits", str(tmp_path / "limits.json"),
                       "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "nonesuch has no network unit yet" in err
    assert not (tmp_path / "out").exists()


class StandInTools:
    """subprocess.run for the build: the platform's build script writes what yosys, nextpnr
    and the packer would (cell counts, nextpnr's report with `fmax_mhz` against the PLL's
    frequency as nextpnr derives it from the dividers in the design, a bitstream); the
    tools' version queries get version lines. Records each pass's PLL parameters.
    `fmax_mhz`: the Fmax of every pass, or a function of the pass's PLL MHz giving it."""

    def __init__(self, fmax_mhz, oscillator_hz: int):
        self.fmax_mhz, self.oscillator_hz = fmax_mhz, oscillator_hz
        self.passes = []

    def __call__(self, args, cwd=None, **kwargs):
        if args[:1] != ["sh"]:
            return subprocess.CompletedProcess(args, 0, stdout="Yosys 0.70 (git sha1 0123abc)\n(Version 0.11)\n",
                                               stderr="")
        folder = Path(cwd)
        design = (folder / "nomac_board.il").read_text()
        pll = self.pll_parameters(design)
        self.passes.append({"pll": pll, "sprams": design.count("cell \\SB_SPRAM256KA ")})
        cells = {"SB_LUT4": 1000, "SB_DFF": 500, "SB_RAM40_4K": 3, "SB_SPRAM256KA": 4, "SB_PLL40_PAD": 1}
        (folder / "nomac_board.stat.json").write_text(json.dumps({"design": {"num_cells_by_type": cells}}))
        (folder / "nomac_board.pnr.json").write_text(json.dumps({
            "fmax": {"pll_clock": {"achieved": self.fmax(float(pll["output_hz"]) / 1e6),
                                   "constraint": float(pll["output_hz"]) / 1e6}},
            "utilization": {"ICESTORM_LC": {"used": 1200, "available": 5280}}}))
        (folder / "nomac_board.json").write_text("{}")     # yosys's netlist: ABC9 did not crash
        (folder / "nomac_board.bin").write_bytes(b"bitstream")
        (folder / "nomac_board.bit").write_bytes(b"bitstream")
        return subprocess.CompletedProcess(args, 0)

    def fmax(self, pll_mhz: float) -> float:
        return self.fmax_mhz(pll_mhz) if callable(self.fmax_mhz) else self.fmax_mhz

    def pll_parameters(self, design: str) -> dict:
        """The PLL cell's parameters, and its output by the data sheets' formulas."""
        cell = re.search(r"cell \\(SB_PLL40_PAD|EHXPLLL) .*?\n  end", design, re.S)
        values = {name: value for name, value in re.findall(r"parameter \\(\w+) (\S+)", cell[0])}
        number = {name: int(value.split("'")[1], 2) if "'" in value else int(value) if value.isdigit() else value
                  for name, value in values.items()}
        if cell[1] == "SB_PLL40_PAD":
            output = Fraction(self.oscillator_hz * (number["DIVF"] + 1), (number["DIVR"] + 1) * 2 ** number["DIVQ"])
        else:
            output = Fraction(self.oscillator_hz * number["CLKFB_DIV"], number["CLKI_DIV"])
        return {"cell": cell[1], **number, "output_hz": output}


def test_icebreaker_passes_follow_the_fmax_and_set_pll_and_uart(tmp_path, monkeypatch):
    tools = StandInTools(fmax_mhz=41.3, oscillator_hz=12_000_000)
    monkeypatch.setattr(subprocess, "run", tools)
    report = build_network_bitstream(make_config([gelu("g", 8, 3)]), "icebreaker", limits=TINY_LIMITS,
                                     out_dir=tmp_path, **QUIET)
    # Pass 1 at the iCE40's first target, 48 MHz (12 * 64 / 16), misses 41.3 MHz; pass 2 takes the
    # highest PLL clock <= 0.95 * 41.3 = 39.235 MHz: 12 * 52 / 16 = 39 (DIVF 51, DIVQ 4), which meets it,
    # and no higher clock is within the margin, so the build stops there.
    assert [(p["pll"]["DIVF"], p["pll"]["DIVQ"], p["pll"]["output_hz"]) for p in tools.passes] == \
        [(63, 4, 48_000_000), (51, 4, 39_000_000)]
    assert all(p["pll"]["cell"] == "SB_PLL40_PAD" and p["sprams"] == 4 for p in tools.passes)
    assert [(p["pll_mhz"], p["meets_timing"]) for p in report.pll["passes"]] == [(48.0, False), (39.0, True)]
    assert report.meets_timing and report.clock_hz == 39_000_000 and report.sprams == 4
    assert (report.pll["DIVF"], report.pll["DIVQ"], report.pll["FILTER_RANGE"]) == (51, 4, 1)
    assert report.board_map["clock_hz"] == 39_000_000 and report.board_map["divisor"] == 39
    assert report.baud == 1_000_000
    assert report.config_id == limits_id(TINY_LIMITS) and report.network["table_memory"] == "SPRAM"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["pll"]["output_hz"] == 39e6 and saved["network"]["limits"]["units"] == ["gelu"]
    assert json.loads((tmp_path / "board.json").read_text())["divisor"] == 39


@pytest.mark.parametrize("fmax, passes, clock_mhz", [
    # The Fmax moves with the clock placed for (the iCEBreaker shift board's real passes): 48 MHz
    # gives 24.5, 23.25 MHz (the highest <= 0.95 * 24.5) only 22.21, 21 MHz (<= 0.95 * 22.21) meets
    # it with 24.62, which would allow 23.25 MHz again: that failed, so the build ends on 21 MHz.
    ({48.0: 24.50, 23.25: 22.21, 21.0: 24.62}, [(48.0, False), (23.25, False), (21.0, True)], 21),
    # 39 MHz meets 0.95 * 41.3 with 44.0, so 41.25 MHz is tried and fails (40.0): the fourth pass
    # rebuilds at 39 MHz, the highest clock that met timing.
    ({48.0: 41.3, 39.0: 44.0, 41.25: 40.0}, [(48.0, False), (39.0, True), (41.25, False), (39.0, True)], 39)])
def test_a_build_that_met_timing_at_some_clock_ends_on_the_highest_that_did(fmax, passes, clock_mhz, tmp_path,
                                                                             monkeypatch):
    tools = StandInTools(fmax_mhz=lambda mhz: fmax[round(mhz, 3)], oscillator_hz=12_000_000)
    monkeypatch.setattr(subprocess, "run", tools)
    report = build_network_bitstream(make_config([gelu("g", 8, 3)]), "icebreaker", limits=TINY_LIMITS,
                                     out_dir=tmp_path, **QUIET)
    assert [(p["pll_mhz"], p["meets_timing"]) for p in report.pll["passes"]] == passes
    assert report.meets_timing and report.clock_hz == clock_mhz * 1_000_000
    assert report.board_map["divisor"] == clock_mhz


def test_the_first_pass_takes_the_clock_asked_for(tmp_path, monkeypatch, capsys):
    """--clock-mhz 22.125: the first pass at 12 * 59 / 32 MHz (DIVF 58, DIVQ 5) meets an Fmax of 22.6,
    and no higher clock is within 0.95 of it, so that pass is the build."""
    tools = StandInTools(fmax_mhz=22.6, oscillator_hz=12_000_000)
    monkeypatch.setattr(subprocess, "run", tools)
    path = save_config(make_config([gelu("g", 8, 3)]), tmp_path / "whole.json")
    (tmp_path / "limits.json").write_text(json.dumps(limits_json(TINY_LIMITS)))
    assert cli.main(["build", str(path), "--limits", str(tmp_path / "limits.json"), "--clock-mhz", "22.125",
                     "-o", str(tmp_path / "out")]) == 0
    assert [(p["pll"]["DIVF"], p["pll"]["DIVQ"], p["pll"]["output_hz"]) for p in tools.passes] == [(58, 5, 22_125_000)]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["clock_hz"] == 22_125_000 and report["pll"]["first_mhz"] == 22.125
    assert "pass 1: PLL 22.125 MHz, UART divisor 22" in capsys.readouterr().out


@pytest.mark.parametrize("value, message", [
    ("0", "--clock-mhz: '0': must be a clock in MHz > 0"), ("fast", "'fast': must be a clock in MHz > 0"),
    ("1e3", "'1e3': must be a clock in MHz > 0"),
    ("10", "iCE40 PLL from 12 MHz: no setting makes 10 MHz or less"),
    ("22.5", "build: baud = 1000000: icebreaker's 22.5 MHz clock cannot make it within 2 %")])
def test_a_clock_the_pll_or_the_uart_cannot_take_is_refused_before_any_work(value, message, tmp_path, capsys,
                                                                             monkeypatch):
    monkeypatch.setattr(subprocess, "run", StandInTools(fmax_mhz=99.0, oscillator_hz=12_000_000))
    save_config(MODEL, tmp_path / "whole.json")
    status = cli.main(["build", str(tmp_path / "whole.json"), "--clock-mhz", value, "-o", str(tmp_path / "out")])
    assert status == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_chain_of_layers_takes_no_clock(tmp_path):
    with pytest.raises(NomacError, match=r"build: first_mhz = 30: only a whole model .* is built as the network "
                                         r"board, PLL-clocked"):
        build_bitstream(LutCase("tree", 4, 5, 2, 4, {}).config(), first_mhz=30, out_dir=tmp_path / "out", **QUIET)
    assert not (tmp_path / "out").exists()


NEXTPNR_OVERFULL_LOG = """Info: Device utilisation:
Info: \t         ICESTORM_LC:    8213/   5280   155%
Info: \t        ICESTORM_RAM:      31/     30   103%
Info: \t               SB_IO:       7/     39    17%
Info: \t        ICESTORM_DSP:      11/      8   137%
Info: \t      ICESTORM_SPRAM:       4/      4   100%

ERROR: Unable to place cell 'dsp', no BELs remaining to implement cell type 'ICESTORM_DSP'
"""


def test_a_design_too_big_for_the_device_names_every_resource_it_overfills(tmp_path, monkeypatch):
    """nextpnr's utilisation table (the format it prints) becomes one error naming each full resource."""
    def failing_build(args, cwd=None, stdout=None, **kwargs):
        if args[:1] != ["sh"]:
            return subprocess.CompletedProcess(args, 0, stdout="Yosys 0.70\n(Version 0.11)\n", stderr="")
        stdout.write("ERROR: Unable to place cell 'dsp'\n")
        (Path(cwd) / "nomac_board.tim").write_text(NEXTPNR_OVERFULL_LOG)
        return subprocess.CompletedProcess(args, 1)
    monkeypatch.setattr(subprocess, "run", failing_build)
    with pytest.raises(NomacError, match=r"build for icebreaker: the design does not fit the ice40-up5k: "
                                         r"ICESTORM_LC 8213 of 5280, ICESTORM_RAM 31 of 30, ICESTORM_DSP 11 of 8 "
                                         r"\(nextpnr's device utilisation, log .*nomac_board.tim\)"):
        build_network_bitstream(make_config([gelu("g", 8, 3)]), "icebreaker", limits=TINY_LIMITS,
                                out_dir=tmp_path, **QUIET)
    assert overfull_resources("Info: Device utilisation:\nInfo: \t ICESTORM_LC: 10/ 5280 0%\n") == []


def test_ulx3s_takes_a_whole_hz_pll_clock_the_uart_divides(tmp_path, monkeypatch):
    tools = StandInTools(fmax_mhz=83.7, oscillator_hz=25_000_000)
    monkeypatch.setattr(subprocess, "run", tools)
    report = build_network_bitstream(make_config([gelu("g", 8, 3)]), "ulx3s-85f", limits=TINY_LIMITS,
                                     out_dir=tmp_path, **QUIET)
    # Pass 1 at 125 MHz (25 * 5). Below 0.95 * 83.7 = 79.515 MHz, 25 * 22 / 7 and 25 * 19 / 6 are not whole
    # numbers of Hz; 25 * 25 / 8 = 78.125 MHz is (PFD 3.125, the lowest allowed), VCO 625 with CLKOP_DIV 8.
    pll = tools.passes[-1]["pll"]
    assert [p["pll"]["output_hz"] for p in tools.passes] == [125_000_000, 78_125_000]
    assert (pll["cell"], pll["CLKI_DIV"], pll["CLKFB_DIV"], pll["CLKOP_DIV"]) == ("EHXPLLL", 8, 25, 8)
    assert all(p["sprams"] == 0 for p in tools.passes)
    assert report.clock_hz == 78_125_000 and report.board_map["divisor"] == 78
    assert report.network["table_memory"] == "block RAM"


def check_real_build(report, board, device, sprams):
    assert report.board == board and report.device == device
    assert report.meets_timing, report.summary()
    assert report.sprams == sprams and report.luts > 0 and report.ffs > 0 and report.brams > 0
    (clock,) = report.clocks.values()
    final = report.pll["passes"][-1]
    assert clock["constraint_mhz"] == pytest.approx(report.clock_hz / 1e6, rel=1e-3)   # nextpnr rounds the period
    assert final["pll_mhz"] == report.clock_hz / 1e6 <= clock["achieved_mhz"] == final["achieved_mhz"]
    assert report.board_map["divisor"] == round(report.clock_hz / report.baud)
    saved = json.loads((Path(report.bitstream).parent / "report.json").read_text())
    assert saved["meets_timing"] is True and saved["network"]["limits"]["units"] == list(UNITS)


@pytest.mark.slow
@pytest.mark.parametrize("board, device, sprams", [("icebreaker", "ice40-up5k", 4), ("ulx3s-85f", "ecp5-85f", 0)])
def test_network_bitstream_with_the_units_built_today_meets_timing(board, device, sprams, tmp_path):
    report = build_network_bitstream(MODEL, board, limits=NetworkLimits(units=tuple(UNITS)), out_dir=tmp_path,
                                     **QUIET)
    check_real_build(report, board, device, sprams)
