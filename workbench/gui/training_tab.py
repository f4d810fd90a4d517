"""The Training tab: live loss and accuracy curves, a progress bar with speed and ETA, a log.

Training can report hundreds of steps a second; redrawing a plot per step would eat the GUI
thread. So events only append to numpy buffers and set a dirty flag, and a 10 Hz timer calls
``setData`` on curves that were created once (as in pyqtgraph's scrollingPlots example). Lines are
one pixel wide and not antialiased: Qt's raster engine draws wide antialiased paths many times
slower, and that cost is paid on the GUI thread. Log lines are collected the same way and
appended in one go per tick: each ``appendPlainText`` re-lays out the document.

Profiling a run showed the axes, not the curves, to be the expensive part of a repaint: every
change of the visible range makes pyqtgraph regenerate the tick layout and grid of an axis in
Python. So neither axis follows the data point by point: x is fixed to the whole run, and the
loss's y range only grows (by a margin) when a value falls outside it, which happens a few times
per run instead of ten times a second.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import QGraphicsItem, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QVBoxLayout, QWidget

from ..core.events import Evaluated, RunStarted, StepDone, TrainingFailed, TrainingFinished
from ..core.progress import format_duration
from ..core.runs import outcome
from .plots import LegendRow, plot_widget

# At most 10 redraws a second. A pyqtgraph repaint runs Python on the GUI thread while holding
# the GIL, which also slows the training thread, so fewer redraws mean faster training too.
REDRAW_MS = 100
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
STEP_COLOR = (31, 119, 180, 70)  # faint: the noisy per-step loss behind the smoothed curves


class GrowingBuffer:
    """x/y points in a numpy array that doubles when full, so appending is amortised O(1) and
    ``setData`` gets views, not copies of Python lists."""

    def __init__(self, capacity: int = 256):
        self._data = np.empty((capacity, 2), dtype=np.float64)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self.n] = (x, y)
        self.n += 1

    def clear(self) -> None:
        self.n = 0

    @property
    def x(self) -> np.ndarray:
        return self._data[: self.n, 0]

    @property
    def y(self) -> np.ndarray:
        return self._data[: self.n, 1]


class CurvePlotWidget(QWidget):
    """One pyqtgraph plot with named series, a legend, a crosshair and a hover read-out."""

    def __init__(
        self, title: str, y_label: str, parent: QWidget | None = None, y_range: tuple[float, float] | None = None
    ):
        """``y_range``: a fixed y range (accuracy: 0..1); None grows the range with the data,
        from 0, with headroom (see the module docstring)."""
        super().__init__(parent)
        self.plot = plot_widget("examples seen", y_label)
        item = self.plot.getPlotItem()
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        # Axes are text-heavy and costly to paint; cache them as pixmaps (redrawn only when their
        # range changes), and give x a fixed range per run so it rarely changes.
        for name in ("left", "bottom"):
            item.getAxis(name).enableAutoSIPrefix(False)  # "loss 0.6", not "600 (x0.001)"
            item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.legend = LegendRow(title)  # above the plot: a legend inside would cover the curves
        self._fixed_y = y_range
        self._y_top = 0.0  # the grown range's top (0: no data yet)
        self._y_max = -math.inf  # the largest value appended since the last clear
        if y_range is not None:
            item.setYRange(*y_range, padding=0.02)
        self.readout = QLabel(" ")
        self.readout.setStyleSheet("color: palette(mid);")
        self.crosshair = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((128, 128, 128, 120)))
        self.crosshair.setVisible(False)
        item.addItem(self.crosshair, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.legend)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.readout)
        self._series: dict[str, tuple[str, GrowingBuffer, pg.PlotDataItem]] = {}
        self._markers_only: dict[str, bool] = {}
        self._dirty: set[str] = set()
        # Mouse moves arrive far more often than a read-out needs; SignalProxy rate-limits them.
        self._hover = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved)

    def add_series(self, key: str, name: str, pen, symbol: str | None = None) -> None:
        buffer = GrowingBuffer()
        # A line series marks its points while it has only one: a line of one point is invisible.
        kwargs = {"symbol": symbol, "symbolSize": 7, "symbolBrush": pen, "symbolPen": None}
        curve = self.plot.plot([], [], pen=pg.mkPen(pen, width=1) if not symbol else None, **kwargs)
        self._series[key] = (name, buffer, curve)
        self._markers_only[key] = symbol is not None
        self.legend.add(name, pg.mkColor(pen), marker=symbol is not None)

    def append(self, key: str, x: float, y: float) -> None:
        if not math.isfinite(y):  # a full-validation event has no train numbers
            return
        self._series[key][1].append(x, y)
        self._dirty.add(key)
        if y > self._y_max:
            self._y_max = y

    def set_x_extent(self, examples: int) -> None:
        """Fix the x axis to the whole run, so the axis is not re-laid out with every new point."""
        item = self.plot.getPlotItem()
        item.enableAutoRange(x=False)
        item.setXRange(0, max(1, examples), padding=0.02)

    def clear(self) -> None:
        self.plot.getPlotItem().enableAutoRange(x=True)
        self._y_top, self._y_max = 0.0, -math.inf
        for _name, buffer, curve in self._series.values():
            buffer.clear()
            curve.setData([], [])
        self._dirty.clear()
        self.readout.setText(" ")

    def redraw(self) -> None:
        """Push new points to the curves; called by the window's throttle timer."""
        if not self.isVisible():
            return  # a hidden tab keeps its points dirty and catches up when shown
        if not self._dirty:
            return
        for key in self._dirty:
            _name, buffer, curve = self._series[key]
            lone = None if self._markers_only[key] or buffer.n != 1 else "o"
            if not self._markers_only[key] and curve.opts["symbol"] != lone:
                curve.setSymbol(lone)
            curve.setData(buffer.x, buffer.y)
        self._dirty.clear()
        self._grow_y_range()

    def _grow_y_range(self) -> None:
        """Loss is ≥ 0: show 0 .. a little above the largest value, changed only when exceeded."""
        if self._fixed_y is not None or self._y_max <= self._y_top:
            return
        self._y_top = self._y_max * 1.15 if self._y_max > 0 else 1.0
        self.plot.getPlotItem().setYRange(min(0.0, self._y_min()), self._y_top, padding=0.02)

    def _y_min(self) -> float:
        lows = [float(buffer.y.min()) for _name, buffer, _curve in self._series.values() if buffer.n]
        return min(lows, default=0.0)

    def points(self, key: str) -> int:
        """Points the curve currently draws (what a test can check)."""
        x, _y = self._series[key][2].getData()
        return 0 if x is None else len(x)

    def _mouse_moved(self, args) -> None:
        pos = args[0]
        item = self.plot.getPlotItem()
        if not item.sceneBoundingRect().contains(pos):
            self.crosshair.setVisible(False)
            return
        x = item.vb.mapSceneToView(pos).x()
        parts = []
        for name, buffer, _curve in self._series.values():
            if buffer.n == 0:
                continue
            i = int(np.argmin(np.abs(buffer.x - x)))
            parts.append(f"{name} {buffer.y[i]:.3f}")
        if parts:
            self.crosshair.setPos(x)
            self.crosshair.setVisible(True)
            self.readout.setText(f"at {max(0, x):,.0f} examples:  " + " · ".join(parts))


