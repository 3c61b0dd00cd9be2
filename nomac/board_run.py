"""`nomac run`: a config's layer on a board, or on the simulated board, by the same host code.

The host driver (nomac.boards.host) talks to whatever answers on a serial port; the
simulated board (nomac.sim.simulated_board) is the board core under cocotb behind a
pseudo-terminal. Choosing between them, and projecting the simulated board's cycle
counts onto a real board's baud rate, needs both, so it lives here, above boards/
and sim/.
"""
from nomac.boards import board_options as options
from nomac.boards.board_map import board_layer, board_map
from nomac.boards.devices import DEFAULT_BOARD, get_board
from nomac.boards.host import (CLI_COMMAND, DEFAULT_RETRIES, DEFAULT_TIMEOUT, BoardConnection, RunReport,
                               run_config, run_vectors)
from nomac.sim.simulated_board import SimulatedBoard, project_throughput

__all__ = ["SIMULATED_TIMEOUT", "run_on_board"]

SIMULATED_TIMEOUT = 60.0     # a simulator runs a few ten thousand cycles a second: allow it time for a reply


def run_on_board(config, layer_name: str | None = None, *, port: str | None = None, board: str = DEFAULT_BOARD,
                 baud: int | None = None, max_payload: int | None = None, vectors=None, count: int = 256,
                 seed: int = 1, compare: bool = True, timeout: float | None = None, retries: int = DEFAULT_RETRIES,
                 simulator: str = "icarus", work_dir=None, progress=None) -> RunReport:
    """`nomac run`: a board on `port` (built by `nomac build` for `board` at `baud`), or without a
    port the simulated board (sim/board_bench.py), driven by the same code through a
    pseudo-terminal. With the simulated board the report also projects the throughput of
    the same frames at `baud` on `board` from the simulated cycle counts. Every argument is
    checked before a port is opened or the simulator started."""
    spec = get_board(board)
    baud = spec.default_baud if baud is None else baud
    divisor = options.board_divisor(CLI_COMMAND, spec, baud)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT if port is not None else SIMULATED_TIMEOUT
    options.check_timeout(CLI_COMMAND, timeout)
    options.check_retries(CLI_COMMAND, retries)
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
