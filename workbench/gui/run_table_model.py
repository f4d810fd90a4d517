"""The Runs tab's table model: one row per run (``core.run_table.RunRow``), its columns, how each
shows, sorts and exports, and the live row of the run training in this window."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    Qt,
)

from ..core import run_table
from ..core.progress import format_duration
from ..core.run_table import RunRow
from ..core.runs import RunFolder
from .escape import as_rich_text
from .tables import EXPORT_ROLE, SORT_ROLE

# How the Runs tab words each of core.runs.RUN_STATES.
STATE_LABELS = {
    "finished": "finished",
    "stopped": "stopped early",
    "failed": "failed",
    "interrupted": "interrupted",
    "running": "training now",
}


def format_bytes(size: int | None) -> str:
    if size is None:
        return ""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def unstamped(folder: str) -> str:
    """A run folder's name less the time it began ("gpt2_sms-spam"): Started shows the time."""
    return run_table.STAMP.sub("", folder).lstrip("_") or folder


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


@dataclass(frozen=True)
class Column:
    title: str
    display: object  # RunRow -> str shown
    value: object  # RunRow -> what sorts and exports (a number, a string, or None)
    numeric: bool = False
    tip: str = ""
    sort: object = None  # RunRow -> the sort key, when not ``value``


COLUMNS = (
    Column(
        "Name",
        lambda r: r.name if r.name != r.folder else unstamped(r.folder),
        lambda r: r.name,
        tip="F2 or Rename gives a run a name (the folder keeps its own); a double-click shows the run",
        sort=lambda r: r.name if r.name != r.folder else unstamped(r.folder),  # as shown
    ),
    Column("Status", lambda r: STATE_LABELS.get(r.state, r.state), lambda r: r.state),
    Column(
        "Started",
        lambda r: r.started.strftime("%Y-%m-%d %H:%M") if r.started else "",
        lambda r: r.started.isoformat(sep=" ") if r.started else None,
    ),
    Column("Model", lambda r: r.model or "", lambda r: r.model),
    Column("Data", lambda r: r.data or "", lambda r: r.data),
    Column("Rank", lambda r: "" if r.rank is None else str(r.rank), lambda r: r.rank, numeric=True),
    Column(
        "Epochs",
        lambda r: "" if r.epochs is None else str(r.epochs),
        lambda r: r.epochs,
        numeric=True,
        tip="Planned epochs (Train more raises them)",
    ),
    Column("Test acc.", lambda r: _percent(r.test_accuracy), lambda r: r.test_accuracy, numeric=True),
    Column(
        "F1",
        lambda r: "" if r.f1 is None else f"{r.f1:.3f}",
        lambda r: r.f1,
        numeric=True,
        tip="Macro F1 on the test split: the mean of each class's F1",
    ),
    Column(
        "Duration",
        lambda r: "" if r.duration_s is None else format_duration(r.duration_s),
        lambda r: r.duration_s,
        numeric=True,
        tip="Training time over all its attempts",
    ),
    Column("Adapter", lambda r: format_bytes(r.adapter_bytes), lambda r: r.adapter_bytes, numeric=True),
    Column("Notes", lambda r: r.notes.split("\n", 1)[0], lambda r: r.notes),
)
NAME_COLUMN = 0
STATUS_COLUMN = 1
STARTED_COLUMN = 2
RUN_ROLE = Qt.ItemDataRole.UserRole


class RunTableModel(QAbstractTableModel):
    """One row per run (``RunRow``); the Name column is editable (``rename`` writes it)."""

    def __init__(self, rename, parent=None):
        super().__init__(parent)
        self.rows: list[RunRow] = []
        self.progress: dict[Path, str] = {}  # the live run: "43 %" after its status
        self._rename = rename  # (RunFolder, new name) -> the name stored, or None when refused

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tip or None
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], COLUMNS[index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            text = column.display(row)
            if index.column() == STATUS_COLUMN and row.path in self.progress:
                text = f"{text} · {self.progress[row.path]}"
            return text
        if role == SORT_ROLE:
            value = column.sort(row) if column.sort else column.value(row)
            if column.numeric:  # numbers compare as numbers; a run without one sorts below any
                return float("-inf") if value is None else float(value)
            return "" if value is None else str(value).casefold()
        if role == EXPORT_ROLE:
            return column.value(row)
        if role == RUN_ROLE:
            return RunFolder(row.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            if index.column() == NAME_COLUMN:
                return as_rich_text(f"{row.path}" + (f"\n{row.problem}" if row.problem else ""))
            if index.column() == STATUS_COLUMN and row.problem:
                return as_rich_text(row.problem)
            if index.column() == len(COLUMNS) - 1 and row.notes:
                return as_rich_text(row.notes[:2000])
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex):
        flags = super().flags(index)
        if index.isValid() and index.column() == NAME_COLUMN:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def setData(self, index: QModelIndex, value, role=Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or index.column() != NAME_COLUMN or role != Qt.ItemDataRole.EditRole:
            return False
        stored = self._rename(RunFolder(self.rows[index.row()].path), str(value))
        if stored is None:
            return False
        self.set_row(dataclasses.replace(self.rows[index.row()], name=stored.name or self.rows[index.row()].folder))
        return True

    def set_rows(self, rows: list[RunRow]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def row_of(self, path: Path) -> int | None:
        return next((i for i, row in enumerate(self.rows) if row.path == path), None)

    def set_row(self, row: RunRow) -> None:
        """Replace the run's row, or add it (a run that began since the table was read)."""
        i = self.row_of(row.path)
        if i is None:
            self.beginInsertRows(QModelIndex(), 0, 0)
            self.rows.insert(0, row)
            self.endInsertRows()
        else:
            self.rows[i] = row
            self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))
