"""Generated `dense` engines against the golden model, simulated under cocotb.

The same coverage as the shift engines (tests/test_shift_sim.py), with the products'
extremes planted: rows of 127 and of -128 weights (-128 * -128 = 16384), a row of
zeros, and saturating outputs. The slow set is a cross product at 10^4 random vectors.
"""
from pathlib import Path

import pytest

from matrix_cases import MatrixCase, slow_cases
from sim_checks import check_report
from nomac.model.config import load_config
from nomac.sim.runner import simulate

CI_CASES = [
    MatrixCase("dense", 16, 10, {}),
    MatrixCase("dense", 5, 7, {"in_lanes": 3, "out_lanes": 4, "lanes": 3, "terms_per_cycle": 2, "memory": "ram"}),
    MatrixCase("dense", 8, 5, {"in_lanes": 8, "out_lanes": 5, "lanes": 5, "terms_per_cycle": 8,
                               "pipeline": False}, output="acc"),
    MatrixCase("dense", 9, 4, {"in_lanes": 1, "out_lanes": 1, "lanes": 1, "terms_per_cycle": 1, "memory": "ram",
                               "bias_bits": 13}, out_shift=10),
]
SLOW_CASES = slow_cases("dense")
EXAMPLES = sorted((Path(__file__).parent.parent / "model" / "configs").glob("dense_*.json"))


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_dense_engine_matches_golden(case, tmp_path):
    check_report(simulate(case.config(), vectors=150, seed=case.seed + 1, work_dir=tmp_path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden(path, tmp_path):
    check_report(simulate(load_config(path), vectors=100, work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.id)
def test_dense_engine_matches_golden_on_10k_vectors(case, tmp_path):
    check_report(simulate(case.config(), vectors=10_000, seed=case.seed + 7, work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden_on_10k_vectors(path, tmp_path):
    check_report(simulate(load_config(path), vectors=10_000, seed=11, work_dir=tmp_path))
