"""The Runs tab: every past run (its own folder under the data dir), to look at again or repeat."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSplitter, QVBoxLayout, QWidget,
)

from ..core.config import TrainConfig
from ..core.events import TrainingFailed, TrainingFinished
from ..core.runs import RunFolder, list_runs
from ..worker import JobPool, Returned, Worker


def describe_run(run: RunFolder, events: list) -> str:
    """A few lines about a run, from its recorded events."""
    try:
        cfg = run.config()
    except (OSError, ValueError, KeyError, TypeError):
        return f"{run.path.name}\n(config.json unreadable)"
    data = "SMS Spam Collection" if cfg.data.source == "sms-spam" else cfg.data.source
    lines = [
        f"<b>{run.path.name}</b>",
        f"model: {cfg.model} · data: {data}",
        f"LoRA r={cfg.lora.rank}, alpha={cfg.lora.alpha:g}, layers: {', '.join(cfg.lora.targets)}",
        f"epochs {cfg.epochs} · batch {cfg.batch_size} · lr {cfg.lr:g} · seed {cfg.seed}",
    ]
    end = next((e for e in reversed(events) if isinstance(e, (TrainingFinished, TrainingFailed))), None)
    if isinstance(end, TrainingFinished):
        state = "stopped early" if end.stopped else "finished"
        accuracy = f" · test accuracy {end.metrics.accuracy:.1%}" if end.metrics else ""
        lines.append(f"{state} after {end.step} steps ({end.elapsed_s:.0f} s){accuracy}")
    elif isinstance(end, TrainingFailed):
        lines.append(f"failed: {end.message}")
    else:
        lines.append("did not finish (no end recorded)")
    lines.append(f"adapter: {'yes' if run.adapter_path.exists() else 'none'}")
    return "<br>".join(lines)


class RunsTab(QWidget):
    show_requested = Signal(object, object)  # RunFolder, its events: show curves and metrics
    rerun_requested = Signal(object)  # TrainConfig
    adapter_requested = Signal(str)  # path of the run's adapter

    def __init__(self, pool: JobPool, parent: QWidget | None = None):
        super().__init__(parent)
        self._pool = pool
        self._events: dict[str, list] = {}
        self.list = QListWidget()
        self.details = QLabel("Select a run to see what it did.")
        self.details.setWordWrap(True)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.refresh_button = QPushButton("Refresh")
        self.show_button = QPushButton("Show curves and results")
        self.rerun_button = QPushButton("Re-run with these settings")
        self.adapter_button = QPushButton("Use its adapter")

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.details, 1)
        buttons = QHBoxLayout()
        for button in (self.show_button, self.rerun_button, self.adapter_button):
            buttons.addWidget(button)
        right_layout.addLayout(buttons)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.list, 1)
        left_layout.addWidget(self.refresh_button)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([350, 500])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.list.currentItemChanged.connect(self._selected)
        self.refresh_button.clicked.connect(self.refresh)
        self.show_button.clicked.connect(self._show)
        self.rerun_button.clicked.connect(self._rerun)
        self.adapter_button.clicked.connect(self._adapter)
        self._set_buttons(None)

    def refresh(self) -> None:
        """List the run folders (a directory listing; the metrics are read on selection, off-thread)."""
        current = self.selected_run()
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
            if current is not None and run.path == current.path:
                self.list.setCurrentItem(item)
        if not runs:
            self.details.setText("No runs yet. Each training run is kept here with its settings, curves and adapter.")

    def selected_run(self) -> RunFolder | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def _set_buttons(self, run: RunFolder | None) -> None:
        self.show_button.setEnabled(run is not None)
        self.rerun_button.setEnabled(run is not None)
        self.adapter_button.setEnabled(run is not None and run.adapter_path.exists())

    def _selected(self, item: QListWidgetItem | None, _previous=None) -> None:
        run = item.data(Qt.ItemDataRole.UserRole) if item else None
        self._set_buttons(run)
        if run is None:
            return
        self.details.setText(f"<b>{run.path.name}</b><br>reading…")

        def read(_progress, _stop):
            events = run.events()
            return run, events, describe_run(run, events)

        self._pool.start(Worker.from_call(read, name="read run"), on_event=self._loaded)

    def _loaded(self, item) -> None:
        if not isinstance(item, Returned):
            return
        run, events, text = item.value
        self._events[str(run.path)] = events
        if self.selected_run() is not None and self.selected_run().path == run.path:
            self.details.setText(text)

    def _show(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.show_requested.emit(run, self._events.get(str(run.path)) or run.events())

    def _rerun(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        try:
            cfg: TrainConfig = run.config()
        except (OSError, ValueError, KeyError, TypeError):
            return
        self.rerun_requested.emit(cfg)

    def _adapter(self) -> None:
        run = self.selected_run()
        if run is not None and run.adapter_path.exists():
            self.adapter_requested.emit(str(run.adapter_path))
