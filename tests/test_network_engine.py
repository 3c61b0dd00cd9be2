"""The network engine (hw/network/) runs compiled programs bit-exactly against the golden:
views (patches, select_token) in the reader's patterns, several steps on one unit,
regions reused as values die, two units, the host's gaps and backpressure; and the
activation reader walks its patterns one byte a cycle under the sink's stalls."""
import random

import numpy as np
import pytest
from amaranth import Module
from amaranth.hdl import signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nomac.hw.flat_verilog import flat_rtlil
from nomac.hw.multiplier_count import count_multipliers
from nomac.hw.network.activation_streams import ActivationReader
from nomac.hw.network.network_engine import NetworkEngine
from nomac.hw.network.program import Pattern, compile_program
from nomac.hw.network.program_format import (HEADER_WORDS, JUMPING_LOOPS, PARAMS_WORDS, count_bits, count_limits,
                                             step_words)
from nomac.hw.network.unit import NetworkLimits
from nomac.model.config import make_config
from nomac.model.golden import run_golden
from nomac.model.operator_layers import AddLayer, GeluLayer, PatchesLayer, SelectTokenLayer
from network_engine_run import run_program


def gelu(name, features, seed):
    table = np.random.default_rng(seed).integers(-128, 128, 256).astype(np.int8)
    return GeluLayer.from_json("case", {"name": name, "kind": "gelu", "features": features}, {"table": table})


def test_views_and_a_shared_unit_match_the_golden():
    layers = [PatchesLayer.from_json("case", {"name": "p", "kind": "patches", "height": 4, "width": 6, "patch": 2}, {}),
              gelu("g0", 4, 1), gelu("g1", 8, 2),
              SelectTokenLayer.from_json("case", {"name": "s", "kind": "select_token", "tokens": 3, "features": 8,
                                                  "index": 2}, {}),
              gelu("g2", 8, 3)]
    config = make_config(layers)
    limits = NetworkLimits(activation_bytes=64, input_bytes=24, output_bytes=8, units=("gelu",))
    program = compile_program(config, limits)
    x = np.random.default_rng(0).integers(-128, 128, (3, 24)).astype(np.int8)
    outputs, cycles = run_program(NetworkEngine(limits), program, x)
    assert outputs.tolist() == run_golden(config, x).tolist()
    # One element a cycle, the first taken at the 3rd edge (docs/spec.md 16.4), and gelu's table read.
    assert cycles[0] == [24 + 3, 24 + 3, 8 + 3]


def test_a_one_byte_model_ends_its_input_on_the_byte_taken_while_idle():
    config = make_config([gelu("g", 1, 4)])
    limits = NetworkLimits(activation_bytes=2, input_bytes=1, output_bytes=1, steps=1, units=("gelu",))
    program = compile_program(config, limits)
    x = np.array([[-128], [127], [0]], np.int8)
    outputs, cycles = run_program(NetworkEngine(limits), program, x)
    assert outputs.tolist() == run_golden(config, x).tolist()
    assert cycles == [[1 + 3]] * 3


def add(name, inputs, features):
    return AddLayer.from_json("case", {"name": name, "kind": "add", "features": features, "inputs": inputs,
                                       "mult_a": 23406, "mult_b": 28087, "shift": 15}, {})


def test_an_add_read_backwards_with_gaps_and_backpressure_matches_the_golden():
    # input at 0, g0 at 16, g1 at 0: the add reads a = g0 then b = g1, a stride of -16
    config = make_config([gelu("g0", 16, 1), gelu("g1", 16, 2), add("r", ["g0", "g1"], 8), gelu("g2", 8, 3)])
    limits = NetworkLimits(activation_bytes=48, input_bytes=16, output_bytes=16, steps=4, units=("gelu", "add"))
    program = compile_program(config, limits)
    assert program.steps[2].reads.strides[2] < 0
    x = np.random.default_rng(1).integers(-128, 128, (3, 16)).astype(np.int8)
    x[0, :2] = [-128, 127]
    outputs, cycles = run_program(NetworkEngine(limits), program, x, gap=0.3, backpressure=0.4)
    assert outputs.tolist() == run_golden(config, x).tolist()
    assert cycles[0] == cycles[2]                                  # the steps' cycles do not see the host's stalls


