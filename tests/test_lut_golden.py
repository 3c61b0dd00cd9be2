"""The `lut` golden model against the written definitions of docs/spec.md sections 2 and 7.

The reference below is the text of docs/spec.md as plain Python loops over one vector, on Python
integers (no numpy arithmetic shared with the code under test). Directed cases carry
their expected values worked out by hand in a comment.
"""
import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.model.config import make_config
from nomac.model.fixed_point import requantize, rshift_round, sat8
from nomac.model.golden import run_golden
from nomac.model.lut_golden import lut_accumulate, lut_encode, lut_forward
from nomac.model.lut_spec import LutLayer


# ---------------------------------------------------------------------------------------------
# The reference: docs/spec.md as loops

def ref_rshift_round(a: int, s: int) -> int:
    """docs/spec.md section 2: floor((a + 2^(s-1)) / 2^s) for s >= 1, a for s = 0 (Python's // floors)."""
    return a if s == 0 else (a + 2 ** (s - 1)) // 2 ** s


def ref_sat8(a: int) -> int:
    return -128 if a < -128 else 127 if a > 127 else a


class LoopReference:
    """One layer of docs/spec.md section 7 over one vector at a time, on Python lists of ints."""

    def __init__(self, layer: LutLayer):
        self.encoder, self.output, self.out_shift = layer.encoder, layer.output, layer.out_shift
        self.D, self.M, self.C, self.K = layer.in_features, layer.out_features, layer.codebooks, layer.centroids
        self.V = self.D // self.C
        self.L = 0
        while 2 ** self.L < self.K:
            self.L += 1
        self.tables = layer.tables.tolist()
        self.bias = layer.bias.tolist()
        if self.encoder == "tree":
            self.split_dims, self.thresholds = layer.split_dims.tolist(), layer.thresholds.tolist()
        else:
            self.prototypes = layer.prototypes.tolist()

    def encode(self, x: list) -> list:
        codes = []
        for c in range(self.C):
            sub = x[c * self.V:(c + 1) * self.V]
            if self.encoder == "tree":
                i = 0
                for l in range(self.L):
                    bit = 1 if sub[self.split_dims[c][l]] > self.thresholds[c][2 ** l - 1 + i] else 0
                    i = 2 * i + bit
                codes.append(i)
                continue
            best_k, best_d = None, None
            for k in range(self.K):
                d = 0
                for v in range(self.V):
                    e = sub[v] - self.prototypes[c][k][v]
                    d += e * e if self.encoder == "l2" else abs(e)
                if best_d is None or d < best_d:      # strictly smaller: ties keep the smaller k
                    best_k, best_d = k, d
            codes.append(best_k)
        return codes

    def accumulate(self, codes: list) -> list:
        acc = []
        for m in range(self.M):
            total = self.bias[m]
            for c in range(self.C):
                total += self.tables[c][codes[c]][m]
            acc.append(total)
        return acc

    def forward(self, x: list) -> list:
        acc = self.accumulate(self.encode(x))
        if self.output == "acc":
            return acc
        return [ref_sat8(ref_rshift_round(a, self.out_shift)) for a in acc]


def lut(encoder, D, tables, bias=None, *, prototypes=None, split_dims=None, thresholds=None,
        out_shift=0, output="int8", name="fc") -> LutLayer:
    """A validated layer from explicit arrays (shapes C, K, M taken from `tables`)."""
    tables = np.asarray(tables, dtype=np.int8)
    C, K, M = tables.shape
    arrays = {"tables": tables,
              "bias": np.zeros(M, np.int32) if bias is None else np.asarray(bias, dtype=np.int32)}
    if encoder == "tree":
        arrays["split_dims"] = np.asarray(split_dims, dtype=np.int32)
        arrays["thresholds"] = np.asarray(thresholds, dtype=np.int8)
    else:
        arrays["prototypes"] = np.asarray(prototypes, dtype=np.int8)
    params = {"name": name, "kind": "lut", "in_features": D, "out_features": M, "codebooks": C,
              "centroids": K, "encoder": encoder, "out_shift": out_shift, "output": output}
    return LutLayer.from_json(f"layer '{name}'", params, arrays)


