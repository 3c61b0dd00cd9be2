"""The import structure of the package, read from the source with `ast` (nothing is imported).

The folders form a stack, base -> model -> hw -> boards -> sim -> nomac: a module
imports only modules of its own folder or of folders to its left, so a folder can be
read, tested and reused without those above it (and, every edge pointing down one
order, the folder graph has no cycle). Inside the stack no two modules need each
other, and no module reaches into another's private names (`_x`): what a module
offers is what it names without an underscore.

Every import counts, at the top of a module or inside a function: a function-level
import is still a dependency, only a later one (nomac/cli.py imports its subcommands'
modules inside the functions, so a cycle through them is still a cycle). Folders come from pyproject.toml's
package-dir (nomac.model... lives in model/, the package root nomac in nomac/).
"""
import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ("base", "model", "hw", "boards", "sim", "nomac")


def _package_folders() -> dict[str, str]:
    """{package: folder} from pyproject.toml, e.g. {"nomac.model": "model", "nomac": "nomac"}."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return dict(setuptools["package-dir"])


PACKAGE_FOLDERS = _package_folders()


def _module_files() -> dict[str, Path]:
    """{module name: file} of every .py file in the stack's folders, sub-packages included."""
    modules = {}
    for package, folder in PACKAGE_FOLDERS.items():
        if "/" in folder:
            continue                       # a sub-package mapped on its own: found in its parent's folder
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


MODULES = _module_files()


def folder_of(module: str) -> str:
    """The top-level folder holding `module`'s file, e.g. "model" for nomac.model.vit.report."""
    return MODULES[module].relative_to(ROOT).parts[0]


@dataclass(frozen=True)
class Import:
    source: str          # the importing module
    target: str          # the imported nomac module
    name: str | None     # the name taken from it (`from target import name`), None for a module import
    line: int
    text: str            # the import statement as written
    bound: str | None    # the (dotted) local name a module import binds it to, e.g. "lp", "nomac.sim.runner"

    def where(self) -> str:
        return f"{MODULES[self.source].relative_to(ROOT)}:{self.line}: {self.text}"


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(source: str, node: ast.ImportFrom) -> str:
    """The absolute module name of `from ... import`, relative ones resolved against `source`."""
    if not node.level:
        return node.module
    package = source if _is_package(source) else source.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _known(name: str) -> str | None:
    """The nomac module `name` is, or lies in (a name imported from it), or None outside nomac."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_in(module: str, source: str) -> list[Import]:
    """Every import of a nomac module in `source`, the text of `module`, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        text = ast.get_source_segment(source, node).split("\n")[0]
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target:
                    found.append(Import(module, target, None, node.lineno, text, alias.asname or alias.name))
            continue
        base = _resolve(module, node)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in MODULES:                # `from package import module`
                found.append(Import(module, submodule, None, node.lineno, text, alias.asname or alias.name))
            elif _known(base):
                found.append(Import(module, _known(base), alias.name, node.lineno, text, None))
    return found


SOURCES = {module: path.read_text() for module, path in MODULES.items()}
IMPORTS = [i for module, source in SOURCES.items() for i in imports_in(module, source)]


def test_the_walk_finds_every_folder_of_the_stack():
    assert {folder_of(m) for m in MODULES} == set(STACK)
    assert set(PACKAGE_FOLDERS.values()) == set(STACK)
    assert folder_of("nomac") == "nomac" and folder_of("nomac.base") == "base"
    assert folder_of("nomac.model.config") == "model"
    assert ("nomac", "nomac.base") in {(i.source, i.target) for i in IMPORTS}   # from nomac.base import __version__


# A module text that imports in every way the checks must see, read as if it were sim/runner.py.
WALKED = """\
import numpy
import nomac.hw.widths
from . import phase
from ..boards.host import BoardConnection, _check_link_options
from nomac.boards import link_protocol as lp


def run():
    from nomac.model.config import load_config
    return lp._STALE, nomac.hw.widths._bits, numpy._x
"""


def test_the_walk_finds_absolute_relative_and_function_level_imports():
    found = [(i.target, i.name, i.line, i.bound) for i in imports_in("nomac.sim.runner", WALKED)]
    assert sorted(found, key=lambda f: f[2]) == [
        ("nomac.hw.widths", None, 2, "nomac.hw.widths"),
        ("nomac.sim.phase", None, 3, "phase"),
        ("nomac.boards.host", "BoardConnection", 4, None),
        ("nomac.boards.host", "_check_link_options", 4, None),
        ("nomac.boards.link_protocol", None, 5, "lp"),
        ("nomac.model.config", "load_config", 9, None)]


def test_private_names_are_found_imported_and_as_attributes():
    assert private_uses("nomac.sim.runner", WALKED) == [
        "sim/runner.py:4: from ..boards.host import BoardConnection, _check_link_options  "
        "(private _check_link_options of nomac.boards.host)",
        "sim/runner.py:10: lp._STALE  (private name of nomac.boards.link_protocol)",
        "sim/runner.py:10: nomac.hw.widths._bits  (private name of nomac.hw.widths)"]


def test_folders_import_only_down_the_stack():
    """base -> model -> hw -> boards -> sim -> nomac: no import from a folder to its right."""
    upward = dict.fromkeys(f"{i.where()}  ({folder_of(i.source)}/ imports {folder_of(i.target)}/)" for i in IMPORTS
                           if STACK.index(folder_of(i.target)) > STACK.index(folder_of(i.source)))
    assert not upward, "imports up the stack " + " -> ".join(STACK) + ":\n" + "\n".join(upward)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_no_module_import_cycle():
    """No two modules import each other, directly or around a loop (function-level imports included)."""
    edges = {}
    for i in IMPORTS:
        if i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    problems = []
    for component in _cycles(edges):
        members = set(component)
        lines = dict.fromkeys(i.where() for i in IMPORTS
                              if i.source in members and i.target in members and i.source != i.target)
        problems.append(f"cycle among {', '.join(component)}:\n  " + "\n  ".join(lines))
    assert not problems, "\n".join(problems)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: str, source: str) -> list[str]:
    """`from m import _x` and `m._x` in `source`, the text of `module`, m another nomac module."""
    imports = [i for i in imports_in(module, source) if i.target != module]
    names = {}                    # statement -> the private names it takes
    for i in imports:
        if i.name and _private(i.name):
            names.setdefault((i.where(), i.target), []).append(i.name)
    found = [f"{where}  (private {', '.join(taken)} of {target})" for (where, target), taken in names.items()]
    bound = {i.bound: i.target for i in imports if i.bound}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr) and ast.unparse(node.value) in bound:
            owner = ast.unparse(node.value)
            found.append(f"{MODULES[module].relative_to(ROOT)}:{node.lineno}: {owner}.{node.attr}  "
                         f"(private name of {bound[owner]})")
    return found


def test_no_module_uses_another_modules_private_names():
    """What a module offers is what it names without an underscore."""
    problems = [problem for module, source in SOURCES.items() for problem in private_uses(module, source)]
    assert not problems, "private names used across modules:\n" + "\n".join(problems)
