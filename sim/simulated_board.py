"""Start the simulated board (sim/board_bench.py) and hand out its serial port.

    with SimulatedBoard(config) as board:
        link = BoardConnection.open(board.port)      # a pseudo-terminal path
        ...
    board.report                                      # frames and cycles seen on the wires

A session's files (Verilog, plan, log) are deleted after it ends well unless `keep`;
the simulator build stays cached.

The board core of the config (an iCEBreaker's core with a UART of `SIM_DIVISOR`
cycles per bit, memories blank), or of the network board (`network_core`: the
network engine of hw/network/ built for NetworkLimits, its table memory blank, so
every run tests the upload; simulated with Verilator by default, NETWORK_SIMULATOR,
Icarus on request), in `SimulatedBoardTop` is generated as Verilog, built once per design
(sim/cocotb_run.py: cached by the Verilog's hash, like `nomac sim`), and simulated in a background
thread while the caller talks to the port. `project_throughput` turns the report
into the throughput the same frames reach on a real board at its real baud rate.
"""
import dataclasses
import json
import threading
import time

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nomac.boards.board_map import BoardMap
from nomac.boards.board_top import SIM_DIVISOR, BoardCore
from nomac.boards.devices import BOARDS, Board
from nomac.boards.link_protocol import (COUNT_REQUEST, FRAME_OVERHEAD, OUTPUTS_REQUEST, RUN_REQUEST, WAIT_REPLY,
                                        Command)
from nomac.boards.network_board import network_board_core
from nomac.boards.uart import UARTReceiver, UARTTransmitter
from nomac.hw.flat_verilog import FlatPorts, to_verilog
from nomac.hw.network.unit import NetworkLimits
from nomac.sim.cocotb_run import CocotbRun, SimulationError
from nomac.sim.inference_timeline import replay, timeline

SIM_CLOCK_HZ = BOARDS["icebreaker"].clock_hz
SIM_TIMEOUT_BYTES = 16         # a frame that stops arriving is dropped after this many byte times
# The network board is simulated with Verilator: a whole ViT takes tens of thousands of cycles
# an image, and with only its top's ports public (CocotbRun.run, ports_only) Verilator ran even a
# small network board (tests/test_network_board.py) 4.7 times as fast as Icarus (2.3 against 10.7
# s of CPU per 10^6 cycles under cocotb's clock), a gap that grows with the design.
NETWORK_SIMULATOR = "verilator"


def network_core(limits: NetworkLimits, *, max_payload: int | None = None,
                 timeout_bytes: int = SIM_TIMEOUT_BYTES) -> BoardCore:
    """The simulated network board's core: an iCEBreaker's clock, a UART of SIM_DIVISOR cycles
    per bit, a network engine built for `limits` whose memories start blank."""
    return network_board_core(limits, clock_hz=SIM_CLOCK_HZ, divisor=SIM_DIVISOR, max_payload=max_payload,
                              timeout_bytes=timeout_bytes)


class SimulatedBoardTop(wiring.Component):
    """The board core with the host's end of the serial line in gateware (the FTDI chip's part).

    `host_tx` takes bytes to send to the core's `rx` pin; `host_rx` pulses with each
    byte from its `tx` pin; `busy` is high while a frame is in the core or a bit on
    either wire; `host_frame_errors` counts bytes from the core with a low stop bit.
    """

    def __init__(self, core: BoardCore):
        self.core = core
        super().__init__({"host_tx": In(stream.Signature(8)), "host_rx": Out(stream.Signature(8)),
                          "busy": Out(1), "host_frame_errors": Out(16)})

    def elaborate(self, platform):
        m = Module()
        divisor = self.core.map.divisor
        m.submodules.core = core = self.core
        m.submodules.host_transmitter = transmitter = UARTTransmitter(divisor)
        m.submodules.host_receiver = receiver = UARTReceiver(divisor)
        connect(m, flipped(self.host_tx), transmitter.i)
        m.d.comb += [core.rx.eq(transmitter.tx), receiver.rx.eq(core.tx),
                     self.host_rx.valid.eq(receiver.o.valid), self.host_rx.payload.eq(receiver.o.payload),
                     self.busy.eq(core.busy | transmitter.busy | receiver.busy)]
        with m.If(receiver.frame_error):
            m.d.sync += self.host_frame_errors.eq(self.host_frame_errors + 1)
        return m


