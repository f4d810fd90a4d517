"""Where the workbench keeps things on disk (platformdirs, overridable for tests and portable use).

- cache: downloaded datasets (models go to the shared Hugging Face cache, see ``hub``)
- data: training runs, each in a folder of its own
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "lora-workbench"


def cache_dir() -> Path:
    """Downloaded datasets; set WORKBENCH_CACHE_DIR to move it."""
    override = os.environ.get("WORKBENCH_CACHE_DIR")
    path = Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Runs and settings that must survive a cache clean; set WORKBENCH_DATA_DIR to move it."""
    override = os.environ.get("WORKBENCH_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    path = data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path
