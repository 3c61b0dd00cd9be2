"""LUTLinear (model/layers/lut_linear.py): fitting rules, float forward, integer export, examples.

Expected values come from the data (hand-derived or brute force written here from the
rule in the docstrings and docs/spec.md section 7), never from the code under test.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from nomac.base.errors import ConfigError
from nomac.model.config import DESCRIPTIVE_LAYER_KEYS, load_config, make_config, save_config
from nomac.model.examples.lut import EXAMPLES, write_examples
from nomac.model.examples.source_layer import CONFIG_DIR
from nomac.model.layers.activations import activation_scale, quantize_activations
from nomac.model.layers.lut_linear import LUTLinear, fit_hash_tree, fit_kmeans
from nomac.model.lut_golden import lut_encode, lut_forward
from nomac.model.lut_spec import LutLayer

ENCODERS = ("l2", "l1", "tree")


def seeded_linear(D, M, seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(D, M, bias=bias)


def structured_inputs(N, D, seed=0):
    """Correlated inputs (a rank-4 mix plus noise), the kind PQ is meant for."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, 4)) @ rng.normal(size=(4, D)) + 0.3 * rng.normal(size=(N, D))).astype(np.float32)


def brute_force_codes(lut, x):
    """docs/spec.md section 7 encoding, one vector and one codebook at a time."""
    P = lut.prototypes.detach().double().numpy()
    C, K, V = P.shape
    codes = np.zeros((len(x), C), dtype=np.int64)
    for n, c in itertools.product(range(len(x)), range(C)):
        sub = x[n, c * V:(c + 1) * V].astype(np.float64)
        if lut.encoder == "tree":
            i = 0
            for level in range(lut.levels):
                dim = int(lut.split_dims[c, level])
                i = 2 * i + int(sub[dim] > float(lut.thresholds[c, 2 ** level - 1 + i]))
            codes[n, c] = i
        else:
            best, best_k = None, None
            for k in range(K):
                d = sum((sub[v] - P[c, k, v]) ** 2 if lut.encoder == "l2" else abs(sub[v] - P[c, k, v])
                        for v in range(V))
                if best is None or d < best:        # strict: ties keep the smallest k
                    best, best_k = d, k
            codes[n, c] = best_k
    return codes


# ---- drop-in: shapes, forward = bias + table sums ------------------------------------------

@pytest.mark.parametrize("encoder", ENCODERS)
def test_forward_is_bias_plus_selected_table_rows(encoder):
    D, M, C, K = 12, 5, 3, 8
    linear = seeded_linear(D, M)
    calibration = structured_inputs(300, D)
    lut = LUTLinear.from_linear(linear, calibration, C, K, encoder)
    x = structured_inputs(40, D, seed=1)
    codes = brute_force_codes(lut, x)
    T, b = lut.tables.detach().double().numpy(), lut.bias.detach().double().numpy()
    expected = b + np.stack([sum(T[c, codes[n, c]] for c in range(C)) for n in range(len(x))])
    assert np.array_equal(lut.encode(torch.from_numpy(x)).numpy(), codes)
    y = lut(torch.from_numpy(x))
    assert y.shape == (40, M) and y.dtype == torch.float32
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_tables_are_prototypes_times_weight_and_bias_is_kept():
    D, M, C, K = 8, 3, 2, 4
    linear = seeded_linear(D, M)
    lut = LUTLinear.from_linear(linear, structured_inputs(100, D), C, K, "l2")
    P, W = lut.prototypes.detach().double().numpy(), linear.weight.detach().double().numpy()
    V = D // C
    for c, k, m in itertools.product(range(C), range(K), range(M)):
        expected = sum(P[c, k, v] * W[m, c * V + v] for v in range(V))
        assert float(lut.tables[c, k, m].detach()) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert torch.equal(lut.bias.detach(), linear.bias.detach())


def test_drop_in_shapes_batch_dims_and_no_bias():
    linear = seeded_linear(16, 7, bias=False)
    lut = LUTLinear.from_linear(linear, structured_inputs(200, 16), codebooks=4, centroids=4)
    assert lut.bias is None
    x = torch.from_numpy(structured_inputs(24, 16, seed=2))
    flat = lut(x)
    assert flat.shape == (24, 7)
    assert torch.equal(lut(x.reshape(2, 3, 4, 16)), flat.reshape(2, 3, 4, 7))
    assert torch.equal(lut(x[5]), flat[5])
    assert lut(x[:0]).shape == (0, 7)
    with pytest.raises(ValueError, match="in_features"):
        lut(torch.zeros(3, 15))


