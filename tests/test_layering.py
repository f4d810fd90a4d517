"""The layers point one way: gui -> worker -> core, bench beside the core, and inside the core a
lower layer never imports a higher one.

Every module's source is read and every import in it counted, those inside functions too (a
lazy import is still a dependency). The tests below feed the checker fake modules to show that
each rule can fail. Run this file as a script to print the longest import chain inside the core:

    python tests/test_layering.py [FOLDER_HOLDING_workbench]
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6")

# Who may not import whom: a module under the key (or the key itself) imports none of these.
FORBIDDEN = {
    "workbench.core": (*QT, "workbench.gui", "workbench.worker", "workbench.bench", "workbench.cli"),
    "workbench.bench": (*QT, "workbench.gui", "workbench.worker", "workbench.cli"),
    "workbench.worker": ("workbench.gui", "workbench.bench", "workbench.cli"),
}

# The core's floors, bottom first. A module may import its own floor and those below, never above.
CORE_LAYERS = (
    (
        "errors",
        "events",
        "config",
        "paths",
        "fileio",
        "progress",
        "text",
        "precision",
        "device",
        "thresholds",
        "limits",
        "patterns",
    ),
    ("recompute", "safetensors_reader", "model", "lora", "int8", "tokenizer", "hub"),
    ("data",),
    ("adapters", "peft_io", "evaluate", "memory", "runs", "run_table", "distributed"),
    ("training", "classify", "adapter_eval", "explain"),
    ("label_errors",),  # cross-validation trains folds with training's own step
)
CORE_FLOOR = {name: floor for floor, names in enumerate(CORE_LAYERS) for name in names}


# --------------------------------------------------------------------------- reading the sources


def read_modules(root: Path) -> dict[str, tuple[str, bool]]:
    """Every module of the ``workbench`` package under ``root``: name -> (source, is a package)."""
    modules = {}
    for path in sorted((root / "workbench").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (path.read_text(encoding="utf-8"), is_package)
    return modules


def imported_names(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Absolute names of what ``module`` imports, anywhere in it. ``from X import y`` counts as
    X.y when that is a module of ours (``from . import data``), else as X."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                names.add(candidate if candidate in known else base)
    return names


def import_graph(modules: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    known = set(modules)
    return {name: imported_names(source, name, is_pkg, known) for name, (source, is_pkg) in modules.items()}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _core_floor(module: str) -> int | None:
    """The floor of a core module (``workbench.core.data.sms`` is on data's), None outside the core."""
    parts = module.split(".")
    if parts[:2] != ["workbench", "core"] or len(parts) < 3:
        return None
    return CORE_FLOOR.get(parts[2], -1)


def violations(modules: dict[str, tuple[str, bool]]) -> list[str]:
    """Every import that breaks a rule, as 'importer -> imported: why'."""
    problems = []
    for module, targets in sorted(import_graph(modules).items()):
        for owner, banned in FORBIDDEN.items():
            if _within(module, owner):
                problems += [
                    f"{module} -> {t}: {owner} must not import {b}"
                    for t in sorted(targets)
                    for b in banned
                    if _within(t, b)
                ]
        floor = _core_floor(module)
        if floor == -1:
            problems.append(f"{module}: not on any floor of CORE_LAYERS; add it where its imports put it")
            continue
        for target in sorted(targets):
            target_floor = _core_floor(target)
            if floor is not None and target_floor is not None and target_floor > floor:
                problems.append(
                    f"{module} -> {target}: floor {floor} {CORE_LAYERS[floor]} imports floor {target_floor}"
                )
    return problems


def core_unit(module: str) -> str | None:
    """The core module or subpackage a module belongs to (``data.sms`` is part of ``data``)."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["workbench", "core"] and len(parts) > 2 else None


def core_graph(modules: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Imports between the core's modules and subpackages (a subpackage counts once: its
    ``__init__`` re-exporting its own modules is not a floor more)."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph(modules).items():
        unit = core_unit(module)
        if unit is not None:
            graph.setdefault(unit, set()).update(u for t in targets if (u := core_unit(t)) not in (None, unit))
    return graph


def core_cycles(modules: dict[str, tuple[str, bool]]) -> list[list[str]]:
    """Import cycles among the core's modules (floors mean nothing where there is one)."""
    graph, cycles, done = core_graph(modules), [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return cycles


def longest_core_chain(modules: dict[str, tuple[str, bool]]) -> list[str]:
    """The longest path of imports between the core's modules: the core's depth, in floors."""
    graph, best = core_graph(modules), {}

    def chain(module: str, visiting: frozenset) -> list[str]:
        if module in visiting:  # a cycle (see core_cycles): not a floor more
            return []
        if module not in best:
            below = [chain(t, visiting | {module}) for t in graph.get(module, ())]
            best[module] = [module, *max(below, key=len, default=[])]
        return best[module]

    return max((chain(m, frozenset()) for m in graph), key=len)


# --------------------------------------------------------------------------- the rules hold


def test_every_layer_imports_only_downwards():
    assert violations(read_modules(REPO_ROOT)) == []


def test_core_and_bench_import_no_qt_even_indirectly():
    """Through third-party packages too: import them all and look at what got loaded."""
    code = (
        "import sys, importlib, pkgutil, workbench.core as core, workbench.bench as bench\n"
        "for pkg in (core, bench):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'): importlib.import_module(m.name)\n"
        "import workbench.cli\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {QT!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_core_has_no_import_cycle():
    assert core_cycles(read_modules(REPO_ROOT)) == []


def test_the_core_is_six_floors_deep_at_most():
    """classify -> adapters -> lora -> model -> config -> errors; reading a CSV imports no model."""
    modules = read_modules(REPO_ROOT)
    chain = longest_core_chain(modules)
    assert len(chain) <= 7, " -> ".join(chain)  # 6 floors below the orchestrators, + label_errors over training
    data_imports = {t for m, ts in import_graph(modules).items() if _within(m, "workbench.core.data") for t in ts}
    assert not {"workbench.core.model", "workbench.core.lora", "workbench.core.tokenizer"} & data_imports


# --------------------------------------------------------------------------- each rule can fail


def with_module(name: str, source: str, is_package: bool = False) -> dict[str, tuple[str, bool]]:
    """The real modules plus (or with one replaced by) a fake one."""
    return {**read_modules(REPO_ROOT), name: (source, is_package)}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (  # a Qt import hidden inside a core function
            "workbench.core.fake",
            "def show():\n    from PySide6.QtWidgets import QMessageBox\n",
            "workbench.core.fake -> PySide6.QtWidgets: workbench.core must not import PySide6",
        ),
        (
            "workbench.core.fake",
            "import pyqtgraph as pg\n",
            "workbench.core.fake -> pyqtgraph: workbench.core must not import pyqtgraph",
        ),
        (  # a relative import that climbs out of the core into the window
            "workbench.core.fake",
            "from ..gui import panels\n",
            "workbench.core.fake -> workbench.gui.panels: workbench.core must not import workbench.gui",
        ),
        (
            "workbench.core.data.fake",
            "def later():\n    import workbench.worker\n",
            "workbench.core.data.fake -> workbench.worker: workbench.core must not import workbench.worker",
        ),
        (
            "workbench.core.fake",
            "from ..bench import run_bench\n",
            "workbench.core.fake -> workbench.bench: workbench.core must not import workbench.bench",
        ),
        (
            "workbench.worker",
            "from .gui.panels import human_bytes\n",
            "workbench.worker -> workbench.gui.panels: workbench.worker must not import workbench.gui",
        ),
        (
            "workbench.bench.fake",
            "from ..worker import Worker\n",
            "workbench.bench.fake -> workbench.worker: workbench.bench must not import workbench.worker",
        ),
    ],
)
def test_each_forbidden_import_is_caught(module, source, expected):
    if module in read_modules(REPO_ROOT):  # a real module with one import added
        source = read_modules(REPO_ROOT)[module][0] + "\n" + source
    assert expected in violations(with_module(module, source))


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (  # the bottom floor reaching up to an orchestrator
            "workbench.core.config",
            "def later():\n    from .training import train\n",
            "workbench.core.config -> workbench.core.training: floor 0",
        ),
        (  # the model importing data: reading a CSV would import the model again
            "workbench.core.model",
            "from . import data as datamod\n",
            "workbench.core.model -> workbench.core.data: floor 1",
        ),
        (
            "workbench.core.data.tables",
            "from ..evaluate import mean_loss\n",
            "workbench.core.data.tables -> workbench.core.evaluate: floor 2",
        ),
    ],
)
def test_an_upward_import_inside_the_core_is_caught(module, source, expected):
    real = read_modules(REPO_ROOT)[module][0]
    found = violations(with_module(module, real + "\n" + source))
    assert any(v.startswith(expected) for v in found), found


