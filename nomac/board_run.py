"""`nomac run`: a config's layer, or a whole model, on a board or on the simulated board, by the
same host code.

The host driver (nomac.boards.host, nomac.boards.network_host) talks to whatever
answers on a serial port; the simulated board (nomac.sim.simulated_board) is the board
core under cocotb behind a pseudo-terminal. Choosing between them, and projecting the
simulated board's cycle counts onto a real board's baud rate, needs both, so it lives
here, above boards/ and sim/. A chain of layers runs one layer on its single-layer
board (`run_on_board`); a whole model (docs/spec.md section 12) runs on the network
board (`run_network_on_board`), compiled for the limits the board is built with.
"""
from nomac.boards import board_options as options
from nomac.boards.board_map import board_layer, board_map
from nomac.boards.devices import DEFAULT_BOARD, get_board
from nomac.boards.host import (CLI_COMMAND, DEFAULT_RETRIES, DEFAULT_TIMEOUT, BoardConnection, RunReport,
                               run_config, run_vectors)
from nomac.boards.network_board import board_limits, check_units_built, network_board_map
from nomac.boards.network_host import NetworkRunReport, run_network
from nomac.hw.network.program import compile_program
from nomac.sim.cocotb_run import check_simulator
from nomac.sim.inference_timeline import Exchange, replay
from nomac.sim.simulated_board import (NETWORK_SIMULATOR, SimulatedBoard, network_core, project_network_throughput,
                                       project_throughput)

__all__ = ["SIMULATED_TIMEOUT", "DEFAULT_VECTORS", "DIGITS_INPUT", "run_on_board", "network_inputs", "project_on_board",
           "run_network_on_board"]

SIMULATED_TIMEOUT = 60.0     # a simulator runs a few ten thousand cycles a second: allow it time for a reply
DEFAULT_VECTORS = 256        # random input vectors when none are given
DIGITS_INPUT = 64            # a whole model of 8x8 images: the digits ViT (nomac.model.vit.digits_data)


def run_on_board(config, layer_name: str | None = None, *, port: str | None = None, board: str = DEFAULT_BOARD,
                 baud: int | None = None, max_payload: int | None = None, vectors=None, count: int = DEFAULT_VECTORS,
                 seed: int = 1, compare: bool = True, timeout: float | None = None, retries: int = DEFAULT_RETRIES,
                 simulator: str = "icarus", work_dir=None, progress=None) -> RunReport:
    """`nomac run`: a board on `port` (built by `nomac build` for `board` at `baud`), or without a
    port the simulated board (sim/board_bench.py), driven by the same code through a
    pseudo-terminal. With the simulated board the report also projects the throughput of
    the same frames at `baud` on `board` from the simulated cycle counts. Every argument is
    checked before a port is opened or the simulator started."""
    spec, baud, divisor, timeout = _link_options(board, baud, port, timeout, retries)
    vectors = run_vectors(vectors, count, seed, board_layer(config, layer_name).in_features)
    if port is not None:
        expected = board_map(config, layer_name, clock_hz=spec.clock_hz, divisor=divisor, max_payload=max_payload)
        with BoardConnection.open(port, baud=baud, timeout=timeout, retries=retries) as link:
            return run_config(config, link, expected, vectors=vectors, count=count, seed=seed,
                              layer_name=layer_name, compare=compare, progress=progress)
    with SimulatedBoard(config, layer_name, simulator=simulator, work_dir=work_dir,
                        max_payload=max_payload) as simulated:
        with BoardConnection.open(simulated.port, baud=baud, timeout=timeout, retries=retries) as link:
            link.port_name = f"the simulated board ({simulated.port})"
            report = run_config(config, link, simulated.map, vectors=vectors, count=count, seed=seed,
                                layer_name=layer_name, compare=compare, progress=progress)
    report.projection = project_throughput(simulated.report, spec, baud, table_bytes=report.load.bytes,
                                           vectors=report.vectors)
    return report


def _link_options(board: str, baud, port, timeout, retries):
    """The board, its baud (default the board's), UART divisor and reply timeout (default by
    real or simulated board), each checked: what every run on a board starts with."""
    spec = get_board(board)
    baud = spec.default_baud if baud is None else baud
    divisor = options.board_divisor(CLI_COMMAND, spec, baud)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT if port is not None else SIMULATED_TIMEOUT
    options.check_timeout(CLI_COMMAND, timeout)
    options.check_retries(CLI_COMMAND, retries)
    return spec, baud, divisor, timeout


