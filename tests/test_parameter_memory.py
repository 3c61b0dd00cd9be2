"""hw/memory_layout.py and hw/parameter_memory.py: an array packed into words, held in ROM or RAM.

Word packing is checked against docs/spec.md section 6.3 worked by hand (select,
subtract offset, zero-pad, reshape, transpose, row-major words; lane i at bits
[w*i + w-1 : w*i]); the memories on Amaranth's simulator against the port rules of
the same section: a read registered on the edge with `en` high appears after it, a
write lands on the edge with `en` high, and the host's read-back port shares the
datapath's read port.
"""
import numpy as np
import pytest
from amaranth import Module
from amaranth.back import rtlil
from amaranth.hdl import unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from amaranth_streams import simulate
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.parameter_memory import ParameterMemory

# ---------------------------------------------------------------- word packing


def test_steps_run_in_the_documented_order():
    # [[1, -2, 3], [4, 5, -6]] -> select columns 1..2: [[-2, 3], [5, -6]] -> minus offset 1:
    # [[-3, 2], [4, -7]] -> pad two zero columns (not offset): [[-3, 2, 0, 0], [4, -7, 0, 0]]
    # -> reshape (2, 2, 2) -> transpose (1, 0, 2): [[[-3, 2], [4, -7]], [[0, 0], [0, 0]]]
    # -> words of 2 four-bit lanes: (-3, 2) = 0x2d, (4, -7) = 0x94, 0, 0.
    layout = MemoryLayout("m", "a", lanes=2, lane_bits=4, signed=True, select=((0, 2), (1, 3)), offset=1,
                          pad=((0, 0), (0, 2)), reshape=(2, 2, 2), transpose=(1, 0, 2))
    array = np.array([[1, -2, 3], [4, 5, -6]])
    assert layout.elements(array).tolist() == [[-3, 2], [4, -7], [0, 0], [0, 0]]
    assert layout.words(array) == [0x2D, 0x94, 0, 0]
    assert layout.depth(array.shape) == 4


def test_unsigned_lanes_pack_from_bit_zero():
    layout = MemoryLayout("m", "a", lanes=3, lane_bits=3, signed=False)
    assert layout.words(np.array([[1, 7, 5], [0, 0, 1]])) == [1 | 7 << 3 | 5 << 6, 1 << 6]


def test_extreme_signed_lanes():
    layout = MemoryLayout("m", "a", lanes=2, lane_bits=8, signed=True)
    assert layout.words(np.array([-128, 127, -1, 0])) == [0x7F80, 0x00FF]


@pytest.mark.parametrize("signed, values, bounds", [(True, [-9], "[-8, 7]"), (True, [8], "[-8, 7]"),
                                                    (False, [-1], "[0, 15]"), (False, [16], "[0, 15]")])
def test_a_value_outside_its_lane_is_refused(signed, values, bounds):
    layout = MemoryLayout("bias", "b", lanes=1, lane_bits=4, signed=signed)
    with pytest.raises(ValueError, match=rf"memory 'bias': array 'b' has values outside \{bounds}, "
                                         r"the range of its 4-bit lanes"):
        layout.words(np.array(values))


def test_offset_brings_values_into_unsigned_lanes():
    layout = MemoryLayout("shift", "shift", lanes=2, lane_bits=3, signed=False, offset=-6)
    assert layout.words(np.array([-6, 0, -1, -5])) == [0 | 6 << 3, 5 | 1 << 3]


def test_manifest_entry_describes_the_same_layout():
    layout = MemoryLayout("m", "a", lanes=2, lane_bits=4, signed=True, select=((0, 2), (1, 3)), offset=1,
                          pad=((0, 0), (0, 2)), reshape=(2, 2, 2), transpose=(1, 0, 2))
    entry = layout.describe((2, 3))
    assert entry == {"array": "a", "depth": 4, "lanes": 2, "lane_bits": 4, "signed": True, "word_bits": 8,
                     "select": [[0, 2], [1, 3]], "pad": [[0, 0], [0, 2]], "reshape": [2, 2, 2],
                     "transpose": [1, 0, 2], "offset": 1}
    assert MemoryLayout.from_manifest({"name": "m", **entry}) == layout


# ---------------------------------------------------------------- memories


class MemoryHarness(wiring.Component):
    """A component holding one ParameterMemory, its datapath read port brought out as
    `addr`, `en` and `data` beside the memory's own host ports."""

    def __init__(self, parameters: ParameterMemory):
        self.parameters = parameters
        super().__init__({"addr": In(parameters.addr_width), "en": In(1), "data": Out(parameters.word_bits),
                          **parameters.members()})

    def elaborate(self, platform):
        m = Module()
        port = self.parameters.build(m, self)
        m.d.comb += [port.addr.eq(self.addr), port.en.eq(self.en), self.data.eq(port.data)]
        return m


