"""What a board built for a config holds: its loadable memories, vector sizes and buffers.

The gateware (`nomac.boards.board_top`) and the host (`nomac.boards.host`) both
derive this map from the config and the board options, through the same function,
so neither side guesses the other's layout; IDENTIFY lets the host check that the
bitstream agrees. Memory indices on the link are the engine's memories in manifest
order (`engine.memories`), each packed into words by its `MemoryLayout`.

A board always loads tables at run time, so every memory of the layer is made RAM
(`Engine.with_ram_memories`, the kind's own rule).
"""
from dataclasses import dataclass, field

import numpy as np
from amaranth import Elaboratable
from amaranth.hdl import Shape

from nomac.boards.link_protocol import (FRAME_OVERHEAD, MEMORY_REQUEST, VERSION, Counters, Identity,
                                        element_bytes, word_bytes)
from nomac.base.errors import NomacError
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.engine import Engine
from nomac.hw.engine_kinds import ENGINES, build_engine, single_hardware_layer
from nomac.model.operator_layers import OPERATOR_KINDS
from nomac.model.config import Config

__all__ = ["DEFAULT_MAX_PAYLOAD", "DEFAULT_TIMEOUT_BYTES", "MemoryRegion", "BoardMap", "board_layer",
           "board_map", "memory_regions", "board_max_payload", "check_link_timing"]

DEFAULT_MAX_PAYLOAD = 512          # one iCE40 block RAM of payload buffer
DEFAULT_TIMEOUT_BYTES = 1000       # a frame that stops arriving for this many byte times is dropped


@dataclass(frozen=True)
class MemoryRegion:
    """One loadable engine memory, as the link addresses it."""
    index: int
    name: str
    array: str
    depth: int
    word_bits: int
    layout: MemoryLayout = field(repr=False)

    @property
    def word_bytes(self) -> int:
        return word_bytes(self.word_bits)

    def words(self, array: np.ndarray) -> list[int]:
        return self.layout.words(array)


@dataclass(frozen=True)
class BoardMap:
    config_id: str
    layer: str
    kind: str
    regions: tuple
    in_elements: int
    out_elements: int
    out_bits: int                   # bits per output element (8, or the accumulator width)
    max_payload: int
    clock_hz: int
    divisor: int
    timeout_cycles: int

    @property
    def in_vector_bytes(self) -> int:
        return self.in_elements

    @property
    def out_vector_bytes(self) -> int:
        return self.out_elements * element_bytes(self.out_bits)

    @property
    def batch(self) -> int:
        """Input vectors per WRITE_INPUTS / RUN: as many as one payload carries."""
        return (self.max_payload - 2) // self.in_vector_bytes

    @property
    def baud(self) -> float:
        return self.clock_hz / self.divisor

    def identity(self) -> Identity:
        return Identity(version=VERSION, config_id=self.config_id, max_payload=self.max_payload,
                        batch=self.batch, memories=len(self.regions), in_vector_bytes=self.in_vector_bytes,
                        out_vector_bytes=self.out_vector_bytes, clock_hz=self.clock_hz, divisor=self.divisor)

    def describe(self) -> dict:
        """JSON for the build report and for people."""
        return {"config_id": self.config_id, "layer": self.layer, "kind": self.kind,
                "max_payload": self.max_payload, "batch": self.batch, "clock_hz": self.clock_hz,
                "divisor": self.divisor, "baud": self.baud, "timeout_cycles": self.timeout_cycles,
                "in_vector_bytes": self.in_vector_bytes, "out_vector_bytes": self.out_vector_bytes,
                "out_bits": self.out_bits,
                "memories": [{"index": r.index, "name": r.name, "array": r.array, "depth": r.depth,
                              "word_bits": r.word_bits, "word_bytes": r.word_bytes} for r in self.regions]}


