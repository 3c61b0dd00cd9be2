"""The network's embed steps (hw/network/embed_unit.py) on the add unit (hw/network/add_unit.py)
against the golden class token and position embedding."""

import numpy as np
import pytest

from nomac.hw.network.add_unit import FIELDS, AddUnit, add_step
from nomac.hw.network.embed_unit import embed_step
from nomac.hw.network.unit import LimitError, NetworkLimits, pack_words
from nomac.model.golden import FORWARD
from nomac.model.operator_layers import AddLayer, EmbedLayer
from network_units import run_step, run_steps

LIMITS = NetworkLimits()
INT32_LO, INT32_HI = -(1 << 31), (1 << 31) - 1


def embed_layer(tokens: int, features: int, mult: int, shift: int, offset):
    return EmbedLayer.from_json("case", {"name": "pos", "kind": "embed", "tokens": tokens, "features": features,
                                         "mult": mult, "shift": shift}, {"offset": np.asarray(offset, np.int32)})


def scaled_offsets(tokens: int, features: int, shift: int, seed: int):
    """Offsets of about the size a trained layer has: up to 2^(shift+7), both signs."""
    bound = 1 << (shift + 7)
    return np.random.default_rng(seed).integers(-bound, bound, (tokens, features))


def patch_rows(tokens: int, features: int, seed: int):
    """One step's (T-1)*E patch embeddings, int8, starting with the extremes."""
    x = np.random.default_rng(seed).integers(-128, 128, (1, (tokens - 1) * features)).astype(np.int8)
    x[0, :2] = [-128, 127][:x.shape[1]]
    return x


def run_embed(layer, x, *, limits=LIMITS, unit=None, table_base=40, **stream):
    step = embed_step(layer, layer.tokens, table_base, limits)
    outputs, cycles = run_step(unit or AddUnit(limits), FIELDS, step, x.reshape(-1).tolist(),
                               table_base=table_base, **stream)
    return step, outputs, cycles


@pytest.mark.parametrize("tokens, features, mult, shift", [
    (17, 32, 22000, 13),                 # the tiny ViT's embed: the largest shapes of the limits
    (17, 32, 24576, 15),
    (2, 1, 65535, 0),                    # the smallest shapes; the largest multiplier, saturating
    (3, 5, 0, 4),                        # mult 0: the offsets alone
    (4, 3, 1, 1),                        # ties: x' * 1 + offset halves
])
def test_embed_unit_matches_golden(tokens, features, mult, shift):
    layer = embed_layer(tokens, features, mult, shift, scaled_offsets(tokens, features, shift, seed=tokens))
    x = patch_rows(tokens, features, seed=features)
    step, outputs, cycles = run_embed(layer, x, steps=2)
    assert outputs == FORWARD["embed"](layer, x).reshape(-1).tolist()
    assert cycles == [tokens * features + 2] * 2        # one output a cycle, then the two stages


def test_embed_unit_int32_extremes_saturate_and_large_shifts_give_zero():
    """|acc| < 2^32: shift 0 saturates both ways, 32 leaves -1..1, 33 and up give 0."""
    offset = np.random.default_rng(1).choice([INT32_LO, INT32_HI, -1, 0], (17, 32))
    for shift in (0, 20, 31, 32, 33, 62):
        layer = embed_layer(17, 32, 65535, shift, offset)
        x = patch_rows(17, 32, seed=shift)
        expected = FORWARD["embed"](layer, x).reshape(-1).tolist()
        assert (shift >= 33) == (set(expected) == {0}) and (shift > 0 or {-128, 127} <= set(expected))
        _, outputs, _ = run_embed(layer, x)
        assert outputs == expected, shift


def test_embed_unit_rounds_ties_up():
    """Offsets put every acc at k * 2^s + 2^(s-1), k across the int8 range and beyond."""
    tokens, features, mult, shift = 17, 32, 22000, 13
    x = patch_rows(tokens, features, seed=2)
    padded = np.concatenate([np.zeros(features, np.int64), x.reshape(-1).astype(np.int64)]).reshape(tokens, features)
    k = np.random.default_rng(3).integers(-140, 140, (tokens, features))
    layer = embed_layer(tokens, features, mult, shift, (k << shift) + (1 << (shift - 1)) - padded * mult)
    expected = FORWARD["embed"](layer, x).reshape(-1)
    assert expected.tolist() == np.clip(k + 1, -128, 127).reshape(-1).tolist()
    _, outputs, _ = run_embed(layer, x)
    assert outputs == expected.tolist()


@pytest.mark.parametrize("tokens, features, gap, backpressure, seed", [
    (17, 32, 0.3, 0.3, 1), (2, 1, 0.5, 0.7, 2), (5, 3, 0.8, 0.2, 3)])
def test_embed_unit_under_gaps_and_backpressure(tokens, features, gap, backpressure, seed):
    layer = embed_layer(tokens, features, 20000 + seed, 13, scaled_offsets(tokens, features, 13, seed))
    x = patch_rows(tokens, features, seed=seed)
    _, outputs, _ = run_embed(layer, x, seed=seed, gap=gap, backpressure=backpressure, steps=2)
    assert outputs == FORWARD["embed"](layer, x).reshape(-1).tolist()


