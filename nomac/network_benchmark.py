"""`nomac bench --network`: a whole model's program step by step on the simulated network board.

For every whole-model config (docs/spec.md section 12): each step of its program
(hw/network/program.py, docs/spec.md section 16) with the cycles the simulated network
board measured for it (its `step_cycles` memory, the last image of the run) against the
step's bound (its lookups, adds or multiplies over the unit's parallelism, and the rule
that gives it), the sum of the steps and the cycles per image the board reported
against the sum of the bounds; then per board the model fits, the compute time per
image at the board's network clock and the images/s end to end at the issue's baud
rates against the link bound (bytes per image on the wire x 10 / baud), by the
projection of `nomac run` (nomac.board_run.project_on_board).

A model runs on the network board built for each board's limits for it
(nomac.boards.network_board.board_limits; one run serves boards with equal limits); a
board whose limits the model exceeds is reported with the compiler's refusal and gets
no run. Writes network_cycles.md (the tables), network_cycles.json and
network_cycles.png (measured against bound per step, a panel per model).

    nomac bench --network [WHOLE.json ...] [--images N] [-o DIR]
"""
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from nomac.base.errors import NomacError
from nomac.base.output_files import replaced_file, write_json, write_text
from nomac.board_run import project_on_board, run_network_on_board
from nomac.boards.devices import BOARDS, get_board
from nomac.boards.network_board import BOARD_LIMITS, board_limits, limits_id
from nomac.hw.network.program import compile_program
from nomac.model.config import load_config
from nomac.model.dataflow import is_dataflow
from nomac.sim.simulated_board import NETWORK_SIMULATOR

__all__ = ["DEFAULT_IMAGES", "NETWORK_CLOCK_HZ", "LINK_BAUDS", "STEP_TARGET", "TOTAL_TARGET", "bundled_models",
           "load_models", "network_clock", "NetworkRun", "BoardFigures", "ModelFigures", "measure_model", "format_model",
           "run_network_benchmark"]

DEFAULT_IMAGES = 16
# The network clock `nomac build WHOLE.json` reached with the PLL, per built bitstream (the id of
# its limits; README, "The whole tiny ViT on a board"): the iCEBreaker's lut set at 22.125 MHz
# (--clock-mhz 22.125 --seed 4), its dense + shift set at 21.75 MHz, the ULX3S-85F's nine units at
# 35 MHz. A bitstream not in here is projected at its board's oscillator, and says so.
NETWORK_CLOCK_HZ = {limits_id(BOARD_LIMITS["icebreaker"][0]): 22_125_000,
                    limits_id(BOARD_LIMITS["icebreaker"][1]): 21_750_000,
                    limits_id(BOARD_LIMITS["ulx3s-85f"][0]): 35_000_000}
# The baud rates of issue 15's throughput targets, per board.
LINK_BAUDS = {"icebreaker": (1_000_000,), "ulx3s-85f": (1_000_000, 3_000_000)}
# Issue 15's cycle targets: every step within 10 % of its bound, the image within 25 % of their sum.
STEP_TARGET, TOTAL_TARGET = 1.10, 1.25


def bundled_models() -> list[Path]:
    """The bundled tiny ViTs, model/configs/vit_*.json (made by `python -m nomac.model.examples.vit`)."""
    return sorted(Path(str(resources.files("nomac.model") / "configs")).glob("vit_*.json"))


def load_models(paths) -> list[tuple]:
    """(config, name) of every path, each read and checked to be a whole model before any simulation."""
    loaded = []
    for path in map(Path, paths):
        config = load_config(path)
        if not is_dataflow(config):
            raise NomacError(f"{path}: a chain of layers ({', '.join(layer.kind for layer in config.layers)}); "
                             f"bench --network runs whole models (a config with operator layers, docs/spec.md "
                             f"section 12)")
        loaded.append((config, path.stem))
    return loaded


