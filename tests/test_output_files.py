"""Outputs appear whole or not at all (base/output_files.py), and bad targets are refused first."""
import json
import math

import numpy as np
import pytest

from nomac.base.errors import NomacError
from nomac.base.output_files import (check_file_target, check_folder_target, json_text, replaced_file,
                                replaced_folder, save_npy, write_json)


def test_a_file_appears_only_when_complete_and_a_failure_keeps_the_previous_one(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with replaced_file(target, "result") as temporary:
            temporary.write_text("half")
            assert target.read_text() == "previous"       # a reader sees the old result meanwhile
            raise RuntimeError("interrupted")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]   # no temporary left behind
    with replaced_file(target, "result") as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_a_folder_replaces_an_earlier_result_whole_and_a_failure_keeps_it(tmp_path):
    target = tmp_path / "design"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    previous = lambda folder: (folder / "manifest.json").exists()
    with pytest.raises(KeyboardInterrupt):
        with replaced_folder(target, "design", previous) as staging:
            (staging / "half.v").write_text("")
            raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["manifest.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["design"]
    with replaced_folder(target, "design", previous) as staging:
        (staging / "manifest.json").write_text("new")
        (staging / "top.v").write_text("")
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "top.v"]
    assert (target / "manifest.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["design"]


def test_missing_parent_folders_are_made(tmp_path):
    path = save_npy(tmp_path / "a" / "b" / "out", np.arange(3, dtype=np.int8), "-o")
    assert path == tmp_path / "a" / "b" / "out.npy"            # np.save's name, and the one returned
    np.testing.assert_array_equal(np.load(path), [0, 1, 2])


def refused(call) -> str:
    with pytest.raises(NomacError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_targets_are_refused_with_the_path_and_the_rule(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    assert refused(lambda: check_file_target(tmp_path / "folder", "-o")) == \
        f"-o {tmp_path / 'folder'}: is a folder; must name a file"
    assert refused(lambda: check_folder_target(tmp_path / "file", "-o")) == \
        f"-o {tmp_path / 'file'}: is a file; must name a folder"
    assert refused(lambda: check_file_target(tmp_path / "file" / "sub" / "x.npy", "-o")) == \
        f"-o {tmp_path / 'file' / 'sub' / 'x.npy'}: cannot be created: {tmp_path / 'file'} is a file, not a folder"
    message = refused(lambda: check_folder_target(tmp_path / "folder", "Verilog output folder"))
    assert "holds files that are not an earlier result" in message
    assert (tmp_path / "folder" / "notes.txt").read_text() == "mine"


def test_json_refuses_non_finite_numbers_naming_where_they_are(tmp_path):
    assert json_text({"a": [1, 2.5]}, "manifest") == json.dumps({"a": [1, 2.5]}, indent=2) + "\n"
    message = refused(lambda: write_json(tmp_path / "m.json", {"figures": [1.0, math.nan]}, "manifest"))
    assert message == "manifest: value at $['figures'][1] is not finite; JSON holds only finite numbers"
    assert refused(lambda: json_text({"fmax": math.inf}, "report")).startswith("report: value at $['fmax']")
    assert not (tmp_path / "m.json").exists()
