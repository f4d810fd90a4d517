"""The Results tab: test accuracy, per-class precision/recall/F1, a coloured confusion matrix and
the messages the model got wrong, shown when a run finishes (or a past run is reopened) or after
"Evaluate on a labelled file…"; beside them the decision views (threshold, calibration) and the
suspicious-labels list, which ``controllers/review.py`` fills on workers."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.events import EvaluationMetrics
from .decision_views import CalibrationView, ThresholdView
from .escape import as_rich_text, escaped
from .suspects_view import SuspectsView
from .tables import NumberItem, ResultsTableWidget


def _item(text: str, align_right: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


class ConfusionMatrixWidget(QTableWidget):
    """Rows: true label, columns: predicted; each cell shaded by its share of the row, green on
    the diagonal (right) and red off it (wrong), so mistakes stand out at a glance."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setToolTip("Rows: the true label. Columns: what the model predicted.")

    def set_matrix(self, names: tuple[str, ...], confusion: tuple[tuple[int, ...], ...]) -> None:
        k = len(names) if len(confusion) == len(names) else 0  # not kept for very many classes
        self.setRowCount(k)
        self.setColumnCount(k)
        self.setHorizontalHeaderLabels([f"predicted {n}" for n in names])
        self.setVerticalHeaderLabels([f"true {n}" for n in names])
        bold = QFont()
        bold.setBold(True)
        bold.setPointSize(bold.pointSize() + 2)
        for r in range(k):
            row_total = max(1, sum(confusion[r]))
            for c in range(k):
                count = confusion[r][c]
                share = count / row_total
                item = _item(f"{count:,}\n{share:.0%}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setFont(bold)
                base = (46, 160, 67) if r == c else (215, 58, 73)
                alpha = int(40 + 200 * share) if count else 0
                item.setBackground(QColor(*base, alpha))
                item.setForeground(QColor("white") if share > 0.55 else self.palette().text().color())
                self.setItem(r, c, item)

    def matrix(self) -> list[list[int]]:
        return [
            [int(self.item(r, c).text().split("\n")[0].replace(",", "")) for c in range(self.columnCount())]
            for r in range(self.rowCount())
        ]


class ResultsTab(QWidget):
    evaluate_requested = Signal()  # "Evaluate on a labelled file…"
    view_shown = Signal()  # the threshold or calibration view came into sight: fill it if stale

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.headline = QLabel("No results yet: they appear here when a training run finishes.")
        font = self.headline.font()
        font.setPointSize(font.pointSize() + 4)
        self.headline.setFont(font)
        self.headline.setWordWrap(True)

        self.class_table = ResultsTableWidget(0, 5)
        self.class_table.setHorizontalHeaderLabels(["class", "precision", "recall", "F1", "support"])
        self.class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.confusion = ConfusionMatrixWidget()

        self.wrong_label = QLabel("Misclassified test messages")
        self.wrong_table = ResultsTableWidget(0, 4)
        self.wrong_table.setHorizontalHeaderLabels(["message", "true", "predicted", "confidence"])
        header = self.wrong_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.wrong_table.verticalHeader().setVisible(False)
        self.wrong_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.wrong_table.setWordWrap(True)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Per class"))
        left_layout.addWidget(self.class_table, 1)
        left_layout.addWidget(QLabel("Confusion matrix (rows: true label)"))
        left_layout.addWidget(self.confusion, 2)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.wrong_label)
        right_layout.addWidget(self.wrong_table, 1)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([400, 500])

        self.evaluate_button = QPushButton("Evaluate on a labelled file…")
        self.evaluate_button.setToolTip(
            "Score the loaded adapter on a CSV/TSV with a label column: the run's own test rows when it is "
            "the file the adapter was trained on, every row of any other file"
        )
        self.evaluate_button.setEnabled(False)
        self.threshold_view = ThresholdView()
        self.calibration_view = CalibrationView()
        self.suspects_view = SuspectsView()
        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.addTab(splitter, "Scores")
        self.views.addTab(self.threshold_view, "Threshold")
        self.views.addTab(self.calibration_view, "Calibration")
        self.views.addTab(self.suspects_view, "Suspicious labels")
        self.views.currentChanged.connect(self._view_changed)

        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(self.headline, 1)
        top.addWidget(self.evaluate_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(top)
        layout.addWidget(self.views, 1)
        self.metrics: EvaluationMetrics | None = None
        self.evaluate_button.clicked.connect(self.evaluate_requested)

    def _view_changed(self, _index: int) -> None:
        if self.views.currentWidget() in (self.threshold_view, self.calibration_view):
            self.view_shown.emit()

    def decision_view_visible(self) -> bool:
        return self.isVisible() and self.views.currentWidget() in (self.threshold_view, self.calibration_view)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._view_changed(self.views.currentIndex())

    def clear(self, message: str = "No results yet: they appear here when a training run finishes.") -> None:
        self.metrics = None
        self.headline.setText(message)
        self.class_table.setRowCount(0)
        self.confusion.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.wrong_table.setRowCount(0)

    def show_metrics(self, metrics: EvaluationMetrics, where: str = "", held_out: bool = True) -> None:
        """``held_out`` False: the rows may include training rows (an evaluation of every row of a
        file), so the headline must not call the figure a test accuracy."""
        self.metrics = metrics
        n = sum(metrics.support)
        what = "Test accuracy" if held_out else "Accuracy"
        rows = "held-out messages" if held_out else "messages"
        self.headline.setText(
            f"{what} <b>{metrics.accuracy:.1%}</b> on {n:,} {rows}"
            f" · loss {metrics.loss:.3f}" + (f"<br><small>{escaped(where)}</small>" if where else "")
        )
        self.class_table.setSortingEnabled(False)  # filling a sorted table moves rows under the loop
        self.class_table.setRowCount(len(metrics.label_names))
        for r, name in enumerate(metrics.label_names):
            numbers = (metrics.precision[r], metrics.recall[r], metrics.f1[r])
            cells = [_item(name), *(NumberItem(v, f"{v:.3f}") for v in numbers)]
            cells.append(NumberItem(metrics.support[r], f"{metrics.support[r]:,}"))
            for c, item in enumerate(cells):
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                self.class_table.setItem(r, c, item)
        self.class_table.setSortingEnabled(True)
        self.confusion.set_matrix(metrics.label_names, metrics.confusion)
        wrong = metrics.misclassified
        self.wrong_label.setText(f"Misclassified messages ({len(wrong)})" if wrong else "No misclassified messages")
        self.wrong_table.setSortingEnabled(False)
        self.wrong_table.setRowCount(len(wrong))
        for r, m in enumerate(wrong):
            cells = [_item(m.text), _item(m.true_label), _item(m.predicted_label)]
            cells.append(NumberItem(m.probability, f"{m.probability:.0%}"))
            cells[0].setToolTip(as_rich_text(m.text))
            for c, item in enumerate(cells):
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                self.wrong_table.setItem(r, c, item)
        self.wrong_table.setSortingEnabled(True)
