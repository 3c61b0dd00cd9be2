"""The `shift` golden model against docs/spec.md sections 2 and 8 written as loops, and `nomac golden` on it.

The reference is the text of docs/spec.md over one vector at a time on Python integers: term =
sign * (x << (shift - p0)), acc = bias + sum of terms, then sat8(rshift_round(acc,
out_shift)) or acc. Directed cases carry their expected values worked out by hand.
"""
import numpy as np
import pytest

from nomac.cli import main
from nomac.model.config import make_config, save_config
from nomac.model.golden import run_golden
from nomac.model.shift_golden import shift_accumulate, shift_forward
from nomac.model.shift_spec import ShiftLayer


def ref_forward(layer: ShiftLayer, x: list) -> list:
    sign, shift, bias = layer.sign.tolist(), layer.shift.tolist(), layer.bias.tolist()
    out = []
    for m in range(layer.out_features):
        acc = bias[m]
        for d in range(layer.in_features):
            acc += sign[m][d] * (x[d] << (shift[m][d] - layer.shift_min))
        if layer.output == "int8":
            s = layer.out_shift
            acc = acc if s == 0 else (acc + 2 ** (s - 1)) // 2 ** s      # Python's // floors
            acc = min(127, max(-128, acc))
        out.append(acc)
    return out


def layer_of(sign, shift, bias, p0, p1, out_shift=0, output="int8", name="sh"):
    sign, shift = np.array(sign, np.int8), np.array(shift, np.int8)
    M, D = sign.shape
    params = {"name": name, "kind": "shift", "in_features": D, "out_features": M, "shift_min": p0,
              "shift_max": p1, "out_shift": out_shift, "output": output}
    return ShiftLayer.from_json(name, params, {"sign": sign, "shift": shift, "bias": np.array(bias, np.int32)})


HAND = dict(sign=[[1, -1, 0], [-1, 1, 1]], shift=[[0, -3, -1], [-2, -3, 0]], bias=[5, -7], p0=-3, p1=0)
X = [100, -128, 7]
# Row 0: 5 + (100 << 3) - (-128 << 0) + 0 = 5 + 800 + 128 = 933.
# Row 1: -7 - (100 << 1) + (-128 << 0) + (7 << 3) = -7 - 200 - 128 + 56 = -279.


@pytest.mark.parametrize("out_shift, output, expected", [
    (0, "acc", [933, -279]),
    (3, "int8", [117, -35]),       # floor(937 / 8) = 117; floor(-275 / 8) = floor(-34.4) = -35
    (2, "int8", [127, -70]),       # floor(935 / 4) = 233 -> 127; floor(-277 / 4) = floor(-69.25) = -70
    (11, "int8", [0, 0]),          # floor((933 + 1024) / 2048) = 0; floor((-279 + 1024) / 2048) = 0
])
def test_worked_example(out_shift, output, expected):
    layer = layer_of(**HAND, out_shift=out_shift, output=output)
    got = shift_forward(layer, np.array([X], np.int8))
    assert got.tolist() == [expected]
    assert got.dtype == (np.int64 if output == "acc" else np.int8)


def test_ties_round_half_up_and_zero_signs_add_nothing():
    # One input, weights +1 and -1 at shift 0 (p0 = p1 = 0); a third output has sign 0 and
    # the largest bias. x = 12 gives acc 12 and -12: 12/8 = 1.5 -> 2 and -12/8 = -1.5 -> -1.
    layer = layer_of([[1], [-1], [0]], [[0], [0], [0]], [0, 0, 2**31 - 1], 0, 0, out_shift=3)
    assert shift_forward(layer, np.array([[12], [-128]], np.int8)).tolist() == [[2, -1, 127], [-16, 16, 127]]
    acc = shift_accumulate(layer, np.array([[12]], np.int8))
    assert acc.tolist() == [[12, -12, 2**31 - 1]]


def test_largest_shifts_are_exact():
    # p0 = -31, p1 = 0: a sign -1 at shift 0 on x = -128 is +128 << 31 = 2^38, 64 times = 2^44,
    # beyond int32 and float32; nothing may be lost.
    D = 64
    layer = layer_of(np.full((1, D), -1), np.zeros((1, D)), [-(2**31)], -31, 0, output="acc")
    acc = shift_forward(layer, np.full((1, D), -128, np.int8))
    assert acc.tolist() == [[2**44 - 2**31]]


@pytest.mark.parametrize("seed, D, M, p0, p1, out_shift, output", [
    (1, 7, 5, -6, 0, 5, "int8"), (2, 16, 3, -15, -2, 12, "int8"), (3, 1, 1, -3, -3, 0, "acc"),
    (4, 32, 9, -31, -25, 30, "int8"), (5, 10, 4, -1, 0, 0, "acc"),
])
def test_random_layers_match_the_loops(seed, D, M, p0, p1, out_shift, output):
    rng = np.random.default_rng(seed)
    layer = layer_of(rng.integers(-1, 2, (M, D)), rng.integers(p0, p1 + 1, (M, D)),
                     rng.integers(-2**31, 2**31, M, dtype=np.int64), p0, p1, out_shift, output)
    x = rng.integers(-128, 128, (200, D)).astype(np.int8)
    x[0], x[1] = -128, 127
    expected = [ref_forward(layer, row) for row in x.tolist()]
    assert shift_forward(layer, x).tolist() == expected
    assert run_golden(make_config([layer]), x).tolist() == expected


def test_nomac_golden_runs_a_shift_config(tmp_path, capsys):
    layer = layer_of(**HAND, out_shift=3)
    path = save_config(make_config([layer]), tmp_path / "sh.json")
    np.save(tmp_path / "in.npy", np.array([X, [0, 0, 0]], np.int8))
    assert main(["golden", str(path), str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy")]) == 0
    assert np.load(tmp_path / "out.npy").tolist() == [[117, -35], [1, -1]]   # [5, -7] >> 3, half up: 1, -1
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'out.npy'}: int8 [2, 2]")
