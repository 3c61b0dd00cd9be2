"""The `dense` golden model against its written definition (docs/spec.md section 9) as loops.

acc[m] = bias[m] + sum_d weights[m, d] * x[d] on Python integers, then docs/spec.md section 2's
sat8(rshift_round(acc, out_shift)) or acc. Directed cases are worked out by hand.
"""
import numpy as np
import pytest

from nomac.model.config import make_config
from nomac.model.dense_golden import dense_forward
from nomac.model.dense_spec import DenseLayer
from nomac.model.golden import run_golden


def ref_forward(layer: DenseLayer, x: list) -> list:
    weights, bias = layer.weights.tolist(), layer.bias.tolist()
    out = []
    for m in range(layer.out_features):
        acc = bias[m] + sum(weights[m][d] * x[d] for d in range(layer.in_features))
        if layer.output == "int8":
            s = layer.out_shift
            acc = acc if s == 0 else (acc + 2 ** (s - 1)) // 2 ** s
            acc = min(127, max(-128, acc))
        out.append(acc)
    return out


def layer_of(weights, bias, out_shift=0, output="int8"):
    weights = np.array(weights, np.int8)
    M, D = weights.shape
    params = {"name": "dn", "kind": "dense", "in_features": D, "out_features": M, "out_shift": out_shift,
              "output": output}
    return DenseLayer.from_json("dn", params, {"weights": weights, "bias": np.array(bias, np.int32)})


# x = [-128, 127]: row 0: 10 + 2*(-128) - 3*127 = 10 - 256 - 381 = -627;
# row 1: -1 + 127*(-128) - 128*127 = -1 - 16256 - 16256 = -32513.
@pytest.mark.parametrize("out_shift, output, expected", [
    (0, "acc", [-627, -32513]),
    (8, "int8", [-2, -127]),     # floor(-499 / 256) = -2; floor(-32385 / 256) = floor(-126.5) = -127
    (0, "int8", [-128, -128]),
])
def test_worked_example(out_shift, output, expected):
    layer = layer_of([[2, -3], [127, -128]], [10, -1], out_shift, output)
    assert dense_forward(layer, np.array([[-128, 127]], np.int8)).tolist() == [expected]


def test_largest_product_and_ties():
    # -128 * -128 = 16384 is the largest product of two int8 values; bias 4 adds to it.
    layer = layer_of([[-128], [-128]], [0, 4], out_shift=3, output="acc")
    assert dense_forward(layer, np.array([[-128]], np.int8)).tolist() == [[16384, 16388]]
    layer = layer_of([[1], [-1]], [0, 0], out_shift=2)
    # 6/4 = 1.5 -> 2, -6/4 = -1.5 -> -1 (round half up)
    assert dense_forward(layer, np.array([[6]], np.int8)).tolist() == [[2, -1]]


@pytest.mark.parametrize("seed, D, M, out_shift, output", [
    (1, 7, 5, 9, "int8"), (2, 64, 3, 14, "int8"), (3, 1, 1, 0, "acc"), (4, 33, 8, 0, "acc")])
def test_random_layers_match_the_loops(seed, D, M, out_shift, output):
    rng = np.random.default_rng(seed)
    layer = layer_of(rng.integers(-128, 128, (M, D)), rng.integers(-2**31, 2**31, M, dtype=np.int64),
                     out_shift, output)
    x = rng.integers(-128, 128, (200, D)).astype(np.int8)
    x[0], x[1] = -128, 127
    expected = [ref_forward(layer, row) for row in x.tolist()]
    assert dense_forward(layer, x).tolist() == expected
    assert run_golden(make_config([layer]), x).tolist() == expected
