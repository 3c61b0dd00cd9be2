"""The network board (boards/network_board.py, boards/network_host.py): a whole model on the board link.

`nomac run WHOLE.json --sim` builds the board core with the network engine for the
limits, simulates it behind a pseudo-terminal, and drives it with the unmodified host:
IDENTIFY (the limits' id), the program and tables uploaded into the blank table memory
and checked by read-back CRC, images in batches, logits read back and compared with
the golden model, each step's cycles read from the step_cycles memory. The models are
made of the units that exist (gelu, and the views patches and select_token), so
nothing here depends on which units are built. The CI run uses Icarus (its build takes
seconds; Verilator's about a minute); the slow run uses the default, Verilator, on the
whole digits test split.
"""
import hashlib
import json

import numpy as np
import pytest
from amaranth.hdl import Fragment

from fake_board import FakeBoard, FakePort
from nomac.base.errors import ConfigError
from nomac.board_run import run_network_on_board
from nomac.boards import link_protocol as lp
from nomac.boards.host import BoardConnection, WrongBitstream
from nomac.boards.link_protocol import Command, Status
from nomac.boards.network_board import (BOARD_LIMITS, board_limits, limits_id, limits_json, load_limits,
                                        network_board_core, network_board_map)
from nomac.boards.network_host import NetworkSession, run_network
from nomac.cli import main
from nomac.hw.network.program import compile_program
from nomac.hw.network.unit import NetworkLimits
from nomac.model.config import load_config, make_config, save_config
from nomac.model.examples.vit import bundled_vit
from nomac.model.dense_spec import DenseLayer
from nomac.model.golden import run_golden
from nomac.model.operator_layers import GeluLayer, PatchesLayer, SelectTokenLayer
from nomac.model.vit.digits_data import load_dataset
from nomac.sim.simulated_board import check_network_link_robustness
from test_link_robustness import check as check_robustness

# 8x8 images, 4 patches of 16 pixels, two gelu steps on every token, the third token's 16
# values through a third gelu: 16 int8 outputs, 3 steps.
LIMITS = NetworkLimits(tokens=4, features=16, model_features=16, table_words=512, activation_bytes=256, steps=8,
                       input_bytes=64, output_bytes=16, units=("gelu",))


def gelu(name, features, seed):
    table = np.random.default_rng(seed).integers(-128, 128, 256).astype(np.int8)
    return GeluLayer.from_json("case", {"name": name, "kind": "gelu", "features": features}, {"table": table})


def small_model(seed: int = 1):
    return make_config([
        PatchesLayer.from_json("case", {"name": "patches", "kind": "patches", "height": 8, "width": 8, "patch": 4}, {}),
        gelu("g0", 16, seed), gelu("g1", 16, seed + 1),
        SelectTokenLayer.from_json("case", {"name": "token", "kind": "select_token", "tokens": 4, "features": 16,
                                            "index": 2}, {}),
        gelu("g2", 16, seed + 2)])


def dense(name, D, M, seed, output="int8"):
    rng = np.random.default_rng(seed)
    params = {"name": name, "kind": "dense", "in_features": D, "out_features": M, "out_shift": 7, "output": output}
    arrays = {"weights": rng.integers(-128, 128, (M, D)).astype(np.int8),
              "bias": rng.integers(-3000, 3000, M).astype(np.int32)}
    return DenseLayer.from_json("case", params, arrays)


def logits_model():
    """Patch embedding, gelu, the first token, a head of 10 raw accumulators: the shape of a ViT's ends."""
    return make_config([
        PatchesLayer.from_json("case", {"name": "patches", "kind": "patches", "height": 8, "width": 8, "patch": 4}, {}),
        dense("embedding", 16, 16, 1), gelu("act", 16, 2),
        SelectTokenLayer.from_json("case", {"name": "token", "kind": "select_token", "tokens": 4, "features": 16,
                                            "index": 0}, {}),
        dense("head", 16, 10, 3, output="acc")])


@pytest.fixture
def files(tmp_path):
    """The small model and its limits on disk."""
    model = save_config(small_model(), tmp_path / "small.json")
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps(limits_json(LIMITS)))
    return model, limits


