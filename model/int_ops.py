"""Integer-only operators of the tiny ViT: the golden definitions of
docs/spec.md section 13 ("Integer ViT operators"), vectorized numpy in int64.

In the spirit of I-ViT (Li & Gu, "I-ViT: Integer-only Quantization for Efficient
Vision Transformer Inference", ICCV 2023): every non-linear operator is integer
arithmetic with dyadic rescaling (an integer multiplier and a right shift), with
these choices of ours:
- softmax: an exponential lookup table indexed by the rescaled distance to the row's
  maximum score (instead of I-ViT's shift-based Shiftmax), then one integer reciprocal
  per row; probabilities are unsigned 8-bit in units of 2^-8;
- GELU: a 256-entry int8 -> int8 table (exact for int8 input; I-ViT's ShiftGELU
  approximates the sigmoid instead);
- LayerNorm: integer mean and variance without division (differences E*x - sum),
  the floor integer square root, and one integer reciprocal per token.
Rounding is docs/spec.md section 2's rshift_round (half up) and sat8 everywhere; integer
divisions are floors of non-negative numbers. Nothing here uses floats.
"""
import numpy as np

from nomac.model.fixed_point import rshift_round, sat8

RECIP_BITS = 32          # reciprocals are floor(2^32 / r)
PROB_BITS = 8            # softmax probabilities in units of 2^-8
PROB_MAX = (1 << PROB_BITS) - 1
EXP_INDEX_MAX = 255


def isqrt(n) -> np.ndarray:
    """floor(sqrt(n)) for integers 0 <= n < 2^62: the largest r with r * r <= n."""
    n = np.asarray(n, dtype=np.int64)
    if np.any(n < 0):
        raise ValueError("isqrt: negative input")
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    for _ in range(2):               # the float estimate is off by at most one either way
        r = np.where(r * r > n, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= n, r + 1, r)
    return r


def dyadic(x, mult: int, shift: int) -> np.ndarray:
    """sat8(rshift_round(x * mult, shift)): rescaling by mult / 2^shift."""
    return sat8(rshift_round(np.asarray(x, dtype=np.int64) * mult, shift))


