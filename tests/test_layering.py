"""The core is pure Python + PyTorch: importing it must not pull in Qt or pyqtgraph."""

import subprocess
import sys


def test_core_imports_no_qt():
    code = (
        "import sys, importlib, pkgutil, workbench.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('workbench.core.' + m.name)\n"
        "import workbench.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6', 'PyQt5', 'PyQt6')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_production_name_looks_like_a_test():
    """pytest collects ``Test*`` classes and ``test*`` functions from whatever a test module
    imports: a production class named like that breaks collection (warnings are errors)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "workbench"
    trapped = []
    for path in package.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            is_class = isinstance(node, ast.ClassDef) and node.name.startswith("Test")
            is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
            if is_class or is_function:
                trapped.append(f"{path.relative_to(package.parent)}: {node.name}")
    assert trapped == []
