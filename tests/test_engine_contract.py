"""The engine contract (hw/engine.py): every registered kind builds its ports from it and
reports the figures the manifest needs.

Expected values come from docs/spec.md: the members and their port names (sections 3
and 6.2), the memories in their documented order (7.5, 10.4, 11.6, 13.10) and each kind's
throughput formulas and bound rule (7.4, 10.3, 11.5, 13.10).
"""
import math
from pathlib import Path

import pytest
from amaranth.hdl import Fragment, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out, flipped

from butterfly_cases import ButterflyCase
from lut_cases import LutCase
from matrix_cases import MatrixCase
from nomac.hw.engine import Engine, EngineInterface, EngineSignature
from nomac.hw.engine_kinds import ENGINES, build_engine
from nomac.hw.vector_stream import vector_stream
from nomac.hw.flat_verilog import FlatPorts
from nomac.model.config import LAYER_KINDS, load_config


def ceil(a: int, b: int) -> int:
    return -(-a // b)


# Each kind's expectations: (memory names, RAM or not per memory, cycles per vector, bound, rule).

def lut_figures(layer):
    """Memory names (section 7.5), cycles per vector and bound (section 7.4)."""
    C, D, K, M, hw = layer.codebooks, layer.in_features, layer.centroids, layer.out_features, layer.hw
    if layer.encoder == "tree":
        names = ["split_dims", *(f"thresholds_level{level}" for level in range(int(math.log2(K))))]
        encoder = C
    else:
        names, encoder = ["prototypes"], C * K // hw.encoder_lanes
    cycles = max(ceil(D, hw.in_lanes), encoder, C * ceil(M, hw.table_reads), ceil(M, hw.out_lanes))
    names = [*names, "tables", "bias"]
    return names, [hw.memory == "ram"] * len(names), cycles, ceil(C * M, hw.table_reads), "ceil(C*M/R)"


def matrix_figures(layer):
    """Memory names (section 10.4), cycles per vector and bound (section 10.3)."""
    D, M, hw = layer.in_features, layer.out_features, layer.hw
    names = ["weights"] if layer.kind == "dense" else ["sign", "shift"]
    cycles = max(ceil(M, hw.lanes) * ceil(D, hw.terms_per_cycle), ceil(D, hw.in_lanes), ceil(M, hw.out_lanes))
    names = [*names, "bias"]
    return names, [hw.memory == "ram"] * len(names), cycles, ceil(D * M, hw.lanes * hw.terms_per_cycle), \
        "ceil(D*M/(U*T))"


def butterfly_figures(layer):
    """Memory names (section 11.6) and bound (section 11.5); the cycles per vector depend on
    each stage's input word, so they are not restated here."""
    names, writable = [], []
    for k, factor in enumerate(layer.factors):
        ours = [f"w{k}"] if factor.weights == "int8" else [f"sign{k}", f"shift{k}"]
        names += [*ours, f"bias{k}"]
        writable += [layer.hw.memory[k] == "ram"] * (len(ours) + 1)
    bound = max(ceil(f.p * f.s, lanes) for f, lanes in zip(layer.factors, layer.hw.lanes))
    return names, writable, None, bound, "max_k ceil(p_k*s_k/lanes_k)"


def gelu_figures(layer):
    """Section 13.10: one table, hw.lanes lookups a cycle."""
    E, hw = layer.features, layer.hw
    cycles = max(ceil(E, hw.in_lanes), ceil(E, hw.lanes), ceil(E, hw.out_lanes))
    return ["table"], [hw.memory == "ram"], cycles, ceil(E, hw.lanes), "ceil(E/L)"


def layernorm_figures(layer):
    """Section 13.10: weights and biases, L a word; the bound E/L (the cycles depend on the
    iterative units' bits a cycle, so they are not restated here)."""
    return ["weight", "bias"], [layer.hw.memory == "ram"] * 2, None, layer.features // layer.hw.lanes, "E/L"


def attention_figures(layer):
    """Section 13.10: the exp table; the bound 2*T*T*E/U multiplies on U multipliers plus one
    exp-table pass of T a row (the cycles follow the sequencer's timetable, not restated)."""
    T, E, H, U = layer.tokens, layer.features, layer.heads, layer.hw.lanes
    return ["exp_table"], [layer.hw.memory == "ram"], None, 2 * T * T * E // U + H * T * T, "2*T*T*E/U + H*T*T"


def patches_figures(layer):
    """Section 13.10: no config memory, one pixel a cycle."""
    return [], [], layer.height * layer.width, layer.height * layer.width, "H*W"


def select_token_figures(layer):
    """Section 13.10: no config memory, min(in_lanes, out_lanes) elements a cycle."""
    T, E, hw = layer.tokens, layer.features, layer.hw
    return [], [], ceil(T * E, min(hw.in_lanes, hw.out_lanes)), ceil(T * E, hw.in_lanes), "ceil(T*E/in_lanes)"


def embed_figures(layer):
    """Section 13.10: offsets L a word, every output beat a cycle."""
    T, E, hw = layer.tokens, layer.features, layer.hw
    cycles = max(ceil((T - 1) * E, hw.in_lanes), T * E // hw.lanes, ceil(T * E, hw.out_lanes))
    return ["offset"], [hw.memory == "ram"], cycles, T * E // hw.lanes, "T*E/L"


def add_figures(layer):
    """Section 13.10: no config memory; a's beats buffered, b's beats out, L elements a cycle."""
    E, hw = layer.features, layer.hw
    cycles = max(ceil(2 * E, hw.in_lanes), 2 * ceil(E, hw.lanes), ceil(E, hw.out_lanes))
    return [], [], cycles, 2 * ceil(E, hw.lanes), "2*ceil(E/L)"


FIGURES = {"lut": lut_figures, "shift": matrix_figures, "dense": matrix_figures, "butterfly": butterfly_figures,
           "gelu": gelu_figures, "layernorm": layernorm_figures, "attention": attention_figures,
           "patches": patches_figures, "select_token": select_token_figures, "embed": embed_figures,
           "add": add_figures}


def operator_layer(stem: str, hw: dict | None = None):
    """The bundled example operator (model/configs/op_<kind>.json), with hardware choices."""
    config = load_config(Path(__file__).parent.parent / "model" / "configs" / f"{stem}.json")
    return config.with_hw(hw).layers[0] if hw else config.layers[0]


# Every kind, ROM and RAM, int8 and acc outputs, one and several lanes on the streams.
CASES = [
    pytest.param(LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}).config().layers[0], id="lut-tree-rom"),
    pytest.param(LutCase("l1", 6, 4, 3, 4, {"table_reads": 3, "memory": "ram", "bias_bits": 13, "in_lanes": 2,
                                          "out_lanes": 3}, output="acc").config().layers[0], id="lut-l1-ram-acc"),
    pytest.param(MatrixCase("dense", 5, 3, {"lanes": 2, "terms_per_cycle": 2, "in_lanes": 2}).layer(),
                 id="dense-rom"),
    pytest.param(MatrixCase("shift", 6, 5, {"lanes": 2, "terms_per_cycle": 3, "memory": "ram", "out_lanes": 2},
                            output="acc").layer(), id="shift-ram-acc"),
    pytest.param(ButterflyCase("pair", ((8, 8, 2, 2, 2), (8, 8, 2, 2, 2)), ("int8", "shift")).layer(),
                 id="butterfly-rom"),
    pytest.param(ButterflyCase("pair", ((8, 8, 2, 2, 2), (8, 8, 2, 2, 2)), ("shift", "int8"),
                               {"memory": "ram", "in_lanes": 2}).layer(), id="butterfly-ram"),
    pytest.param(operator_layer("op_gelu"), id="gelu-rom"),
    pytest.param(operator_layer("op_gelu", {"lanes": 3, "in_lanes": 5, "memory": "ram"}), id="gelu-ram"),
    pytest.param(operator_layer("op_layernorm"), id="layernorm-rom"),
    pytest.param(operator_layer("op_layernorm", {"lanes": 2, "in_lanes": 4, "memory": "ram"}), id="layernorm-ram"),
    pytest.param(operator_layer("op_attention"), id="attention-rom"),
    pytest.param(operator_layer("op_attention", {"lanes": 2, "out_lanes": 3, "memory": "ram"}), id="attention-ram"),
    pytest.param(operator_layer("op_patches"), id="patches"),
    pytest.param(operator_layer("op_patches", {"in_lanes": 3, "out_lanes": 8}), id="patches-lanes"),
    pytest.param(operator_layer("op_select_token"), id="select_token"),
    pytest.param(operator_layer("op_select_token", {"in_lanes": 5, "out_lanes": 3}), id="select_token-lanes"),
    pytest.param(operator_layer("op_embed", {"lanes": 4, "in_lanes": 3, "memory": "ram"}), id="embed-ram"),
    pytest.param(operator_layer("op_embed", {"lanes": 8, "out_lanes": 5}), id="embed-rom"),
    pytest.param(operator_layer("op_add"), id="add"),
    pytest.param(operator_layer("op_add", {"lanes": 5, "out_lanes": 3}), id="add-lanes"),
]


