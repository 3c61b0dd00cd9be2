"""The network's add unit (hw/network/add_unit.py) against the golden residual add."""
import numpy as np
import pytest

from nomac.hw.network.add_unit import FIELDS, AddUnit, add_step
from nomac.hw.network.unit import LimitError, NetworkLimits, params_layout
from nomac.model.golden import FORWARD
from nomac.model.operator_layers import AddLayer
from network_units import assert_multiplies_on_the_shared_multiplier, run_step, run_steps

LIMITS = NetworkLimits()


def add_layer(features: int, mult_a: int, mult_b: int, shift: int):
    return AddLayer.from_json("case", {"name": "residual", "kind": "add", "features": features,
                                       "inputs": ["input", "input"], "mult_a": mult_a, "mult_b": mult_b,
                                       "shift": shift}, {})


def operand_rows(rows: int, features: int, seed: int) -> np.ndarray:
    """rows of a then b, int8, with the extremes at the start of both halves of row 0."""
    x = np.random.default_rng(seed).integers(-128, 128, (rows, 2 * features)).astype(np.int8)
    x[0, 0], x[0, features] = -128, -128
    if features > 1:
        x[0, 1], x[0, features + 1] = 127, 127
    return x


def run_add(layer, rows: int, x, *, limits=LIMITS, unit=None, **stream):
    step = add_step(layer, rows, 0, limits)
    outputs, cycles = run_step(unit or AddUnit(limits), FIELDS, step, x.reshape(-1).tolist(), **stream)
    return step, outputs, cycles


@pytest.mark.parametrize("features, rows, mult_a, mult_b, shift", [
    (32, 17, 28087, 23406, 15),          # the tiny ViT's residuals: the largest shapes of the limits
    (32, 17, 6000, 32000, 14),
    (1, 1, 65535, 65535, 0),             # shapes of 1; the largest multipliers, saturating both ways
    (5, 3, 0, 0, 0),                     # zero multipliers: all 0
    (7, 2, 65535, 1, 62),                # the largest shift: all 0
    (3, 4, 1, 65535, 17),
])
def test_add_unit_matches_golden(features, rows, mult_a, mult_b, shift):
    layer = add_layer(features, mult_a, mult_b, shift)
    x = operand_rows(rows, features, seed=features * rows)
    step, outputs, cycles = run_add(layer, rows, x, steps=2)
    assert outputs == FORWARD["add"](layer, x).reshape(-1).tolist()
    assert cycles == [2 * rows * features + 2] * 2          # one input a cycle, then the two stages


def test_add_unit_rounds_ties_up_and_saturates_both_ways():
    """mult_a = 2^(s-1), mult_b = 2^s: acc / 2^s = a/2 + b, a tie for every odd a."""
    layer = add_layer(32, 1 << 14, 1 << 15, 15)
    x = operand_rows(17, 32, seed=3)
    expected = FORWARD["add"](layer, x)
    assert {-128, 127} <= set(expected.reshape(-1).tolist())
    _, outputs, _ = run_add(layer, 17, x)
    assert outputs == expected.reshape(-1).tolist()


@pytest.mark.parametrize("features, rows, gap, backpressure, seed", [
    (32, 17, 0.3, 0.3, 1), (1, 5, 0.5, 0.7, 2), (4, 3, 0.8, 0.2, 3)])
def test_add_unit_under_gaps_and_backpressure(features, rows, gap, backpressure, seed):
    layer = add_layer(features, 21000 + seed, 9000 * seed, 14)
    x = operand_rows(rows, features, seed=seed)
    _, outputs, _ = run_add(layer, rows, x, seed=seed, gap=gap, backpressure=backpressure, steps=2)
    assert outputs == FORWARD["add"](layer, x).reshape(-1).tolist()


def test_two_layers_back_to_back_on_one_unit():
    """6 rows of E = 4, then 3 rows of E = 8 (the same element counts) with other multipliers."""
    first, second = add_layer(4, 30000, 7000, 15), add_layer(8, 65535, 40000, 16)
    x = operand_rows(6, 4, seed=5)
    runs = [(add_step(first, 6, 0, LIMITS), x.reshape(-1).tolist(), 0),
            (add_step(second, 3, 0, LIMITS), x.reshape(-1).tolist(), 0)]
    outputs, cycles = run_steps(AddUnit(LIMITS), FIELDS, runs)
    assert outputs == [FORWARD["add"](first, x).reshape(-1).tolist(),
                       FORWARD["add"](second, x.reshape(3, 16)).reshape(-1).tolist()]
    assert cycles == [2 * 24 + 2] * 2


def test_add_unit_built_for_small_limits():
    limits = NetworkLimits(tokens=3, model_features=1)
    layer = add_layer(1, 40000, 50000, 16)
    x = operand_rows(3, 1, seed=7)
    _, outputs, _ = run_add(layer, 3, x, limits=limits, backpressure=0.5)
    assert outputs == FORWARD["add"](layer, x).reshape(-1).tolist()


def test_add_step_params_counts_and_bound():
    step = add_step(add_layer(32, 28087, 23406, 15), 17, 0, LIMITS)
    assert step.params == {"rows": 17, "features": 32, "mult_a": 28087, "mult_b": 23406, "shift": 15, "embed": 0,
                           "offset_base": 0}
    assert (step.table_words, step.in_elements, step.out_elements, step.bound, step.bound_rule) == \
        ([], 1088, 544, 1088, "2*T*E")
    assert params_layout(FIELDS).size == 87


@pytest.mark.parametrize("features, rows, mult_a, mult_b, what", [
    (32, 18, 1, 1, "rows"), (33, 1, 1, 1, "features"), (8, 1, 1 << 16, 1, "mult_a"), (8, 1, 1, 1 << 16, "mult_b")])
def test_add_step_refuses_what_the_unit_cannot_run(features, rows, mult_a, mult_b, what):
    with pytest.raises(LimitError, match=f"layer 'residual'.*{what}"):
        add_step(add_layer(features, mult_a, mult_b, 15), rows, 0, LIMITS)


def test_its_one_multiply_is_on_the_networks_shared_multiplier():
    assert_multiplies_on_the_shared_multiplier(AddUnit(LIMITS))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_add_unit_random_layers(seed):
    rng = np.random.default_rng(seed)
    features, rows = int(rng.integers(1, 33)), int(rng.integers(1, 18))
    layer = add_layer(features, int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16)), int(rng.integers(0, 24)))
    x = operand_rows(rows, features, seed=seed)
    _, outputs, _ = run_add(layer, rows, x, seed=seed, gap=0.3, backpressure=0.3, steps=2)
    assert outputs == FORWARD["add"](layer, x).reshape(-1).tolist()