def test_encoder_edge_cases_ties_and_thresholds():
    """Directed edges of docs/spec.md section 7: distance ties go to the smallest k; a tree goes right only when x > threshold."""
    for encoder in ("l2", "l1"):
        lut = LUTLinear(2, 1, codebooks=1, centroids=4, encoder=encoder)
        with torch.no_grad():
            lut.prototypes.copy_(torch.tensor([[[9.0, 9.0], [1.0, 0.0], [5.0, 5.0], [-1.0, 0.0]]]))
        # (0, 0) is at distance 1 from k = 1 and k = 3; (0, 1) from k = 1, k = 3 (and for l1 none closer)
        assert lut.encode(torch.tensor([[0.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])).tolist() == [[1], [1], [3]]
    tree = LUTLinear.from_linear(seeded_linear(3, 2), two_clusters(), codebooks=1, centroids=4, encoder="tree")
    assert tree.thresholds.tolist() == [[50.0, 5.0, 0.5]] and tree.split_dims.tolist() == [[0, 1]]
    at_thresholds = torch.tensor([[50.0, 5.0, 0.0], [50.0, 5.5, 0.0], [51.0, 0.5, 0.0], [51.0, 0.75, 0.0]])
    assert tree.encode(at_thresholds).flatten().tolist() == [0, 1, 2, 3]


def test_tables_get_gradients_through_the_hard_codes():
    """Room for training: the lookup is differentiable in the tables and bias."""
    lut = LUTLinear.from_linear(seeded_linear(8, 3), structured_inputs(64, 8), 2, 4, "l2")
    x = torch.from_numpy(structured_inputs(10, 8, seed=3))
    lut(x).sum().backward()
    codes = lut.encode(x)
    counts = torch.zeros(2, 4)
    for c in range(2):
        counts[c] = torch.bincount(codes[:, c], minlength=4)
    assert torch.equal(lut.tables.grad, counts[:, :, None].expand(2, 4, 3))
    assert torch.equal(lut.bias.grad, torch.full((3,), 10.0))


def test_constructor_rejects_bad_shapes():
    with pytest.raises(ConfigError, match="codebooks = 5: must divide in_features"):
        LUTLinear(12, 4, 5, 16)
    with pytest.raises(ConfigError, match="centroids = 12: must be a power of two"):
        LUTLinear(12, 4, 3, 12)
    with pytest.raises(ConfigError, match="encoder = 'cos'"):
        LUTLinear(12, 4, 3, 16, encoder="cos")


# ---- the tree follows the written rule -----------------------------------------------------

def two_clusters():
    """Left cluster (x0 = 0) spreads along dim 1 (0 or 10) and a little along dim 2 (0 or 2);
    right cluster (x0 = 100) spreads along dim 2 (0 or 4) and a little along dim 1 (0 or 1)."""
    left = [(0, y, z) for y in (0, 10) for z in (0, 2)]
    right = [(100, y, z) for y in (0, 1) for z in (0, 4)]
    return np.array(left + right, dtype=np.float64)


def test_tree_levels_share_one_split_dim_chosen_by_total_sse():
    # Level 0: splitting along dim 0 at 50 separates the clusters (children SSE 104 + 17);
    # any cut along dim 1 or 2 mixes x0 = 0 with x0 = 100 (SSE in the thousands).
    # Level 1, per bucket (left, right) and summed:
    #   dim 0: constant in both, no cut:         104 + 17 = 121
    #   dim 1: left at 5 leaves z: 2 + 2,
    #          right at 0.5 leaves z: 8 + 8     =   4 + 16 = 20   <- chosen
    #   dim 2: left at 1 leaves y: 50 + 50,
    #          right at 2 leaves y: 0.5 + 0.5   = 100 +  1 = 101
    # so dim 1 wins although the right bucket alone would prefer dim 2.
    split_dims, thresholds, prototypes = fit_hash_tree(two_clusters(), 4)
    assert split_dims.tolist() == [0, 1]
    assert thresholds.tolist() == [50.0, 5.0, 0.5]           # heap order: root, left, right
    assert prototypes.tolist() == [[0, 0, 1], [0, 10, 1], [100, 0, 2], [100, 1, 2]]


def test_tree_unsplittable_and_empty_buckets_are_deterministic():
    # With K = 16, level 2 (dim 2) leaves one point per bucket: no cut exists on any dim,
    # every dim ties at loss 0, so dim 0 is taken and each threshold is the bucket's
    # own x0 (all points go left). The right leaves are empty and inherit their parent's
    # mean, so every point still reconstructs exactly.
    points = two_clusters()
    split_dims, thresholds, prototypes = fit_hash_tree(points, 16)
    assert split_dims.tolist() == [0, 1, 2, 0]
    assert thresholds[7:].tolist() == [0, 0, 0, 0, 100, 100, 100, 100]
    assert prototypes[1::2].tolist() == prototypes[0::2].tolist()
    leaves = [tuple(p) for p in prototypes[0::2]]
    assert sorted(leaves) == sorted(tuple(p) for p in points)


def brute_force_tree(points, K):
    """Greedy levels by enumeration: every dim, every bucket, every midpoint threshold."""
    def sse(rows):
        return float(((rows - rows.mean(axis=0)) ** 2).sum()) if len(rows) else 0.0

    buckets, dims, thresholds = [points], [], []
    for _ in range(K.bit_length() - 1):
        options = []
        for dim in range(points.shape[1]):
            total, cuts = 0.0, []
            for rows in buckets:
                values = np.unique(rows[:, dim])
                candidates = [(sse(rows[rows[:, dim] <= t]) + sse(rows[rows[:, dim] > t]), t)
                              for t in (values[:-1] + values[1:]) / 2]
                loss, t = min(candidates) if candidates else (sse(rows), None)
                total += loss
                cuts.append(t)
            options.append((total, dim, cuts))
        _, dim, cuts = min(options, key=lambda option: option[0])
        dims.append(dim)
        thresholds += cuts
        buckets = [part for rows, t in zip(buckets, cuts)
                   for part in (rows[rows[:, dim] <= t], rows[rows[:, dim] > t])]
    return dims, thresholds


def test_tree_matches_brute_force_greedy_search():
    points = np.random.default_rng(7).normal(size=(60, 3)) * [1.0, 3.0, 2.0]
    dims, thresholds = brute_force_tree(points, 8)
    split_dims, fitted, _ = fit_hash_tree(points, 8)
    assert split_dims.tolist() == dims
    np.testing.assert_allclose(fitted, thresholds, rtol=0, atol=1e-12)


# ---- k-means / k-medians -----------------------------------------------------------------

@pytest.mark.parametrize("encoder", ("l2", "l1"))
@pytest.mark.parametrize("K", (8, 16))
def test_kmeans_reconstructs_exactly_with_enough_centroids(encoder, K):
    # 8 distinct subvectors per codebook (repeated, shuffled): K >= 8 prototypes suffice.
    rng = np.random.default_rng(3)
    patterns = rng.normal(size=(8, 12)).astype(np.float32)
    x = patterns[rng.integers(0, 8, size=200)]
    lut = LUTLinear.from_linear(seeded_linear(12, 4), x, codebooks=3, centroids=K, encoder=encoder)
    assert torch.equal(lut.reconstruct(torch.from_numpy(x)), torch.from_numpy(x))


def test_kmeans_is_seeded():
    points = structured_inputs(200, 4)
    a = fit_kmeans(points, 8, rng=np.random.default_rng(5))
    b = fit_kmeans(points, 8, rng=np.random.default_rng(5))
    c = fit_kmeans(points, 8, rng=np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_kmeans_centres_are_means_and_medians_of_their_points():
    """Converged Lloyd: each centre is the mean (l2) or median (l1) of the points nearest to it."""
    points = structured_inputs(300, 3).astype(np.float64)
    for metric in ("l2", "l1"):
        centres = fit_kmeans(points, 8, metric=metric, rng=np.random.default_rng(0))
        diff = points[:, None, :] - centres[None]
        distance = (diff ** 2).sum(-1) if metric == "l2" else np.abs(diff).sum(-1)
        nearest = distance.argmin(axis=1)
        for k in range(8):
            members = points[nearest == k]
            assert len(members)
            centre = members.mean(axis=0) if metric == "l2" else np.median(members, axis=0)
            np.testing.assert_allclose(centres[k], centre, rtol=0, atol=1e-12)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_error_against_dense_layer_falls_as_centroids_grow(encoder):
    D, M = 16, 8
    linear = seeded_linear(D, M)
    x = torch.from_numpy(structured_inputs(1000, D))
    dense = linear(x).detach()
    errors = []
    for K in (2, 4, 8, 16, 32):
        lut = LUTLinear.from_linear(linear, x, codebooks=4, centroids=K, encoder=encoder)
        errors.append(float((lut(x).detach() - dense).norm() / dense.norm()))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0], errors


# ---- integer export ----------------------------------------------------------------------

def test_quantize_activations_rounds_half_up_and_saturates():
    x = np.array([-1000, -0.125, 0.125, 0.375, -0.375, 31.625, 1000])   # x / 0.25 = ..., -0.5, 0.5, 1.5, -1.5, 126.5, ...
    assert quantize_activations(x, 0.25).tolist() == [-128, 0, 1, 2, -1, 127, 127]
    assert quantize_activations(torch.tensor([0.5]), 0.25).dtype == np.int8
    assert activation_scale(np.array([[-2.54, 1.0]])) == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="scale = 0"):
        quantize_activations(x, 0)


