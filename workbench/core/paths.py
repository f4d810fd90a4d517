"""Where the workbench keeps things on disk (platformdirs, overridable for tests and portable use).

- cache: downloaded datasets (models go to the shared Hugging Face cache, see ``hub``)
- data: training runs, each in a folder of its own
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import OutputRefused

APP_NAME = "lora-workbench"


def cache_dir() -> Path:
    """Downloaded datasets; set WORKBENCH_CACHE_DIR to move it."""
    override = os.environ.get("WORKBENCH_CACHE_DIR")
    path = Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))
    return ensure_folder(path, "The workbench's cache folder", "WORKBENCH_CACHE_DIR")


def data_dir() -> Path:
    """Runs and settings that must survive a cache clean; set WORKBENCH_DATA_DIR to move it."""
    override = os.environ.get("WORKBENCH_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    return ensure_folder(path, "The workbench's data folder", "WORKBENCH_DATA_DIR")


def runs_dir() -> Path:
    return ensure_folder(data_dir() / "runs", "The runs folder", "WORKBENCH_DATA_DIR")


def ensure_folder(path: Path, what: str, variable: str) -> Path:
    """``path``, created if need be; else an OutputError in one line that names the variable to
    set (a HOME or a variable pointing at a file, a read-only disk, a missing mount)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise OutputRefused(
            f"{what} {path} cannot be created: {reason or exc}{where}. Set {variable} to a writable folder."
        ) from exc
    return path