def code_table(C, K):
    """tables[c, k] = [k - 128] (M = 1): with C = 1, bias 0 and out_shift 0 the int8 output
    is code - 128."""
    return [[[k - 128] for k in range(K)] for _ in range(C)]


def codes_of(layer, vectors) -> list:
    return lut_encode(layer, np.asarray(vectors, dtype=np.int8)).tolist()


# ---------------------------------------------------------------------------------------------
# docs/spec.md section 2: rshift_round and sat8

def test_rshift_round_by_zero_is_the_identity():
    values = [0, 1, -1, 127, -128, 2**40 + 3, -(2**50) - 7, 2**62, -(2**62)]
    assert rshift_round(np.array(values, np.int64), 0).tolist() == values
    for a in values:
        assert int(rshift_round(a, 0)) == a


@pytest.mark.parametrize("a, s, expected", [
    # half-way values go up (towards +inf), for either sign
    (3, 1, 2),       # 1.5 -> 2
    (-3, 1, -1),     # -1.5 -> -1
    (-5, 1, -2),     # -2.5 -> -2
    (5, 1, 3),       # 2.5 -> 3
    (-1, 1, 0),      # -0.5 -> 0
    (1, 1, 1),       # 0.5 -> 1
    (5, 2, 1),       # 1.25 -> 1
    (6, 2, 2),       # 1.5 -> 2
    (-6, 2, -1),     # -1.5 -> -1
    (-7, 2, -2),     # -1.75 -> -2
    (-2, 2, 0),      # -0.5 -> 0
    (-3, 2, -1),     # -0.75 -> -1
    (7, 3, 1),       # 0.875 -> 1
    (-4, 3, 0),      # -0.5 -> 0
    (-5, 3, -1),     # -0.625 -> -1
    # beyond 2^40: (2^41 + 2^9 + 2^9) / 2^10 = 2^31 + 1 exactly (a half-way value)
    (2**41 + 2**9, 10, 2**31 + 1),
    # (-2^41 - 2^9 + 2^9) / 2^10 = -2^31 exactly (half-way, goes up)
    (-(2**41) - 2**9, 10, -(2**31)),
    # one below the half-way point: floor((-2^41 - 1) / 2^10) = -2^31 - 1
    (-(2**41) - 2**9 - 1, 10, -(2**31) - 1),
    # 2^61 / 2^62 = 0.5 -> 1; -2^61 / 2^62 = -0.5 -> 0; (-2^61 - 1) / 2^62 -> -1
    (2**61, 62, 1),
    (-(2**61), 62, 0),
    (-(2**61) - 1, 62, -1),
    # 3 * 2^49 / 2^50 = 1.5 -> 2
    (3 * 2**49, 50, 2),
])
def test_rshift_round_directed(a, s, expected):
    assert int(rshift_round(a, s)) == expected
    assert rshift_round(np.array([a, a], np.int64), s).tolist() == [expected, expected]


def test_rshift_round_matches_the_formula_on_random_values():
    rng = np.random.default_rng(2024)
    # |a| < 2^62 keeps a + 2^(s-1) inside int64 for every s <= 62 (the out_shift range of docs/spec.md section 2)
    a = np.concatenate([rng.integers(-2**62, 2**62, 300, dtype=np.int64),
                        rng.integers(-2**20, 2**20, 300, dtype=np.int64),
                        rng.integers(-64, 64, 100, dtype=np.int64)])
    values = a.tolist()
    for s in range(63):
        got = rshift_round(a, s)
        assert got.dtype == np.int64
        assert got.tolist() == [ref_rshift_round(v, s) for v in values], s


def test_rshift_round_rejects_a_negative_shift():
    with pytest.raises(ValueError, match="shift = -1"):
        rshift_round(5, -1)


