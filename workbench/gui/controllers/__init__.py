"""The window's controllers: plain QObjects, one concern each (the dataset, the model, the settings
as a TrainConfig, training runs, adapters), with no widgets of their own.

Each drives the panels and tabs the window built and hands it, starts slow work on the window's
``JobPool``, and says through signals what another part must follow; the window does the layout and
connects them (the shape of ndv's controllers, with Qt kept for signals and dialogs).
"""

from __future__ import annotations

from typing import Any

from ...core.errors import WorkbenchError


def error_text(error: Any) -> str:
    """A WorkbenchError is written for a person; anything else is a bug, shown with its type."""
    if isinstance(error, WorkbenchError):
        return str(error)
    return f"{type(error).__name__}: {error}"
