"""Host side of the network board: a whole model's program uploaded, images in, logits out.

    program = compile_program(config, limits)          # refuses a model beyond the limits
    with BoardConnection.open("/dev/ttyUSB1", baud=1_000_000) as link:
        board = NetworkSession(link, network_board_map(limits, clock_hz=..., divisor=...))
        board.check_identity()           # WrongBitstream unless built for these limits
        board.load_program(program)      # the table memory, verified by read-back CRC
        logits, cycles = board.run_images(program, images)
        board.step_cycles(program)       # each step's cycles for the last image

It is `BoardSession` (nomac.boards.host) with the network board's map: the same
frames, retries, progress bar and read-back CRC; only what is uploaded (the
program's table words, docs/spec.md section 16) and how outputs are read (the
program decodes them) differ. `run_network` does all of it for a compiled model,
compares every logit with the golden model and returns a `NetworkRunReport`.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from nomac.boards import link_protocol as lp
from nomac.boards.board_map import BoardMap
from nomac.boards.host import BoardConnection, BoardSession, LinkStatistics, LoadReport, link_lines
from nomac.boards.network_board import limits_id
from nomac.hw.network.program import NetworkProgram
from nomac.hw.network.unit import NetworkLimits

__all__ = ["TABLES", "STEP_CYCLES", "NetworkSession", "describe_limits", "StepCycles", "NetworkRunReport",
           "run_network"]

TABLES, STEP_CYCLES = 0, 1         # the network engine's memories on the link (network_memories)


class NetworkSession(BoardSession):
    """The commands of a network board built for `limits` (its map: network_board_map(limits, ...))."""

    def __init__(self, link: BoardConnection, board: BoardMap, limits: NetworkLimits, *, progress=None):
        if board.config_id != limits_id(limits):
            raise ValueError(f"NetworkSession: the map's config_id {board.config_id} is not the id "
                             f"{limits_id(limits)} of the limits")
        super().__init__(link, board, progress=progress)
        self.limits = limits

    def wrong_id_message(self, found: str) -> str:
        return (f"board on {self.link.port_name} reports config_id {found}, but the host compiled the model for "
                f"network limits {self.map.config_id} ({describe_limits(self.limits)}); the bitstream was built "
                f"for other limits (or for a single layer): load the network bitstream built for these limits, "
                f"or run with the limits it was built with (--limits)")

    def load_program(self, program: NetworkProgram, *, attempts: int = 3) -> LoadReport:
        """Upload the program and every step's arrays to the table memory from word 0, checked by
        read-back CRC (and sent again, up to `attempts` times)."""
        return self.upload([(self.map.regions[TABLES], list(program.table_words))], attempts=attempts,
                           description="uploading program and tables")

    def run_images(self, program: NetworkProgram, images: np.ndarray, *, on_batch=None) -> tuple[np.ndarray, int]:
        """The model's outputs for int8 images [N, input_bytes] (rows as the golden gives them: int8
        values or int64 accumulators) and the engine cycles the board reported for them."""
        raw, cycles = self.run(images, on_batch=on_batch)
        return np.stack([program.decode_output(row.tobytes()) for row in raw]), cycles

    def step_cycles(self, program: NetworkProgram) -> list[int]:
        """The cycles of each step of the program for the last image run."""
        return self.read_words(STEP_CYCLES, 0, len(program.steps))


def describe_limits(limits: NetworkLimits) -> str:
    return (f"input {limits.input_bytes} bytes, output {limits.output_bytes} bytes, {limits.table_words} table "
            f"words, {limits.steps} steps, units {', '.join(limits.units)}")


@dataclass(frozen=True)
class StepCycles:
    """One step of the program: its layer, measured cycles and bound (docs/spec.md section 16.4)."""
    step: int
    layer: str
    kind: str
    part: int
    cycles: int
    bound: int
    bound_rule: str


@dataclass
class NetworkRunReport:
    """What `run_network` did and measured."""
    port: str
    limits_id: str
    config_id: str
    images: int
    inputs: str                          # where the images came from
    mismatched_images: int | None        # None when not compared with the golden model
    mismatched_logits: int | None
    mismatches: list
    accuracy: float | None               # the board's predicted classes against the labels, when known
    golden_accuracy: float | None
    load: LoadReport
    run_seconds: float
    engine_cycles: int                   # the runs' cycles (WAIT replies), summed over the batches
    steps: list
    link: LinkStatistics
    counters: lp.Counters | None
    projection: dict = field(default_factory=dict)   # throughput at the real baud (simulated board)
    outputs: np.ndarray | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return not self.mismatched_images

    @property
    def cycles_per_image(self) -> float:
        return self.engine_cycles / self.images

    def summary(self) -> str:
        compared = ("not compared" if self.mismatched_images is None else
                    f"{self.mismatched_images} images ({self.mismatched_logits} logits) differ from the golden model")
        lines = [f"model {self.config_id} on the network board (limits {self.limits_id}) on {self.port}: "
                 f"{self.images} images ({self.inputs}), {compared}"]
        if self.accuracy is not None:
            lines.append(f"  accuracy: board {100 * self.accuracy:.2f} %"
                         + ("" if self.golden_accuracy is None else f", golden {100 * self.golden_accuracy:.2f} %"))
        lines += [f"  program and tables: {self.load.bytes} bytes in {self.load.frames} frames, verified by read-back "
                  f"CRC, {self.load.reloads} reloads, {self.load.seconds:.2f} s",
                  f"  images: {self.run_seconds:.2f} s ({self.images / max(self.run_seconds, 1e-9):,.1f} images/s, "
                  f"{1e3 * self.run_seconds / self.images:.2f} ms per image wall clock), "
                  f"{self.cycles_per_image:,.1f} engine cycles per image reported by the board"]
        lines += link_lines(self.link, self.counters)
        if self.projection:
            p = self.projection
            lines.append(f"  at {p['baud']:,.0f} baud on a {p['clock_hz'] / 1e6:g} MHz {p['board']} (from simulated "
                         f"cycles): {p['vectors_per_s']:,.1f} images/s end to end (link bound "
                         f"{p['link_images_per_s']:,.1f}), compute {p['compute_seconds_per_image'] * 1e3:.3f} ms per "
                         f"image ({p['compute_images_per_s']:,.1f} images/s), one image alone "
                         f"{p['image_latency_seconds'] * 1e3:.3f} ms; upload {p['upload_bytes_per_s']:,.0f} bytes/s")
        if self.steps:
            lines.append(f"  cycles per step (last image): {sum(s.cycles for s in self.steps):,} measured, "
                         f"{sum(s.bound for s in self.steps):,} bound")
            width = max(len(s.layer) for s in self.steps) + 3
            for s in self.steps:
                name = s.layer + (f"#{s.part}" if s.part else "")
                ratio = f"{s.cycles / s.bound:.2f}x" if s.bound else "-"
                lines.append(f"    {s.step:>3} {name:<{width}} {s.kind:<10} {s.cycles:>8,} {s.bound:>8,} {ratio:>6}  "
                             f"({s.bound_rule})")
        for problem in self.mismatches[:3]:
            lines.append(f"  ! image {problem['image']}: expected {problem['expected']}, got {problem['got']}")
        return "\n".join(lines)


def run_network(config, program: NetworkProgram, link: BoardConnection, board: BoardMap, limits: NetworkLimits,
                images: np.ndarray, *, labels=None, inputs: str = "images", compare: bool = True,
                progress=None) -> NetworkRunReport:
    """Identify, upload `program`, run `images` (int8 [N, input_bytes], checked by the caller),
    read the per-step cycles, compare every output with the golden model of `config`."""
    from nomac.model.golden import run_golden
    session = NetworkSession(link, board, limits, progress=progress)
    session.check_identity()
    load = session.load_program(program)
    started = time.monotonic()
    bar = progress(len(images), "running images", unit=" images") if progress else None
    outputs, cycles = session.run_images(program, images, on_batch=bar.update if bar is not None else None)
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - started
    measured = session.step_cycles(program)
    steps = [StepCycles(index, step.layer, step.kind, step.part, int(measured[index]), step.unit_step.bound,
                        step.unit_step.bound_rule) for index, step in enumerate(program.steps)]
    mismatched = wrong_logits = None
    mismatches, golden_accuracy = [], None
    if compare:
        expected = np.asarray(run_golden(config, images), dtype=np.int64)
        differs = outputs.astype(np.int64) != expected
        wrong = np.flatnonzero(differs.any(axis=1))
        mismatched, wrong_logits = int(len(wrong)), int(differs.sum())
        mismatches = [{"image": int(n), "expected": expected[n].tolist(), "got": outputs[n].tolist()}
                      for n in wrong[:10]]
        if labels is not None:
            golden_accuracy = float((expected.argmax(axis=1) == labels).mean())
    accuracy = None if labels is None else float((outputs.argmax(axis=1) == labels).mean())
    counters = session.status()
    return NetworkRunReport(port=link.port_name, limits_id=board.config_id, config_id=config.config_id,
                            images=len(images), inputs=inputs, mismatched_images=mismatched,
                            mismatched_logits=wrong_logits, mismatches=mismatches, accuracy=accuracy,
                            golden_accuracy=golden_accuracy, load=load, run_seconds=seconds, engine_cycles=cycles,
                            steps=steps, link=link.stats, counters=counters, outputs=outputs)
