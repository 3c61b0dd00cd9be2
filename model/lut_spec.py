"""The `lut` layer kind (docs/spec.md section 7): its parameters, arrays and hardware choices.

Product-quantization lookup-accumulate as in MADDNESS (Blalock & Guttag, ICML 2021),
PECAN (Ran et al., 2022) and LUT-NN (Tang et al., MobiCom 2023): the input is cut into
C subvectors, each is encoded to one of K prototypes, and the output is the sum of
the C table rows the codes select. This module only describes and validates a layer;
the golden model, the float module and the generator live in their own files.
"""
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.field_rules import (HardwareSection, reject_unknown, require_array, require_choice, require_int,
                                     require_power_of_two, require_values_in)

ENCODERS = ("l2", "l1", "tree")
OUTPUTS = ("int8", "acc")
MEMORIES = ("rom", "ram")
MAX_AUTO_ENCODER_LANES = 8   # a default never builds more distance units than this


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


TABLE_BITS = 8            # table entries are int8 unless a layer says table_bits
MIN_TABLE_BITS = 2


def table_entry_range(table_bits: int) -> tuple[int, int]:
    """The values a table entry of `table_bits` bits may hold: a signed two's-complement range."""
    return -(1 << (table_bits - 1)), (1 << (table_bits - 1)) - 1


def lut_table_bytes(codebooks: int, centroids: int, out_features: int, subvector_len: int, encoder: str,
                    table_bits: int = TABLE_BITS) -> int:
    """Bytes of a lut layer's tables ([C, K, M] entries of table_bits bits, packed:
    ceil(C*K*M*table_bits / 8)) and its encoder's arrays: the prototypes (int8 [C, K, V], l2
    and l1) or the thresholds and split dimensions (int8 [C, K-1] and [C, log2 K], tree):
    what a table budget counts."""
    C, K = codebooks, centroids
    encoder_bytes = C * K * subvector_len if encoder != "tree" else C * (K - 1) + C * (K.bit_length() - 1)
    return _ceil_div(C * K * out_features * table_bits, 8) + encoder_bytes


@dataclass(frozen=True)
class LutHardware:
    """Hardware choices that leave the arithmetic unchanged (the layer's "hw" section).

    in_lanes / out_lanes: int8 elements per beat on the input / output stream.
    table_reads: table entries read per cycle (R); the accumulate loop takes
        C * ceil(M / R) cycles per vector, which is the engine's throughput bound.
    encoder_lanes: prototype distances computed per cycle by an l1/l2 encoder (P);
        encoding a codebook takes K / P cycles. The tree encoder needs no such knob:
        it encodes one codebook per cycle with one comparator per level.
    memory: "rom" bakes every array into the bitstream; "ram" adds write ports so a
        host can load tables, prototypes, thresholds and bias at run time.
    pipeline: extra register stages where paths are long: after the per-element
        differences and after the distance adders of an l1/l2 encoder, and before the
        rounding of the accumulated sums.
    bias_bits: width of the bias memory with "ram" (a loaded bias must fit in it);
        with "rom" the widths come from the arrays themselves.
    """
    in_lanes: int
    out_lanes: int
    table_reads: int
    encoder_lanes: int
    memory: str
    pipeline: bool
    bias_bits: int

    KEYS: ClassVar[tuple[str, ...]] = ("in_lanes", "out_lanes", "table_reads", "encoder_lanes",
                                       "memory", "pipeline", "bias_bits")



