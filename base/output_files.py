"""Outputs written whole or not at all.

Every file and design folder nomac writes is first written under a temporary name
beside its target and renamed onto it when complete. A reader never sees a
half-written result, and a failure (bad input found late, an interrupt, a full disk)
leaves the previous result as it was. Targets are checked before any work starts
(`check_file_target`, `check_folder_target`), so a command that cannot write its
result refuses at once instead of after minutes of simulation.
"""
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nomac.base.errors import NomacError

__all__ = ["OutputError", "check_file_target", "check_folder_target", "replaced_file", "replaced_folder",
           "write_text", "write_json", "json_text", "save_npy", "npy_name"]


class OutputError(NomacError):
    """An output path that cannot hold the result (a file where a folder goes, an unwritable place)."""


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _existing_ancestor_is_folder(path: Path, what: str):
    """Every existing ancestor of `path` must be a folder, or its folders cannot be created."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what} {path}: cannot be created: {parent} is a file, not a folder")
            return


def check_file_target(path, what: str) -> Path:
    """`path` can receive a file: not a folder, and its folder exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder; must name a file")
    _existing_ancestor_is_folder(path, what)
    return path


def check_folder_target(path, what: str, is_previous_result=None) -> Path:
    """`path` can receive a result folder: new, empty, or (when `is_previous_result` says
    so) an earlier result of the same command, which it replaces; never a file or a
    folder of someone else's files, which replacing would destroy."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path}: is a file; must name a folder")
    if path.is_dir() and any(path.iterdir()) and not (is_previous_result and is_previous_result(path)):
        raise OutputError(f"{what} {path}: holds files that are not an earlier result of this command; "
                          f"name a new or empty folder")
    _existing_ancestor_is_folder(path, what)
    return path


def _make_parent(path: Path, what: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{what} {path}: its folder {path.parent} cannot be created ({_reason(e)})") from None
    return path.parent


@contextmanager
def replaced_file(path, what: str):
    """Yield a temporary path beside `path`; when the block completes it becomes `path`."""
    path = check_file_target(path, what)
    parent = _make_parent(path, what)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=parent)
    except OSError as e:
        raise OutputError(f"{what} {path}: cannot be written ({_reason(e)})") from None
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def replaced_folder(path, what: str, is_previous_result=None):
    """Yield a temporary folder beside `path`; when the block completes it replaces `path`.

    Linux cannot swap two folders in one step: the old result is renamed aside, the
    new one renamed into place, and the old one removed, so a reader sees the old
    result, for an instant nothing, or the new result; never a mixture.
    """
    path = check_folder_target(path, what, is_previous_result)
    parent = _make_parent(path, what)
    try:
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=parent))
    except OSError as e:
        raise OutputError(f"{what} {path}: cannot be written ({_reason(e)})") from None
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())
        _swap_in(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _swap_in(new: Path, path: Path):
    if not path.exists():
        os.rename(new, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, old / path.name)
    try:
        os.rename(new, path)
    except OSError:
        os.rename(old / path.name, path)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str, what: str) -> Path:
    with replaced_file(path, what) as temporary:
        temporary.write_text(text)
    return Path(path)


def _non_finite_at(value, where="$"):
    """The JSON path of the first NaN or infinity inside `value`, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, inner in items:
        found = _non_finite_at(inner, f"{where}[{key!r}]" if isinstance(key, str) else f"{where}[{key}]")
        if found:
            return found
    return None


def json_text(document, what: str) -> str:
    """Indented JSON of `document`; a NaN or infinity is refused (JSON has neither)."""
    found = _non_finite_at(document)
    if found:
        raise OutputError(f"{what}: value at {found} is not finite; JSON holds only finite numbers")
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def write_json(path, document, what: str) -> Path:
    return write_text(path, json_text(document, what), what)


def npy_name(path) -> Path:
    """The file `np.save` would write for `path`: `.npy` is appended when missing."""
    path = Path(path)
    if path.suffix == ".npy" or path.is_dir() or path.name in ("", ".", ".."):
        return path                 # a folder stays itself, for check_file_target to refuse
    return path.with_name(path.name + ".npy")


def save_npy(path, array: np.ndarray, what: str) -> Path:
    """Save one array as .npy (no pickles) under `npy_name(path)`; return that name."""
    path = npy_name(path)
    with replaced_file(path, what) as temporary:
        with open(temporary, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
    return path
