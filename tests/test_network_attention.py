"""The network's attention unit (hw/network/attention_unit.py) against the golden attention
(docs/spec.md section 13.5), on Amaranth's simulator through the shared unit harness.

Shapes: the tiny ViT's (T = 17, E = 32, H = 4, dh = 8) with its exact timetable, the limits'
largest (T = 17, dh = 32; E = 30 with H = 3, the most words a token takes), and small odd ones
(T = 1, 2, 3, 8; H = 1; dh = 1, 3, 5 against U = 4 lanes; U = 1, 2, 3; the held sums' two-cycle
rescales before and after the next row's E pass). Directed sequences aim at
equal scores and the largest Z, deltas far past the table (t = 255) and every table entry in
every lane of its word, rounding ties of both rescalings, outputs saturating both ways, Z = 1
and 2 (recip = 2^32 and 2^31), zero multipliers, shifts 0 and 62, int8 extremes.
"""
import numpy as np
import pytest

from nomac.hw.flat_verilog import flat_rtlil
from nomac.hw.multiplier_count import count_multipliers
from nomac.hw.network.attention_unit import DEFAULT_LANES, FIELDS, AttentionUnit, attention_step
from nomac.hw.network.attention_unit_schedule import AttentionUnitTimetable
from nomac.hw.network.unit import LimitError, NetworkLimits, pack_params
from nomac.base.errors import ConfigError
from nomac.model.golden import FORWARD
from nomac.model.int_ops import softmax_probabilities
from nomac.model.operator_layers import AttentionLayer
from network_units import run_step

LIMITS = NetworkLimits()
STANDARD_TABLE = np.floor(2 ** 15 * np.exp(-np.arange(256) / 24) + 0.5).astype(np.int32)
TABLE_BASE = 40


def attention_layer(tokens, features, heads, score=(24000, 22), out=(20000, 20), table=STANDARD_TABLE):
    params = {"name": "attention", "kind": "attention", "tokens": tokens, "features": features, "heads": heads,
              "score_mult": score[0], "score_shift": score[1], "out_mult": out[0], "out_shift": out[1]}
    return AttentionLayer.from_json("case", params, {"exp_table": np.asarray(table, dtype=np.int32)})


def random_sequence(layer, seed, lo=-128, hi=127):
    return np.random.default_rng(seed).integers(lo, hi + 1, (layer.tokens, 3 * layer.features)).astype(np.int8)


def golden(layer, x):
    return FORWARD["attention"](layer, x.reshape(1, -1)).reshape(-1).tolist()


def run(layer, x, *, lanes=DEFAULT_LANES, limits=LIMITS, **stalls):
    """The unit's outputs and cycles for one sequence x [T, 3E]; asserts them equal to the golden."""
    step = attention_step(layer, 1, TABLE_BASE, limits, lanes)
    outputs, cycles = run_step(AttentionUnit(limits, lanes), FIELDS, step, x.reshape(-1).tolist(),
                               table_base=TABLE_BASE, **stalls)
    assert outputs == golden(layer, x)
    return outputs, cycles


def scores_of(layer, x):
    """s [H, T, T] (docs/spec.md section 13.5 step 1), to check what a directed case reaches."""
    T, E, H, dh = layer.tokens, layer.features, layer.heads, layer.head_dim
    q, k = (x[:, i * E:(i + 1) * E].astype(np.int64).reshape(T, H, dh).transpose(1, 0, 2) for i in range(2))
    return np.einsum("hid,hjd->hij", q, k)


def exp_indices(layer, x):
    s = scores_of(layer, x)
    delta = s.max(axis=-1, keepdims=True) - s
    return np.minimum((delta * layer.score_mult + (1 << layer.score_shift >> 1)) >> layer.score_shift, 255)


# ---- the step -----------------------------------------------------------------------------------

