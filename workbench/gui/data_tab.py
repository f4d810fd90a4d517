"""The Data tab: a preview of the chosen dataset, so a person can check the columns before training,
and its health (core/data/health.py, the figures of ``workbench data-report``): class balance,
token lengths against the cut, empty texts, duplicates and copies that land in different splits.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QTableView,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.data.health import DataHealth, DuplicateGroup, LengthHistogram
from ..core.text import printable
from .escape import as_rich_text, escaped
from .plots import LegendRow, plot_widget

PREVIEW_ROWS = 500  # enough to see what the file holds; the table never holds a whole large file
EXAMPLE_CHARS = 110  # an example text in the findings list, cut (its tool tip holds all of it)
BAR_COLOR = QColor(70, 130, 180)
CUT_COLOR = QColor(217, 83, 79)


class FrameModel(QAbstractTableModel):
    """Read-only view of the first rows of a DataFrame (all columns are strings)."""

    def __init__(self, frame: pd.DataFrame | None = None):
        super().__init__()
        self._frame = frame if frame is not None else pd.DataFrame()

    def set_frame(self, frame: pd.DataFrame) -> None:
        self.beginResetModel()
        self._frame = frame.head(PREVIEW_ROWS)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._frame)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._frame.columns)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole) and index.isValid():
            return str(self._frame.iat[index.row(), index.column()])
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return str(self._frame.columns[section])
        return str(section + 1)


class ClassBalanceWidget(QGroupBox):
    """One bar per class: its share of the usable rows, with the count."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Classes", parent)
        self._grid = QGridLayout(self)
        self.bars: dict[str, QProgressBar] = {}

    def set_counts(self, counts: dict[str, int]) -> None:
        for bar in self.bars.values():
            bar.deleteLater()
        self.bars = {}
        total = sum(counts.values()) or 1
        for row, (name, n) in enumerate(counts.items()):
            bar = QProgressBar()
            bar.setRange(0, total)
            bar.setValue(n)
            bar.setFormat(f"{printable(name, 30)}  {n:,} ({n / total:.1%})")  # a format string is never markup
            bar.setToolTip(as_rich_text(name))
            self._grid.addWidget(bar, row, 0)
            self.bars[name] = bar


