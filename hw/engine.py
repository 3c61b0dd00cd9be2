"""The engine contract: what an engine is to the code around it (docs/spec.md sections 3 and 6.2).

An engine is one layer (later, one operator) in gates: vectors stream in and out,
two status outputs say whether a vector is inside and whether the input framing went
wrong, and every RAM memory has a host write port and a read-back port. The Verilog
writer and its manifest, the board's command handler and synthesis know an engine
only through this module: `EngineSignature` is its ports, `Engine` its ports plus the
figures the manifest reports. Which layer kinds have an engine is
`nomac.hw.engine_kinds`.

Member names are the manifest's port names (`FlatPorts` in `nomac.hw.flat_verilog`
joins a member path with "_" and drops `payload`): `i_data`, `i_last`, `i_valid`,
`i_ready`, the same for `o`, `idle`, `framing_error`, `<memory>_write_addr`, ...
"""
from abc import ABCMeta, abstractmethod

from amaranth.hdl import ShapeLike, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nomac.hw.vector_stream import vector_stream

__all__ = ["EngineSignature", "EngineInterface", "Engine", "LAYER_PARAMETER", "memory_ports", "connect_memory_ports"]

# The parameters of an engine's docstring (`Engine.doc_template`): every engine is built from its layer.
LAYER_PARAMETER = """layer : {layer}
        The validated layer."""


def memory_ports(component, memory) -> tuple:
    """The host ports (write, read-back) of RAM `memory` on `component`.

    `component` is anything whose signature has the members `memory.members()`
    (`nomac.hw.parameter_memory.ParameterMemory`): an engine, the part of it that
    holds the memory, or an interface of either. This is the one place that finds a
    memory's ports by their member names.
    """
    return getattr(component, memory.write_name), getattr(component, memory.read_name)


def connect_memory_ports(m, outer, inner):
    """Pass `outer`'s host ports of `inner.memories` down to `inner`, which holds the memories."""
    for memory in inner.memories:
        if memory.writable:
            for outer_port, inner_port in zip(memory_ports(outer, memory), memory_ports(inner, memory)):
                connect(m, flipped(outer_port), inner_port)