def test_the_board_map_comes_from_the_limits_and_carries_their_id():
    board = network_board_map(LIMITS, clock_hz=12_000_000, divisor=12)
    assert [(r.index, r.name, r.depth, r.word_bits, r.word_bytes) for r in board.regions] == \
        [(0, "tables", 512, 64, 8), (1, "step_cycles", 8, 16, 2)]
    assert (board.in_vector_bytes, board.out_vector_bytes, board.out_bits) == (64, 16, 8)
    assert (board.max_payload, board.batch) == (512, (512 - 2) // 64)
    assert board.layer == board.kind == "network"
    # the id: 16 hex digits of SHA-256 over the canonical JSON of the limits (docs/spec.md section 5's rules)
    document = {"format": "nomac-network/1", "limits": {
        "tokens": 4, "features": 16, "model_features": 16, "heads": 4, "codebooks": 64, "centroids": 16,
        "table_words": 512, "activation_bytes": 256, "steps": 8, "input_bytes": 64, "output_bytes": 16,
        "attention_lanes": 2, "units": ["gelu"]}}
    expected = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
    assert board.config_id == limits_id(LIMITS) == expected
    assert board.identity().config_id == expected
    # every limit is part of the id; a model is not
    others = {limits_id(NetworkLimits(**{**limits_json(LIMITS), "units": ("gelu",), name: value}))
              for name, value in [("tokens", 5), ("steps", 9), ("table_words", 1024), ("output_bytes", 40)]}
    others.add(limits_id(NetworkLimits(**{**limits_json(LIMITS), "units": ("gelu", "add")})))
    assert len(others) == 5 and expected not in others
    assert set(BOARD_LIMITS) == {"icebreaker", "ulx3s-85f"}


def test_a_model_gets_the_first_bitstream_of_its_board_with_every_unit_it_needs():
    operators = {"layernorm", "attention", "gelu", "add", "embed"}
    lut_board, shift_board = BOARD_LIMITS["icebreaker"]
    assert (set(lut_board.units), set(shift_board.units)) == (operators | {"lut"}, operators | {"dense", "shift"})
    models = {plan: load_config(bundled_vit(plan)) for plan in ("lut_train_ice40_all", "shift", "mixed")}
    assert board_limits("icebreaker", models["lut_train_ice40_all"]) == lut_board
    assert board_limits("icebreaker", models["shift"]) == shift_board
    # mixed needs dense, lut, shift and butterfly: no iCEBreaker bitstream has them, the compiler
    # names the first layer without a unit
    assert board_limits("icebreaker", models["mixed"]) == lut_board
    with pytest.raises(ConfigError, match="layer 'patch_embed' kind = 'dense': the network bitstream has units "
                                          "for lut, layernorm,"):
        compile_program(models["mixed"], lut_board)
    assert all(board_limits("ulx3s-85f", model) == NetworkLimits(table_words=32768, attention_lanes=4)
               for model in models.values())


def test_limits_files_are_read_and_checked(tmp_path):
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(limits_json(LIMITS)))
    assert load_limits(path) == LIMITS
    path.write_text(json.dumps({"steps": 12}))
    assert load_limits(path) == NetworkLimits(steps=12)
    for document, message in [({"lanes": 4}, "field = 'lanes': unknown; NetworkLimits has tokens, "),
                              ({"steps": 0}, "steps = 0: must be a positive integer"),
                              ({"steps": True}, "steps = True: must be a positive integer"),
                              ({"units": "gelu"}, "units = 'gelu': must be a non-empty list of distinct layer kinds"),
                              ([1], "document = 'list': must be a JSON object")]:
        path.write_text(json.dumps(document))
        with pytest.raises(ConfigError, match=message):
            load_limits(path)


class FakeNetworkBoard(FakeBoard):
    """The fake board as a network board: RUN computes the golden model's int8 outputs."""

    def execute(self, frame) -> bytes:
        if frame.cmd == Command.RUN and frame.seq != self.last_changed:
            count, slot = lp.RUN_REQUEST.unpack_from(frame.payload)
            self.outputs[slot] = run_golden(self.config, self.inputs[:count]).astype(np.int8).tobytes()
            self.cycles = 1000 * count
            self.last_changed = frame.seq
            return bytes([Status.OK])
        return super().execute(frame)


def fake_network_link(board) -> BoardConnection:
    return BoardConnection(FakePort(board), port_name="the fake port", baud=1_000_000, timeout=0.005, retries=2)


