"""The network's shift unit (hw/network/shift_unit.py) against the golden DeepShift layer."""
import numpy as np
import pytest

from nomac.hw.network.shift_unit import FIELDS, MAX_SPAN, TERMS_PER_CYCLE, ShiftUnit, shift_step
from nomac.hw.network.unit import LimitError, NetworkLimits
from nomac.model.golden import FORWARD
from nomac.model.shift_spec import ShiftLayer
from network_units import run_step, run_steps

LIMITS = NetworkLimits()
INT32_MAX = (1 << 31) - 1


def shift_layer(D, M, *, seed=0, p0=-15, p1=0, out_shift=16, output="int8", sign=None, shift=None, bias=None,
                name="s"):
    """A validated shift layer; arrays not given are random (bias within +-2^20)."""
    rng = np.random.default_rng(seed)
    sign = rng.integers(-1, 2, (M, D)) if sign is None else sign
    shift = rng.integers(p0, p1 + 1, (M, D)) if shift is None else shift
    bias = rng.integers(-1 << 20, 1 << 20, M) if bias is None else bias
    return ShiftLayer.from_json("case", {"name": name, "kind": "shift", "in_features": D, "out_features": M,
                                         "shift_min": p0, "shift_max": p1, "out_shift": out_shift, "output": output},
                                {"sign": np.asarray(sign, np.int8), "shift": np.asarray(shift, np.int8),
                                 "bias": np.asarray(bias, np.int32)})


def golden_elements(layer, x):
    """The step's output elements: int8 results, or each int32 acc as 4 little-endian bytes."""
    y = FORWARD["shift"](layer, x)
    if layer.output == "acc":
        return np.asarray(y, np.int64).astype("<i4").view(np.int8).reshape(-1).tolist()
    return y.reshape(-1).tolist()


def run_layer(layer, x, *, table_base=0, **kwargs):
    """Outputs and cycles of a step of `layer` on int8 rows x; checks the outputs with the golden."""
    step = shift_step(layer, len(x), table_base, LIMITS)
    outputs, cycles = run_step(ShiftUnit(LIMITS), FIELDS, step, x.reshape(-1).tolist(), table_base=table_base,
                               **kwargs)
    assert outputs == golden_elements(layer, x)
    return step, cycles


