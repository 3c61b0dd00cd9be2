"""The repository is self-contained: no text in it points at a file outside it, and every
reference into the contract ("docs/spec.md section N") names a section docs/spec.md has.

The contract used to live outside the repository (a shared SPEC file plus an addendum
here); a clone could not read what its own code cited. These tests keep it that way.
"""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "spec.md"
THIS = Path(__file__).resolve()
TEXT_SUFFIXES = {"", ".py", ".md", ".toml", ".sh", ".vlt", ".json", ".cfg", ".txt", ".yml", ".yaml"}

# The contract's former homes outside the repository, the addendum it replaced, and the
# bare name code used to cite the outside file by.
OUTSIDE_NAMES = re.compile(r"\.\./shared|shared/(?:SPEC|STYLE|DATA)|spec_additions|STYLE\.md|DATA\.md|\bSPEC\b")
PARENT_PATH = re.compile(r"(?:\.\./)+[\w.-][\w./-]*")
NUMBER = r"\d+(?:\.\d+)*"
NUMBERS = rf"{NUMBER}(?:(?:, | and | or |-){NUMBER})*"
SPEC_REFERENCE = re.compile(rf"docs/spec\.md`?,? \(?sections? ({NUMBERS})")
INTERNAL_REFERENCE = re.compile(rf"\bsections? ({NUMBERS})")
HEADING = re.compile(rf"^#{{2,6}} ({NUMBER})\.? ", re.MULTILINE)
CONTENTS_ENTRY = re.compile(r"^(\d+)\. \[", re.MULTILINE)


@pytest.fixture(scope="module")
def text_files() -> dict[str, str]:
    """Every tracked or new (not ignored) text file of the checkout: path -> text."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    texts = {}
    for name in listed:
        path = ROOT / name
        if path.suffix not in TEXT_SUFFIXES or not path.is_file() or path.resolve() == THIS:
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


def _numbers(text: str) -> list[str]:
    return re.split(r", | and | or |-", text)


def spec_sections() -> set[str]:
    return set(HEADING.findall(SPEC.read_text()))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def test_the_spec_has_numbered_sections_and_its_contents_list_them():
    text = SPEC.read_text()
    top_level = [n for n in HEADING.findall(text) if "." not in n]
    assert top_level == [str(i) for i in range(1, len(top_level) + 1)]
    assert len(top_level) >= 10
    assert CONTENTS_ENTRY.findall(text) == top_level


def test_no_file_refers_to_a_file_outside_the_repository(text_files):
    offenders = []
    for name, text in text_files.items():
        for match in OUTSIDE_NAMES.finditer(text):
            offenders.append(f"{name}:{_line(text, match.start())}: {match.group()!r}")
        for match in PARENT_PATH.finditer(text):
            target = ((ROOT / name).parent / match.group()).resolve()
            if not target.is_relative_to(ROOT):
                offenders.append(f"{name}:{_line(text, match.start())}: {match.group()!r} leaves the repository")
    assert not offenders, "references outside the repository:\n" + "\n".join(offenders)


def test_every_spec_section_reference_exists(text_files):
    sections = spec_sections()
    missing = []
    for name, text in text_files.items():
        pattern = INTERNAL_REFERENCE if name == "docs/spec.md" else SPEC_REFERENCE
        for match in pattern.finditer(text):
            for number in _numbers(match.group(1)):
                if number not in sections:
                    missing.append(f"{name}:{_line(text, match.start())}: section {number}")
    assert not missing, "references to sections docs/spec.md does not have:\n" + "\n".join(missing)


def test_the_reference_patterns_read_what_they_should():
    """The checks above are only as good as these patterns: pin what they catch."""
    assert [m.group(1) for m in SPEC_REFERENCE.finditer(
        "docs/spec.md section 7.2; `docs/spec.md` sections 3 and 6; docs/spec.md sections 7-13")] == \
        ["7.2", "3 and 6", "7-13"]
    assert _numbers("3 and 6") == ["3", "6"] and _numbers("7-13") == ["7", "13"]
    assert {"1", "2", "6.3", "14.7"} <= spec_sections() and "99" not in spec_sections()
    for outside in ("../shared/SPEC.md", "SPEC section 1", "docs/spec_additions.md", "STYLE.md"):
        assert OUTSIDE_NAMES.search(outside), outside
    for inside in ("CrcSpec", "a spec", "docs/spec.md"):
        assert not OUTSIDE_NAMES.search(inside), inside
