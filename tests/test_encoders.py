# amaranth: UnusedElaboratable=no
"""The `lut` kind's encoders on Amaranth's simulator: hw/tree_encoder.py and hw/distance_encoder.py.

Both take subvector beats (V lanes, the C subvectors of a vector in order, `last` on
the final one) and give one code a beat with the same `last`. Codes from
model/lut_golden.py (docs/spec.md section 7.2): `tree` goes right when the element is
greater (equal goes left), `l1`/`l2` take the nearest prototype (ties to the smallest
k). Every tests/lut_cases.py case duplicates prototype 0 as prototype K-1, so an
input on it ties. The tree takes a codebook a cycle, the distance encoder K / P.
"""
import numpy as np
import pytest

from amaranth_streams import final_beats, intervals, stream_beats, stream_through
from lut_cases import LutCase
from nomac.hw.distance_encoder import DistanceEncoder
from nomac.hw.tree_encoder import TreeEncoder
from nomac.model.lut_golden import lut_encode

# tree: several levels, V = 1 (1-bit split dimensions), K = 2 (one level), one
# codebook, no pipeline registers, RAM. l1/l2: P = 1, P = K and in between (the lane
# argmin tree with and without its register), V = 1, one codebook, K = 2, RAM.
CASES = [
    LutCase("tree", 6, 3, 3, 8),
    LutCase("tree", 3, 2, 3, 4),
    LutCase("tree", 4, 2, 2, 2),
    LutCase("tree", 5, 2, 1, 16, {"pipeline": False}),
    LutCase("tree", 6, 2, 2, 8, {"memory": "ram"}),
    LutCase("l2", 6, 2, 2, 8, {"encoder_lanes": 1}),
    LutCase("l1", 6, 2, 2, 8, {"encoder_lanes": 8}),
    LutCase("l2", 6, 2, 3, 8, {"encoder_lanes": 4, "pipeline": False}),
    LutCase("l1", 4, 2, 1, 4, {"encoder_lanes": 2}),
    LutCase("l1", 3, 2, 3, 2, {"encoder_lanes": 1, "pipeline": False}),
    LutCase("l2", 4, 2, 2, 4, {"encoder_lanes": 2, "memory": "ram"}),
]


def inputs(layer, count: int, seed: int) -> np.ndarray:
    """[count, D]: all -128, all 127, the comparisons' ties (every element at its
    codebook's root threshold; every subvector on prototype 0, K-1 or 1), then random."""
    D, V, K = layer.in_features, layer.subvector_len, layer.centroids
    if layer.encoder == "tree":
        ties = [np.repeat(layer.thresholds[:, 0].astype(np.int64), V)]
    else:
        ties = [layer.prototypes[:, k % K].reshape(D).astype(np.int64) for k in (0, K - 1, 1)]
    rng = np.random.default_rng(seed)
    return np.vstack([np.full(D, -128), np.full(D, 127), *ties,
                      rng.integers(-128, 128, (count - 2 - len(ties), D))])


def encoder_run(case, count):
    layer = case.config().layers[0]
    encoder = TreeEncoder(layer) if layer.encoder == "tree" else DistanceEncoder(layer)
    x = inputs(layer, count, case.seed)
    return encoder, stream_beats(x, layer.subvector_len), stream_beats(lut_encode(layer, x), 1)


def test_each_encoder_rejects_the_others_rule():
    with pytest.raises(ValueError, match=r"TreeEncoder: encoder = 'l1': must be 'tree'"):
        TreeEncoder(LutCase("l1", 4, 2, 2, 4).config().layers[0])
    with pytest.raises(ValueError, match=r"DistanceEncoder: encoder = 'tree': must be 'l1' or 'l2'"):
        DistanceEncoder(LutCase("tree", 4, 2, 2, 4).config().layers[0])


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_full_rate_codes_match_the_golden_model(case):
    encoder, beats, expected = encoder_run(case, 8)
    assert stream_through(encoder, beats, len(expected)) == expected


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_steady_state_interval(case):
    encoder, beats, expected = encoder_run(case, 7)
    finished = []
    stream_through(encoder, beats, len(expected), background=[final_beats(encoder.o, finished)])
    cycles_per_codebook = 1 if case.encoder == "tree" else case.K // case.hw["encoder_lanes"]
    if case.encoder != "tree":
        assert encoder.cycles_per_codebook == cycles_per_codebook
    assert intervals(finished) == [case.C * cycles_per_codebook] * 5


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_random_traffic(case):
    encoder, beats, expected = encoder_run(case, 24)
    assert stream_through(encoder, beats, len(expected), seed=9, gap=0.3, backpressure=0.5) == expected
