# amaranth: UnusedElaboratable=no
"""The network's dense unit (hw/network/dense_unit.py) against the golden dense layer.

Expected outputs come from `FORWARD["dense"]`; a raw accumulator is compared as its four
little-endian int32 bytes. Cycle counts are asserted where the unit's timetable gives
them (docs/spec.md section 16, "dense"): without stalls a step takes T*D*M + 5 cycles
(int8) or T*D*M + 8 (acc, D >= 4), and with D = 1 one cycle more for every term after the step's
first (it waits for the bias word of the one before to leave the table port).
"""
import numpy as np
import pytest

from nomac.hw.network.dense_unit import FIELDS, DenseUnit, dense_accumulator_bits, dense_record_words, dense_step
from nomac.hw.network.unit import LimitError, NetworkLimits
from nomac.model.dense_golden import dense_accumulate
from nomac.model.dense_spec import DenseLayer
from nomac.model.golden import FORWARD
from network_units import assert_multiplies_on_the_shared_multiplier, run_step

LIMITS = NetworkLimits()
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def dense_layer(weights, bias, out_shift: int = 0, output: str = "int8") -> DenseLayer:
    M, D = weights.shape
    return DenseLayer.from_json("case", {"name": "fc", "kind": "dense", "in_features": D, "out_features": M,
                                         "out_shift": out_shift, "output": output},
                                {"weights": np.asarray(weights, dtype=np.int8), "bias": np.asarray(bias, dtype=np.int32)})


def random_layer(D: int, M: int, seed: int, out_shift: int = 12, output: str = "int8", bias_range: int = 40000):
    rng = np.random.default_rng(seed)
    weights = rng.integers(-128, 128, (M, D))
    weights.reshape(-1)[:2] = [-128, 127][:D * M]
    return dense_layer(weights, rng.integers(-bias_range, bias_range, M), out_shift, output)


def expected_elements(layer, x) -> list[int]:
    """The golden's outputs in stream order: int8 rows, or each acc as 4 little-endian bytes."""
    out = FORWARD["dense"](layer, x)
    if layer.output == "acc":
        return np.asarray(out, dtype="<i4").view(np.int8).reshape(-1).tolist()
    return out.reshape(-1).tolist()


def run_layer(layer, x, *, limits=LIMITS, gap=0.0, backpressure=0.0, seed=0, table_base=40):
    step = dense_step(layer, len(x), table_base, limits)
    outputs, cycles = run_step(DenseUnit(limits), FIELDS, step, x.reshape(-1).tolist(), table_base=table_base,
                               seed=seed, gap=gap, backpressure=backpressure, steps=2)
    assert outputs == expected_elements(layer, x)
    return step, cycles


def stall_free_cycles(layer, rows: int):
    """The timetable: term n (of rows*D*M) is issued in cycle n + 2 after `start`, its sum
    leaves the accumulator two cycles later, the output register one cycle after that. None
    where the outputs set the pace: an output register busy for more cycles (4 bytes) than
    the terms of a sum take."""
    D, M = layer.in_features, layer.out_features
    terms = rows * D * M
    per_sum = 2 if D == 1 else D       # with D = 1 each term but the step's first waits a cycle
    busy, q = (4, 3) if layer.output == "acc" else (1, 0)
    if busy > per_sum:
        return None
    waits = terms - 1 if D == 1 else 0
    return terms + waits + 5 + q


# The tiny ViT's dense layers (T = 17, E = 32, MLP 64, qkv 96; patch_embed on 16 patches);
# the 17-row steps of the blocks take 17k to 52k cycles, so the CI part runs qkv on one row.
VIT_SHAPES = [("patch_embed", 4, 32, 16, "int8"), ("head", 32, 10, 1, "acc"), ("qkv_one_row", 32, 96, 1, "int8")]
VIT_BLOCK_SHAPES = [("qkv", 32, 96, 17, "int8"), ("proj", 32, 32, 17, "int8"), ("fc1", 32, 64, 17, "int8"),
                    ("fc2", 64, 32, 17, "int8")]


def check_vit_shape(D, M, rows, output):
    layer = random_layer(D, M, seed=D * M, output=output)
    x = np.random.default_rng(rows).integers(-128, 128, (rows, D)).astype(np.int8)
    step, cycles = run_layer(layer, x)
    assert step.bound == rows * D * M
    assert cycles == [stall_free_cycles(layer, rows)] * 2
    assert cycles[0] <= 1.1 * step.bound


@pytest.mark.parametrize("name, D, M, rows, output", VIT_SHAPES, ids=[shape[0] for shape in VIT_SHAPES])
def test_vit_shapes_match_golden_within_bound(name, D, M, rows, output):
    check_vit_shape(D, M, rows, output)


