"""nomac: compressed neural networks to multiplier-free hardware.

Subpackages: `nomac.model` (configs, golden models, PyTorch layers), `nomac.hw`
(Amaranth generators), `nomac.sim` (cocotb testbenches), `nomac.boards` (board
tops, link, host driver). The `nomac` command fronts them (`nomac.cli`).
"""
__version__ = "0.1.0"
