"""The butterfly golden model against docs/spec.md section 11 written as loops, and its edge cases.

`reference` walks the nonzero rule of docs/spec.md section 11.1 entry by entry (block b, row group i,
column group j, diagonal k) with Python integers: no numpy reshapes, no shared code
with the golden model or the generator.
"""
import numpy as np
import pytest

from butterfly_cases import ButterflyCase
from nomac.model.butterfly_golden import butterfly_forward, factor_accumulate
from nomac.model.config import save_config
from nomac.model.golden import run_golden


def rshift_round(a, s):
    return a if s == 0 else (a + (1 << (s - 1))) >> s       # Python >> is floor division by 2^s


def reference(layer, x):
    out = []
    for vector in x.tolist():
        values = vector
        for index, f in enumerate(layer.factors):
            p, q, r, s, t = f.shape
            acc = [int(f.bias[row]) for row in range(p)]
            for b in range(q // (s * t)):
                for i in range(r):
                    for j in range(s):
                        for k in range(t):
                            row, column = b * r * t + i * t + k, b * s * t + j * t + k
                            if f.weights == "int8":
                                term = int(f.w[row, j]) * values[column]
                            else:   # docs/spec.md section 8: sign * (x << (shift - shift_min)), in units of 2^shift_min
                                term = int(f.sign[row, j]) * (values[column] << (int(f.shift[row, j]) - f.shift_min))
                            acc[row] += term
            last = index == len(layer.factors) - 1
            if last and layer.output == "acc":
                values = acc
            else:
                values = [min(127, max(-128, rshift_round(a, f.out_shift))) for a in acc]
        out.append(values)
    return np.array(out, dtype=np.int64)


CASES = [
    ButterflyCase("classic16", ((16, 16, 2, 2, 1), (16, 16, 2, 2, 2), (16, 16, 2, 2, 4), (16, 16, 2, 2, 8))),
    ButterflyCase("mixed16", ((16, 16, 2, 2, 1), (16, 16, 2, 2, 2), (16, 16, 2, 2, 4), (16, 16, 2, 2, 8)),
                  weights=("shift", "int8", "shift", "int8"), seed=3),
    ButterflyCase("rect", ((6, 8, 3, 4, 1), (3, 6, 1, 2, 3)), output="acc", seed=1),
    ButterflyCase("bulge", ((32, 16, 2, 1, 1), (32, 32, 2, 2, 2), (32, 32, 2, 2, 4), (16, 32, 2, 4, 8)),
                  out_shift=4, seed=2),
    ButterflyCase("single", ((1, 5, 1, 5, 1),), weights=("shift",), out_shift=0, seed=4),
    ButterflyCase("wide_t", ((24, 12, 2, 1, 6), (12, 24, 1, 2, 12)), seed=5),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_golden_matches_the_spec_loops(case):
    layer = case.layer()
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (40, layer.in_features)).astype(np.int8)
    x[0], x[1] = 127, -128
    expected = reference(layer, x)
    got = butterfly_forward(layer, x)
    assert got.dtype == (np.int64 if layer.output == "acc" else np.int8)
    assert np.array_equal(got, expected)


def test_intermediate_factors_saturate_and_round_half_up():
    # one factor [2, 2, 2, 1, 1] (each output copies its input times w) then an identity-like one
    case = ButterflyCase("sat", ((2, 1, 2, 1, 1), (2, 2, 1, 1, 2)))
    layer = case.layer()
    w0 = np.array([[127], [3]], dtype=np.int8)
    layer = layer.with_arrays({"w0": w0, "bias0": np.array([0, 32], np.int32),
                               "w1": np.array([[1], [1]], np.int8), "bias1": np.zeros(2, np.int32)})
    outputs = butterfly_forward(layer, np.array([[127], [-128], [0], [-11]], np.int8), return_intermediates=True)
    # factor 0, out_shift 6: 127*127 = 16129 -> 252 -> 127 (saturated); 3*127 + 32 = 413 -> 6.45 -> 6
    # -128*127 = -16256 -> -254 -> -128; 3*-128 + 32 = -352 -> -5.5 -> -5 (half up); 3*-11 + 32 = -1 -> 0
    assert outputs[0].tolist() == [[127, 6], [-128, -5], [0, 1], [-22, 0]]
    # factor 1, out_shift 6: 127 -> 2 (1.98), -128 -> -2, 6 -> 0 (0.09), 32 rounds up: no such value here
    assert outputs[1].tolist() == [[2, 0], [-2, 0], [0, 0], [0, 0]]


def test_shift_terms_are_exact_in_units_of_2_to_the_shift_min():
    case = ButterflyCase("shift", ((1, 2, 1, 2, 1),), weights=("shift",))
    layer = case.layer().with_arrays({"sign0": np.array([[1, -1]], np.int8),
                                      "shift0": np.array([[0, -5]], np.int8),
                                      "bias0": np.array([7], np.int32)})
    # shift_min = -5: x0 * 2^5 - x1 * 2^0 + 7
    assert factor_accumulate(layer.factors[0], np.array([[3, -128]], np.int8)).tolist() == [[3 * 32 + 128 + 7]]


def test_run_golden_and_cli_reach_the_butterfly_kind(tmp_path):
    from nomac.cli import main
    config = CASES[2].config()
    path = save_config(config, tmp_path / "rect.json")
    x = np.random.default_rng(0).integers(-128, 128, (9, 8)).astype(np.int8)
    assert np.array_equal(run_golden(config, x), butterfly_forward(config.layers[0], x))
    np.save(tmp_path / "x.npy", x)
    assert main(["golden", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), reference(config.layers[0], x))