def timetable_cycles(rows, D, M, output):
    """The written timetable (module docstring): row 0 in, then one word a cycle, then the pipeline's
    3 cycles and the last output's bytes; holds when a row streams in faster than the last one
    computes and an output's bytes leave within its words' cycles."""
    words = -(-D // TERMS_PER_CYCLE)
    out_bytes = 4 if output == "acc" else 1
    assert D <= M * words and out_bytes <= words
    return D + rows * M * words + 2 + out_bytes


def random_rows(rows, D, seed):
    return np.random.default_rng(seed).integers(-128, 128, (rows, D)).astype(np.int8)


@pytest.mark.parametrize("rows, D, M, output, gap, backpressure", [
    (1, 1, 1, "int8", 0, 0),             # shapes of 1
    (3, 13, 5, "int8", 0.5, 0.7),        # a padded last word, gaps and backpressure
    (2, 96, 3, "int8", 0.3, 0.3),        # the largest row, fewer outputs than a row's words
    (1, 4, 96, "int8", 0.2, 0.5),        # the most outputs
    (17, 5, 4, "int8", 0.0, 0.3),        # the most rows; the writer waits for a free bank
    (4, 6, 3, "acc", 0.2, 0.6),          # acc bytes outrun the two-word outputs: the pipeline stalls
])
def test_shift_unit_matches_golden(rows, D, M, output, gap, backpressure):
    layer = shift_layer(D, M, seed=D * M, out_shift=12, output=output)
    x = random_rows(rows, D, seed=rows)
    run_layer(layer, x, table_base=37, seed=D, gap=gap, backpressure=backpressure, steps=2)


def test_extreme_inputs_weights_and_saturation():
    """x = -128 and 127 everywhere against the largest weights +-2^(p1-p0): results saturate both
    ways; the bias spreads the outputs over the int8 range and past it."""
    D, M = 32, 16
    sign = np.where(np.arange(M)[:, None] % 2 == 0, 1, -1) * np.ones((1, D), int)
    sign[:, ::7] = 0
    shift = np.zeros((M, D), int)                      # shift_max: the left shift 15
    shift[M // 2:, ::3] = -15                          # and some at shift_min
    bias = (np.arange(M) - M // 2) * (40 << 18)
    layer = shift_layer(D, M, sign=sign, shift=shift, bias=bias, out_shift=20)
    x = np.array([[-128] * D, [127] * D, [-128, 127] * (D // 2), [0] * D], np.int8)
    outputs = golden_elements(layer, x)
    assert -128 in outputs and 127 in outputs and len(set(outputs)) > 8
    run_layer(layer, x, backpressure=0.3)


@pytest.mark.parametrize("out_shift", [1, 24, 32, 62])
def test_rounding_ties_and_saturation_edges(out_shift):
    """Biases put row 0's accumulators on exact ties k * 2^s + 2^(s-1) and one below and above,
    for k across the saturation limits (k = -129 .. 128); very large shifts give 0 or +-1."""
    D, M = 8, 30
    layer = shift_layer(D, M, seed=out_shift, out_shift=out_shift, bias=np.zeros(M, int))
    x = random_rows(2, D, seed=out_shift)
    acc0 = FORWARD["shift"](shift_layer(D, M, seed=out_shift, output="acc", bias=np.zeros(M, int)), x)[0]
    ks = [-129, -128, -127, -2, -1, 0, 1, 126, 127, 128]
    wanted = [(k << out_shift) + (1 << (out_shift - 1)) + delta for k in ks for delta in (-1, 0, 1)]
    wanted = [max(-(1 << 30), min(1 << 30, v)) for v in wanted]        # |acc0| < 2^25: the bias fits int32
    layer = shift_layer(D, M, seed=out_shift, out_shift=out_shift, bias=np.array(wanted) - acc0)
    run_layer(layer, x)


def test_raw_acc_reaches_int32_limits_and_one_more_is_refused():
    """Output "acc" with accumulators that reach exactly -2^31 and 2^31 - 1 (96 terms of 127 << 15),
    as 4 little-endian bytes; a bias one further needs 33 bits and is refused."""
    D = 96
    sign = np.array([[1] * D, [-1] * D])
    reach = D * (127 << MAX_SPAN)
    bias = np.array([INT32_MAX - reach, -(1 << 31) + reach])
    layer = shift_layer(D, 2, sign=sign, shift=np.zeros((2, D), int), bias=bias, output="acc")
    x = np.array([[127] * D, [-128] * D], np.int8)
    acc = FORWARD["shift"](layer, x)
    assert acc[0].tolist() == [INT32_MAX, -(1 << 31)]
    run_layer(layer, x, backpressure=0.5)
    over = shift_layer(D, 2, sign=sign, shift=np.zeros((2, D), int), bias=bias + [1, 0], output="acc")
    with pytest.raises(LimitError, match="accumulator bits of output acc = 33"):
        shift_step(over, 1, 0, LIMITS)


@pytest.mark.parametrize("change, what", [
    ({"rows": LIMITS.tokens + 1}, "rows"),
    ({"D": LIMITS.features + 1}, "in_features"),
    ({"M": LIMITS.features + 1}, "out_features"),
    ({"p0": -16}, "shift_max - shift_min"),
    ({"bias": INT32_MAX - 2}, "bias \\+ negative weights"),       # three -1 weights fold into the bias
    ({"table_base": LIMITS.table_words - 5}, "table words"),
])
def test_limits_refused(change, what):
    D, M = change.get("D", 8), change.get("M", 4)
    sign = np.zeros((M, D), int)
    sign[0, :3] = -1
    layer = shift_layer(D, M, p0=change.get("p0", -15), sign=sign, bias=np.full(M, change.get("bias", 0)))
    with pytest.raises(LimitError, match=f"layer 's'.*{what}"):
        shift_step(layer, change.get("rows", 1), change.get("table_base", 0), LIMITS)


def test_shift_range_and_p0_down_to_minus_32():
    """What counts is the span p1 - p0 <= 15, not p0: shifts in -32..-17 run exactly."""
    layer = shift_layer(12, 6, seed=3, p0=-32, p1=-17, out_shift=3)
    assert shift_step(layer, 1, 0, LIMITS).params["words_per_output"] == 3
    run_layer(layer, random_rows(2, 12, seed=3))


def test_two_layers_back_to_back_on_one_unit():
    """An int8 step and then an acc step of another shape, started the cycle after the first's
    done, tables at different bases: neither takes the other's elements."""
    first = shift_layer(9, 7, seed=1, out_shift=14)
    second = shift_layer(20, 3, seed=2, output="acc", name="t")
    xs = [random_rows(3, 9, seed=1), random_rows(2, 20, seed=2)]
    steps = [shift_step(first, 3, 100, LIMITS), shift_step(second, 2, 300, LIMITS)]
    runs = [(steps[0], xs[0].reshape(-1).tolist(), 100), (steps[1], xs[1].reshape(-1).tolist(), 300)]
    outputs, _ = run_steps(ShiftUnit(LIMITS), FIELDS, runs, seed=3)
    assert outputs == [golden_elements(first, xs[0]), golden_elements(second, xs[1])]


# The tiny ViT's shift layers (model/vit/plans/shift.json): name, D, M, output, rows.
VIT_LAYERS = [("qkv", 32, 96, "int8", 17), ("proj", 32, 32, "int8", 17), ("fc1", 32, 64, "int8", 17),
              ("fc2", 64, 32, "int8", 17), ("head", 32, 10, "acc", 1)]


@pytest.mark.parametrize("name, D, M, output, rows", VIT_LAYERS)
def test_vit_shapes_follow_the_timetable(name, D, M, output, rows):
    """The tiny ViT's shapes on two rows (one for the head): cycles exactly as the timetable says."""
    rows = min(rows, 2)
    layer = shift_layer(D, M, seed=M, output=output, name=name)
    step, cycles = run_layer(layer, random_rows(rows, D, seed=D))
    assert cycles == [timetable_cycles(rows, D, M, output)]


@pytest.mark.slow
@pytest.mark.parametrize("name, D, M, output, rows", VIT_LAYERS)
def test_vit_steps_within_their_bound(name, D, M, output, rows):
    """Whole tiny ViT steps (17 rows): exact, on the timetable, within 10 % of the bound; the
    head's single row cannot overlap its 32 inputs with its 80 cycles of terms (left out, see the spec)."""
    layer = shift_layer(D, M, seed=M, output=output, name=name)
    step, cycles = run_layer(layer, random_rows(rows, D, seed=D))
    assert cycles == [timetable_cycles(rows, D, M, output)]
    if rows > 1:
        assert cycles[0] <= 1.1 * step.bound, (cycles, step.bound)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_random_sweep(seed):
    rng = np.random.default_rng(seed)
    D, M, rows = int(rng.integers(1, 97)), int(rng.integers(1, 97)), int(rng.integers(1, 6))
    p0 = int(rng.integers(-32, 1))
    p1 = int(rng.integers(p0, min(0, p0 + MAX_SPAN) + 1))
    output = "acc" if seed % 3 == 0 else "int8"
    layer = shift_layer(D, M, seed=seed, p0=p0, p1=p1, out_shift=int(rng.integers(0, 40)), output=output)
    run_layer(layer, random_rows(rows, D, seed=seed), table_base=int(rng.integers(0, 1000)), seed=seed,
              gap=float(rng.random() * 0.6), backpressure=float(rng.random() * 0.6))
