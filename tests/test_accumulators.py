# amaranth: UnusedElaboratable=no
"""The accumulate loops on Amaranth's simulator, through their streams, against the golden models.

LutAccumulator (hw/lut_accumulator.py) takes a vector's C codes, one a beat, and gives
acc[m] = bias[m] + sum_c tables[c, code_c, m] (docs/spec.md section 7.2) in beats of
R = table_reads lanes; MatrixVectorLoop (hw/matrix_vector_engine.py) takes a vector in
words of T = terms_per_cycle inputs and gives bias + weights @ x (sections 8-10) in
beats of U = lanes. Both apply the output rule of section 2. Expected values come from
model/lut_golden.py, model/dense_golden.py and model/shift_golden.py; layers from
tests/lut_cases.py and tests/matrix_cases.py, which plant the saturating extremes.
"""
import numpy as np
import pytest

from amaranth_streams import final_beats, intervals, stream_beats, stream_through
from lut_cases import LutCase
from matrix_cases import MatrixCase
from nomac.hw.dense_engine import DenseTerms
from nomac.hw.lut_accumulator import LutAccumulator
from nomac.hw.matrix_vector_engine import MatrixVectorLoop
from nomac.hw.shift_engine import ShiftTerms
from nomac.model.dense_golden import dense_accumulate
from nomac.model.fixed_point import requantize
from nomac.model.lut_golden import lut_accumulate
from nomac.model.shift_golden import shift_accumulate

# Tiny layers: M not a multiple of R (a part-filled last group), one lane, one group,
# one codebook, K = 2 (1-bit codes), int8 and acc outputs, ROM and RAM, with and
# without pipeline registers.
LUT_CASES = [
    LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}),
    LutCase("tree", 3, 3, 3, 2, {"table_reads": 1}),
    LutCase("tree", 4, 5, 2, 8, {"table_reads": 5}, output="acc"),
    LutCase("tree", 2, 3, 1, 4, {"table_reads": 2, "pipeline": False}),
    LutCase("tree", 6, 4, 3, 4, {"table_reads": 3, "memory": "ram", "bias_bits": 13}, output="acc"),
]

# D and M not multiples of T and U, a single term and unit, ROM and RAM, both outputs.
MATRIX_CASES = [
    MatrixCase("dense", 5, 3, {"lanes": 2, "terms_per_cycle": 2}),
    MatrixCase("dense", 4, 4, {"lanes": 1, "terms_per_cycle": 4, "pipeline": False}, output="acc"),
    MatrixCase("dense", 1, 1, {"lanes": 1, "terms_per_cycle": 1}),
    MatrixCase("shift", 6, 5, {"lanes": 2, "terms_per_cycle": 3, "memory": "ram"}),
    MatrixCase("shift", 3, 2, {"lanes": 2, "terms_per_cycle": 1, "pipeline": False}, shifts=(-4, -1),
               output="acc"),
]

TERMS = {"dense": DenseTerms, "shift": ShiftTerms}
ACCUMULATE = {"dense": dense_accumulate, "shift": shift_accumulate}


def lut_codes(layer, count: int, seed: int) -> np.ndarray:
    """[count, C] codes: all 0, all K-1 (the planted rows of 127 and -128), then random."""
    K, C = layer.centroids, layer.codebooks
    rng = np.random.default_rng(seed)
    return np.vstack([np.zeros((1, C), np.int64), np.full((1, C), K - 1), rng.integers(0, K, (count - 2, C))])


def int8_inputs(layer, count: int, seed: int) -> np.ndarray:
    """[count, D] inputs: all 127, all -128, all 0, then random int8."""
    D = layer.in_features
    rng = np.random.default_rng(seed)
    return np.vstack([np.full((1, D), 127), np.full((1, D), -128), np.zeros((1, D), np.int64),
                      rng.integers(-128, 128, (count - 3, D))])


def lut_run(case, count):
    """(accumulator, inputs as beats, expected output beats) for `count` vectors of codes."""
    layer = case.config().layers[0]
    codes = lut_codes(layer, count, case.seed)
    expected = requantize(lut_accumulate(layer, codes), layer.out_shift, layer.output)
    return LutAccumulator(layer), stream_beats(codes, 1), stream_beats(expected, layer.hw.table_reads)


def matrix_run(case, count):
    layer = case.layer()
    x = int8_inputs(layer, count, case.seed)
    expected = requantize(ACCUMULATE[case.kind](layer, x), layer.out_shift, layer.output)
    loop = MatrixVectorLoop(layer, TERMS[case.kind](layer))
    return loop, stream_beats(x, layer.hw.terms_per_cycle), stream_beats(expected, layer.hw.lanes)


RUNS = [pytest.param(lut_run, case, id=case.id) for case in LUT_CASES] + \
       [pytest.param(matrix_run, case, id=case.id) for case in MATRIX_CASES]


@pytest.mark.parametrize("run, case", RUNS)
def test_full_rate_matches_the_golden_model(run, case):
    dut, beats, expected = run(case, 6)
    assert stream_through(dut, beats, len(expected)) == expected


@pytest.mark.parametrize("run, case", RUNS)
def test_steady_state_interval_is_the_loop_length(run, case):
    """With input always valid and output always ready, a vector every `cycles_per_vector`
    cycles: C * ceil(M / R) or ceil(M / U) * ceil(D / T), the next vector's inputs
    arriving while the loop works on the current one."""
    dut, beats, expected = run(case, 7)
    finished = []
    stream_through(dut, beats, len(expected), background=[final_beats(dut.o, finished)])
    assert intervals(finished, skip=2) == [dut.cycles_per_vector] * 4


def test_cycles_per_vector_follow_the_documented_formula():
    for case in LUT_CASES:
        layer = case.config().layers[0]
        groups = -(-layer.out_features // layer.hw.table_reads)
        assert LutAccumulator(layer).cycles_per_vector == layer.codebooks * groups, case.id
    for case in MATRIX_CASES:
        layer = case.layer()
        D, M, U, T = layer.in_features, layer.out_features, layer.hw.lanes, layer.hw.terms_per_cycle
        loop = MatrixVectorLoop(layer, TERMS[case.kind](layer))
        assert loop.cycles_per_vector == -(-M // U) * -(-D // T), case.id


@pytest.mark.parametrize("run, case", RUNS)
def test_random_traffic(run, case):
    """Random gaps on valid and random backpressure on ready, fixed seed: every output exact."""
    dut, beats, expected = run(case, 24)
    assert stream_through(dut, beats, len(expected), seed=5, gap=0.3, backpressure=0.5) == expected
