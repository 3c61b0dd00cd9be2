"""How many hardware multipliers a generated design has, counted on its netlist.

The manifest reports it (docs/spec.md section 6.2) so a user can see what a design
asks of a device's DSP blocks before synthesis. Counted by Amaranth's built-in Yosys
after `opt` (which merges identical expressions: Amaranth writes an expression once
per use): every `$mul` cell whose two operands both carry signals. A product with a
constant is not counted; it is shifts and adds (or a DSP block, at synthesis's choice).
"""
import json

from nomac.hw.flat_verilog import run_yosys

__all__ = ["count_multipliers"]


def count_multipliers(text: str, name: str) -> int:
    """The multipliers of the design whose RTLIL is `text` (see `nomac.hw.flat_verilog.flat_rtlil`)."""
    output = run_yosys(text, "proc\nflatten\nopt\nwrite_json", name)
    netlist = json.loads(output[output.index("{"):])

    def variable(bits) -> bool:
        return any(isinstance(bit, int) for bit in bits)       # constant bits are "0"/"1"/"x" strings

    return sum(1 for module in netlist["modules"].values() for cell in module["cells"].values()
               if cell["type"] == "$mul" and variable(cell["connections"]["A"]) and variable(cell["connections"]["B"]))
