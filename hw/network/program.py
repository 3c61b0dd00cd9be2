"""Compile a whole-model config into the network engine's layer program (docs/spec.md section 16).

The program is a list of steps, one per layer (a butterfly layer: one per factor), each
naming its unit, the reader's address pattern over the activation memory, the region the
writer fills and the unit's parameters. `patches` and `select_token` only reorder or
pick elements, so they take no step: they are *views*, and the step that reads one reads
its source through the view's address pattern. Every other value gets a region of the
activation memory, allocated first-fit and freed after its last reader, so a step never
writes over what it reads; the input's, the first, is at address 0. The table memory
image holds the program from word 0 and then every step's arrays.
"""
from dataclasses import dataclass

import numpy as np

from nomac.base.errors import ConfigError
from nomac.hw.network.program_format import END, JUMPING_LOOPS, READER_LOOPS, STEP_WORDS, count_limits, step_words
from nomac.hw.network.requantize import ACC_BYTES
from nomac.hw.network.unit import LimitError, NetworkLimits, UnitStep, pack_params
from nomac.hw.network.units import UNITS
from nomac.model.dataflow import is_dataflow, layer_inputs

__all__ = ["Pattern", "Region", "ProgramStep", "NetworkProgram", "compile_program", "VIEWS"]



@dataclass(frozen=True)
class Region:
    """Bytes [base, base + size) of the activation memory."""
    base: int
    size: int


@dataclass(frozen=True)
class Pattern:
    """The reader's element order: for i0 < counts[0] ... for i3 < counts[3], the byte at
    base + sum_k i_k * strides[k]."""
    base: int
    counts: tuple
    strides: tuple

    @classmethod
    def contiguous(cls, region: Region) -> "Pattern":
        return cls(region.base, (1, 1, 1, region.size), (0, 0, 0, 1))

    def addresses(self) -> list[int]:
        """Every address in order (the compiler's own check, and the tests')."""
        index = np.indices(self.counts).reshape(READER_LOOPS, -1)
        return (self.base + np.asarray(self.strides) @ index).tolist()

    def jumps(self) -> tuple:
        """What the address moves by when loop k advances and the loops inside it restart:
        stride k less the inner loops' run, modulo 2^16."""
        return tuple((self.strides[k] - sum((c - 1) * s for c, s in zip(self.counts[k + 1:], self.strides[k + 1:])))
                     % (1 << 16) for k in range(READER_LOOPS))


