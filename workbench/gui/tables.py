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
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QTableView, QTableWidget, QTableWidgetItem, QWidget

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


def install_spreadsheet_actions(view: QTableView) -> None:
    """Copy (Ctrl+C, also in the context menu) and "Export CSV…" on a table view's context menu."""
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.copy_action = QAction("Copy", view)
    view.copy_action.setShortcut(QKeySequence.StandardKey.Copy)  # shown in the menu; keyPressEvent acts
    view.copy_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
    view.copy_action.triggered.connect(lambda: copy_selection(view))
    view.export_action = QAction("Export CSV…", view)
    view.export_action.triggered.connect(lambda: choose_export(view))
    view.addAction(view.copy_action)
    view.addAction(view.export_action)
    view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)


def copy_selection(view: QTableView) -> str:
    text = selection_as_tsv(view)
    if text:
        QGuiApplication.clipboard().setText(text)
    return text


def choose_export(view: QTableView) -> None:
    path, _filter = QFileDialog.getSaveFileName(view, "Export CSV", "", "CSV files (*.csv)")
    if path:
        export_csv(view, path)


def export_csv(view: QTableView, path: str) -> bool:
    """Write the table (as sorted on screen) to ``path``; a failure is said in a dialog."""
    target = Path(path)
    if target.suffix.lower() != ".csv":
        target = target.with_name(target.name + ".csv")
    try:
        write_atomically(target, table_as_csv(view.model()).encode("utf-8"))
    except (OSError, WorkbenchError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        dialogs.warning(view, "Export CSV", f"Could not write {target}: {reason}")
        return False
    return True


def copies_the_selection(view: QTableView, event: QKeyEvent) -> bool:
    """Ctrl+C: QAbstractItemView answers it itself with the current cell alone; a spreadsheet
    copies the selection."""
    if event.matches(QKeySequence.StandardKey.Copy):
        copy_selection(view)
        event.accept()
        return True
    return False


class ResultsTableView(QTableView):
    """A read-mostly table: rows selected whole or cell by cell, sortable by a click on a header,
    Ctrl+C and a context menu to copy, and "Export CSV…" (``export_csv``)."""

    delete_pressed = Signal()  # the Delete key: what it removes is the owner's to decide

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSortingEnabled(True)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setHighlightSections(False)
        install_spreadsheet_actions(self)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if copies_the_selection(self, event):
            return
        if event.key() == Qt.Key.Key_Delete and self.state() != QAbstractItemView.State.EditingState:
            self.delete_pressed.emit()
            event.accept()
        else:
            super().keyPressEvent(event)

    def copy_selection(self) -> str:
        return copy_selection(self)

    def choose_export(self) -> None:
        choose_export(self)

    def export_csv(self, path: str) -> bool:
        return export_csv(self, path)


class NumberItem(QTableWidgetItem):
    """A QTableWidget cell that sorts by its number, not by its text ("0.05" before "0.4", "1,200"
    after "300"), and exports the number itself."""

    def __init__(self, value: float, text: str):
        super().__init__(text)
        self.value = value
        self.setData(EXPORT_ROLE, value)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, NumberItem):
            return self.value < other.value
        return super().__lt__(other)


class ResultsTableWidget(QTableWidget):
    """A QTableWidget (the Results tab's small tables) that copies and exports like
    ``ResultsTableView``; sortable where its owner enables it, numbers with ``NumberItem``."""

    def __init__(self, rows: int, columns: int, parent: QWidget | None = None):
        super().__init__(rows, columns, parent)
        install_spreadsheet_actions(self)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not copies_the_selection(self, event):
            super().keyPressEvent(event)

    def copy_selection(self) -> str:
        return copy_selection(self)

    def export_csv(self, path: str) -> bool:
        return export_csv(self, path)
