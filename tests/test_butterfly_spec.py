"""Butterfly factors and chains (docs/spec.md section 11): validation, support masks, density, proposals, configs.

Support masks are checked against masks built here from the published definition
(block diagonal, each block an r x s grid of t x t diagonal matrices), written as
plain loops over blocks and diagonals, independently of `nonzero_columns`.
"""
import warnings

import numpy as np
import pytest

from butterfly_cases import ButterflyCase
from nomac.base.errors import ConfigError
from nomac.model.butterfly_chains import bulging_chain, chain_from_pairs, monotonic_chain, propose_chain
from nomac.model.butterfly_spec import (SparseChainWarning, chain_density, chain_parameters, chain_support,
                                        check_chain, check_factor_shape, lane_split, support_mask, valid_lanes)
from nomac.model.config import load_config, make_config, save_config

CLASSIC16 = [(16, 16, 2, 2, 1), (16, 16, 2, 2, 2), (16, 16, 2, 2, 4), (16, 16, 2, 2, 8)]
RECTANGULAR = [(6, 8, 3, 4, 1), (3, 6, 1, 2, 3)]                       # monotonic 8 -> 6 -> 3
BULGING = [(32, 16, 2, 1, 1), (32, 32, 2, 2, 2), (32, 32, 2, 2, 4), (16, 32, 2, 4, 8)]
# The DeBut authors' example chain for a 64 -> 128 layer: each output reaches only 16 of 64 inputs.
AUTHORS_64_128 = [(64, 64, 2, 2, 1), (128, 64, 4, 2, 2), (128, 128, 2, 2, 8), (128, 128, 2, 2, 16)]