def bias_memory(values, writable: bool, attrs=None) -> ParameterMemory:
    """Values in words of 2 signed 12-bit lanes, the last word zero-padded."""
    pad = -len(values) % 2
    return ParameterMemory(MemoryLayout("bias", "bias", lanes=2, lane_bits=12, signed=True, pad=((0, pad),)),
                           np.array(values), writable, attrs)


async def read_words(ctx, addr, en, data, count: int) -> list[int]:
    """Words 0 .. count-1, each set up before an edge with `en` high and read after it."""
    words = []
    for address in range(count):
        ctx.set(addr, address)
        ctx.set(en, 1)
        await ctx.tick()
        words.append(ctx.get(data))
    ctx.set(en, 0)
    return words


@pytest.mark.parametrize("depth, addr_width", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)])
def test_geometry(depth, addr_width):
    parameters = bias_memory(list(range(2 * depth)), writable=False)
    assert (parameters.depth, parameters.word_bits, parameters.addr_width) == (depth, 24, addr_width)
    assert parameters.array_shape == (2 * depth,)


def test_rom_has_no_ports_and_holds_the_packed_array():
    values = [-2048, 2047, 5, -1, 300]
    parameters = bias_memory(values, writable=False)
    assert parameters.members() == {}
    assert parameters.init == [(2047 << 12) | 0x800, (0xFFF << 12) | 5, 300]
    assert parameters.describe() == {"name": "bias", "memory": "rom",
                                     **parameters.layout.describe((5,))}
    dut = MemoryHarness(parameters)

    async def testbench(ctx):
        assert await read_words(ctx, dut.addr, dut.en, dut.data, 3) == parameters.init
        ctx.set(dut.addr, 0)                             # en low: the last word stays
        await ctx.tick().repeat(2)
        assert ctx.get(dut.data) == parameters.init[2]

    simulate(dut, testbench)


def test_ram_ports_are_named_after_the_memory():
    parameters = bias_memory([1, 2, 3, 4, 5], writable=True)       # 3 words: 2 address bits
    assert (parameters.write_name, parameters.read_name) == ("bias_write", "bias_read")
    assert parameters.describe()["memory"] == "ram"
    assert wiring.Signature(parameters.members()).members == wiring.SignatureMembers({
        "bias_write": Out(memory.WritePort.Signature(addr_width=2, shape=unsigned(24))),
        "bias_read": In(wiring.Signature({"addr": Out(2), "en": Out(1), "data": In(unsigned(24))})),
    })


def test_ram_starts_with_the_array_then_takes_writes_and_reads_them_back():
    parameters = bias_memory([10, -20, 30, -40, 50, -60], writable=True)
    new = [0xABCDEF, 0x000001, 0xFFFFFF]
    dut = MemoryHarness(parameters)

    async def testbench(ctx):
        assert await read_words(ctx, dut.addr, dut.en, dut.data, 3) == parameters.init
        for address, word in enumerate(new):
            ctx.set(dut.bias_write.addr, address)
            ctx.set(dut.bias_write.data, word)
            ctx.set(dut.bias_write.en, 1)
            await ctx.tick()
        ctx.set(dut.bias_write.en, 0)
        assert await read_words(ctx, dut.bias_read.addr, dut.bias_read.en, dut.bias_read.data, 3) == new
        assert await read_words(ctx, dut.addr, dut.en, dut.data, 3) == new

    simulate(dut, testbench)


def test_host_read_back_takes_over_the_datapath_read_port():
    """While the host's `en` is high the one read port serves the host's address, and the
    datapath sees the same word: the read-back port is an address multiplexer."""
    parameters = bias_memory([10, -20, 30, -40, 50, -60], writable=True)
    dut = MemoryHarness(parameters)

    async def testbench(ctx):
        ctx.set(dut.addr, 0)
        ctx.set(dut.en, 1)
        ctx.set(dut.bias_read.addr, 2)
        ctx.set(dut.bias_read.en, 1)
        await ctx.tick()
        assert ctx.get(dut.bias_read.data) == ctx.get(dut.data) == parameters.init[2]
        ctx.set(dut.bias_read.en, 0)
        await ctx.tick()
        assert ctx.get(dut.data) == parameters.init[0]
        ctx.set(dut.en, 0)                               # the host alone may read too
        ctx.set(dut.bias_read.addr, 1)
        ctx.set(dut.bias_read.en, 1)
        await ctx.tick()
        assert ctx.get(dut.bias_read.data) == parameters.init[1]

    simulate(dut, testbench)


@pytest.mark.parametrize("writable", [False, True])
def test_synthesis_attributes_reach_the_memory(writable):
    design = rtlil.convert(MemoryHarness(bias_memory([1, 2], writable, attrs={"rom_style": "block"})))
    assert 'attribute \\rom_style "block"' in design
