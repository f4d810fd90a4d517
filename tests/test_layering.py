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