def test_a_core_module_without_a_floor_is_caught():
    found = violations(with_module("workbench.core.newcomer", "from .errors import WorkbenchError\n"))
    assert found == ["workbench.core.newcomer: not on any floor of CORE_LAYERS; add it where its imports put it"]


def test_the_chain_counts_function_level_imports():
    top = longest_core_chain(read_modules(REPO_ROOT))
    modules = with_module("workbench.core.fake", f"def late():\n    from .{top[0]} import something\n")
    assert len(longest_core_chain(modules)) == len(top) + 1


# --------------------------------------------------------------------------- names pytest would collect


def test_no_production_name_looks_like_a_test():
    """pytest collects ``Test*`` classes and ``test*`` functions from whatever a test module
    imports: a production class named like that breaks collection (warnings are errors)."""
    trapped = []
    for module, (source, _) in read_modules(REPO_ROOT).items():
        for node in ast.parse(source).body:
            is_class = isinstance(node, ast.ClassDef) and node.name.startswith("Test")
            is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
            if is_class or is_function:
                trapped.append(f"{module}.{node.name}")
    assert trapped == []


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT
    modules = read_modules(root)
    found = longest_core_chain(modules)
    print(f"{len(found)} floors: {' -> '.join(found)}")
    for cycle in core_cycles(modules):
        print("cycle:", " -> ".join(cycle))
