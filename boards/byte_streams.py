"""Byte streams to and from the board's memories and the engine's vector streams.

The link moves bytes; the engine takes and gives vector beats and holds its
tables in words. These small components convert, each with one job and a
`lib.stream` on its byte side, so the command handler only wires them up:

- `ByteReader`: bytes [first, first+count) of a byte memory, in order;
- `ByteWriter`: a byte stream written to a byte memory from address 0;
- `WordReader` / `WordWriter`: the words of one of several memories as little-endian
  bytes (each memory's word bytes, a power of two: link_protocol.word_bytes);
- `BytesToBeats` / `BeatsToBytes`: vectors as element bytes <-> vector-stream beats
  (docs/spec.md section 3: lane 0 is the lowest element, unused lanes of a vector's final
  beat are zero, `last` on the final beat); output elements wider than a byte go as
  little-endian two's complement of `element_bytes` bytes.

Memory read ports have one cycle of latency and keep their data while `en` is low.
"""
from amaranth import Array, Cat, Const, Module, Signal
from amaranth.hdl import Shape, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from nomac.boards.link_protocol import element_bytes, word_bytes
from nomac.hw.vector_stream import vector_stream


def _addr_width(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


class ByteReader(wiring.Component):
    """Streams `count` bytes from address `first` when `start` pulses; one byte per cycle."""

    def __init__(self, depth: int):
        self.depth = depth
        super().__init__({"start": In(1), "first": In(range(depth)), "count": In(range(depth + 1)),
                          "memory": In(memory.ReadPort.Signature(addr_width=_addr_width(depth), shape=8)),
                          "o": Out(stream.Signature(8)), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        addr = Signal(_addr_width(self.depth))
        left = Signal(range(self.depth + 1))
        have = Signal()                     # memory.data holds a byte not yet taken
        fetch = (left != 0) & (~have | self.o.ready)
        m.d.comb += [self.memory.addr.eq(addr), self.memory.en.eq(fetch),
                     self.o.valid.eq(have), self.o.payload.eq(self.memory.data),
                     self.busy.eq((left != 0) | have)]
        m.d.sync += have.eq(fetch | (have & ~self.o.ready))
        with m.If(fetch):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.first), left.eq(self.count), have.eq(0)]
        return m


class ByteWriter(wiring.Component):
    """Writes the bytes of `i` to addresses 0, 1, ... (from the last `start` pulse); `written` counts them."""

    def __init__(self, depth: int):
        self.depth = depth
        super().__init__({"start": In(1), "i": In(stream.Signature(8)),
                          "memory": In(memory.WritePort.Signature(addr_width=_addr_width(depth), shape=8)),
                          "written": Out(range(depth + 1))})

    def elaborate(self, platform):
        m = Module()
        fire = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(self.written < self.depth), self.memory.addr.eq(self.written),
                     self.memory.data.eq(self.i.payload), self.memory.en.eq(fire)]
        with m.If(fire):
            m.d.sync += self.written.eq(self.written + 1)
        with m.If(self.start):
            m.d.sync += self.written.eq(0)
        return m


