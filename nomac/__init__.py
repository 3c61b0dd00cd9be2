"""nomac: compressed neural networks to multiplier-free hardware.

Subpackages: `nomac.base` (errors, output files), `nomac.model` (configs, golden
models, PyTorch layers), `nomac.hw` (Amaranth generators), `nomac.sim` (cocotb
testbenches), `nomac.boards` (board tops, link, host driver). The `nomac` command
fronts them (`nomac.cli`).
"""
from nomac.base import __version__
from nomac.base.cpu_numerics import pin_cpu_numerics

pin_cpu_numerics()     # before any kernel runs: seeded training writes the same bytes on every AVX2 CPU

__all__ = ["__version__"]
