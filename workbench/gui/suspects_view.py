"""The Results tab's "Suspicious labels" list: the run's training and validation rows whose given
label the adapter finds least likely (``core/label_errors.py``, the ranking ``workbench
label-errors`` prints), to check by eye, export, or open in the Classify tab."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.label_errors import Suspect
from .escape import as_rich_text
from .tables import NumberItem, ResultsTableWidget

SHOWN_ROWS = 500  # the list shows the least likely rows; the CSV export holds every row
COLUMNS = ("p(given)", "given", "predicted", "split", "message")


class SuspectsView(QWidget):
    find_requested = Signal()
    export_requested = Signal()
    open_in_classify = Signal(str)  # a row's text, double-clicked

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.suspects: list[Suspect] = []
        self.note = QLabel(
            "Rows whose given label the model finds least likely are often mislabelled. Validation rows "
            "are scored out-of-sample; training rows (split marked *) were learned by the model, so a "
            "training row it still doubts is a strong suspect. `workbench label-errors --folds K` "
            "scores every row out-of-sample by cross-validation."
        )
        self.note.setWordWrap(True)
        self.find_button = QPushButton("Find suspicious labels")
        self.find_button.setToolTip("Score the run's training and validation rows with the adapter")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        self.status = QLabel()
        # A long status (a file name in an error) wraps, and never sets the window's width: unchecked,
        # it pushed the window past a 1366-pixel screen.
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table = ResultsTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setToolTip("Double-click a row to open its message in the Classify tab")
        buttons = QHBoxLayout()
        buttons.addWidget(self.find_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        self.find_button.clicked.connect(self.find_requested)
        self.export_button.clicked.connect(self.export_requested)
        self.table.cellDoubleClicked.connect(self._double_clicked)

    def set_busy(self, message: str) -> None:
        self.find_button.setEnabled(False)
        self.status.setText(message)

    def set_idle(self, message: str = "") -> None:
        self.find_button.setEnabled(True)
        self.status.setText(message)

    def set_suspects(self, suspects: list[Suspect]) -> None:
        self.suspects = list(suspects)
        shown = self.suspects[:SHOWN_ROWS]
        self.table.setSortingEnabled(False)  # filling a sorted table moves rows under the loop
        self.table.setRowCount(len(shown))
        for r, s in enumerate(shown):
            message = QTableWidgetItem(s.text)
            message.setToolTip(as_rich_text(s.text))
            message.setData(Qt.ItemDataRole.UserRole, s.text)
            split = s.split + ("" if s.out_of_sample else "*")
            cells = (NumberItem(s.confidence, f"{s.confidence:.4f}"), QTableWidgetItem(s.given))
            cells += (QTableWidgetItem(s.predicted), QTableWidgetItem(split), message)
            for c, item in enumerate(cells):
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.export_button.setEnabled(bool(self.suspects))
        more = f"; the {SHOWN_ROWS:,} least likely shown, Export CSV writes all" if len(suspects) > SHOWN_ROWS else ""
        self.set_idle(f"{len(suspects):,} rows ranked{more}" if suspects else "")

    def _double_clicked(self, row: int, _column: int) -> None:
        item = self.table.item(row, len(COLUMNS) - 1)
        if item is not None:
            self.open_in_classify.emit(item.data(Qt.ItemDataRole.UserRole))
