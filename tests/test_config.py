"""Config files (docs/spec.md sections 4 and 5): round trip, stable id, rejection of bad input, hardware defaults.

Bad configs are written to disk by the test itself (json + np.savez), not by save_config,
so the loader is checked against files it did not produce. Every rejection must name
the layer, the field, the offending value and the rule.
"""
import json
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.model.array_files import read_npy
from nomac.model.config import load_config, make_config, save_config
from nomac.model.dense_spec import DenseLayer
from nomac.model.lut_spec import LutLayer, resolve_hardware
from nomac.model.operator_layers import AddLayer, LayerNormLayer, SelectTokenLayer
from npz_cases import npy_header, npy_of, zip_of

# Three layer shapes, one per encoder: (D, M, C, K).
SHAPES = {"l2": (12, 6, 3, 8), "l1": (16, 3, 2, 16), "tree": (12, 5, 4, 8)}


def random_arrays(rng, encoder, D, M, C, K) -> dict:
    V, L = D // C, K.bit_length() - 1
    arrays = {"tables": rng.integers(-128, 128, (C, K, M), dtype=np.int8),
              "bias": rng.integers(-2**31, 2**31, M, dtype=np.int64).astype(np.int32)}
    if encoder == "tree":
        arrays["split_dims"] = rng.integers(0, V, (C, L), dtype=np.int32)
        arrays["thresholds"] = rng.integers(-128, 128, (C, K - 1), dtype=np.int8)
    else:
        arrays["prototypes"] = rng.integers(-128, 128, (C, K, V), dtype=np.int8)
    return arrays


def lut_params(name, encoder, D, M, C, K, **more) -> dict:
    return {"name": name, "kind": "lut", "in_features": D, "out_features": M, "codebooks": C,
            "centroids": K, "encoder": encoder, "out_shift": 7, **more}


