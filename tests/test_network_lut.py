"""The network's lut unit (hw/network/lut_unit.py) against the golden lookup-accumulate
(docs/spec.md section 7): outputs from FORWARD["lut"], cycles from the unit's timetable."""
import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from nomac.hw.network.lut_unit import FIELDS, LutUnit, local_memory_words, lut_step
from nomac.hw.network.unit import LimitError, NetworkLimits, pack_params, params_layout, StandaloneUnit
from nomac.model.config import load_config
from nomac.model.golden import FORWARD
from nomac.model.lut_spec import LutLayer
from network_units import assert_multiplies_on_the_shared_multiplier, run_step

LIMITS = NetworkLimits()
CONFIGS = Path(__file__).resolve().parents[1] / "model" / "configs"
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def lut_layer(D, M, C, K, encoder="l2", out_shift=4, output="int8", seed=0, *, tables=None, bias=None,
              prototypes=None, table_bits=8):
    """A valid lut layer; arrays not given are random over their whole range (bias +-2^12)."""
    rng = np.random.default_rng(seed)
    tables = rng.integers(-128, 128, (C, K, M)) if tables is None else tables
    bias = rng.integers(-1 << 12, 1 << 12, M) if bias is None else bias
    prototypes = rng.integers(-128, 128, (C, K, D // C)) if prototypes is None else prototypes
    arrays = {"tables": np.asarray(tables, np.int8), "bias": np.asarray(bias, np.int32),
              "prototypes": np.asarray(prototypes, np.int8)}
    return LutLayer.from_json("case", {"name": "lut", "kind": "lut", "in_features": D, "out_features": M,
                                       "codebooks": C, "centroids": K, "encoder": encoder, "out_shift": out_shift,
                                       "output": output, "table_bits": table_bits}, arrays)


def golden_bytes(layer, x) -> list:
    """The step's output bytes: int8 outputs, or each accumulator as 4 bytes little endian."""
    y = FORWARD["lut"](layer, x)
    if layer.output == "acc":
        y = y.astype("<i4").view(np.uint8).astype(np.int8)
    return y.reshape(-1).tolist()


def rows_of(D, rows, seed):
    """Random int8 rows; the first one alternates the extremes -128 and 127."""
    x = np.random.default_rng(seed + 1).integers(-128, 128, (rows, D)).astype(np.int8)
    x[0, ::2], x[0, 1::2] = -128, 127
    return x


def run(layer, x, *, limits=LIMITS, table_base=40, seed=0, gap=0.0, backpressure=0.0, steps=1):
    step = lut_step(layer, x.shape[0], table_base, limits)
    outputs, cycles = run_step(LutUnit(limits), FIELDS, step, x.reshape(-1).tolist(), table_base=table_base,
                               seed=seed, gap=gap, backpressure=backpressure, steps=steps)
    assert outputs == golden_bytes(layer, x)
    return step, cycles


def timetable_cycles(step) -> int:
    """Cycles of a step whose lookups run back to back (the unit's timetable): the copy of
    2 * copy_words local words, 5 cycles of pipeline, T*C*ceil(M/8) lookups, and the
    bytes of the last group's outputs."""
    p = step.params
    groups = -(-p["out_features"] // 8)
    last_group = p["out_features"] - 8 * (groups - 1)
    out_bytes = 4 if p["acc_output"] else 1
    return 2 * p["copy_words"] + 5 + p["rows"] * p["codebooks"] * groups + out_bytes * last_group


@pytest.mark.parametrize("name, D, M, C, output", [
    ("qkv", 32, 96, 32, "int8"), ("proj", 32, 32, 32, "int8"), ("fc1", 32, 64, 32, "int8"),
    ("fc2", 64, 32, 64, "int8"), ("acc", 40, 20, 40, "acc")])
def test_tiny_vit_shapes_run_at_their_timetable(name, D, M, C, output):
    layer = lut_layer(D, M, C, 8, "l2", out_shift=5, output=output, seed=D + M)
    step, cycles = run(layer, rows_of(D, LIMITS.tokens, seed=C))
    assert step.bound == LIMITS.tokens * C * -(-M // 8)
    assert step.bound_rule == "T*max(C*ceil(M/8), C*V*ceil(K/4), D, {})".format("4*M" if output == "acc" else "M")
    assert cycles == [timetable_cycles(step)]
    assert cycles[0] <= 1.1 * step.bound, (name, cycles, step.bound)


@pytest.mark.parametrize("config", ["lut_l2_small", "lut_l1_small"])
def test_bundled_configs_with_stalls(config):
    layer = load_config(CONFIGS / f"{config}.json").layers[0]          # V = 4, K = 16: squared for l2
    x = rows_of(layer.in_features, 3, seed=3)
    step, _ = run(layer, x, seed=5, gap=0.4, backpressure=0.5, steps=2)
    assert step.params["squared"] == (layer.encoder == "l2")


def test_tree_encoder_is_refused():
    layer = load_config(CONFIGS / "lut_tree_small.json").layers[0]
    with pytest.raises(LimitError, match="encoder = 'tree'"):
        lut_step(layer, 1, 0, LIMITS)


@pytest.mark.parametrize("D, C, K, encoder", [(16, 16, 16, "l2"), (16, 8, 8, "l2"), (12, 4, 4, "l1"),
                                              (8, 8, 2, "l1"), (9, 3, 8, "l2")])
def test_ties_go_to_the_smallest_prototype(D, C, K, encoder):
    """Prototypes from a few even values, in every other codebook in equal pairs, and odd
    inputs: many inputs are equally far from two or more prototypes. Each k has its own
    table row, so a wrong code shows in the output."""
    V, M = D // C, 8
    rng = np.random.default_rng(K + D)
    prototypes = rng.choice([-128, -4, -2, 0, 2, 126], (C, K, V))
    prototypes[::2, 1::2] = prototypes[::2, 0::2]
    rows_of_k = (np.arange(K) * (256 // K) - 128)[None, :, None]
    tables = np.broadcast_to(rows_of_k, (C, K, M)) + rng.integers(0, 2, (C, K, M))
    layer = lut_layer(D, M, C, K, encoder, out_shift=3, tables=tables, prototypes=prototypes)
    x = rng.choice([-127, -3, -1, 1, 3, 127], (6, D)).astype(np.int8)
    diff = x.reshape(6, C, 1, V).astype(np.int64) - prototypes[None].astype(np.int64)
    distance = (diff * diff if encoder == "l2" else np.abs(diff)).sum(-1)
    assert ((distance == distance.min(-1, keepdims=True)).sum(-1) > 1).mean() >= 0.3     # ties are common
    run(layer, x)


def test_extreme_differences_and_saturation():
    """|x - p| = 255 in every element of a 96-element subvector (the widest sum of
    squares), and biases that drive outputs far past both ends of int8."""
    D, M, K = 96, 12, 16
    prototypes = np.where(np.arange(K)[:, None] % 2, 127, -128) * np.ones((1, K, D), dtype=np.int64)
    prototypes[0, 5, :48] = 0                                          # one prototype nearer the middle
    bias = np.array([INT32_MAX, INT32_MIN, 1 << 20, -(1 << 20), 0, 127 * 8, -128 * 8, 5, -5, 1 << 15, -1, 1])
    layer = lut_layer(D, M, 1, K, "l2", out_shift=3, bias=bias, prototypes=prototypes)
    x = np.stack([np.full(D, -128), np.full(D, 127), np.r_[np.full(48, 127), np.full(48, -128)]]).astype(np.int8)
    run(layer, x)
    step = lut_step(layer, 3, 0, LIMITS)
    assert step.params["squared"] == 1 and step.bound == 3 * D * K   # one square a beat


def test_narrow_table_entries_take_a_byte_each():
    """table_bits 4 (docs/spec.md section 16.5.7): every entry is its int8 byte, ends -8 and 7 included."""
    D, M, C, K = 16, 12, 8, 8
    tables = np.random.default_rng(3).integers(-8, 8, (C, K, M))
    tables[0, :, :], tables[C - 1, :, :] = 7, -8
    layer = lut_layer(D, M, C, K, "l1", out_shift=1, tables=tables, table_bits=4)
    run(layer, rows_of(D, 3, seed=4))


@pytest.mark.parametrize("out_shift", [0, 1, 7, 31, 32, 33, 62])
def test_rounding_ties_and_every_shift(out_shift):
    """Zero tables, so acc is the bias: halves (ties round up), both sides of the
    saturation thresholds, and the int32 extremes."""
    half = 1 << max(out_shift - 1, 0)
    values = [INT32_MAX, INT32_MIN, 0, 1, -1, half, -half, 3 * half, -3 * half]
    if out_shift <= 23:
        top, bottom = 127 << out_shift, -128 << out_shift
        values += [top + half - 1, top + half, bottom - half, bottom - half - 1, 5 * half, -5 * half]
    bias = [max(INT32_MIN, min(INT32_MAX, v)) for v in values]
    M = len(bias)
    layer = lut_layer(4, M, 2, 4, "l1", out_shift=out_shift, tables=np.zeros((2, 4, M)), bias=bias)
    run(layer, rows_of(4, 2, seed=out_shift))


def test_acc_output_reaches_both_int32_ends():
    C, K, M = 8, 4, 3
    tables = np.zeros((C, K, M), dtype=np.int64)
    tables[:, :, 0], tables[:, :, 1] = 127, -128
    tables[:, :, 2] = np.random.default_rng(0).integers(-128, 128, (C, K))
    bias = [INT32_MAX - 127 * C, INT32_MIN + 128 * C, -7]
    layer = lut_layer(16, M, C, K, "l2", output="acc", tables=tables, bias=bias)
    step, _ = run(layer, rows_of(16, 3, seed=1), backpressure=0.3)
    assert step.out_elements == 3 * M * 4 and step.bound_rule.endswith("4*M)")
    assert step.params["out_shift"] == 0                               # the shift is 8j alone
    over = lut_layer(16, M, C, K, "l2", output="acc", tables=tables, bias=[INT32_MAX - 127 * C + 1, 0, 0])
    with pytest.raises(LimitError, match="accumulator bits"):
        lut_step(over, 1, 0, LIMITS)


@pytest.mark.parametrize("D, M, C, K, encoder, local_full", [
    (96, 96, 48, 16, "l2", True),       # squared
    (96, 96, 32, 16, "l1", True),       # 4 lanes
    (64, 96, 64, 16, "l2", False)])     # limits.codebooks, 12 groups of outputs
def test_largest_shapes(D, M, C, K, encoder, local_full):
    layer = lut_layer(D, M, C, K, encoder, out_shift=6, seed=C)
    step, _ = run(layer, rows_of(D, 2, seed=D))
    assert (2 * step.params["copy_words"] == local_memory_words(LIMITS)) == local_full


@pytest.mark.parametrize("D, M, C, K, encoder, output", [(1, 1, 1, 2, "l2", "int8"), (1, 1, 1, 2, "l1", "acc"),
                                                         (2, 9, 1, 2, "l2", "int8"), (3, 17, 3, 4, "l2", "acc")])
def test_shapes_of_one_and_partial_groups(D, M, C, K, encoder, output):
    layer = lut_layer(D, M, C, K, encoder, out_shift=0, output=output, seed=M)
    run(layer, rows_of(D, 1 if M == 1 else 3, seed=1), gap=0.3, backpressure=0.3, seed=2, steps=2)


def test_gaps_and_backpressure():
    layer = lut_layer(32, 40, 16, 16, "l2", out_shift=5, seed=9)         # V = 2: squared
    run(layer, rows_of(32, 3, seed=9), seed=11, gap=0.5, backpressure=0.7, steps=2)


def test_parameters_take_8_bit_counts_and_16_bit_words():
    assert params_layout(FIELDS).size == 6 * 8 + 1 + 6 + 1 + 4 * 16


def test_unit_built_for_small_limits():
    limits = NetworkLimits(tokens=3, features=12, codebooks=6, centroids=4, table_words=512)
    layer = lut_layer(12, 12, 6, 4, "l2", out_shift=2, seed=4)
    run(layer, rows_of(12, 3, seed=4), limits=limits, table_base=3, steps=2)
    with pytest.raises(LimitError, match="centroids"):
        lut_step(lut_layer(12, 12, 6, 8, "l2"), 1, 0, limits)


def run_back_to_back(unit, steps):
    """Steps [(step, inputs, table_base), ...] on one unit, each started on the cycle after
    the previous one's done, inputs offered and outputs taken without stalls; the outputs
    of each step."""
    unit = StandaloneUnit(unit)
    words = {}
    for step, _, base in steps:
        words.update({base + n: word for n, word in enumerate(step.table_words)})
    results = []

    async def table_memory(ctx):
        async for _, _, en, addr in ctx.tick().sample(unit.table.en, unit.table.addr):
            if en:
                ctx.set(unit.table.data, words.get(addr, 0xA5A5_5A5A_A5A5_5A5A))

    async def control(ctx):
        ctx.set(unit.o.ready, 1)
        for step, inputs, _ in steps:
            ctx.set(unit.params.as_value(), pack_params(FIELDS, step.params))
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            pending, outputs = list(inputs), []
            for _ in range(100_000):
                ctx.set(unit.i.valid, bool(pending))
                ctx.set(unit.i.payload, pending[0] if pending else 0)
                _, _, ready, valid, payload, done = await ctx.tick().sample(unit.i.ready, unit.o.valid,
                                                                            unit.o.payload, unit.done)
                if pending and ready:
                    pending.pop(0)
                if valid:
                    outputs.append(int(payload))
                if done:
                    break
            else:
                raise AssertionError("no done within 100000 cycles")
            assert not pending
            results.append(outputs)

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_process(table_memory)
    sim.add_testbench(control)
    sim.run()
    return results


def test_different_layers_back_to_back_on_one_unit():
    layers = [lut_layer(8, 12, 4, 16, "l2", output="acc", seed=1),   # squared, acc
              lut_layer(6, 20, 6, 8, "l2", out_shift=2, seed=2),     # 4 lanes
              lut_layer(9, 5, 3, 2, "l1", out_shift=9, seed=3)]      # K = 2: two lanes
    xs = [rows_of(layer.in_features, rows, seed=rows) for layer, rows in zip(layers, (3, 2, 4))]
    bases, steps = 7, []
    for layer, x in zip(layers, xs):
        step = lut_step(layer, x.shape[0], bases, LIMITS)
        steps.append((step, x.reshape(-1).tolist(), bases))
        bases += len(step.table_words) + 5
    outputs = run_back_to_back(LutUnit(LIMITS), steps)
    assert outputs == [golden_bytes(layer, x) for layer, x in zip(layers, xs)]


@pytest.mark.parametrize("what, args", [
    ("rows", dict(rows=18)), ("in_features", dict(D=128, C=64)), ("out_features", dict(M=97)),
    ("codebooks", dict(D=96, C=96)), ("centroids", dict(K=32)), ("table memory words", dict(table_base=16380))])
def test_limits_are_refused(what, args):
    layer = lut_layer(args.get("D", 8), args.get("M", 8), args.get("C", 4), args.get("K", 4), "l2")
    with pytest.raises(LimitError, match=what):
        lut_step(layer, args.get("rows", 1), args.get("table_base", 0), LIMITS)


def test_rows_below_one_are_a_compiler_error():
    with pytest.raises(ValueError, match="rows = 0"):
        lut_step(lut_layer(4, 4, 2, 2), 0, 0, LIMITS)


def test_its_one_multiply_is_on_the_networks_shared_multiplier():
    assert_multiplies_on_the_shared_multiplier(LutUnit(LIMITS))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_random_layers(seed):
    rng = random.Random(seed)
    K = rng.choice([2, 4, 8, 16])
    V = rng.choice([1, 1, 2, 3, 4])
    C = rng.randrange(1, min(64, 96 // V) + 1)
    M = rng.randrange(1, 97)
    layer = lut_layer(C * V, M, C, K, rng.choice(["l2", "l1"]), out_shift=rng.randrange(0, 20),
                      output=rng.choice(["int8", "int8", "acc"]), seed=seed)
    run(layer, rows_of(C * V, rng.randrange(1, LIMITS.tokens + 1), seed=seed), seed=seed,
        gap=rng.choice([0, 0.3]), backpressure=rng.choice([0, 0.5]), steps=2)