def test_sat8():
    values = [-2**62, -(2**40), -129, -128, -127, -1, 0, 1, 126, 127, 128, 2**40, 2**62]
    expected = [-128, -128, -128, -128, -127, -1, 0, 1, 126, 127, 127, 127, 127]
    got = sat8(np.array(values, np.int64))
    assert got.dtype == np.int8
    assert got.tolist() == expected == [ref_sat8(v) for v in values]


def test_requantize():
    acc = np.array([1101, -898, -92, 0], np.int64)
    assert requantize(acc, 3, "int8").tolist() == [127, -112, -11, 0]   # worked out in test_accumulate_with_bias
    raw = requantize(acc, 3, "acc")
    assert raw.dtype == np.int64 and raw.tolist() == [1101, -898, -92, 0]


# ---------------------------------------------------------------------------------------------
# docs/spec.md section 7: l2 and l1 encoders

@pytest.mark.parametrize("encoder", ["l2", "l1"])
def test_all_equal_prototypes_give_code_zero(encoder):
    for K in (2, 4, 256):
        layer = lut(encoder, 3, np.zeros((1, K, 1), np.int8), prototypes=np.full((1, K, 3), 17, np.int8))
        assert codes_of(layer, [[0, 0, 0], [-128, 127, 5], [17, 17, 17]]) == [[0], [0], [0]]


def test_l2_ties_between_non_adjacent_prototypes():
    # x = [0, 0]; squared distances: k0 [10, 10] -> 200, k1 [3, 4] -> 25, k2 [-20, 0] -> 400,
    # k3 [-4, -3] -> 25, k4 [5, 0] -> 25, k5..k7 [100, 100] -> 20000: ties at 1, 3, 4 -> 1
    P = [[10, 10], [3, 4], [-20, 0], [-4, -3], [5, 0], [100, 100], [100, 100], [100, 100]]
    layer = lut("l2", 2, np.zeros((1, 8, 1)), prototypes=[P])
    assert codes_of(layer, [[0, 0]]) == [[1]]
    # the same tie moved to k2 and k6 (others farther): x = [0, 0], k2 [0, 5] -> 25, k6 [-5, 0] -> 25
    P = [[9, 9], [6, 6], [0, 5], [-6, 6], [50, 0], [-9, 9], [-5, 0], [7, -7]]
    layer = lut("l2", 2, np.zeros((1, 8, 1)), prototypes=[P])
    assert codes_of(layer, [[0, 0]]) == [[2]]
    # x = [10, -10]: k0 (1+361)=362, k1 (16+256)=272, k2 (100+225)=325,
    # k3 (256+256)=512, k4 (1600+100)=1700, k5 (361+361)=722, k6 (225+100)=325, k7 (9+9)=18 -> 7
    assert codes_of(layer, [[10, -10]]) == [[7]]


def test_l1_ties_between_non_adjacent_prototypes():
    # x = [0, 0]; L1 distances: k0 [9, 0] -> 9, k1 [3, 4] -> 7, k2 [8, 8] -> 16, k3 [-7, 0] -> 7,
    # k4 [20, 20] -> 40, k5 [2, -5] -> 7, k6 [-8, -1] -> 9, k7 [-4, -4] -> 8: ties at 1, 3, 5 -> 1
    P = [[9, 0], [3, 4], [8, 8], [-7, 0], [20, 20], [2, -5], [-8, -1], [-4, -4]]
    layer = lut("l1", 2, np.zeros((1, 8, 1)), prototypes=[P])
    assert codes_of(layer, [[0, 0]]) == [[1]]
    # x = [-4, -4]: k7 is exact -> 7; x = [5, 2]: k1 |2|+|2| = 4, k0 |-4|+|2| = 6, k5 |3|+|7| = 10,
    # k2 |-3|+|-6| = 9 -> 1
    assert codes_of(layer, [[-4, -4], [5, 2]]) == [[7], [1]]