def exported(encoder, D=16, M=8, C=4, K=16, **options):
    linear = seeded_linear(D, M)
    calibration = structured_inputs(800, D)
    lut = LUTLinear.from_linear(linear, calibration, C, K, encoder)
    input_scale = activation_scale(calibration)
    layer = lut.export("fc", input_scale, calibration=calibration, **options)
    return lut, layer, calibration, input_scale


@pytest.mark.parametrize("encoder", ENCODERS)
def test_export_follows_the_written_quantization_rules(encoder):
    lut, layer, calibration, s_in = exported(encoder)
    s_out = layer.extra["output_scale"]
    assert layer.extra["input_scale"] == s_in
    T, b = lut.tables.detach().double().numpy(), lut.bias.detach().double().numpy()
    # output_scale: the calibration outputs' peak maps to 127 (the tables fit at that scale)
    peak = float(lut(calibration).detach().abs().max())
    assert np.abs(T).max() <= peak and s_out == pytest.approx(peak / 127, rel=1e-12)
    # out_shift: the largest shift with every rounded table entry in int8
    for shift, fits in ((layer.out_shift, True), (layer.out_shift + 1, False)):
        scaled = np.floor(T * 2 ** shift / s_out + 0.5)
        assert (scaled.min() >= -128 and scaled.max() <= 127) == fits
    unit = s_out / 2 ** layer.out_shift
    assert np.array_equal(layer.tables, np.floor(T / unit + 0.5))
    assert np.array_equal(layer.bias, np.floor(b / unit + 0.5))
    if encoder == "tree":
        theta = lut.thresholds.double().numpy()
        assert np.array_equal(layer.thresholds, np.clip(np.floor(theta / s_in), -128, 127))
        assert np.array_equal(layer.split_dims, lut.split_dims.numpy())
    else:
        P = lut.prototypes.detach().double().numpy()
        assert np.array_equal(layer.prototypes, np.clip(np.floor(P / s_in + 0.5), -128, 127))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_integer_output_is_within_the_rounding_bound_of_the_float_layer(encoder):
    """Bound: per table entry and bias the rounding error is <= 0.5 s_t (s_t = output_scale /
    2^out_shift), so acc * s_t is within (C + 1) * 0.5 * s_t of the float sum over the same
    codes, and rshift_round adds <= 0.5 output LSB; sat8 only moves values towards the
    clamped reference. In output LSBs: |out - clamp(y / output_scale)| <= 0.5 + (C + 1) / 2^(out_shift + 1).
    It holds for every vector against the float tables read with the integer codes, and
    against the float layer itself wherever input and prototype quantization left the codes unchanged."""
    lut, layer, calibration, s_in = exported(encoder)
    x = structured_inputs(500, 16, seed=11)
    x_int = quantize_activations(x, s_in)
    out = lut_forward(layer, x_int).astype(np.float64)
    s_out, C = layer.extra["output_scale"], layer.codebooks
    bound = 0.5 + (C + 1) / 2 ** (layer.out_shift + 1) + 1e-4     # 1e-4: float32 table sums

    int_codes = lut_encode(layer, x_int)
    same_codes = lut.lookup(torch.from_numpy(int_codes)).detach().double().numpy() / s_out
    assert np.abs(out - np.clip(same_codes, -128, 127)).max() <= bound

    float_codes = lut.encode(torch.from_numpy(x)).numpy()
    agree = (float_codes == int_codes).all(axis=1)
    float_out = lut(torch.from_numpy(x)).detach().double().numpy() / s_out
    assert np.abs(out - np.clip(float_out, -128, 127))[agree].max() <= bound
    assert agree.mean() > 0.75    # measured: l2 0.878, l1 0.804, tree 0.94 of the vectors


