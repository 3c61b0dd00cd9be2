"""The `nomac` command line (nomac/cli.py): each subcommand end to end, and its errors.

Bad input must end in exactly one line on stderr, `nomac: error: ...`, naming the
thing that is wrong, exit status 2, and nothing written (README, "From config to
verified hardware").
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lut_cases import LutCase
from nomac.cli import main
from nomac.model.config import load_config, save_config
from nomac.model.golden import run_golden

EXAMPLE = Path(__file__).resolve().parent.parent / "model" / "configs" / "lut_l2_small.json"


def tiny_config(folder: Path) -> Path:
    """D=4, M=5, C=2, K=4 tree layer, R=2: simulates in about a second."""
    return save_config(LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}).config(), folder / "tiny.json")


def test_golden_writes_the_golden_model_outputs(tmp_path, capsys):
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (40, 32)).astype(np.int8)
    x[0], x[1] = -128, 127
    np.save(tmp_path / "in.npy", x)

    assert main(["golden", str(EXAMPLE), str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy")]) == 0

    y = np.load(tmp_path / "out.npy", allow_pickle=False)
    expected = run_golden(load_config(EXAMPLE), x)
    assert y.dtype == expected.dtype == np.int8
    assert y.shape == (40, 32)
    np.testing.assert_array_equal(y, expected)
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'out.npy'}: int8 [40, 32]")


def test_verilog_writes_the_design_and_prints_its_folder(tmp_path, capsys):
    folder = tmp_path / "design"
    assert main(["verilog", str(EXAMPLE), "-o", str(folder)]) == 0

    manifest = json.loads((folder / "manifest.json").read_text())
    expected = {"manifest.json", "nomac_lut_lut0.v", "prototypes.hex", "tables.hex", "bias.hex"}
    assert {p.name for p in folder.iterdir()} == expected
    assert manifest["top"] == "nomac_lut_lut0"
    assert manifest["config_id"] == load_config(EXAMPLE).config_id
    assert {m["init_file"] for m in manifest["memories"]} == {"prototypes.hex", "tables.hex", "bias.hex"}
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"{folder}: {', '.join(sorted(expected))}"


def test_verilog_applies_hw_overrides(tmp_path):
    folder = tmp_path / "design"
    assert main(["verilog", str(EXAMPLE), "-o", str(folder), "--hw", "memory=ram", "--hw", "table_reads=3"]) == 0

    manifest = json.loads((folder / "manifest.json").read_text())
    hw = manifest["layers"][0]["hw"]
    assert (hw["memory"], hw["table_reads"]) == ("ram", 3)
    assert all(m["memory"] == "ram" and set(m["write"]) == {"addr", "data", "en"} for m in manifest["memories"])
    tables = next(m for m in manifest["memories"] if m["name"] == "tables")
    # C=8, K=16, M=32, R=3: 8 * 16 * ceil(32 / 3) = 1408 words of 3 int8 lanes.
    assert (tables["lanes"], tables["depth"], tables["word_bits"]) == (3, 1408, 24)
    assert manifest["cycles_per_vector_bound"] == 86          # ceil(8 * 32 / 3)


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """Input files in the working folder, so messages name them without machine paths."""
    monkeypatch.chdir(tmp_path)
    np.save("float_inputs.npy", np.zeros((3, 32), np.float32))
    np.save("narrow_inputs.npy", np.zeros((3, 31), np.int8))
    np.savez("archive.npz", x=np.zeros((3, 32), np.int8))
    Path("garbage.npy").write_bytes(b"this is not a numpy file\n")
    Path("empty.npy").write_bytes(b"")
    return tmp_path


CONFIG = str(EXAMPLE)
ERRORS = {
    "missing config": (["verilog", "no_such_config.json", "-o", "out"], ["no_such_config.json"]),
    "hw without =": (["verilog", CONFIG, "-o", "out", "--hw", "memory"], ["--hw", "'memory'"]),
    "unknown hw key": (["verilog", CONFIG, "-o", "out", "--hw", "lanes_galore=4"], ["lanes_galore"]),
    "float32 inputs": (["golden", CONFIG, "float_inputs.npy", "-o", "out.npy"], ["dtype", "float32", "int8"]),
    "wrong width": (["golden", CONFIG, "narrow_inputs.npy", "-o", "out.npy"], ["31", "in_features"]),
    "unreadable npy": (["golden", CONFIG, "garbage.npy", "-o", "out.npy"], ["garbage.npy"]),
    "missing npy": (["golden", CONFIG, "no_such_inputs.npy", "-o", "out.npy"], ["no_such_inputs.npy"]),
    "unknown layer": (["verilog", CONFIG, "-o", "out", "--layer", "no_such_layer"], ["no_such_layer", "lut0"]),
    "unknown layer (golden)": (["golden", CONFIG, "narrow_inputs.npy", "-o", "out.npy", "--layer", "no_such_layer"],
                               ["no_such_layer"]),
    "empty npy": (["golden", CONFIG, "empty.npy", "-o", "out.npy"], ["empty.npy"]),
    "npz for npy": (["golden", CONFIG, "archive.npz", "-o", "out.npy"], ["archive.npz"]),
    "no report jobs": (["report", "--jobs", "0", "-o", "out"], ["--jobs", "0", "at least 1"]),
    "negative demo vectors": (["demo", "--vectors", "-5", "-o", "out"], ["--vectors", "'-5'", "at least 1"]),
    "zero run vectors": (["run", CONFIG, "--sim", "--vectors", "0"], ["--vectors", "'0'", "at least 1"]),
    "nan timeout": (["run", CONFIG, "--timeout", "nan"], ["--timeout", "'nan'", "finite", "> 0"]),
    "infinite timeout": (["run", CONFIG, "--timeout", "inf"], ["--timeout", "'inf'", "finite"]),
    "negative timeout": (["run", CONFIG, "--timeout", "-1"], ["--timeout", "'-1'", "> 0"]),
    "negative epochs": (["train", "--epochs", "-1", "-o", "out"], ["--epochs", "'-1'", "at least 0"]),
    "fractional float epochs": (["train", "--float-epochs", "1.5", "-o", "out"], ["--float-epochs", "'1.5'"]),
    "negative sim seed": (["sim", CONFIG, "--seed", "-1"], ["--seed", "'-1'", "at least 0"]),
    "huge vectors": (["sim", CONFIG, "--vectors", "1" * 40], ["--vectors", "at most 18 digits"]),
    "unknown option": (["verilog", CONFIG, "-o", "out", "--lanes", "4"], ["unrecognized", "--lanes"]),
    "bad choice": (["sim", CONFIG, "--sim", "modelsim"], ["--sim", "'modelsim'", "icarus"]),
    "verilog onto a file": (["verilog", CONFIG, "-o", "garbage.npy"], ["garbage.npy", "is a file", "folder"]),
    "verilog into someone's folder": (["verilog", CONFIG, "-o", "."], ["holds files", "new or empty folder"]),
    "verilog under a file": (["verilog", CONFIG, "-o", "empty.npy/design"], ["empty.npy", "is a file"]),
    "golden onto a folder": (["golden", CONFIG, "narrow_inputs.npy", "-o", "."], ["-o", "is a folder"]),
    "bench good then bad": (["bench", CONFIG, "no_such_config.json", "--no-synth", "-o", "bench"],
                            ["no_such_config.json"]),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_input_is_one_line_naming_it_and_status_2(case, inputs, capsys):
    argv, named = ERRORS[case]
    before = sorted(p.name for p in inputs.iterdir())
    try:
        status = main(argv)
    except Exception as error:      # an escaped exception is the bug this test is about
        status = f"{type(error).__name__}: {error}"
    out, err = capsys.readouterr()
    assert status == 2
    assert err.startswith("nomac: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for word in named:
        assert word in err, f"{word!r} not named in {err!r}"
    assert out == ""
    assert sorted(p.name for p in inputs.iterdir()) == before, "an error wrote files"


def test_python_dash_m_nomac_exits_with_status_2_on_bad_input(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nomac", "verilog", "no_such_config.json", "-o", "out"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("nomac: error: no_such_config.json") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_sim_reports_zero_mismatches(tmp_path, capsys):
    config = tiny_config(tmp_path)
    assert main(["sim", str(config), "--vectors", "20", "--work-dir", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if line.startswith("layer fc "))
    assert ", 0 mismatches, 0 protocol errors" in summary


def test_bench_without_synthesis_prints_and_saves_the_cycles_table(tmp_path, capsys):
    config = tiny_config(tmp_path)
    out_dir = tmp_path / "bench"
    assert main(["bench", str(config), "--no-synth", "--vectors", "8", "-o", str(out_dir)]) == 0

    # C=2, K=4, M=5, R=2. Design cycles/vector: the accumulate loop, C * ceil(M/R) = 6, is
    # the slowest stage (4 input beats, 2 tree codes, 5 output beats with one lane each);
    # bound ceil(C*M/R) = 5. Block RAM: R=5 (=M) is 2*4*ceil(5/5) = 8 words of 40 bits;
    # iCE40 16x256 blocks: ceil(40/16)=3 <= 30, ECP5 36x512: ceil(40/36)=2 <= 208, so both
    # allow R=5, which gives ceil(2*5/5) = 2 cycles.
    devices = {"max_table_reads": 5, "bound_at_max_reads": 2}
    rows = json.loads((out_dir / "bench.json").read_text())
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in ("config", "layer", "shape", "design_cycles_per_vector", "bound", "mismatches")} == \
        {"config": "tiny", "layer": "fc", "shape": "tree D4 M5 C2 K4 R2", "design_cycles_per_vector": 6,
         "bound": 5, "mismatches": 0}
    assert row["cycles_per_vector"] == 6.0
    assert row["devices"] == {"ice40-up5k": devices, "ecp5-85f": devices}
    assert not (out_dir / "bench.png").exists()       # no synthesis, nothing to plot

    lines = capsys.readouterr().out.splitlines()
    header = lines.index("cycles per vector (measured in simulation; bound = ceil(C*M/R))")
    assert lines[header + 1].split()[:7] == ["config", "shape", "measured", "design", "bound", "latency",
                                             "mismatch"]
    table_row = lines[header + 2]
    assert table_row.split()[:12] == ["tiny", "tree", "D4", "M5", "C2", "K4", "R2", "6.00", "6", "5",
                                      str(row["latency_cycles"]), "0"]
    assert table_row.endswith("ice40-up5k: R=5 (2), ecp5-85f: R=5 (2)")
    assert f"wrote {out_dir / 'bench.json'}" in lines


def test_golden_prints_the_file_it_wrote(tmp_path, capsys):
    np.save(tmp_path / "in.npy", np.zeros((2, 32), np.int8))
    assert main(["golden", str(EXAMPLE), str(tmp_path / "in.npy"), "-o", str(tmp_path / "logits")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'logits.npy'}: int8 [2, 32]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "logits.npy"]


def test_an_interrupted_verilog_run_leaves_the_previous_design_intact(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "design"
    assert main(["verilog", str(EXAMPLE), "-o", str(folder)]) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("nomac.hw.verilog_export.manifest_for", interrupted)
    assert main(["verilog", str(EXAMPLE), "-o", str(folder), "--hw", "table_reads=2"]) == 130
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["design"]     # no half-written folder beside it
    assert capsys.readouterr().err == "nomac: interrupted\n"