@dataclass(frozen=True, eq=False)
class LutLayer:
    """A validated `lut` layer. Arrays are read-only numpy arrays of the dtypes docs/spec.md section 7 gives."""
    kind: ClassVar[str] = "lut"
    PARAMS: ClassVar[tuple[str, ...]] = ("in_features", "out_features", "codebooks", "centroids",
                                         "encoder", "out_shift", "output")
    name: str
    in_features: int
    out_features: int
    codebooks: int
    centroids: int
    encoder: str
    out_shift: int
    output: str
    tables: np.ndarray                       # int8 [C, K, M], entries in table_entry_range(table_bits)
    bias: np.ndarray                         # int32 [M]
    prototypes: np.ndarray | None = None     # int8 [C, K, V]  (l2, l1)
    split_dims: np.ndarray | None = None     # int  [C, L]     (tree)
    thresholds: np.ndarray | None = None     # int8 [C, K-1]   (tree, heap order)
    hw_given: dict = field(default_factory=dict)  # the "hw" section as written; saved back as is
    hw: LutHardware = field(default=None)         # hw_given with defaults filled in
    extra: dict = field(default_factory=dict)     # descriptive fields kept verbatim (scales, notes)
    table_bits: int = TABLE_BITS                  # bits of a table entry (saved only when not 8)

    @property
    def subvector_len(self) -> int:
        return self.in_features // self.codebooks

    @property
    def levels(self) -> int:
        return self.centroids.bit_length() - 1

    @property
    def table_bytes(self) -> int:
        return lut_table_bytes(self.codebooks, self.centroids, self.out_features, self.subvector_len, self.encoder,
                               self.table_bits)

    def params_json(self) -> dict:
        """The layer's JSON object, as saved (without arrays)."""
        params = {"name": self.name, "kind": self.kind,
                  **{key: getattr(self, key) for key in self.PARAMS}, **self.extra}
        if self.table_bits != TABLE_BITS:
            params["table_bits"] = self.table_bits
        if self.hw_given:
            params["hw"] = dict(self.hw_given)
        return params

    @property
    def hw_keys(self) -> tuple[str, ...]:
        """The hardware choices this layer has (the keys of its "hw" section)."""
        return type(self.hw).KEYS

    def with_hw(self, overrides: dict, where: str) -> "LutLayer":
        """The same layer with some hardware choices replaced (and defaults re-derived)."""
        given = {**self.hw_given, **overrides}
        hw = resolve_hardware(self, where, given)
        # Keep what was given, in its validated form (plain ints, not numpy scalars).
        return replace(self, hw_given={key: getattr(hw, key) for key in given}, hw=hw)

    def arrays(self) -> dict[str, np.ndarray]:
        names = ("tables", "bias", "prototypes") if self.encoder != "tree" else \
                ("tables", "bias", "split_dims", "thresholds")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_json(cls, where: str, params: dict, arrays: dict[str, np.ndarray],
                  extra_keys: tuple[str, ...] = ()) -> "LutLayer":
        known = ("name", "kind", "hw", "table_bits", *cls.PARAMS, *extra_keys)
        reject_unknown(where, "field", params, known)
        for key in cls.PARAMS:
            if key not in params and key != "output":
                raise ConfigError(where, key, None, "missing; a lut layer needs "
                                  + ", ".join(k for k in cls.PARAMS if k != "output"))
        D = require_int(where, "in_features", params["in_features"], lo=1)
        M = require_int(where, "out_features", params["out_features"], lo=1)
        C = require_int(where, "codebooks", params["codebooks"], lo=1)
        if D % C:
            raise ConfigError(where, "codebooks", C, f"must divide in_features ({D})")
        K = require_power_of_two(where, "centroids", params["centroids"], lo=2, hi=256)
        encoder = require_choice(where, "encoder", params["encoder"], ENCODERS)
        out_shift = require_int(where, "out_shift", params["out_shift"], lo=0, hi=62)
        output = require_choice(where, "output", params.get("output", "int8"), OUTPUTS)
        table_bits = require_int(where, "table_bits", params.get("table_bits", TABLE_BITS), lo=MIN_TABLE_BITS,
                                 hi=TABLE_BITS)
        V, L = D // C, K.bit_length() - 1

        reject_unknown(where, "array", arrays,
                       ("tables", "bias", "prototypes") if encoder != "tree"
                       else ("tables", "bias", "split_dims", "thresholds"))
        found = {"tables": require_array(where, arrays, "tables", np.int8, (C, K, M)),
                 "bias": require_array(where, arrays, "bias", np.int32, (M,))}
        lo, hi = table_entry_range(table_bits)
        require_values_in(where, "tables", found["tables"], lo, hi,
                          f"table_bits = {table_bits}: an entry must lie in {lo}..{hi}")
        if encoder == "tree":
            split_dims = require_array(where, arrays, "split_dims", "integer", (C, L))
            require_values_in(where, "split_dims", split_dims, 0, V - 1,
                              f"a split dimension indexes the subvector, so it must lie in 0..{V - 1}")
            found["split_dims"] = split_dims.astype(np.int32)
            found["split_dims"].flags.writeable = False
            found["thresholds"] = require_array(where, arrays, "thresholds", np.int8, (C, K - 1))
        else:
            found["prototypes"] = require_array(where, arrays, "prototypes", np.int8, (C, K, V))

        extra = {key: params[key] for key in extra_keys if key in params}
        layer = cls(name=params["name"], in_features=D, out_features=M, codebooks=C, centroids=K,
                    encoder=encoder, out_shift=out_shift, output=output, extra=extra, table_bits=table_bits,
                    **found)
        hw = params.get("hw", {})
        if not isinstance(hw, dict):
            raise ConfigError(where, "hw", hw, "must be an object of hardware choices")
        return layer.with_hw(hw, where)


def resolve_hardware(layer: LutLayer, where: str, given: dict) -> LutHardware:
    """Validate the "hw" section and fill what it leaves out with a balanced default.

    Defaults put the bottleneck on the table reads (R = 2 entries, one 16-bit iCE40
    block-RAM port): the encoder, the input and the output are given just enough
    lanes to keep up with C * ceil(M / R) cycles per vector, except that a default
    l1/l2 encoder has at most MAX_AUTO_ENCODER_LANES distance units (with many
    centroids and few outputs the encoder is then the slower stage; say
    encoder_lanes explicitly to trade area for speed).
    """
    hw = HardwareSection(where, given, LutHardware.KEYS)
    D, M, C, K = layer.in_features, layer.out_features, layer.codebooks, layer.centroids

    reads = hw.integer("table_reads", min(M, 2), lo=1, hi=M)
    cycles = C * _ceil_div(M, reads)
    if layer.encoder == "tree":
        if hw.integer("encoder_lanes", 1) != 1:
            raise ConfigError(where, "hw.encoder_lanes", given["encoder_lanes"],
                              "only l1/l2 encoders have encoder lanes (a tree encodes a codebook per cycle)")
        encoder_lanes = 1
    else:
        auto = next(p for p in (1 << i for i in range(9))
                    if p >= min(K, MAX_AUTO_ENCODER_LANES) or K // p <= _ceil_div(M, reads))
        encoder_lanes = hw.power_of_two("encoder_lanes", auto, lo=1, hi=K)
    in_lanes, out_lanes = hw.stream_lanes(D, M, cycles)
    memory = hw.choice("memory", "rom", MEMORIES)
    pipeline = hw.boolean("pipeline", True)
    bias_bits = hw.bias_bits({"bias": layer.bias} if memory == "ram" else {})
    return LutHardware(in_lanes=in_lanes, out_lanes=out_lanes, table_reads=reads,
                       encoder_lanes=encoder_lanes, memory=memory, pipeline=pipeline,
                       bias_bits=bias_bits)
