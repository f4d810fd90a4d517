"""Finding files under ``resources/`` (icons, screenshots) from source and from a packaged build."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    """``<repo>/resources`` from source; ``<bundle>/resources`` in a PyInstaller build, whose
    files are unpacked under ``sys._MEIPASS``."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource_path(name: str) -> Path:
    return resources_dir() / name


def readme_path() -> Path:
    """README.md beside ``resources/``: the repository's from source, the bundled copy in a build."""
    return resources_dir().parent / "README.md"