def test_l2_and_l1_are_different_distances():
    # x = [0, 0]; P0 = [2, 2]: l2 8, l1 4; P1 = [3, 0]: l2 9, l1 3 -> l2 picks 0, l1 picks 1
    P = [[[2, 2], [3, 0]]]
    assert codes_of(lut("l2", 2, np.zeros((1, 2, 1)), prototypes=P), [[0, 0]]) == [[0]]
    assert codes_of(lut("l1", 2, np.zeros((1, 2, 1)), prototypes=P), [[0, 0]]) == [[1]]


@pytest.mark.parametrize("encoder", ["l2", "l1"])
def test_every_int8_value_as_its_own_prototype(encoder):
    # K = 256, V = 1, P[k] = k - 128: the nearest prototype of x is x itself, code x + 128
    P = [[[k - 128] for k in range(256)]]
    layer = lut(encoder, 1, code_table(1, 256), prototypes=P)
    x = [[v] for v in range(-128, 128)]
    assert codes_of(layer, x) == [[v + 128] for v in range(-128, 128)]
    # output = sat8(bias + tables[0, code, 0]) = 0 + (x + 128) - 128 = x
    assert lut_forward(layer, np.array(x, np.int8)).tolist() == x


@pytest.mark.parametrize("encoder", ["l2", "l1"])
def test_extreme_inputs_and_prototypes_do_not_wrap(encoder):
    # P0 = 127, P1 = 0. x = -128: distances 255^2 = 65025 vs 128^2 = 16384 (l1: 255 vs 128) -> 1;
    # an int8 difference would wrap -255 to 1 and pick 0, an int16 square wraps 65025 to -511.
    # x = 127: 0 vs 16129 -> 0. x = 0: 16129 vs 0 -> 1.
    layer = lut(encoder, 1, np.zeros((1, 2, 1)), prototypes=[[[127], [0]]])
    assert codes_of(layer, [[-128], [127], [0]]) == [[1], [0], [1]]
    # P0 = -128, P1 = 0. x = 127: 65025 vs 16129 -> 1; x = -128: 0 vs 16384 -> 0.
    layer = lut(encoder, 1, np.zeros((1, 2, 1)), prototypes=[[[-128], [0]]])
    assert codes_of(layer, [[127], [-128]]) == [[1], [0]]


