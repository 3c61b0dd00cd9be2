"""Adversarial frames through the real link gateware, checked frame by frame (cocotb).

The design is the simulated board (sim/simulated_board.py: the board core plus a
host-side UART in gateware). For each case of `nomac.sim.link_adversary` this
bench sends the bytes, lets the design run until it is quiet again (`busy` low:
nothing in the core, no bit on either wire; a frame cut short is ended by the
link's own timeout meanwhile), collects the replies, has the adversary check them,
and then reads every engine memory straight from the simulator (no link involved)
and compares it with the acknowledged writes. Every `probe_every` cases, and at
the end, the memories are also read back over the link (CRC of all memories), and
finally the board's STATUS counters are compared with the replies seen.

The plan (JSON, path in NOMAC_LINK_PLAN): divisor, regions, max_payload, seed,
cases, probe_every, report path.
"""
import dataclasses
import json
import os
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.handle import ArrayObject, HierarchyObject
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from nomac.boards import link_protocol as lp
from nomac.sim.drivers import hand_byte_to_host_tx
from nomac.sim.link_adversary import Adversary, Region

CLOCK_PERIOD_NS = 10


class HostLink:
    """Whole bytes to and from the simulated board's host-side UART."""

    def __init__(self, dut, divisor: int):
        self.dut, self.clock = dut, dut.clk
        self.byte_cycles = 10 * divisor
        self.reader = lp.FrameReader()
        self.frames = []
        dut.host_tx_valid.value = 0

    async def watch(self):
        while True:
            await RisingEdge(self.dut.host_rx_valid)
            await ReadOnly()
            self.frames += self.reader.feed(bytes([int(self.dut.host_rx.value)]))

    async def send(self, data: bytes):
        for byte in data:
            await hand_byte_to_host_tx(self.dut, self.clock, byte)
            await ClockCycles(self.clock, self.byte_cycles - 1)

    async def quiet(self, limit: int = 1_000_000):
        """Until `busy` has been low for two cycles (it is low for a cycle between a reply's
        last stop bit and the host-side receiver's last byte)."""
        deadline = int(get_sim_time("ns")) + limit * CLOCK_PERIOD_NS
        while int(get_sim_time("ns")) < deadline:
            if int(self.dut.busy.value):
                await FallingEdge(self.dut.busy)
            await ClockCycles(self.clock, 2)
            if not int(self.dut.busy.value):
                return
        raise TimeoutError(f"the board stayed busy for {limit} cycles")

    async def exchange(self, data: bytes) -> list:
        self.frames = []
        await self.send(data)
        await self.quiet()
        return self.frames


def find_memories(dut, names) -> dict:
    """The simulator's memory arrays named `names`, wherever the engine put them.

    A memory is the array of that name; Amaranth calls it `name$N` when a signal of its
    scope has the name already. A memory that is a component of its own (the network
    engine's table memory, hw/network/table_memory.py) is the only array in the scope of
    that name.
    """
    found, queue = {}, deque([dut])
    wanted = set(names)
    while queue and wanted - set(found):
        scope = queue.popleft()
        for child in scope:
            name = child._name.lstrip("\\").split("$")[0].strip()
            if isinstance(child, HierarchyObject):
                queue.append(child)
                arrays = [c for c in child if isinstance(c, ArrayObject)]
                if name in wanted and name not in found and len(arrays) == 1:
                    found[name] = arrays[0]
            elif isinstance(child, ArrayObject) and name in wanted and name not in found:
                found[name] = child
    missing = wanted - set(found)
    if missing:
        raise LookupError(f"memories {sorted(missing)} not found in the design")
    return found


def read_memory(handle, depth: int) -> list[int]:
    return [int(handle[address].value) for address in range(depth)]


@cocotb.test()
async def link_robustness(dut):
    plan = json.loads(Path(os.environ["NOMAC_LINK_PLAN"]).read_text())
    regions = [Region(**r) for r in plan["regions"]]
    adversary = Adversary(regions, plan["max_payload"], plan["seed"], batch=plan["batch"],
                          in_vector_bytes=plan["in_vector_bytes"], out_vector_bytes=plan["out_vector_bytes"])
    dut.rst.value = 1
    link = HostLink(dut, plan["divisor"])
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns", impl="gpi").start()
    await ClockCycles(dut.clk, 8)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    cocotb.start_soon(link.watch())
    memories = find_memories(dut, [r.name for r in regions])
    probes = []

    async def probe(where: str):
        seq = adversary._seq()
        replies = await link.exchange(lp.encode_frame(lp.Command.CRC, seq, lp.MEMORY_REQUEST.pack(lp.ALL_MEMORIES, 0, 0)))
        adversary.statuses.update(lp.Status(r.status).name for r in replies)
        ok = [r for r in replies if r.seq == seq and r.status == lp.Status.OK]
        got = lp.CRC_REPLY.unpack(ok[0].data)[0] if ok else None
        probes.append(got == adversary.digest())
        if got != adversary.digest():
            adversary._problem(f"after {where}: CRC of all memories read over the link {got}, "
                               f"the acknowledged writes give {adversary.digest():08x}")

    for number in range(plan["cases"]):
        case = adversary.next_case()
        replies = await link.exchange(case.data)
        adversary.check(case, replies)
        where = f"case {number} ({case.name})"
        adversary.compare_memories({r.index: read_memory(memories[r.name], r.depth) for r in regions}, where)
        if (number + 1) % plan["probe_every"] == 0 or number == plan["cases"] - 1:
            await probe(where)

    seq = adversary._seq()
    replies = await link.exchange(lp.encode_frame(lp.Command.STATUS, seq))
    adversary.statuses.update(lp.Status(r.status).name for r in replies)
    counters = lp.Counters.unpack(replies[-1].data) if replies and replies[-1].status == lp.Status.OK else None
    if counters is None:
        adversary._problem(f"STATUS got {replies}")
    else:
        for status in lp.Status:
            name = lp.COUNTERS[int(status)]
            if getattr(counters, name) != adversary.statuses[status.name]:
                adversary._problem(f"counter {name} = {getattr(counters, name)}, but "
                                   f"{adversary.statuses[status.name]} replies had status {status.name}")
    report = {"cases": plan["cases"], "tally": dict(adversary.tally), "statuses": dict(adversary.statuses),
              "probes": len(probes), "probes_matching": sum(probes), "problems": adversary.problems,
              "counters": None if counters is None else dataclasses.asdict(counters),
              "cycles": int(get_sim_time("ns")) // CLOCK_PERIOD_NS}
    Path(plan["report"]).write_text(json.dumps(report, indent=2))
    assert not adversary.problems, adversary.problems[:5]
