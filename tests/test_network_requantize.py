"""The network units' runtime requantizer (hw/network/requantize.py) against the output rule
of docs/spec.md section 2, and its raw accumulator bytes against int32 little-endian."""
import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nomac.hw.network.requantize import ACC_BYTES, requantize_output
from nomac.hw.network.unit import unit_output_layout
from nomac.model.fixed_point import rshift_round, sat8


class EngineRequantizer(wiring.Component):
    """requantize_output on a unit output, as the network engine and StandaloneUnit use it."""

    def __init__(self, acc_bits: int):
        self.acc_bits = acc_bits
        super().__init__({"acc": In(signed(acc_bits)), "shift": In(unsigned(6)), "raw": In(1), "y": Out(signed(8))})

    def elaborate(self, platform):
        m = Module()
        output = Signal(unit_output_layout(self.acc_bits))
        m.d.comb += [output.acc.eq(self.acc), output.shift.eq(self.shift), output.raw.eq(self.raw),
                     self.y.eq(requantize_output(m, output))]
        return m


def simulate(dut, cases: list[dict]) -> list[int]:
    """`y` of the combinational `dut` for each case, a dict of its inputs."""
    outputs = []

    async def testbench(ctx):
        for case in cases:
            for name, value in case.items():
                ctx.set(getattr(dut, name), value)
            outputs.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return outputs


def check_requantizer(acc_bits: int, samples: int, seed: int):
    """Every shift 0..62 on the extremes, on values next to each shift's rounding ties and
    saturation thresholds, and on random values."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    cases = []
    for shift in range(63):
        half = 1 << max(shift - 1, 0)
        near = [lo, hi, 0, -1, 1, 255 * half, -257 * half, 127 << shift, -(128 << shift)]
        near += [(2 * int(k) + 1) * half for k in rng.integers(-300, 300, 4)]
        near += [int(v) for v in rng.integers(lo, hi, samples, endpoint=True)]
        cases += [{"acc": min(max(v + d, lo), hi), "shift": shift} for v in near for d in (-1, 0, 1)]
    expected = [int(sat8(rshift_round(np.int64(case["acc"]), case["shift"]))) for case in cases]
    cases = [{**case, "raw": 0} for case in cases]
    mismatches = [(c["acc"], c["shift"], y, e)
                  for c, y, e in zip(cases, simulate(EngineRequantizer(acc_bits), cases), expected) if y != e]
    assert not mismatches, mismatches[:10]


@pytest.mark.parametrize("acc_bits", [25, 33, 4])
def test_requantize_output_is_the_output_rule(acc_bits):
    check_requantizer(acc_bits, samples=4, seed=acc_bits)


@pytest.mark.slow
@pytest.mark.parametrize("acc_bits", [9, 16, 25, 33, 40, 47])
def test_requantize_output_random_sweep(acc_bits):
    check_requantizer(acc_bits, samples=200, seed=100 + acc_bits)


@pytest.mark.parametrize("acc_bits", [32, 33, 47])
def test_raw_bytes_are_int32_little_endian(acc_bits):
    """With `raw` and shift 8j, byte j of an int32 acc at either end, near 0 and at random."""
    rng = np.random.default_rng(acc_bits)
    values = [-(1 << 31), (1 << 31) - 1, 0, -1, 1, 0x0180FF7F]
    values += [int(v) for v in rng.integers(-(1 << 31), 1 << 31, 8)]
    cases = [(v, j) for v in values for j in range(ACC_BYTES)]
    expected = [int(np.array([v], "<i4").view(np.int8)[j]) for v, j in cases]
    unit_outputs = [{"acc": v, "shift": 8 * j, "raw": 1} for v, j in cases]
    assert simulate(EngineRequantizer(acc_bits), unit_outputs) == expected
