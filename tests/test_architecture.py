"""The library's layers: a lower layer never imports an upper one, and no module
grows past 500 lines.

Layers, from the bottom: 0 the paper's mathematics and safe file writing (noise, methods, losses,
estimation, atomic); 1 what training reads and writes (models, data, the results
store); 2 training; 3 results and report; 4 the command line. The package's
``__init__`` may import only layer 0.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "losscorrection"
MAX_LINES = 500

LAYERS = {
    "noise": 0, "methods": 0, "losses": 0, "estimation": 0, "atomic": 0,
    "models": 1, "data": 1, "store": 1,
    "training": 2,
    "results": 3, "report": 3, "agreement": 3,
    "cli": 4,
}


def unit_of(module: str) -> str:
    """``losscorrection.data.cifar`` -> ``data``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(module: str) -> int:
    unit = unit_of(module)
    if unit == "__init__":
        return 0
    if unit not in LAYERS:
        raise KeyError(f"{module}: no layer assigned; add {unit!r} to LAYERS in {Path(__file__).name}")
    return LAYERS[unit]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """The ``losscorrection`` modules that ``source`` (the text of ``module``) imports,
    relative imports resolved; ``from X import name`` counts ``X.name`` when that
    could be a module, which is all the layer check needs."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {m for m in found if m == "losscorrection" or m.startswith("losscorrection.")}


def violations(source: str, module: str, is_package: bool) -> list[str]:
    """``"a imports b"`` for every import of ``module`` reaching a higher layer."""
    own = layer_of(module)
    out = []
    for target in sorted(imported_modules(source, module, is_package)):
        if unit_of(target) in LAYERS and layer_of(target) > own:
            out.append(f"{module} (layer {own}) imports {target} (layer {layer_of(target)})")
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    units = {unit_of(module_name(p)) for p in SOURCES} - {"__init__"}
    assert units <= set(LAYERS), f"modules without a layer: {sorted(units - set(LAYERS))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_an_upper_layer(path):
    assert violations(path.read_text(), module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_500_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_opens_with_a_docstring(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 8, f"{path.relative_to(PACKAGE)} needs a docstring"


@pytest.mark.parametrize(
    "module, is_package, source, expected",
    [
        ("losscorrection.data.cifar", False, "from ..training import run_cells\n",
         ["losscorrection.data.cifar (layer 1) imports losscorrection.training (layer 2)",
          "losscorrection.data.cifar (layer 1) imports losscorrection.training.run_cells (layer 2)"]),
        ("losscorrection.noise", False, "import losscorrection.models\n",
         ["losscorrection.noise (layer 0) imports losscorrection.models (layer 1)"]),
        ("losscorrection.training", True, "from . import runner\nfrom ..report import Block\n",
         ["losscorrection.training (layer 2) imports losscorrection.report (layer 3)",
          "losscorrection.training (layer 2) imports losscorrection.report.Block (layer 3)"]),
        ("losscorrection.training.runner", False, "from .. import data, noise\nfrom ..store import cell_key\n", []),
        ("losscorrection.report", False, "from . import training\nimport numpy\n", []),
        ("losscorrection", True, "from . import cli\n",
         ["losscorrection (layer 0) imports losscorrection.cli (layer 4)"]),
    ],
)
def test_the_layer_check_finds_upward_imports(module, is_package, source, expected):
    """The checker itself: relative imports resolve, upward ones are reported."""
    assert violations(source, module, is_package) == expected
