"""Generated malformed files for load_config and load_plan (hypothesis, through tests/fuzz.py).

The bases are every bundled config, a small whole model (operators, an add, widths
that must fit) and every bundled plan. A case mutates one of them: the JSON's structure
(fields deleted, replaced by other values or types, renamed), its text (NaN, huge
integers, deep nesting, duplicate keys, bytes that are not UTF-8, truncation), or the
.npz (.npy headers with other shapes, dtypes, Fortran order or versions; data cut or
grown; members dropped, added, renamed, duplicated, stored; the archive's bytes
flipped, cut or replaced). The property: loading succeeds with a valid result (a
config survives save and load with the same id; a plan's settings meet their rules),
or raises NomacError (ConfigError is one) with a one-line message; never another
exception; and the case's files are left untouched.
"""
import io
import json
import shutil
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from fuzz import fuzz_budgets, run_fuzz
from nomac.base.errors import NomacError
from nomac.model.config import load_config, make_config, save_config
from nomac.model.dense_spec import DenseLayer
from nomac.model.operator_layers import AddLayer, GeluLayer, LayerNormLayer
from nomac.model.vit.compression_plan import KINDS, OPTIONS, bundled_plans, load_plan, train_settings
from npz_cases import npy_header, npy_of, zip_of

pytestmark = pytest.mark.filterwarnings("ignore::nomac.model.butterfly_spec.SparseChainWarning")   # mutated chains

CONFIGS = Path(__file__).resolve().parent.parent / "model" / "configs"
VIT_LINEARS = ["patch_embed", *(f"blocks.{i}.{part}" for i in (0, 1) for part in ("qkv", "proj", "fc1", "fc2")),
               "head"]

# Text that json.dumps never writes, put in place of a sentinel string after dumping.
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" + "0" * 5000, "9" * 101, "-0",
              "[" * 3000 + "]" * 3000, '{"a": ' * 40 + "1" + "}" * 40, '"\\ud800"', "2e308"]
SENTINEL = "\u0000raw{}\u0000"


def whole_model():
    """ln (4) -> fc dense 4 -> 4 -> act gelu -> res add(ln, act) -> head dense 4 -> 3 acc."""
    E = 4
    rng = np.random.default_rng(5)
    norm = LayerNormLayer.from_json("t", {"name": "ln", "kind": "layernorm", "features": E, "norm_bits": 7,
                                          "out_shift": 7}, {"weight": np.full(E, 16, np.int16),
                                                            "bias": np.zeros(E, np.int32)})
    fc = DenseLayer.from_json("t", {"name": "fc", "kind": "dense", "in_features": E, "out_features": E,
                                    "out_shift": 4}, {"weights": rng.integers(-128, 128, (E, E), dtype=np.int8),
                                                      "bias": np.zeros(E, np.int32)})
    act = GeluLayer.from_json("t", {"name": "act", "kind": "gelu", "features": E},
                              {"table": np.arange(-128, 128, dtype=np.int8)})
    res = AddLayer.from_json("t", {"name": "res", "kind": "add", "features": E, "inputs": ["ln", "act"],
                                   "mult_a": 1, "mult_b": 1, "shift": 0}, {})
    head = DenseLayer.from_json("t", {"name": "head", "kind": "dense", "in_features": E, "out_features": 3,
                                      "out_shift": 0, "output": "acc"},
                                {"weights": rng.integers(-128, 128, (3, E), dtype=np.int8),
                                 "bias": np.zeros(3, np.int32)})
    return make_config([norm, fc, act, res, head], description="fuzz base")


@pytest.fixture(scope="module")
def config_bases(tmp_path_factory) -> list[tuple[dict, list]]:
    """(JSON document, .npz members as [name, bytes, compression]) of every base config."""
    folder = tmp_path_factory.mktemp("bases")
    paths = sorted(CONFIGS.glob("*.json")) + [save_config(whole_model(), folder / "whole.json")]
    bases = []
    for path in paths:
        document = json.loads(path.read_text())
        with zipfile.ZipFile(path.parent / document["arrays"]) as archive:
            members = [[info.filename, archive.read(info), info.compress_type] for info in archive.infolist()]
        bases.append((document, members))
    return bases


# ---- JSON mutations -----------------------------------------------------------------------

def pick(drawn: int, count: int) -> int:
    """An index below count from a drawn integer. Hypothesis favours small integers, so they
    are spread first (Knuth's multiplicative hash) lest every case edit the first field."""
    return (drawn * 2654435761 + 12345) % 2**32 % count


