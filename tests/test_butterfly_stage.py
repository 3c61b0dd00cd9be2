"""hw/butterfly_stage.py on Amaranth's simulator: one DeBut factor through its streams.

A stage takes a vector of q int8 inputs in beats of `in_lanes` and gives the factor's
p outputs in beats of u (docs/spec.md section 11.3): bias + the block's terms, then
the output rule, or raw accumulators from the last factor of an `acc` layer. Expected
values from model/butterfly_golden.py's `factor_accumulate`; layers from
tests/butterfly_cases.py (rows of +127 and -128 weights planted).
"""
import numpy as np
import pytest

from amaranth_streams import final_beats, intervals, stream_beats, stream_through
from butterfly_cases import ButterflyCase
from nomac.hw.butterfly_stage import ButterflyStage
from nomac.model.butterfly_golden import factor_accumulate
from nomac.model.fixed_point import requantize

# (case, factor index): t = 1, 6 and 12 (one row, part of a row, whole rows a beat),
# one output or several a cycle, int8 and shift weights, ROM and RAM, a raw last factor.
STAGES = [
    (ButterflyCase("t1", ((12, 8, 3, 2, 1),), hw={"lanes": 6, "memory": "ram"}, seed=4), 0),
    (ButterflyCase("t6", ((24, 12, 2, 1, 6),), weights=("shift",), hw={"lanes": 3}, seed=5), 0),
    (ButterflyCase("t12", ((12, 24, 1, 2, 12),), hw={"lanes": 2}, output="acc", seed=6), 0),
    (ButterflyCase("one_row", ((1, 5, 1, 5, 1),), weights=("shift",), hw={"lanes": 5}, out_shift=0), 0),
    (ButterflyCase("rect", ((6, 8, 3, 4, 1), (3, 6, 1, 2, 3)), hw={"lanes": [1, 2]}, output="acc", seed=1), 0),
    (ButterflyCase("rect", ((6, 8, 3, 4, 1), (3, 6, 1, 2, 3)), hw={"lanes": [1, 2]}, output="acc", seed=1), 1),
    (ButterflyCase("classic", ((16, 16, 2, 2, 1), (16, 16, 2, 2, 2)), hw={"lanes": [2, 4]}, seed=2), 1),
]


def stage_id(stage):
    case, index = stage
    return f"{case.id}-factor{index}"


def stage_run(stage, count: int):
    case, index = stage
    layer = case.layer()
    factor = layer.factors[index]
    unit = ButterflyStage(layer, index)
    rng = np.random.default_rng(case.seed)
    x = np.vstack([np.full(factor.q, 127), np.full(factor.q, -128), rng.integers(-128, 128, (count - 2, factor.q))])
    expected = requantize(factor_accumulate(factor, x), factor.out_shift, "acc" if unit.raw else "int8")
    return unit, stream_beats(x, unit.in_lanes), stream_beats(expected, unit.u)


@pytest.mark.parametrize("stage", STAGES, ids=stage_id)
def test_full_rate_matches_the_golden_factor(stage):
    unit, beats, expected = stage_run(stage, 5)
    assert stream_through(unit, beats, len(expected)) == expected


@pytest.mark.parametrize("stage", STAGES, ids=stage_id)
def test_steady_state_interval(stage):
    """A vector every max(p*s / lanes, q / in_lanes) cycles, the stage's `cycles_per_vector`."""
    unit, beats, expected = stage_run(stage, 7)
    finished = []
    stream_through(unit, beats, len(expected), background=[final_beats(unit.o, finished)])
    factor = unit.factor
    assert unit.cycles_per_vector == max(factor.p * factor.s // unit.lanes, factor.q // unit.in_lanes)
    assert intervals(finished, skip=2) == [unit.cycles_per_vector] * 4


@pytest.mark.parametrize("stage", STAGES, ids=stage_id)
def test_random_traffic(stage):
    unit, beats, expected = stage_run(stage, 16)
    assert stream_through(unit, beats, len(expected), seed=13, gap=0.3, backpressure=0.5) == expected