def board_layer(config: Config, layer_name: str | None = None):
    """The config's hardware layer (the only one, or `layer_name`) with RAM memories.

    A board holds one matrix layer; the operators are verified in simulation (`nomac sim`)."""
    layer = single_hardware_layer(config, layer_name, "a board")
    if layer.kind in OPERATOR_KINDS:
        raise NomacError(f"{config.source}: layer '{layer.name}' is a {layer.kind} operator; a board holds one "
                         f"lut, shift, dense or butterfly layer (simulate operators with nomac sim)")
    return ENGINES[layer.kind].with_ram_memories(layer, f"{config.source}: layer '{layer.name}' on a board")


def board_map(config: Config, layer_name: str | None = None, *, clock_hz: int, divisor: int,
              max_payload: int | None = None, timeout_bytes: int = DEFAULT_TIMEOUT_BYTES,
              engine: Engine | None = None) -> BoardMap:
    """The map of a board for `config` with a `clock_hz` clock and `divisor` cycles per UART bit.

    `max_payload` defaults to DEFAULT_MAX_PAYLOAD, raised when one input vector, one
    output vector, one memory word or the STATUS / IDENTIFY replies need more.
    """
    layer = board_layer(config, layer_name)
    if engine is None:
        engine = build_engine(layer)
        _never_elaborated(engine)
    regions = memory_regions(engine.signature.ram_memories)
    out_bits = Shape.cast(engine.out_shape).width
    max_payload = board_max_payload(max_payload, regions, in_vector_bytes=layer.in_features,
                                    out_vector_bytes=layer.out_features * element_bytes(out_bits),
                                    what=f"layer '{layer.name}'")
    check_link_timing(clock_hz, divisor, timeout_bytes)
    return BoardMap(config_id=config.config_id, layer=layer.name, kind=layer.kind, regions=regions,
                    in_elements=layer.in_features, out_elements=layer.out_features, out_bits=out_bits,
                    max_payload=max_payload, clock_hz=clock_hz, divisor=divisor,
                    timeout_cycles=timeout_bytes * 10 * divisor)


def memory_regions(ram_memories) -> tuple:
    """The link's memory regions of an engine's RAM memories (`EngineSignature.ram_memories`), in order."""
    return tuple(MemoryRegion(index=index, name=memory.layout.name, array=memory.layout.array,
                              depth=memory.depth, word_bits=memory.word_bits, layout=memory.layout)
                 for index, memory in enumerate(ram_memories))


def board_max_payload(max_payload: int | None, regions, *, in_vector_bytes: int, out_vector_bytes: int,
                      what: str) -> int:
    """`max_payload` checked (or its default) for a board of these vectors and memories.

    The default is DEFAULT_MAX_PAYLOAD, raised when one input vector, one output vector,
    one memory word or the STATUS / IDENTIFY replies need more (docs/spec.md section 15.1).
    """
    needed = max(2 + in_vector_bytes, 1 + out_vector_bytes,
                 MEMORY_REQUEST.size + max((r.word_bytes for r in regions), default=0),
                 1 + Identity.LAYOUT.size, 1 + Counters.LAYOUT.size)
    if max_payload is None:
        max_payload = max(DEFAULT_MAX_PAYLOAD, needed)
    if not isinstance(max_payload, int) or not needed <= max_payload <= 0xFFFF - FRAME_OVERHEAD:
        raise NomacError(f"max_payload = {max_payload!r}: must be an integer in {needed}..{0xFFFF - FRAME_OVERHEAD} "
                         f"for {what} (one vector, one memory word and every reply must fit)")
    return max_payload


def check_link_timing(clock_hz, divisor, timeout_bytes):
    for name, value, low in (("clock_hz", clock_hz, 1), ("divisor", divisor, 2), ("timeout_bytes", timeout_bytes, 2)):
        if not isinstance(value, int) or value < low:
            raise NomacError(f"{name} = {value!r}: must be an integer >= {low}")


def _never_elaborated(engine, depth: int = 3):
    """An engine built only to read its memories is never elaborated; tell Amaranth that is
    on purpose (it warns about unused elaboratables), for the engine and its parts."""
    if depth == 0 or not isinstance(engine, Elaboratable):
        return
    engine._MustUse__silence = True
    for part in vars(engine).values():
        _never_elaborated(part, depth - 1)