class BoardDesign:
    """A simulated board's Verilog (`SimulatedBoardTop` of the core) in a fresh cocotb run folder."""

    def __init__(self, core: BoardCore, simulator: str, work_dir=None, prefix: str = "board"):
        self.run = CocotbRun(simulator, work_dir, prefix=f"{prefix}-{core.map.layer}-")
        self.top = f"nomac_board_{core.map.layer}"
        self.verilog = self.run.folder / f"{self.top}.v"
        self.verilog.write_text(to_verilog(FlatPorts(SimulatedBoardTop(core)), self.top))

    def simulate(self, test_module: str, plan: dict, plan_variable: str, *, ports_only: bool = False):
        """Run the cocotb board bench `test_module` with `plan`; blocks until it ends. `ports_only`:
        the bench touches only the top's ports (CocotbRun.run)."""
        plan_path = self.run.folder / "plan.json"
        plan_path.write_text(json.dumps(plan))
        self.run.run(self.verilog, self.top, test_module, plan_variable, plan_path, ports_only=ports_only)


class SimulatedBoard:
    """The simulated board of `config`'s layer, or of the board `core` given instead (the
    network board: `network_core`)."""

    def __init__(self, config=None, layer_name: str | None = None, *, core: BoardCore | None = None,
                 simulator: str = "icarus", work_dir=None, max_payload: int | None = None,
                 timeout_bytes: int = SIM_TIMEOUT_BYTES, blank: bool = True, max_seconds: float = 3600.0,
                 start_timeout: float = 600.0, keep: bool = False):
        self.keep = keep
        if core is None:
            core = BoardCore(config, layer_name, clock_hz=SIM_CLOCK_HZ, divisor=SIM_DIVISOR,
                             max_payload=max_payload, timeout_bytes=timeout_bytes, blank=blank)
        self.core = core
        self.map: BoardMap = self.core.map
        self.simulator, self.work_dir = simulator, work_dir
        self.max_seconds, self.start_timeout = max_seconds, start_timeout
        self.port = None
        self.report = None
        self._thread = None
        self._error = None

    def __enter__(self) -> "SimulatedBoard":
        design = BoardDesign(self.core, self.simulator, self.work_dir)
        self.run = run = design.run
        self._port_file, self._stop_file = run.folder / "port", run.folder / "stop"
        plan = {"divisor": self.map.divisor, "port_file": str(self._port_file), "stop_file": str(self._stop_file),
                "report": str(run.report_path), "max_seconds": self.max_seconds}

        def simulate():
            try:
                design.simulate("nomac.sim.board_bench", plan, "NOMAC_BOARD_PLAN", ports_only=True)
            except BaseException as e:       # reported by __enter__/__exit__ in the caller's thread
                self._error = e

        self._thread = threading.Thread(target=simulate, name="simulated-board", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._port_file.exists():
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._stop()
                if self._error is not None:
                    raise self._error
                raise SimulationError(f"the simulated board did not start (log {run.log}):\n{run.log_tail()}")
            time.sleep(0.02)
        self.port = self._port_file.read_text()
        return self

    def __exit__(self, *exc):
        self._stop()
        if self.run.report_path.exists() or exc[0] is None:
            self.report = self.run.report("the simulated board")
            if exc[0] is None and not self.keep:
                self.run.remove()

    def _stop(self):
        self._stop_file.touch()
        if self._thread is not None:
            self._thread.join(timeout=60)


def check_link_robustness(config, layer_name: str | None = None, *, cases: int = 1000, seed: int = 1,
                          probe_every: int = 25, simulator: str = "icarus", work_dir=None,
                          max_payload: int = 64, timeout_bytes: int = 8) -> dict:
    """Run `cases` adversarial cases (sim/link_adversary.py) through a simulated board; the report.

    The board is blank and small (max_payload 64, frames time out after 8 byte times),
    so every case is short in simulated time; the report's "problems" lists what went
    wrong (empty when the board behaved).
    """
    core = BoardCore(config, layer_name, clock_hz=SIM_CLOCK_HZ, divisor=SIM_DIVISOR, max_payload=max_payload,
                     timeout_bytes=timeout_bytes, blank=True)
    return check_core_link_robustness(core, cases=cases, seed=seed, probe_every=probe_every,
                                      simulator=simulator, work_dir=work_dir)


def check_network_link_robustness(limits: NetworkLimits, *, cases: int = 1000, seed: int = 1,
                                  probe_every: int = 25, simulator: str = "icarus", work_dir=None,
                                  max_payload: int | None = None, timeout_bytes: int = 8) -> dict:
    """`check_link_robustness` on the network board built for `limits` (keep its memories
    small: the bench reads every word of them from the simulator after each case).
    `max_payload` defaults to the smallest the board allows (an image and an output must fit)."""
    if max_payload is None:
        max_payload = max(64, 2 + limits.input_bytes, 1 + limits.output_bytes)
    core = network_core(limits, max_payload=max_payload, timeout_bytes=timeout_bytes)
    return check_core_link_robustness(core, cases=cases, seed=seed, probe_every=probe_every,
                                      simulator=simulator, work_dir=work_dir)


def check_core_link_robustness(core: BoardCore, *, cases: int, seed: int, probe_every: int, simulator: str,
                               work_dir=None) -> dict:
    """The adversarial cases through the simulated board of `core` (blank memories); the report."""
    design = BoardDesign(core, simulator, work_dir, prefix="link")
    plan = {"divisor": core.map.divisor, "max_payload": core.map.max_payload, "seed": seed, "cases": cases,
            "batch": core.map.batch, "in_vector_bytes": core.map.in_vector_bytes,
            "out_vector_bytes": core.map.out_vector_bytes,
            "probe_every": probe_every, "report": str(design.run.report_path),
            "regions": [{"index": r.index, "name": r.name, "depth": r.depth, "word_bits": r.word_bits}
                        for r in core.map.regions]}
    started = time.monotonic()
    design.simulate("nomac.sim.link_robustness_bench", plan, "NOMAC_LINK_PLAN")
    report = design.run.report("the link robustness bench")
    report["seconds"] = time.monotonic() - started
    report["log"] = str(design.run.log)
    if not report["problems"]:
        design.run.remove()
        report["log"] = None
    return report


UPLOAD = (Command.WRITE, Command.CRC)
INFERENCE = (Command.WRITE_INPUTS, Command.RUN, Command.WAIT, Command.READ_OUTPUTS)


def project_throughput(report: dict, board: Board, baud: int, *, table_bytes: int, vectors: int) -> dict:
    """Throughput of the logged frames on `board` at `baud`, from the simulated cycle counts:
    the upload's and the inference's exchanges replayed (`inference_timeline.replay`: the
    bytes on the wire, the board's work and, while a run goes on in the background, the
    waits for it). The host's own latency (USB, the operating system) is not included: it
    adds per exchange on a real board."""
    upload = timeline(report["frames"], UPLOAD)
    inference = timeline(report["frames"], INFERENCE)
    upload_s, inference_s = replay(upload, baud, board.clock_hz), replay(inference, baud, board.clock_hz)
    return {"board": board.name, "clock_hz": board.clock_hz, "baud": baud, "link_bytes_per_s": baud / 10,
            "upload_exchanges": len(upload), "upload_seconds": upload_s,
            "upload_bytes_per_s": table_bytes / upload_s if upload_s else 0.0,
            "inference_exchanges": len(inference), "inference_seconds": inference_s,
            "vectors_per_s": vectors / inference_s if inference_s else 0.0,
            "inference": [dataclasses.asdict(e) for e in inference]}


def project_network_throughput(report: dict, board: Board, baud: int, board_map: BoardMap, *, table_bytes: int,
                               images: int, cycles_per_image: float) -> dict:
    """`project_throughput` of a network board run, with what an image costs on its own.

    Besides images/s end to end ("vectors_per_s"): the link bound (the baud / 10 bytes
    per second over the inference frames' bytes per image, as logged), compute alone
    (`cycles_per_image` at the board clock) and the latency of one image sent alone
    (its WRITE_INPUTS, RUN, WAIT and READ_OUTPUTS frames on the wire, plus its compute).
    """
    projection = project_throughput(report, board, baud, table_bytes=table_bytes, vectors=images)
    wire_bytes = sum(e["request_bytes"] + e["reply_bytes"] for e in projection["inference"])
    one_image = (2 * 4 * FRAME_OVERHEAD + (COUNT_REQUEST.size + board_map.in_vector_bytes) + 1 + RUN_REQUEST.size + 1
                 + (1 + WAIT_REPLY.size) + OUTPUTS_REQUEST.size + (1 + board_map.out_vector_bytes))
    compute = cycles_per_image / board.clock_hz
    projection.update({
        "wire_bytes_per_image": wire_bytes / images,
        "link_images_per_s": baud / 10 / (wire_bytes / images) if wire_bytes else 0.0,
        "compute_seconds_per_image": compute,
        "compute_images_per_s": 1 / compute if compute else 0.0,
        "image_latency_seconds": one_image * 10 / baud + compute})
    return projection