class LengthHistogramWidget(QWidget):
    """Token lengths as bars, the max-length cut as a dashed line (legend above, see plots.py)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.legend = LegendRow("Token lengths")
        self.plot = plot_widget("tokens", "texts", grid_x=False)
        item = self.plot.getPlotItem()
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        for name in ("left", "bottom"):
            item.getAxis(name).enableAutoSIPrefix(False)
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=BAR_COLOR, pen=pg.mkPen(None))
        item.addItem(self.bars)
        dashed = pg.mkPen(CUT_COLOR, width=2, style=Qt.PenStyle.DashLine)
        self.cut = pg.InfiniteLine(angle=90, movable=False, pen=dashed)
        item.addItem(self.cut, ignoreBounds=True)  # a cut far beyond the texts must not squash the bars
        self.summary = QLabel(" ")
        self.summary.setStyleSheet("color: palette(mid);")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.legend)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)

    def set_histogram(self, h: LengthHistogram) -> None:
        self.bars.setOpts(x0=list(h.edges[:-1]), x1=list(h.edges[1:]), height=list(h.counts))
        self.cut.setPos(h.max_length)
        self.plot.getPlotItem().setXRange(0, max(h.edges[-1], 1), padding=0.02)
        self.plot.getPlotItem().setYRange(0, max(max(h.counts), 1), padding=0.05)
        beyond = h.max_length >= h.edges[-1]
        self.legend.set_entries([])
        self.legend.add("texts per length", BAR_COLOR)
        self.legend.add(f"cut at {h.max_length}" + (" (beyond every text)" if beyond else ""), CUT_COLOR)
        self.summary.setText(
            f"median {h.median:g} tokens, longest {h.longest}; {h.over_max:,} longer than the cut "
            + ("(their ends are not read)" if h.over_max else "")
        )


class DataHealthPanel(QWidget):
    """The data report as things to look at: notes, class bars, the length histogram, and a list of
    findings, each with its count and a few examples (expand a finding to see them)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.health: DataHealth | None = None
        self.status = QLabel("The data report appears here once a dataset is read.")
        self.status.setWordWrap(True)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setVisible(False)
        self.balance = ClassBalanceWidget()
        self.balance.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.histogram = LengthHistogramWidget()
        self.findings = QTreeWidget()
        self.findings.setColumnCount(2)
        self.findings.setHeaderLabels(["Finding (expand for examples)", "rows"])
        self.findings.setUniformRowHeights(True)
        header = self.findings.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.findings.setAlternatingRowColors(True)

        left = QVBoxLayout()
        left.addWidget(self.balance)
        left.addWidget(self.findings, 1)
        row = QHBoxLayout()
        row.addLayout(left, 3)
        row.addWidget(self.histogram, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.notes)
        layout.addLayout(row, 1)
        self.set_visible_parts(False)

    def set_visible_parts(self, shown: bool) -> None:
        for widget in (self.balance, self.histogram, self.findings):
            widget.setVisible(shown)
        self.notes.setVisible(shown and bool(self.health and self.health.notes))

    def set_busy(self, message: str) -> None:
        """Work started; what is shown (if anything) stays until the new figures arrive."""
        self.status.setText(as_rich_text(message))

    def set_message(self, message: str) -> None:
        """Nothing to show (no dataset, or it could not be checked) and why."""
        self.health = None
        self.status.setText(as_rich_text(message))
        self.set_visible_parts(False)

    def set_health(self, h: DataHealth, caption: str) -> None:
        self.health = h
        self.status.setText(caption)
        self.notes.setText("<br>".join(f"⚠ {escaped(note)}" for note in h.notes))
        self.balance.set_counts(h.class_counts)
        self.histogram.set_histogram(h.lengths)
        self._fill_findings(h)
        self.set_visible_parts(True)

    def finding(self, title_start: str) -> QTreeWidgetItem | None:
        """The top-level finding whose title starts with ``title_start`` (tests read the counts)."""
        for i in range(self.findings.topLevelItemCount()):
            item = self.findings.topLevelItem(i)
            if item.text(0).startswith(title_start):
                return item
        return None

    def _fill_findings(self, h: DataHealth) -> None:
        self.findings.clear()
        self._add("Empty texts", h.empty_texts, _row_numbers(h.empty_examples, h.empty_texts))
        self._add("Missing labels", h.missing_labels, _row_numbers(h.missing_examples, h.missing_labels))
        self._add(
            "Exact duplicates",
            h.exact_duplicates,
            [_group_line(g) for g in h.exact_groups],
            "rows repeating an earlier text",
        )
        self._add(
            "Conflicting labels",
            h.conflicting_labels,
            [_group_line(g, labels=True) for g in h.conflict_groups],
            "texts that appear with more than one label",
        )
        self._add(
            "Near duplicates",
            h.near_duplicates,
            [_group_line(g) for g in h.near_groups],
            "rows repeating an earlier text once casefolded, digit runs as 0 and spaces collapsed",
        )
        leaked = h.cross_split["test in train"] + h.cross_split["test in val"]
        pairs = [f"{k}: {v:,} with a copy there ({h.cross_split_exact[k]:,} exact)" for k, v in h.cross_split.items()]
        self._add(
            "Test rows with a copy in train/val",
            leaked,
            pairs + [_group_line(g, splits=True) for g in h.cross_split_groups],
            "a test message whose (near) copy was trained on is classified from memory: test accuracy overstates "
            "accuracy on new text",
            expand=leaked > 0,
        )
        sizes = h.split_sizes
        self._add(
            f"Splits: train {sizes['train']:,} · val {sizes['val']:,} · test {sizes['test']:,}",
            sum(sizes.values()),
            [],
            "as training makes them: the usable rows after de-duplication and balancing, split with the seed",
        )
        self.findings.setCurrentIndex(QModelIndex())  # no focus frame on the first finding

    def _add(self, title: str, count: int, examples: list[str], tip: str = "", expand: bool = False) -> None:
        item = QTreeWidgetItem([title, f"{count:,}"])
        if tip:
            item.setToolTip(0, as_rich_text(f"{title}: {tip}"))
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for text in examples:
            child = QTreeWidgetItem([printable(text, EXAMPLE_CHARS), ""])
            child.setToolTip(0, as_rich_text(text))
            item.addChild(child)
        self.findings.addTopLevelItem(item)
        item.setExpanded(expand)


def _row_numbers(numbers: tuple[int, ...], total: int) -> list[str]:
    if not total:
        return []
    return [f"rows {', '.join(map(str, numbers))}" + ("…" if total > len(numbers) else "")]


def _group_line(g: DuplicateGroup, labels: bool = False, splits: bool = False) -> str:
    """One example of a duplicate group: how many rows, where they landed, the texts."""
    where = "+".join(g.splits) + " " if splits else ""
    said = "/".join(g.labels) + " " if labels or len(g.labels) > 1 else ""
    return f"{g.count}× {where}{said}" + " | ".join(g.texts[:2])


class DataTab(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.caption = QLabel(
            "Choose a dataset on the left: the built-in SMS Spam Collection or your own CSV/TSV file."
        )
        self.caption.setWordWrap(True)
        self.model = FrameModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.health = DataHealthPanel()
        self.views = QTabWidget()  # the rows as read, and what they add up to
        self.views.setDocumentMode(True)
        self.views.addTab(self.table, "Rows")
        self.views.addTab(self.health, "Health")
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.views, 1)

    def show_frame(self, frame: pd.DataFrame, caption: str) -> None:
        self.model.set_frame(frame)
        self.caption.setText(caption)
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        for col in range(self.model.columnCount()):
            header.resizeSection(col, min(header.sectionSize(col), 520))

    def set_caption(self, caption: str) -> None:
        self.caption.setText(caption)
