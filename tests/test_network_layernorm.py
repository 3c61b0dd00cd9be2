"""The network's layernorm unit (hw/network/layernorm_unit.py) against the golden
`layernorm_forward`, through the unit-step harness (tests/network_units.py): rows of one
value (V = 0), one element off by one (the smallest V, r = 2 at E = 2, G = 1: the
division's longest plan), halves of -128 and 127 (the largest V), rows found by search
whose normalization n lands on a rounding tie, outputs saturating both ways and on ties
(out_shift 1), out_shift 0, 33 and 62, E = 2, 3, 5, 31 and the limit 32, G = 1, 2, 7, 8,
1 and 17 rows, gaps and backpressure, steps run twice back to back and different layers
one after the other. The step's cycles at the tiny ViT's shape are checked
against the module's timetable."""
import math
import re

import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.hw.flat_verilog import flat_rtlil
from nomac.hw.multiplier_count import count_multipliers
from nomac.hw.network.layernorm_unit import (FIELDS, LayerNormUnit, LayerNormUnitWidths, layernorm_step,
                                             quotient_cycles, root_cycles)
from nomac.hw.network.unit import LimitError, NetworkLimits
from nomac.model.golden import FORWARD
from nomac.model.int_ops import isqrt
from nomac.model.operator_layers import LayerNormLayer
from network_units import run_steps

LIMITS = NetworkLimits()


def layernorm_layer(E: int, G: int, out_shift: int, seed: int):
    """Weights and biases scaled so that outputs span the int8 range at this out_shift (and
    saturate on the outlying rows), with the int16 and int32 ends planted."""
    rng = np.random.default_rng(seed)
    weight_limit = min(1 << 15, 1 << max(0, out_shift - G + 6))
    bias_limit = min(1 << 31, 1 << (out_shift + 7))
    weight = rng.integers(-weight_limit, weight_limit, E)
    bias = rng.integers(-bias_limit, bias_limit, E)
    weight[0], weight[-1] = (1 << 15) - 1, -(1 << 15)
    bias[-1] = (1 << 31) - 1
    params = {"name": "norm", "kind": "layernorm", "features": E, "norm_bits": G, "out_shift": out_shift}
    return LayerNormLayer.from_json("case", params, {"weight": weight.astype(np.int16), "bias": bias.astype(np.int32)})


