"""The units of the network engine: one per layer kind, its number in the program, its
parameters, its gateware and the function that makes a layer a step of it."""
from dataclasses import dataclass
from typing import Callable

from nomac.hw.network import (add_unit, attention_unit, butterfly_unit, dense_unit, embed_unit, gelu_unit, layernorm_unit, lut_unit,
                               shift_unit)

__all__ = ["UnitKind", "UNITS"]


@dataclass(frozen=True)
class UnitKind:
    """number: the `unit` field of a step (docs/spec.md section 16; kinds of one number share
    its unit and fields); fields: its parameters; unit: makes the component from
    NetworkLimits; steps: (layer, rows, table_base, limits) -> list of UnitStep (one per step
    the layer takes)."""
    kind: str
    number: int
    fields: tuple
    unit: Callable
    steps: Callable


def _one(step):
    return lambda layer, rows, table_base, limits: [step(layer, rows, table_base, limits)]


UNITS = {kind.kind: kind for kind in (
    UnitKind("gelu", 1, gelu_unit.FIELDS, gelu_unit.GeluUnit, _one(gelu_unit.gelu_step)),
    UnitKind("dense", 2, dense_unit.FIELDS, dense_unit.DenseUnit, _one(dense_unit.dense_step)),
    UnitKind("lut", 3, lut_unit.FIELDS, lut_unit.LutUnit, _one(lut_unit.lut_step)),
    UnitKind("shift", 4, shift_unit.FIELDS, shift_unit.ShiftUnit, _one(shift_unit.shift_step)),
    UnitKind("butterfly", 5, butterfly_unit.FIELDS, butterfly_unit.ButterflyUnit, butterfly_unit.butterfly_steps),
    UnitKind("layernorm", 6, layernorm_unit.FIELDS, layernorm_unit.LayerNormUnit, _one(layernorm_unit.layernorm_step)),
    UnitKind("attention", 7, attention_unit.FIELDS,
             lambda limits: attention_unit.AttentionUnit(limits, limits.attention_lanes),
             lambda layer, rows, table_base, limits: [
                 attention_unit.attention_step(layer, rows, table_base, limits, limits.attention_lanes)]),
    UnitKind("add", 8, add_unit.FIELDS, add_unit.AddUnit, _one(add_unit.add_step)),
    UnitKind("embed", 8, add_unit.FIELDS, add_unit.AddUnit, _one(embed_unit.embed_step)),
)}