def engine_of(layer) -> Engine:
    """The layer's engine, elaborated once (which also proves its ports are consistent)."""
    engine = build_engine(layer)
    Fragment.get(engine, None)
    return engine


def test_every_kind_has_an_engine_and_a_case():
    assert set(ENGINES) == set(LAYER_KINDS)
    assert {param.values[0].kind for param in CASES} == set(ENGINES)


@pytest.mark.parametrize("layer", CASES)
def test_the_signature_is_the_contract(layer):
    """Members in the documented order: the two vector streams, the status outputs, then a
    write and a read-back port per RAM memory, in manifest order."""
    engine = engine_of(layer)
    hw = layer.hw
    out_bits = 8 if layer.output == "int8" else engine.acc_bits
    assert isinstance(engine, Engine)
    assert isinstance(engine.signature, EngineSignature)
    assert (engine.signature.in_lanes, engine.signature.out_lanes) == (hw.in_lanes, hw.out_lanes)
    assert engine.out_shape == signed(out_bits)
    expected = {"i": In(vector_stream(hw.in_lanes, signed(8))), "o": Out(vector_stream(hw.out_lanes, signed(out_bits))),
                "idle": Out(1), "framing_error": Out(1)}
    for ram in engine.memories:
        if ram.writable:
            addr_width = max(1, (ram.depth - 1).bit_length())
            expected[f"{ram.layout.name}_write"] = Out(memory.WritePort.Signature(addr_width=addr_width,
                                                                                 shape=unsigned(ram.word_bits)))
            expected[f"{ram.layout.name}_read"] = In(wiring.Signature({"addr": Out(addr_width), "en": Out(1),
                                                                        "data": In(unsigned(ram.word_bits))}))
    assert list(engine.signature.members) == list(expected)
    assert engine.signature.members == wiring.SignatureMembers(expected)
    assert engine.signature.ram_memories == tuple(ram for ram in engine.memories if ram.writable)
    assert engine.signature == EngineSignature(in_lanes=hw.in_lanes, in_shape=signed(8), out_lanes=hw.out_lanes,
                                               out_shape=signed(out_bits), memories=engine.memories)