@dataclass
class NetworkRun:
    """One run of a model on the simulated network board built for the limits of `boards`."""
    boards: list
    limits_id: str
    images: int
    inputs: str
    mismatched_images: int
    accuracy: float | None
    golden_accuracy: float | None
    cycles_per_image: float             # the runs' cycles (WAIT replies) over the images
    wire_bytes_per_image: float
    steps: list                         # nomac.boards.network_host.StepCycles of the last image

    @property
    def step_cycles(self) -> int:
        return sum(s.cycles for s in self.steps)

    @property
    def bound(self) -> int:
        return sum(s.bound for s in self.steps)

    def over_target(self) -> list:
        """The steps more than STEP_TARGET times their bound."""
        return [s for s in self.steps if s.cycles > STEP_TARGET * s.bound]


@dataclass
class BoardFigures:
    """A model's images on one board: its clock, compute per image, images/s at each baud."""
    board: str
    clock_hz: int
    clock: str                          # where clock_hz comes from
    cycles_per_image: float
    compute_seconds_per_image: float
    links: list                         # {"baud", "images_per_s", "link_images_per_s"} per baud


@dataclass
class ModelFigures:
    model: str
    config_id: str
    runs: list = field(default_factory=list)
    boards: dict = field(default_factory=dict)       # board -> BoardFigures
    refused: dict = field(default_factory=dict)      # board -> the compiler's refusal

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(run.mismatched_images == 0 for run in self.runs)


def network_clock(board: str, limits, clock_hz: dict | None = None) -> tuple[int, str]:
    """The network clock of `board`'s bitstream for `limits` and where it comes from: `clock_hz`
    (board -> Hz, given), else NETWORK_CLOCK_HZ, else the board's oscillator."""
    if clock_hz and board in clock_hz:
        return clock_hz[board], "the clock given"
    if limits_id(limits) in NETWORK_CLOCK_HZ:
        return NETWORK_CLOCK_HZ[limits_id(limits)], "the PLL clock nomac build reached"
    return get_board(board).clock_hz, "the board oscillator: no bitstream of these limits has met timing"


def measure_model(config, name: str, *, images: int, limits=None, clock_hz=None, simulator=NETWORK_SIMULATOR,
                  work_dir=None, progress=print) -> ModelFigures:
    """Run `config` on the simulated network board of every board whose limits it fits (`limits`:
    every board's bitstream built for these instead) and project its images onto each."""
    clock_hz = {} if clock_hz is None else clock_hz
    figures = ModelFigures(name, config.config_id)
    groups = {}                         # limits -> the boards built for them that the model fits
    for board in BOARDS:
        board_limit = board_limits(board, config) if limits is None else limits
        try:
            compile_program(config, board_limit)
        except NomacError as error:
            figures.refused[board] = str(error)
            continue
        groups.setdefault(board_limit, []).append(board)
    for board_limit, boards in groups.items():
        progress(f"  {name}: {images} images on the simulated network board built for the limits of "
                 f"{' and '.join(boards)} ({simulator}) ...")
        report = run_network_on_board(config, board=boards[0], limits=board_limit, count=images,
                                      simulator=simulator, work_dir=work_dir)
        figures.runs.append(NetworkRun(
            boards=boards, limits_id=limits_id(board_limit), images=report.images, inputs=report.inputs,
            mismatched_images=report.mismatched_images, accuracy=report.accuracy,
            golden_accuracy=report.golden_accuracy, cycles_per_image=report.cycles_per_image,
            wire_bytes_per_image=report.projection["wire_bytes_per_image"], steps=list(report.steps)))
        for board in boards:
            hz, source = network_clock(board, board_limit, clock_hz)
            links = []
            for baud in LINK_BAUDS.get(board, (get_board(board).default_baud,)):
                p = project_on_board(report, board, baud, clock_hz=hz)
                links.append({"baud": baud, "images_per_s": p["images_per_s"],
                              "link_images_per_s": p["link_images_per_s"]})
            figures.boards[board] = BoardFigures(board, hz, source, report.cycles_per_image,
                                                 report.cycles_per_image / hz, links)
    return figures


