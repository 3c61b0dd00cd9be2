"""Start the simulated board (sim/board_bench.py) and hand out its serial port.

    with SimulatedBoard(config) as board:
        link = BoardConnection.open(board.port)      # a pseudo-terminal path
        ...
    board.report                                      # frames and cycles seen on the wires

A session's files (Verilog, plan, log) are deleted after it ends well unless `keep`;
the simulator build stays cached.

The board core of the config (an iCEBreaker's core with a UART of `SIM_DIVISOR`
cycles per bit, memories blank) in `SimulatedBoardTop` is generated as Verilog, built once per design
(cached by the Verilog's hash, like `nomac sim`), and simulated in a background
thread while the caller talks to the port. `project_throughput` turns the report
into the throughput the same frames reach on a real board at its real baud rate.
"""
import hashlib
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nomac.boards.board_map import BoardMap
from nomac.boards.board_top import BOARDS, SIM_DIVISOR, Board, BoardCore
from nomac.boards.link_protocol import Command
from nomac.boards.uart import UARTReceiver, UARTTransmitter
from nomac.base.errors import NomacError
from nomac.hw.verilog_export import FlatPorts, to_verilog
from nomac.sim.runner import _WAIVERS, SIMULATORS, SimulationError, _tool_environment, default_work_dir

SIM_CLOCK_HZ = BOARDS["icebreaker"].clock_hz


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
    """A simulated board's Verilog in a fresh run folder, and where its build is cached."""

    def __init__(self, core: BoardCore, simulator: str, work_dir=None, prefix: str = "board"):
        if simulator not in SIMULATORS:
            raise NomacError(f"simulator = {simulator!r}: must be one of {', '.join(SIMULATORS)}")
        self.core, self.simulator = core, simulator
        root = (Path(work_dir) if work_dir else default_work_dir()).resolve()
        root.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-{core.map.layer}-", dir=root))
        self.top = f"nomac_board_{core.map.layer}"
        self.verilog = self.run_dir / f"{self.top}.v"
        self.verilog.write_text(to_verilog(FlatPorts(SimulatedBoardTop(core)), self.top))
        digest = hashlib.sha256(self.verilog.read_bytes()).hexdigest()[:16]
        self.build_dir = root / "builds" / f"{simulator}-board-{digest}"
        self.log = self.run_dir / "simulation.log"

    def simulate(self, test_module: str, plan: dict, plan_variable: str):
        """Build (once per design) and run the cocotb `test_module` with `plan`; blocks until it ends."""
        from cocotb_tools.runner import get_runner
        plan_path = self.run_dir / "plan.json"
        plan_path.write_text(json.dumps(plan))
        build_args = ["-Wno-fatal", str(_WAIVERS)] if self.simulator == "verilator" else []
        with _tool_environment(self.simulator):
            runner = get_runner(self.simulator)
            try:
                runner.build(sources=[self.verilog], hdl_toplevel=self.top, build_dir=self.build_dir,
                             timescale=("1ns", "1ps"), build_args=build_args, log_file=self.run_dir / "build.log")
            except (RuntimeError, SystemExit) as e:
                raise SimulationError(f"{self.simulator} build of {self.verilog} failed ({e}); "
                                      f"see {self.run_dir / 'build.log'}") from None
            try:
                runner.test(test_module=test_module, hdl_toplevel=self.top, build_dir=self.build_dir,
                            test_dir=self.run_dir, extra_env={plan_variable: str(plan_path)},
                            results_xml=str(self.run_dir / "results.xml"), log_file=self.log)
            except SystemExit:
                pass                      # a failing test: its report says why

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else "(no log)"


