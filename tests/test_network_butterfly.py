"""The network's butterfly unit (hw/network/butterfly_unit.py) against the golden model.

A layer of F factors runs as F steps of one unit, each fed the previous step's output
(tests/network_units.py, one step after another), and the last output is compared with
`FORWARD["butterfly"]`; every step's output is also compared with the golden's
intermediate for that factor. The cases plant what random weights rarely give: rounding
ties and both saturations at many out_shifts (diagonal factors whose biases sit on the
boundaries), the largest terms and sums the accumulator must hold (a dense shift factor
of 96 x 96 terms of 128 * 2^32), the int32 ends of an "acc" output, odd shapes, s = 1,
shapes of 1, input gaps and output backpressure, and different steps back to back on
one unit.
"""
import warnings

import numpy as np
import pytest

from network_units import run_step, run_steps
from nomac.hw.network.butterfly_unit import FIELDS, ButterflyUnit, butterfly_steps, record_words
from nomac.hw.network.unit import LimitError, NetworkLimits
from nomac.model.butterfly_chains import monotonic_chain
from nomac.model.butterfly_golden import butterfly_forward, factor_accumulate
from nomac.model.butterfly_spec import ButterflyLayer, SparseChainWarning
from nomac.model.fixed_point import rshift_round
from nomac.model.golden import FORWARD

LIMITS = NetworkLimits()
TABLE_BASE = 300
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
VIT_PROJ = monotonic_chain(32, 32, radix=4)          # the mixed plan's proj: [32,32,4,4,1], [.,.,4,4,4], [.,.,2,2,16]


def make_layer(factors: list, arrays: dict, output: str = "int8") -> ButterflyLayer:
    params = {"name": "proj", "kind": "butterfly", "in_features": factors[0]["shape"][1],
              "out_features": factors[-1]["shape"][0], "factors": factors, "output": output}
    with warnings.catch_warnings():       # sparse chains are valid and run like any other
        warnings.simplefilter("ignore", SparseChainWarning)
        return ButterflyLayer.from_json("case", params, arrays)