def test_the_host_uploads_the_program_runs_images_and_reports_per_step_cycles():
    config = small_model()
    program = compile_program(config, LIMITS)
    board_map = network_board_map(LIMITS, clock_hz=12_000_000, divisor=12)
    board = FakeNetworkBoard(config, board_map)
    board.memories[1][:3] = [70, 71, 19]                       # what the engine would have left there
    data = load_dataset("digits")
    images, labels = data.int8("test")[:20], data.labels["test"][:20]
    report = run_network(config, program, fake_network_link(board), board_map, LIMITS, images, labels=labels)
    assert board.memories[0][:len(program.table_words)] == list(program.table_words)
    np.testing.assert_array_equal(report.outputs, run_golden(config, images))
    assert report.mismatched_images == report.mismatched_logits == 0 and report.passed
    golden_accuracy = float((run_golden(config, images).argmax(axis=1) == labels).mean())
    assert report.accuracy == report.golden_accuracy == golden_accuracy
    assert report.engine_cycles == 20 * 1000 and report.cycles_per_image == 1000
    assert [(s.step, s.layer, s.kind, s.cycles, s.bound, s.bound_rule) for s in report.steps] == \
        [(0, "g0", "gelu", 70, 64, "T*E"), (1, "g1", "gelu", 71, 64, "T*E"), (2, "g2", "gelu", 19, 16, "T*E")]
    summary = report.summary()
    assert "20 images (images), 0 images (0 logits) differ from the golden model" in summary
    assert f"accuracy: board {100 * golden_accuracy:.2f} %, golden {100 * golden_accuracy:.2f} %" in summary


def test_a_board_built_for_other_limits_is_refused_at_identify():
    config = small_model()
    program = compile_program(config, LIMITS)
    ours = network_board_map(LIMITS, clock_hz=12_000_000, divisor=12)
    other_limits = NetworkLimits(**{**limits_json(LIMITS), "units": ("gelu",), "table_words": 1024})
    other = network_board_map(other_limits, clock_hz=12_000_000, divisor=12)
    board = FakeNetworkBoard(config, other)
    with pytest.raises(WrongBitstream, match=f"reports config_id {other.config_id}, but the host compiled the "
                                             f"model for network limits {ours.config_id} "):
        run_network(config, program, fake_network_link(board), ours, LIMITS, np.zeros((2, 64), np.int8))
    assert [frame.cmd for frame in board.requests] == [Command.IDENTIFY]         # nothing uploaded
    with pytest.raises(ValueError, match="the map's config_id"):
        NetworkSession(fake_network_link(board), other, LIMITS)


def test_the_board_core_holds_the_network_engine_with_its_map():
    core = network_board_core(LIMITS, clock_hz=12_000_000, divisor=12)
    assert core.map == network_board_map(LIMITS, clock_hz=12_000_000, divisor=12)
    assert [m.layout.name for m in core.engine.signature.ram_memories] == ["tables", "step_cycles"]
    assert core.layer is None and core.blank
    Fragment.get(core, None)          # it elaborates: the command handler takes the engine's memories as the map's
    with pytest.raises(Exception, match="units = \\['gelu', 'lut_of_the_future'\\]: lut_of_the_future has no "
                                        "network unit yet"):
        network_board_core(NetworkLimits(units=("gelu", "lut_of_the_future")), clock_hz=12_000_000, divisor=12)


