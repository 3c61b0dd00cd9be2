"""What every part of nomac shares and nothing else: the version, the errors it reports
for bad input (`errors`), how it writes results whole (`output_files`), and the CPU code
paths it pins so that training is reproducible across machines (`cpu_numerics`).

It imports no other part of nomac, so every folder may build on it (the import stack
is base -> model -> hw -> boards -> sim -> nomac; tests/test_structure.py checks it).
"""
__version__ = "0.1.0"
