"""A config array held in an engine memory: ROM baked from the config, or RAM whose
write port lets a host load new contents at run time (SPEC section 3 "hw")."""
import numpy as np
from amaranth import Module
from amaranth.hdl import unsigned
from amaranth.lib import memory
from amaranth.lib.wiring import Out

from nomac.hw.memory_layout import MemoryLayout


class ParameterMemory:
    def __init__(self, layout: MemoryLayout, array: np.ndarray, writable: bool):
        self.layout, self.writable = layout, writable
        self.array_shape = tuple(np.shape(array))
        self.init = layout.words(array)
        self.depth = len(self.init)
        self.word_bits = layout.lanes * layout.lane_bits

    @property
    def write_name(self) -> str:
        return f"{self.layout.name}_write"

    def write_member(self):
        """The component-signature member of the write port (inputs: addr, data, en)."""
        return Out(memory.WritePort.Signature(addr_width=max(1, (self.depth - 1).bit_length()),
                                              shape=unsigned(self.word_bits)))

    def build(self, m: Module, write_port=None) -> memory.Memory:
        """Add the memory to `m`; connect the component's write-port interface if RAM."""
        mem = memory.Memory(shape=unsigned(self.word_bits), depth=self.depth, init=self.init)
        m.submodules[self.layout.name] = mem
        if self.writable:
            port = mem.write_port()
            m.d.comb += [port.addr.eq(write_port.addr), port.data.eq(write_port.data),
                         port.en.eq(write_port.en)]
        return mem

    def describe(self) -> dict:
        return {"name": self.layout.name, "memory": "ram" if self.writable else "rom",
                **self.layout.describe(self.array_shape)}
