"""A config array held in an engine memory: ROM baked from the config, or RAM that a
host loads and checks at run time (docs/spec.md section 6.3).

A RAM gets two ports on the engine's signature: `<name>_write` (addr, data, en) and
`<name>_read` (addr, en in; data out one cycle later). The read-back port shares the
datapath's read port (an address multiplexer, no second block-RAM port), so it may
only be used while the engine is `idle`, like the write port.
"""
import numpy as np
from amaranth import Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.engine import memory_ports
from nomac.hw.memory_layout import MemoryLayout


class _DatapathRead:
    """What the datapath drives (addr, en) and sees (data) when the host can read back too."""

    def __init__(self, name: str, addr_width: int, data):
        self.addr = Signal(addr_width, name=f"{name}_addr")
        self.en = Signal(name=f"{name}_en")
        self.data = data


class ParameterMemory:
    def __init__(self, layout: MemoryLayout, array: np.ndarray, writable: bool, attrs: dict | None = None):
        """`attrs`: synthesis attributes of the memory, e.g. {"rom_style": "block"} (yosys, Vivado)."""
        self.layout, self.writable = layout, writable
        self.attrs = dict(attrs or {})
        self.array_shape = tuple(np.shape(array))
        self.init = layout.words(array)
        self.depth = len(self.init)
        self.word_bits = layout.lanes * layout.lane_bits
        self.addr_width = max(1, (self.depth - 1).bit_length())

    @property
    def write_name(self) -> str:
        return f"{self.layout.name}_write"

    @property
    def read_name(self) -> str:
        return f"{self.layout.name}_read"

    def members(self) -> dict:
        """Signature members for the host ports (none for a ROM)."""
        if not self.writable:
            return {}
        shape = unsigned(self.word_bits)
        return {self.write_name: Out(memory.WritePort.Signature(addr_width=self.addr_width, shape=shape)),
                self.read_name: In(wiring.Signature({"addr": Out(self.addr_width), "en": Out(1),
                                                     "data": In(shape)}))}

    def build(self, m: Module, component: wiring.Component):
        """Add the memory to `m` and return the read port the datapath uses (addr, en, data).

        For a RAM, `component` carries the host ports named by `members()`.
        """
        return self.build_ports(m, component, 1)[0]

    def build_ports(self, m: Module, component: wiring.Component, count: int) -> list:
        """Add the memory to `m` with `count` datapath read ports (a datapath reading several
        entries a cycle; synthesis duplicates the block RAM per port); a RAM's host read-back
        shares the first."""
        mem = memory.Memory(shape=unsigned(self.word_bits), depth=self.depth, init=self.init, attrs=self.attrs)
        m.submodules[self.layout.name] = mem
        ports = [mem.read_port() for _ in range(count)]
        if not self.writable:
            return ports
        write, host = memory_ports(component, self)
        write_port = mem.write_port()
        datapath = _DatapathRead(self.layout.name, self.addr_width, ports[0].data)
        m.d.comb += [write_port.addr.eq(write.addr), write_port.data.eq(write.data), write_port.en.eq(write.en),
                     ports[0].addr.eq(Mux(host.en, host.addr, datapath.addr)),
                     ports[0].en.eq(host.en | datapath.en),
                     host.data.eq(ports[0].data)]
        return [datapath, *ports[1:]]

    def describe(self) -> dict:
        return {"name": self.layout.name, "memory": "ram" if self.writable else "rom",
                **self.layout.describe(self.array_shape)}