def test_tree_thresholds_keep_every_decision_on_the_input_grid():
    """t = floor(theta / s) makes x_int > t equivalent to x_int * s > theta: inputs that are
    exactly representable (x = s * x_int) get the same codes from the float and integer trees."""
    lut, layer, _, s_in = exported("tree")
    assert np.abs(lut.thresholds.double().numpy() / s_in).max() < 127     # no threshold clamped
    x_int = quantize_activations(structured_inputs(2000, 16, seed=5), s_in)
    on_grid = torch.from_numpy(x_int.astype(np.float64) * s_in)
    assert np.array_equal(lut.encode(on_grid).numpy(), lut_encode(layer, x_int))


STEP = 2.0 ** -4     # input_scale of the hand-made trees: every x_int * STEP and threshold is exact


def hand_tree(split_dims, steps, leaf_values):
    """A float64 tree layer, C codebooks of V = 2, no bias, M = C: leaf k of codebook c adds
    leaf_values[k] to output c only. Thresholds are given in input steps (theta = steps * STEP)."""
    C, K = len(split_dims), len(leaf_values)
    lut = LUTLinear(2 * C, C, codebooks=C, centroids=K, encoder="tree", bias=False).double()
    with torch.no_grad():
        lut.split_dims.copy_(torch.tensor(split_dims))
        lut.thresholds.copy_(torch.tensor(steps, dtype=torch.float64) * STEP)
        lut.tables.zero_()
        for c in range(C):
            lut.tables[c, :, c] = torch.tensor(leaf_values, dtype=torch.float64)
    return lut


