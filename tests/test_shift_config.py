"""Config files of the `shift` and `dense` kinds: round trip, stable id, rejections, hw defaults.

Bad configs are written by the test itself (json + np.savez). Every rejection must
name the layer, the field, the offending value and the rule (docs/spec.md section 4).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.model.config import load_config, make_config, save_config
from nomac.model.dense_spec import DenseLayer
from nomac.model.shift_spec import ShiftLayer

# "sh": shift, D=6, M=4, shifts [-5, -1]; "dn": dense, D=5, M=3.
SH = {"in_features": 6, "out_features": 4, "shift_min": -5, "shift_max": -1}
DN = {"in_features": 5, "out_features": 3}


def shift_arrays(rng, D=6, M=4, p0=-5, p1=-1):
    return {"sign": rng.integers(-1, 2, (M, D)).astype(np.int8),
            "shift": rng.integers(p0, p1 + 1, (M, D)).astype(np.int8),
            "bias": rng.integers(-2**31, 2**31, M, dtype=np.int64).astype(np.int32)}


def dense_arrays(rng, D=5, M=3):
    return {"weights": rng.integers(-128, 128, (M, D)).astype(np.int8),
            "bias": rng.integers(-2**31, 2**31, M, dtype=np.int64).astype(np.int32)}


class Draft:
    """A two-layer config on its way to disk; cases edit the document or the arrays."""

    def __init__(self):
        rng = np.random.default_rng(5)
        self.document = {"format": "nomac/1", "arrays": "model.npz", "layers": [
            {"name": "sh", "kind": "shift", **SH, "out_shift": 3},
            {"name": "dn", "kind": "dense", **DN, "out_shift": 9, "output": "acc"}]}
        self.arrays = {f"sh/{k}": v for k, v in shift_arrays(rng).items()}
        self.arrays.update({f"dn/{k}": v for k, v in dense_arrays(rng).items()})

    def write(self, folder: Path) -> Path:
        path = folder / "model.json"
        path.write_text(json.dumps(self.document, indent=2))
        np.savez(folder / "model.npz", **self.arrays)
        return path


def param(layer, key, value):
    def edit(draft):
        draft.document["layers"][layer][key] = value
    return edit


def drop_param(layer, key):
    def edit(draft):
        del draft.document["layers"][layer][key]
    return edit


def hw(layer, **choices):
    return param(layer, "hw", choices)


def array(key, value):
    def edit(draft):
        draft.arrays[key] = value
    return edit


def drop_array(key):
    def edit(draft):
        del draft.arrays[key]
    return edit


def both(*edits):
    def edit(draft):
        for one in edits:
            one(draft)
    return edit


def with_entry(shape, dtype, index, value, fill=0):
    a = np.full(shape, fill, dtype=dtype)
    a[index] = value
    return a


S, N = "layer 'sh'", "layer 'dn'"
BAD = [
    ("sign 2", array("sh/sign", with_entry((4, 6), np.int8, (2, 3), 2)),
     [S, "array 'sign'[2, 3]", "= 2", "-1, 0 or +1"]),
    ("sign -2", array("sh/sign", with_entry((4, 6), np.int8, (0, 5), -2)),
     [S, "array 'sign'[0, 5]", "= -2", "-1, 0 or +1"]),
    ("sign int16", array("sh/sign", np.zeros((4, 6), np.int16)),
     [S, "array 'sign' dtype", "'int16'", "must be int8"]),
    ("sign transposed", array("sh/sign", np.zeros((6, 4), np.int8)),
     [S, "array 'sign' shape", "[6, 4]", "must be [4, 6]"]),
    ("shift below shift_min", array("sh/shift", with_entry((4, 6), np.int8, (1, 1), -6, fill=-1)),
     [S, "array 'shift'[1, 1]", "= -6", "[shift_min, shift_max] = [-5, -1]"]),
    ("shift above shift_max", array("sh/shift", with_entry((4, 6), np.int8, (3, 0), 0, fill=-1)),
     [S, "array 'shift'[3, 0]", "= 0", "[-5, -1]"]),
    ("shift missing", drop_array("sh/shift"),
     [S, "array 'shift'", "None", "missing", "[4, 6]"]),
    ("weights for a shift layer", array("sh/weights", np.zeros((4, 6), np.int8)),
     [S, "array", "'weights'", "unknown", "sign, shift, bias"]),
    ("shift_min positive", param(0, "shift_min", 1),
     [S, "shift_min", "= 1", "must be <= 0"]),
    ("shift_min too small", param(0, "shift_min", -33),
     [S, "shift_min = -33: shift_min must be >= -32: shift weights are at most 6 bits, 2^-32 .. 2^0;",
      "export with shift_min >= -32"]),
    ("shift_max positive", param(0, "shift_max", 1),
     [S, "shift_max", "= 1", "must be <= 0"]),
    ("shift_max below shift_min", param(0, "shift_max", -6),
     [S, "shift_max", "= -6", "must be >= shift_min (-5)"]),
    ("shift_min missing", drop_param(0, "shift_min"),
     [S, "shift_min", "None", "missing", "shift_min, shift_max"]),
    ("shift_min a float", param(0, "shift_min", -5.0),
     [S, "shift_min", "= -5.0", "must be an integer"]),
    ("weights int16", array("dn/weights", np.zeros((3, 5), np.int16)),
     [N, "array 'weights' dtype", "'int16'", "must be int8"]),
    ("weights shape", array("dn/weights", np.zeros((3, 4), np.int8)),
     [N, "array 'weights' shape", "[3, 4]", "must be [3, 5]"]),
    ("bias int64", array("dn/bias", np.zeros(3, np.int64)),
     [N, "array 'bias' dtype", "'int64'", "must be int32"]),
    ("bias missing", drop_array("dn/bias"),
     [N, "array 'bias'", "None", "missing", "[3]"]),
    ("shift_min on a dense layer", param(1, "shift_min", -3),
     [N, "field", "'shift_min'", "unknown"]),
    ("dense out_shift 63", param(1, "out_shift", 63),
     [N, "out_shift", "= 63", "must be <= 62"]),
    ("unknown output", param(0, "output", "int4"),
     [S, "output", "'int4'", "'int8', 'acc'"]),
    ("lanes beyond M", hw(0, lanes=5),
     [S, "hw.lanes", "= 5", "must be <= 4"]),
    ("lanes 0", hw(1, lanes=0),
     [N, "hw.lanes", "= 0", "must be >= 1"]),
    ("terms_per_cycle beyond D", hw(1, terms_per_cycle=6),
     [N, "hw.terms_per_cycle", "= 6", "must be <= 5"]),
    ("terms_per_cycle a string", hw(0, terms_per_cycle="2"),
     [S, "hw.terms_per_cycle", "'2'", "must be an integer"]),
    ("a lut hw key", hw(0, table_reads=2),
     [S, "hw key", "'table_reads'", "unknown", "terms_per_cycle"]),
    ("bias_bits with rom", hw(1, bias_bits=16),
     [N, "hw.bias_bits", "= 16", "only applies to memory 'ram'"]),
    ("bias above bias_bits", both(hw(1, memory="ram", bias_bits=8), array("dn/bias", np.array([0, 128, 0], np.int32))),
     [N, "array 'bias'[1]", "= 128", "8-bit bias memory"]),
    ("out_lanes beyond M", hw(1, out_lanes=4),
     [N, "hw.out_lanes", "= 4", "must be <= 3"]),
]


@pytest.mark.parametrize("edit, expected", [pytest.param(e, x, id=i) for i, e, x in BAD])
def test_bad_config_is_rejected_with_a_full_message(tmp_path, edit, expected):
    draft = Draft()
    edit(draft)
    path = draft.write(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_the_unedited_draft_loads_and_its_edges_too(tmp_path):
    draft = Draft()
    config = load_config(draft.write(tmp_path))
    sh, dn = config.layers
    assert isinstance(sh, ShiftLayer) and isinstance(dn, DenseLayer)
    assert (sh.shift_min, sh.shift_max, sh.output, dn.output) == (-5, -1, "int8", "acc")
    # the values next to each rejected one load
    rng = np.random.default_rng(0)
    draft.document["layers"][0].update(shift_min=-32, shift_max=0)
    arrays = shift_arrays(rng, p0=-32, p1=0)
    arrays["shift"][0, :2] = (-32, 0)
    arrays["sign"][1, :2] = (-1, 1)
    draft.arrays.update({f"sh/{k}": v for k, v in arrays.items()})
    draft.document["layers"][1]["hw"] = {"lanes": 3, "terms_per_cycle": 5, "memory": "ram", "bias_bits": 32,
                                         "in_lanes": 5, "out_lanes": 3}
    config = load_config(draft.write(tmp_path))
    assert config.layers[0].shift_span == 32
    assert config.layers[1].hw.terms_per_cycle == 5


def test_round_trip_and_stable_id(tmp_path):
    rng = np.random.default_rng(9)
    sh = ShiftLayer.from_json("sh", {"name": "sh", "kind": "shift", **SH, "out_shift": 3,
                                     "hw": {"lanes": 2, "memory": "ram"}, "input_scale": 0.5},
                              shift_arrays(rng), ("input_scale",))
    dn = DenseLayer.from_json("dn", {"name": "dn", "kind": "dense", **DN, "out_shift": 0, "output": "acc"},
                              dense_arrays(rng))
    config = make_config([sh, dn])
    loaded = load_config(save_config(config, tmp_path / "m.json"))
    assert loaded.config_id == config.config_id
    assert [l.params_json() for l in loaded.layers] == [l.params_json() for l in config.layers]
    for key, value in config.arrays().items():
        assert loaded.arrays()[key].dtype == value.dtype and np.array_equal(loaded.arrays()[key], value), key
    assert loaded.layers[0].hw.memory == "ram" and loaded.layers[0].extra == {"input_scale": 0.5}
    # hardware choices do not change the arithmetic, so not the id; an array entry does
    assert loaded.with_hw({"terms_per_cycle": 1}).config_id == config.config_id
    changed = dict(shift_arrays(np.random.default_rng(9)))
    changed["shift"] = changed["shift"].copy()
    changed["shift"][0, 0] = -5 if changed["shift"][0, 0] != -5 else -4
    other = ShiftLayer.from_json("sh", {"name": "sh", "kind": "shift", **SH, "out_shift": 3}, changed)
    assert make_config([other, dn]).config_id != config.config_id


@pytest.mark.parametrize("kind, D, M, given, expected", [
    # lanes = min(M, 2), terms = min(D, 4); cycles = ceil(M/U) * ceil(D/T); stream lanes keep up
    ("dense", 32, 32, {}, dict(lanes=2, terms_per_cycle=4, in_lanes=1, out_lanes=1)),      # 128 cycles
    ("shift", 3, 1, {}, dict(lanes=1, terms_per_cycle=3, in_lanes=3, out_lanes=1)),        # 1 cycle
    ("dense", 12, 5, {"lanes": 5}, dict(lanes=5, terms_per_cycle=4, in_lanes=4, out_lanes=2)),  # 3 cycles
    ("shift", 9, 4, {"terms_per_cycle": 9}, dict(lanes=2, terms_per_cycle=9, in_lanes=5, out_lanes=2)),  # 2
])
def test_hardware_defaults(kind, D, M, given, expected):
    rng = np.random.default_rng(0)
    if kind == "shift":
        params = {"name": "x", "kind": kind, "in_features": D, "out_features": M, "shift_min": -5,
                  "shift_max": -1, "out_shift": 0, "hw": given}
        layer = ShiftLayer.from_json("x", params, shift_arrays(rng, D, M))
    else:
        params = {"name": "x", "kind": kind, "in_features": D, "out_features": M, "out_shift": 0, "hw": given}
        layer = DenseLayer.from_json("x", params, dense_arrays(rng, D, M))
    assert {key: getattr(layer.hw, key) for key in expected} == expected
    assert (layer.hw.memory, layer.hw.pipeline, layer.hw.bias_bits) == ("rom", True, 0)
    assert layer.params_json().get("hw", {}) == given      # defaults are not written back
