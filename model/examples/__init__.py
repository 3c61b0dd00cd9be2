"""The generators of the bundled example configs in model/configs/ (never hand-typed).

Every example compresses the same seeded Linear(32, 32) on the same inputs
(`source_layer`), so the kinds can be compared at equal shape:

    python -m nomac.model.examples.lut [out_dir]
    python -m nomac.model.examples.matrix [out_dir]
    python -m nomac.model.examples.butterfly [out_dir]

Running one twice writes byte-identical files. These import torch; hardware code
reads the configs they wrote, never this package.
"""
