"""Generated `add` engines (hw/operators/add.py) against the golden `add_forward` under cocotb:
(a, b) pairs on exact ties of both signs and on the clamp edges, -128/127 everywhere,
random rows with input gaps and backpressure, misframed input; lanes dividing E or
not (b starting inside a beat, with and without a step that takes no input); the slow
set at 10^4 rows per design."""
from pathlib import Path

import pytest

from verilator_lint import lint_problems
from nomac.hw.verilog_export import write_verilog
from nomac.model.config import load_config, make_config
from nomac.model.operator_layers import MAX_MULT, AddLayer
from nomac.sim.runner import simulate
from sim_checks import check_report

EXAMPLE = Path(__file__).parent.parent / "model" / "configs" / "op_add.json"


def add_config(features: int, mult_a: int, mult_b: int, shift: int, hw: dict):
    params = {"name": "add", "kind": "add", "features": features, "inputs": ["input", "input"],
              "mult_a": mult_a, "mult_b": mult_b, "shift": shift, "hw": hw}
    return make_config([AddLayer.from_json("case", params, {})])


# name: (E, mult_a, mult_b, shift, hw); L = lanes, r = E mod L
CASES = {
    "E1-shift2": (1, 1, 3, 2, {}),
    "E3-L1-shift0": (3, 1, 1, 0, {}),
    "E5-L2-in3-out4-shift1": (5, 3, 5, 1, {"lanes": 2, "in_lanes": 3, "out_lanes": 4}),        # 2r <= L
    "E7-L4-in7-out2-mult_max-shift62": (7, MAX_MULT, 0, 62, {"lanes": 4, "in_lanes": 7, "out_lanes": 2}),  # 2r > L
    "E7-L3-in5-out7-mult_max-shift31": (7, MAX_MULT, MAX_MULT, 31, {"lanes": 3, "in_lanes": 5, "out_lanes": 7}),
    "E5-L5-mult0": (5, 0, 0, 0, {"lanes": 5}),
    "E7-L5-in1-out1-shift9": (7, 1000, 3, 9, {"lanes": 5, "in_lanes": 1, "out_lanes": 1}),   # 2r <= L
    "E32-L8-in32-out16": (32, 28087, 23406, 15, {"lanes": 8, "in_lanes": 32, "out_lanes": 16}),
}
SLOW_CASES = {**CASES,
              "E7-L7-shift6": (7, 37, 91, 6, {"lanes": 7}),
              "E32-L32-shift13": (32, 7777, 12345, 13, {"lanes": 32})}


def test_bundled_example_matches_golden(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=100, work_dir=tmp_path))


@pytest.mark.parametrize("case", CASES)
def test_add_engine_matches_golden(case, tmp_path):
    check_report(simulate(add_config(*CASES[case]), vectors=100, seed=3, work_dir=tmp_path))


@pytest.mark.parametrize("case", CASES)
def test_verilator_lint_is_clean_with_the_waivers(case, tmp_path):
    (design,) = write_verilog(add_config(*CASES[case]), tmp_path / "design")
    status, problems = lint_problems(design.verilog)
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


@pytest.mark.slow
def test_bundled_example_matches_golden_on_10k_rows(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=10_000, seed=9, work_dir=tmp_path, simulator="verilator"))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES)
def test_add_engine_matches_golden_on_10k_rows(case, tmp_path):
    check_report(simulate(add_config(*SLOW_CASES[case]), vectors=10_000, seed=9, work_dir=tmp_path, simulator="verilator"))
