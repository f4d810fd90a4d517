"""Entry point of the packaged app: the same as ``python -m workbench``.

PyInstaller runs its script as a plain ``__main__`` module, outside any package, so
``workbench/__main__.py`` (``from .cli import main``) cannot be the script itself; this file
imports the package absolutely and does exactly what ``__main__.py`` does.
"""

import multiprocessing
import sys

from workbench.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen Windows app must call this before anything spawns
    sys.exit(main())