class WordReader(wiring.Component):
    """Streams words [first, first+count) of the `select`ed memory, each as its word bytes
    (a power of two, little-endian). One read port per memory, `memory0`, `memory1`, ...;
    only the selected one sees `en`. The port keeps reading the same address until the
    word's last byte is taken (an engine's read-back port shares the datapath's port, so
    its data only holds while `en` does); bytes are picked straight from its data, so
    no word is copied into a register."""

    def __init__(self, addr_width: int, word_bits: list):
        self.addr_width, self.word_bits = addr_width, list(word_bits)
        self.word_bytes = [word_bytes(bits) for bits in self.word_bits]
        members = {"start": In(1), "first": In(addr_width), "count": In(addr_width + 1),
                   "select": In(range(len(self.word_bits))), "o": Out(stream.Signature(8)), "busy": Out(1)}
        for k, bits in enumerate(self.word_bits):
            members[f"memory{k}"] = In(memory.ReadPort.Signature(addr_width=addr_width, shape=bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        addr = Signal(self.addr_width)
        left = Signal(self.addr_width + 1)
        loading, have = Signal(), Signal()
        index = Signal(range(max(self.word_bytes)))
        fetch = (left != 0) & ~loading & ~have
        picks, lasts = [], []
        for k, size in enumerate(self.word_bytes):
            port = getattr(self, f"memory{k}")
            m.d.comb += [port.addr.eq(addr), port.en.eq((fetch | loading | have) & (self.select == k))]
            padded = Cat(port.data, Const(0, 8 * size - len(port.data)))
            picks.append(padded.word_select(index[:max(1, (size - 1).bit_length())], 8) if size > 1 else padded)
            lasts.append(Const(size - 1, len(index)))
        m.d.comb += [self.o.valid.eq(have), self.o.payload.eq(Array(picks)[self.select]),
                     self.busy.eq((left != 0) | loading | have)]
        m.d.sync += loading.eq(fetch)
        with m.If(loading):
            m.d.sync += [have.eq(1), index.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(index == Array(lasts)[self.select]):
                m.d.sync += [have.eq(0), addr.eq(addr + 1), left.eq(left - 1)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.first), left.eq(self.count), have.eq(0), loading.eq(0)]
        return m


class WordWriter(wiring.Component):
    """Collects the bytes of `i` into words of the `select`ed memory (its word bytes, a power
    of two, little-endian) and writes them at `first`, `first`+1, ... Bytes shift in from the
    top of one register, so each memory's word is a fixed slice of it: no multiplexer."""

    def __init__(self, addr_width: int, word_bits: list):
        self.addr_width, self.word_bits = addr_width, list(word_bits)
        self.word_bytes = [word_bytes(bits) for bits in self.word_bits]
        members = {"start": In(1), "first": In(addr_width), "select": In(range(len(self.word_bits))),
                   "i": In(stream.Signature(8)), "busy": Out(1)}
        for k, bits in enumerate(self.word_bits):
            members[f"memory{k}"] = In(memory.WritePort.Signature(addr_width=addr_width, shape=bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        widest = max(self.word_bytes)
        addr = Signal(self.addr_width)
        word = Signal(8 * widest)
        index = Signal(range(widest))
        pending = Signal()                  # a whole word waits to be written (next cycle)
        last = Array(Const(size - 1, len(index)) for size in self.word_bytes)[self.select]
        for k, (size, bits) in enumerate(zip(self.word_bytes, self.word_bits)):
            port = getattr(self, f"memory{k}")
            m.d.comb += [port.addr.eq(addr), port.data.eq(word[8 * (widest - size):][:bits]),
                         port.en.eq(pending & (self.select == k))]
        m.d.comb += [self.i.ready.eq(1), self.busy.eq(pending)]
        m.d.sync += pending.eq(0)
        with m.If(pending):
            m.d.sync += addr.eq(addr + 1)
        with m.If(self.i.valid):
            m.d.sync += [word.eq(Cat(word[8:], self.i.payload)), index.eq(index + 1)]
            with m.If(index == last):
                m.d.sync += [index.eq(0), pending.eq(1)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.first), index.eq(0), pending.eq(0)]
        return m


class BytesToBeats(wiring.Component):
    """Vectors of `elements` int8 bytes -> beats of `lanes` elements."""

    def __init__(self, elements: int, lanes: int, element_shape=signed(8)):
        self.elements, self.lanes = elements, lanes
        self.element_shape = Shape.cast(element_shape)
        if self.element_shape.width != 8:
            raise ValueError(f"BytesToBeats: elements of {self.element_shape} are not bytes")
        super().__init__({"i": In(stream.Signature(8)), "o": Out(vector_stream(lanes, element_shape))})

    def elaborate(self, platform):
        m = Module()
        beat = Signal(8 * self.lanes)
        lane = Signal(range(self.lanes))
        element = Signal(range(self.elements))
        full, last = Signal(), Signal()
        m.d.comb += [self.i.ready.eq(~full), self.o.valid.eq(full),
                     self.o.payload.data.eq(beat), self.o.payload.last.eq(last)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [beat.word_select(lane, 8).eq(self.i.payload), lane.eq(lane + 1),
                         element.eq(element + 1)]
            with m.If(element == self.elements - 1):
                m.d.sync += [full.eq(1), last.eq(1), lane.eq(0), element.eq(0)]
            with m.Elif(lane == self.lanes - 1):
                m.d.sync += [full.eq(1), last.eq(0), lane.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [full.eq(0), beat.eq(0)]
        return m


class BeatsToBytes(wiring.Component):
    """Beats of `lanes` elements -> each element as `element_bytes(width)` little-endian bytes.

    Elements are counted, so the unused lanes of a vector's final beat are skipped.
    """

    def __init__(self, elements: int, lanes: int, element_shape):
        self.elements, self.lanes = elements, lanes
        self.element_shape = Shape.cast(element_shape)
        self.element_bytes = element_bytes(self.element_shape.width)
        super().__init__({"i": In(vector_stream(lanes, element_shape)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        width, size = self.element_shape.width, self.element_bytes
        beat = Signal(width * self.lanes)
        lane = Signal(range(self.lanes))
        element = Signal(range(self.elements))
        index = Signal(range(size))
        full = Signal()
        value = beat.word_select(lane, width)
        extended = Signal(Shape(8 * size, self.element_shape.signed))
        m.d.comb += [extended.eq(value.as_signed() if self.element_shape.signed else value),
                     self.i.ready.eq(~full), self.o.valid.eq(full),
                     self.o.payload.eq(extended.as_unsigned().word_select(index, 8))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [beat.eq(self.i.payload.data), full.eq(1), lane.eq(0), index.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(index == size - 1):
                m.d.sync += [index.eq(0), lane.eq(lane + 1), element.eq(element + 1)]
                with m.If(element == self.elements - 1):
                    m.d.sync += [element.eq(0), full.eq(0)]
                with m.Elif(lane == self.lanes - 1):
                    m.d.sync += full.eq(0)
        return m
