"""Generated bad command lines: every option of every command, found by walking the parser.

A new option inherits these tests: the value-checking types and choices of the parser
are what the cases come from, and an output path option must be classified below
(file or folder) or the inventory test fails. The property of a bad value: status 2,
one line on stderr naming the option, nothing on stdout, nothing written.
"""
import argparse
import importlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from fuzz import fuzz_budgets, run_fuzz
from nomac import cli
from nomac.model.config import load_config
from nomac.model.golden import run_golden

EXAMPLE = str(Path(__file__).resolve().parent.parent / "model" / "configs" / "lut_l2_small.json")

# Positionals that make each command's command line complete apart from the fuzzed option.
POSITIONALS = {"golden": [EXAMPLE, "inputs.npy", "-o", "out.npy"], "verilog": [EXAMPLE, "-o", "design"],
               "sim": [EXAMPLE], "demo": [], "bench": [EXAMPLE], "train": [], "report": [],
               "build": [EXAMPLE], "run": [EXAMPLE]}
# Every option that names something to write: a file or a folder.
OUTPUTS = {("golden", "-o"): "file", ("run", "-o"): "file", ("verilog", "-o"): "design",
           ("demo", "-o"): "design", ("bench", "-o"): "folder", ("train", "-o"): "folder",
           ("report", "-o"): "folder", ("build", "-o"): "folder", ("sim", "--work-dir"): "folder",
           ("demo", "--work-dir"): "folder", ("run", "--work-dir"): "folder", ("bench", "--work-dir"): "folder"}
INPUT_PATHS = {("run", "--inputs"), ("demo", "--config"), ("run", "--limits"), ("build", "--limits"),
               ("bench", "--limits")}


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def value_options():
    """(command, option string, action) of every option that takes a checked value."""
    found = []
    for name, command in commands().items():
        for action in command._actions:
            if action.option_strings and (action.choices or action.type in CHECKED_TYPES):
                found.append((name, action.option_strings[-1], action))
    return found


def whole_numbers_outside(low: int):
    return st.one_of(st.integers(max_value=low - 1).map(str), st.integers(10 ** 18, 10 ** 40).map(str))


NOT_NUMBERS = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e3", "0x10", "1.5", "1_000", "²", "١٢", "--", "+", "5 6"]),
    st.text(st.characters(blacklist_categories=("Nd", "Cs")), min_size=1, max_size=8))
CHECKED_TYPES = {
    cli.positive_int: st.one_of(whole_numbers_outside(1), NOT_NUMBERS),
    cli.non_negative_int: st.one_of(whole_numbers_outside(0), NOT_NUMBERS),
    cli.positive_seconds: st.one_of(st.floats(max_value=0).map(repr), st.sampled_from(["nan", "inf", "-inf", "1e999"]),
                                    st.sampled_from(["", "x", "1s", "--"])),
    cli.positive_mhz: st.one_of(st.floats(max_value=0).map(repr), st.text(st.characters(
        blacklist_categories=("Nd", "Cs")), min_size=1, max_size=8), st.sampled_from(
        ["0", "0.000", "nan", "inf", "1e3", "0x10", "1_000", "12345", "22.1234567", "22.", ".5", "١٢", "5 6"])),
}


def bad_value(action):
    if action.choices:
        return st.text(min_size=1, max_size=10).filter(lambda text: text not in action.choices)
    return CHECKED_TYPES[action.type]