class EngineSignature(wiring.Signature):
    """Signature of an engine.

    Parameters
    ----------
    in_lanes : int
        Elements per input beat.
    in_shape : shape-like
        Shape of an input element.
    out_lanes : int
        Elements per output beat.
    out_shape : shape-like
        Shape of an output element (int8, or the accumulator width).
    memories : iterable of ParameterMemory
        The engine's memories in manifest order; each RAM among them (`writable`) has
        host ports.

    Members
    -------
    i : :py:`In(vector_stream(in_lanes, in_shape))`
        Input vectors (docs/spec.md section 3). The engine counts beats, so a wrong
        `last` on an input beat does not shift the framing; it raises `framing_error`.
    o : :py:`Out(vector_stream(out_lanes, out_shape))`
        Output vectors: `last` on the final beat, unused lanes of that beat zero.
    idle : :py:`Out(1)`
        No vector is inside the engine: one enters with its first input beat and
        leaves with its last output beat. The host ports may be used only while idle.
    framing_error : :py:`Out(1)`
        Sticky until reset: an input beat's `last` disagreed with the beat count.
    <memory>_write : :py:`Out(memory.WritePort.Signature(addr_width=..., shape=unsigned(word_bits)))`
        Per RAM memory: word `data` is written at `addr` on a cycle with `en` high.
    <memory>_read : :py:`In(Signature({"addr": Out(addr_width), "en": Out(1), "data": In(word_bits)}))`
        Per RAM memory: the word at `addr` of a cycle with `en` high is on `data` the
        next cycle. It shares the datapath's read port, hence the rule of `idle`.
    """

    def __init__(self, *, in_lanes: int, in_shape: ShapeLike, out_lanes: int, out_shape: ShapeLike, memories):
        for name, value in (("in_lanes", in_lanes), ("out_lanes", out_lanes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EngineSignature: {name} = {value!r}: must be a positive integer")
        self._in_lanes, self._in_shape = in_lanes, in_shape
        self._out_lanes, self._out_shape = out_lanes, out_shape
        self._ram_memories = tuple(memory for memory in memories if memory.writable)
        members = {"i": In(vector_stream(in_lanes, in_shape)),
                   "o": Out(vector_stream(out_lanes, out_shape)),
                   "idle": Out(1),
                   "framing_error": Out(1)}
        for memory in self._ram_memories:
            members.update(memory.members())
        super().__init__(members)

    in_lanes = property(lambda self: self._in_lanes, doc="Elements per input beat.")
    in_shape = property(lambda self: self._in_shape, doc="Shape of an input element.")
    out_lanes = property(lambda self: self._out_lanes, doc="Elements per output beat.")
    out_shape = property(lambda self: self._out_shape, doc="Shape of an output element.")
    ram_memories = property(lambda self: self._ram_memories,
                            doc="The memories with host ports, in manifest order (the board link's memory indices).")

    def __eq__(self, other):
        return type(other) is type(self) and self.members == other.members

    def create(self, *, path=None, src_loc_at=0):
        return EngineInterface(self, path=path, src_loc_at=1 + src_loc_at)

    def __repr__(self):
        return (f"EngineSignature(in_lanes={self.in_lanes}, in_shape={self.in_shape!r}, "
                f"out_lanes={self.out_lanes}, out_shape={self.out_shape!r}, "
                f"ram_memories={[memory.layout.name for memory in self.ram_memories]})")


def _figure():
    """An abstract read-only attribute of `Engine`: an engine cannot be built without it."""
    return property(abstractmethod(lambda self: None))


class _HostPorts:
    """Typed access to the host ports, shared by an engine and an interface of one."""

    def write_port(self, memory):
        """The write port of RAM `memory` (member `<memory>_write`)."""
        return memory_ports(self, memory)[0]

    def read_port(self, memory):
        """The read-back port of RAM `memory` (member `<memory>_read`)."""
        return memory_ports(self, memory)[1]


class EngineInterface(_HostPorts, wiring.PureInterface):
    """An engine's ports seen from outside (`EngineSignature.create`), e.g. a board's
    command handler's member `engine`."""


class Engine(_HostPorts, wiring.Component, metaclass=ABCMeta):
    # Every engine's docstring: its own description and parameters, then what all share.
    doc_template = """
    {description}

    Parameters
    ----------
    {parameters}

    Members
    -------
    i, o, idle, framing_error; per RAM memory <memory>_write, <memory>_read
        See :class:`nomac.hw.engine.EngineSignature`.

    Attributes
    ----------
    layer : the validated layer.
    in_elements, out_elements : int
        Elements of an input and of an output vector.
    memories : list of ParameterMemory
        Every memory holding a config array, in manifest order.
    out_shape : shape-like
        Shape of an output element.
    acc_bits : int
        Width of the accumulator (the widest, for a chain of stages).
    cycles_per_vector : int
        Steady-state interval between vectors at full rate (input always valid, output
        always ready).
    cycles_per_vector_bound : int
        The kind's lower bound on that interval.
    cycles_per_vector_bound_rule : str
        The bound's formula, for people{rule}.
    {attributes}
    """

    __doc__ = doc_template.format(description="""
    Base class of the engines: builds the ports from an `EngineSignature` and declares
    the figures every engine reports to the manifest (docs/spec.md section 6.2), so
    the code around an engine needs no knowledge of its kind. An engine's own
    constructor takes its validated layer.
    """.strip(), parameters="""
    layer : the validated layer the engine computes.
    in_lanes, out_lanes, out_shape, in_shape (default int8) : as for `EngineSignature`.
    memories : list of ParameterMemory
        The memories of the engine's parts, in manifest order.
    """.strip(), rule="", attributes="")

    def __init__(self, layer, *, in_lanes: int, out_lanes: int, out_shape: ShapeLike, memories,
                 in_shape: ShapeLike = signed(8)):
        self.layer = layer
        self.memories = list(memories)
        super().__init__(EngineSignature(in_lanes=in_lanes, in_shape=in_shape, out_lanes=out_lanes,
                                         out_shape=out_shape, memories=self.memories))

    @property
    def out_shape(self) -> ShapeLike:
        return self.signature.out_shape

    @property
    def in_elements(self) -> int:
        """Elements of an input vector: the layer's in_features (an operator may read more, see
        `nomac.hw.operators.operator_engine`)."""
        return self.layer.in_features

    @property
    def out_elements(self) -> int:
        """Elements of an output vector: the layer's out_features."""
        return self.layer.out_features

    # The figures of the manifest, documented above; each engine defines them (a property
    # or, for a constant, a class attribute).
    acc_bits = _figure()
    cycles_per_vector = _figure()
    cycles_per_vector_bound = _figure()
    cycles_per_vector_bound_rule = _figure()

    def describe_stages(self) -> list[dict]:
        """Per-stage figures, for the manifest's "stages" (docs/spec.md section 11.6); none
        for an engine that is not a chain of stages."""
        return []

    @classmethod
    def with_ram_memories(cls, layer, where: str):
        """The layer with every memory RAM, as a board loads it (the hardware choice `memory`)."""
        return layer if layer.hw.memory == "ram" else layer.with_hw({"memory": "ram"}, where)
