"""Byte streams to and from the board's memories and the engine's vector streams.

The link moves bytes; the engine takes and gives vector beats and holds its
tables in words. These small components convert, each with one job and a
`lib.stream` on its byte side, so the command handler only wires them up:

- `ByteReader`: bytes [first, end) of one of several byte memories, in order;
- `ByteWriter`: a byte stream written to one of several byte memories from address 0;
- `WordPorts`: the words of one of several memories read or written as little-endian
  bytes (each memory's word bytes, a power of two: link_protocol.word_bytes);
- `BytesToBeats` / `BeatsToBytes`: vectors as element bytes <-> vector-stream beats
  (docs/spec.md section 3: lane 0 is the lowest element, unused lanes of a vector's final
  beat are zero, `last` on the final beat); output elements wider than a byte go as
  little-endian two's complement of `element_bytes` bytes.

Memory read ports have one cycle of latency and keep their data while `en` is low.
"""
from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.hdl import Shape, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from nomac.boards.link_gateware import below
from nomac.boards.link_protocol import element_bytes, word_bytes
from nomac.hw.vector_stream import vector_stream


def _addr_width(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


class ByteReader(wiring.Component):
    """Streams the bytes at addresses [first, end) of the `select`ed byte memory when `start`
    pulses; one byte per cycle. One read port per memory, `memory0`, `memory1`, ... (of the
    `depths`); only the selected one sees `en`. One reader serves every byte memory of the
    board, since no command reads two at once. (An end, not a count: the handler has the
    end addresses at hand, not the counts.) Only `first` is latched: `end` must hold until
    `busy` falls (the handler's ends are of the frame it holds), which saves its register."""

    def __init__(self, depths: list):
        self.depths = list(depths)
        deepest = max(self.depths)
        members = {"start": In(1), "first": In(range(deepest + 1)), "end": In(range(deepest + 1)),
                   "select": In(range(len(self.depths))), "o": Out(stream.Signature(8)), "busy": Out(1)}
        for k, depth in enumerate(self.depths):
            members[f"memory{k}"] = In(memory.ReadPort.Signature(addr_width=_addr_width(depth), shape=8))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        deepest = max(self.depths)
        addr = Signal(range(deepest + 1))
        reading = Signal()                  # from `start` until `end` is reached: then `end` may change
        have = Signal()                     # the selected memory's data holds a byte not yet taken
        more = reading & (addr != self.end)
        fetch = more & (~have | self.o.ready)
        ports = [getattr(self, f"memory{k}") for k in range(len(self.depths))]
        for k, port in enumerate(ports):
            m.d.comb += [port.addr.eq(addr), port.en.eq(fetch & (self.select == k))]
        m.d.comb += [self.o.valid.eq(have), self.o.payload.eq(Array(port.data for port in ports)[self.select]),
                     self.busy.eq(more | have)]
        m.d.sync += have.eq(fetch | (have & ~self.o.ready))
        with m.If(fetch):
            m.d.sync += addr.eq(addr + 1)
        with m.If(addr == self.end):
            m.d.sync += reading.eq(0)
        with m.If(self.start):
            m.d.sync += [addr.eq(self.first), reading.eq(1), have.eq(0)]
        return m


class ByteWriter(wiring.Component):
    """Writes the bytes of `i` to addresses 0, 1, ... of the `select`ed byte memory (from the
    last `start` pulse, up to its depth); `written` counts them. One write port per memory,
    `memory0`, `memory1`, ... (of the `depths`); only the selected one sees `en`."""

    def __init__(self, depths: list):
        self.depths = list(depths)
        members = {"start": In(1), "select": In(range(len(self.depths))), "i": In(stream.Signature(8)),
                   "written": Out(range(max(self.depths) + 1))}
        for k, depth in enumerate(self.depths):
            members[f"memory{k}"] = In(memory.WritePort.Signature(addr_width=_addr_width(depth), shape=8))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        fire = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(Array(below(self.written, depth) for depth in self.depths)[self.select])
        for k in range(len(self.depths)):
            port = getattr(self, f"memory{k}")
            m.d.comb += [port.addr.eq(self.written), port.data.eq(self.i.payload),
                         port.en.eq(fire & (self.select == k))]
        with m.If(fire):
            m.d.sync += self.written.eq(self.written + 1)
        with m.If(self.start):
            m.d.sync += self.written.eq(0)
        return m


class WordPorts(wiring.Component):
    """The words of the `select`ed memory as little-endian bytes (each memory's word bytes, a
    power of two), read or written from word `first` on; one address register for both, as
    no command does both. One read port per memory, `read0`, `read1`, ..., and one write
    port, `write0`, ...; only the selected memory's see `en`.

    Both directions go through one shift register of the widest word, which moves a byte
    down whenever a byte is taken from `o` or received on `i`, so no byte is picked by a
    multiplexer. `start` with `write` low streams words [first, end) on `o`: each word is
    read (the port's `en` stays high until its data is in), loaded into the bottom of the
    register and sent from its lowest byte. `end` may be the depth, one past the last address;
    it is not latched, so it must hold until `busy` falls (or the streaming ends: then it may
    change, as for the next memory of a CRC of all memories).

    `start` with `write` high collects the bytes of `i` into words written at `first`,
    `first` + 1, ... Bytes shift in at the top of the register, so each memory's word is a
    fixed slice of it.
    """

    def __init__(self, addr_width: int, word_bits: list):
        self.addr_width, self.word_bits = addr_width, list(word_bits)
        self.word_bytes = [word_bytes(bits) for bits in self.word_bits]
        members = {"start": In(1), "write": In(1), "first": In(addr_width + 1), "end": In(addr_width + 1),
                   "select": In(range(len(self.word_bits))), "o": Out(stream.Signature(8)),
                   "i": In(stream.Signature(8)), "busy": Out(1)}
        for k, bits in enumerate(self.word_bits):
            members[f"read{k}"] = In(memory.ReadPort.Signature(addr_width=addr_width, shape=bits))
        for k, bits in enumerate(self.word_bits):
            members[f"write{k}"] = In(memory.WritePort.Signature(addr_width=addr_width, shape=bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        widest = max(self.word_bytes)
        addr = Signal(self.addr_width + 1)
        reading, loading, have = Signal(), Signal(), Signal()
        index = Signal(range(widest))       # the byte of the word taken or received next
        word = Signal(8 * widest)
        pending = Signal()                  # a whole word waits to be written (next cycle)
        more = reading & (addr != self.end)
        fetch = more & ~loading & ~have
        last = Array(Const(size - 1, len(index)) for size in self.word_bytes)[self.select]
        taken = self.o.valid & self.o.ready
        reads = [getattr(self, f"read{k}") for k in range(len(self.word_bits))]
        for k, (size, bits) in enumerate(zip(self.word_bytes, self.word_bits)):
            read, write = reads[k], getattr(self, f"write{k}")
            m.d.comb += [read.addr.eq(addr), read.en.eq((fetch | loading) & (self.select == k)),
                         write.addr.eq(addr), write.data.eq(word[8 * (widest - size):][:bits]),
                         write.en.eq(pending & (self.select == k))]
        # The word loaded: its bytes from the selected memory's data (zero-extended to whole
        # bytes), the bytes above from the widest memory's (never sent, as the word's bytes end).
        wide = max(range(len(reads)), key=lambda k: self.word_bits[k])
        loaded = reads[wide].data
        for k, (size, read) in enumerate(zip(self.word_bytes, reads)):
            if k != wide:
                loaded = Cat(Mux(self.select == k, read.data, loaded[:8 * size]), loaded[8 * size:])
        with m.If(loading):
            m.d.sync += word.eq(loaded)
        m.d.comb += [self.o.valid.eq(have), self.o.payload.eq(word[:8]),
                     self.i.ready.eq(1), self.busy.eq(more | loading | have | pending)]
        m.d.sync += [loading.eq(fetch), pending.eq(0)]
        with m.If(taken | self.i.valid):
            m.d.sync += [word.eq(Cat(word[8:], self.i.payload)), index.eq(index + 1)]
        with m.If(loading):
            m.d.sync += [have.eq(1), index.eq(0)]
        with m.If(taken & (index == last)):
            m.d.sync += [have.eq(0), addr.eq(addr + 1)]
        with m.If(pending):
            m.d.sync += addr.eq(addr + 1)
        with m.If(self.i.valid & (index == last)):
            m.d.sync += [index.eq(0), pending.eq(1)]
        with m.If(reading & (addr == self.end)):       # streamed to the end: `end` may change now
            m.d.sync += reading.eq(0)
        with m.If(self.start):
            m.d.sync += [addr.eq(self.first), reading.eq(~self.write), index.eq(0),
                         have.eq(0), loading.eq(0), pending.eq(0)]
        return m


class BytesToBeats(wiring.Component):
    """Vectors of `elements` int8 bytes -> beats of `lanes` elements (one lane: each byte is
    its beat, passed straight through, with `last` on a vector's final element)."""

    def __init__(self, elements: int, lanes: int, element_shape=signed(8)):
        self.elements, self.lanes = elements, lanes
        self.element_shape = Shape.cast(element_shape)
        if self.element_shape.width != 8:
            raise ValueError(f"BytesToBeats: elements of {self.element_shape} are not bytes")
        super().__init__({"i": In(stream.Signature(8)), "o": Out(vector_stream(lanes, element_shape))})

    def elaborate(self, platform):
        m = Module()
        element = Signal(range(self.elements))
        if self.lanes == 1:
            m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                         self.o.payload.data.eq(self.i.payload), self.o.payload.last.eq(element == self.elements - 1)]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += element.eq(Mux(element == self.elements - 1, 0, element + 1))
            return m
        beat = Signal(8 * self.lanes)
        lane = Signal(range(self.lanes))
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

    Elements are counted, so the unused lanes of a vector's final beat are skipped. One lane
    of byte elements: each beat is its byte, passed straight through.
    """

    def __init__(self, elements: int, lanes: int, element_shape):
        self.elements, self.lanes = elements, lanes
        self.element_shape = Shape.cast(element_shape)
        self.element_bytes = element_bytes(self.element_shape.width)
        super().__init__({"i": In(vector_stream(lanes, element_shape)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        width, size = self.element_shape.width, self.element_bytes
        if self.lanes == 1 and size == 1:
            m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                         self.o.payload.eq(self.i.payload.data)]
            return m
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