def markdown_table(header: list, rows: list) -> list[str]:
    """A markdown table with its columns padded, so it reads as one in a terminal too."""
    cells = [header] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return lines


def _ratio(cycles, bound) -> str:
    return f"{cycles / bound:.2f}" if bound else "-"


def format_run(run: NetworkRun) -> list[str]:
    """The step table of one run, its totals and how they compare with issue 15's targets."""
    rows = [[s.step, s.layer + (f"#{s.part}" if s.part else ""), s.kind, f"{s.cycles:,}", f"{s.bound:,}",
             _ratio(s.cycles, s.bound), s.bound_rule] for s in run.steps]
    rows.append(["", "all steps", "", f"{run.step_cycles:,}", f"{run.bound:,}", _ratio(run.step_cycles, run.bound),
                 "sum"])
    rows.append(["", "image", "", f"{run.cycles_per_image:,.0f}", f"{run.bound:,}",
                 _ratio(run.cycles_per_image, run.bound), "the board's cycles per image (WAIT): steps, program reads"])
    lines = markdown_table(["step", "layer", "kind", "measured cycles", "bound", "ratio", "rule"], rows)
    over = run.over_target()
    within = len(run.steps) - len(over)
    lines.append("")
    lines.append(f"{within} of {len(run.steps)} steps within {100 * (STEP_TARGET - 1):.0f} % of their bound"
                 + (f" (beyond: {', '.join(f'{s.layer} {s.cycles / s.bound:.2f}' for s in over)})" if over else "")
                 + f"; cycles per image {run.cycles_per_image / run.bound:.2f} x the sum of the bounds (target "
                 f"{TOTAL_TARGET:.2f})")
    return lines


def format_model(figures: ModelFigures) -> str:
    lines = [f"### {figures.model}", ""]
    shown = []                      # runs with the same cycles are one table
    for run in figures.runs:
        same = next((other for other in shown if other.steps == run.steps
                     and other.cycles_per_image == run.cycles_per_image), None)
        compared = f"{run.mismatched_images} images differ from the golden model"
        accuracy = "" if run.accuracy is None else \
            f", accuracy {100 * run.accuracy:.2f} % (golden {100 * run.golden_accuracy:.2f} %)"
        lines.append(f"config {figures.config_id}, {run.images} images ({run.inputs}) on the simulated network board "
                     f"built for the limits of {' and '.join(run.boards)} ({run.limits_id}): {compared}{accuracy}; "
                     + ("every step's cycles the same as in the run above" if same else
                        "each step's cycles in the last image:"))
        lines.append("")
        if same is None:
            shown.append(run)
            lines += format_run(run) + [""]
    if figures.boards:
        rows = []
        for b in figures.boards.values():
            for link in b.links:
                rows.append([b.board, f"{b.clock_hz / 1e6:g} MHz ({b.clock})", f"{b.cycles_per_image:,.0f}",
                             f"{b.compute_seconds_per_image * 1e3:.3f} ms ({1 / b.compute_seconds_per_image:,.0f}/s)",
                             f"{link['baud'] / 1e6:g} Mbaud", f"{link['images_per_s']:,.1f}",
                             f"{link['link_images_per_s']:,.1f}"])
        lines += markdown_table(["board", "clock", "cycles/image", "compute per image", "link",
                                 "images/s end to end", "link bound images/s"], rows)
        lines += ["", "images/s end to end: the run's exchanges replayed at the baud (10 bits a byte) and the clock, "
                      "the next inputs and the last outputs on the wire while the engine computes "
                      "(sim/inference_timeline.py; the host's USB latency comes on top); link bound: the wire alone",
                  ""]
    for board, error in figures.refused.items():
        lines.append(f"not on {board}: {error}")
    if not figures.runs:
        lines.append("refused on every board: no run")
    return "\n".join(lines).rstrip() + "\n"