def test_l2_distances_beyond_32_bits():
    # V = 33768, x all -128. P0 all 127: distance 65025 * 33768 = 2,195,764,200 > 2^31 - 1.
    # P1 all 0: 16384 * 33768 = 553,254,912. True code 1; an int32 distance wraps P0's
    # to 2,195,764,200 - 2^32 = -2,099,203,096 and would pick 0.
    V = 33768
    P = np.stack([np.full(V, 127, np.int8), np.zeros(V, np.int8)])[None]
    layer = lut("l2", V, np.zeros((1, 2, 1)), prototypes=P)
    x = np.full((2, V), -128, np.int8)
    x[1, :] = 127    # P0 exactly (distance 0) -> 0
    assert lut_encode(layer, x).tolist() == [[1], [0]]
    # nearly equal huge distances: P1 all 127 but one 126 -> 65025 * (V - 1) + 254^2, smaller by 509 -> 1
    P2 = np.full((1, 2, V), 127, np.int8)
    P2[0, 1, V // 2] = 126
    layer = lut("l2", V, np.zeros((1, 2, 1)), prototypes=P2)
    assert lut_encode(layer, x[:1]).tolist() == [[1]]


def test_codebooks_encode_independently():
    # C = 3, V = 2, K = 4, the same prototypes in every codebook:
    # k0 [0, 0], k1 [10, 0], k2 [0, 10], k3 [10, 10]
    P = [[[0, 0], [10, 0], [0, 10], [10, 10]]] * 3
    layer = lut("l2", 6, np.zeros((3, 4, 1)), prototypes=P)
    # subvectors [9, 1] -> k1 (2 vs 82...); [5, 5]: all four at 50 -> tie, k0; [-3, 12] -> k2 (9+4=13)
    assert codes_of(layer, [[9, 1, 5, 5, -3, 12]]) == [[1, 0, 2]]
    # [5, 0]: k0 25, k1 25 -> 0; [10, 5]: k1 25, k3 25 -> 1; [5, 10]: k2 25, k3 25 -> 2
    assert codes_of(layer, [[5, 0, 10, 5, 5, 10]]) == [[0, 1, 2]]


# ---------------------------------------------------------------------------------------------
# docs/spec.md section 7: tree encoder (bit = x > t, so equal goes left)

def test_tree_equal_goes_left_one_more_goes_right():
    for t in (-128, -1, 0, 5, 126, 127):
        layer = lut("tree", 1, np.zeros((1, 2, 1)), split_dims=[[0]], thresholds=[[t]])
        below = [[t - 1]] if t > -128 else []
        above = [[t + 1]] if t < 127 else []
        x = below + [[t]] + above
        assert codes_of(layer, x) == [[0]] * (len(below) + 1) + [[1]] * len(above), t


def test_tree_thresholds_at_the_int8_ends():
    # t = -128: only -128 goes left; t = 127: everything goes left
    layer = lut("tree", 2, np.zeros((2, 2, 1)), split_dims=[[0], [0]], thresholds=[[-128], [127]])
    assert codes_of(layer, [[-128, 127], [-127, 127], [127, -128]]) == [[0, 0], [1, 0], [1, 0]]


def test_tree_split_dims_at_both_ends_of_the_subvector():
    # V = 4, K = 4 (two levels): level 0 looks at x[3], level 1 at x[0].
    # Heap order: t[0] root, t[1] left child (node 0 of level 1), t[2] right child.
    layer = lut("tree", 4, np.zeros((1, 4, 1)), split_dims=[[3, 0]], thresholds=[[0, -10, 10]])
    assert codes_of(layer, [
        [5, 99, 99, 1],      # 1 > 0 -> i = 1; 5 > t[2] = 10? no -> 2
        [-10, 0, 0, 0],      # 0 > 0? no -> i = 0; -10 > t[1] = -10? no -> 0
        [-9, 0, 0, 0],       # i = 0; -9 > -10 -> 1
        [11, -128, 127, 5],  # i = 1; 11 > 10 -> 3
        [10, 0, 0, 5],       # i = 1; 10 > 10? no -> 2
        [127, 127, 127, 0],  # i = 0; 127 > -10 -> 1 (the middle elements are never looked at)
    ]) == [[2], [0], [1], [3], [2], [1]]


def test_tree_with_256_leaves():
    # V = 8, K = 256, level l looks at x[l], every threshold 0: the code is x read as bits,
    # level 0 first (most significant), bit = x[l] > 0
    layer = lut("tree", 8, code_table(1, 256), split_dims=[list(range(8))],
                thresholds=np.zeros((1, 255)))
    x = [[1, 0, 1, 1, 0, 0, 0, 1],          # 0b10110001 = 177
         [0] * 8,                           # all equal to the thresholds: all left -> 0
         [1] * 8,                           # 255
         [-128, 127, -1, 2, 0, 0, 9, 0],    # 0b01010010 = 82
         [127] * 8]                         # 255
    assert codes_of(layer, x) == [[177], [0], [255], [82], [255]]
    # output = 0 + tables[0, code, 0] = code - 128
    assert lut_forward(layer, np.array(x, np.int8)).tolist() == [[49], [-128], [127], [-46], [127]]


def test_tree_heap_order_reaches_every_node():
    # K = 8, V = 1, one split dim; thresholds in heap order t[0..6] = [0, -50, 50, -90, -10, 10, 90]
    # form a search tree, so the code counts the thresholds below x: leaf boundaries
    # -90, -50, -10, 0, 10, 50, 90 (x equal to a boundary stays on its left).
    t = [0, -50, 50, -90, -10, 10, 90]
    layer = lut("tree", 1, np.zeros((1, 8, 1)), split_dims=[[0, 0, 0]], thresholds=[t])
    x = [-128, -90, -89, -50, -49, -10, -9, 0, 1, 10, 11, 50, 51, 90, 91, 127]
    expected = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert codes_of(layer, [[v] for v in x]) == [[e] for e in expected]


# ---------------------------------------------------------------------------------------------
# Accumulate and requantize

def hand_layer(out_shift, output="int8"):
    # C = 2, K = 2, M = 3, V = 1, l1; prototypes -50 / 50 in both codebooks
    tables = [[[10, -20, 30], [1, 2, 3]],
              [[100, 100, -100], [-7, 8, -9]]]
    return lut("l1", 2, tables, bias=[1000, -1000, 5], prototypes=[[[-50], [50]]] * 2,
               out_shift=out_shift, output=output)


@pytest.mark.parametrize("out_shift, output, expected", [
    # x = [60, -60] -> codes [1, 0]; acc = bias + tables[0, 1] + tables[1, 0]
    #   = [1000 + 1 + 100, -1000 + 2 + 100, 5 + 3 - 100] = [1101, -898, -92]
    (0, "acc", [1101, -898, -92]),
    (7, "acc", [1101, -898, -92]),                 # "acc" ignores out_shift
    (0, "int8", [127, -128, -92]),                 # saturates on both sides
    # shift 3: floor(1105 / 8) = 138 -> 127; floor(-894 / 8) = -112; floor(-88 / 8) = -11
    # (-92 / 8 = -11.5, a half-way value: up to -11)
    (3, "int8", [127, -112, -11]),
    # shift 4: floor(1109 / 16) = 69; floor(-890 / 16) = -56; floor(-84 / 16) = -6
    (4, "int8", [69, -56, -6]),
    # shift 11: floor(2125 / 2048) = 1; floor(126 / 2048) = 0; floor(932 / 2048) = 0
    (11, "int8", [1, 0, 0]),
    (62, "int8", [0, 0, 0]),                       # (a + 2^61) / 2^62 is in [0, 1) for small |a|
])
def test_accumulate_with_bias(out_shift, output, expected):
    layer = hand_layer(out_shift, output)
    x = np.array([[60, -60]], np.int8)
    assert lut_encode(layer, x).tolist() == [[1, 0]]
    assert lut_accumulate(layer, np.array([[1, 0]])).tolist() == [[1101, -898, -92]]
    out = lut_forward(layer, x)
    assert out.dtype == (np.int64 if output == "acc" else np.int8)
    assert out.tolist() == [expected]


def test_accumulators_go_beyond_int32():
    # C = 4, every table row [127, -128], bias [2^31 - 1, -2^31]:
    # acc = [2^31 - 1 + 4 * 127, -2^31 - 4 * 128] = [2147484155, -2147484160]
    tables = np.tile(np.array([127, -128], np.int8), (4, 2, 1))
    layer = lut("l2", 4, tables, bias=[2**31 - 1, -2**31], prototypes=np.zeros((4, 2, 1)), output="acc")
    x = np.zeros((1, 4), np.int8)
    assert lut_forward(layer, x).tolist() == [[2147484155, -2147484160]]
    # int8, shift 25: floor((2147484155 + 2^24) / 2^25) = floor(64.50002) = 64;
    # floor((-2147484160 + 2^24) / 2^25) = floor(-63.50002) = -64
    layer = lut("l2", 4, tables, bias=[2**31 - 1, -2**31], prototypes=np.zeros((4, 2, 1)), out_shift=25)
    assert lut_forward(layer, x).tolist() == [[64, -64]]
    layer = lut("l2", 4, tables, bias=[2**31 - 1, -2**31], prototypes=np.zeros((4, 2, 1)), out_shift=0)
    assert lut_forward(layer, x).tolist() == [[127, -128]]


# ---------------------------------------------------------------------------------------------
# Random configs: the vectorized golden against the loop reference

def random_layer(rng, encoder, D, M, C, K, *, narrow=False, out_shift=None, output="int8", name="fc"):
    """Random arrays; `narrow` draws prototypes from {-1, 0, 1} so that l1/l2 ties are common."""
    V, L = D // C, K.bit_length() - 1
    tables = rng.integers(-128, 128, (C, K, M), dtype=np.int8)
    bias = rng.integers(-5000, 5000, M).astype(np.int32)
    if out_shift is None:
        out_shift = int(rng.integers(0, 12))
    if encoder == "tree":
        return lut(encoder, D, tables, bias, split_dims=rng.integers(0, V, (C, L)),
                   thresholds=rng.integers(-128, 128, (C, K - 1)), out_shift=out_shift, output=output, name=name)
    low, high = (-1, 2) if narrow else (-128, 128)
    return lut(encoder, D, tables, bias, prototypes=rng.integers(low, high, (C, K, V)),
               out_shift=out_shift, output=output, name=name)


def random_inputs(rng, layer, n) -> np.ndarray:
    """A mix: uniform int8, the int8 ends, and values sitting on the layer's own
    prototypes or thresholds (+-1), where ties and equal comparisons happen."""
    D, C, V = layer.in_features, layer.codebooks, layer.subvector_len
    parts = [rng.integers(-128, 128, (n // 4, D)),
             rng.choice(np.array([-128, -127, 126, 127]), (n // 4, D)),
             rng.integers(-2, 3, (n // 4, D))]
    near = np.empty((n - 3 * (n // 4), D), np.int64)
    for row in near:
        for c in range(C):
            if layer.encoder == "tree":
                row[c * V:(c + 1) * V] = rng.choice(layer.thresholds[c], V)
            else:
                row[c * V:(c + 1) * V] = layer.prototypes[c, rng.integers(0, layer.centroids)]
        row += rng.integers(-1, 2, D)
    parts.append(near)
    return np.clip(np.concatenate(parts), -128, 127).astype(np.int8)


RANDOM_SHAPES = [  # encoder, D, M, C, K, narrow
    ("l2", 12, 5, 3, 4, False),
    ("l2", 16, 7, 4, 16, True),
    ("l2", 9, 3, 1, 256, False),      # C = 1, K = 256
    ("l2", 5, 4, 5, 2, False),        # V = 1, K = 2
    ("l1", 16, 6, 2, 32, False),
    ("l1", 12, 3, 6, 8, True),
    ("l1", 4, 2, 4, 256, False),      # V = 1, K = 256
    ("tree", 16, 5, 4, 16, False),
    ("tree", 8, 3, 8, 2, False),      # V = 1, one level
    ("tree", 24, 4, 3, 256, False),   # eight levels
    ("tree", 6, 9, 1, 8, False),      # C = 1
]


@pytest.mark.parametrize("index", range(len(RANDOM_SHAPES)),
                         ids=[f"{e}-D{D}-M{M}-C{C}-K{K}" + ("-narrow" if n else "") for e, D, M, C, K, n in RANDOM_SHAPES])
def test_random_layers_match_the_loop_reference(index):
    encoder, D, M, C, K, narrow = RANDOM_SHAPES[index]
    rng = np.random.default_rng(100 + index)
    layer = random_layer(rng, encoder, D, M, C, K, narrow=narrow)
    ref = LoopReference(layer)
    x = random_inputs(rng, layer, 240)
    rows = x.tolist()
    codes = lut_encode(layer, x)
    assert codes.shape == (len(rows), C)
    expected_codes = [ref.encode(row) for row in rows]
    assert codes.tolist() == expected_codes
    assert lut_forward(layer, x).tolist() == [ref.forward(row) for row in rows]
    acc = lut_accumulate(layer, codes)
    assert acc.tolist() == [ref.accumulate(c) for c in expected_codes]
    # many distinct codes, so the comparison is not won by a constant
    assert len({tuple(c) for c in expected_codes}) > min(10, K ** C // 2)


def test_encoder_chunking_does_not_change_results():
    """More vectors than one step of the vectorized l1/l2 encoder (512): the seams are exact."""
    rng = np.random.default_rng(77)
    layer = random_layer(rng, "l2", 8, 3, 2, 16, narrow=True)
    ref = LoopReference(layer)
    x = random_inputs(rng, layer, 1100)
    assert lut_encode(layer, x).tolist() == [ref.encode(row) for row in x.tolist()]


def test_run_golden_chains_layers_like_the_reference():
    rng = np.random.default_rng(55)
    first = random_layer(rng, "l2", 12, 8, 3, 16, out_shift=4, name="enc")
    second = random_layer(rng, "tree", 8, 6, 2, 8, out_shift=3, name="tr")
    last = random_layer(rng, "l1", 6, 5, 3, 4, output="acc", name="head")
    config = make_config([first, second, last])
    refs = [LoopReference(layer) for layer in config.layers]
    x = random_inputs(rng, first, 200)
    expected = []
    for row in x.tolist():
        for ref in refs:
            row = ref.forward(row)
        expected.append(row)
    out = run_golden(config, x)
    assert out.dtype == np.int64
    assert out.tolist() == expected
    # one layer by name, and a single vector in gives a single vector out
    assert run_golden(config, x, "enc").tolist() == [refs[0].forward(r) for r in x.tolist()]
    single = run_golden(config, x[3])
    assert single.shape == (5,) and single.tolist() == expected[3]


# ---------------------------------------------------------------------------------------------
# run_golden input checks

@pytest.fixture
def small_config():
    rng = np.random.default_rng(9)
    return make_config([random_layer(rng, "l2", 6, 4, 2, 4, name="fc")])


def test_run_golden_single_vector(small_config):
    layer = small_config.layers[0]
    x = np.array([-128, 127, 0, 5, -5, 64], np.int8)
    out = run_golden(small_config, x)
    assert out.shape == (4,) and out.dtype == np.int8
    assert out.tolist() == LoopReference(layer).forward(x.tolist())


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.int64, np.uint8])
def test_run_golden_rejects_other_dtypes(small_config, dtype):
    for x in (np.zeros(6, dtype), np.zeros((3, 6), dtype)):
        with pytest.raises(ConfigError) as caught:
            run_golden(small_config, x)
        message = str(caught.value)
        assert "golden input" in message and "dtype" in message
        assert repr(np.dtype(dtype).name) in message and "must be int8" in message


@pytest.mark.parametrize("width", [5, 7, 12])
def test_run_golden_rejects_the_wrong_width(small_config, width):
    for x in (np.zeros(width, np.int8), np.zeros((2, width), np.int8)):
        with pytest.raises(ConfigError) as caught:
            run_golden(small_config, x)
        message = str(caught.value)
        assert "layer 'fc' input width" in message and f"= {width}" in message
        assert "must equal its in_features (6)" in message


def test_run_golden_rejects_other_shapes(small_config):
    with pytest.raises(ConfigError, match=r"shape = \[2, 3, 6\]: must be \[N, in_features\]"):
        run_golden(small_config, np.zeros((2, 3, 6), np.int8))
    with pytest.raises(ConfigError, match=r"shape = \[\]"):
        run_golden(small_config, np.int8(3))


def test_run_golden_refuses_raw_accumulators_in_the_middle():
    rng = np.random.default_rng(4)
    config = make_config([random_layer(rng, "l2", 6, 6, 2, 4, output="acc", name="a"),
                          random_layer(rng, "l1", 6, 2, 3, 4, name="b")])
    with pytest.raises(ConfigError, match=r"layer 'a' output = 'acc': only the last layer"):
        run_golden(config, np.zeros((1, 6), np.int8))
    # run alone, it is the last layer and may
    assert run_golden(config, np.zeros((1, 6), np.int8), "a").dtype == np.int64


def test_run_golden_unknown_layer(small_config):
    with pytest.raises(ConfigError, match=r"layer = 'nope': no such layer"):
        run_golden(small_config, np.zeros(6, np.int8), "nope")
