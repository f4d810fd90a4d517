"""Progress reports and cooperative stopping, shared by every long-running core function.

Long calls take ``progress(done, total, message)`` and a ``stop`` event; they check the event
between steps and raise ``Cancelled`` (a thread is never killed from outside).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from .errors import Cancelled

# (done units, total units or None when unknown, what is happening) — bytes for downloads.
Progress = Callable[[int, int | None, str], None]


def format_duration(seconds: float) -> str:
    """A time left or taken as M:SS, or H:MM:SS from an hour up ("?" when not known yet)."""
    if not math.isfinite(seconds):
        return "?"
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def raise_if_stopped(stop: threading.Event | None, what: str) -> None:
    """Cooperative cancellation: long loops call this between steps (never a thread kill)."""
    if stop is not None and stop.is_set():
        raise Cancelled(f"{what} was cancelled.")
