"""The bundled tiny ViTs (model/examples/vit.py) on the simulated network board: images in,
logits out, every logit equal to the golden model's, and two models on one built board.

The board is the iCEBreaker's network board (its limits, boards/network_board.py) under
Verilator behind a pseudo-terminal, driven by the unmodified host through `nomac run`.
The CI run takes 16 test images of each of the two iCEBreaker models, each on the board's
bitstream for its unit kinds (lut, then shift: two builds); the slow run takes the whole
digits test split (359 images) for every bundled model on its board, and a model retrained
with another seed by `nomac train` on ONE build (uploaded, not rebuilt).
"""
import numpy as np
import pytest

from nomac.cli import main
from nomac.model.config import load_config
from nomac.model.examples.vit import bundled_vit
from nomac.model.golden import run_golden
from nomac.model.vit.digits_data import load_dataset


def run_model(path, tmp_path, capsys, images: int, board: str = "icebreaker") -> str:
    out = tmp_path / f"{path.stem}.npy"
    assert main(["run", str(path), "--sim", "--board", board, "--vectors", str(images), "-o", str(out),
                 "--work-dir", str(tmp_path / "sim"), "--quiet"]) == 0
    text = capsys.readouterr().out
    data = load_dataset("digits")
    x, labels = data.int8("test")[:images], data.labels["test"][:images]
    golden = run_golden(load_config(path), x)
    np.testing.assert_array_equal(np.load(out), golden)
    accuracy = 100 * float((golden.argmax(axis=1) == labels).mean())
    assert f"{images} images (digits test split), 0 images (0 logits) differ from the golden model" in text
    assert f"accuracy: board {accuracy:.2f} %, golden {accuracy:.2f} %" in text
    return text


def test_the_demo_and_the_shift_model_run_bit_exactly_on_their_boards(tmp_path, capsys):
    """`nomac demo` (the LUT model), then the shift model, which gets the iCEBreaker's shift bitstream."""
    assert main(["demo", "--images", "16", "--work-dir", str(tmp_path / "sim")]) == 0
    text = capsys.readouterr().out
    data = load_dataset("digits")
    golden = run_golden(load_config(bundled_vit("lut_train_ice40_all")), data.int8("test")[:16])
    accuracy = 100 * float((golden.argmax(axis=1) == data.labels["test"][:16]).mean())
    assert "16 images (digits test split), 0 images (0 logits) differ from the golden model" in text
    assert f"accuracy: board {accuracy:.2f} %, golden {accuracy:.2f} %" in text
    for board in ("icebreaker", "ulx3s-85f"):
        assert f"projected on a {board} at 1 Mbaud" in text
    run_model(bundled_vit("shift"), tmp_path, capsys, 16)
    assert len(list((tmp_path / "sim" / "builds").iterdir())) == 2        # the lut and the shift bitstream


@pytest.mark.slow
@pytest.mark.parametrize("plan, board", [("lut_train_ice40_all", "icebreaker"), ("shift", "icebreaker"),
                                         ("lut_train_v1_k8", "ulx3s-85f"), ("mixed", "ulx3s-85f")])
def test_every_bundled_model_on_the_whole_test_split(plan, board, tmp_path, capsys):
    run_model(bundled_vit(plan), tmp_path, capsys, 359, board)


@pytest.mark.slow
def test_a_model_retrained_with_another_seed_runs_on_the_same_build(tmp_path, capsys):
    assert main(["train", "--plan", "lut_train_ice40_all", "--seed", "1", "--float-epochs", "4", "--epochs", "1",
                 "-o", str(tmp_path / "vit"), "--quiet"]) == 0
    capsys.readouterr()
    run_model(bundled_vit("lut_train_ice40_all"), tmp_path, capsys, 16)
    run_model(tmp_path / "vit" / "lut_train_ice40_all_seed1.json", tmp_path, capsys, 16)
    assert len(list((tmp_path / "sim" / "builds").iterdir())) == 1
