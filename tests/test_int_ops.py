"""Integer ViT operators (model/int_ops.py) against their written definitions
(docs/spec.md section 13), re-implemented here one scalar at a
time with Python integers; edge cases first (variance 0, all-equal scores, large
negative scores, -128/127), then seeded random rows.
"""
import math

import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.model import int_ops
from nomac.model.config import load_config, make_config, save_config
from nomac.model.golden import run_golden
from nomac.model.operator_layers import AttentionLayer, LayerNormLayer
from nomac.model.vit.export import common_dyadic, gelu_table


def rshift_round(a: int, s: int) -> int:
    return a if s == 0 else (a + (1 << (s - 1))) >> s          # Python >> is floor division


def sat8(a: int) -> int:
    return max(-128, min(127, a))


def layernorm_ref(row, weight, bias, G, out_shift):
    E = len(row)
    S = sum(int(v) for v in row)
    d = [E * int(v) - S for v in row]
    Q = sum(v * v for v in d)
    r = math.isqrt((Q << (2 * G)) // E)
    inv = (1 << 32) // r if r > 0 else 0
    n = [rshift_round(v * inv, 32 - 2 * G) for v in d]
    return [sat8(rshift_round(n[e] * int(weight[e]) + int(bias[e]), out_shift)) for e in range(E)]


def softmax_ref(scores, mult, shift, table):
    top = max(int(s) for s in scores)
    e = [int(table[min(rshift_round((top - int(s)) * mult, shift), 255)]) for s in scores]
    recip = (1 << 32) // sum(e)
    return [min(rshift_round(v * recip, 24), 255) for v in e]


def attention_ref(qkv, heads, score_mult, score_shift, table, out_mult, out_shift):
    T, three_e = qkv.shape
    E = three_e // 3
    dh = E // heads
    out = np.zeros((T, E), dtype=np.int64)
    for h in range(heads):
        cols = range(h * dh, (h + 1) * dh)
        for i in range(T):
            scores = [sum(int(qkv[i, c]) * int(qkv[j, E + c]) for c in cols) for j in range(T)]
            p = softmax_ref(scores, score_mult, score_shift, table)
            for c in cols:
                total = sum(p[j] * int(qkv[j, 2 * E + c]) for j in range(T))
                out[i, c] = sat8(rshift_round(total * out_mult, out_shift))
    return out


EXP_TABLE = np.floor(32768 * np.exp(-np.arange(256) / 24) + 0.5).astype(np.int32)


# ---- isqrt -------------------------------------------------------------------------------

def test_isqrt_is_the_floor_square_root_at_every_boundary():
    values = [0, 1, 2, 3, 4, 8, 9, 10, 15, 16, 17, (1 << 31) - 1, (1 << 52) + 1, (1 << 61) - 1]
    for r in (46340, 3037000499 // 2, 94906265, 2 ** 26 + 1):
        values += [r * r - 1, r * r, r * r + 1]
    got = int_ops.isqrt(np.array(values, dtype=np.int64))
    assert got.tolist() == [math.isqrt(v) for v in values]


# ---- layernorm -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-128, -1, 0, 5, 127])
def test_layernorm_of_a_constant_row_is_the_bias(value):
    """Variance 0: every deviation is 0, r = 0, inv = 0, so y = sat8(rshift_round(bias, out_shift))."""
    E = 8
    weight = np.full(E, 300, dtype=np.int16)
    bias = np.array([0, 1, 2, 3, -2, -3, 1000, -100000], dtype=np.int32)
    y = int_ops.layernorm(np.full((1, E), value, dtype=np.int8), weight, bias, 7, 2)
    assert y.tolist() == [[0, 0, 1, 1, 0, -1, 127, -128]]


def test_layernorm_extremes_match_the_definition():
    E = 32
    rows = np.array([[-128] * 16 + [127] * 16,                 # largest spread
                     [127] + [-128] * 31,                      # one outlier
                     [-128] + [-127] * 31,                     # smallest nonzero variance
                     list(range(-16, 16))], dtype=np.int8)
    rng = np.random.default_rng(1)
    weight = rng.integers(-32768, 32768, E).astype(np.int16)
    bias = rng.integers(-2 ** 20, 2 ** 20, E).astype(np.int32)
    for G, shift in ((7, 14), (1, 0), (8, 20)):
        got = int_ops.layernorm(rows, weight, bias, G, shift)
        assert got.tolist() == [layernorm_ref(r, weight, bias, G, shift) for r in rows]


def test_layernorm_random_rows_match_the_definition_and_normalize():
    rng = np.random.default_rng(2)
    E = 32
    x = rng.integers(-128, 128, (200, E)).astype(np.int8)
    weight = np.full(E, 1 << 7, dtype=np.int16)     # gamma = 1 in units of 2^-7 -> y = n >> out_shift
    bias = np.zeros(E, dtype=np.int32)
    got = int_ops.layernorm(x, weight, bias, 7, 7 + 7 - 4)   # y ~ 16 * normalized value
    assert got.tolist() == [layernorm_ref(r, weight, bias, 7, 10) for r in x]
    xf = x.astype(np.float64)
    expected = 16 * (xf - xf.mean(1, keepdims=True)) / xf.std(1, keepdims=True)
    assert np.abs(got - np.clip(expected, -128, 127)).max() <= 1.0


# ---- softmax and attention -----------------------------------------------------------------

def test_softmax_of_equal_scores_is_uniform():
    for T in (1, 2, 3, 17):
        p = int_ops.softmax_probabilities(np.full((1, T), -5000), 1000, 10, EXP_TABLE)
        expected = min(rshift_round(32768 * ((1 << 32) // (32768 * T)), 24), 255)
        assert p.tolist() == [[expected] * T]
    assert expected == 15                                   # 256 / 17 = 15.06


def test_softmax_large_negative_scores_use_the_last_table_entry():
    """A score far below the maximum lands on t = 255 (clamped), never outside the table."""
    scores = np.array([[0, -2 ** 26, -(2 ** 26) - 7, 3]])   # |score| <= dh * 2^14: 2^26 is dh = 4096
    p = int_ops.softmax_probabilities(scores, (1 << 31) - 1, 0, EXP_TABLE)
    assert p.tolist() == [softmax_ref(scores[0], (1 << 31) - 1, 0, EXP_TABLE)]
    assert p[0, 3] == 255 and p[0, 1] == p[0, 2] == 0       # 1.0 clamps to 255 / 256


def test_softmax_random_rows_match_the_definition():
    rng = np.random.default_rng(3)
    scores = rng.integers(-40000, 40000, (50, 17))
    p = int_ops.softmax_probabilities(scores, 12345, 20, EXP_TABLE)
    assert p.tolist() == [softmax_ref(s, 12345, 20, EXP_TABLE) for s in scores]


def test_attention_matches_the_definition_on_extremes_and_random():
    rng = np.random.default_rng(4)
    T, E, H = 5, 8, 2
    extremes = np.stack([np.full((T, 3 * E), -128), np.full((T, 3 * E), 127),
                         np.where(rng.random((T, 3 * E)) < 0.5, -128, 127)])
    random = rng.integers(-128, 128, (4, T, 3 * E))
    qkv = np.concatenate([extremes, random]).astype(np.int8)
    args = (H, 23000, 30, EXP_TABLE, 25000, 22)
    got = int_ops.attention(qkv, *args)
    assert got.dtype == np.int8
    assert got.tolist() == [attention_ref(x, *args).tolist() for x in qkv]


def test_attention_with_one_dominant_key_copies_its_value():
    T, E = 3, 4
    qkv = np.zeros((1, T, 3 * E), dtype=np.int8)
    qkv[0, :, :E] = 100                      # every query
    qkv[0, 1, E:2 * E] = 100                 # only key 1 answers
    qkv[0, :, 2 * E:] = np.array([[10], [-77], [5]])
    y = int_ops.attention(qkv, 1, 1 << 10, 0, EXP_TABLE, 1, 8)   # p[.,1] = 255: y = round(255 * v / 256)
    assert y.tolist() == [[[-77] * E] * T]


# ---- gelu, add, embed, patches -------------------------------------------------------------

def test_gelu_table_follows_its_definition_and_lookup_covers_int8():
    s_in, s_out = 0.05, 0.03
    table = gelu_table(s_in, s_out)
    for i in (0, 1, 100, 128, 129, 200, 255):
        v = (i - 128) * s_in
        assert table[i] == sat8(math.floor(v * 0.5 * (1 + math.erf(v / math.sqrt(2))) / s_out + 0.5))
    x = np.arange(-128, 128, dtype=np.int8)
    assert int_ops.table_lookup(x, table).tolist() == table.tolist()


def test_residual_add_rescales_and_saturates():
    a = np.array([-128, 127, 127, 0, 3], dtype=np.int8)
    b = np.array([-128, 127, -128, 1, 3], dtype=np.int8)
    y = int_ops.residual_add(a, b, 3, 5, 2)      # (3a + 5b) / 4, half up
    assert y.tolist() == [sat8(rshift_round(3 * int(p) + 5 * int(q), 2)) for p, q in zip(a, b)]
    assert y.tolist() == [-128, 127, -65, 1, 6]      # -259 / 4 = -64.75 -> -65


def test_embed_puts_the_class_token_first():
    x = np.array([[[1, -128], [127, 2]]], dtype=np.int8)            # N=1, T-1=2, E=2
    offset = np.array([[40, -40], [0, 1], [2, 3]], dtype=np.int32)
    y = int_ops.embed(x, offset, 3, 1)
    # token 0: rshift_round(+-40, 1); token 1: (3*1 + 0, 3*-128 + 1); token 2: (3*127 + 2, 3*2 + 3)
    assert y.tolist() == [[[20, -20], [2, -128], [127, 5]]]


def test_patches_order_rows_then_columns():
    x = np.arange(16, dtype=np.int8).reshape(1, 16)            # 4x4 image
    assert int_ops.image_patches(x, 4, 4, 2).tolist() == [[0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]]


# ---- layer kinds and dataflow ----------------------------------------------------------------

def test_common_dyadic_keeps_15_bit_multipliers():
    mult_a, mult_b, shift = common_dyadic([0.75, 1.5])
    assert (mult_a, mult_b, shift) == (12288, 24576, 14)
    assert common_dyadic([1e-9])[-1] == 40


def attention_params(**change):
    params = {"name": "attn", "kind": "attention", "tokens": 3, "features": 4, "heads": 2,
              "score_mult": 1, "score_shift": 0, "out_mult": 1, "out_shift": 8, **change}
    return params


def test_attention_layer_rejects_a_zero_first_exp_entry_and_bad_heads():
    table = EXP_TABLE.copy()
    table[0] = 0
    with pytest.raises(ConfigError, match=r"exp_table'\[0\] = 0: must be >= 1"):
        AttentionLayer.from_json("t", attention_params(), {"exp_table": table})
    with pytest.raises(ConfigError, match="heads = 3: must divide features"):
        AttentionLayer.from_json("t", attention_params(heads=3), {"exp_table": EXP_TABLE})
    table = EXP_TABLE.copy()
    table[5] = 40000
    with pytest.raises(ConfigError, match=r"exp_table'\[5\] = 40000"):
        AttentionLayer.from_json("t", attention_params(), {"exp_table": table})


def test_whole_model_config_runs_as_a_dataflow_and_round_trips(tmp_path):
    """input -> layernorm -> add(input, layernorm): the add reads a layer and the model input."""
    E = 4
    norm = LayerNormLayer.from_json("t", {"name": "ln", "kind": "layernorm", "features": E, "norm_bits": 7,
                                          "out_shift": 7}, {"weight": np.full(E, 16, np.int16),
                                                            "bias": np.zeros(E, np.int32)})
    from nomac.model.operator_layers import AddLayer
    add = AddLayer.from_json("t", {"name": "res", "kind": "add", "features": E, "inputs": ["input", "ln"],
                                   "mult_a": 1, "mult_b": 1, "shift": 0}, {})
    config = make_config([norm, add])
    path = save_config(config, tmp_path / "m.json")
    loaded = load_config(path)
    assert loaded.config_id == config.config_id
    x = np.array([[1, 2, 3, 4, 0, 0, 0, 0], [-128, 127, 0, 0, 5, 5, 5, 5]], dtype=np.int8)   # two tokens each
    y = run_golden(loaded, x)
    rows = x.reshape(4, E)
    expected = [[sat8(int(a) + b) for a, b in zip(row, layernorm_ref(row, [16] * E, [0] * E, 7, 7))] for row in rows]
    assert y.reshape(4, E).tolist() == expected
    assert y.tobytes() == run_golden(loaded, x).tobytes()


def test_an_add_alone_reads_a_then_b_and_unknown_inputs_are_named():
    from nomac.model.operator_layers import AddLayer
    def add(inputs):
        return AddLayer.from_json("t", {"name": "res", "kind": "add", "features": 2, "inputs": inputs,
                                        "mult_a": 3, "mult_b": 1, "shift": 1}, {})
    with pytest.raises(ConfigError, match="inputs = 'nowhere': must name an earlier layer"):
        make_config([add(["input", "nowhere"])])            # refused when the model is made, before any run
    alone = make_config([add(["input", "input"])])
    assert alone.layers[0].in_features == 4 and alone.layers[0].out_features == 2
    # a = [1, -2], b = [5, 127]: (3 + 5) / 2 = 4, (-6 + 127) / 2 = 60.5 -> 61 (half up)
    x = np.array([[1, -2, 5, 127]], np.int8)
    assert run_golden(alone, x).tolist() == [[4, 61]]
    assert run_golden(alone, x, layer_name="res").tolist() == [[4, 61]]
    two_rows = np.array([[1, -2, 5, 127, 0, 0, -128, -128]], np.int8)      # R = 2 rows of 2E
    assert run_golden(alone, two_rows).tolist() == [[4, 61, -64, -64]]
