"""Tables of results that behave like a spreadsheet's: sortable by any column (numbers as
numbers), Ctrl+C copies the selected cells as tab-separated text (what a spreadsheet pastes into
cells), and the whole table exports to CSV.

A model serves three roles besides what it displays: ``SORT_ROLE`` (a number, or a string to
compare) and ``EXPORT_ROLE`` (the exact value a CSV holds: 0.9567, not "95.7 %").
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QTableView, QWidget

from ..core.errors import WorkbenchError
from ..core.fileio import write_atomically
from . import dialogs

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
EXPORT_ROLE = Qt.ItemDataRole.UserRole + 2
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def cell_text(index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> str:
    value = index.data(role)
    if value is None and role != Qt.ItemDataRole.DisplayRole:
        value = index.data(Qt.ItemDataRole.DisplayRole)
    return "" if value is None else str(value)


def selection_as_tsv(view: QTableView) -> str:
    """The selected cells as rows of tab-separated text, in the order the view shows them; a
    cell inside the selection's bounds that is not selected is left empty, as spreadsheets do."""
    indexes = view.selectionModel().selectedIndexes()
    if not indexes:
        return ""
    header = view.horizontalHeader()
    rows = sorted({i.row() for i in indexes})
    columns = sorted({i.column() for i in indexes if not header.isSectionHidden(i.column())}, key=header.visualIndex)
    cells = {(i.row(), i.column()): cell_text(i) for i in indexes}
    lines = []
    for row in rows:
        values = [_one_cell(cells.get((row, column), "")) for column in columns]
        lines.append("\t".join(values))
    return "\n".join(lines) + "\n"


def _one_cell(text: str) -> str:
    """A tab or line break inside a cell would split it across cells or rows when pasted."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def table_as_csv(model: QAbstractItemModel) -> str:
    """Every row of ``model`` (in its order: a sort proxy gives the order shown) with a header
    line, each cell's EXPORT_ROLE value. Text a spreadsheet would run as a formula is quoted with
    a leading apostrophe (OWASP's advice on CSV injection); numbers are written as they are."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = range(model.columnCount())
    writer.writerow([_safe(str(model.headerData(c, Qt.Orientation.Horizontal) or "")) for c in columns])
    for row in range(model.rowCount()):
        values = []
        for column in columns:
            index = model.index(row, column)
            value = index.data(EXPORT_ROLE)
            if value is None:  # nothing exact to export (a model without the role): what is shown
                value = index.data(Qt.ItemDataRole.DisplayRole) or ""
            values.append(value if isinstance(value, (int, float)) else _safe(str(value)))
        writer.writerow(values)
    return out.getvalue()


def _safe(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def numeric_sort_proxy(source: QAbstractItemModel, parent=None) -> QSortFilterProxyModel:
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(source)
    proxy.setSortRole(SORT_ROLE)
    proxy.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    return proxy


class ResultsTableView(QTableView):
    """A read-mostly table: rows selected whole or cell by cell, sortable by a click on a header,
    Ctrl+C and a context menu to copy, and "Export CSV…" (``export_csv``)."""

    delete_pressed = Signal()  # the Delete key: what it removes is the owner's to decide

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSortingEnabled(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setHighlightSections(False)
        self.copy_action = QAction("Copy", self)
        self.copy_action.setShortcut(QKeySequence.StandardKey.Copy)  # shown in the menu; keyPressEvent acts
        self.copy_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.copy_action.triggered.connect(self.copy_selection)
        self.export_action = QAction("Export CSV…", self)
        self.export_action.triggered.connect(self.choose_export)
        self.addAction(self.copy_action)
        self.addAction(self.export_action)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # QAbstractItemView answers Ctrl+C itself, with the current cell alone; a spreadsheet copies
        # the selection.
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_selection()
            event.accept()
        elif event.key() == Qt.Key.Key_Delete and self.state() != QAbstractItemView.State.EditingState:
            self.delete_pressed.emit()
            event.accept()
        else:
            super().keyPressEvent(event)

    def copy_selection(self) -> str:
        text = selection_as_tsv(self)
        if text:
            QGuiApplication.clipboard().setText(text)
        return text

    def choose_export(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(self, "Export CSV", "", "CSV files (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str) -> bool:
        """Write the table (as sorted on screen) to ``path``; a failure is said in a dialog."""
        target = Path(path)
        if target.suffix.lower() != ".csv":
            target = target.with_name(target.name + ".csv")
        try:
            write_atomically(target, table_as_csv(self.model()).encode("utf-8"))
        except (OSError, WorkbenchError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            dialogs.warning(self, "Export CSV", f"Could not write {target}: {reason}")
            return False
        return True
