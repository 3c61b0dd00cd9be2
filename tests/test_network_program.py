"""The layer program compiler (hw/network/program.py): view patterns, region reuse, and
models it refuses, before anything runs, with the thing, the value and the rule."""
import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.hw.network.program import Pattern, compile_program
from nomac.hw.network.program_format import HEADER_WORD_FIELDS, HEADER_WORDS, PARAMS_WORDS, STEP_WORDS
from nomac.hw.network.unit import NetworkLimits
from nomac.model.config import make_config
from nomac.model.int_ops import image_patches
from nomac.model.operator_layers import GeluLayer, PatchesLayer, SelectTokenLayer


def gelu(name, features):
    return GeluLayer.from_json("case", {"name": name, "kind": "gelu", "features": features},
                               {"table": np.zeros(256, np.int8)})


def patches(height, width, patch):
    return PatchesLayer.from_json("case", {"name": "p", "kind": "patches", "height": height, "width": width,
                                           "patch": patch}, {})


@pytest.mark.parametrize("height, width, patch", [(8, 8, 2), (4, 6, 2), (6, 9, 3), (1, 1, 1), (4, 4, 4)])
def test_a_patches_view_reads_in_the_goldens_order(height, width, patch):
    program = compile_program(make_config([patches(height, width, patch), gelu("g", patch * patch)]),
                              NetworkLimits(input_bytes=height * width, output_bytes=height * width, units=("gelu",)))
    image = np.arange(height * width)[None]
    expected = image_patches(image, height, width, patch).reshape(-1)
    assert program.steps[0].reads.addresses() == (program.input.base + expected).tolist()


def test_regions_are_reused_once_read_and_never_overlap_what_a_step_reads():
    config = make_config([gelu(f"g{k}", 40) for k in range(6)])
    program = compile_program(config, NetworkLimits(activation_bytes=120, input_bytes=40, output_bytes=40, units=("gelu",)))
    for step in program.steps:
        read = set(step.reads.addresses())
        assert not read & set(range(step.writes.base, step.writes.base + step.writes.size))
    assert program.activation_bytes == 80            # two rows of 40 in turn
    assert len(program.table_words) == STEP_WORDS * 7 + 6 * 32       # 6 steps and END, 6 tables


def header_values(words):
    """The header fields of a step's STEP_WORDS words, as docs/spec.md section 16.3 lays them out."""
    values = {}
    for word, fields in zip(words[PARAMS_WORDS:PARAMS_WORDS + HEADER_WORDS], HEADER_WORD_FIELDS):
        for n, field in enumerate(fields):
            values[field.name] = (word >> (16 * n)) & 0xFFFF
    return values


def test_the_program_words_hold_each_steps_header():
    config = make_config([patches(4, 4, 2), gelu("g", 4)])
    program = compile_program(config, NetworkLimits(input_bytes=16, output_bytes=16, units=("gelu",)))
    words = program.table_words[:STEP_WORDS]
    values = header_values(words)
    step = program.steps[0]
    assert program.input.base == 0 and values["reader_base"] == 0
    assert values["unit"] == 1 and values["writer_base"] == step.writes.base == 16
    assert words[:PARAMS_WORDS] == (4 * 4 | step.table_base << 16, 0, 0, 0)       # gelu: elements, table_base
    assert [values[f"count{k}_less_2"] for k in range(4)] == [0, 0, 0, 0]           # counts (2, 2, 2, 2)
    # strides (8, 2, 4, 1): jump k = stride k - sum over inner loops of (count - 1) * stride, mod 2^16
    assert program.steps[0].reads.jumps() == (8 - 2 - 4 - 1, 2 - 4 - 1 + (1 << 16), 4 - 1, 1)
    assert [values["jump1"], values["jump2"]] == [2 - 4 - 1 + (1 << 16), 4 - 1]
    assert words[PARAMS_WORDS + HEADER_WORDS:] == (0,)
    end_words = program.table_words[STEP_WORDS:2 * STEP_WORDS]                     # END reads the output
    assert header_values(end_words) == {"writer_base": 0, "reader_base": program.output.base, "unit": 0,
                                        "count0_less_2": 0xFFFF, "count1_less_2": 0xFFFF, "count2_less_2": 0xFFFF,
                                        "count3_less_2": 14, "jump1": (0 - 15) % (1 << 16), "jump2": (0 - 15) % (1 << 16)}
    assert end_words[:PARAMS_WORDS] + end_words[PARAMS_WORDS + HEADER_WORDS:] == (0,) * (STEP_WORDS - HEADER_WORDS)