def nodes(document) -> list[tuple]:
    """Every (container, key) below the root, in a fixed order."""
    found, pending = [], [document]
    while pending:
        container = pending.pop(0)
        keys = list(container) if isinstance(container, dict) else range(len(container))
        for key in keys:
            found.append((container, key))
            if isinstance(container[key], (dict, list)):
                pending.append(container[key])
    return found


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, "", "input", "acc", "ram", "tree",
                                             "nomac/1", "lut", "add", "model.npz", [1, 2, 3, 4, 5], {}]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)

structural_edits = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("replace"), st.integers(0, 10**6), json_values),
    st.tuples(st.just("retype"), st.integers(0, 10**6)),
    st.tuples(st.just("rename"), st.integers(0, 10**6), st.text(max_size=6)),
    st.tuples(st.just("raw"), st.integers(0, 10**6), st.sampled_from(RAW_TOKENS)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6)))
byte_edits = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80",
                                                                         b"\x00", b'"', b"{"])),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)))
# a quarter of the cases also get a byte edit, which mostly ends in a JSON or UTF-8 error
json_mutations = st.tuples(st.lists(structural_edits, min_size=1, max_size=3),
                           st.one_of(st.just([]), st.just([]), st.just([]), st.tuples(byte_edits).map(list)))


def retyped(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return str(value) if isinstance(value, int) else int(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return dict(enumerate(map(str, value)))
    return list(value.values()) if isinstance(value, dict) else 0


def mutated_json(document, mutation) -> bytes:
    """The document's text after the case's structural edits, then its byte edits."""
    document = json.loads(json.dumps(document))
    edits, byte_level = mutation
    raws, duplicates = [], []
    for edit in edits:
        found = nodes(document)
        if not found:
            break
        container, key = found[pick(edit[1], len(found))]
        if edit[0] == "delete":
            del container[key]
        elif edit[0] == "replace":
            container[key] = edit[2]
        elif edit[0] == "retype":
            container[key] = retyped(container[key])
        elif edit[0] == "rename" and isinstance(container, dict):
            container[f"{key}{edit[2]}" if edit[2] else f"{key}_"] = container.pop(key)
        elif edit[0] == "raw":
            container[key] = SENTINEL.format(len(raws))
            raws.append(edit[2])
        elif edit[0] == "duplicate" and isinstance(container, dict):
            duplicates.append(json.dumps(key))
    text = json.dumps(document, indent=1)
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(SENTINEL.format(index)), raw)
    for key in duplicates:               # the key appears once more, with a null value, in its object
        text = text.replace(f"{key}:", f"{key}: null, {key}:", 1)
    data = text.encode()
    for kind, position, *more in byte_level:
        position %= len(data) + 1
        data = data[:position] + more[0] + data[position:] if kind == "insert" else data[:position]
    return data


# ---- .npz mutations -----------------------------------------------------------------------

DESCRS = ["|i1", "<i2", "<i4", "<i8", ">i4", "|u1", "<f4", "<f8", "|b1", "|O", "<U3", "|S2", "<c8", "<M8[s]",
          [("a", "<i4")], "i4", "nonsense", 3]
shapes = st.one_of(st.lists(st.integers(-2, 40), max_size=4).map(tuple),
                   st.sampled_from([(), (0,), (10**12,), (2**40, 2**40), (65 << 20,), (-1,)]),
                   st.sampled_from(["(3,)", [3], None, (1.5,), (True,)]))
npz_edits = st.one_of(
    st.tuples(st.just("header"), st.integers(0, 10**6),
              st.fixed_dictionaries({}, optional={"descr": st.sampled_from(DESCRS), "shape": shapes,
                                                  "fortran_order": st.sampled_from([True, False, 0, "no"])}),
              st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)])),
    st.tuples(st.just("data"), st.integers(0, 10**6), st.integers(-200, 200)),
    st.tuples(st.just("drop"), st.integers(0, 10**6)),
    st.tuples(st.just("rename"), st.integers(0, 10**6),
              st.sampled_from(["ghost/tables.npy", "fc/extra.npy", "fc/tables", "tables.npy", "", "a/b/c.npy"])),
    st.tuples(st.just("extra"), st.sampled_from(["ghost/x.npy", "fc/extra.npy", "notes.txt"]),
              st.sampled_from([np.int8, np.int32, np.float64, object])),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6)),
    st.tuples(st.just("store"), st.integers(0, 10**6)))
archive_edits = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("random"), st.binary(max_size=300)))
npz_mutations = st.tuples(st.lists(npz_edits, max_size=3),
                          st.one_of(st.just([]), st.just([]), st.just([]), st.tuples(archive_edits).map(list)))


def header_of(data: bytes) -> tuple[dict, bytes] | None:
    """A member's .npy 1.0 header (as a dict) and its data; None if it has no valid one
    (an earlier edit of the case spoiled it)."""
    stream = io.BytesIO(data)
    try:
        if np.lib.format.read_magic(stream) != (1, 0):
            return None
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    except ValueError:
        return None
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran_order, "shape": shape}
    return header, data[stream.tell():]