def every_int8_pair(C):
    """All 65536 (a, b) in int8^2, as the subvector of each of the C codebooks: [65536, 2 C]."""
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    return np.tile(np.stack([a.ravel(), b.ravel()], axis=1), (1, C)).astype(np.int8)


def assert_integer_layer_is_the_float_one_on_the_grid(lut, layer, x_int):
    """Exact: acc * s_t equals the float layer's output on x = x_int * input_scale, for every input."""
    unit = layer.extra["output_scale"] / 2 ** layer.out_shift
    float_out = lut(torch.from_numpy(x_int.astype(np.float64) * layer.extra["input_scale"])).detach().numpy()
    assert np.array_equal(lut_forward(layer, x_int) * unit, float_out)


def test_tree_thresholds_beyond_the_int8_range_keep_every_decision():
    """theta / s >= 127: t = 127 (x_int > 127 never holds). theta / s < -128: every int8 input goes
    right, which x_int > t cannot say for x_int = -128; the export copies the node's right subtree
    (thresholds, leaf tables) over the unreachable left one and sets t = -128 (lut_linear.tree_thresholds)."""
    lut = hand_tree(split_dims=[[1, 0, 1], [0, 1, 0]], leaf_values=[1, 2, 3, 4, 5, 6, 7, 8], steps=[
        # codebook 0: node 2 and node 3 lie below the range (node 2's left subtree is node 5 and leaves
        # 4, 5; node 3's is leaf 0), node 4 is exactly -128, node 6 rounds 126.75 down to 126
        [0.25, 3.5, -1e6, -200.0, -128.0, 0.0, 126.75],
        # codebook 1: the root is exactly -128, nodes 1-3 never go right (127, inf, 1e6), node 4 lies
        # below the range (unreachable: node 1 never goes right), node 5 at -127.5 means x0 > -128
        [-128.0, 127.0, math.inf, 1e6, -129.25, -127.5, 5.0]])
    layer = lut.export("fc", STEP, output_scale=1.0, output="acc")
    assert layer.thresholds.tolist() == [[0, 3, -128, -128, -128, 126, 126],
                                         [-128, 127, 127, 127, -128, -128, 5]]
    assert layer.out_shift == 3                       # 8 * 2^3 = 64 fits int8, 8 * 2^4 does not
    # codebook 0: leaves 4, 5 := leaves 6, 7 (node 2), leaf 0 := leaf 1 (node 3); codebook 1: leaf 2 := leaf 3
    assert layer.tables[0, :, 0].tolist() == [8 * v for v in (2, 2, 3, 4, 7, 8, 7, 8)]
    assert layer.tables[1, :, 1].tolist() == [8 * v for v in (1, 2, 4, 4, 5, 6, 7, 8)]
    assert_integer_layer_is_the_float_one_on_the_grid(lut, layer, every_int8_pair(2))