def call(argv, folder: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def assert_refused(argv, folder: Path, named: str):
    before = snapshot(folder)
    status, out, err = call(argv, folder)
    assert status == 2, (argv, status, err)
    assert out == "", (argv, out)
    assert err.startswith("nomac: error: ") and err.count("\n") == 1 and err.endswith("\n"), (argv, err)
    assert named in err, (argv, err)
    assert snapshot(folder) == before, (argv, "wrote files")


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


WORK = ["nomac.hw.verilog_export.write_verilog", "nomac.sim.runner.simulate", "nomac.benchmark.run_benchmark",
        "nomac.butterfly_benchmark.run_butterfly_benchmark", "nomac.equal_throughput.run_comparison",
        "nomac.model.vit.pipeline.run_plan", "nomac.model.vit.report.run_report",
        "nomac.boards.build.build_bitstream", "nomac.board_run.run_on_board",
        "nomac.network_benchmark.run_network_benchmark"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder with inputs and obstacles; the commands' work itself would fail the test at once
    (a refused command never gets there), except the golden model, which is quick."""
    for target in WORK:          # every module first: one imported under a patch would keep it
        importlib.import_module(target.rsplit(".", 1)[0])
    for target in WORK:
        def started(*args, _target=target, **kwargs):
            raise AssertionError(f"{_target} started: the bad input was not refused first")
        monkeypatch.setattr(target, started)
    monkeypatch.chdir(tmp_path)
    np.save("inputs.npy", np.zeros((2, 32), np.int8))
    Path("a_file").write_text("not a folder\n")
    for folder in ("someones_folder", "someones_folder.npy"):
        Path(folder).mkdir()
        Path(folder, "notes.txt").write_text("mine\n")
    return tmp_path


def test_every_option_value_is_checked_when_parsed():
    """No option takes an unchecked number: each is one of the checked types, a choice, a flag,
    a path, or a string checked by its command (--hw, --layer, --plan, --data, --port, --board)."""
    free_text = {"--hw", "--layer", "--plan", "--data", "--port", "--board", "--plans", "--help"}
    for name, command in commands().items():
        for action in command._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            option = action.option_strings[0]
            if action.type is Path:
                assert (name, option) in OUTPUTS or (name, option) in INPUT_PATHS, (name, option)
            elif not (action.choices or action.type in CHECKED_TYPES):
                assert action.option_strings[-1] in free_text, f"nomac {name} {option}: value not checked when parsed"


@pytest.mark.parametrize("examples", fuzz_budgets(300))
def test_a_bad_option_value_is_one_line_naming_the_option(examples, workspace):
    options = value_options()

    def check(case):
        (name, option, action), value = case
        assert_refused([name, *POSITIONALS[name], f"{option}={value}"], workspace, option)

    cases = st.sampled_from(options).flatmap(lambda found: st.tuples(st.just(found), bad_value(found[2])))
    run_fuzz(examples, cases, check)


BAD_TARGETS = {"file": ["someones_folder.npy", "a_file/sub/out.npy", "."],
               "design": ["a_file", "a_file/sub", "someones_folder", "."],
               "folder": ["a_file", "a_file/sub"]}


@pytest.mark.parametrize("name, option, target", [(name, option, target) for (name, option), kind in OUTPUTS.items()
                                                   for target in BAD_TARGETS[kind]])
def test_an_output_that_cannot_take_the_result_is_refused_before_any_work(name, option, target, workspace):
    rest = [EXAMPLE, "inputs.npy"] if name == "golden" else \
        [a for a in POSITIONALS[name] if a not in ("-o", "out.npy", "design")]
    assert_refused([name, *rest, option, target], workspace, target.split("/")[0])


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


GOOD_NPY = npy_bytes(np.arange(-64, 64, dtype=np.int8).reshape(4, 32))
HEADER_END = GOOD_NPY.index(b"\n") + 1


def mutated_npy():
    """A valid input file with one thing changed: a header field, bytes cut, flipped or added."""
    header_fields = st.fixed_dictionaries({
        "descr": st.sampled_from(["|i1", "<i2", "<f4", "|b1", "|O", "<U3", "|V4", "x"]),
        "fortran_order": st.sampled_from([False, True, 1, "no"]),
        "shape": st.one_of(st.lists(st.integers(0, 40), max_size=3).map(tuple),
                           st.sampled_from([(10 ** 12, 32), (-1, 32), (2 ** 63, 1)]))})

    def with_header(fields):
        text = repr(fields).encode() + b" " * 8 + b"\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + GOOD_NPY[HEADER_END:]

    def flipped(position, byte):
        data = bytearray(GOOD_NPY)
        data[position % len(data)] = byte
        return bytes(data)
    return st.one_of(header_fields.map(with_header),
                     st.integers(0, len(GOOD_NPY) - 1).map(lambda n: GOOD_NPY[:n]),
                     st.tuples(st.integers(0, len(GOOD_NPY)), st.integers(0, 255)).map(lambda t: flipped(*t)),
                     st.binary(max_size=64).map(lambda extra: GOOD_NPY + extra),
                     st.binary(max_size=200))


@pytest.mark.parametrize("examples", fuzz_budgets(200))
def test_a_mutated_input_file_gives_the_golden_outputs_or_one_line_and_nothing_written(examples, workspace):
    config = load_config(EXAMPLE)

    def check(data):
        Path("inputs.npy").write_bytes(data)
        Path("out.npy").unlink(missing_ok=True)
        status, out, err = call(["golden", EXAMPLE, "inputs.npy", "-o", "out.npy"], workspace)
        if status == 0:
            x = np.load("inputs.npy", allow_pickle=False)
            np.testing.assert_array_equal(np.load("out.npy", allow_pickle=False), run_golden(config, x))
        else:
            assert status == 2, err
            assert err.startswith("nomac: error: ") and err.count("\n") == 1, err
            assert "inputs.npy" in err and "allow_pickle" not in err, err
            assert not Path("out.npy").exists()

    run_fuzz(examples, mutated_npy(), check)
