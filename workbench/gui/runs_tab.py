"""The Runs tab: every past run (its own folder under the data dir), to look at again, compare,
repeat, resume or extend.

Reading a run's history is a small file read, but there may be hundreds of runs and a slow disk,
so histories are read on a worker when a run is selected (or compared) and kept until the list is
refreshed. Resume and "Train N more epochs" hand the run to the window, which trains it with
``training.train(cfg, resume=<its checkpoint>)`` in the run's own folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.config import SMS_SPAM, TrainConfig
from ..core.events import Evaluated, TrainingFailed, TrainingFinished
from ..core.runs import RunFolder, list_runs, run_outcome
from ..worker import JobPool, Returned, Worker
from .escape import as_rich_text, escaped
from .plots import LegendEntry, LegendRow

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


# How the Runs tab words each of core.runs.RUN_STATES.
STATE_LABELS = {
    "finished": "finished",
    "stopped": "stopped early",
    "failed": "failed",
    "interrupted": "interrupted",
    "running": "training now",
}


@dataclass(frozen=True)
class RunChoices:
    """A run's state (``core.runs.outcome``) and what a person may do with it next."""

    state: str  # one of core.runs.RUN_STATES
    can_resume: bool  # stopped, failed or cut off, with a checkpoint to continue from
    can_extend: bool  # finished, with a checkpoint: "Train N more epochs"
    reason: str = ""  # why Resume / Train more is not offered
    ended: TrainingFinished | TrainingFailed | None = None  # how its latest attempt ended

    @property
    def summary(self) -> str:
        return STATE_LABELS[self.state]


def run_choices(run: RunFolder, events: list) -> RunChoices:
    """Anything but a finished or running run can be resumed from its checkpoint: stopped, failed
    after it started (out of memory), or cut off (the window closed, the machine crashed)."""
    state = run_outcome(run, events)
    checkpoint = run.resume_path.is_file()
    reason = ""
    if state.state == "running":
        reason = "Another window or command is training it now."
    elif not checkpoint:
        reason = "It has no checkpoint to continue from (one is written at each epoch's end and on Stop)."
    return RunChoices(
        state.state,
        can_resume=checkpoint and state.state in ("stopped", "failed", "interrupted"),
        can_extend=checkpoint and state.state == "finished",
        reason=reason,
        ended=state.ended,
    )


def describe_run(run: RunFolder, events: list) -> str:
    """A few lines about a run, from its recorded events."""
    try:
        cfg = run.config()
    except (OSError, ValueError, KeyError, TypeError):
        return f"{escaped(run.path.name)}<br>(config.json unreadable)"
    data = "SMS Spam Collection" if cfg.data.source == SMS_SPAM else cfg.data.source
    lines = [
        f"<b>{escaped(run.path.name)}</b>",
        f"model: {escaped(cfg.model)} · data: {escaped(data)}",
        f"LoRA r={cfg.lora.rank}, alpha={cfg.lora.alpha:g}, layers: {', '.join(cfg.lora.targets)}",
        f"epochs {cfg.epochs} · batch {cfg.batch_size} · lr {cfg.lr:g} · seed {cfg.seed}",
    ]
    state = run_choices(run, events)
    end = state.ended
    if isinstance(end, TrainingFinished):
        accuracy = f" · test accuracy {end.metrics.accuracy:.1%}" if end.metrics else ""
        lines.append(f"{state.summary} after {end.step} steps ({end.elapsed_s:.0f} s){accuracy}")
    elif isinstance(end, TrainingFailed):
        lines.append(f"failed: {escaped(end.message)}")
    elif state.state == "running":
        lines.append("training now")
    else:
        lines.append("did not finish (no end recorded: the window was closed or the program stopped)")
    if state.can_resume:
        lines.append("It can be resumed from its last checkpoint.")
    elif state.reason and state.state != "finished":
        lines.append(escaped(state.reason))
    lines.append(f"adapter: {'yes' if run.adapter_path.exists() else 'none'}")
    return "<br>".join(lines)


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
    if not all(len(p) == 3 and len(p[0]) == 10 and len(p[1]) == 8 for p in parts):
        return list(names)
    same_day = len({p[0] for p in parts}) == 1
    return [
        f"{p[1].replace('-', ':')} {p[2]}" if same_day else f"{p[0][5:]} {p[1].replace('-', ':')[:5]} {p[2]}"
        for p in parts
    ]


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
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot, 1)
        plots.addWidget(self.accuracy_plot, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.legend)
        layout.addLayout(plots, 1)

    def _plot(self, title: str, y_label: str) -> pg.PlotWidget:
        plot = pg.PlotWidget()
        plot.setBackground(None)
        item = plot.getPlotItem()
        item.setTitle(title)
        item.setLabel("bottom", "examples seen")
        item.setLabel("left", y_label)
        item.showGrid(x=True, y=True, alpha=0.2)
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
        self.caption.setText(f"Validation curves of {shown} runs{note}")
        legend = "\n".join(f"{label}: {name}" for (name, _events), label in zip(runs, labels))
        self.caption.setToolTip(as_rich_text(legend))

    def curves(self, which: str = "loss") -> dict[str, tuple[str, int]]:
        """Legend name → (colour, points) of each curve shown (what a test can check)."""
        plot = self.loss_plot if which == "loss" else self.accuracy_plot
        out = {}
        for item in plot.getPlotItem().listDataItems():
            x, _y = item.getData()
            out[item.name()] = (item.opts["pen"].color().name(), 0 if x is None else len(x))
        return out