def network_inputs(config, images=None, *, count: int | None = None, seed: int = 1):
    """The images a whole model runs on, their labels (None when unknown) and where they came from.

    `images` (int8 [N, input]) as given, without labels; else for a model of 8x8 images
    (input DIGITS_INPUT, the digits ViT) the bundled digits test split with its labels
    (its first `count` images if `count` is given); else `count` (default DEFAULT_VECTORS)
    seeded random int8 vectors.
    """
    width = config.layers[0].in_features      # docs/spec.md section 12: one row of the first layer
    if images is not None:
        return run_vectors(images, 1, 0, width), None, "given images"
    if width == DIGITS_INPUT:
        from nomac.model.vit.digits_data import load_dataset
        if count is not None:
            options.check_count(CLI_COMMAND, count)
        data = load_dataset("digits")
        images, labels = data.int8("test"), data.labels["test"]
        if count is not None:
            images, labels = images[:count], labels[:count]
        return images, labels, "digits test split"
    count = DEFAULT_VECTORS if count is None else count
    return run_vectors(None, count, seed, width), None, f"random int8, seed {seed}"


def run_network_on_board(config, *, port: str | None = None, board: str = DEFAULT_BOARD, limits=None,
                         baud: int | None = None, max_payload: int | None = None, images=None,
                         count: int | None = None, seed: int = 1, compare: bool = True, timeout: float | None = None,
                         retries: int = DEFAULT_RETRIES, simulator: str | None = None, work_dir=None,
                         progress=None) -> NetworkRunReport:
    """`nomac run` of a whole model: the network board on `port`, built for `limits` (default:
    `board`'s for the model, nomac.boards.network_board.board_limits), or without a port the simulated
    network board (Verilator unless `simulator` says "icarus"). The model is compiled for
    the limits first, so a model beyond them is refused before a port is opened or a
    simulator started, as is every bad argument; images: see `network_inputs`."""
    spec, baud, divisor, timeout = _link_options(board, baud, port, timeout, retries)
    options.check_seed(CLI_COMMAND, seed)
    limits = board_limits(board, config) if limits is None else limits
    program = compile_program(config, limits)
    images, labels, inputs = network_inputs(config, images, count=count, seed=seed)
    if port is not None:
        expected = network_board_map(limits, clock_hz=spec.clock_hz, divisor=divisor, max_payload=max_payload)
    else:
        simulator = NETWORK_SIMULATOR if simulator is None else simulator
        check_simulator(simulator)
        check_units_built(limits, "the simulated network board")
        core = network_core(limits, max_payload=max_payload)
    if port is not None:
        with BoardConnection.open(port, baud=baud, timeout=timeout, retries=retries) as link:
            return run_network(config, program, link, expected, limits, images, labels=labels, inputs=inputs,
                               compare=compare, progress=progress)
    with SimulatedBoard(core=core, simulator=simulator, work_dir=work_dir) as simulated:
        with BoardConnection.open(simulated.port, baud=baud, timeout=timeout, retries=retries) as link:
            link.port_name = f"the simulated board ({simulated.port})"
            report = run_network(config, program, link, simulated.map, limits, images, labels=labels,
                                 inputs=inputs, compare=compare, progress=progress)
    report.projection = project_network_throughput(simulated.report, spec, baud, simulated.map,
                                                   table_bytes=report.load.bytes, images=report.images,
                                                   cycles_per_image=report.cycles_per_image)
    return report


def project_on_board(report: NetworkRunReport, board: str, baud: int, clock_hz: int | None = None) -> dict:
    """A simulated network run's images on `board` at `baud`: the run's exchanges replayed
    (sim/inference_timeline.py: their bytes on the wire, while the engine computes the last
    batch in the background, at `clock_hz`, default the board's oscillator clock; a PLL
    build runs faster, see its report.json)."""
    spec = get_board(board)
    clock_hz = spec.clock_hz if clock_hz is None else clock_hz
    exchanges = [Exchange(**e) for e in report.projection["inference"]]
    link = report.projection["wire_bytes_per_image"] * 10 / baud
    return {"board": board, "baud": baud, "clock_hz": clock_hz,
            "images_per_s": report.images / replay(exchanges, baud, clock_hz),
            "link_images_per_s": 1 / link, "compute_seconds_per_image": report.cycles_per_image / clock_hz}
