"""The cocotb testbench every engine shares, driven by its manifest and a test plan.

The plan (JSON, path in NOMAC_BENCH_PLAN) lists phases; each phase may rewrite RAM
memories, then streams its vectors in with random input gaps while taking outputs
with random backpressure, and compares every output with the golden values the plan
carries. Stimulus and expected values are made outside the simulator
(`nomac.sim.runner`), so this module needs nothing but numpy and the manifest.
Results go to a JSON report; the test fails on any mismatch or protocol error.
"""
import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from nomac.sim.drivers import CLOCK_PERIOD_NS, MemoryPort, VectorSink, VectorSource, current_cycle

_MISMATCHES_KEPT = 10


async def wait_idle(dut, manifest: dict, limit: int = 100_000):
    idle = dut[manifest["status"]["idle"]]
    for _ in range(limit):
        await RisingEdge(dut[manifest["clock"]])
        if idle.value:
            return
    raise TimeoutError(f"'{manifest['status']['idle']}' stayed low for {limit} cycles")


@cocotb.test()
async def stream_bench(dut):
    plan = json.loads(Path(os.environ["NOMAC_BENCH_PLAN"]).read_text())
    manifest = json.loads(Path(plan["manifest"]).read_text())
    arrays = np.load(plan["arrays"])
    clock, reset = dut[manifest["clock"]], dut[manifest["reset"]]
    Clock(clock, CLOCK_PERIOD_NS, unit="ns", impl="gpi").start()
    source = VectorSource(dut, manifest["streams"]["in"], clock)
    sink = VectorSink(dut, manifest["streams"]["out"], clock)
    memories = {m["name"]: MemoryPort(dut, m, clock) for m in manifest["memories"] if "write" in m}
    framing_error = dut[manifest["status"]["framing_error"]]

    reset.value = int(manifest["reset_active_high"])
    await ClockCycles(clock, 3)
    reset.value = int(not manifest["reset_active_high"])
    await RisingEdge(clock)

    report = {"phases": [], "mismatches": [], "protocol_errors": [], "framing_errors": [], "memory_errors": []}
    for index, phase in enumerate(plan["phases"]):
        await wait_idle(dut, manifest)
        for name, words in phase["writes"].items():
            words = [int(word, 16) for word in words]
            await memories[name].write(words)
            read_back = await memories[name].read(len(words))
            if read_back != words:
                wrong = [a for a, (w, r) in enumerate(zip(words, read_back)) if w != r]
                report["memory_errors"].append(f"phase {phase['name']}: memory {name} read back differs "
                                               f"at {len(wrong)} addresses, first {wrong[0]}")
        vectors = arrays[f"{index}/vectors"]
        expected = arrays[f"{index}/expected"]
        source_rng = random.Random(plan["seed"] * 7919 + 2 * index)
        sink_rng = random.Random(plan["seed"] * 7919 + 2 * index + 1)
        source.first_transfer, sink.completed_at = None, []
        started = current_cycle()
        sending = cocotb.start_soon(source.send(vectors.tolist(), source_rng, phase["gap"], phase["last_on_beat"]))
        received = await sink.receive(len(vectors), sink_rng, phase["backpressure"])
        await sending
        got = np.array(received, dtype=np.int64).reshape(expected.shape)
        wrong = np.argwhere(np.any(got != expected, axis=1)).ravel()
        for n in wrong[:_MISMATCHES_KEPT]:
            report["mismatches"].append({"phase": phase["name"], "vector": int(n),
                                         "input": vectors[n].tolist(),
                                         "expected": expected[n].tolist(), "got": got[n].tolist()})
        await RisingEdge(clock)
        if int(framing_error.value) != int(phase["framing_error_after"]):
            report["framing_errors"].append(
                f"phase {phase['name']}: framing_error = {int(framing_error.value)}, "
                f"expected {int(phase['framing_error_after'])}")
        entry = {"name": phase["name"], "vectors": len(vectors), "mismatched_vectors": int(len(wrong)),
                 "cycles": current_cycle() - started}
        if phase["measure"] and len(sink.completed_at) > 1:
            done = sink.completed_at
            entry["latency_cycles"] = done[0] - source.first_transfer
            entry["cycles_per_vector"] = (done[-1] - done[0]) / (len(done) - 1)
        report["phases"].append(entry)
    report["protocol_errors"] = sink.protocol_errors
    Path(plan["report"]).write_text(json.dumps(report, indent=2))

    assert not report["mismatches"], f"{sum(p['mismatched_vectors'] for p in report['phases'])} vectors differ " \
                                     f"from the golden model; first: {report['mismatches'][0]}"
    assert not report["protocol_errors"], f"stream protocol errors: {report['protocol_errors']}"
    assert not report["framing_errors"], f"framing flag errors: {report['framing_errors']}"
    assert not report["memory_errors"], f"memory read-back errors: {report['memory_errors']}"