def test_two_layers_back_to_back_on_one_unit():
    """The same shape, other multipliers, shifts and offsets (at another table base)."""
    first = embed_layer(9, 6, 22000, 13, scaled_offsets(9, 6, 13, seed=4))
    second = embed_layer(9, 6, 51000, 16, scaled_offsets(9, 6, 16, seed=5))
    x = patch_rows(9, 6, seed=6)
    first_step = embed_step(first, 9, 40, LIMITS)
    second_step = embed_step(second, 9, 40 + len(first_step.table_words), LIMITS)
    runs = [(first_step, x.reshape(-1).tolist(), 40), (second_step, x.reshape(-1).tolist(), 40 + len(first_step.table_words))]
    outputs, cycles = run_steps(AddUnit(LIMITS), FIELDS, runs)
    assert outputs == [FORWARD["embed"](first, x).reshape(-1).tolist(), FORWARD["embed"](second, x).reshape(-1).tolist()]
    assert cycles == [9 * 6 + 2] * 2


def test_add_and_embed_steps_back_to_back_on_the_one_unit():
    """add, embed, add: each step's `embed` switches the second term and the input order."""
    residual = AddLayer.from_json("case", {"name": "residual", "kind": "add", "features": 6, "inputs": ["input", "input"],
                                           "mult_a": 30000, "mult_b": 7000, "shift": 15}, {})
    pos = embed_layer(9, 6, 51000, 16, scaled_offsets(9, 6, 16, seed=8))
    x = patch_rows(9, 6, seed=9)
    operands = np.random.default_rng(10).integers(-128, 128, (4, 12)).astype(np.int8)
    add, embed = (add_step(residual, 4, 0, LIMITS), operands.reshape(-1).tolist(), 0), \
        (embed_step(pos, 9, 40, LIMITS), x.reshape(-1).tolist(), 40)
    outputs, cycles = run_steps(AddUnit(LIMITS), FIELDS, [add, embed, add], backpressure=0.2, seed=11)
    expected_add = FORWARD["add"](residual, operands).reshape(-1).tolist()
    assert outputs == [expected_add, FORWARD["embed"](pos, x).reshape(-1).tolist(), expected_add]


def test_embed_unit_built_for_small_limits():
    limits = NetworkLimits(tokens=2, model_features=1, table_words=2)
    layer = embed_layer(2, 1, 30000, 12, [[INT32_HI], [-5000]])
    x = np.array([[-77]], np.int8)
    _, outputs, _ = run_embed(layer, x, limits=limits, table_base=1, backpressure=0.5)
    assert outputs == FORWARD["embed"](layer, x).reshape(-1).tolist()


def test_embed_step_params_packing_counts_and_bound():
    offset = scaled_offsets(17, 32, 13, seed=7)
    step = embed_step(embed_layer(17, 32, 22000, 13, offset), 17, 100, LIMITS)
    assert step.params == {"rows": 17, "features": 32, "mult_a": 22000, "mult_b": 0, "shift": 13, "embed": 1,
                           "offset_base": 100}
    flat = offset.reshape(-1)
    assert step.table_words == pack_words(flat, 32) and len(step.table_words) == 272
    assert [step.table_words[n // 2] >> (32 * (n % 2)) & 0xFFFF_FFFF for n in (0, 1, 543)] == \
        [int(v) & 0xFFFF_FFFF for v in flat[[0, 1, 543]]]
    assert (step.in_elements, step.out_elements, step.bound, step.bound_rule) == (512, 544, 544, "T*E")


@pytest.mark.parametrize("tokens, features, mult, table_base, what", [
    (18, 32, 1, 0, "tokens"), (17, 33, 1, 0, "features"), (17, 32, 1 << 16, 0, "mult"),
    (17, 32, 1, 16384 - 271, "offset table end")])
def test_embed_step_refuses_what_the_unit_cannot_run(tokens, features, mult, table_base, what):
    layer = embed_layer(tokens, features, mult, 13, np.zeros((tokens, features)))
    with pytest.raises(LimitError, match=f"layer 'pos'.*{what}"):
        embed_step(layer, tokens, table_base, LIMITS)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_embed_unit_random_layers(seed):
    rng = np.random.default_rng(seed)
    tokens, features, shift = int(rng.integers(2, 18)), int(rng.integers(1, 33)), int(rng.integers(0, 40))
    offset = rng.integers(INT32_LO, INT32_HI, (tokens, features), endpoint=True)
    layer = embed_layer(tokens, features, int(rng.integers(0, 1 << 16)), shift, offset)
    x = patch_rows(tokens, features, seed=seed)
    _, outputs, _ = run_embed(layer, x, seed=seed, gap=0.3, backpressure=0.3, steps=2)
    assert outputs == FORWARD["embed"](layer, x).reshape(-1).tolist()