def _patches_view(layer, source: Region) -> Pattern:
    """out[((r*(W/p) + c)*p + i)*p + j] = x[(r*p + i)*W + c*p + j] (docs/spec.md section 13.1)."""
    H, W, p = layer.height, layer.width, layer.patch
    return Pattern(source.base, (H // p, W // p, p, p), (p * W, p, W, 1))


def _select_view(layer, source: Region) -> Pattern:
    return Pattern(source.base + layer.index * layer.features, (1, 1, 1, layer.features), (0, 0, 0, 1))


VIEWS = {"patches": _patches_view, "select_token": _select_view}


@dataclass(frozen=True)
class ProgramStep:
    """One step: the layer (and for a butterfly its factor), its unit and what it reads and writes."""
    layer: str
    kind: str
    part: int
    unit_step: UnitStep
    reads: Pattern
    writes: Region
    table_base: int


@dataclass(frozen=True)
class NetworkProgram:
    """The program of one model: its steps, the table memory image (program words from 0,
    then the arrays), and where the host writes an input and reads an output.

    output_acc: the output is raw accumulators, ACC_BYTES bytes each (else int8);
    out_features: values per output row; activation_bytes: the highest byte in use + 1.
    """
    steps: tuple
    table_words: tuple
    input: Region
    output: Region
    output_acc: bool
    out_features: int
    activation_bytes: int

    def decode_output(self, data: bytes) -> np.ndarray:
        """The output region's bytes as the golden's output row (int64 accumulators or int8)."""
        raw = np.frombuffer(bytes(data), dtype="<i4" if self.output_acc else np.int8)
        return raw.astype(np.int64) if self.output_acc else raw.copy()


class _Allocator:
    """First-fit regions of the activation memory."""

    def __init__(self, size: int):
        self.size, self.used, self.peak = size, {}, 0

    def allocate(self, name: str, size: int, layer: str) -> Region:
        base = 0
        for region in sorted(self.used.values(), key=lambda r: r.base):
            if region.base - base >= size:
                break
            base = max(base, region.base + region.size)
        if base + size > self.size:
            raise LimitError(layer, "activation memory bytes", max(self.peak, base + size), self.size)
        self.used[name] = Region(base, size)
        self.peak = max(self.peak, base + size)
        return self.used[name]

    def free(self, name: str):
        del self.used[name]


def compile_program(config, limits: NetworkLimits = NetworkLimits()) -> NetworkProgram:
    """The layer program of whole-model `config` for a bitstream built for `limits`.

    Raises ConfigError for a model the network cannot run (no unit for a kind, a view of
    a view, a view as the model's output) and LimitError for one beyond the limits.
    """
    where = f"{config.source}"
    if not is_dataflow(config):
        raise ConfigError(where, "layers", [layer.kind for layer in config.layers],
                          "the network engine runs a whole model (a config with operator layers, docs/spec.md section 12)")
    sources = layer_inputs(config)
    layers = list(config.layers)
    built = [kind for kind in limits.units if kind in UNITS]
    for layer in layers:
        if layer.kind not in VIEWS and layer.kind not in built:
            raise ConfigError(where, f"layer '{layer.name}' kind", layer.kind,
                              f"the network bitstream has units for {', '.join(built)} (and the views {', '.join(VIEWS)})")
    views = {layer.name: layer for layer in layers if layer.kind in VIEWS}
    stored = {}                    # layer name -> the stored value it reads for each of its sources
    for layer in layers:
        resolved = []
        for source in sources[layer.name]:
            if source in views:
                if layer.kind in VIEWS or layer.kind == "add":
                    raise ConfigError(where, f"layer '{layer.name}' inputs", source,
                                      f"a {views[source].kind} output can be read only by a layer with one input that is not itself a view")
                resolved.append(sources[source][0])
            else:
                resolved.append(source)
        stored[layer.name] = resolved
    if layers[-1].kind in VIEWS:
        raise ConfigError(where, f"layer '{layers[-1].name}' kind", layers[-1].kind,
                          "the model's output must be a layer with a unit, not a view")
    last_read = {}
    for index, layer in enumerate(layers):
        if layer.kind not in VIEWS:
            for source in stored[layer.name]:
                last_read[source] = index

    widths = {"input": layers[0].in_features}
    for layer in layers:
        widths[layer.name] = widths[sources[layer.name][0]] // layer.in_features * layer.out_features
    if widths["input"] != limits.input_bytes:
        raise ConfigError(where, "input elements", widths["input"],
                          f"must equal the network bitstream's input_bytes ({limits.input_bytes})")
    last = layers[-1]
    output_bytes = widths[last.name] * (ACC_BYTES if last.output == "acc" else 1)
    if output_bytes != limits.output_bytes:
        raise ConfigError(where, f"layer '{last.name}' output bytes", output_bytes,
                          f"must equal the network bitstream's output_bytes ({limits.output_bytes})")

    # First the steps' count (the program's size fixes where the arrays start), then the steps.
    unit_layers = [layer for layer in layers if layer.kind not in VIEWS]
    rows = {layer.name: widths[sources[layer.name][0]] // layer.in_features for layer in unit_layers}
    count = sum(len(UNITS[layer.kind].steps(layer, rows[layer.name], 0, limits)) for layer in unit_layers)
    table_base = STEP_WORDS * (count + 1)
    memory = _Allocator(limits.activation_bytes)
    regions = {"input": memory.allocate("input", widths["input"], layers[0].name)}
    assert regions["input"].base == 0, regions            # where the writer stands after END
    steps, arrays = [], []
    for index, layer in enumerate(layers):
        if layer.kind in VIEWS:
            continue
        unit_steps = UNITS[layer.kind].steps(layer, rows[layer.name], table_base, limits)
        reads = _reads(layer, sources[layer.name], stored[layer.name], views, regions)
        for part, unit_step in enumerate(unit_steps):
            assert int(np.prod(reads.counts)) == unit_step.in_elements, (layer.name, reads, unit_step.in_elements)
            for k, (count, limit) in enumerate(zip(reads.counts, count_limits(limits))):
                if count > limit:
                    raise LimitError(layer.name, f"reader loop {k} count", count, limit)
            final = part == len(unit_steps) - 1
            name = layer.name if final else f"{layer.name}#{part}"
            writes = memory.allocate(name, unit_step.out_elements, layer.name)
            regions[name] = writes
            steps.append(ProgramStep(layer.name, layer.kind, part, unit_step, reads, writes, table_base))
            arrays.extend(unit_step.table_words)
            table_base += len(unit_step.table_words)
            if part:
                memory.free(f"{layer.name}#{part - 1}")
            reads = Pattern.contiguous(writes)
        for source in set(stored[layer.name]):
            if last_read[source] == index:
                memory.free(source)
    if len(steps) > limits.steps:
        raise LimitError(layers[-1].name, "program steps", len(steps), limits.steps)
    if table_base > limits.table_words:
        raise LimitError(layers[-1].name, "table memory words", table_base, limits.table_words)
    program = []
    for step in steps:
        program.extend(step_words(_header(UNITS[step.kind].number, step.reads, step.writes),
                                  pack_params(UNITS[step.kind].fields, step.unit_step.params)))
    program.extend(step_words(_header(END, Pattern.contiguous(regions[last.name]), Region(0, 0)), 0))
    return NetworkProgram(tuple(steps), tuple(program + arrays), regions["input"], regions[last.name],
                          last.output == "acc", last.out_features, memory.peak)


def _reads(layer, names, stored_names, views, regions) -> Pattern:
    """The address pattern of a layer's input: its region, a view of one, or an add's a then b per row."""
    if layer.kind == "add":
        a, b = (regions[name] for name in stored_names)
        E = layer.features
        return Pattern(a.base, (1, a.size // E, 2, E), (0, E, b.base - a.base, 1))
    name, = names
    if name in views:
        return VIEWS[views[name].kind](views[name], regions[stored_names[0]])
    return Pattern.contiguous(regions[name])


def _header(unit: int, reads: Pattern, writes: Region) -> dict:
    """A step's header fields (an END step's reads are the output region, its writes none
    at 0: the next input's region)."""
    header = {"unit": unit, "reader_base": reads.base, "writer_base": writes.base}
    header.update({f"count{k}_less_2": (c - 2) % (1 << 16) for k, c in enumerate(reads.counts)})
    jumps = reads.jumps()
    # Every view's pattern moves by 1 in the loops that have no jump of their own.
    assert all(jumps[k] == 1 or reads.counts[k] == 1 for k in range(READER_LOOPS) if k not in JUMPING_LOOPS), reads
    header.update({f"jump{k}": jumps[k] for k in JUMPING_LOOPS})
    return header
