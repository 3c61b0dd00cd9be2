"""The numbers side of nomac: what a layer computes, written down once and checked.

Directly in this folder, for the hardware to build on: the configs and their specs
(`config`, `*_spec`, `operator_layers`, `dataflow`, `field_rules`, `json_files`,
`array_files`) and the golden models (`golden`, `*_golden`, `int_ops`, `fixed_point`),
plus `accumulator_export` (the output rule every exporter follows) and
`butterfly_chains` (the shapes of DeBut chains). None of these
imports torch, and hw/, boards/ and sim/ import only these, so generating, simulating
and driving hardware never loads PyTorch (tests/test_torch_free.py checks it).

Three subpackages hold the float side, which does import torch:

- `layers`: the PyTorch drop-in layers (LUTLinear, ShiftLinearQ/PS, DeButLinear,
  export_dense) that turn an nn.Linear into one of the integer layers above;
- `examples`: the generators of the bundled configs in `configs/`;
- `vit`: the tiny ViT study: the model, its compression plans (`vit/plans/`), data,
  training, export to a whole-model config, and the report.
"""
