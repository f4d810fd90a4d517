"""Strings from files (labels, texts, file and column names, error messages quoting them), made
safe for Qt's rich text.

QLabel, tool tips and QMessageBox guess whether a string is rich text (Qt::mightBeRichText), so
a label such as ``<img src="/some/local.png" width=4000>`` would load a local file and blow up the
window. Interpolate file-derived strings into markup through ``escaped``; show a whole string
that is not markup through ``as_rich_text``, which escapes it and marks it as rich text, so Qt
shows it literally (an escaped string Qt took for plain text would show "&lt;").
"""

from __future__ import annotations

import html


def escaped(text: object) -> str:
    """``text`` for inclusion in Qt rich text: <, >, & and quotes as entities."""
    return html.escape(str(text))


def as_rich_text(text: object) -> str:
    """A plain string (a tool tip, a message box's text) that Qt renders exactly as written."""
    return "<qt>" + escaped(text).replace("\n", "<br>") + "</qt>"
