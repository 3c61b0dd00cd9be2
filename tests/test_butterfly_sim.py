"""Generated `butterfly` engines against the golden model, simulated under cocotb.

The CI set covers a classic power-of-two butterfly (n = 16, factors (2, 2, 2^k)), a
rectangular monotonic chain, a bulging chain, single-factor chains with t = 1 and
t > 1, mixed int8/shift factors, one and several lanes per stage (with u outputs at
a time both below and above t), stream lanes that do not divide the vector, ROM and
RAM factors (rewritten between vectors), both outputs, saturation between stages
(the cases plant +127/-128 weight rows and small out_shifts) and backpressure (every
phase but the throughput one). The slow set runs 10^4 random vectors per design.
"""
import itertools
from pathlib import Path

import pytest

from butterfly_cases import ButterflyCase
from nomac.model.config import load_config
from nomac.sim.runner import simulate

CLASSIC16 = ((16, 16, 2, 2, 1), (16, 16, 2, 2, 2), (16, 16, 2, 2, 4), (16, 16, 2, 2, 8))
RECTANGULAR = ((6, 8, 3, 4, 1), (3, 6, 1, 2, 3))
BULGING = ((32, 16, 2, 1, 1), (32, 32, 2, 2, 2), (32, 32, 2, 2, 4), (16, 32, 2, 4, 8))
GROWING = ((8, 8, 2, 2, 1), (16, 8, 2, 1, 2))

CI_CASES = [
    ButterflyCase("classic16", CLASSIC16),
    ButterflyCase("classic16", CLASSIC16, weights=("int8", "shift", "shift", "int8"),
                  hw={"lanes": [4, 4, 8, 16], "in_lanes": 4, "out_lanes": 3, "memory": ["ram", "rom", "ram", "rom"]}),
    ButterflyCase("rect", RECTANGULAR, hw={"lanes": [12, 1], "memory": "ram", "bias_bits": 16}, output="acc", seed=1),
    ButterflyCase("bulge", BULGING, weights=("shift",) * 4, hw={"lanes": [2, 4, 8, 2], "in_lanes": 3}, seed=2),
    ButterflyCase("grow", GROWING, hw={"lanes": [1, 4], "out_lanes": 16}, out_shift=8, seed=3),
    ButterflyCase("single_t1", ((12, 8, 3, 2, 1),), hw={"lanes": 6, "memory": "ram"}, seed=4),
    ButterflyCase("single_t6", ((24, 12, 2, 1, 6),), weights=("shift",), hw={"lanes": 3, "out_lanes": 5}, seed=5),
    ButterflyCase("single_t12", ((12, 24, 1, 2, 12),), hw={"lanes": 2, "in_lanes": 5}, output="acc", seed=6),
]

SLOW_CASES = [
    ButterflyCase(name, chain, weights=weights, hw={**lanes, "memory": memory}, seed=seed)
    for seed, ((name, chain, lane_choices), weights, memory) in enumerate(itertools.product(
        (("classic16", CLASSIC16, ({"lanes": 1}, {"lanes": [4, 2, 8, 16], "in_lanes": 3, "out_lanes": 5})),
         ("rect", RECTANGULAR, ({"lanes": 1}, {"lanes": [6, 3], "in_lanes": 8, "out_lanes": 2})),
         ("bulge", BULGING, ({"lanes": [2, 2, 2, 4]}, {"lanes": [2, 8, 16, 8], "in_lanes": 4, "out_lanes": 4}))),
        (None, "shift"), ("rom", "ram")))
    for lanes in lane_choices
    for weights in [(("int8", "shift") * 4)[:len(chain)] if weights else ()]
]

EXAMPLES = sorted((Path(__file__).parent.parent / "model" / "configs").glob("butterfly_*.json"))


def check(report):
    assert report.mismatched_vectors == 0, report.summary()
    assert not report.protocol_errors and not report.framing_errors, report.summary()
    assert not report.memory_errors, report.summary()
    # The measured figure averages every interval of the throughput phase, the first
    # included: stages of different speeds may need one extra cycle while they fill.
    intervals = next(p["vectors"] for p in report.phases if p["name"] == "throughput") - 1
    extra = (report.cycles_per_vector - report.manifest["cycles_per_vector"]) * intervals
    assert -1e-9 < extra < 1 + 1e-9, report.summary()
    assert report.latency_cycles == report.manifest["latency_cycles"], report.summary()


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_butterfly_engine_matches_golden(case, tmp_path):
    check(simulate(case.config(), vectors=120, seed=case.seed + 1, work_dir=tmp_path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden(path, tmp_path):
    report = simulate(load_config(path), vectors=60, work_dir=tmp_path)
    check(report)
    assert report.cycles_per_vector == report.manifest["cycles_per_vector_bound"]


def test_more_lanes_run_at_the_bound(tmp_path):
    report = simulate(ButterflyCase("classic16", CLASSIC16, hw={"lanes": [4, 4, 4, 4], "in_lanes": 2,
                                                                "out_lanes": 2}).config(),
                      vectors=40, work_dir=tmp_path)
    check(report)
    assert report.manifest["cycles_per_vector_bound"] == 16 * 2 // 4 == report.cycles_per_vector
    assert [stage["outputs_per_cycle"] for stage in report.manifest["stages"]] == [2, 2, 2, 2]


def test_verilator_runs_the_same_bench(tmp_path):
    case = ButterflyCase("classic16", CLASSIC16, weights=("shift", "int8", "int8", "shift"),
                         hw={"lanes": [2, 4, 2, 4], "memory": "ram", "in_lanes": 2})
    check(simulate(case.config(), vectors=100, simulator="verilator", work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.id)
def test_butterfly_engine_matches_golden_on_10k_vectors(case, tmp_path):
    check(simulate(case.config(), vectors=10_000, seed=case.seed + 7, work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_config_matches_golden_on_10k_vectors(path, tmp_path):
    check(simulate(load_config(path), vectors=10_000, seed=11, work_dir=tmp_path))