@pytest.mark.parametrize("layer", CASES)
def test_memories_and_figures_follow_the_spec(layer):
    engine = engine_of(layer)
    names, writable, cycles, bound, rule = FIGURES[layer.kind](layer)
    assert [ram.layout.name for ram in engine.memories] == names
    assert [ram.writable for ram in engine.memories] == writable
    if cycles is not None:
        assert engine.cycles_per_vector == cycles
    assert engine.cycles_per_vector_bound == bound
    assert engine.cycles_per_vector_bound_rule == rule
    assert isinstance(engine.acc_bits, int) and engine.acc_bits >= 8
    stages = engine.describe_stages()
    if layer.kind == "butterfly":
        assert [stage["factor"] for stage in stages] == list(range(len(layer.factors)))
        assert engine.acc_bits == max(stage["acc_bits"] for stage in stages)
        assert engine.cycles_per_vector >= max(stage["cycles_per_vector"] for stage in stages)
    else:
        assert stages == []


@pytest.mark.parametrize("layer", CASES)
def test_flat_port_names_are_the_manifests(layer):
    """Section 6.2: i_data, i_last, i_valid, i_ready, the same for o, idle, framing_error, then
    per RAM memory <memory>_write_en/_addr/_data (lib.memory's order) and <memory>_read_addr/_en/_data."""
    engine = engine_of(layer)
    expected = [f"{stream}_{field}" for stream in ("i", "o") for field in ("data", "last", "valid", "ready")]
    expected += ["idle", "framing_error"]
    for ram in engine.signature.ram_memories:
        name = ram.layout.name
        expected += [f"{name}_write_en", f"{name}_write_addr", f"{name}_write_data",
                     f"{name}_read_addr", f"{name}_read_en", f"{name}_read_data"]
    flat = FlatPorts(engine)
    Fragment.get(flat, None)
    assert list(flat.signature.members) == expected