def test_tiny_vit_step_figures():
    layer = attention_layer(17, 32, 4)
    step = attention_step(layer, 1, TABLE_BASE, LIMITS)
    assert step.params == {"last_token": 16, "last_head": 3, "head_words": 4, "last_group": 3, "tail_lanes": 2,
                           "last_word": 15, "last_slot": 16, "score_mult": 24000, "score_shift": 22, "out_mult": 20000, "out_shift": 20,
                           "table_base": TABLE_BASE}
    assert (step.in_elements, step.out_elements) == (17 * 96, 17 * 32)
    assert step.bound == 17 * 96 + 2 * 17 * 17 * 32 // 2 + 3 * 4 * 17 * 17 == 14348
    assert step.bound_rule == "T*3E + ceil(2*T*T*E/U) + 3*H*T*T"
    assert len(step.table_words) == 64                         # 256 entries of 16 bits, four a word
    assert step.table_words[5] == sum(int(STANDARD_TABLE[20 + n]) << 16 * n for n in range(4))
    pack_params(FIELDS, step.params)                           # every value within its field


def test_odd_head_dim_pads_each_head_to_whole_words():
    step = attention_step(attention_layer(3, 15, 3), 1, 0, LIMITS, 4)      # dh = 5 on U = 4: 4 + 1
    assert (step.params["head_words"], step.params["tail_lanes"], step.params["last_word"]) == (2, 1, 5)
    assert step.params["last_slot"] == 12                                  # P = max(T, 2U + 5, 7) = 13
    assert step.bound == 3 * 45 + -(-2 * 3 * 3 * 15 // 4) + 3 * 3 * 3 * 3


@pytest.mark.parametrize("change, what", [
    ({"tokens": 18}, "tokens"), ({"features": 36, "heads": 4}, "features"), ({"heads": 8}, "heads"),
    ({"score": (1 << 16, 22)}, "score_mult"), ({"out": ((1 << 31) - 1, 20)}, "out_mult")])
def test_step_refuses_a_layer_beyond_the_limits(change, what):
    shape = {"tokens": 17, "features": 32, "heads": 4}
    shape.update({k: v for k, v in change.items() if k in shape})
    layer = attention_layer(shape["tokens"], shape["features"], shape["heads"],
                            **{k: v for k, v in change.items() if k not in shape})
    with pytest.raises(LimitError, match=f"{what} = "):
        attention_step(layer, 1, 0, LIMITS)


def test_step_refuses_a_table_past_the_table_memory_and_more_than_one_sequence():
    layer = attention_layer(17, 32, 4)
    attention_step(layer, 1, LIMITS.table_words - 64, LIMITS)
    with pytest.raises(LimitError, match="table_base"):
        attention_step(layer, 1, LIMITS.table_words - 63, LIMITS)
    with pytest.raises(ConfigError, match="rows = 2"):
        attention_step(layer, 2, 0, LIMITS)


def test_unit_refuses_limits_beyond_its_count_fields():
    with pytest.raises(ValueError, match="count fields"):
        AttentionUnit(NetworkLimits(tokens=257))


def test_multipliers_are_the_lanes_and_one_shared():
    assert count_multipliers(flat_rtlil(AttentionUnit(LIMITS), "attention"), "attention") == 2 + 1


# ---- the tiny ViT's shape -------------------------------------------------------------------------

def test_tiny_vit_shape_on_its_timetable():
    """No stalls: the written timetable exactly, within 10 % of the bound (on U = 2 the
    reciprocal hides behind the next row's scores, hw/network/attention_unit_schedule.py)."""
    layer = attention_layer(17, 32, 4)
    x = random_sequence(layer, seed=1)
    outputs, cycles = run(layer, x)
    assert len(set(outputs)) > 50                              # probabilities spread: a real softmax
    assert cycles == [AttentionUnitTimetable(17, 4, 8, 2).cycles] == [14401]
    assert cycles[0] <= 1.1 * 14348


def test_tiny_vit_shape_with_gaps_and_backpressure_saturates_both_ways():
    layer = attention_layer(17, 32, 4, out=(23000, 17))
    x = random_sequence(layer, seed=2)
    outputs, _ = run(layer, x, seed=3, gap=0.2, backpressure=0.3)
    assert {-128, 127} <= set(outputs) and len(set(outputs)) > 20


# ---- small and odd shapes -----------------------------------------------------------------------

@pytest.mark.parametrize("tokens, features, heads, lanes", [
    (1, 1, 1, 4), (1, 6, 2, 4), (2, 3, 1, 4), (3, 3, 3, 4), (3, 9, 3, 2), (2, 8, 1, 4), (3, 12, 4, 3),
    (3, 5, 1, 1), (3, 10, 2, 4), (8, 2, 2, 4), (2, 2, 1, 2), (3, 16, 1, 4)])
def test_small_shapes_match_golden(tokens, features, heads, lanes):
    layer = attention_layer(tokens, features, heads, score=(3000, 14), out=(30000, 16))
    x = random_sequence(layer, seed=tokens * 100 + features)
    _, cycles = run(layer, x, lanes=lanes)
    assert cycles == [AttentionUnitTimetable(tokens, heads, features // heads, lanes).cycles]
    run(layer, random_sequence(layer, seed=features), lanes=lanes, seed=tokens, gap=0.4, backpressure=0.6, steps=2)


def test_largest_head_and_int8_extremes():
    """H = 1, dh = 32: the widest scores and deltas the limits allow, from q, k, v in {-128, 127}."""
    layer = attention_layer(17, 32, 1, score=(700, 22), out=(20000, 20))
    x = np.where(np.random.default_rng(4).random((17, 96)) < 0.5, -128, 127).astype(np.int8)
    x[0, :64] = -128                                            # q0 . k0 = 32 * 128 * 128
    x[1, 32:64] = 127                                           # q0 . k1 = -32 * 128 * 127
    assert scores_of(layer, x)[0, 0, :2].tolist() == [32 * 128 * 128, -32 * 128 * 127]
    outputs, _ = run(layer, x)
    assert {-128, 127} <= set(outputs)


def test_the_most_words_a_token_takes():
    """E = 30, H = 3: dh = 10 takes 3 words on U = 4, 9 a token's q, the sequence memory's depth
    (on U = 2 the tiny ViT's E = 32 takes the most, 16)."""
    layer = attention_layer(17, 30, 3, score=(9000, 21))
    run(layer, random_sequence(layer, seed=6), lanes=4)


def test_a_unit_built_for_other_limits():
    limits = NetworkLimits(tokens=5, model_features=12, heads=3)
    layer = attention_layer(5, 12, 3, score=(5000, 18), out=(30000, 17))
    run(layer, random_sequence(layer, seed=7), lanes=2, limits=limits, gap=0.2)
    with pytest.raises(LimitError):
        attention_step(attention_layer(6, 12, 3), 1, 0, limits, 2)


def test_a_key_value_memory_of_a_power_of_two_words():
    """tokens = 4: k and v take 4 * 2 * 2^2 words, one memory (not two, as for 17 tokens)."""
    limits = NetworkLimits(tokens=4, model_features=8, heads=2)
    layer = attention_layer(4, 8, 2, score=(6000, 17), out=(30000, 16))
    run(layer, random_sequence(layer, seed=13), lanes=2, limits=limits, backpressure=0.3, seed=2)


# ---- directed sequences ---------------------------------------------------------------------------

def test_equal_scores_and_the_largest_z():
    """k = 0: every score 0, every e = exp_table[0] = 2^15, Z = 17 * 2^15, the largest the limits
    allow, every p the same (docs/spec.md section 13.5)."""
    layer = attention_layer(17, 4, 1, score=(65535, 0), out=(65535, 15))
    x = random_sequence(layer, seed=8)
    x[:, 4:8] = 0
    assert (scores_of(layer, x) == 0).all()
    run(layer, x)


def test_deltas_past_the_table_take_its_last_entry():
    table = np.random.default_rng(9).integers(0, 1 << 15, 256).astype(np.int32)
    table[0], table[255] = 1 << 15, 12345
    layer = attention_layer(5, 8, 2, score=(65535, 0), out=(50000, 14), table=table)
    x = random_sequence(layer, seed=10)
    t = exp_indices(layer, x)
    assert (t == 255).sum() > 20 and set(np.unique(t)) == {0, 255}
    run(layer, x)


def test_every_table_entry_in_every_lane_of_its_word():
    """dh = 1 and score_mult / 2^score_shift = 1/64: t = round(delta / 64) over 0..255 on a table
    of distinct entries, so a wrong entry or lane shows in the probabilities."""
    table = np.random.default_rng(11).permutation(np.arange(1, 1 << 15))[:256].astype(np.int32)
    layer = attention_layer(17, 3, 3, score=(1, 6), out=(40000, 14), table=table)
    x = random_sequence(layer, seed=12)
    hits = set(np.unique(exp_indices(layer, x)).tolist())
    assert len(hits) > 220 and {t % 4 for t in hits} == {0, 1, 2, 3}
    run(layer, x)


def test_rounding_ties_of_both_rescalings():
    """score_mult 1, score_shift 1: t = rshift_round(delta, 1) ties at every odd delta; out_mult 1,
    out_shift 1: y = rshift_round(c, 1) ties at every odd c, up and down (halves round up)."""
    layer = attention_layer(3, 6, 2, score=(1, 1), out=(1, 1))
    ties = {"delta": 0, "c": 0}
    for seed in range(20, 24):
        x = random_sequence(layer, seed=seed, lo=-2, hi=2)
        x[:, 12:] = np.random.default_rng(seed).integers(-1, 2, (3, 6))         # v in -1..1: |c| <= 765
        s = scores_of(layer, x)
        ties["delta"] += int(((s.max(axis=-1, keepdims=True) - s) % 2 == 1).sum())
        p = softmax_probabilities(s, 1, 1, STANDARD_TABLE)
        v = x[:, 12:].astype(np.int64).reshape(3, 2, 3).transpose(1, 0, 2)
        c = np.einsum("hij,hjd->hid", p, v)
        ties["c"] += int(((c % 2 == 1) & (np.abs(c) < 256)).sum())
        run(layer, x)
    assert ties["delta"] > 10 and ties["c"] > 10


@pytest.mark.parametrize("tokens, first, equal", [(1, 1, False), (3, 1, False), (2, 1, True), (1, 2, False)])
def test_z_of_one_and_two(tokens, first, equal):
    """exp_table = [first, 0, ...]: Z = first times the keys at the maximum, so Z = 1 (recip = 2^32)
    and Z = 2 (recip = 2^31), the reciprocals the shared multiplier takes as 2^30."""
    table = np.zeros(256, dtype=np.int32)
    table[0] = first
    layer = attention_layer(tokens, 4, 1, score=(65535, 0), out=(1 << 15, 15), table=table)
    x = random_sequence(layer, seed=tokens + first)
    x[:, 4:8] = 0 if equal else np.arange(tokens * 4).reshape(tokens, 4) * 7 - 40
    x[:, :4] = 1 if equal else 3
    z = (scores_of(layer, x) == scores_of(layer, x).max(axis=-1, keepdims=True)).sum(axis=-1) * first
    assert set(np.unique(z)) <= {1, 2}
    run(layer, x)


@pytest.mark.parametrize("score, out", [((0, 0), (0, 0)), ((1, 62), (65535, 62)), ((65535, 0), (65535, 0)),
                                        ((0, 5), (1, 0))])
def test_zero_multipliers_and_extreme_shifts(score, out):
    layer = attention_layer(3, 6, 2, score=score, out=out)
    run(layer, random_sequence(layer, seed=score[1] + out[1]), gap=0.2, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(60))
def test_random_layers_match_golden(seed):
    rng = np.random.default_rng(1000 + seed)
    heads = int(rng.integers(1, 5))
    features = heads * int(rng.integers(1, 32 // heads + 1))
    tokens, lanes = int(rng.integers(1, 18)), int(rng.integers(1, 5))
    table = np.sort(rng.integers(0, (1 << 15) + 1, 256))[::-1].astype(np.int32)
    table[0] = max(1, table[0])
    layer = attention_layer(tokens, features, heads, score=(int(rng.integers(0, 1 << 16)), int(rng.integers(0, 30))),
                            out=(int(rng.integers(0, 1 << 16)), int(rng.integers(0, 30))), table=table)
    run(layer, random_sequence(layer, seed=seed), lanes=lanes, seed=seed, gap=float(rng.random() * 0.5),
        backpressure=float(rng.random() * 0.7), steps=2)
