"""`nomac run --sim`: the unmodified host driver against the simulated board, through a pty.

The simulated board starts with blank memories, so zero mismatches against the golden
model also prove the upload (and its read-back CRC check) worked. The CI case is a
small tree layer; the slow cases run the bundled examples of every engine kind.
"""
from pathlib import Path

import numpy as np
import pytest

from lut_cases import LutCase
from nomac.board_run import run_on_board
from nomac.cli import main
from nomac.model.config import load_config, save_config
from nomac.model.golden import run_golden

CONFIGS = Path(__file__).resolve().parent.parent / "model" / "configs"


def test_nomac_run_sim_loads_tables_and_matches_the_golden_model(tmp_path, capsys):
    path = save_config(LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}).config(), tmp_path / "tiny.json")
    rng = np.random.default_rng(4)
    inputs = rng.integers(-128, 128, (300, 4)).astype(np.int8)
    inputs[0], inputs[1] = -128, 127
    np.save(tmp_path / "in.npy", inputs)
    assert main(["run", str(path), "--sim", "--inputs", str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy"),
                 "--work-dir", str(tmp_path / "sim"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "300 vectors, 0 mismatches against the golden model" in out
    assert "verified by read-back CRC, 0 reloads" in out
    assert "at 1,000,000 baud on a 12 MHz icebreaker (from simulated cycles)" in out
    outputs = np.load(tmp_path / "out.npy")
    np.testing.assert_array_equal(outputs, run_golden(load_config(path), inputs))
    assert outputs.dtype == np.int8


def test_run_report_projects_throughput_from_simulated_cycles(tmp_path):
    config = LutCase("l1", 6, 9, 2, 4, {"table_reads": 3, "out_lanes": 2}, output="acc").config()
    report = run_on_board(config, count=40, seed=2, work_dir=tmp_path)
    assert report.mismatched_vectors == 0 and report.outputs.shape == (40, 9)
    assert report.counters.errors() == {} and report.link.retries == 0
    p = report.projection
    assert p["board"] == "icebreaker" and p["baud"] == 1_000_000 and p["link_bytes_per_s"] == 100_000
    assert 0 < p["upload_bytes_per_s"] < 100_000 and 0 < p["vectors_per_s"]
    # 40 vectors in one batch: WRITE_INPUTS, RUN, WAIT, then READ_OUTPUTS of 11 vectors each:
    # the accumulators are 33 bits wide, 5 bytes per element, 45 per vector, (512 - 1) // 45 = 11
    assert p["inference_exchanges"] == 3 + 4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lut_l2_small", "lut_tree_small", "dense_small", "shift_q5_small",
                                  "butterfly_mono32"])
def test_bundled_examples_run_on_the_simulated_board(name, tmp_path):
    report = run_on_board(load_config(CONFIGS / f"{name}.json"), count=64, seed=5, work_dir=tmp_path)
    assert report.mismatched_vectors == 0, report.summary()
    assert report.counters.errors() == {}, report.summary()
