"""The hardware side never imports torch, not even transitively: generating Verilog,
simulating and driving a board need no PyTorch. The float side is the three
subpackages of nomac.model named in its docstring; everything else of nomac.base,
nomac.model, nomac.hw, nomac.boards and nomac.sim is imported here in a fresh
interpreter, one module at a time, and torch must not appear in sys.modules.
"""
import json
import subprocess
import sys

HARDWARE_SIDE = ["nomac.base", "nomac.model", "nomac.hw", "nomac.boards", "nomac.sim"]
FLOAT_SIDE = ["nomac.model.examples", "nomac.model.layers", "nomac.model.vit"]

# Imports every module below the given packages (packages first, then their modules in
# name order), skipping the given subpackages, and reports the first after which torch
# is loaded.
PROBE = """
import importlib, json, pkgutil, sys
packages, skipped = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
imported, first_with_torch = [], None

def walk(name):
    global first_with_torch
    if name in skipped:
        return
    module = importlib.import_module(name)
    imported.append(name)
    if first_with_torch is None and "torch" in sys.modules:
        first_with_torch = name
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        walk(f"{name}.{info.name}")

for package in packages:
    walk(package)
print(json.dumps({"imported": imported, "first_with_torch": first_with_torch}))
"""


def probe(packages, skipped=()) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(packages), json.dumps(list(skipped))],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_the_hardware_side_imports_no_torch():
    result = probe(HARDWARE_SIDE, skipped=FLOAT_SIDE)
    assert result["first_with_torch"] is None, f"{result['first_with_torch']} imports torch"
    imported = result["imported"]
    for package in HARDWARE_SIDE:
        assert any(name.startswith(package + ".") for name in imported), f"no module of {package} was imported"
    assert {"nomac.model.config", "nomac.model.golden", "nomac.model.butterfly_chains"} <= set(imported)
    assert not [name for name in imported for package in FLOAT_SIDE
                if name == package or name.startswith(package + ".")]


def test_the_probe_sees_torch_in_the_float_layers():
    assert probe(["nomac.model.layers"])["first_with_torch"] == "nomac.model.layers.activations"