def layernorm(x, weight, bias, norm_bits: int, out_shift: int) -> np.ndarray:
    """Integer LayerNorm over the last axis (E values).

    S = sum x; d = E*x - S (E times the deviation, exact); Q = sum d^2;
    r = isqrt(floor(Q * 4^G / E)) (2^G * E * standard deviation, G = norm_bits);
    inv = floor(2^32 / r), or 0 when r = 0 (all values equal: every d is 0);
    n = rshift_round(d * inv, 32 - 2G) (the normalized value in units of 2^-G);
    y = sat8(rshift_round(n * weight + bias, out_shift)).
    """
    x = np.asarray(x, dtype=np.int64)
    E = x.shape[-1]
    d = E * x - x.sum(axis=-1, keepdims=True)
    Q = (d * d).sum(axis=-1, keepdims=True)
    r = isqrt((Q << (2 * norm_bits)) // E)
    inv = np.where(r > 0, (1 << RECIP_BITS) // np.maximum(r, 1), 0)
    n = rshift_round(d * inv, RECIP_BITS - 2 * norm_bits)
    return sat8(rshift_round(n * np.asarray(weight, dtype=np.int64) + np.asarray(bias, dtype=np.int64), out_shift))


def softmax_probabilities(scores, score_mult: int, score_shift: int, exp_table) -> np.ndarray:
    """Softmax over the last axis of integer scores, as unsigned 8-bit probabilities (int64).

    delta = max - score (>= 0); t = min(rshift_round(delta * score_mult, score_shift), 255);
    e = exp_table[t]; S = sum e (>= exp_table[0] >= 1); recip = floor(2^32 / S);
    p = min(rshift_round(e * recip, 32 - 8), 255). Equal scores get equal probabilities.
    """
    scores = np.asarray(scores, dtype=np.int64)
    delta = scores.max(axis=-1, keepdims=True) - scores
    t = np.minimum(rshift_round(delta * score_mult, score_shift), EXP_INDEX_MAX)
    e = np.asarray(exp_table, dtype=np.int64)[t]
    recip = (1 << RECIP_BITS) // e.sum(axis=-1, keepdims=True)
    return np.minimum(rshift_round(e * recip, RECIP_BITS - PROB_BITS), PROB_MAX)


def attention(qkv, heads: int, score_mult: int, score_shift: int, exp_table,
              out_mult: int, out_shift: int) -> np.ndarray:
    """Multi-head self-attention: qkv int8 [N, T, 3E] (q | k | v, head h in columns
    h*dh .. h*dh+dh-1 of each) -> int8 [N, T, E], heads concatenated.

    scores[i, j] = sum_d q[i, d] k[j, d] (int, per head); p = softmax_probabilities(scores);
    context[i, d] = sum_j p[i, j] v[j, d]; y = sat8(rshift_round(context * out_mult, out_shift)).
    The 1/sqrt(dh) of the float model lives in score_mult.
    """
    qkv = np.asarray(qkv, dtype=np.int64)
    N, T, three_e = qkv.shape
    E = three_e // 3
    dh = E // heads
    q, k, v = (qkv[..., i * E:(i + 1) * E].reshape(N, T, heads, dh).transpose(0, 2, 1, 3) for i in range(3))
    scores = np.einsum("nhid,nhjd->nhij", q, k)
    p = softmax_probabilities(scores, score_mult, score_shift, exp_table)
    context = np.einsum("nhij,nhjd->nhid", p, v)
    return dyadic(context, out_mult, out_shift).transpose(0, 2, 1, 3).reshape(N, T, E)


def residual_add(a, b, mult_a: int, mult_b: int, shift: int) -> np.ndarray:
    """sat8(rshift_round(a * mult_a + b * mult_b, shift)), elementwise."""
    total = np.asarray(a, dtype=np.int64) * mult_a + np.asarray(b, dtype=np.int64) * mult_b
    return sat8(rshift_round(total, shift))


def embed(x, offset, mult: int, shift: int) -> np.ndarray:
    """x int8 [N, T-1, E] -> [N, T, E]: y[t] = sat8(rshift_round(mult * x'[t] + offset[t], shift)),
    x'[0] = 0 (the class token), x'[t] = x[t-1]."""
    x = np.asarray(x, dtype=np.int64)
    padded = np.concatenate([np.zeros_like(x[:, :1]), x], axis=1)
    return sat8(rshift_round(padded * mult + np.asarray(offset, dtype=np.int64)[None], shift))


def table_lookup(x, table) -> np.ndarray:
    """y = table[x + 128] for int8 x: any int8 -> int8 function, here GELU."""
    return np.asarray(table)[np.asarray(x, dtype=np.int64) + 128]


def image_patches(x, height: int, width: int, patch: int) -> np.ndarray:
    """[N, H*W] row-major -> [N, H*W] as patches in row-major order, pixels row-major in a patch."""
    x = np.asarray(x)
    rows, cols = height // patch, width // patch
    return x.reshape(-1, rows, patch, cols, patch).transpose(0, 1, 3, 2, 4).reshape(len(x), -1)


# ---- the operator layers' golden forward: rows of in_features -> rows of out_features ----------

def patches_forward(layer, x):
    return image_patches(x, layer.height, layer.width, layer.patch)


def embed_forward(layer, x):
    x = np.asarray(x).reshape(len(x), layer.tokens - 1, layer.features)
    return embed(x, layer.offset, layer.mult, layer.shift).reshape(len(x), -1)


def layernorm_forward(layer, x):
    return layernorm(x, layer.weight, layer.bias, layer.norm_bits, layer.out_shift)


def gelu_forward(layer, x):
    return table_lookup(x, layer.table)


def attention_forward(layer, x):
    x = np.asarray(x).reshape(len(x), layer.tokens, 3 * layer.features)
    y = attention(x, layer.heads, layer.score_mult, layer.score_shift, layer.exp_table,
                  layer.out_mult, layer.out_shift)
    return y.reshape(len(x), -1)


def add_forward(layer, a, b=None):
    """Two operands from two layers, or one row of 2E with a's E elements first, then b's
    (the engine's input, and a layer whose inputs are both "input")."""
    if b is None:
        pair = np.asarray(a)
        a, b = pair[:, :layer.features], pair[:, layer.features:]
    return residual_add(a, b, layer.mult_a, layer.mult_b, layer.shift)


def select_token_forward(layer, x):
    x = np.asarray(x).reshape(len(x), layer.tokens, layer.features)
    return x[:, layer.index].copy()


OPERATOR_FORWARD = {"patches": patches_forward, "embed": embed_forward, "layernorm": layernorm_forward,
                    "gelu": gelu_forward, "attention": attention_forward, "add": add_forward,
                    "select_token": select_token_forward}
