"""PyTorch drop-in layers: float stand-ins for nn.Linear that export an integer layer.

Each module is one kind's float side (`lut_linear`, `lut_training`, `shift_linear`,
`dense_linear`, `butterfly_linear`); `activations` is the int8 input format they all
export for. These import torch; the specs and goldens they export to (nomac.model)
do not, and hardware code never imports this package.
"""