def planned_examples(event: RunStarted, examples_per_step: int | None) -> int:
    """Examples a run will have seen when it ends: its whole epochs, and the steps of a last partial
    epoch when max steps cuts it short. Steps carry ``examples_per_step`` but for an epoch's last
    (smaller) batch, so whole epochs count exactly ``n_train``."""
    per_epoch = max(1, event.steps_per_epoch)
    epochs, rest = divmod(event.total_steps, per_epoch)
    if examples_per_step:
        partial = min(event.n_train, rest * examples_per_step)
    else:
        partial = math.ceil(event.n_train * rest / per_epoch)
    return event.n_train * epochs + partial


class TrainingTab(QWidget):
    """Curves, progress and log of the current (or a reopened) run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss_plot = CurvePlotWidget("Loss", "cross-entropy")
        self.loss_plot.add_series("step", "train (each step)", STEP_COLOR)
        self.loss_plot.add_series("train", "train", TRAIN_COLOR)
        self.loss_plot.add_series("val", "validation", VAL_COLOR)
        self.loss_plot.add_series("val_epoch", "validation, epoch end", VAL_COLOR, symbol="o")
        self.accuracy_plot = CurvePlotWidget("Accuracy", "accuracy", y_range=(0.0, 1.0))
        self.accuracy_plot.add_series("train", "train", TRAIN_COLOR)
        self.accuracy_plot.add_series("val", "validation", VAL_COLOR)
        self.accuracy_plot.add_series("val_epoch", "validation, epoch end", VAL_COLOR, symbol="o")

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Press Start to train")
        self.progress.setMinimumHeight(24)
        self.summary = QLabel("")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)  # holds the dataset's label names
        self.summary.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFont("monospace", 9))
        self.log.setPlaceholderText("What the run is doing appears here.")

        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot, 1)
        plots.addWidget(self.accuracy_plot, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(plots, 3)
        layout.addWidget(self.progress)
        layout.addWidget(self.summary)
        layout.addWidget(self.log, 1)

        self._last_step: StepDone | None = None
        self._epochs = 0
        self.step_reached = 0  # the last optimiser step shown (where a stopped run ended)
        self._total_steps = 1
        self._log_lines: list[str] = []
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()

    # --- fed by the window -----------------------------------------------------------------------

    def reset(self) -> None:
        """Empty curves, bar and log: a new run (or another run shown) starts here."""
        self._log_lines.clear()
        self.log.clear()
        self.loss_plot.clear()
        self.accuracy_plot.clear()
        self._last_step = None
        self.step_reached, self._total_steps = 0, 1
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self.summary.setText("")

    def run_started(self, event: RunStarted, examples_per_step: int | None = None) -> None:
        """``examples_per_step`` (batch × accumulation) sizes a run cut short by max steps."""
        self._epochs = event.epochs
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.set_x_extent(planned_examples(event, examples_per_step))
        self._total_steps = max(1, event.total_steps)
        self.step_reached = event.start_step
        self.progress.setRange(0, self._total_steps)
        self.progress.setValue(event.start_step)
        self.progress.setFormat(f"epoch 1/{event.epochs} · 0%")
        labels = ", ".join(event.label_names)
        truncated = f" · {event.truncated} texts cut to {event.max_length} tokens" if event.truncated else ""
        self.summary.setText(
            f"{event.device} ({event.precision}) · {event.n_train:,} train / {event.n_val:,} val / "
            f"{event.n_test:,} test · classes: {labels} · {event.trainable_params:,} of "
            f"{event.total_params:,} parameters trainable{truncated}"
        )

    def step(self, event: StepDone) -> None:
        self.loss_plot.append("step", event.examples_seen, event.loss)
        self._last_step = event  # the bar is updated by the timer, not per step

    def evaluated(self, event: Evaluated) -> None:
        if event.full:
            self.loss_plot.append("val_epoch", event.examples_seen, event.val_loss)
            self.accuracy_plot.append("val_epoch", event.examples_seen, event.val_accuracy)
            return
        self.loss_plot.append("train", event.examples_seen, event.train_loss)
        self.loss_plot.append("val", event.examples_seen, event.val_loss)
        self.accuracy_plot.append("train", event.examples_seen, event.train_accuracy)
        self.accuracy_plot.append("val", event.examples_seen, event.val_accuracy)

    def set_status(self, message: str, done: int | None = None, total: int | None = None) -> None:
        """A phase without steps: setup before the first step, scoring the test set after the last."""
        self._last_step = None  # a step not yet drawn is older news than this phase
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(done or 0, total) / total))
        # A phase of unknown size leaves the bar where it is: a busy bar (range 0..0) would be
        # drawn without its text by most styles, and the words are what says what happens now.
        self.progress.setFormat(message if total else f"{message}…")

    def finish(self, text: str, step: int | None = None) -> None:
        """The run ended: a full bar when it completed (``step`` None); stopped or failed, the bar
        stays at the ``step`` it reached, so it never looks like a finished run."""
        self._redraw()
        if step is None:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
        else:
            self.progress.setRange(0, self._total_steps)
            self.progress.setValue(min(step, self._total_steps))
        self.progress.setFormat(text)

    def replay(self, events: list, examples_per_step: int | None = None) -> TrainingFinished | TrainingFailed | None:
        """Put a run's recorded curves back (a reopened run, or one about to be resumed) and
        return how its latest attempt ended (``core.runs.outcome``; None: it was interrupted)."""
        for event in events:
            if isinstance(event, RunStarted):
                self.run_started(event, examples_per_step)
            elif isinstance(event, Evaluated):
                self.evaluated(event)
        self._redraw()
        return outcome(events).ended

    def add_log(self, line: str) -> None:
        """Queue a line for the log; lines are appended together on the next redraw tick."""
        self._log_lines.append(line)

    def set_log(self, text: str) -> None:
        self._log_lines.clear()
        self.log.setPlainText(text)
        self.log.moveCursor(QTextCursor.MoveOperation.End)

    def log_text(self) -> str:
        """The log as it will read once queued lines are shown (for tests and for copying)."""
        self._flush_log()
        return self.log.toPlainText()

    def _flush_log(self) -> None:
        if self._log_lines:
            text = "\n".join(self._log_lines)
            self._log_lines.clear()
            bar = self.log.verticalScrollBar()
            follow = bar.value() >= bar.maximum() - 1  # not scrolled up to read an earlier line
            self.log.appendPlainText(text)
            if follow:
                bar.setValue(bar.maximum())

    @Slot()
    def _redraw(self) -> None:
        self._flush_log()
        self.loss_plot.redraw()
        self.accuracy_plot.redraw()
        event = self._last_step
        if event is None:
            return
        self._last_step = None
        self.step_reached, self._total_steps = event.step, max(1, event.total_steps)
        percent = 100 * event.step / max(1, event.total_steps)
        self.progress.setRange(0, max(1, event.total_steps))
        self.progress.setValue(event.step)
        self.progress.setFormat(
            f"epoch {event.epoch}/{self._epochs or '?'} · step {event.step}/{event.total_steps} · "
            f"{percent:.0f}% · {event.examples_per_s:.1f} ex/s · ETA {format_duration(event.eta_s)}"
        )