@pytest.mark.parametrize("pattern", [Pattern(10, (1, 2, 2, 3), (0, 5, -4, 1)), Pattern(0, (2, 2, 2, 2), (8, 2, 4, 1)),
                                     Pattern(40, (3, 1, 2, 4), (-12, 7, -5, -1)), Pattern(5, (1, 1, 1, 1), (0, 0, 0, 1))])
def test_the_jumps_walk_the_patterns_addresses(pattern):
    """The reader's rule (docs/spec.md section 16.3): the innermost loop not at its last index
    advances, the address moves by its jump, the loops inside it restart."""
    index, address, walked = [0] * 4, pattern.base, [pattern.base]
    while True:
        k = max((k for k in range(4) if index[k] < pattern.counts[k] - 1), default=None)
        if k is None:
            break
        index[k + 1:], index[k] = [0] * (3 - k), index[k] + 1
        address = (address + pattern.jumps()[k]) % (1 << 16)
        walked.append(address)
    assert walked == pattern.addresses()


@pytest.mark.parametrize("config, limits, message", [
    (lambda: make_config([gelu("g", 64)]), NetworkLimits(activation_bytes=100, input_bytes=64, output_bytes=64, units=("gelu",)),
     "layer 'g': activation memory bytes = 128: exceeds the network's limit 100"),
    (lambda: make_config([gelu("g", 64)]), NetworkLimits(table_words=40, input_bytes=64, output_bytes=64, units=("gelu",)),
     "layer 'g': table memory words = 48: exceeds the network's limit 40"),
    (lambda: make_config([patches(4, 24, 1), gelu("g", 1)]),          # reads counts (4, 24, 1, 1)
     NetworkLimits(tokens=6, features=16, input_bytes=96, output_bytes=96, units=("gelu",)),
     "layer 'g': reader loop 1 count = 24: exceeds the network's limit 16"),
    (lambda: make_config([gelu("g", 64)]), NetworkLimits(input_bytes=64, output_bytes=64, units=("dense",)),
     "layer 'g' kind = 'gelu': the network bitstream has units for dense"),
    (lambda: make_config([patches(4, 4, 2), SelectTokenLayer.from_json(
        "case", {"name": "s", "kind": "select_token", "tokens": 4, "features": 4, "index": 1}, {}), gelu("g", 4)]),
     NetworkLimits(input_bytes=16, output_bytes=4, units=("gelu",)), "layer 's' inputs = 'p': a patches output can be read only by"),
    (lambda: make_config([gelu("g", 4), SelectTokenLayer.from_json(
        "case", {"name": "s", "kind": "select_token", "tokens": 1, "features": 4, "index": 0}, {})]),
     NetworkLimits(input_bytes=4, output_bytes=4, units=("gelu",)), "layer 's' kind = 'select_token': the model's output must be"),
])
def test_models_beyond_the_network_are_refused(config, limits, message):
    with pytest.raises(ConfigError) as error:
        compile_program(config(), limits)
    assert message in str(error.value)


@pytest.mark.parametrize("limits, message", [
    (NetworkLimits(input_bytes=32, output_bytes=64, units=("gelu",)),
     "input elements = 64: must equal the network bitstream's input_bytes (32)"),
    (NetworkLimits(input_bytes=64, output_bytes=40, units=("gelu",)),
     "layer 'g' output bytes = 64: must equal the network bitstream's output_bytes (40)"),
])
def test_a_model_of_other_vector_sizes_is_refused(limits, message):
    with pytest.raises(ConfigError) as error:
        compile_program(make_config([gelu("g", 64)]), limits)
    assert message in str(error.value)


def test_a_chain_of_hardware_layers_is_not_a_network():
    from nomac.model.config import load_config
    from pathlib import Path
    config = load_config(Path(__file__).parent.parent / "model" / "configs" / "dense_small.json")
    with pytest.raises(ConfigError, match="the network engine runs a whole model"):
        compile_program(config)


def test_pattern_addresses_follow_the_loops():
    pattern = Pattern(10, (1, 2, 2, 3), (0, 5, -4, 1))
    assert pattern.addresses() == [10, 11, 12, 6, 7, 8, 15, 16, 17, 11, 12, 13]