def mask_from_definition(p, q, r, s, t):
    """The published definition, literally: diag(B_0, ..., B_{n_b-1}), B_b an r x s grid of
    t x t diagonal matrices, so block (i, j) of B_b has ones on its diagonal."""
    mask = np.zeros((p, q), dtype=bool)
    for b in range(q // (s * t)):
        top, left = b * r * t, b * s * t
        for i in range(r):
            for j in range(s):
                for k in range(t):
                    mask[top + i * t + k, left + j * t + k] = True
    return mask


@pytest.mark.parametrize("shape", [*CLASSIC16, *RECTANGULAR, *BULGING, *AUTHORS_64_128, (1, 1, 1, 1, 1),
                                   (12, 8, 3, 2, 1), (4, 8, 1, 2, 4), (24, 12, 2, 1, 6)])
def test_support_mask_matches_the_published_definition(shape):
    mask = support_mask(shape)
    assert np.array_equal(mask, mask_from_definition(*shape))
    p, q, r, s, t = shape
    assert mask.sum() == p * s == q * r
    assert (mask.sum(axis=1) == s).all() and (mask.sum(axis=0) == r).all()


def test_classic_butterfly_support_of_the_first_factors():
    # (16, 16, 2, 2, 1): 2x2 dense blocks on the diagonal; (16, 16, 2, 2, 8): [[I8, I8], [I8, I8]]
    assert np.array_equal(support_mask(CLASSIC16[0]), np.kron(np.eye(8, dtype=bool), np.ones((2, 2), dtype=bool)))
    assert np.array_equal(support_mask(CLASSIC16[3]), np.kron(np.ones((2, 2), dtype=bool), np.eye(8, dtype=bool)))


@pytest.mark.parametrize("chain, density", [(CLASSIC16, 1.0), (RECTANGULAR, 1.0), (BULGING, 1.0),
                                             (AUTHORS_64_128, 0.25), (CLASSIC16[:2], 0.25),
                                             ([(12, 8, 3, 2, 1)], 0.25)])
def test_chain_density_from_the_product_of_supports(chain, density):
    assert chain_density(chain) == density
    dense = mask_from_definition(*chain[0]).astype(int)
    for shape in chain[1:]:
        dense = mask_from_definition(*shape).astype(int) @ dense
    assert np.array_equal(chain_support(chain), dense > 0)


def test_sparse_chain_warns_or_is_refused():
    with pytest.warns(SparseChainWarning, match="75.0% structural zeros"):
        check_chain("c", AUTHORS_64_128, 64, 128)
    with pytest.raises(ConfigError, match="is not dense: the product of the supports has 75.0% structural zeros"):
        check_chain("c", AUTHORS_64_128, 64, 128, density="refuse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_chain("c", AUTHORS_64_128, 64, 128, density="ignore")
        check_chain("c", CLASSIC16, 16, 16)


@pytest.mark.parametrize("shape, message", [
    ([16, 16, 2, 2], "must be a list of five integers [p, q, r, s, t]"),
    ("16,16,2,2,1", "must be a list of five integers"),
    ([16, 16, 0, 2, 1], "shape[2] (r) = 0: must be >= 1"),
    ([16, 16.0, 2, 2, 1], "shape[1] (q) = 16.0: must be an integer"),
    ([16, 16, 2, 2, True], "shape[4] (t) = True: must be an integer"),
    ([16, 14, 2, 3, 2], "q = 14 must be a multiple of s*t = 6 (the factor has q/(s*t) blocks"),
    ([16, 18, 2, 3, 4], "q = 18 must be a multiple of s*t = 12"),
    ([10, 16, 2, 2, 2], "p = 10 must equal (q/(s*t))*r*t = 4*2*2 = 16"),
])
def test_each_factor_rule_has_its_own_error(shape, message):
    with pytest.raises(ConfigError) as error:
        check_factor_shape("layer 'fc': factors[0]", shape)
    assert message in str(error.value)
    assert str(error.value).startswith("layer 'fc': factors[0]: ")


def test_each_chain_rule_has_its_own_error():
    with pytest.raises(ConfigError, match=r"factors = \[\]: must be a non-empty list"):
        check_chain("fc", [])
    with pytest.raises(ConfigError, match=r"factors\[1\]: shape = \[8, 8, 2, 2, 1\]: q = 8 must equal "
                                          r"the previous factor's p = 16"):
        check_chain("fc", [(16, 16, 2, 2, 1), (8, 8, 2, 2, 1)])
    with pytest.raises(ConfigError, match=r"factors\[0\]: .*q = 16 must equal in_features = 32"):
        check_chain("fc", CLASSIC16, 32, 16)
    with pytest.raises(ConfigError, match=r"factors\[3\]: .*p = 16 must equal out_features = 8"):
        check_chain("fc", CLASSIC16, 16, 8)
    with pytest.raises(ConfigError, match="density = 'maybe': must be one of 'warn', 'refuse', 'ignore'"):
        check_chain("fc", CLASSIC16, density="maybe")


@pytest.mark.parametrize("out_features, in_features", [(16, 16), (32, 32), (8, 16), (16, 8), (3, 8), (10, 12),
                                                        (12, 10), (48, 192), (192, 48), (7, 7), (1, 5), (5, 1)])
@pytest.mark.parametrize("radix", [2, 4])
def test_proposed_monotonic_chains_are_dense_valid_and_monotonic(out_features, in_features, radix):
    chain = monotonic_chain(out_features, in_features, radix)
    check_chain("proposal", chain, in_features, out_features, density="refuse")
    sizes = [in_features] + [shape[0] for shape in chain]
    steps = np.diff(sizes)
    assert (steps <= 0).all() or (steps >= 0).all(), sizes
    assert chain_parameters(chain) <= 2 * out_features * in_features


@pytest.mark.parametrize("out_features, in_features", [(16, 16), (32, 32), (8, 16), (16, 8), (3, 8), (10, 12),
                                                        (48, 192), (192, 48), (7, 7), (2, 2)])
@pytest.mark.parametrize("radix", [2, 4])
def test_proposed_bulging_chains_are_dense_and_wider_in_the_middle(out_features, in_features, radix):
    chain = bulging_chain(out_features, in_features, radix)
    check_chain("proposal", chain, in_features, out_features, density="refuse")
    assert max(shape[0] for shape in chain[:-1]) > max(out_features, in_features)


def test_classic_butterfly_is_the_radix_2_monotonic_chain_of_a_power_of_two():
    assert monotonic_chain(16, 16) == CLASSIC16
    assert propose_chain(16, 16, "bulging") == BULGING
    assert chain_from_pairs(8, [(4, 3), (2, 1)]) == RECTANGULAR


def test_proposals_reject_bad_requests():
    with pytest.raises(ValueError, match="no bulging chain of radix 2 found for M = 1, D = 5"):
        bulging_chain(1, 5)
    with pytest.raises(ValueError, match="style = 'wide': must be one of monotonic, bulging"):
        propose_chain(4, 4, "wide")
    with pytest.raises(ValueError, match="radix = 1: must be an integer >= 2"):
        monotonic_chain(4, 4, 1)


def test_lane_split_reads_aligned_words():
    assert lane_split((16, 16, 2, 2, 8), 2) == (1, 2)
    assert lane_split((16, 16, 2, 2, 8), 16) == (8, 2)
    assert lane_split((16, 16, 2, 2, 1), 4) == (2, 2)      # u = t*m with m = 2 dividing r
    assert lane_split((16, 16, 2, 2, 1), 6) is None        # u = 3 divides neither t nor r
    assert lane_split((6, 8, 3, 4, 1), 12) == (3, 4)
    assert valid_lanes((16, 16, 2, 2, 4)) == [1, 2, 4, 8, 16]
    assert valid_lanes((6, 8, 3, 4, 1)) == [1, 2, 3, 4, 6, 12]


def test_config_round_trip_keeps_arrays_hw_and_id(tmp_path):
    case = ButterflyCase("mixed", tuple(CLASSIC16), weights=("int8", "shift", "int8", "shift"),
                         hw={"lanes": [2, 4, 1, 2], "memory": ["rom", "ram", "rom", "ram"], "bias_bits": 20})
    config = case.config()
    path = save_config(config, tmp_path / "fc.json")
    again = load_config(path)
    assert again.config_id == config.config_id
    layer = again.layers[0]
    assert layer.hw.lanes == (2, 4, 1, 2) and layer.hw.memory == ("rom", "ram", "rom", "ram")
    assert layer.hw.bias_bits == 20 and layer.hw.in_lanes == 1 and layer.hw.out_lanes == 1
    assert sorted(layer.arrays()) == ["bias0", "bias1", "bias2", "bias3", "shift1", "shift3", "sign1", "sign3",
                                      "w0", "w2"]
    for name, array in config.layers[0].arrays().items():
        assert np.array_equal(layer.arrays()[name], array)
    assert layer.params_json()["factors"][1] == {"shape": [16, 16, 2, 2, 2], "weights": "shift", "out_shift": 5,
                                                 "shift_min": -5, "shift_max": 0}
    # a command-line override as a comma-separated list
    assert again.with_hw({"lanes": "1,1,1,1"}).layers[0].hw.lanes == (1, 1, 1, 1)


def _layer_params(**changes):
    params = {"name": "fc", "kind": "butterfly", "in_features": 8, "out_features": 3,
              "factors": [{"shape": [6, 8, 3, 4, 1], "weights": "int8", "out_shift": 4},
                          {"shape": [3, 6, 1, 2, 3], "weights": "shift", "out_shift": 2,
                           "shift_min": -3, "shift_max": 0}]}
    params.update(changes)
    return params


def _arrays(**changes):
    arrays = {"w0": np.ones((6, 4), np.int8), "bias0": np.zeros(6, np.int32),
              "sign1": np.ones((3, 2), np.int8), "shift1": np.zeros((3, 2), np.int8), "bias1": np.zeros(3, np.int32)}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("params, arrays, message", [
    (_layer_params(factors=[]), _arrays(), "factors = []: must be a non-empty list of factor objects"),
    (_layer_params(factors=[{"shape": [6, 8, 3, 4, 1], "weights": "int8"}]), _arrays(),
     "factors[0]: out_shift = None: missing"),
    (_layer_params(factors=[{"shape": [6, 8, 3, 4, 1], "weights": "int4", "out_shift": 1}]), _arrays(),
     "factors[0]: weights = 'int4': must be one of 'int8', 'shift'"),
    (_layer_params(factors=[{"shape": [6, 8, 3, 4, 1], "weights": "int8", "out_shift": 1, "lanes": 2}]), _arrays(),
     "factors[0]: factor field = 'lanes': unknown"),
    (_layer_params(factors=[{"shape": [6, 8, 3, 4, 1], "weights": "int8", "out_shift": 1, "shift_min": -2}]),
     _arrays(), "factors[0]: shift_min = -2: only a factor with weights 'shift' has it"),
    (_layer_params(), _arrays(w0=np.ones((6, 3), np.int8)), "array 'w0' shape = [6, 3]: must be [6, 4]"),
    (_layer_params(), _arrays(w0=np.ones((6, 4), np.int16)), "array 'w0' dtype = 'int16': must be int8"),
    (_layer_params(), _arrays(sign1=np.full((3, 2), 2, np.int8)), "array 'sign1'[0, 0] = 2: a sign is -1, 0 or +1"),
    (_layer_params(), _arrays(shift1=np.full((3, 2), -4, np.int8)),
     "array 'shift1'[0, 0] = -4: must lie in [shift_min, shift_max] = [-3, 0]"),
    (_layer_params(), _arrays(bias1=None), "array 'bias1' = None: missing"),
    (_layer_params(), _arrays(w1=np.ones((3, 2), np.int8)), "array = 'w1': unknown"),
    (_layer_params(out_features=4), _arrays(), "p = 3 must equal out_features = 4"),
    (_layer_params(hw={"lanes": 5}), _arrays(), "hw.lanes = 5: factor 0 [6, 8, 3, 4, 1]: lanes must be one of "
                                               "[1, 2, 3, 4, 6, 12]"),
    (_layer_params(hw={"lanes": [1, 2, 2]}), _arrays(), "hw.lanes = [1, 2, 2]: must have one entry per factor (2)"),
    (_layer_params(hw={"memory": ["rom", "flash"]}), _arrays(), "hw.memory[1] = 'flash': must be one of"),
    (_layer_params(hw={"bias_bits": 12}), _arrays(), "hw.bias_bits = 12: only applies to factors with memory 'ram'"),
    (_layer_params(hw={"memory": "ram", "bias_bits": 4}), _arrays(bias0=np.full(6, 9, np.int32)),
     "array 'bias0'[0] = 9: must fit the 4-bit bias memory (hw.bias_bits)"),
])
def test_bad_layers_are_rejected_with_their_rule(params, arrays, message):
    from nomac.model.butterfly_spec import ButterflyLayer
    with pytest.raises(ConfigError) as error:
        ButterflyLayer.from_json("fc.json: layer 'fc'", params, arrays)
    assert message in str(error.value)


def test_make_config_accepts_a_butterfly_layer():
    config = make_config([ButterflyCase("r", tuple(RECTANGULAR)).layer()])
    assert config.layers[0].kind == "butterfly" and len(config.config_id) == 16


def test_a_chain_too_large_for_its_density_check_is_refused_before_any_matrix_is_built():
    # p * q = 4096 * 4096 = 2^24 support entries, four times the 2^22 the check holds
    with pytest.raises(ConfigError) as caught:
        check_chain("c", [[4096, 4096, 1, 1, 4096]])
    assert str(caught.value) == ("c: factors[0]: shape = [4096, 4096, 1, 1, 4096]: its support reaches "
                                 "4096 x 4096 = 16777216 entries; at most 4194304 (2^22) are checked")
    # each factor small, but the second one's support over the chain's input is 4096 x 2048 = 2^23
    with pytest.raises(ConfigError, match=r"factors\[1\]: shape = \[4096, 2, 2048, 1, 1\]: its support reaches "
                                          r"4096 x 2048 = 8388608 entries"):
        check_chain("c", [[2, 2048, 1, 1024, 1], [4096, 2, 2048, 1, 1]])