class RunsTab(QWidget):
    show_requested = Signal(object, object)  # RunFolder, its events: show curves and metrics
    rerun_requested = Signal(object)  # TrainConfig
    adapter_requested = Signal(str)  # path of the run's adapter
    resume_requested = Signal(object, object, int)  # RunFolder, its events, extra epochs (0: resume)

    def __init__(self, pool: JobPool, parent: QWidget | None = None):
        super().__init__(parent)
        self._pool = pool
        self._events: dict[str, list] = {}
        self._training = False
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.details = QLabel("Select a run to see what it did.")
        self.details.setWordWrap(True)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.refresh_button = QPushButton("Refresh")
        self.show_button = QPushButton("Show curves and results")
        self.rerun_button = QPushButton("Re-run with these settings")
        self.adapter_button = QPushButton("Use its adapter")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(
            "Continue a stopped or interrupted run from its last checkpoint, in its own folder"
        )
        self.extend_button = QPushButton("Train more epochs:")
        self.more_epochs = QSpinBox()
        self.more_epochs.setRange(1, 1000)
        self.more_epochs.setValue(1)
        self.more_epochs.setSuffix(" more")
        self.compare_button = QPushButton("Compare selected")
        self.compare_button.setToolTip(
            "Overlay the validation curves of the selected runs (Ctrl- or Shift-click to select several)"
        )
        self.comparison = RunComparisonWidget()

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.details)
        # Two buttons a row, so the tab fits beside the settings on a 1000-pixel-wide screen.
        buttons = QGridLayout()
        buttons.addWidget(self.show_button, 0, 0)
        buttons.addWidget(self.rerun_button, 0, 1)
        buttons.addWidget(self.adapter_button, 1, 0)
        buttons.addWidget(self.compare_button, 1, 1)
        buttons.addWidget(self.resume_button, 2, 0)
        extend = QHBoxLayout()
        extend.addWidget(self.extend_button)
        extend.addWidget(self.more_epochs)
        buttons.addLayout(extend, 2, 1)
        right_layout.addLayout(buttons)
        right_layout.addWidget(self.comparison, 1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.list, 1)
        left_layout.addWidget(self.refresh_button)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([330, 600])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.list.currentItemChanged.connect(self._selected)
        self.list.itemSelectionChanged.connect(self._selection_changed)
        self.refresh_button.clicked.connect(self.refresh)
        self.show_button.clicked.connect(self._show)
        self.rerun_button.clicked.connect(self._rerun)
        self.adapter_button.clicked.connect(self._adapter)
        self.resume_button.clicked.connect(self._resume)
        self.extend_button.clicked.connect(self._extend)
        self.compare_button.clicked.connect(self.compare)
        self._set_buttons(None)

    def refresh(self) -> None:
        """List the run folders (a directory listing; the metrics are read on selection, off-thread)."""
        current = self.selected_run()
        self._events.clear()  # a run may have grown since (resumed, extended)
        self.list.blockSignals(True)
        self.list.clear()
        try:
            runs = list_runs()
        except OSError:
            runs = []
        for run in runs:
            item = QListWidgetItem(run.path.name)
            item.setData(Qt.ItemDataRole.UserRole, run)
            item.setToolTip(str(run.path))
            self.list.addItem(item)
        self.list.blockSignals(False)
        if not runs:
            self.details.setText("No runs yet. Each training run is kept here with its settings, curves and adapter.")
        for row in range(self.list.count()):
            if current is not None and self.list.item(row).data(Qt.ItemDataRole.UserRole).path == current.path:
                self.list.setCurrentRow(row)  # reads its history again
                break
        else:
            self._set_buttons(None)
        self._selection_changed()

    def set_training(self, training: bool) -> None:
        """While a run trains, nothing here may start another one (or touch its settings)."""
        self._training = training
        self._set_buttons(self.selected_run())

    def selected_run(self) -> RunFolder | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def selected_runs(self) -> list[RunFolder]:
        """Every selected run, in list order (newest first)."""
        rows = sorted(self.list.row(item) for item in self.list.selectedItems())
        return [self.list.item(row).data(Qt.ItemDataRole.UserRole) for row in rows]

    def state(self, run: RunFolder) -> RunChoices | None:
        """The run's state, once its history has been read (None before)."""
        events = self._events.get(str(run.path))
        return None if events is None else run_choices(run, events)

    def _set_buttons(self, run: RunFolder | None) -> None:
        idle = not self._training
        self.show_button.setEnabled(run is not None)
        self.rerun_button.setEnabled(run is not None and idle)
        self.adapter_button.setEnabled(run is not None and run.adapter_path.exists())
        state = self.state(run) if run is not None else None
        self.resume_button.setEnabled(idle and state is not None and state.can_resume)
        self.extend_button.setEnabled(idle and state is not None and state.can_extend)
        self.more_epochs.setEnabled(self.extend_button.isEnabled())
        if self._training:
            tip = "A run is training; wait for it to end."
        elif state is None:
            tip = "Select a run."
        elif state.reason:
            tip = state.reason
        else:
            tip = ""
        self.resume_button.setToolTip(
            tip
            or (
                "Continue this run from its last checkpoint, in its own folder"
                if state and state.can_resume
                else "Only a stopped or interrupted run can be resumed; use Train more epochs for a finished one"
            )
        )
        self.extend_button.setToolTip(
            tip
            or (
                "Continue this finished run for more epochs, from its final checkpoint"
                if state and state.can_extend
                else "Only a finished run can be extended; Resume a stopped one"
            )
        )

    def _selection_changed(self) -> None:
        n = len(self.list.selectedItems())
        self.compare_button.setEnabled(n >= 2)
        self.compare_button.setText(f"Compare selected ({n})" if n >= 2 else "Compare selected")

    def _selected(self, item: QListWidgetItem | None, _previous=None) -> None:
        run = item.data(Qt.ItemDataRole.UserRole) if item else None
        self._set_buttons(run)
        if run is None:
            return
        self.details.setText(f"<b>{escaped(run.path.name)}</b><br>reading…")

        def read(_progress, _stop):
            events = run.events()
            return run, events, describe_run(run, events)

        self._pool.start(Worker.from_call(read, name="read run"), on_event=self._loaded)

    def _loaded(self, item) -> None:
        if not isinstance(item, Returned):
            return
        run, events, text = item.value
        self._events[str(run.path)] = events
        current = self.selected_run()
        if current is not None and current.path == run.path:
            self.details.setText(text)
            self._set_buttons(run)

    def _events_of(self, run: RunFolder) -> list:
        return self._events.get(str(run.path)) or run.events()

    def _show(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.show_requested.emit(run, self._events_of(run))

    def _rerun(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        try:
            cfg: TrainConfig = run.config()
        except (OSError, ValueError, KeyError, TypeError):
            self.details.setText(
                f"<b>{escaped(run.path.name)}</b><br>Its config.json cannot be read, so it cannot be repeated."
            )
            return
        self.rerun_requested.emit(cfg)

    def _adapter(self) -> None:
        run = self.selected_run()
        if run is not None and run.adapter_path.exists():
            self.adapter_requested.emit(str(run.adapter_path))

    def _resume(self) -> None:
        run = self.selected_run()
        if run is not None and self.resume_button.isEnabled():
            self.resume_requested.emit(run, self._events_of(run), 0)

    def _extend(self) -> None:
        run = self.selected_run()
        if run is not None and self.extend_button.isEnabled():
            self.resume_requested.emit(run, self._events_of(run), self.more_epochs.value())

    def compare(self) -> None:
        """Overlay the selected runs' validation curves (their histories are read on a worker)."""
        runs = self.selected_runs()
        if len(runs) < 2:
            return
        self.comparison.caption.setText(f"Reading {len(runs)} runs…")
        known = dict(self._events)

        def read(_progress, _stop):
            return [(run, known.get(str(run.path)) or run.events()) for run in runs]

        self._pool.start(Worker.from_call(read, name="read runs"), on_event=self._compare_loaded)

    def _compare_loaded(self, item) -> None:
        if not isinstance(item, Returned):
            return
        for run, events in item.value:
            self._events[str(run.path)] = events
        self.comparison.show_runs([(run.path.name, events) for run, events in item.value])