def test_nomac_run_sim_runs_a_whole_model_bit_exactly(files, tmp_path, capsys):
    model, limits = files
    out = tmp_path / "logits.npy"
    assert main(["run", str(model), "--sim", "--simulator", "icarus", "--limits", str(limits), "--vectors", "16",
                 "-o", str(out), "--work-dir", str(tmp_path / "sim"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "16 images (digits test split), 0 images (0 logits) differ from the golden model" in text
    assert "verified by read-back CRC, 0 reloads" in text
    data = load_dataset("digits")
    images, labels = data.int8("test")[:16], data.labels["test"][:16]
    expected = run_golden(load_config(model), images)
    np.testing.assert_array_equal(np.load(out), expected)
    accuracy = 100 * float((expected.argmax(axis=1) == labels).mean())
    assert f"accuracy: board {accuracy:.2f} %, golden {accuracy:.2f} %" in text
    assert "at 1,000,000 baud on a 12 MHz icebreaker (from simulated cycles)" in text
    # one element a cycle, after the reader's two cycles and the table read (tests/test_network_engine.py)
    for line in ("  0 g0", "gelu", "67       64  1.05x  (T*E)"):
        assert line in text


def test_raw_accumulator_logits_come_back_as_the_golden_gives_them(tmp_path):
    limits = NetworkLimits(tokens=4, features=16, model_features=16, table_words=512, activation_bytes=256, steps=8,
                           input_bytes=64, output_bytes=40, units=("gelu", "dense"))
    config = logits_model()
    report = run_network_on_board(config, limits=limits, count=8, simulator="icarus", work_dir=tmp_path)
    data = load_dataset("digits")
    expected = run_golden(config, data.int8("test")[:8])
    assert expected.dtype == np.int64 and np.abs(expected).max() > 127         # accumulators, not int8
    np.testing.assert_array_equal(report.outputs, expected)
    assert report.outputs.dtype == np.int64 and report.passed
    assert report.accuracy == report.golden_accuracy
    assert [(s.layer, s.kind, s.bound) for s in report.steps] == [("embedding", "dense", 4 * 16 * 16),
                                                                  ("act", "gelu", 64), ("head", "dense", 160)]
    assert all(s.bound <= s.cycles for s in report.steps)


def test_a_model_beyond_the_limits_is_refused_before_anything_runs(files, tmp_path, capsys):
    model, _ = files
    sim = tmp_path / "sim"
    cases = [({"steps": 2}, "layer 'g2': program steps = 3: exceeds the network's limit 2"),
             ({"activation_bytes": 64}, "activation memory bytes = "),
             ({"input_bytes": 32}, "input elements = 64: must equal the network bitstream's input_bytes (32)"),
             ({"units": ["add"]}, "layer 'g0' kind = 'gelu': the network bitstream has units for add")]
    for index, (change, message) in enumerate(cases):
        limits = tmp_path / f"limits{index}.json"
        limits.write_text(json.dumps({**limits_json(LIMITS), **change}))
        for where in (["--sim", "--work-dir", str(sim)], ["--port", "/dev/nomac-no-such-port"]):
            assert main(["run", str(model), "--limits", str(limits), *where]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("nomac: error: ") and message in err, (change, err)
    assert not sim.exists()                   # no simulator was started


def test_bad_options_are_one_line_errors_before_any_work(files, tmp_path, capsys):
    model, limits = files
    sim = tmp_path / "sim"
    np.save(tmp_path / "narrow.npy", np.zeros((3, 10), np.int8))
    np.save(tmp_path / "wide.npy", np.zeros((3, 64), np.int16))
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    (tmp_path / "bad_limits.json").write_text('{"lanes": 4}')
    (tmp_path / "folder.npy").mkdir()
    base = ["run", str(model), "--limits", str(limits), "--sim", "--work-dir", str(sim)]
    cases = [(["--inputs", str(tmp_path / "missing.npy")], "missing.npy"),
             (["--inputs", str(tmp_path / "junk.npy")], "junk.npy"),
             (["--inputs", str(tmp_path / "narrow.npy")], "vectors (--inputs) = int8 [3, 10]: must be int8 [N, 64]"),
             (["--inputs", str(tmp_path / "wide.npy")], "vectors (--inputs) = int16 [3, 64]: must be int8 [N, 64]"),
             (["--layer", "g0"], "--layer g0: "),
             (["--baud", "5000000"], "baud = 5000000: must be an integer in 184..3000000"),
             (["--max-payload", "40"], "max_payload = 40: must be an integer in 66..65528 for the network board"),
             (["--limits", str(tmp_path / "bad_limits.json")], "field = 'lanes': unknown"),
             (["--limits", str(tmp_path / "no_limits.json")], "no_limits.json"),
             (["-o", str(tmp_path / "folder.npy")], "is a folder; must name a file")]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("nomac: error: ") and message in err, (extra, err)
    assert not sim.exists()


def test_the_link_survives_adversarial_frames_on_the_network_board(tmp_path):
    limits = NetworkLimits(table_words=64, activation_bytes=64, steps=8, input_bytes=24, output_bytes=8,
                           units=("gelu",))
    check_robustness(check_network_link_robustness(limits, cases=300, seed=1, work_dir=tmp_path), 300)


@pytest.mark.slow
def test_the_link_survives_2000_adversarial_cases_on_the_network_board(tmp_path):
    limits = NetworkLimits(table_words=64, activation_bytes=64, steps=8, input_bytes=24, output_bytes=8,
                           units=("gelu",))
    check_robustness(check_network_link_robustness(limits, cases=2000, seed=2, work_dir=tmp_path), 2000)


@pytest.mark.slow
def test_nomac_run_sim_with_verilator_on_the_whole_digits_test_split(files, tmp_path, capsys):
    model, limits = files
    retrained = save_config(small_model(seed=7), tmp_path / "retrained.json")
    for path in (model, retrained):                 # another model on the same limits: the same bitstream
        assert main(["run", str(path), "--limits", str(limits), "-o", str(tmp_path / "out.npy"),
                     "--work-dir", str(tmp_path / "sim"), "--quiet"]) == 0
        text = capsys.readouterr().out
        assert "359 images (digits test split), 0 images (0 logits) differ" in text
        data = load_dataset("digits")
        np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), run_golden(load_config(path), data.int8("test")))
    assert len(list((tmp_path / "sim" / "builds").iterdir())) == 1          # built once