@pytest.mark.parametrize("layer", CASES)
def test_host_ports_by_memory(layer):
    """write_port / read_port find a RAM memory's ports on the engine and, flipped, on an
    interface of its signature (what a board's command handler holds)."""
    engine = engine_of(layer)
    outside = flipped(engine.signature.create())
    assert isinstance(engine.signature.create(), EngineInterface)
    for ram in engine.signature.ram_memories:
        addr_width = max(1, (ram.depth - 1).bit_length())
        write, read = engine.write_port(ram), engine.read_port(ram)
        assert write.signature == memory.WritePort.Signature(addr_width=addr_width, shape=unsigned(ram.word_bits))
        assert (len(write.addr), len(write.data), len(read.addr), len(read.data)) == \
            (addr_width, ram.word_bits, addr_width, ram.word_bits)
        assert write.addr.name == f"{ram.layout.name}_write__addr"
        assert outside.write_port(ram).signature == write.signature.flip()
        assert outside.read_port(ram).signature == read.signature.flip()


def test_a_board_makes_every_memory_ram():
    rom = MatrixCase("dense", 5, 3).layer()
    assert ENGINES["dense"].with_ram_memories(rom, "here").hw.memory == "ram"
    ram = MatrixCase("dense", 5, 3, {"memory": "ram"}).layer()
    assert ENGINES["dense"].with_ram_memories(ram, "here") is ram
    chain = ButterflyCase("pair", ((8, 8, 2, 2, 2), (8, 8, 2, 2, 2)), hw={"memory": ["rom", "ram"]}).layer()
    assert ENGINES["butterfly"].with_ram_memories(chain, "here").hw.memory == ("ram", "ram")


def test_an_engine_must_report_its_figures():
    class Unfinished(Engine):
        cycles_per_vector_bound_rule = "1"

        def elaborate(self, platform):
            raise AssertionError("never built")

    with pytest.raises(TypeError, match="abstract"):
        Unfinished(in_lanes=1, out_lanes=1, out_shape=signed(8), memories=[])


@pytest.mark.parametrize("lanes", [0, -1, 1.0, None])
def test_lanes_are_validated(lanes):
    with pytest.raises(ValueError, match=r"EngineSignature: in_lanes = .*: must be a positive integer"):
        EngineSignature(in_lanes=lanes, in_shape=signed(8), out_lanes=1, out_shape=signed(8), memories=[])
