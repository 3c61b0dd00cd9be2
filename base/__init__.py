"""What every part of nomac shares and nothing else: the version, the errors it reports
for bad input (`errors`), and how it writes results whole (`output_files`).

It imports no other part of nomac, so every folder may build on it (the import stack
is base -> model -> hw -> boards -> sim -> nomac; tests/test_structure.py checks it).
"""
__version__ = "0.1.0"
