"""The Runs tab's comparison: validation curves of several runs on one pair of plots, a colour
per run, and the settings that differ between them (``core.run_table``)."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core import run_table
from ..core.config import TrainConfig
from ..core.events import Evaluated
from .escape import as_rich_text, escaped
from .plots import LegendEntry, LegendRow, plot_widget
from .tables import ResultsTableView

# Colours that stay distinct for the first ten runs compared (matplotlib's tab10).
RUN_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def validation_curve(events: list, key: str) -> tuple[list[float], list[float]]:
    """(examples seen, value) of a run's validation ``key`` ("val_loss" or "val_accuracy"): the
    quick evaluations when it made any, else the full ones at each epoch's end."""
    quick = [e for e in events if isinstance(e, Evaluated) and not e.full]
    points = quick or [e for e in events if isinstance(e, Evaluated) and e.full]
    xs, ys = [], []
    for event in points:
        value = getattr(event, key)
        if math.isfinite(value):
            xs.append(float(event.examples_seen))
            ys.append(float(value))
    return xs, ys


def short_run_names(names: list[str]) -> list[str]:
    """Legend-sized names: a run folder is "2026-11-28_14-38-31_gpt2_sms-spam"; in a legend the
    date is noise when every run shares it ("14:38:31 gpt2_sms-spam"), else it is kept short."""
    parts = [name.split("_", 2) for name in names]
    stamped = [len(p) == 3 and len(p[0]) == 10 and len(p[1]) == 8 for p in parts]
    same_day = len({p[0] for p, is_stamped in zip(parts, stamped) if is_stamped}) == 1
    out = []
    for name, p, is_stamped in zip(names, parts, stamped):
        if not is_stamped:  # a name given in the window: shown as given
            out.append(name)
        elif same_day:
            out.append(f"{p[1].replace('-', ':')} {p[2]}")
        else:
            out.append(f"{p[0][5:]} {p[1].replace('-', ':')[:5]} {p[2]}")
    return out


class RunComparisonWidget(QWidget):
    """Validation loss and accuracy of several runs on one pair of plots, a colour per run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss_plot = self._plot("Validation loss", "cross-entropy")
        self.accuracy_plot = self._plot("Validation accuracy", "accuracy")
        self.legend = LegendRow()  # one for both plots (a colour per run), above them, off the curves
        self.accuracy_plot.getPlotItem().setYRange(0, 1, padding=0.02)
        self.caption = QLabel("Select two or more runs (Ctrl- or Shift-click) and press Compare.")
        self.caption.setWordWrap(True)
        # Which settings differ: a setting a row, a run a column (copyable, exportable like any table).
        self.diff_model = QStandardItemModel(0, 0, self)
        self.diff_table = ResultsTableView()
        self.diff_table.setModel(self.diff_model)
        self.diff_table.setSortingEnabled(False)  # config.json's order reads best
        self.diff_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.diff_caption = QLabel("Settings that differ")
        diff = QWidget()
        diff_layout = QVBoxLayout(diff)
        diff_layout.setContentsMargins(0, 0, 0, 0)
        diff_layout.addWidget(self.diff_caption)
        diff_layout.addWidget(self.diff_table, 1)
        plots = QWidget()
        plots_layout = QHBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        plots_layout.addWidget(self.loss_plot, 1)
        plots_layout.addWidget(self.accuracy_plot, 1)
        # A splitter: on a narrow screen the settings table or the curves can be given the room.
        self.splitter = QSplitter()
        self.splitter.addWidget(diff)
        self.splitter.addWidget(plots)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 3)  # the curves; the settings table a quarter (draggable)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.legend)
        layout.addWidget(self.splitter, 1)

    def _plot(self, title: str, y_label: str) -> pg.PlotWidget:
        plot = plot_widget("examples seen", y_label)
        item = plot.getPlotItem()
        item.setTitle(title)
        for name in ("left", "bottom"):
            item.getAxis(name).enableAutoSIPrefix(False)
        return plot

    def show_runs(self, runs: list[tuple[str, list]]) -> None:
        """``runs``: (name for the legend, recorded events) for each run, in colour order."""
        empty = []
        labels = short_run_names([name for name, _events in runs])
        entries = {}
        for plot, key in ((self.loss_plot, "val_loss"), (self.accuracy_plot, "val_accuracy")):
            plot.getPlotItem().clear()
            for i, ((name, events), label) in enumerate(zip(runs, labels)):
                xs, ys = validation_curve(events, key)
                if not xs:
                    if key == "val_loss":
                        empty.append(name)
                    continue
                color = RUN_COLORS[i % len(RUN_COLORS)]
                plot.plot(
                    xs,
                    ys,
                    name=escaped(label),  # pyqtgraph's legend renders HTML
                    pen=pg.mkPen(color, width=2),
                    symbol="o",
                    symbolSize=5,
                    symbolBrush=color,
                    symbolPen=None,
                )
                entries[label] = LegendEntry(label, pg.mkColor(color))
        self.legend.set_entries(list(entries.values()))
        shown = len(runs) - len(empty)
        note = f" · no validation points yet: {escaped(', '.join(empty))}" if empty else ""
        self.caption.setText(f"Validation curves of {shown} run{'' if shown == 1 else 's'}{note}")
        legend = "\n".join(f"{label}: {name}" for (name, _events), label in zip(runs, labels))
        self.caption.setToolTip(as_rich_text(legend))

    def show_settings(self, names: list[str], configs: list[TrainConfig | None]) -> None:
        """A row per setting whose values differ between the runs (``core.run_table.settings_diff``)."""
        readable = [(name, cfg) for name, cfg in zip(short_run_names(names), configs) if cfg is not None]
        diffs = run_table.settings_diff([cfg for _name, cfg in readable])
        self.diff_model.clear()
        self.diff_model.setHorizontalHeaderLabels(["setting", *(name for name, _cfg in readable)])
        for diff in diffs:
            cells = [QStandardItem(diff.setting), *(QStandardItem(value) for value in diff.values)]
            for cell in cells:
                cell.setEditable(False)
            self.diff_model.appendRow(cells)
        unreadable = len(configs) - len(readable)
        note = f" ({unreadable} with unreadable settings left out)" if unreadable else ""
        if len(readable) < 2:
            self.diff_caption.setText(f"Settings: too few readable to compare{note}")
        elif diffs:
            self.diff_caption.setText(f"{len(diffs)} settings differ{note}")
        else:
            self.diff_caption.setText(f"Same settings{note}: only chance (and time) differ")

    def settings_shown(self) -> dict[str, tuple[str, ...]]:
        """setting → its value in each run, as the diff table shows them (what a test can check)."""
        model = self.diff_model
        return {
            model.item(row, 0).text(): tuple(model.item(row, c).text() for c in range(1, model.columnCount()))
            for row in range(model.rowCount())
        }

    def curves(self, which: str = "loss") -> dict[str, tuple[str, int]]:
        """Legend name → (colour, points) of each curve shown (what a test can check)."""
        plot = self.loss_plot if which == "loss" else self.accuracy_plot
        out = {}
        for item in plot.getPlotItem().listDataItems():
            x, _y = item.getData()
            out[item.name()] = (item.opts["pen"].color().name(), 0 if x is None else len(x))
        return out