def mutated_npz(members: list, mutation) -> bytes:
    members = [list(entry) for entry in members]
    edits, archive_level = mutation
    for edit in edits:
        kind = edit[0]
        if kind == "extra":
            members.append([edit[1], npy_of(np.zeros(3, edit[2]), allow_pickle=True), zipfile.ZIP_DEFLATED])
            continue
        if not members:
            break
        entry = members[pick(edit[1], len(members))]
        if kind == "header" and header_of(entry[1]) is not None:
            header, data = header_of(entry[1])
            entry[1] = npy_header({**header, **edit[2]}, version=edit[3]) + data
        elif kind == "data":
            entry[1] = entry[1][:edit[2]] if edit[2] < 0 else entry[1] + bytes(edit[2])
        elif kind == "drop":
            members.remove(entry)
        elif kind == "rename":
            entry[0] = edit[2] or "x"          # zipfile refuses an empty name when writing
        elif kind == "duplicate":
            members.append(list(entry))
        elif kind == "store":
            entry[2] = zipfile.ZIP_STORED
    data = zip_of(members)
    for kind, *more in archive_level:
        if kind == "flip" and data:
            position = more[0] % len(data)
            data = data[:position] + bytes([data[position] ^ more[1]]) + data[position + 1:]
        elif kind == "truncate":
            data = data[:more[0] % (len(data) + 1)]
        elif kind == "random":
            data = more[0]
    return data


# ---- the property -------------------------------------------------------------------------

def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def check_refusal(error: NomacError):
    message = str(error)
    assert message and "\n" not in message, message
    assert "allow_pickle" not in message, message


def load_case(folder: Path, files: dict, load):
    """Write the case, load it, and check the property; the folder is removed afterwards."""
    case = Path(tempfile.mkdtemp(dir=folder))
    try:
        for name, data in files.items():
            (case / name).write_bytes(data)
        before = snapshot(case)
        try:
            result = load(case)
        except NomacError as error:
            check_refusal(error)
            result = None
        assert snapshot(case) == before, "loading changed the case's files"
        return result
    finally:
        shutil.rmtree(case)


def check_config(config, folder: Path):
    """A loaded config is valid: it saves, and loads back with the same id and layers."""
    again = load_config(save_config(config, Path(tempfile.mkdtemp(dir=folder)) / "again.json"))
    assert again.config_id == config.config_id
    assert [l.params_json() for l in again.layers] == [l.params_json() for l in config.layers]


@pytest.mark.parametrize("examples", fuzz_budgets(200))
def test_mutated_config_json_loads_or_is_refused_in_one_line(tmp_path, config_bases, examples):
    def check(case):
        index, mutation = case
        document, members = config_bases[index % len(config_bases)]
        files = {"c.json": mutated_json(document, mutation), document["arrays"]: zip_of(members)}
        config = load_case(tmp_path, files, lambda folder: load_config(folder / "c.json"))
        if config is not None:
            check_config(config, tmp_path)
    run_fuzz(examples, st.tuples(st.integers(0, 100), json_mutations), check)


@pytest.mark.parametrize("examples", fuzz_budgets(200))
def test_mutated_npz_loads_or_is_refused_in_one_line(tmp_path, config_bases, examples):
    def check(case):
        index, mutation = case
        document, members = config_bases[index % len(config_bases)]
        files = {"c.json": json.dumps(document).encode(), document["arrays"]: mutated_npz(members, mutation)}
        config = load_case(tmp_path, files, lambda folder: load_config(folder / "c.json"))
        if config is not None:
            check_config(config, tmp_path)
    run_fuzz(examples, st.tuples(st.integers(0, 100), npz_mutations), check)


@pytest.mark.parametrize("examples", fuzz_budgets(100))
def test_mutated_plans_load_or_are_refused_in_one_line(tmp_path, examples):
    plans = [json.loads(path.read_text()) for path in bundled_plans().values()]

    def check(case):
        index, mutation = case
        plan = load_case(tmp_path, {"p.json": mutated_json(plans[index % len(plans)], mutation)},
                         lambda folder: load_plan(folder / "p.json"))
        if plan is not None:
            assert train_settings(asdict(plan.settings), "check", plan.settings) == plan.settings
            for rule in plan.rules:
                assert rule.kind in KINDS and set(rule.options) == set(OPTIONS[rule.kind])
            assert set(plan.kinds(VIT_LINEARS).values()) <= set(KINDS)
    run_fuzz(examples, st.tuples(st.integers(0, 100), json_mutations), check)
