"""The network board: the whole model's engine (hw/network/) behind the board link.

A network bitstream is built for `NetworkLimits`, not for a model: any model within
them runs on it once the host has uploaded its program and tables (a retrained model
needs no rebuild). So the board map of a network board comes from the limits alone:
its memories are the network engine's (`tables`, `step_cycles`), its vectors an image
of `input_bytes` int8 and an output of `output_bytes` bytes, and the id IDENTIFY
reports is the limits' id (`limits_id`), which the host compares with the limits it
compiled the model for (docs/spec.md sections 14-16).

`BOARD_LIMITS` holds the limits each board is built with unless told otherwise (one
entry per unit set, the model picks: `board_limits`);
`load_limits` reads other limits from a JSON file of NetworkLimits fields.
"""
import dataclasses
import hashlib
import json

from nomac.base.errors import ConfigError, NomacError
from nomac.boards.board_map import (DEFAULT_TIMEOUT_BYTES, BoardMap, board_max_payload, check_link_timing,
                                    memory_regions)
from nomac.boards.board_top import BoardCore
from nomac.boards.devices import BOARDS
from nomac.boards.link_protocol import element_bytes
from nomac.hw.network.network_engine import NetworkEngine, network_memories
from nomac.hw.network.program import VIEWS
from nomac.hw.network.unit import NetworkLimits
from nomac.hw.network.units import UNITS
from nomac.model.json_files import read_json

__all__ = ["NETWORK_LAYER", "LIMITS_FORMAT", "OUT_BITS", "BOARD_LIMITS", "unit_kinds", "board_limits", "limits_json", "limits_id",
           "load_limits", "check_units_built", "network_board_map", "network_board_core"]

NETWORK_LAYER = "network"          # the board map's `layer` and `kind` on a network board
LIMITS_FORMAT = "nomac-network/1"  # hashed with the limits into their id
OUT_BITS = 8                       # the network engine streams bytes out (accumulators as 4 bytes each)

# The limits each board's network bitstream is built with by default, one entry per unit set;
# a model gets the first entry whose units it needs (`board_limits`). The iCEBreaker's table
# memory is its 4 SPRAMs (16K words) and a bitstream holds the operators and one matrix unit
# (the iCE40UP5K has room for no more): lut for lut_train_ice40_all (no dense layer either),
# dense and shift for the shift model (a dense patch embedding). The ULX3S-85F's block RAM holds
# 32K words and every unit, for lut_train_v1_k8 and mixed, with attention on 4 lanes (its DSP
# blocks are plenty).
_ICEBREAKER_OPERATORS = ("layernorm", "attention", "gelu", "add", "embed")
BOARD_LIMITS = {"icebreaker": tuple(NetworkLimits(units=tuple(kind for kind in NetworkLimits().units
                                                              if kind in (*_ICEBREAKER_OPERATORS, *matrix)))
                                    for matrix in (("lut",), ("dense", "shift"))),
                "ulx3s-85f": (NetworkLimits(table_words=32768, attention_lanes=4),)}
assert set(BOARD_LIMITS) == set(BOARDS), "every board needs its network limits"


def unit_kinds(config) -> set:
    """The layer kinds of whole-model `config` that take a unit (every kind but the views)."""
    return {layer.kind for layer in config.layers if layer.kind not in VIEWS}


def board_limits(board: str, config) -> NetworkLimits:
    """The limits `board`'s network bitstream for `config` is built with: the first of the
    board's BOARD_LIMITS that has a unit for every kind the model needs (none has: the first,
    which the program compiler then refuses naming the kind)."""
    if board not in BOARD_LIMITS:
        raise NomacError(f"board {board!r}: no network limits; choose one of {', '.join(BOARD_LIMITS)}")
    needed = unit_kinds(config)
    return next((limits for limits in BOARD_LIMITS[board] if needed <= set(limits.units)), BOARD_LIMITS[board][0])


def limits_json(limits: NetworkLimits) -> dict:
    """The limits as a JSON object (`units` as a list), the form `load_limits` reads."""
    document = dataclasses.asdict(limits)
    document["units"] = list(limits.units)
    return document


def limits_id(limits: NetworkLimits) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of the limits (the network board's config_id).

    Canonical as a config id's JSON (docs/spec.md section 5): keys sorted, Python's
    json.dumps separators, fed as {"format": LIMITS_FORMAT, "limits": {...}}.
    """
    text = json.dumps({"format": LIMITS_FORMAT, "limits": limits_json(limits)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_limits(path) -> NetworkLimits:
    """NetworkLimits from a JSON object of its fields (missing fields keep their defaults)."""
    where = str(path)
    document = read_json(path, "network limits")
    if not isinstance(document, dict):
        raise ConfigError(where, "document", type(document).__name__, "must be a JSON object of NetworkLimits fields")
    names = [f.name for f in dataclasses.fields(NetworkLimits)]
    for key, value in document.items():
        if key not in names:
            raise ConfigError(where, "field", key, f"unknown; NetworkLimits has {', '.join(names)}")
        if key == "units":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value) \
                    or len(set(value)) != len(value):
                raise ConfigError(where, "units", value, "must be a non-empty list of distinct layer kinds")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(where, key, value, "must be a positive integer")
    values = dict(document)
    if "units" in values:
        values["units"] = tuple(values["units"])
    return NetworkLimits(**values)


def check_units_built(limits: NetworkLimits, where: str = "network limits"):
    """NomacError unless every kind in `limits.units` has a unit (gateware) in nomac.hw.network.units."""
    missing = [kind for kind in limits.units if kind not in UNITS]
    if missing:
        raise NomacError(f"{where}: units = {list(limits.units)}: {', '.join(missing)} "
                         f"{'has' if len(missing) == 1 else 'have'} no network unit yet (units with gateware: "
                         f"{', '.join(UNITS)}); build the board for limits whose units all exist")


def network_board_map(limits: NetworkLimits, *, clock_hz: int, divisor: int, max_payload: int | None = None,
                      timeout_bytes: int = DEFAULT_TIMEOUT_BYTES) -> BoardMap:
    """The map of a network board built for `limits` (the same for the gateware and the host)."""
    regions = memory_regions(network_memories(limits))
    out_vector_bytes = limits.output_bytes * element_bytes(OUT_BITS)
    max_payload = board_max_payload(max_payload, regions, in_vector_bytes=limits.input_bytes,
                                    out_vector_bytes=out_vector_bytes, what="the network board")
    check_link_timing(clock_hz, divisor, timeout_bytes)
    return BoardMap(config_id=limits_id(limits), layer=NETWORK_LAYER, kind=NETWORK_LAYER, regions=regions,
                    in_elements=limits.input_bytes, out_elements=limits.output_bytes, out_bits=OUT_BITS,
                    max_payload=max_payload, clock_hz=clock_hz, divisor=divisor,
                    timeout_cycles=timeout_bytes * 10 * divisor)


def network_board_core(limits: NetworkLimits, *, clock_hz: int, divisor: int, max_payload: int | None = None,
                       timeout_bytes: int = DEFAULT_TIMEOUT_BYTES, table_memory=None) -> BoardCore:
    """`BoardCore` holding a `NetworkEngine` built for `limits`. Its memories start blank (the
    engine's are never initialised), so a model runs only once the host has uploaded it.
    `table_memory`: the table memory component the device has (default: block RAM)."""
    check_units_built(limits)
    board = network_board_map(limits, clock_hz=clock_hz, divisor=divisor, max_payload=max_payload,
                              timeout_bytes=timeout_bytes)
    return BoardCore.of_engine(NetworkEngine(limits, table_memory), board, blank=True)