class SimulatedBoard:
    def __init__(self, config, layer_name: str | None = None, *, simulator: str = "icarus", work_dir=None,
                 max_payload: int | None = None, timeout_bytes: int = 16, blank: bool = True,
                 max_seconds: float = 3600.0, start_timeout: float = 600.0, keep: bool = False):
        self.keep = keep
        self.core = BoardCore(config, layer_name, clock_hz=SIM_CLOCK_HZ, divisor=SIM_DIVISOR,
                              max_payload=max_payload, timeout_bytes=timeout_bytes, blank=blank)
        self.map: BoardMap = self.core.map
        self.simulator, self.work_dir = simulator, work_dir
        self.max_seconds, self.start_timeout = max_seconds, start_timeout
        self.port = None
        self.report = None
        self._thread = None
        self._error = None

    def __enter__(self) -> "SimulatedBoard":
        self.design = design = BoardDesign(self.core, self.simulator, self.work_dir)
        self.run_dir = design.run_dir
        self._port_file, self._stop_file = design.run_dir / "port", design.run_dir / "stop"
        self._report_file = design.run_dir / "report.json"
        plan = {"divisor": self.map.divisor, "port_file": str(self._port_file), "stop_file": str(self._stop_file),
                "report": str(self._report_file), "max_seconds": self.max_seconds}

        def simulate():
            try:
                design.simulate("nomac.sim.board_bench", plan, "NOMAC_BOARD_PLAN")
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
                raise SimulationError(f"the simulated board did not start (log {design.log}):\n"
                                      f"{design.log_tail()}")
            time.sleep(0.02)
        self.port = self._port_file.read_text()
        return self

    def __exit__(self, *exc):
        self._stop()
        if self._report_file.exists():
            self.report = json.loads(self._report_file.read_text())
            if exc[0] is None and not self.keep:
                shutil.rmtree(self.run_dir, ignore_errors=True)   # the build stays cached
        elif exc[0] is None:
            raise SimulationError(f"the simulated board ended without a report (log {self.design.log}):\n"
                                  f"{self.design.log_tail()}")

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
    design = BoardDesign(core, simulator, work_dir, prefix="link")
    report_path = design.run_dir / "report.json"
    plan = {"divisor": core.map.divisor, "max_payload": core.map.max_payload, "seed": seed, "cases": cases,
            "probe_every": probe_every, "report": str(report_path),
            "regions": [{"index": r.index, "name": r.name, "depth": r.depth, "word_bits": r.word_bits}
                        for r in core.map.regions]}
    started = time.monotonic()
    design.simulate("nomac.sim.link_robustness_bench", plan, "NOMAC_LINK_PLAN")
    if not report_path.exists():
        raise SimulationError(f"the link robustness bench ended without a report (log {design.log}):\n"
                              f"{design.log_tail()}")
    report = json.loads(report_path.read_text())
    report["seconds"] = time.monotonic() - started
    report["log"] = str(design.log)
    if not report["problems"]:
        shutil.rmtree(design.run_dir, ignore_errors=True)
        report["log"] = None
    return report


UPLOAD = (Command.WRITE, Command.CRC)
INFERENCE = (Command.WRITE_INPUTS, Command.RUN, Command.READ_OUTPUTS)


def exchanges(report: dict) -> list[dict]:
    """Each request with its reply: bytes both ways and the cycles between them on the board."""
    requests = {}
    pairs = []
    for frame in sorted(report["frames"], key=lambda f: f["end"]):
        if frame["dir"] == "request":
            requests[(frame["cmd"], frame["seq"])] = frame
            continue
        request = requests.pop((frame["cmd"] & 0x7F, frame["seq"]), None)
        if request is not None:
            pairs.append({"cmd": request["cmd"], "request_bytes": request["bytes"], "reply_bytes": frame["bytes"],
                          "turnaround_cycles": frame["start"] - request["end"]})
    return pairs


def project_throughput(report: dict, board: Board, baud: int, *, table_bytes: int, vectors: int) -> dict:
    """Throughput of the logged frames on `board` at `baud`, from the simulated cycle counts.

    Each exchange takes (request bytes + reply bytes) * 10 bits / baud on the wire plus
    the cycles the board needed between the request's last bit and the reply's first
    (measured in simulation) / the board clock. The host's own latency (USB, the
    operating system) is not included: it adds per exchange on a real board.
    """
    def seconds(pairs):
        return sum((p["request_bytes"] + p["reply_bytes"]) * 10 / baud + p["turnaround_cycles"] / board.clock_hz
                   for p in pairs)

    pairs = exchanges(report)
    upload = [p for p in pairs if p["cmd"] in UPLOAD]
    inference = [p for p in pairs if p["cmd"] in INFERENCE]
    upload_s, inference_s = seconds(upload), seconds(inference)
    return {"board": board.name, "clock_hz": board.clock_hz, "baud": baud, "link_bytes_per_s": baud / 10,
            "upload_exchanges": len(upload), "upload_seconds": upload_s,
            "upload_bytes_per_s": table_bytes / upload_s if upload_s else 0.0,
            "inference_exchanges": len(inference), "inference_seconds": inference_s,
            "vectors_per_s": vectors / inference_s if inference_s else 0.0,
            "turnaround_cycles": {Command(c).name: max(p["turnaround_cycles"] for p in pairs if p["cmd"] == c)
                                  for c in sorted({p["cmd"] for p in pairs}) if c in Command._value2member_map_}}
