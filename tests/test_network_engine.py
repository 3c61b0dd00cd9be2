"""The network engine (hw/network/) runs compiled programs bit-exactly against the golden:
views (patches, select_token) in the reader's patterns, several steps on one unit,
regions reused as values die."""
import numpy as np

from nomac.hw.network.network_engine import NetworkEngine
from nomac.hw.network.program import compile_program
from nomac.hw.network.unit import NetworkLimits
from nomac.model.config import make_config
from nomac.model.golden import run_golden
from nomac.model.operator_layers import GeluLayer, PatchesLayer, SelectTokenLayer
from network_engine_run import run_program


def gelu(name, features, seed):
    table = np.random.default_rng(seed).integers(-128, 128, 256).astype(np.int8)
    return GeluLayer.from_json("case", {"name": name, "kind": "gelu", "features": features}, {"table": table})


def test_views_and_a_shared_unit_match_the_golden():
    layers = [PatchesLayer.from_json("case", {"name": "p", "kind": "patches", "height": 4, "width": 6, "patch": 2}, {}),
              gelu("g0", 4, 1), gelu("g1", 8, 2),
              SelectTokenLayer.from_json("case", {"name": "s", "kind": "select_token", "tokens": 3, "features": 8,
                                                  "index": 2}, {}),
              gelu("g2", 8, 3)]
    config = make_config(layers)
    limits = NetworkLimits(activation_bytes=64, input_bytes=24, output_bytes=8, units=("gelu",))
    program = compile_program(config, limits)
    x = np.random.default_rng(0).integers(-128, 128, (3, 24)).astype(np.int8)
    outputs, cycles = run_program(NetworkEngine(limits), program, x)
    assert outputs.tolist() == run_golden(config, x).tolist()
    # One element a cycle, after the reader's 2 cycles (memory read, FIFO) and gelu's table read.
    assert cycles[0] == [24 + 3, 24 + 3, 8 + 3]
