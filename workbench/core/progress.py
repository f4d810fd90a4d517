"""Progress reports and cooperative stopping, shared by every long-running core function.

Long calls take ``progress(done, total, message)`` and a ``stop`` event; they check the event
between steps and raise ``Cancelled`` (a thread is never killed from outside). Loops over a
dataset's rows check it every ``CHECK_EVERY`` rows, so Stop is honoured within a fraction of a
second even on a million rows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from .errors import Cancelled

# (done units, total units or None when unknown, what is happening) — bytes for downloads.
Progress = Callable[[int, int | None, str], None]

# Rows handled between two stop checks in pure-Python loops over a dataset. The slowest such loop
# (random.shuffle's, about 1.3 µs a row on the build machine) takes 65 ms per chunk: far inside
# the 0.5 s a Stop may take.
CHECK_EVERY = 50_000

T = TypeVar("T")


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


def checked_chunks(
    items: Sequence[T], stop: threading.Event | None, what: str, size: int | None = None
) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size`` (default ``CHECK_EVERY``), checking ``stop`` before each one."""
    size = size or CHECK_EVERY
    for start in range(0, len(items), size):
        raise_if_stopped(stop, what)
        yield items[start : start + size]