def plot(models: list[ModelFigures], path: Path) -> bool:
    """Measured against bound per step, a panel per model that ran; False when none did."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ran = [m for m in models if m.runs]
    if not ran:
        return False
    widest = max(len(m.runs[0].steps) for m in ran)
    figure, axes = plt.subplots(len(ran), 1, figsize=(max(8.0, 0.4 * widest), 3.2 * len(ran)), squeeze=False)
    for axis, model in zip(axes[:, 0], ran):
        run = model.runs[0]
        xs = range(len(run.steps))
        axis.bar([x - 0.2 for x in xs], [s.cycles for s in run.steps], 0.4, label="measured")
        axis.bar([x + 0.2 for x in xs], [s.bound for s in run.steps], 0.4, label="bound")
        axis.set_yscale("log")
        axis.set_xticks(list(xs), [s.layer + (f"#{s.part}" if s.part else "") for s in run.steps], rotation=60,
                        ha="right", fontsize=7)
        axis.set_ylabel("cycles")
        ratios = axis.twinx()
        ratios.plot(list(xs), [s.cycles / s.bound for s in run.steps], "k.", label="measured / bound")
        ratios.axhline(STEP_TARGET, color="black", linestyle="--", linewidth=0.8)
        ratios.set_ylabel(f"measured / bound (dashed: {STEP_TARGET:.2f})")
        ratios.set_ylim(bottom=0)
        axis.set_title(f"{model.model} ({', '.join(run.boards)} limits): {run.cycles_per_image:,.0f} cycles per "
                       f"image, bounds {run.bound:,} ({run.cycles_per_image / run.bound:.2f}x)", fontsize=9)
        axis.legend(fontsize=8)
    figure.tight_layout()
    with replaced_file(path, "network cycles plot") as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    return True


def run_network_benchmark(configs=None, *, images: int = DEFAULT_IMAGES, out_dir="build/bench", limits=None,
                          clock_hz=None, simulator: str = NETWORK_SIMULATOR, work_dir=None,
                          progress=print) -> list[ModelFigures]:
    """`nomac bench --network`: every whole model of `configs` (default: the bundled tiny ViTs) on
    the simulated network board, `images` images each; prints the tables and writes
    network_cycles.{md,json,png} into `out_dir`. `clock_hz`: board -> network clock
    (default: each bitstream's from NETWORK_CLOCK_HZ); `limits`: the NetworkLimits every board is built for
    (default: each board's own)."""
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        raise NomacError(f"images = {images!r}: must be a whole number, at least 1")
    clock_hz = dict({} if clock_hz is None else clock_hz)
    for board, hz in clock_hz.items():
        get_board(board)
        if not isinstance(hz, int) or isinstance(hz, bool) or hz < 1:
            raise NomacError(f"clock_hz[{board!r}] = {hz!r}: must be a whole number of Hz, at least 1")
    paths = bundled_models() if configs is None else list(configs)
    if not paths:
        raise NomacError("bench --network: no bundled tiny ViT in model/configs (vit_*.json); make them with "
                         "python -m nomac.model.examples.vit, or name whole-model configs")
    loaded = load_models(paths)
    out_dir = Path(out_dir)
    progress(f"nomac bench --network: {len(loaded)} models, {images} images each, on the simulated network board")
    models = [measure_model(config, name, images=images, limits=limits, clock_hz=clock_hz, simulator=simulator,
                            work_dir=work_dir, progress=progress) for config, name in loaded]
    text = "\n".join(format_model(m) for m in models)
    print(text)
    written = [write_text(out_dir / "network_cycles.md", text, "network cycles table"),
               write_json(out_dir / "network_cycles.json",
                          {"images": images, "simulator": simulator, "clock_hz_given": clock_hz,
                           "link_bauds": {b: list(v) for b, v in LINK_BAUDS.items()},
                           "models": [asdict(m) for m in models]}, "network cycles")]
    if plot(models, out_dir / "network_cycles.png"):
        written.append(out_dir / "network_cycles.png")
    for path in written:
        print(f"wrote {path}")
    return models
