"""Message boxes that show their text exactly as written.

Qt's static ``QMessageBox`` functions guess whether a text is rich text (Qt::mightBeRichText): an
error quoting a file, column or label name such as ``<img src="/some/file" width=4000>`` would be
rendered as markup. Every message box of the window goes through these functions, which hand Qt
the text escaped and marked as rich text (``escape.as_rich_text``), so it reads as written, line
breaks included; tests/test_escaping.py fails on any QMessageBox call elsewhere.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QMessageBox, QWidget

from .escape import as_rich_text


def warning(parent: QWidget | None, title: str, text: object) -> None:
    QMessageBox.warning(parent, title, as_rich_text(text))


def critical(parent: QWidget | None, title: str, text: object) -> None:
    QMessageBox.critical(parent, title, as_rich_text(text))


def information(parent: QWidget | None, title: str, text: object) -> None:
    QMessageBox.information(parent, title, as_rich_text(text))


def question(parent: QWidget | None, title: str, text: object, *buttons: Any) -> QMessageBox.StandardButton:
    """The button pressed (``QMessageBox.StandardButton.Yes`` / ``No`` unless ``buttons`` say)."""
    return QMessageBox.question(parent, title, as_rich_text(text), *buttons)


def rich_information(parent: QWidget | None, title: str, markup: str) -> None:
    """For markup the window writes itself (a table of shortcuts): every part of it that comes from
    outside must already be escaped (``escape.escaped``)."""
    QMessageBox.information(parent, title, markup)
