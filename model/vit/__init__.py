"""The tiny ViT study: a whole network through nomac's layer kinds.

`tiny_vit` (the float model), `digits_data` (the images), `training`,
`compression_plan` (bundled plans in `plans/`, found by name by `nomac train --plan`),
`export` (the whole-model config), `integer_emulation` (the integer layers inside the
float model), `pipeline` (train -> compress -> export, one plan and seed) and
`report` (every plan and seed, tables and plots). These import torch; hardware code
never imports this package.
"""