def directed_rows(E: int, rows: int, seed: int) -> np.ndarray:
    """Equal values, one element off by one, halves of -128 and 127, one 127 among -128s,
    -128/127 alternating, then random rows."""
    rng = np.random.default_rng(seed)
    half = [-128] * (E // 2) + [127] * (E - E // 2)
    planted = [[5] * E, [0] * (E - 1) + [1], half, [127] + [-128] * (E - 1), [(-128, 127)[e % 2] for e in range(E)],
               [-128] * E]
    x = rng.integers(-128, 128, (max(rows, len(planted)), E))
    x[:len(planted)] = planted
    return x[:rows].astype(np.int8)


def rows_with_normalization_ties(E: int, G: int, count: int, seed: int) -> np.ndarray:
    """Random rows on which some d * inv is exactly 2^(s-1) modulo 2^s (s = 32 - 2G): n's
    rounding half (spec 13.3 step 5), found by search."""
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < count:
        x = rng.integers(-128, 128, (100_000, E)).astype(np.int64)
        S = x.sum(axis=1, keepdims=True)
        V = E * (x * x).sum(axis=1, keepdims=True) - S * S
        r = isqrt(V << (2 * G))
        inv = np.where(r > 0, (1 << 32) // np.maximum(r, 1), 0)
        s = 32 - 2 * G
        tie = (((E * x - S) * inv) & ((1 << s) - 1)) == 1 << (s - 1)
        found.extend(x[tie.any(axis=1)].tolist())
    return np.array(found[:count], dtype=np.int8)


def timetable_cycles(x: np.ndarray, G: int, limits=LIMITS) -> int:
    """The step's cycles without stalls, from the module docstring's timetable: row k's
    statistics start at its last add, (k+1)E + 1 (asserted: they keep up), its element 0
    is issued at I_k = max(that + n_s + n_q, I_(k-1) + E), and the step ends at
    I_(rows-1) + E + 1."""
    rows, E = x.shape
    pairs = LayerNormUnitWidths.of(limits).variance_pairs
    issue = None
    for k, row in enumerate(x.astype(int).tolist()):
        V = E * sum(v * v for v in row) - sum(row) ** 2
        start = (k + 1) * E + 1
        assert issue is None or issue <= start, "the statistics do not keep up: the timetable's rule does not apply"
        ready = start + root_cycles(pairs, G) + quotient_cycles(math.isqrt(V << (2 * G)))
        issue = ready if issue is None else max(ready, issue + E)
    return issue + E + 1


def run_layernorms(cases, *, gap=0.0, backpressure=0.0, seed=0, limits=LIMITS):
    """(layer, rows) cases as steps back to back on one unit, each against the golden;
    their cycles."""
    runs, base = [], 0
    for layer, x in cases:
        runs.append((layernorm_step(layer, len(x), base, limits), x.reshape(-1).tolist(), base))
        base += layer.features
    outputs, cycles = run_steps(LayerNormUnit(limits), FIELDS, runs, seed=seed, gap=gap, backpressure=backpressure)
    for (layer, x), output in zip(cases, outputs):
        assert output == FORWARD["layernorm"](layer, x).reshape(-1).tolist(), (layer.features, layer.norm_bits)
    return cycles


def test_tiny_vit_shape_runs_at_its_timetable_within_10_percent_of_the_bound():
    """17 rows of 32 at G = 7 like the trained tiny ViTs' (r of 14 to 18 bits: spreads of 3 to
    48), within 10 % of the bound (the module docstring: 596 to 598 cycles); the directed
    rows and random rows; then a step of one row (the model's final norm). Each at its
    timetable."""
    layer = layernorm_layer(32, 7, 16, seed=1)
    spreads = np.resize([3, 6, 12, 24, 48], (17, 1))
    vit_like = np.clip(np.random.default_rng(3).normal(0, spreads, (17, 32)), -128, 127).astype(np.int8)
    assert {math.isqrt(V << 14).bit_length() for V in (32 * (vit_like.astype(int) ** 2).sum(axis=1)
                                                        - vit_like.astype(int).sum(axis=1) ** 2)} == set(range(14, 19))
    directed = directed_rows(32, 17, seed=2)
    step = layernorm_step(layer, 17, 0, LIMITS)
    assert (step.bound, step.bound_rule) == (17 * 32, "rows*E")
    one_row = vit_like[16:17]
    cycles = run_layernorms([(layer, vit_like), (layer, directed), (layer, one_row)])
    assert cycles == [timetable_cycles(vit_like, 7), timetable_cycles(directed, 7), timetable_cycles(one_row, 7)]
    assert cycles[0] == 598 and cycles[0] <= 1.10 * step.bound


# (E, G, out_shift, rows): E from 2 to the limit, G 1..8, out_shift 0, 1 (ties), large and beyond 33
CASES = [(2, 1, 0, 6), (2, 8, 40, 5), (3, 8, 62, 4), (3, 2, 1, 17), (5, 1, 9, 9), (31, 2, 30, 6), (32, 8, 20, 6),
         (32, 1, 33, 3)]


@pytest.mark.parametrize("gap, backpressure", [(0.0, 0.0), (0.4, 0.4), (0.1, 0.7)])
def test_layernorm_unit_matches_golden(gap, backpressure):
    """Every case as a step, back to back on one unit (so also different layers one after
    the other: nothing of one step leaks into the next)."""
    run_layernorms([(layernorm_layer(E, G, out_shift, seed=E + G), directed_rows(E, rows, seed=out_shift))
                    for E, G, out_shift, rows in CASES], gap=gap, backpressure=backpressure, seed=int(10 * gap))


def test_normalization_ties_and_the_smallest_root():
    """Rows on n's rounding ties; and r = 2 (E = 2, G = 1, rows differing by one): inv =
    2^31, the division's longest plan (all 32 bits, from remainder 1)."""
    smallest = np.array([[0, 1], [6, 5], [-128, -127], [127, 126]], dtype=np.int8)
    assert {math.isqrt(2 * (int(a) ** 2 + int(b) ** 2) - (int(a) + int(b)) ** 2 << 2)
            for a, b in smallest.tolist()} == {2}
    assert quotient_cycles(2) == 16
    run_layernorms([*[(layernorm_layer(E, G, out_shift, seed=7), rows_with_normalization_ties(E, G, 4, seed=E))
                      for E, G, out_shift in ((3, 8, 12), (4, 7, 16), (5, 1, 3))],
                    (layernorm_layer(2, 1, 5, seed=8), smallest)], gap=0.2, backpressure=0.2)


@pytest.mark.parametrize("limits, E, G, out_shift", [(NetworkLimits(model_features=5, tokens=4), 5, 8, 3),
                                                     (NetworkLimits(model_features=64, tokens=3), 64, 7, 18)])
def test_unit_built_for_other_limits(limits, E, G, out_shift):
    """E up to 5 (the row buffer's slots 8 apart) and up to 64 (wider S, V, r)."""
    run_layernorms([(layernorm_layer(E, G, out_shift, seed=9), directed_rows(E, limits.tokens, seed=10)),
                    (layernorm_layer(2, 1, 0, seed=9), directed_rows(2, 2, seed=11))],
                   gap=0.2, backpressure=0.2, limits=limits)


def test_step_packs_weight_and_bias_one_word_per_feature():
    layer = layernorm_layer(3, 7, 5, seed=11)
    step = layernorm_step(layer, 2, 300, LIMITS)
    assert step.table_words == [(int(w) & 0xFFFF) | (int(b) & 0xFFFF_FFFF) << 32 for w, b in zip(layer.weight, layer.bias)]
    assert step.params == {"rows": 2, "features": 3, "norm_bits": 7, "out_shift": 5, "table_base": 300}
    assert (step.in_elements, step.out_elements, step.bound) == (6, 6, 6)


@pytest.mark.parametrize("change, what, limit", [
    ({"rows": 18}, "rows", 17), ({"features": 33}, "features", 32),
    ({"table_base": 16384 - 31}, "table_base + weight/bias words", 16384), ({"table_base": 70000}, "table_base", 65535)])
def test_step_refuses_what_exceeds_the_limits(change, what, limit):
    case = {"rows": 17, "features": 32, "table_base": 0, **change}
    limits = NetworkLimits(table_words=1 << 17) if case["table_base"] > 16384 else LIMITS
    with pytest.raises(LimitError, match=re.escape(f"layer 'norm': {what} = ") + f".*limit {limit}$"):
        layernorm_step(layernorm_layer(case["features"], 7, 16, seed=0), case["rows"], case["table_base"], limits)


def test_step_refuses_no_rows():
    with pytest.raises(ConfigError, match="rows = 0"):
        layernorm_step(layernorm_layer(4, 7, 16, seed=0), 0, 0, LIMITS)


@pytest.mark.parametrize("E, G", [(2, 1), (2, 8), (3, 1), (31, 8), (32, 1), (32, 7), (32, 8)])
def test_the_widths_hold_every_intermediate(E, G):
    """The unit's register bounds, on the rows that reach them and on random rows, in exact
    Python integers: S, E*x, the cross term, V's partial sums, V, r,
    inv, d, d * inv, n and n * weight + bias."""
    w = LayerNormUnitWidths.of(LIMITS)

    def fits(shape, values):
        lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
        return all(lo <= v <= hi for v in values)

    rng = np.random.default_rng(E * G)
    rows = [*directed_rows(E, 6, seed=0).tolist(), *rng.integers(-128, 128, (40, E)).tolist(),
            *np.where(rng.random((40, E)) < 0.1, 127, -128).tolist(), *np.where(rng.random((40, E)) < 0.9, 127, -128).tolist()]
    for row in rows:
        partial, before = 0, 0
        for x in row:
            cross = E * x - x - 2 * before
            assert fits(w.sum, [before + x]) and fits(w.scaled, [E * x]) and fits(w.cross, [cross])
            assert fits(w.partial_variance, [partial + x * cross])
            partial, before = partial + x * cross, before + x
        assert partial == E * sum(x * x for x in row) - before ** 2
        r = math.isqrt(partial << (2 * G))
        inv = (1 << 32) // r if r else 0
        d = [E * x - before for x in row]
        n = [(e * inv + (1 << (31 - 2 * G))) >> (32 - 2 * G) for e in d]
        assert fits(w.variance, [partial]) and r.bit_length() <= w.root_bits and fits(w.inv, [inv])
        assert fits(w.deviation, d) and fits(w.product, [e * inv for e in d]) and fits(w.normalized, n)
        assert fits(w.output_acc, [v * weight + bias for v in n
                                   for weight in (-(1 << 15), (1 << 15) - 1) for bias in (-(1 << 31), (1 << 31) - 1)])


def test_three_multipliers_and_the_shared_one():
    """x * cross, d * inv and n * weight of its own; E * x on the network's shared multiplier."""
    unit = LayerNormUnit(LIMITS)
    assert "multiplier" in unit.signature.members
    assert count_multipliers(flat_rtlil(unit, "layernorm_unit"), "layernorm_unit") == 3


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_layernorm_unit_matches_golden_on_random_layers(seed):
    """Four random layers and row sets a seed, back to back, with random stalls."""
    rng = np.random.default_rng(100 + seed)
    cases = []
    for case in range(4):
        E, G, out_shift = int(rng.integers(2, 33)), int(rng.integers(1, 9)), int(rng.integers(0, 41))
        rows = int(rng.integers(1, 18))
        x = rng.integers(-128, 128, (rows, E))
        x[rng.random((rows, E)) < 0.1] = rng.choice([-128, 127])
        cases.append((layernorm_layer(E, G, out_shift, seed=10 * seed + case), x.astype(np.int8)))
    run_layernorms(cases, gap=float(rng.random()) * 0.6, backpressure=float(rng.random()) * 0.6, seed=seed)
