"""Generators of the integer ViT operators (docs/spec.md section 13), one module per kind,
each an `OperatorEngine` on the engine contract (`nomac.hw.engine`)."""