def build_layer(name, encoder, seed, hw=None, **descriptive) -> LutLayer:
    D, M, C, K = SHAPES[encoder]
    params = lut_params(name, encoder, D, M, C, K, **descriptive)
    if hw is not None:
        params["hw"] = hw
    arrays = random_arrays(np.random.default_rng(seed), encoder, D, M, C, K)
    return LutLayer.from_json(f"layer '{name}'", params, arrays,
                              ("description", "input_scale", "output_scale"))


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def assert_same_arrays(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------------
# Round trip and the stable id

HW_CHOICES = {"l2": {"in_lanes": 3, "encoder_lanes": 2, "memory": "ram", "bias_bits": 32},
              "l1": {"table_reads": 1, "pipeline": False},
              "tree": {"out_lanes": 5, "memory": "rom"}}


@pytest.mark.parametrize("encoder", ["l2", "l1", "tree"])
def test_round_trip_keeps_everything(tmp_path, encoder):
    layer = build_layer("fc", encoder, seed=11, hw=HW_CHOICES[encoder],
                        description="a layer", input_scale=0.125, output_scale=0.5)
    config = make_config([layer], description="round trip")
    path = save_config(config, tmp_path / "model.json")
    loaded = load_config(path)

    (back,) = loaded.layers
    assert back.params_json() == layer.params_json()
    assert back.hw_given == HW_CHOICES[encoder]
    assert back.hw == layer.hw
    assert back.extra == {"description": "a layer", "input_scale": 0.125, "output_scale": 0.5}
    assert loaded.extra == {"description": "round trip"}
    assert_same_arrays(back.arrays(), layer.arrays())
    assert loaded.config_id == config.config_id
    assert loaded.source == str(path)
    # the arrays a loaded config hands out cannot be changed behind the validation's back
    for array in back.arrays().values():
        assert not array.flags.writeable


def test_round_trip_of_a_model_with_every_encoder(tmp_path):
    layers = [build_layer(f"layer_{e}", e, seed=i) for i, e in enumerate(SHAPES)]
    config = make_config(layers)
    loaded = load_config(save_config(config, tmp_path / "model.json"))
    assert [l.name for l in loaded.layers] == ["layer_l2", "layer_l1", "layer_tree"]
    assert_same_arrays(loaded.arrays(), config.arrays())
    assert sorted(loaded.arrays()) == sorted(
        ["layer_l2/tables", "layer_l2/bias", "layer_l2/prototypes",
         "layer_l1/tables", "layer_l1/bias", "layer_l1/prototypes",
         "layer_tree/tables", "layer_tree/bias", "layer_tree/split_dims", "layer_tree/thresholds"])
    assert loaded.config_id == config.config_id


@pytest.mark.parametrize("encoder", ["l2", "l1", "tree"])
def test_saving_is_byte_reproducible(tmp_path, monkeypatch, encoder):
    config = make_config([build_layer("fc", encoder, seed=3, hw=HW_CHOICES[encoder])])
    first = save_config(config, tmp_path / "a" / "model.json")
    # a year later by the clock: nothing of the time may reach the files (zip stamps)
    real_time, real_localtime = time.time, time.localtime
    monkeypatch.setattr(time, "time", lambda: real_time() + 366 * 86400)
    monkeypatch.setattr(time, "localtime", lambda t=None: real_localtime(time.time() if t is None else t))
    second = save_config(config, tmp_path / "b" / "model.json")
    monkeypatch.undo()
    again = save_config(load_config(first), tmp_path / "c" / "model.json")
    files = [snapshot(p.parent) for p in (first, second, again)]
    assert sorted(files[0]) == ["model.json", "model.npz"]
    assert files[0] == files[1] == files[2]
    # the JSON points at its arrays by a path relative to itself
    assert json.loads(first.read_text())["arrays"] == "model.npz"


def test_config_id_does_not_depend_on_the_process(tmp_path):
    """Two interpreters with different hash seeds compute the same id."""
    config = make_config([build_layer(f"layer_{e}", e, seed=5) for e in SHAPES])
    path = save_config(config, tmp_path / "model.json")
    script = "import sys; from nomac.model.config import load_config; print(load_config(sys.argv[1]).config_id)"
    for seed in ("1", "12345"):
        result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                                env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        assert result.stdout.strip() == config.config_id
    assert len(config.config_id) == 16 and int(config.config_id, 16) >= 0


def _changed_entry(name: str, array: np.ndarray, rng, V: int) -> np.ndarray:
    """A copy of `array` with one entry changed to another value that is still valid."""
    changed = np.array(array, copy=True)
    index = tuple(int(rng.integers(0, n)) for n in array.shape)
    if name == "split_dims":
        changed[index] = (changed[index] + 1) % V
    elif changed.dtype == np.int8:
        changed[index] = changed[index] + 1 if changed[index] < 127 else -128
    else:
        changed[index] = changed[index] + 1 if changed[index] < 2**31 - 1 else 0
    return changed


@pytest.mark.parametrize("encoder", ["l2", "l1", "tree"])
def test_config_id_follows_every_array_entry_and_parameter(encoder):
    D, M, C, K = SHAPES[encoder]
    layer = build_layer("fc", encoder, seed=21)
    base = make_config([layer]).config_id
    rng = np.random.default_rng(22)
    params = lut_params("fc", encoder, D, M, C, K)
    for name, array in layer.arrays().items():
        arrays = {**layer.arrays(), name: _changed_entry(name, array, rng, D // C)}
        other = LutLayer.from_json("x", params, arrays)
        assert make_config([other]).config_id != base, name
    for key, value in (("out_shift", 8), ("output", "acc"), ("name", "fc2")):
        other = LutLayer.from_json("x", {**params, key: value}, dict(layer.arrays()))
        assert make_config([other]).config_id != base, key
    # the same arithmetic built twice hashes the same
    assert make_config([LutLayer.from_json("x", params, dict(layer.arrays()))]).config_id == base


@pytest.mark.parametrize("encoder", ["l2", "l1", "tree"])
def test_config_id_ignores_hardware_and_descriptions(tmp_path, encoder):
    config = make_config([build_layer("fc", encoder, seed=31)])
    base = config.config_id
    assert config.with_hw({"in_lanes": 1, "table_reads": 1, "memory": "ram", "bias_bits": 32}).config_id == base

    path = save_config(config, tmp_path / "model.json")
    document = json.loads(path.read_text())
    document["description"] = "top-level words"
    document["input_scale"] = 0.25
    document["layers"][0].update(description="layer words", input_scale=0.5, output_scale=2.0,
                                 hw={"pipeline": False, "out_lanes": 2})
    path.write_text(json.dumps(document))
    loaded = load_config(path)
    assert loaded.layers[0].hw.pipeline is False
    assert loaded.layers[0].extra["output_scale"] == 2.0
    assert loaded.config_id == base

    # an explicit "output": "int8" is the default spelled out: the same arithmetic
    document["layers"][0].pop("output", None)
    path.write_text(json.dumps(document))
    assert load_config(path).config_id == base


# ---------------------------------------------------------------------------------------------
# Bad input: every rejection names the layer, the field, the value and the rule.
#
# The base config is a chain of two layers written by the test: "enc" (l2, D=12, M=6, C=3,
# K=8, so V=4) and "tr" (tree, D=6, M=5, C=2, K=4, so V=3 and L=2).

ENC = (12, 6, 3, 8)
TR = (6, 5, 2, 4)


class Draft:
    """A config on its way to disk; cases edit the document, the arrays or the raw bytes.

    `members` replaces or adds .npz members by name ("enc/tables.npy" -> (bytes,
    compression)); `patch_npz` edits the finished .npz bytes (zip structures)."""

    def __init__(self):
        rng = np.random.default_rng(1234)
        self.document = {"format": "nomac/1", "arrays": "model.npz",
                         "layers": [lut_params("enc", "l2", *ENC), lut_params("tr", "tree", *TR)]}
        self.arrays = {f"enc/{k}": v for k, v in random_arrays(rng, "l2", *ENC).items()}
        self.arrays.update({f"tr/{k}": v for k, v in random_arrays(rng, "tree", *TR).items()})
        self.json_text = None
        self.npz_bytes = None
        self.members = {}
        self.patch_npz = None

    def write(self, folder: Path) -> Path:
        path = folder / "model.json"
        text = self.json_text if self.json_text is not None else json.dumps(self.document, indent=2)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        npz = folder / "model.npz"
        if self.npz_bytes is not None:
            npz.write_bytes(self.npz_bytes)
        elif self.members:
            entries = {f"{key}.npy": (npy_of(array), zipfile.ZIP_DEFLATED) for key, array in self.arrays.items()}
            entries.update(self.members)
            npz.write_bytes(zip_of([(name, *entry) for name, entry in entries.items()]))
        else:
            np.savez(npz, **self.arrays)
        if self.patch_npz is not None:
            npz.write_bytes(self.patch_npz(npz.read_bytes()))
        return path


def member(name: str, data: bytes, method=zipfile.ZIP_DEFLATED):
    def edit(draft):
        draft.members[name] = (data, method)
    return edit


def patched_npz(patch):
    def edit(draft):
        draft.patch_npz = patch
    return edit


def set_directory_size(data: bytes, size: int) -> bytes:
    """The end of central directory record (zip APPNOTE 4.3.16) keeps the directory's size at offset 12."""
    at = data.rfind(b"PK\x05\x06")
    return data[:at + 12] + size.to_bytes(4, "little") + data[at + 16:]


def set_encrypted(data: bytes) -> bytes:
    """Bit 0 of the general purpose flag (APPNOTE 4.3.12, offset 8 of a central directory
    header) marks a member encrypted; set it on the first member."""
    at = data.find(b"PK\x01\x02")
    return data[:at + 8] + bytes([data[at + 8] | 1]) + data[at + 9:]


def param(layer: int, key: str, value):
    def edit(draft):
        draft.document["layers"][layer][key] = value
    return edit


def hw(layer: int, **choices):
    return param(layer, "hw", choices)


def array(key: str, value):
    def edit(draft):
        draft.arrays[key] = value
    return edit


def both(*edits):
    def edit(draft):
        for one in edits:
            one(draft)
    return edit


def drop_array(key: str):
    def edit(draft):
        del draft.arrays[key]
    return edit


def rename_param(layer: int, old: str, new: str):
    def edit(draft):
        params = draft.document["layers"][layer]
        params[new] = params.pop(old)
    return edit


def drop_param(layer: int, key: str):
    def edit(draft):
        del draft.document["layers"][layer][key]
    return edit


def top(key: str, value):
    def edit(draft):
        draft.document[key] = value
    return edit


def raw_json(text: str | bytes):
    def edit(draft):
        draft.json_text = text
    return edit


def raw_npz(data: bytes):
    def edit(draft):
        draft.npz_bytes = data
    return edit


def bias_with(index: int, value: int, M=ENC[1]):
    bias = np.zeros(M, dtype=np.int32)
    bias[index] = value
    return bias


def split_dims_with(index, value):
    split = np.zeros((TR[2], TR[3].bit_length() - 1), dtype=np.int32)
    split[index] = value
    return split


E, T = "layer 'enc'", "layer 'tr'"
BAD = [
    # arrays: dtype, shape, presence, ranges
    ("tables int16", array("enc/tables", np.zeros((3, 8, 6), np.int16)),
     [E, "array 'tables' dtype", "'int16'", "must be int8"]),
    ("tables shape", array("enc/tables", np.zeros((3, 8, 5), np.int8)),
     [E, "array 'tables' shape", "[3, 8, 5]", "must be [3, 8, 6]"]),
    ("tables missing a codebook", array("enc/tables", np.zeros((2, 8, 6), np.int8)),
     [E, "array 'tables' shape", "[2, 8, 6]", "must be [3, 8, 6]"]),
    ("prototypes missing", drop_array("enc/prototypes"),
     [E, "array 'prototypes'", "None", "missing", "[3, 8, 4]"]),
    ("prototypes shape", array("enc/prototypes", np.zeros((3, 8, 3), np.int8)),
     [E, "array 'prototypes' shape", "[3, 8, 3]", "must be [3, 8, 4]"]),
    ("prototypes for a tree", array("tr/prototypes", np.zeros((2, 4, 3), np.int8)),
     [T, "array", "'prototypes'", "unknown", "split_dims, thresholds"]),
    ("thresholds for an l2 encoder", array("enc/thresholds", np.zeros((3, 7), np.int8)),
     [E, "array", "'thresholds'", "unknown", "prototypes"]),
    ("unknown array of a layer", array("enc/codebook", np.zeros(3, np.int8)),
     [E, "array", "'codebook'", "unknown"]),
    ("split_dims == V", array("tr/split_dims", split_dims_with((1, 0), 3)),
     [T, "array 'split_dims'[1, 0]", "= 3", "0..2"]),
    ("split_dims negative", array("tr/split_dims", split_dims_with((0, 1), -1)),
     [T, "array 'split_dims'[0, 1]", "= -1", "0..2"]),
    ("split_dims float", array("tr/split_dims", np.zeros((2, 2), np.float64)),
     [T, "array 'split_dims' dtype", "'float64'", "integer dtype"]),
    ("split_dims shape", array("tr/split_dims", np.zeros((2, 3), np.int32)),
     [T, "array 'split_dims' shape", "[2, 3]", "must be [2, 2]"]),
    ("thresholds shape", array("tr/thresholds", np.zeros((2, 4), np.int8)),
     [T, "array 'thresholds' shape", "[2, 4]", "must be [2, 3]"]),
    ("thresholds int32", array("tr/thresholds", np.zeros((2, 3), np.int32)),
     [T, "array 'thresholds' dtype", "'int32'", "must be int8"]),
    ("bias int64", array("enc/bias", np.zeros(6, np.int64)),
     [E, "array 'bias' dtype", "'int64'", "must be int32"]),
    ("bias shape", array("tr/bias", np.zeros(6, np.int32)),
     [T, "array 'bias' shape", "[6]", "must be [5]"]),
    # parameters
    ("D not divisible by C", param(0, "codebooks", 5),
     [E, "codebooks", "= 5", "must divide in_features (12)"]),
    ("K not a power of two", param(0, "centroids", 12),
     [E, "centroids", "= 12", "power of two in 2..256"]),
    ("K too large", param(0, "centroids", 512),
     [E, "centroids", "= 512", "power of two in 2..256"]),
    ("K too small", param(0, "centroids", 1),
     [E, "centroids", "= 1", "power of two in 2..256"]),
    ("K a string", param(0, "centroids", "8"),
     [E, "centroids", "'8'", "must be an integer"]),
    ("unknown encoder", param(0, "encoder", "l3"),
     [E, "encoder", "'l3'", "must be one of", "'l2', 'l1', 'tree'"]),
    ("negative out_shift", param(1, "out_shift", -1),
     [T, "out_shift", "= -1", "must be >= 0"]),
    ("out_shift too large", param(1, "out_shift", 63),
     [T, "out_shift", "= 63", "must be <= 62"]),
    ("fractional out_shift", param(0, "out_shift", 1.5),
     [E, "out_shift", "= 1.5", "must be an integer"]),
    ("boolean out_shift", param(0, "out_shift", True),
     [E, "out_shift", "= True", "must be an integer"]),
    ("float in_features", param(0, "in_features", 12.0),
     [E, "in_features", "= 12.0", "must be an integer"]),
    ("zero out_features", param(0, "out_features", 0),
     [E, "out_features", "= 0", "must be >= 1"]),
    ("unknown output", param(0, "output", "int16"),
     [E, "output", "'int16'", "must be one of", "'int8', 'acc'"]),
    ("typo in a field", rename_param(0, "codebooks", "codebook"),
     [E, "field", "'codebook'", "unknown", "codebooks"]),
    ("missing parameter", drop_param(1, "in_features"),
     [T, "in_features", "None", "missing"]),
    # the "hw" section
    ("unknown hw key", hw(0, lanes=2),
     [E, "hw key", "'lanes'", "unknown", "in_lanes"]),
    ("hw not an object", param(0, "hw", [1, 2]),
     [E, "hw", "[1, 2]", "must be an object"]),
    ("encoder_lanes not a power of two", hw(0, encoder_lanes=3),
     [E, "hw.encoder_lanes", "= 3", "power of two in 1..8"]),
    ("encoder_lanes beyond K", hw(0, encoder_lanes=16),
     [E, "hw.encoder_lanes", "= 16", "power of two in 1..8"]),
    ("encoder_lanes 0", hw(0, encoder_lanes=0),
     [E, "hw.encoder_lanes", "= 0", "power of two in 1..8"]),
    ("encoder_lanes on a tree", hw(1, encoder_lanes=2),
     [T, "hw.encoder_lanes", "= 2", "only l1/l2 encoders"]),
    ("boolean encoder_lanes on a tree", hw(1, encoder_lanes=True),
     [T, "hw.encoder_lanes", "= True", "must be an integer"]),
    ("bias_bits with rom", hw(0, memory="rom", bias_bits=16),
     [E, "hw.bias_bits", "= 16", "only applies to memory 'ram'"]),
    ("bias_bits with default memory", hw(0, bias_bits=16),
     [E, "hw.bias_bits", "= 16", "only applies to memory 'ram'"]),
    ("bias above bias_bits", both(hw(0, memory="ram", bias_bits=8), array("enc/bias", bias_with(2, 128))),
     [E, "array 'bias'[2]", "= 128", "8-bit bias memory", "hw.bias_bits"]),
    ("bias below bias_bits", both(hw(0, memory="ram", bias_bits=8), array("enc/bias", bias_with(5, -129))),
     [E, "array 'bias'[5]", "= -129", "8-bit bias memory", "hw.bias_bits"]),
    ("bias_bits too small", hw(0, memory="ram", bias_bits=1),
     [E, "hw.bias_bits", "= 1", "must be >= 2"]),
    ("bias_bits too large", hw(0, memory="ram", bias_bits=33),
     [E, "hw.bias_bits", "= 33", "must be <= 32"]),
    ("in_lanes 0", hw(0, in_lanes=0),
     [E, "hw.in_lanes", "= 0", "must be >= 1"]),
    ("in_lanes beyond D", hw(0, in_lanes=13),
     [E, "hw.in_lanes", "= 13", "must be <= 12"]),
    ("out_lanes beyond M", hw(1, out_lanes=6),
     [T, "hw.out_lanes", "= 6", "must be <= 5"]),
    ("table_reads beyond M", hw(0, table_reads=7),
     [E, "hw.table_reads", "= 7", "must be <= 6"]),
    ("unknown memory", hw(0, memory="flash"),
     [E, "hw.memory", "'flash'", "must be one of", "'rom', 'ram'"]),
    ("pipeline not a bool", hw(0, pipeline=1),
     [E, "hw.pipeline", "= 1", "must be true or false"]),
    # layers
    ("duplicate layer names", param(1, "name", "enc"),
     ["layers[1]", "name", "'enc'", "unique"]),
    ("name starting with a digit", param(0, "name", "1fc"),
     ["layers[0]", "name", "'1fc'", "identifier"]),
    ("name with a slash", param(0, "name", "enc/a"),
     ["layers[0]", "name", "'enc/a'", "identifier"]),
    ("missing name", drop_param(1, "name"),
     ["layers[1]", "name", "None", "identifier"]),
    ("unknown kind", param(0, "kind", "conv"),
     [E, "kind", "'conv'", "must be one of lut"]),
    ("layer not an object", top("layers", [42]),
     ["layers[0]", "layer", "42", "must be a JSON object"]),
    ("empty layers", top("layers", []),
     ["layers", "[]", "non-empty list"]),
    # the file as a whole
    ("wrong format", top("format", "nomac/2"),
     ["format", "'nomac/2'", "must be 'nomac/1'"]),
    ("unknown top-level field", top("model", "x"),
     ["top-level field", "'model'", "unknown"]),
    ("missing npz", top("arrays", "missing.npz"),
     ["arrays", "missing.npz", "file not found"]),
    ("arrays not a string", top("arrays", 3),
     ["arrays", "= 3", "must name the .npz file"]),
    ("npz of random bytes", raw_npz(np.random.default_rng(7).integers(0, 256, 600, np.uint8).tobytes()),
     ["arrays", "model.npz", "must be a readable .npz"]),
    ("empty npz", raw_npz(b""),
     ["arrays", "model.npz", "must be a readable .npz"]),
    ("npz key of no layer", array("ghost/tables", np.zeros((3, 8, 6), np.int8)),
     ["model.npz", "array key", "'ghost/tables'", "belongs to no layer"]),
    # '  "arrays" "model.npz"': two spaces, then "arrays" in columns 3..10, a space in
    # column 11, so the parser meets the second string in column 12 where it wants ':'.
    ("malformed JSON", raw_json('{\n  "format": "nomac/1",\n  "arrays" "model.npz"\n}\n'),
     ["JSON line 3 column 12", "Expecting ':' delimiter", "must be valid JSON"]),
    ("top level a list", raw_json("[1, 2]\n"),
     ["top level", "'list'", "must be a JSON object"]),
    # malformed JSON files (model/json_files.py): each a ConfigError, never a traceback.
    # b'{"format": "nomac/1", "description": "caf': 1 + 8 + 2 + 9 + 2 + 13 + 2 + 4 = 41 bytes before the Latin-1 e
    ("config not UTF-8", raw_json(b'{"format": "nomac/1", "description": "caf\xe9"}'),
     ["byte 41", "b'\\xe9'", "a config file must be UTF-8 text"]),
    ("config not UTF-8 after a byte-order mark",
     raw_json(b'\xef\xbb\xbf{"format": "nomac/1", "description": "caf\xe9"}'),
     ["byte 44", "b'\\xe9'", "a config file must be UTF-8 text"]),
    ("nesting deeper than the parser", raw_json("[" * 100_000),
     ["JSON nesting", "may be at most 32 levels deep"]),
    ("33 levels of nesting", raw_json('{"description": ' + "[" * 32 + "]" * 32 + "}"),
     ["JSON nesting = 33", "may be at most 32 levels deep"]),
    ("integer of 5000 digits", raw_json('{"format": 1' + "0" * 4999 + "}"),
     ["JSON number = '1" + "0" * 36 + "...'", "may have at most 100 digits"]),
    ("NaN", top("description", float("nan")),
     ["JSON value = 'NaN'", "is not JSON (numbers must be finite)"]),
    ("Infinity", top("input_scale", float("inf")),
     ["JSON value = 'Infinity'", "is not JSON"]),
    ("-Infinity", param(0, "output_scale", -float("inf")),
     ["JSON value = '-Infinity'", "is not JSON"]),
    ("a number that overflows a float", raw_json('{"format": "nomac/1", "input_scale": 1e999}'),
     ["JSON number = '1e999'", "must be finite"]),
    ("duplicate key", raw_json('{"format": "nomac/1", "arrays": "model.npz", "format": "nomac/1"}'),
     ["JSON key = 'format'", "appears twice in one object"]),
    # where "arrays" may point: inside the config's folder only
    ("absolute arrays path", top("arrays", "/etc/model.npz"),
     ["arrays = '/etc/model.npz'", "relative to the config's folder", "no absolute path"]),
    ("arrays path climbing out", top("arrays", "../model.npz"),
     ["arrays = '../model.npz'", "relative to the config's folder", "no '..'"]),
    ("arrays path with .. inside", top("arrays", "sub/../model.npz"),
     ["arrays = 'sub/../model.npz'", "no '..'"]),
    ("arrays path with a NUL", top("arrays", "model\0.npz"),
     ["arrays = 'model\\x00.npz'", "must name the .npz file"]),
    # .npz members (model/array_files.py): headers are checked before any data is read
    ("object array (a pickle)", member("enc/tables.npy", npy_of(np.array([1, None], object), allow_pickle=True)),
     ["model.npz: array 'enc/tables' dtype = 'object'", "must be bool, integer or float",
      "must be a readable .npz of plain numeric arrays (no Python objects)"]),
    ("complex array", member("enc/tables.npy", npy_of(np.zeros((3, 8, 6), np.complex64))),
     ["array 'enc/tables' dtype = 'complex64'", "must be bool, integer or float"]),
    ("string array", member("enc/bias.npy", npy_of(np.array(["a", "bc"]))),
     ["array 'enc/bias' dtype = '<U2'", "must be bool, integer or float"]),
    ("structured array", member("enc/bias.npy", npy_of(np.zeros(6, [("a", "<i4")]))),
     ["array 'enc/bias' dtype = \"[('a', '<i4')]\"", "must be bool, integer or float"]),
    ("header claiming 10^12 elements", member("enc/tables.npy", npy_header(
        {"descr": "|i1", "fortran_order": False, "shape": (10**12,)})),
     ["array 'enc/tables' shape = [1000000000000]", "declares 1000000000000 bytes of int8",
      "an array may hold at most 67108864 bytes (64 MiB)"]),
    ("header with a negative dimension", member("enc/tables.npy", npy_header(
        {"descr": "|i1", "fortran_order": False, "shape": (3, -8, 6)})),
     ["array 'enc/tables' shape = [3, -8, 6]", "must have no negative dimensions"]),
    ("data shorter than its header says", member("enc/tables.npy", npy_header(
        {"descr": "|i1", "fortran_order": False, "shape": (3, 8, 6)}) + bytes(100)),
     ["array 'enc/tables' data = '100 bytes'", "must be the 144 bytes its .npy header declares (int8 [3, 8, 6])"]),
    ("data longer than its header says", member("enc/tables.npy", npy_header(
        {"descr": "|i1", "fortran_order": False, "shape": (3, 8, 6)}) + bytes(150)),
     ["array 'enc/tables' data = '150 bytes'", "must be the 144 bytes"]),
    ("header longer than numpy reads safely", member("enc/tables.npy", npy_header(
        {"descr": "|i1", "fortran_order": False, "shape": (3, 8, 6)}, pad=20_000) + bytes(144)),
     ["array 'enc/tables' = 'no valid .npy header'", "must be a readable .npz of plain numeric arrays"]),
    ("member that is no .npy", member("enc/tables.npy", b"this is text, not an array"),
     ["array 'enc/tables' = 'no valid .npy header'", "must be a readable .npz"]),
    (".npy version 3.0", member("enc/tables.npy", npy_header(
        {"descr": "|i1", "fortran_order": False, "shape": (3, 8, 6)}, version=(3, 0)) + bytes(144)),
     ["array 'enc/tables' .npy version = '3.0'", "must be 1.0 or 2.0"]),
    ("member not named .npy", member("enc/notes.txt", b"notes"),
     ["model.npz: member = 'enc/notes.txt'", "must be an .npy array named '<layer>/<array>.npy'"]),
    ("member twice", lambda draft: setattr(draft, "npz_bytes", zip_of(
        [(f"{key}.npy", npy_of(a), zipfile.ZIP_DEFLATED) for key, a in draft.arrays.items()]
        + [("enc/bias.npy", npy_of(draft.arrays["enc/bias"]), zipfile.ZIP_STORED)])),
     ["model.npz: member = 'enc/bias.npy'", "appears twice"]),
    ("bzip2 member", member("enc/tables.npy", npy_of(np.zeros((3, 8, 6), np.int8)), zipfile.ZIP_BZIP2),
     ["array 'enc/tables' compression = 12", "must be stored (0) or deflated (8)"]),
    ("encrypted member", patched_npz(set_encrypted),
     ["model.npz: array 'enc/tables' = 'encrypted'", "not encrypted"]),
    ("zip directory beyond its bound", patched_npz(lambda data: set_directory_size(data, 5 << 20)),
     ["arrays", "model.npz", "zip directory of at most 4194304 bytes (4096 arrays)", "it declares 5242880"]),
]


@pytest.mark.parametrize("edit, expected", [pytest.param(e, x, id=i) for i, e, x in BAD])
def test_bad_config_is_rejected_with_a_full_message(tmp_path, edit, expected):
    draft = Draft()
    edit(draft)
    path = draft.write(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message
    assert "allow_pickle" not in message and "unsafe" not in message, "numpy's advice must not be relayed"
    assert snapshot(tmp_path) == before, "loading a bad config changed the files"


def test_the_unedited_draft_loads(tmp_path):
    """The base of the bad-input cases is itself valid, so each case tests one thing."""
    config = load_config(Draft().write(tmp_path))
    assert [l.name for l in config.layers] == ["enc", "tr"]
    assert_same_arrays(config.arrays(), Draft().arrays)


def test_missing_json_file(tmp_path):
    with pytest.raises(ConfigError, match=r"file = .*nothing\.json.*: cannot be read"):
        load_config(tmp_path / "nothing.json")


def test_edges_that_are_valid(tmp_path):
    """The values next to each rejected one load: the rules are not off by one."""
    draft = Draft()
    draft.document["layers"][0].update(centroids=256, hw={"memory": "ram", "bias_bits": 8, "encoder_lanes": 256,
                                                          "in_lanes": 12, "table_reads": 6})
    draft.arrays["enc/tables"] = np.zeros((3, 256, 6), np.int8)
    draft.arrays["enc/prototypes"] = np.zeros((3, 256, 4), np.int8)
    draft.arrays["enc/bias"] = np.array([127, -128, 0, 0, 0, 0], np.int32)
    draft.document["layers"][1].update(centroids=2, out_shift=62, hw={"encoder_lanes": 1, "out_lanes": 5})
    draft.arrays["tr/tables"] = np.zeros((2, 2, 5), np.int8)
    draft.arrays["tr/split_dims"] = np.array([[0], [2]], np.uint8)   # any integer dtype, 0 and V-1
    draft.arrays["tr/thresholds"] = np.array([[-128], [127]], np.int8)
    config = load_config(draft.write(tmp_path))
    enc, tr = config.layers
    assert (enc.centroids, enc.hw.bias_bits, enc.hw.encoder_lanes) == (256, 8, 256)
    assert (tr.centroids, tr.out_shift, tr.hw.encoder_lanes) == (2, 62, 1)
    assert tr.split_dims.dtype == np.int32 and tr.split_dims.tolist() == [[0], [2]]


def test_every_corruption_of_the_npz_is_caught_or_harmless(tmp_path):
    """Flip each byte of a real .npz, and cut it at each length: loading either raises
    ConfigError or, when the damage hit bytes that do not matter, gives the same arrays
    (zip CRCs and the header checks leave nothing in between)."""
    config = make_config([build_layer("fc", "tree", seed=8)])
    path = save_config(config, tmp_path / "model.json")
    npz = path.with_suffix(".npz")
    good = npz.read_bytes()
    damaged = [good[:n] for n in range(0, len(good), 3)]
    for i in range(len(good)):
        flipped = bytearray(good)
        flipped[i] ^= 0xFF
        damaged.append(bytes(flipped))
    for data in damaged:
        npz.write_bytes(data)
        try:
            loaded = load_config(path)
        except ConfigError as e:
            # the file itself, or (a damaged member name) the array it no longer provides
            assert "model.npz" in str(e) or "array" in str(e), str(e)
        else:
            assert_same_arrays(loaded.arrays(), config.arrays())


def test_make_config_checks_names_and_top_level_fields():
    layer = build_layer("fc", "l2", seed=1)
    with pytest.raises(ConfigError, match=r"name = 'fc': must be unique"):
        make_config([layer, build_layer("fc", "l1", seed=2)])
    with pytest.raises(ConfigError, match=r"name = '1fc': must be an identifier"):
        make_config([build_layer("1fc", "l2", seed=1)])
    with pytest.raises(ConfigError, match=r"layers = \[\]: must be a non-empty list"):
        make_config([])
    # "format" and "arrays" are written by save_config, not chosen by the caller
    for key in ("format", "arrays", "codebooks"):
        with pytest.raises(ConfigError, match=rf"top-level field = '{key}': unknown"):
            make_config([layer], **{key: "x"})
    assert make_config([layer], description="ok").extra == {"description": "ok"}


# ---------------------------------------------------------------------------------------------
# Hardware defaults (resolve_hardware's docstring): table reads R = min(M, 2) are the
# bottleneck, C * ceil(M / R) cycles per vector; every other lane count is the smallest
# that keeps up with that; memory "rom", pipeline on; bias_bits 32 with "ram", 0 with "rom".

def layer_of(encoder, D, M, C, K, seed=0, name="fc"):
    params = lut_params(name, encoder, D, M, C, K)
    return LutLayer.from_json(f"layer '{name}'", params,
                              random_arrays(np.random.default_rng(seed), encoder, D, M, C, K))


# (encoder, D, M, C, K) -> (table_reads, encoder_lanes, in_lanes, out_lanes), derived by hand:
DEFAULTS = [
    # R = 2, cycles = 3 * 3 = 9; encoder: K / P <= 3 needs P = 4; in ceil(12/9) = 2; out ceil(6/9) = 1
    (("l2", 12, 6, 3, 8), (2, 4, 2, 1)),
    # R = 1 (M = 1), cycles = 16; K / P <= 1 needs P = 16, capped at 8; in 64/16 = 4; out 1
    (("l1", 64, 1, 16, 16), (1, 8, 4, 1)),
    # R = 2, cycles = 1 * 50 = 50; K / P = 2 <= 50 with P = 1; in ceil(4/50) = 1; out ceil(100/50) = 2
    (("l2", 4, 100, 1, 2), (2, 1, 1, 2)),
    # tree: one encoder lane always; R = 2, cycles = 2 * 2 = 4; in 256/4 = 64; out ceil(3/4) = 1
    (("tree", 256, 3, 2, 256), (2, 1, 64, 1)),
    # R = 2, cycles = 8 * 16 = 128; K / P <= 16 needs P = 16, capped at 8; in ceil(512/128) = 4; out 1
    (("l1", 512, 32, 8, 256), (2, 8, 4, 1)),
]


@pytest.mark.parametrize("shape, expected", DEFAULTS)
def test_hardware_defaults(shape, expected):
    layer = layer_of(*shape)
    hw = layer.hw
    assert (hw.table_reads, hw.encoder_lanes, hw.in_lanes, hw.out_lanes) == expected
    assert (hw.memory, hw.pipeline, hw.bias_bits) == ("rom", True, 0)
    assert resolve_hardware(layer, "x", {}) == hw
    assert layer.hw_given == {}
    assert resolve_hardware(layer, "x", {"memory": "ram"}).bias_bits == 32


@pytest.mark.parametrize("seed", range(6))
def test_default_lanes_just_keep_up_with_the_table_reads(seed):
    """The docstring's rule on random shapes: enough lanes to keep up, and no more."""
    rng = np.random.default_rng(seed)
    encoder = ("l2", "l1", "tree")[seed % 3]
    C = int(rng.integers(1, 9))
    D = C * int(rng.integers(1, 9))
    M = int(rng.integers(1, 40))
    K = 2 ** int(rng.integers(1, 9))
    hw = layer_of(encoder, D, M, C, K, seed=seed).hw
    R = hw.table_reads
    assert R == min(M, 2)
    cycles = C * -(-M // R)
    beats_in = lambda lanes: -(-D // lanes)
    beats_out = lambda lanes: -(-M // lanes)
    assert beats_in(hw.in_lanes) <= cycles and (hw.in_lanes == 1 or beats_in(hw.in_lanes - 1) > cycles)
    assert beats_out(hw.out_lanes) <= cycles and (hw.out_lanes == 1 or beats_out(hw.out_lanes - 1) > cycles)
    if encoder == "tree":
        assert hw.encoder_lanes == 1
    else:
        P = hw.encoder_lanes
        assert P & (P - 1) == 0 and K % P == 0
        if P < 8:      # MAX_AUTO_ENCODER_LANES caps the default
            assert C * (K // P) <= cycles and (P == 1 or C * (K // (P // 2)) > cycles)
        else:
            assert P == min(K, 8) and (P == 1 or C * (K // (P // 2)) > cycles)


def test_config_with_hw_rederives_defaults_and_validates():
    config = make_config([layer_of("l2", 12, 6, 3, 8), layer_of("tree", 12, 5, 4, 8, seed=1, name="tr")])

    # one table read: cycles = 3 * 6 = 18, so K / P <= 6 needs P = 2; in ceil(12/18) = 1
    slower = config.with_hw({"table_reads": 1}, ["fc"])
    hw = slower.layer("fc").hw
    assert (hw.table_reads, hw.encoder_lanes, hw.in_lanes, hw.out_lanes) == (1, 2, 1, 1)
    assert slower.layer("fc").hw_given == {"table_reads": 1}
    assert slower.layer("tr").hw == config.layer("tr").hw      # not chosen: untouched
    assert slower.config_id == config.config_id

    # overrides pile up on what was given; a later one replaces an earlier one
    both = slower.with_hw({"in_lanes": 4}, ["fc"]).with_hw({"table_reads": 3}, ["fc"])
    assert both.layer("fc").hw_given == {"table_reads": 3, "in_lanes": 4}
    # table_reads 3: cycles = 3 * 2 = 6, K / P <= 2 needs P = 4; in_lanes stays as given
    assert (both.layer("fc").hw.encoder_lanes, both.layer("fc").hw.in_lanes) == (4, 4)

    # all layers when none is named
    everywhere = config.with_hw({"pipeline": False})
    assert all(layer.hw.pipeline is False for layer in everywhere.layers)

    with pytest.raises(ConfigError, match=r"layer 'fc': hw.table_reads = 0: must be >= 1"):
        config.with_hw({"table_reads": 0}, ["fc"])
    with pytest.raises(ConfigError, match=r"layer 'tr': hw.encoder_lanes = 4: only l1/l2"):
        config.with_hw({"encoder_lanes": 4})
    with pytest.raises(ConfigError, match=r"hw key = 'lane': unknown"):
        config.with_hw({"lane": 4}, ["tr"])
    with pytest.raises(ConfigError, match=r"layer = 'nope': no such layer; the config has fc, tr"):
        config.with_hw({"in_lanes": 1}, ["nope"])
    # the original is unchanged (frozen)
    assert config.layer("fc").hw_given == {} and config.layer("fc").hw.table_reads == 2


def test_overrides_survive_save_and_load(tmp_path):
    config = make_config([layer_of("l1", 16, 3, 2, 16)]).with_hw({"memory": "ram", "bias_bits": 32, "in_lanes": 2})
    loaded = load_config(save_config(config, tmp_path / "model.json"))
    assert loaded.layers[0].hw_given == {"memory": "ram", "bias_bits": 32, "in_lanes": 2}
    assert loaded.layers[0].hw == config.layers[0].hw


# ---------------------------------------------------------------------------------------------
# Limits: sizes are refused from what the files declare, before anything big is read
# (model/json_files.py, model/array_files.py).

def refused(path, *parts) -> str:
    """load_config(path)'s ConfigError message, after checking that it names every part."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message and "allow_pickle" not in message
    return message


def test_a_config_file_of_at_most_4_mib_loads_and_one_byte_more_is_refused(tmp_path):
    path = Draft().write(tmp_path)
    text = path.read_text()
    path.write_text(text + " " * (4 * 2**20 - len(text)))
    assert [l.name for l in load_config(path).layers] == ["enc", "tr"]
    path.write_text(text + " " * (4 * 2**20 - len(text) + 1))
    refused(path, f"file size = {4 * 2**20 + 1}", "a config file may have at most 4194304 bytes (4 MiB)")


def test_an_npz_that_inflates_beyond_the_limit_is_refused_before_inflating(tmp_path):
    """65 MiB of zeros deflate to 66 kB; the zip directory declares the member's size,
    so it is refused without decompressing it (the peak allocation stays far below it)."""
    draft = Draft()
    path = draft.write(tmp_path)
    with zipfile.ZipFile(tmp_path / "model.npz", "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("enc/bomb.npy", "w") as bomb:
            bomb.write(npy_header({"descr": "|i1", "fortran_order": False, "shape": (65 << 20,)}))
            for _ in range(65):
                bomb.write(bytes(1 << 20))
    assert (tmp_path / "model.npz").stat().st_size < 200_000
    with zipfile.ZipFile(tmp_path / "model.npz") as archive:
        declared = sum(info.file_size for info in archive.infolist())
    tracemalloc.start()
    try:
        refused(path, "arrays", "model.npz", "must hold at most 67108864 bytes (64 MiB) uncompressed in all",
                f"its members declare {declared} bytes")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated while refusing"


def test_the_limit_is_on_all_arrays_together(tmp_path):
    """Two members of 40 MiB each: each within the limit, together beyond it."""
    draft = Draft()
    big = npy_header({"descr": "|i1", "fortran_order": False, "shape": (40 << 20,)}) + bytes(40 << 20)
    draft.members.update({"enc/a.npy": (big, zipfile.ZIP_DEFLATED), "enc/b.npy": (big, zipfile.ZIP_DEFLATED)})
    path = draft.write(tmp_path)
    with zipfile.ZipFile(tmp_path / "model.npz") as archive:
        declared = sum(info.file_size for info in archive.infolist())
    assert declared > 80 << 20
    refused(path, "must hold at most 67108864 bytes (64 MiB) uncompressed in all", f"declare {declared} bytes")


def test_an_npz_of_more_than_4096_members_is_refused(tmp_path):
    draft = Draft()
    empty = npy_of(np.zeros(0, np.int8))
    draft.members.update({f"enc/x{i}.npy": (empty, zipfile.ZIP_STORED) for i in range(4097 - len(draft.arrays))})
    refused(draft.write(tmp_path), "must hold at most 4096 arrays; it has 4097 members")


def test_a_zip64_npz_is_refused(tmp_path, monkeypatch):
    """zipfile writes zip64 end records once the directory's offset passes ZIP64_LIMIT;
    lowering the limit while writing makes a small but genuine zip64 archive."""
    draft = Draft()
    path = draft.write(tmp_path)
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 64)
    with zipfile.ZipFile(tmp_path / "model.npz", "w") as archive:
        for key, array in draft.arrays.items():
            archive.writestr(f"{key}.npy", npy_of(array))
    monkeypatch.undo()
    with zipfile.ZipFile(tmp_path / "model.npz") as archive:     # readable, so the refusal is nomac's rule
        assert len(archive.infolist()) == len(draft.arrays)
    refused(path, "model.npz", "not zip64")


def test_files_at_the_edges_of_the_rules_load(tmp_path):
    """32 levels of nesting, a 100-digit integer, a byte-order mark, non-ASCII text, .npy
    version 2.0, Fortran order and stored members are all fine."""
    draft = Draft()
    document = dict(draft.document, description=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
                    input_scale=10**99)
    layers = json.dumps(document["layers"])
    draft.json_text = ("\ufeff" + json.dumps({**document, "layers": "LAYERS", "output_scale": "caf\u00e9"},
                                             ensure_ascii=False).replace('"LAYERS"', layers)).encode()
    tables = draft.arrays["enc/tables"]
    draft.members["enc/tables.npy"] = (npy_header({"descr": "|i1", "fortran_order": True, "shape": tables.shape},
                                                  version=(2, 0)) + tables.tobytes(order="F"), zipfile.ZIP_STORED)
    config = load_config(draft.write(tmp_path))
    assert config.extra["input_scale"] == 10**99 and config.extra["output_scale"] == "caf\u00e9"
    assert_same_arrays(config.arrays(), draft.arrays)


# ---------------------------------------------------------------------------------------------
# Where "arrays" may point: a path relative to the config's folder that stays inside it.

def test_arrays_in_a_subfolder_and_symlinks_inside_the_folder_load(tmp_path):
    draft = Draft()
    path = draft.write(tmp_path)
    (tmp_path / "arrays").mkdir()
    (tmp_path / "model.npz").rename(tmp_path / "arrays" / "model.npz")
    (tmp_path / "link.npz").symlink_to(tmp_path / "arrays" / "model.npz")
    for name in ("arrays/model.npz", "./arrays/model.npz", "link.npz"):
        path.write_text(json.dumps({**draft.document, "arrays": name}))
        assert_same_arrays(load_config(path).arrays(), draft.arrays)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    """The config sits in tmp/config; its .npz, a link, points at tmp/elsewhere/model.npz."""
    draft = Draft()
    (tmp_path / "config").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = draft.write(tmp_path / "config")
    (tmp_path / "config" / "model.npz").rename(tmp_path / "elsewhere" / "model.npz")
    (tmp_path / "config" / "model.npz").symlink_to(tmp_path / "elsewhere" / "model.npz")
    target, folder = (tmp_path / "elsewhere" / "model.npz").resolve(), (tmp_path / "config").resolve()
    refused(path, f"{path}: arrays = 'model.npz'", "relative to the config's folder, inside it",
            f"resolves to {target}, outside {folder}")


def test_a_symlink_loop_is_refused(tmp_path):
    path = Draft().write(tmp_path)
    (tmp_path / "model.npz").unlink()
    (tmp_path / "model.npz").symlink_to(tmp_path / "model.npz")
    refused(path, f"{path}: arrays = 'model.npz'", "must name the .npz file")


# ---------------------------------------------------------------------------------------------
# Single .npy inputs (nomac golden IN.npy, nomac run --inputs): read_npy.

def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_npy_gives_the_array_in_every_layout(tmp_path):
    x = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    for name in ("c.npy", "f.npy"):
        y = read_npy(tmp_path / name, "golden inputs")
        assert y.dtype == np.int8 and y.tolist() == x.tolist()
        assert y.flags.writeable


@pytest.mark.parametrize("case, data, parts", [
    ("object array", npy_of(np.array([{}], object), allow_pickle=True),
     ["golden inputs dtype = 'object'", "must be bool, integer or float",
      "must be a readable .npy of one plain numeric array (no Python objects)"]),
    ("10^12 elements declared", npy_header({"descr": "|i1", "fortran_order": False, "shape": (10**6, 10**6)}),
     ["golden inputs shape = [1000000, 1000000]", "declares 1000000000000 bytes of int8",
      "an array may hold at most 268435456 bytes (256 MiB)"]),
    ("data cut short", npy_header({"descr": "|i1", "fortran_order": False, "shape": (10, 10)}) + bytes(50),
     ["golden inputs data = '50 bytes'", "must be the 100 bytes its .npy header declares (int8 [10, 10])"]),
    ("header beyond numpy's safe size", npy_header({"descr": "|i1", "fortran_order": False, "shape": (2,)},
                                                   pad=20_000) + bytes(2),
     ["golden inputs = 'no valid .npy header'", "must be a readable .npy of one plain numeric array"]),
    ("header cut to one byte by its length field",      # numpy's parser raises tokenize.TokenError
     npy_of(np.zeros(4, np.int8))[:8] + b"\x01" + npy_of(np.zeros(4, np.int8))[9:],
     ["golden inputs = 'no valid .npy header'"]),
    ("random bytes", np.random.default_rng(3).integers(0, 256, 300, np.uint8).tobytes(),
     ["golden inputs = 'no valid .npy header'"]),
    ("an .npz", zip_of([("x.npy", npy_of(np.zeros(3, np.int8)), zipfile.ZIP_STORED)]),
     ["is a .npz archive; golden inputs must be a readable .npy of one plain numeric array"]),
])
def test_read_npy_refuses_what_is_not_one_plain_array(tmp_path, case, data, parts):
    path = write_bytes(tmp_path / "in.npy", data)
    with pytest.raises(ConfigError) as caught:
        read_npy(path, "golden inputs")
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert "allow_pickle" not in message and "\n" not in message


def test_read_npy_names_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"inputs = '.*nothing\.npy': cannot be read \(No such file or directory\)"):
        read_npy(tmp_path / "nothing.npy", "inputs")


# ---------------------------------------------------------------------------------------------
# Whole models (docs/spec.md section 12) are checked when made or loaded, so every command
# refuses the same model with the same message.

def norm(name, features=4):
    return LayerNormLayer.from_json("t", {"name": name, "kind": "layernorm", "features": features, "norm_bits": 7,
                                          "out_shift": 7}, {"weight": np.full(features, 16, np.int16),
                                                            "bias": np.zeros(features, np.int32)})


def add(name, inputs, features=4):
    return AddLayer.from_json("t", {"name": name, "kind": "add", "features": features, "inputs": list(inputs),
                                    "mult_a": 1, "mult_b": 1, "shift": 0}, {})


def select(name, tokens, features):
    return SelectTokenLayer.from_json("t", {"name": name, "kind": "select_token", "tokens": tokens,
                                            "features": features, "index": 0}, {})


def dense(name, D, M, output="int8"):
    return DenseLayer.from_json("t", {"name": name, "kind": "dense", "in_features": D, "out_features": M,
                                      "out_shift": 0, "output": output},
                                {"weights": np.ones((M, D), np.int8), "bias": np.zeros(M, np.int32)})


BAD_MODELS = [
    ("add input of no layer", [norm("ln"), add("res", ["input", "nowhere"])],
     "layer 'res': inputs = 'nowhere': must name an earlier layer or \"input\""),
    ("add input of a later layer", [norm("ln"), add("res", ["ln", "later"]), norm("later")],
     "layer 'res': inputs = 'later': must name an earlier layer or \"input\""),
    # ln gives 4 values a row; a 3-feature layernorm cannot cut 4 into rows of 3
    ("width no multiple of in_features", [norm("ln"), norm("ln3", features=3)],
     "layer 'ln3': input width = 4: must be a multiple of its in_features (3); it is the width of layer 'ln'"),
    # input width 4; select_token of 2 tokens x 2 features gives 2; add(ln: 4, sel: 2)
    ("add of two widths", [norm("ln"), select("sel", 2, 2), add("res", ["ln", "sel"], features=2)],
     "layer 'res': input widths = [4, 2]: must be equal (the outputs of layer 'ln' and layer 'sel')"),
    ("add reading the model input of another width", [norm("ln"), select("sel", 2, 2),
                                                       add("res", ["input", "sel"], features=2)],
     "layer 'res': input widths = [4, 2]: must be equal (the outputs of the model input and layer 'sel')"),
    ("raw accumulators before the last layer", [dense("fc", 4, 4, output="acc"), norm("ln")],
     "layer 'fc': output = 'acc': only the last layer ('ln') may output raw accumulators"),
]


@pytest.mark.parametrize("layers, message", [pytest.param(l, m, id=i) for i, l, m in BAD_MODELS])
def test_a_broken_whole_model_is_refused_when_made_and_when_loaded(tmp_path, layers, message):
    with pytest.raises(ConfigError) as made:
        make_config(layers)
    assert str(made.value) == f"<memory>: {message}"
    # the same model as files, written without save_config (which make_config guards)
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "nomac/1", "arrays": "model.npz",
                                "layers": [layer.params_json() for layer in layers]}))
    np.savez(tmp_path / "model.npz", **{f"{l.name}/{k}": a for l in layers for k, a in l.arrays().items()})
    assert refused(path) == f"{path}: {message}"


def test_whole_models_at_the_edges_of_the_rules_load():
    """Widths that are multiples (2 rows of 2), an add of the model input, acc at the end."""
    config = make_config([norm("ln"), norm("half", features=2), add("res", ["input", "half"]),
                          dense("head", 4, 3, output="acc")])
    assert [l.name for l in config.layers] == ["ln", "half", "res", "head"]


def test_a_chain_of_hardware_layers_is_not_a_dataflow_and_loads_as_before(tmp_path):
    """Without operators, each layer stands alone (nomac verilog builds one design each);
    run_golden checks a chain's widths when it runs one."""
    chain = make_config([dense("a", 4, 6, output="acc"), dense("b", 5, 2)])
    assert [l.name for l in load_config(save_config(chain, tmp_path / "chain.json")).layers] == ["a", "b"]


def test_every_command_refuses_a_broken_model_with_the_same_message(tmp_path, capsys):
    """nomac verilog used to write designs for a model only nomac golden refused."""
    from nomac.cli import main
    layers = [dense("fc", 4, 4), norm("ln"), add("res", ["ln", "nowhere"])]
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "nomac/1", "arrays": "model.npz",
                                "layers": [layer.params_json() for layer in layers]}))
    np.savez(tmp_path / "model.npz", **{f"{l.name}/{k}": a for l in layers for k, a in l.arrays().items()})
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.int8))
    before = snapshot(tmp_path)
    expected = (f"nomac: error: {path}: layer 'res': inputs = 'nowhere': "
                f"must name an earlier layer or \"input\"\n")
    for argv in (["golden", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")],
                 ["verilog", str(path), "-o", str(tmp_path / "rtl")]):
        assert main(argv) == 2
        assert capsys.readouterr().err == expected
    assert snapshot(tmp_path) == before