def random_layer(chain, kinds, seed: int, output: str = "int8", shift_min: int = -7) -> ButterflyLayer:
    """Random weights with a row of the largest terms of each sign (+127 / -128, or sign
    +-1 at shift 0), biases of a few thousand, out_shifts that leave most outputs unsaturated."""
    rng = np.random.default_rng(seed)
    factors, arrays = [], {}
    for k, ((p, q, r, s, t), kind) in enumerate(zip(chain, kinds)):
        factor = {"shape": [p, q, r, s, t], "weights": kind, "out_shift": 7 + s.bit_length() // 2}
        if kind == "int8":
            w = rng.integers(-128, 128, (p, s))
            w[0], w[-1] = 127, -128
            arrays[f"w{k}"] = w.astype(np.int8)
        else:
            factor.update(shift_min=shift_min, shift_max=0)
            sign, shift = rng.integers(-1, 2, (p, s)), rng.integers(shift_min, 1, (p, s))
            sign[0], shift[0], sign[-1], shift[-1] = 1, 0, -1, 0
            arrays[f"sign{k}"], arrays[f"shift{k}"] = sign.astype(np.int8), shift.astype(np.int8)
            factor["out_shift"] -= shift_min
        arrays[f"bias{k}"] = rng.integers(-3000, 3000, p).astype(np.int32)
        factors.append(factor)
    return make_layer(factors, arrays, output)


def random_rows(rows: int, features: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-128, 128, (rows, features)).astype(np.int8)
    x[0, :] = -128
    if rows > 1:
        x[1, :] = 127
    return x


def decode(outputs: list, acc: bool) -> np.ndarray:
    raw = np.asarray(outputs, dtype=np.int64).astype(np.int8)
    return raw.view(np.uint8).view("<i4").astype(np.int64) if acc else raw


def run_layer(layer, x, limits=LIMITS, **stalls):
    """The layer's steps one after another on one unit, each fed the previous one's
    output; checks every step against the golden's factor outputs. Returns the cycles."""
    steps = butterfly_steps(layer, x.shape[0], TABLE_BASE, limits)
    expected = butterfly_forward(layer, x, return_intermediates=True)
    unit, data, cycles = ButterflyUnit(limits), x.reshape(-1).tolist(), []
    for k, step in enumerate(steps):
        outputs, step_cycles = run_step(unit, FIELDS, step, data, table_base=step.params["table_base"],
                                        seed=k, **stalls)
        acc = bool(step.params["output_acc"])
        assert decode(outputs, acc).tolist() == np.asarray(expected[k]).reshape(-1).tolist(), f"factor {k}"
        data, cycles = outputs, cycles + step_cycles
    assert decode(data, layer.output == "acc").reshape(x.shape[0], -1).tolist() == \
        FORWARD["butterfly"](layer, x).tolist()
    return steps, cycles


# ---- whole layers -------------------------------------------------------------------

def test_the_vit_proj_chain_at_17_tokens_takes_its_written_cycles_within_10_percent_of_the_bound():
    assert VIT_PROJ == [(32, 32, 4, 4, 1), (32, 32, 4, 4, 4), (32, 32, 2, 2, 16)]   # as `nomac train --plan mixed`
    layer = random_layer(VIT_PROJ, ("int8",) * 3, seed=1)
    steps, cycles = run_layer(layer, random_rows(17, 32, seed=1))
    for (p, q, r, s, t), step, measured in zip(VIT_PROJ, steps, cycles):
        assert step.bound == 17 * p * s and step.bound_rule == "T*p*s"
        assert measured == q + 17 * p * s + 5          # the module docstring's timetable
        assert measured <= 1.1 * step.bound


@pytest.mark.parametrize("kinds", [("shift", "int8", "shift"), ("shift",) * 3])
def test_shift_factors_with_gaps_and_backpressure(kinds):
    layer = random_layer(VIT_PROJ, kinds, seed=2, shift_min=-12)
    run_layer(layer, random_rows(5, 32, seed=2), gap=0.3, backpressure=0.4)


ODD_CHAIN = ((12, 9, 4, 3, 1), (6, 12, 1, 2, 3), (15, 6, 5, 2, 3), (45, 15, 3, 1, 5), (3, 45, 1, 15, 1))


def test_odd_shapes_with_s_of_1_and_of_15():
    layer = random_layer(ODD_CHAIN, ("int8", "shift", "int8", "shift", "int8"), seed=3)
    run_layer(layer, random_rows(7, 9, seed=3), gap=0.2, backpressure=0.2)


@pytest.mark.parametrize("chain", [((1, 1, 1, 1, 1),), ((3, 1, 3, 1, 1), (1, 3, 1, 3, 1))])
def test_shapes_of_one(chain):
    layer = random_layer(chain, ("int8",) * len(chain), seed=4)
    run_layer(layer, random_rows(17, 1, seed=4), backpressure=0.3)


def test_the_largest_shape_of_the_limits_one_dense_factor_of_96_x_96():
    layer = random_layer(((96, 96, 96, 96, 1),), ("int8",), seed=5)
    steps, cycles = run_layer(layer, random_rows(1, 96, seed=5))
    assert cycles == [96 + 96 * 96 + 5]
    assert len(steps[0].table_words) == 96 * record_words(96)


# ---- rounding and saturation --------------------------------------------------------

def boundary_layer(out_shift: int, features: int) -> ButterflyLayer:
    """A diagonal int8 factor [E, E, 1, 1, E] whose biases put acc = c*2^s + 2^(s-1) + m*x
    with c around the int8 ends: x = 0 is a tie, small x step across a rounding or
    saturation boundary, and rows of weight 127 / -128 saturate both ways."""
    ends = np.array([127, 126, 128, -128, -129, -127, 0, -1, 1000, -1000])
    c = ends[np.arange(features) % len(ends)]
    half = (1 << out_shift) >> 1
    bias = np.clip(c * (1 << out_shift) + half, INT32_MIN, INT32_MAX)
    w = np.where(np.arange(features) % 3 == 2, -1, 1)
    w[::7], w[3::7] = 127, -128
    factor = {"shape": [features, features, 1, 1, features], "weights": "int8", "out_shift": out_shift}
    return make_layer([factor], {"w0": w.astype(np.int8)[:, None], "bias0": bias.astype(np.int32)})


@pytest.mark.parametrize("out_shift", [0, 1, 2, 3, 7, 12, 20, 47, 62])
def test_rounding_ties_and_saturation_at_each_out_shift(out_shift):
    layer = boundary_layer(out_shift, 40)
    x = np.random.default_rng(out_shift).choice(np.array([-3, -2, -1, 0, 1, 2, 3, -128, 127]), (17, 40)).astype(np.int8)
    run_layer(layer, x)
    acc = factor_accumulate(layer.factors[0], x)
    rounded = rshift_round(acc, out_shift)
    if out_shift <= 20:                                # the boundaries the biases aim at are hit
        assert (rounded > 127).any() and (rounded < -128).any()
        assert (rounded == 127).any() and (rounded == -128).any()
        if out_shift:
            assert (acc % (1 << out_shift) == 1 << (out_shift - 1)).any()
    else:
        assert (rounded == 0).all()


@pytest.mark.parametrize("out_shift", [1, 8, 24, 31, 32])
def test_shift_terms_up_to_2_to_the_32_round_and_saturate(out_shift):
    """acc = x0 * 2^s + x1 * 2^(s-1) (+ a small bias) of a shift factor [E, E, 2, 2, E/2]:
    odd x1 ties, x0 = 127 or -128 saturates, at shifts up to 32 (shift_min = -32)."""
    features, t = 32, 16
    rng = np.random.default_rng(out_shift)
    sign = rng.choice(np.array([-1, 1]), (features, 2))
    shift = np.stack([np.full(features, out_shift), np.full(features, out_shift - 1)], axis=1) - 32
    bias = rng.integers(-2, 3, features)
    factor = {"shape": [features, features, 2, 2, t], "weights": "shift", "out_shift": out_shift,
              "shift_min": -32, "shift_max": 0}
    layer = make_layer([factor], {"sign0": sign.astype(np.int8), "shift0": shift.astype(np.int8),
                                  "bias0": bias.astype(np.int32)})
    x = rng.integers(-128, 128, (17, features))
    x[:6, :t] = [[127], [-128], [127], [-128], [0], [1]]
    x[:6, t:] = [[1], [-2], [3], [-1], [1], [-3]]
    run_layer(layer, x.astype(np.int8), backpressure=0.2)
    rounded = rshift_round(factor_accumulate(layer.factors[0], x), out_shift)
    assert (rounded > 127).any() and (rounded < -128).any()


def test_the_largest_sums_96_terms_of_128_times_2_to_the_32():
    """Every term at its largest magnitude (shift 0 against shift_min -32, x = -128) in a
    dense factor of 96 terms: acc reaches +-96 * 2^39 + bias, 47 bits; the second factor
    takes the saturated outputs and rounds at 46."""
    rng = np.random.default_rng(6)
    factors, arrays = [], {}
    for k, out_shift in enumerate((38, 46)):
        factors.append({"shape": [96, 96, 96, 96, 1], "weights": "shift", "out_shift": out_shift,
                        "shift_min": -32, "shift_max": 0})
        sign = rng.integers(-1, 2, (96, 96))
        sign[0], sign[1] = 1, -1
        arrays[f"sign{k}"], arrays[f"shift{k}"] = sign.astype(np.int8), np.zeros((96, 96), np.int8)
        arrays[f"bias{k}"] = rng.integers(INT32_MIN, INT32_MAX, 96, endpoint=True).astype(np.int32)
    layer = make_layer(factors, arrays)
    x = np.full((1, 96), -128, np.int8)
    run_layer(layer, x)
    acc = factor_accumulate(layer.factors[0], x)
    assert acc.max() >= (96 << 39) - (1 << 31) and acc.min() <= -(96 << 39) + (1 << 31)


# ---- "acc" output -------------------------------------------------------------------

def acc_layer(chain, seed: int) -> ButterflyLayer:
    """The last factor's biases at the int32 ends less what its terms can add, so acc
    reaches INT32_MAX and INT32_MIN exactly (x = -128 against weights -128, 127)."""
    layer = random_layer(chain, ("int8",) * len(chain), seed=seed)
    arrays = {name: array.copy() for name, array in layer.arrays().items()}
    k = len(chain) - 1
    s = chain[k][3]
    w = arrays[f"w{k}"]
    w[0], w[-1] = -128, 127
    arrays[f"bias{k}"][0] = INT32_MAX - s * 128 * 128
    arrays[f"bias{k}"][-1] = INT32_MIN + s * 127 * 128
    factors = [f.params_json() for f in layer.factors]
    return make_layer(factors, arrays, output="acc")


def test_acc_output_reaches_both_int32_ends_and_is_bound_by_its_4_bytes_when_s_is_2():
    layer = acc_layer(((32, 32, 2, 2, 16),), seed=7)
    x = random_rows(17, 32, seed=7)                    # row 0: -128 everywhere
    steps, cycles = run_layer(layer, x, backpressure=0.1)
    out = FORWARD["butterfly"](layer, x)
    assert out[0, 0] == INT32_MAX and out[0, -1] == INT32_MIN
    step, = steps
    assert step.out_elements == 17 * 32 * 4 and step.bound == 17 * 32 * 4 and step.bound_rule == "T*max(p*s, 4*p)"
    _, (unstalled,) = run_layer(layer, x)
    assert unstalled <= 1.1 * step.bound


def test_acc_output_with_s_of_4_under_gaps_and_backpressure():
    layer = acc_layer(((32, 32, 4, 4, 4),), seed=8)
    steps, cycles = run_layer(layer, random_rows(17, 32, seed=8))
    assert cycles == [32 + 17 * 32 * 4 + 8]            # the last output's 3 more bytes
    run_layer(layer, random_rows(4, 32, seed=9), gap=0.4, backpressure=0.5)


# ---- the step function --------------------------------------------------------------

def test_records_pack_bias_then_codes_and_follow_each_other_in_the_table():
    """Bytes 0..3 of a record: bias (little-endian int32), then one code a byte: the int8
    weight, or (shift - shift_min) | sign << 6; R = ceil((4 + s) / 8) words a record."""
    factors = [{"shape": [2, 10, 1, 5, 1], "weights": "int8", "out_shift": 3},
               {"shape": [2, 2, 1, 1, 1], "weights": "shift", "out_shift": 1, "shift_min": -7, "shift_max": -1}]
    w = np.array([[1, -1, 127, -128, 2], [3, 4, 5, 6, 7]], np.int8)
    arrays = {"w0": w, "bias0": np.array([-2, 0x12345678], np.int32),
              "sign1": np.array([[-1], [1]], np.int8), "shift1": np.array([[-3], [-7]], np.int8),
              "bias1": np.array([INT32_MIN, 1], np.int32)}
    first, second = butterfly_steps(make_layer(factors, arrays), 3, 40, LIMITS)

    def word(*byte_values):
        return sum((b & 0xFF) << (8 * n) for n, b in enumerate(byte_values))

    assert first.table_words == [word(0xFE, 0xFF, 0xFF, 0xFF, 1, -1, 127, -128), word(2),
                                 word(0x78, 0x56, 0x34, 0x12, 3, 4, 5, 6), word(7)]
    assert second.table_words == [word(0, 0, 0, 0x80, 4 | 0b11 << 6), word(1, 0, 0, 0, 0 | 0b01 << 6)]
    assert (first.params["table_base"], second.params["table_base"]) == (40, 44)
    assert (first.in_elements, first.out_elements, second.in_elements, second.out_elements) == (30, 6, 6, 6)
    assert first.params == {"rows": 3, "q": 10, "r": 1, "s": 5, "t": 1, "shift_weights": 0, "output_acc": 0,
                            "out_shift": 3, "table_base": 40}
    assert second.params["shift_weights"] == 1


def test_limits_are_refused_naming_the_layer_the_thing_and_the_limit():
    layer = random_layer(VIT_PROJ, ("int8",) * 3, seed=10)
    with pytest.raises(LimitError, match=r"layer 'proj'.*rows \(tokens\) = 18.*limit 17"):
        butterfly_steps(layer, 18, 0, LIMITS)
    narrow = random_layer(((16, 32, 1, 2, 1),), ("int8",), seed=10)
    with pytest.raises(LimitError, match=r"factor 0 q \(inputs\) = 32.*limit 31"):
        butterfly_steps(narrow, 1, 0, NetworkLimits(features=31))
    wide = random_layer(((64, 32, 2, 1, 32),), ("int8",), seed=10)
    with pytest.raises(LimitError, match=r"factor 0 p \(outputs\) = 64.*limit 32"):
        butterfly_steps(wide, 1, 0, NetworkLimits(features=32))
    with pytest.raises(LimitError, match=r"table memory words .* = 196.*limit 195"):
        butterfly_steps(layer, 1, 100, NetworkLimits(table_words=195))
    arrays = {name: array.copy() for name, array in layer.arrays().items()}
    arrays["bias2"][3] = INT32_MAX - 1
    too_wide = make_layer([f.params_json() for f in layer.factors], arrays, output="acc")
    with pytest.raises(LimitError, match=r"factor 2 accumulator bits \(output acc, int32\) = 33.*limit 32"):
        butterfly_steps(too_wide, 1, 0, LIMITS)


# ---- steps back to back -------------------------------------------------------------

def test_factors_of_two_layers_back_to_back_on_one_unit():
    proj = random_layer(VIT_PROJ, ("int8", "shift", "int8"), seed=11)
    odd = random_layer(ODD_CHAIN[:2], ("shift", "int8"), seed=12, output="acc")
    x_proj, x_odd = random_rows(3, 32, seed=11), random_rows(2, 9, seed=12)
    steps = butterfly_steps(proj, 3, TABLE_BASE, LIMITS)
    steps += butterfly_steps(odd, 2, steps[-1].params["table_base"] + len(steps[-1].table_words), LIMITS)
    golden = butterfly_forward(proj, x_proj, True) + butterfly_forward(odd, x_odd, True)
    inputs = [x_proj, *golden[:2], x_odd, golden[3]]
    runs = [(step, np.asarray(v).reshape(-1).tolist(), step.params["table_base"]) for step, v in zip(steps, inputs)]
    outputs, _ = run_steps(ButterflyUnit(LIMITS), FIELDS, runs, seed=11)
    for k, (step, got, expected) in enumerate(zip(steps, outputs, golden)):
        assert decode(got, bool(step.params["output_acc"])).tolist() == np.asarray(expected).reshape(-1).tolist(), k


# ---- the sweep ----------------------------------------------------------------------

def random_chain(rng, features: int) -> list:
    """A valid chain of 1..4 factors within `features`, each with a random (s, r, t) that fits."""
    chain, q = [], int(rng.integers(1, features + 1))
    for _ in range(int(rng.integers(1, 5))):
        options = [(s, t, r) for s in range(1, q + 1) for t in range(1, q // s + 1) if q % (s * t) == 0
                   for r in range(1, 9) if q // (s * t) * r * t <= features]
        s, t, r = options[int(rng.integers(len(options)))]
        p = q // (s * t) * r * t
        chain.append((p, q, r, s, t))
        q = p
    return chain


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(60))
def test_random_chains_sweep(seed):
    """Random chains within the limits' 96 features (rows cut so a factor takes at most
    about 20,000 cycles), int8 and shift factors (shift_min down to -32), both outputs,
    random gaps and backpressure."""
    rng = np.random.default_rng(100 + seed)
    chain = random_chain(rng, LIMITS.features)
    kinds = tuple(str(kind) for kind in rng.choice(["int8", "shift"], len(chain)))
    output = "acc" if seed % 3 == 0 else "int8"
    shift_min = int(rng.integers(-12 if output == "acc" else -32, 1))     # an "acc" output fits int32
    layer = random_layer(chain, kinds, seed=seed, output=output, shift_min=shift_min)
    rows = int(rng.integers(1, 1 + min(LIMITS.tokens, max(1, 20_000 // max(p * s for p, q, r, s, t in chain)))))
    run_layer(layer, random_rows(rows, chain[0][1], seed), gap=float(rng.random() * 0.5),
              backpressure=float(rng.random() * 0.6))