class ReaderOnMemory(wiring.Component):
    """The activation reader on a block RAM that holds `contents`."""

    def __init__(self, contents, addr_bits: int, count_bits: tuple):
        self.contents, self.addr_bits, self.count_bits = contents, addr_bits, count_bits
        super().__init__({"word": In(64), "load": In(HEADER_WORDS), "last": Out(1),
                          "o": Out(stream.Signature(signed(8)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = ActivationReader(self.addr_bits, self.count_bits)
        m.submodules.bytes = ram = memory.Memory(shape=signed(8), depth=1 << self.addr_bits, init=self.contents)
        port = ram.read_port()
        m.d.comb += [reader.word.eq(self.word), reader.load.eq(self.load), self.last.eq(reader.last), port.addr.eq(reader.mem.addr), port.en.eq(reader.mem.en),
                     reader.mem.data.eq(port.data)]
        wiring.connect(m, wiring.flipped(self.o), reader.o)
        return m


@pytest.mark.parametrize("pattern, backpressure", [
    (Pattern(3, (1, 1, 1, 1), (0, 0, 0, 1)), 0.0),                 # one byte
    (Pattern(0, (1, 1, 1, 256), (0, 0, 0, 1)), 0.0),               # the largest count (256 bytes)
    (Pattern(0, (2, 3, 2, 2), (12, 2, 6, 1)), 0.0),                # patches of a 4 x 6 image
    (Pattern(0, (2, 3, 2, 2), (12, 2, 6, 1)), 0.5),
    (Pattern(200, (1, 3, 2, 5), (0, 5, -200, 1)), 0.7),            # an add, b before a
    (Pattern(102, (1, 2, 3, 1), (0, -100, -1, 0)), 0.3),           # negative strides down to address 0
    (Pattern(9, (2, 3, 2, 1), (2, 1, -1, 0)), 0.0),                # loop 0 of jump 1 around a count-1 loop 3
    (Pattern(0, (12, 2, 2, 2), (8, 2, 4, 1)), 0.2),                # the outer loops' largest counts: patches,
    (Pattern(0, (2, 12, 2, 2), (48, 2, 24, 1)), 0.0),
    (Pattern(5, (1, 2, 12, 10), (0, 120, 10, 1)), 0.0),
])
def test_the_reader_streams_a_patterns_bytes_one_a_cycle(pattern, backpressure):
    contents = np.random.default_rng(4).integers(-128, 128, 256).tolist()
    limits = NetworkLimits(tokens=4, features=12, activation_bytes=256)       # outer counts up to 12
    assert all(count <= limit for count, limit in zip(pattern.counts, count_limits(limits)))
    assert all(pattern.jumps()[k] == 1 or pattern.counts[k] == 1 for k in (0, 3))     # the rule of 16.3
    dut = ReaderOnMemory(contents, addr_bits=8, count_bits=count_bits(limits))
    header = {"unit": 0, "reader_base": pattern.base, "writer_base": 0,
              **{f"count{k}_less_2": (c - 2) % (1 << 16) for k, c in enumerate(pattern.counts)},
              **{f"jump{k}": pattern.jumps()[k] for k in JUMPING_LOOPS}}
    words = step_words(header, 0)[PARAMS_WORDS:PARAMS_WORDS + HEADER_WORDS]
    rng, taken = random.Random(2), []

    async def bench(ctx):
        for n, word in enumerate(words):
            ctx.set(dut.word, word)
            ctx.set(dut.load, 1 << n)
            await ctx.tick()                                      # the last: the start edge
        ctx.set(dut.load, 0)
        edges = 0
        while len(taken) < len(pattern.addresses()):
            ready = backpressure == 0 or rng.random() >= backpressure
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, last = await ctx.tick().sample(dut.o.valid, dut.o.payload, dut.last)
            edges += 1
            if valid and ready:
                taken.append(payload)
                assert last == (len(taken) == len(pattern.addresses()))
                if backpressure == 0:                              # the first at the 3rd edge, then one an edge
                    assert edges == len(taken) + 2
        for _ in range(4):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert taken == [contents[a] for a in pattern.addresses()]


def test_the_units_that_multiply_one_pair_a_cycle_share_one_multiplier():
    """dense, lut's squarer, add and embed: one unit runs at a time, so one multiplier (one DSP) serves them."""
    engine = NetworkEngine(NetworkLimits(units=("dense", "lut", "add", "embed")))
    assert count_multipliers(flat_rtlil(engine, "engine"), "engine") == 1
