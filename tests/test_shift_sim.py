"""Generated `shift` engines against the golden model, simulated under cocotb.

The CI set covers one and several lanes and terms per cycle (M and D not multiples
of them), one cycle per vector, stream lane counts above and below the loop's, ROM and
RAM (signs, shifts and bias rewritten between vectors and read back), both outputs,
both pipelining choices, shift ranges from a single shift to 31 places, and the
bundled example. The slow set is a cross product at 10^4 random vectors per design.
"""
from pathlib import Path

import pytest

from matrix_cases import MatrixCase, slow_cases
from sim_checks import check_report
from nomac.model.config import load_config
from nomac.sim.runner import simulate

CI_CASES = [
    MatrixCase("shift", 16, 10, {}),
    MatrixCase("shift", 5, 7, {"in_lanes": 3, "out_lanes": 4, "lanes": 3, "terms_per_cycle": 2, "memory": "ram"},
               shifts=(-15, 0)),
    MatrixCase("shift", 8, 5, {"in_lanes": 8, "out_lanes": 5, "lanes": 5, "terms_per_cycle": 8,
                               "pipeline": False}, output="acc"),
    MatrixCase("shift", 12, 6, {"memory": "ram", "bias_bits": 13, "lanes": 4}, shifts=(-3, -3), output="acc"),
    MatrixCase("shift", 9, 4, {"in_lanes": 1, "out_lanes": 1, "lanes": 1, "terms_per_cycle": 1},
               shifts=(-31, -20), out_shift=30),
]
SLOW_CASES = slow_cases("shift", (-15, 0)) + slow_cases("shift", (-5, -2))
EXAMPLES = sorted((Path(__file__).parent.parent / "model" / "configs").glob("shift_*.json"))


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_shift_engine_matches_golden(case, tmp_path):
    check_report(simulate(case.config(), vectors=150, seed=case.seed + 1, work_dir=tmp_path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden(path, tmp_path):
    check_report(simulate(load_config(path), vectors=100, work_dir=tmp_path))


def test_verilator_runs_the_same_bench(tmp_path):
    case = MatrixCase("shift", 10, 6, {"in_lanes": 4, "out_lanes": 3, "lanes": 3, "terms_per_cycle": 4,
                                       "memory": "ram"}, shifts=(-7, 0))
    check_report(simulate(case.config(), vectors=100, simulator="verilator", work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.id)
def test_shift_engine_matches_golden_on_10k_vectors(case, tmp_path):
    check_report(simulate(case.config(), vectors=10_000, seed=case.seed + 7, work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden_on_10k_vectors(path, tmp_path):
    check_report(simulate(load_config(path), vectors=10_000, seed=11, work_dir=tmp_path))