def test_tree_threshold_is_the_exact_floor_of_theta_over_the_input_scale():
    """theta one float step below 44 s: theta / s rounds to 44.0 in float64, but its floor is 43,
    and x_int = 44 goes right in the float tree (44 s > theta)."""
    input_scale = 0.0203156324472237
    theta = float(np.nextafter(44 * input_scale, 0))
    assert math.floor(theta / input_scale) == 44 and 44 * input_scale > theta
    lut = hand_tree(split_dims=[[0]], steps=[[theta / STEP]], leaf_values=[1, 2])
    layer = lut.export("fc", input_scale, output_scale=1.0, output="acc")
    assert layer.thresholds.tolist() == [[43]]
    assert_integer_layer_is_the_float_one_on_the_grid(lut, layer, every_int8_pair(1))


def test_export_validates_and_round_trips_through_files(tmp_path):
    lut, layer, calibration, s_in = exported("l2", hw={"table_reads": 2}, description="test layer")
    assert isinstance(layer, LutLayer)
    again = LutLayer.from_json("again", layer.params_json(), layer.arrays(), DESCRIPTIVE_LAYER_KEYS)
    assert again.params_json() == layer.params_json()
    config = make_config([layer])
    loaded = load_config(save_config(config, tmp_path / "fc.json"))
    assert loaded.config_id == config.config_id
    (back,) = loaded.layers
    assert back.params_json() == layer.params_json()
    assert back.extra == {"description": "test layer", "input_scale": s_in,
                          "output_scale": layer.extra["output_scale"]}
    assert back.hw.table_reads == 2
    for name, array in layer.arrays().items():
        assert np.array_equal(back.arrays()[name], array) and back.arrays()[name].dtype == array.dtype


def test_export_with_given_output_scale():
    lut, auto, calibration, s_in = exported("l1")
    peak = float(np.abs(lut.tables.detach().numpy()).max())
    layer = lut.export("fc", s_in, output_scale=peak / 127, output="acc")
    assert layer.out_shift == 0 and np.abs(layer.tables).max() == 127 and layer.output == "acc"
    assert lut.export("fc", s_in, output_scale=4 * auto.extra["output_scale"]).out_shift == auto.out_shift + 2
    with pytest.raises(ConfigError, match="output_scale = .*too small"):
        lut.export("fc", s_in, output_scale=peak / 200)
    with pytest.raises(ConfigError, match="give output_scale or calibration"):
        lut.export("fc", s_in)


# ---- bundled examples ------------------------------------------------------------------

def test_bundled_examples_are_what_write_examples_produces(tmp_path):
    written = write_examples(tmp_path)
    names = sorted(path.name for path in written)
    assert names == sorted(f"{stem}{ext}" for stem in EXAMPLES for ext in (".json", ".npz"))
    for path in written:
        assert (CONFIG_DIR / path.name).read_bytes() == path.read_bytes(), path.name
    for stem, (encoder, hw) in EXAMPLES.items():
        (layer,) = load_config(CONFIG_DIR / f"{stem}.json").layers
        assert (layer.encoder, layer.in_features, layer.out_features, layer.codebooks, layer.centroids) \
            == (encoder, 32, 32, 8, 16)
        assert layer.hw_given == hw and layer.tables.nbytes == 4096
