"""`nomac bench --network` (nomac/network_benchmark.py): each step of a whole model's program on
the simulated network board against its bound, and the projected images/s per board.

Bad options and inputs are refused before any simulation starts; one small run goes
through the command line on the small gelu model of tests/test_network_board.py (under
Icarus, whose build takes seconds) and checks the files it writes against the program
and the board's figures.
"""
import json

import pytest

from nomac.boards.devices import get_board
from nomac.boards.network_board import BOARD_LIMITS, limits_id, limits_json
from nomac.cli import bundled_config, main
from nomac.hw.network.program import compile_program
from nomac.model.config import load_config, save_config
from nomac.network_benchmark import LINK_BAUDS, NETWORK_CLOCK_HZ, run_network_benchmark
from test_network_board import LIMITS, small_model


@pytest.fixture
def files(tmp_path):
    """The small model (3 gelu steps, 16 output bytes) and its limits on disk."""
    model = save_config(small_model(), tmp_path / "small.json")
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps(limits_json(LIMITS)))
    return model, limits


def test_bad_options_are_refused_before_any_simulation(files, tmp_path, capsys):
    model, limits = files
    sim, out = tmp_path / "sim", tmp_path / "out"
    (tmp_path / "a_file").write_text("mine\n")
    base = ["bench", "--network", "--work-dir", str(sim), "-o", str(out)]
    cases = [([str(tmp_path / "missing.json")], "missing.json"),
             ([str(model), "--images", "0"], "--images: '0': must be a whole number, at least 1"),
             ([str(model), "--images", "many"], "--images: 'many': must be a whole number"),
             ([str(model), "--limits", str(tmp_path / "no_limits.json")], "no_limits.json"),
             ([str(model), "--simulator", "xsim"], "--simulator: invalid choice: 'xsim'"),
             ([str(model), "--butterfly"], "--butterfly and --network: choose one benchmark"),
             ([str(model), "-o", str(tmp_path / "a_file")], "a_file: is a file; must name a folder"),
             ([str(bundled_config("lut_l2_small.json"))], "a chain of layers (lut); bench --network runs whole models")]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("nomac: error: ") and message in err, (extra, err)
    for option in (["--images", "4"], ["--limits", str(limits)], ["--simulator", "icarus"], ["--work-dir", str(sim)]):
        assert main(["bench", str(model), "-o", str(out), *option]) == 2
        assert f"{option[0]}: only with --network" in capsys.readouterr().err
    assert not sim.exists() and not out.exists()
    with pytest.raises(Exception, match="images = 0: must be a whole number, at least 1"):
        run_network_benchmark([model], images=0, out_dir=out)
    with pytest.raises(Exception, match="clock_hz\\['icebreaker'\\] = 0.5: must be a whole number of Hz"):
        run_network_benchmark([model], clock_hz={"icebreaker": 0.5}, out_dir=out)
    assert not out.exists()


def test_a_small_whole_model_gives_each_step_against_its_bound(files, tmp_path, capsys):
    model, limits = files
    out = tmp_path / "out"
    assert main(["bench", "--network", str(model), "--limits", str(limits), "--simulator", "icarus", "--images", "4",
                 "-o", str(out), "--work-dir", str(tmp_path / "sim")]) == 0
    text = capsys.readouterr().out
    document = json.loads((out / "network_cycles.json").read_text())
    assert (out / "network_cycles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (figures,) = document["models"]
    assert document["images"] == 4 and figures["model"] == "small" and figures["refused"] == {}
    (run,) = figures["runs"]                         # both boards built for the same limits: one run
    assert run["boards"] == ["icebreaker", "ulx3s-85f"] and run["images"] == 4 and run["mismatched_images"] == 0
    program = compile_program(load_config(model), LIMITS)
    assert [(s["step"], s["layer"], s["kind"], s["bound"], s["bound_rule"]) for s in run["steps"]] == \
        [(n, step.layer, step.kind, step.unit_step.bound, step.unit_step.bound_rule)
         for n, step in enumerate(program.steps)] == [(0, "g0", "gelu", 64, "T*E"), (1, "g1", "gelu", 64, "T*E"),
                                                      (2, "g2", "gelu", 16, "T*E")]
    assert all(s["cycles"] >= s["bound"] for s in run["steps"])
    # one element a cycle after the reader's two cycles and the table read (tests/test_network_engine.py)
    assert [s["cycles"] for s in run["steps"]] == [67, 67, 19]
    assert run["cycles_per_image"] >= sum(s["cycles"] for s in run["steps"])
    # per board: the clock (these limits have no bitstream: the oscillator), compute at it, and the
    # link rates of issue 15's targets
    assert limits_id(LIMITS) not in NETWORK_CLOCK_HZ
    for board in LINK_BAUDS:
        figures_on, hz = figures["boards"][board], get_board(board).clock_hz
        assert figures_on["clock_hz"] == hz
        assert figures_on["compute_seconds_per_image"] == pytest.approx(run["cycles_per_image"] / hz)
        assert [link["baud"] for link in figures_on["links"]] == list(LINK_BAUDS[board])
        for link in figures_on["links"]:
            wire = run["wire_bytes_per_image"] * 10 / link["baud"]
            assert link["link_images_per_s"] == pytest.approx(1 / wire)
            # the replay (tests/test_inference_timeline.py) is bound by the wire and by the compute
            assert 1 / link["images_per_s"] >= max(wire, run["cycles_per_image"] / hz)
    table = (out / "network_cycles.md").read_text()
    assert "| 0    | g0        | gelu | 67              | 64    | 1.05  | T*E" in table
    assert "| 2    | g2        | gelu | 19              | 16    | 1.19  | T*E" in table
    assert "|      | all steps |      | 153             | 144   | 1.06  | sum" in table
    assert "2 of 3 steps within 10 % of their bound (beyond: g2 1.19)" in table
    assert "| ulx3s-85f  | 25 MHz (the board oscillator: no bitstream of these limits has met timing) " in table
    assert "| icebreaker | 12 MHz (the board oscillator: no bitstream of these limits has met timing)" in table
    assert table in text and f"wrote {out / 'network_cycles.png'}" in text


def test_a_board_whose_limits_the_model_exceeds_is_reported_not_run(files, tmp_path, capsys):
    """The bundled boards' limits take 40 output bytes: the small model's 16 are refused on both,
    with the compiler's message, before a simulator starts."""
    model, _ = files
    out = tmp_path / "out"
    assert main(["bench", "--network", str(model), "-o", str(out), "--work-dir", str(tmp_path / "sim")]) == 1
    text = capsys.readouterr().out
    for board in ("icebreaker", "ulx3s-85f"):
        assert (f"not on {board}: {model}: layer 'g2' output bytes = 16: must equal the network bitstream's "
                f"output_bytes (40)") in text
    assert "refused on every board: no run" in text
    figures = json.loads((out / "network_cycles.json").read_text())["models"][0]
    assert figures["runs"] == [] and set(figures["refused"]) == {"icebreaker", "ulx3s-85f"}
    assert not (out / "network_cycles.png").exists() and not (tmp_path / "sim").exists()


def test_every_measured_network_clock_is_a_bundled_bitstreams():
    built = {limits_id(limits) for board_set in BOARD_LIMITS.values() for limits in board_set}
    assert set(NETWORK_CLOCK_HZ) <= built and all(isinstance(hz, int) for hz in NETWORK_CLOCK_HZ.values())