@pytest.mark.slow
@pytest.mark.parametrize("name, D, M, rows, output", VIT_BLOCK_SHAPES, ids=[shape[0] for shape in VIT_BLOCK_SHAPES])
def test_vit_block_shapes_match_golden_within_bound(name, D, M, rows, output):
    check_vit_shape(D, M, rows, output)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_random_steps_match_golden(seed):
    """Random shapes within the limits (at most ~20k terms a step), shifts, outputs and stalls."""
    rng = np.random.default_rng(1000 + seed)
    D, M = (int(n) for n in rng.integers(1, LIMITS.features + 1, 2))
    rows = int(rng.integers(1, min(LIMITS.tokens, max(1, 20_000 // (D * M))) + 1))
    output = "acc" if seed % 4 == 0 else "int8"
    layer = random_layer(D, M, seed=seed, output=output, out_shift=int(rng.integers(0, 24)),
                         bias_range=int(rng.choice([1, 1 << 10, 1 << 30])))
    x = rng.integers(-128, 128, (rows, D)).astype(np.int8)
    gap, backpressure = (float(v) for v in rng.choice([0, 0.2, 0.6], 2))
    _, cycles = run_layer(layer, x, gap=gap, backpressure=backpressure, seed=seed)
    if not gap and not backpressure and stall_free_cycles(layer, rows) is not None:
        assert cycles == [stall_free_cycles(layer, rows)] * 2


@pytest.mark.parametrize("D, M, rows, output, gap, backpressure", [
    (1, 1, 1, "int8", 0, 0),              # shapes of 1
    (1, 17, 3, "int8", 0, 0),             # D = 1: every term waits for the bias word before it
    (4, 10, 2, "int8", 0, 0),             # D = 4: each record one word, read on every fourth term
    (5, 6, 2, "int8", 0, 0),              # D = 5: the record's second word read on its last term
    (2, 1, 17, "int8", 0, 0),             # every row chased as it arrives
    (96, 96, 1, "int8", 0, 0),            # the limits' widest row, both ways
    (96, 2, 17, "acc", 0, 0),             # every token, the widest row
    (9, 7, 5, "int8", 0.5, 0.7),
    (5, 3, 4, "acc", 0.3, 0.5),
    (1, 3, 2, "acc", 0.2, 0.2),           # output-bound: four bytes a term
    (3, 11, 3, "int8", 0.7, 0.2),
])
def test_unit_matches_golden(D, M, rows, output, gap, backpressure):
    layer = random_layer(D, M, seed=D + 7 * M, output=output, out_shift=8 if output == "int8" else 0)
    x = np.random.default_rng(D * rows).integers(-128, 128, (rows, D)).astype(np.int8)
    _, cycles = run_layer(layer, x, gap=gap, backpressure=backpressure, seed=M)
    if not gap and not backpressure and stall_free_cycles(layer, rows) is not None:
        assert cycles == [stall_free_cycles(layer, rows)] * 2


@pytest.mark.parametrize("D, out_shift", [(6, 45), (4, 31), (4, 47), (2, 23), (1, 62)])
def test_large_out_shifts_within_the_timetable(D, out_shift):
    """Any out_shift, up to past every bit of acc, costs no cycle: the engine's requantizer shifts."""
    layer = random_layer(D, 5, seed=D, out_shift=out_shift, bias_range=1 << 30)
    x = np.random.default_rng(D).integers(-128, 128, (3, D)).astype(np.int8)
    _, cycles = run_layer(layer, x)
    assert cycles == [stall_free_cycles(layer, 3)] * 2


def test_accumulator_past_int32_does_not_wrap():
    """int32 biases at both ends plus 96 products of -128 * -128 or -128 * 127: sums beyond
    int32, rounded without saturating (out_shift 25) and saturated (out_shift 20)."""
    D = LIMITS.features
    weights = np.full((4, D), -128)
    weights[2:] = 127
    bias = [INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN]
    x = np.array([[-128] * D, [127] * D, [0] * D]).astype(np.int8)
    assert dense_accumulator_bits(D) == 33
    for out_shift in (25, 20):
        layer = dense_layer(weights, bias, out_shift)
        acc = dense_accumulate(layer, x)
        assert acc.max() > INT32_MAX and acc.min() < INT32_MIN
        run_layer(layer, x, gap=0.2, backpressure=0.2)


@pytest.mark.parametrize("out_shift", [0, 1, 2, 7, 13])
def test_rounding_ties_and_saturation(out_shift):
    """acc = bias[m] + x[m], output m seeing 16 consecutive x (every int8 x once in the
    step). s >= 1: row m's acc[m] is the exact tie (m - 8 + 1/2) * 2^s, the other rows the
    values around it; s = 0: biases of +-200 saturate at both ends."""
    x = (np.arange(256) - 128).reshape(16, 16).T.astype(np.int8)     # x[r, m] = 16m + r - 128
    m = np.arange(16)
    if out_shift:
        bias = (m - 8) * (1 << out_shift) + (1 << (out_shift - 1)) - x[m, m].astype(np.int64)
    else:
        bias = np.where(m % 2, -200, 200)
    layer = dense_layer(np.eye(16), bias, out_shift)
    if out_shift:
        assert (dense_accumulate(layer, x)[m, m] % (1 << out_shift) == 1 << (out_shift - 1)).all()
    run_layer(layer, x)


@pytest.mark.parametrize("out_shift", [31, 32, 33, 40, 62])
def test_shifts_past_the_accumulator(out_shift):
    """Shifts at and past the 33-bit accumulator's width give the sign's rounding: -1, 0 or 1."""
    weights = np.array([[127, 127], [-128, -128], [0, 0], [1, -1]])
    bias = [INT32_MAX, INT32_MIN, INT32_MIN, INT32_MAX]
    x = np.array([[127, 127], [-128, 127], [127, -128]]).astype(np.int8)
    run_layer(dense_layer(weights, bias, out_shift), x)


def test_raw_accumulators_at_the_int32_ends():
    """The largest acc layer accepted: with x = 127 its sums reach INT32_MAX and INT32_MIN."""
    D = 32
    weights = np.array([[127] * D, [-128] * D, [0] * D, [-128, 127] * (D // 2)])
    bias = [INT32_MAX - D * 127 * 127, INT32_MIN + D * 128 * 127, INT32_MIN, 0]
    x = np.array([[127] * D, [-128] * D, [0] * D]).astype(np.int8)
    layer = dense_layer(weights, bias, output="acc")
    assert expected_elements(layer, x[:1])[:8] == [-1, -1, -1, 127, 0, 0, 0, -128]
    run_layer(layer, x, gap=0.3, backpressure=0.3)


def test_small_limits_and_table_at_its_end():
    """A unit built for other limits (a row of 5: banks of 8) with the arrays at the table's end."""
    limits = NetworkLimits(tokens=3, features=5, table_words=64)
    layer = random_layer(5, 5, seed=3, out_shift=9)
    step = dense_step(layer, 3, 64 - 10, limits)
    assert len(step.table_words) == 10
    x = np.random.default_rng(5).integers(-128, 128, (3, 5)).astype(np.int8)
    run_layer(layer, x, limits=limits, table_base=64 - 10, gap=0.3, backpressure=0.3)


def test_step_parameters_and_table_words():
    """One record per output: its int32 bias in bytes 0-3, its weights from byte 4, zero-padded
    to whole words; the base and the bound."""
    weights = np.arange(3 * 5).reshape(3, 5) - 7
    bias = [-2, 70000, INT32_MIN]
    layer = dense_layer(weights, bias, out_shift=6)
    step = dense_step(layer, 4, 100, LIMITS)
    assert dense_record_words(5) == 2 and dense_record_words(4) == 1
    records = b"".join(np.array([bias[m]], dtype="<i4").tobytes() + np.asarray(weights[m], dtype=np.int8).tobytes()
                       + bytes(7) for m in range(3))
    assert step.table_words == [int.from_bytes(records[n:n + 8], "little") for n in range(0, 48, 8)]
    assert step.params == {"rows": 4, "in_features": 5, "out_features": 3, "out_shift": 6, "acc_output": 0,
                           "table_base": 100}
    assert (step.in_elements, step.out_elements, step.bound, step.bound_rule) == (20, 12, 60, "max(T*D*M, T*D, T*M)")
    acc_step = dense_step(dense_layer(weights[:, :1], [0, 0, 0], output="acc"), 2, 0, LIMITS)
    assert (acc_step.out_elements, acc_step.bound, acc_step.bound_rule) == (24, 24, "max(T*D*M, T*D, 4*T*M)")


@pytest.mark.parametrize("layer, rows, base, what", [
    (random_layer(4, 4, 0), LIMITS.tokens + 1, 0, "rows"),
    (random_layer(LIMITS.features + 1, 4, 0), 1, 0, "in_features"),
    (random_layer(4, LIMITS.features + 1, 0), 1, 0, "out_features"),
    (random_layer(4, 4, 0), 1, LIMITS.table_words - 3, "table end"),
    (dense_layer(np.ones((2, 3)), [INT32_MAX - 3 * 127 + 1, 0], output="acc"), 1, 0, "accumulator bits"),
    (dense_layer(np.ones((2, 3)), [0, INT32_MIN + 3 * 128 - 1], output="acc"), 1, 0, "accumulator bits"),
])
def test_refuses_layers_beyond_the_limits(layer, rows, base, what):
    with pytest.raises(LimitError, match=what):
        dense_step(layer, rows, base, LIMITS)


def test_accepts_what_it_need_not_refuse():
    """An int8 layer whose acc needs 33 bits is fine (the unit's accumulator holds it), and so
    are an acc layer that just fits and arrays ending at the table's last word."""
    weights = np.ones((2, 3))
    dense_step(dense_layer(weights, [INT32_MAX, 0]), 1, 0, LIMITS)
    dense_step(dense_layer(weights, [INT32_MAX - 3 * 127, INT32_MIN + 3 * 128], output="acc"), 1, 0, LIMITS)
    dense_step(random_layer(4, 4, 0), 1, LIMITS.table_words - 4, LIMITS)


def test_unit_refuses_limits_beyond_its_fields():
    with pytest.raises(ValueError, match="features"):
        DenseUnit(NetworkLimits(features=1 << 16))


def test_its_one_multiply_is_on_the_networks_shared_multiplier():
    assert_multiplies_on_the_shared_multiplier(DenseUnit(LIMITS))
