"""The network engine's table memory in an iCE40UP5K's single-port RAMs (docs/spec.md section 16.2).

The UP5K has four SB_SPRAM256KA, 16K words of 16 bits each (iCE40 UltraPlus SPRAM
usage guide, FPGA-TN-02022): side by side they are one 16K x 64-bit memory, the table
memory of `NetworkLimits`' default `table_words` (hw/network/unit.py's TABLE_WORD_BITS
says why 64). The bitstream cannot initialise SPRAM, which is fine: the host uploads
the program and the tables before a model runs.

An SPRAM has one address for reads and writes, so the table memory's two ports share
it: a write (`write.en`) takes the address, otherwise a read does. The network engine
writes only while idle, through the host, and the host never reads and writes in the
same cycle. DATAOUT is a register inside the SPRAM that changes only on a clock edge
with CHIPSELECT high (yosys's ice40 `cells_sim.v`), so with CHIPSELECT = read or write
the word read stays on `data` through cycles without a read, as the contract asks, and
needs no register of our own. A write leaves `data` undefined until the next read (the
model sets it to x); nothing reads `data` across a write (the host's read-back keeps
`en` high while it takes a word's bytes).
"""
from amaranth import ClockSignal, Const, Module, Mux, Signal
from amaranth.hdl import Instance
from amaranth.lib import wiring

from nomac.hw.network.table_memory import TableMemorySignature
from nomac.hw.network.unit import TABLE_WORD_BITS

__all__ = ["SPRAM_WORDS", "SPRAM_BITS", "SPRAM_BLOCKS", "SpramTableMemory"]

SPRAM_WORDS = 16384               # words of one SB_SPRAM256KA
SPRAM_BITS = 16                   # bits of each
SPRAM_BLOCKS = TABLE_WORD_BITS // SPRAM_BITS       # side by side for one table word: the UP5K's four


class SpramTableMemory(wiring.Component):
    """`depth` (at most 16384) 64-bit words in the four SB_SPRAM256KA of an iCE40UP5K; the
    members of `TableMemorySignature`. Gateware for the iCE40 only (an Instance per SPRAM):
    Amaranth's simulator cannot run it; Icarus can, with yosys's cell models."""

    def __init__(self, depth: int = SPRAM_WORDS):
        if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= SPRAM_WORDS:
            raise ValueError(f"SpramTableMemory: depth = {depth!r}: must be an integer in 1..{SPRAM_WORDS} "
                             f"(the words of one SB_SPRAM256KA)")
        self.depth = depth
        super().__init__(TableMemorySignature(max(1, (depth - 1).bit_length())))

    def elaborate(self, platform):
        m = Module()
        address = Signal(14)                     # SB_SPRAM256KA's ADDRESS: the word, zero-extended
        m.d.comb += address.eq(Mux(self.write.en, self.write.addr, self.read.addr))
        for k in range(SPRAM_BLOCKS):
            lanes = slice(k * SPRAM_BITS, (k + 1) * SPRAM_BITS)
            m.submodules[f"spram{k}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address,
                i_DATAIN=self.write.data[lanes], i_MASKWREN=Const(0b1111, 4), i_WREN=self.write.en,
                i_CHIPSELECT=self.read.en | self.write.en, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),      # POWEROFF is active low
                o_DATAOUT=self.read.data[lanes])
        return m
