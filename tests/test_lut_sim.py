"""Generated `lut` engines against the golden model, simulated under cocotb.

The CI set covers each encoder, K in {2, 16, 256}, one and several codebooks
(including V = 1), one and several lanes with M not a multiple of them, ROM and
RAM (tables rewritten between vectors), both outputs, both pipelining choices and
narrower table entries (table_bits 4 and 6: packed lanes, the accumulator sized for them).
The slow set is the full cross product at 10^4 random vectors per design.
"""
import itertools
from pathlib import Path

import pytest

from lut_cases import LutCase
from nomac.model.config import load_config
from nomac.sim.runner import simulate
from sim_checks import check_report

CI_CASES = [
    LutCase("l2", 16, 10, 4, 16),
    LutCase("l2", 5, 7, 1, 2, {"in_lanes": 3, "out_lanes": 4, "table_reads": 3, "memory": "ram"}),
    LutCase("l2", 8, 5, 2, 256, {"in_lanes": 8, "out_lanes": 2, "table_reads": 5, "encoder_lanes": 32}),
    LutCase("l2", 12, 6, 3, 4, {"memory": "ram", "bias_bits": 13, "table_reads": 4}, output="acc"),
    LutCase("l1", 6, 9, 1, 16, {"in_lanes": 2, "out_lanes": 4, "table_reads": 4, "memory": "ram",
                                "pipeline": False}),
    LutCase("l1", 9, 6, 3, 256, {"in_lanes": 3, "out_lanes": 3, "memory": "ram"}),
    LutCase("l1", 8, 3, 8, 2, {"in_lanes": 8, "out_lanes": 1, "table_reads": 1}),
    LutCase("tree", 16, 10, 4, 16, {"in_lanes": 4, "out_lanes": 3, "table_reads": 5}),
    LutCase("tree", 12, 7, 2, 256, {"in_lanes": 5, "out_lanes": 7, "table_reads": 7, "memory": "ram"}),
    LutCase("tree", 3, 4, 1, 2, {"out_lanes": 4, "table_reads": 4, "memory": "ram", "pipeline": False}),
    LutCase("tree", 6, 13, 6, 16, {"in_lanes": 6, "out_lanes": 5, "table_reads": 3}, output="acc"),
    LutCase("l2", 8, 7, 4, 16, {"table_reads": 3, "memory": "ram"}, table_bits=4),
    LutCase("tree", 6, 5, 3, 4, {"table_reads": 5}, output="acc", table_bits=6),
]

SLOW_CASES = [
    LutCase(encoder, 12, 7, C, K, {**lanes, "memory": memory})
    for encoder, K, C, lanes, memory in itertools.product(
        ("l2", "l1", "tree"), (2, 16, 256), (1, 3),
        ({"in_lanes": 1, "out_lanes": 1, "table_reads": 1}, {"in_lanes": 5, "out_lanes": 3, "table_reads": 2}),
        ("rom", "ram"))
]

EXAMPLES = sorted((Path(__file__).parent.parent / "model" / "configs").glob("lut_*.json"))


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_lut_engine_matches_golden(case, tmp_path):
    check_report(simulate(case.config(), vectors=150, seed=case.seed + 1, work_dir=tmp_path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden(path, tmp_path):
    check_report(simulate(load_config(path), vectors=100, work_dir=tmp_path))


def test_verilator_runs_the_same_bench(tmp_path):
    case = LutCase("tree", 16, 10, 4, 16, {"in_lanes": 4, "out_lanes": 3, "table_reads": 5, "memory": "ram"})
    check_report(simulate(case.config(), vectors=100, simulator="verilator", work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.id)
def test_lut_engine_matches_golden_on_10k_vectors(case, tmp_path):
    check_report(simulate(case.config(), vectors=10_000, seed=case.seed + 7, work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden_on_10k_vectors(path, tmp_path):
    check_report(simulate(load_config(path), vectors=10_000, seed=11, work_dir=tmp_path))
