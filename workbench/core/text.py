"""Strings from files, made safe to show: the one place control characters are escaped.

A label, a text or a file name read from a user's file can hold an escape sequence (which
retitles or clears a terminal), a newline (which forges an extra ``label<TAB>prob`` row in the
CLI's output), or a bidirectional override (which shows text reversed). Everything the CLI prints
from a file goes through ``printable``; the window escapes rich text with ``html.escape``.
"""

from __future__ import annotations

import re

# C0 and C1 controls (tab and newline included), DEL, the line/paragraph separators and the
# bidirectional embedding, override and isolate marks.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object, limit: int | None = None) -> str:
    """``text`` on one line with its control characters written as Python escapes (``\\n``,
    ``\\x1b``, ``\\u202e``); cut to ``limit`` characters with "…" when given."""
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: max(1, limit - 1)] + "…"
    return _UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)
