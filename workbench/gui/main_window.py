"""The main window: settings on the left in the order of the decisions, what the run shows on the
right, and a status bar that always answers "what will this run use?".

All slow work (reading a dataset, downloading, training, loading a model, classifying) goes to a
``Worker`` through one ``JobPool``; this module only reacts to the events that come back.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, Slot, qVersion
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..core import data as datamod
from ..core import hub, training
from ..core.adapters import PICKLE_SUFFIXES, AdapterInfo, copy_adapter, label_mapping, read_adapter
from ..core.classify import Classifier
from ..core.config import MODEL_LABELS, TrainConfig
from ..core.device import pick_device, pick_precision
from ..core.errors import AdapterError, Cancelled, ConfigError, WorkbenchError
from ..core.events import (
    EpochEnded,
    Evaluated,
    RunStarted,
    Status,
    StepDone,
    TrainingFailed,
    TrainingFinished,
)
from ..core.lora import count_trainable
from ..core.paths import data_dir
from ..core.runs import RunFolder
from ..resources import resource_path
from ..worker import Job, JobPool, Returned, Worker
from .classify_tab import ClassifyTab
from .data_tab import DataTab
from .estimates import WARN_FRACTION, device_memory, estimate_training_memory, is_tight, padded_length
from .panels import SettingsColumn, human_bytes, mark_invalid
from .results_tab import ResultsTab
from .runs_tab import RunsTab
from .training_tab import TrainingTab

CLOSE_WAIT_MS = 5000  # how long closing waits for a stopped run before hiding and finishing later
WARNING_STYLE = "color: #d9534f; font-weight: bold;"
DATASET_SUFFIXES = {".csv", ".tsv", ".tab", ".txt"}
ADAPTER_SUFFIX = ".safetensors"
PEFT_AVAILABLE = importlib.util.find_spec("workbench.core.peft_io") is not None


def error_text(error: Any) -> str:
    """A WorkbenchError is written for a person; anything else is a bug, shown with its type."""
    if isinstance(error, WorkbenchError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def describe_adapter(path: str, info: AdapterInfo) -> str:
    metrics = ""
    if "test_accuracy" in info.metrics:
        metrics = f" · test accuracy {float(info.metrics['test_accuracy']):.1%}"
    created = info.created.replace("T", " ")[:16]
    return (
        f"<b>{Path(path).name}</b> · base {info.describe_base()} · LoRA r={info.lora.rank}, "
        f"alpha={info.lora.alpha:g} · labels: {', '.join(info.label_names)}{metrics} · created {created}"
    )


LARGE_FILE_BYTES = 200 * 2**20  # above this, opening a dataset offers a sample first
SAMPLE_ROWS = 100_000


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings or QSettings(str(data_dir() / "settings.ini"), QSettings.Format.IniFormat)
        self.pool = JobPool(self)
        self._train_job: Job | None = None
        self._read_job: Job | None = None
        self._download_job: Job | None = None
        self._read_token = 0
        self._table: datamod.Table | None = None
        self._counts: dict[str, int] = {}
        self._run_cfg: TrainConfig | None = None
        self._run_resume: str | None = None  # the checkpoint the current run continues from
        self._run_history: list = []  # the recorded events of a resumed run, replayed first
        self._pending_start: tuple[TrainConfig, str | None, list] | None = None  # retry after OOM
        self._read_error: tuple[str, str] | None = None  # (source, why it could not be read)
        self._longest_text: int | None = None  # characters of the longest text (memory estimate)
        self.memory_estimate = None  # the last estimate shown next to Start
        self.adapter_path: str | None = None  # the adapter Save copies and Classify uses
        self.adapter_info: AdapterInfo | None = None
        self._last_status = ""
        self._closing = False

        self.setWindowTitle("LoRA Workbench")
        self.setWindowIcon(QIcon(str(resource_path("icon.svg"))))
        self.setAcceptDrops(True)
        self._build_ui()
        self._build_menus()
        self._build_status_bar()
        self._connect()
        self._restore_settings()
        self._refresh()
        self.runs_tab.refresh()

    # --- layout ----------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.column = SettingsColumn()
        self.data_panel = self.column.data
        self.model_panel = self.column.model
        self.lora_panel = self.column.lora
        self.training_panel = self.column.training
        self.start_button = self.column.start_button
        self.stop_button = self.column.stop_button
        scroll = QScrollArea()
        scroll.setWidget(self.column)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.column.sizeHint().width() + 24)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(0)
        left_layout.addWidget(scroll, 1)
        left_layout.addWidget(self.column.footer)

        self.data_tab = DataTab()
        self.training_tab = TrainingTab()
        self.results_tab = ResultsTab()
        self.classify_tab = ClassifyTab(self.pool)
        self.runs_tab = RunsTab(self.pool)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.data_tab, "Data")
        self.tabs.addTab(self.training_tab, "Training")
        self.tabs.addTab(self.results_tab, "Results")
        self.tabs.addTab(self.classify_tab, "Classify")
        self.tabs.addTab(self.runs_tab, "Runs")

        self.splitter = QSplitter()
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)

        # Fits a 1366×768 laptop (taskbar and title bar included) and leaves room on bigger screens.
        size = QSize(1300, 720)
        screen = self.screen()
        if screen is not None:
            available = screen.availableGeometry().size()
            if available.width() >= 1024:
                size = size.boundedTo(available - QSize(16, 40))
        self.resize(size)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.setToolTipsVisible(True)
        self.open_dataset_action = self._action(
            file_menu, "Open &dataset…", self._choose_dataset, QKeySequence.StandardKey.Open
        )
        file_menu.addSeparator()
        self.open_adapter_action = self._action(file_menu, "Open &adapter…", self._choose_adapter, "Ctrl+Shift+O")
        self.save_adapter_action = self._action(
            file_menu, "&Save adapter…", self._choose_save_adapter, QKeySequence.StandardKey.Save
        )
        self.export_peft_action = self._action(file_menu, "Export for &PEFT…", self._choose_export_peft)
        if not PEFT_AVAILABLE:
            self.export_peft_action.setToolTip(
                "PEFT export is not part of this build (workbench.core.peft_io is missing)"
            )
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        run_menu = bar.addMenu("&Run")
        run_menu.setToolTipsVisible(True)
        self.start_action = self._action(run_menu, "&Start training", self.start_training, "Ctrl+Return")
        self.stop_action = self._action(run_menu, "S&top", self.stop_training, "Ctrl+.")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About LoRA Workbench", self._about)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_status = QLabel()
        self.device_status = QLabel()
        self.memory_status = QLabel()
        self.adapter_status = QLabel("adapter: none loaded")
        for label in (self.model_status, self.device_status, self.memory_status, self.adapter_status):
            bar.addPermanentWidget(label)

    def _connect(self) -> None:
        for panel in (self.data_panel, self.model_panel, self.lora_panel, self.training_panel):
            panel.changed.connect(self._refresh)
        self.data_panel.open_file_requested.connect(self._choose_dataset)
        self.data_panel.download_requested.connect(self.download_sms)
        self.data_panel.columns_changed.connect(self._update_counts)
        self.data_panel.sms_radio.toggled.connect(self._source_toggled)
        self.data_panel.balance.toggled.connect(self._update_counts)
        self.model_panel.local_folder_requested.connect(self._choose_model_folder)
        self.model_panel.download_requested.connect(self.download_model)
        self.model_panel.cancel_download_requested.connect(self._cancel_download)
        self.start_button.clicked.connect(self.start_training)
        self.stop_button.clicked.connect(self.stop_training)
        self.runs_tab.show_requested.connect(self.show_run)
        self.runs_tab.rerun_requested.connect(self.apply_config)
        self.runs_tab.adapter_requested.connect(self.open_adapter)
        self.runs_tab.resume_requested.connect(self.resume_run)

    # --- the settings as a TrainConfig -----------------------------------------------------------

    def build_config(self) -> tuple[TrainConfig, list[str]]:
        """The run the fields describe, and every problem with it (empty: ready to start)."""
        values = self.training_panel.values()
        problems: list[str] = []
        if values["lr"] is None:
            problems.append("learning rate is not a number (write e.g. 5e-5)")
            values["lr"] = TrainConfig().lr
        cfg = TrainConfig(
            model=self.model_panel.model(),
            data=self.data_panel.data_config(seed=values["seed"]),
            lora=self.lora_panel.lora_config(),
            device=self.model_panel.device(),
            **values,
        )
        problems += cfg.validate()
        model_config = self.model_panel.model_config()
        if model_config is not None:
            problems += [p for p in cfg.lora.validate(model_config.n_layer) if p not in problems]
        elif cfg.model:
            problems.append("model folder has no readable config.json")
        source = self.data_panel.source()
        if self._read_error is not None and self._read_error[0] == source and Path(source).is_file():
            problems.append(f"dataset could not be read: {self._read_error[1]}")
        if cfg.model in MODEL_LABELS and not hub.is_cached(cfg.model) and hub.offline_mode(None):
            # Start would fail at once; say so now (the core reads HF_HUB_OFFLINE the same way).
            problems.append(
                f"model {cfg.model} is not downloaded and offline mode is on (HF_HUB_OFFLINE): run "
                f"`workbench download {cfg.model}` while online, or choose a local folder"
            )
        if self._table is not None and self._table_matches_source():
            text, label = self.data_panel.effective_columns((self._table.text_column, self._table.label_column))
            if text and text == label:
                problems.append("text and label column must differ")
            elif self._counts and len(self._counts) < 2:
                problems.append("the label column has only one class; a classifier needs at least two")
        return cfg, problems

    def _field_for(self, problem: str) -> QWidget | None:
        p = problem.lower()
        d, m, lo, t = self.data_panel, self.model_panel, self.lora_panel, self.training_panel
        table = [
            ("top blocks", lo.top_blocks),
            ("rank", lo.rank),
            ("alpha", lo.alpha),
            ("dropout", lo.dropout),
            ("target", lo.targets_box),
            ("dataset", d.open_button),
            ("train fraction", d.train_pct),
            ("validation fraction", d.val_pct),
            ("train + validation", d.val_pct),
            ("max length", d.max_length),
            ("label column", d.label_column),
            ("text and label", d.label_column),
            ("max steps", t.max_steps),
            ("epochs", t.epochs),
            ("batch size", t.batch_size),
            ("grad accum", t.grad_accum),
            ("eval every", t.eval_every),
            ("eval batches", t.eval_batches),
            ("learning rate", t.lr),
            ("weight decay", t.weight_decay),
            ("device", m.device_combo),
            ("model", m.model_combo),
        ]
        return next((widget for key, widget in table if key in p), None)

    @Slot()
    def _refresh(self) -> None:
        """Re-validate, mark bad fields, recount trainable parameters, update the status bar."""
        cfg, problems = self.build_config()
        marked: dict[QWidget, list[str]] = {}
        for problem in problems:
            widget = self._field_for(problem)
            if widget is not None:
                marked.setdefault(widget, []).append(problem)
        for widget in self._all_fields():
            mark_invalid(widget, marked.get(widget, []), widget.property("default_tip") or "")
        self.column.problems.setVisible(bool(problems))
        self.column.problems.setText("<br>".join(f"⚠ {p}" for p in problems))
        self._problems = problems
        self._update_run_buttons()

        model_config = self.model_panel.model_config()
        trainable = None
        if model_config is not None and not cfg.lora.validate(model_config.n_layer):
            trainable = count_trainable(model_config, cfg.lora, max(2, len(self._counts)))
        self.lora_panel.set_summary(trainable)
        name = cfg.model if cfg.model in MODEL_LABELS else (Path(cfg.model).name if cfg.model else "no model")
        size = f" {MODEL_LABELS[cfg.model]}" if cfg.model in MODEL_LABELS else ""
        self.model_status.setText(f"model: {name}{size}")
        self.device_status.setText(f"device: {self.model_panel.device_text()}")
        self._show_memory_estimate(cfg, model_config)

    def _show_memory_estimate(self, cfg: TrainConfig, model_config) -> None:
        """Next to Start and in the status bar: what the run needs against what the device has."""
        label, status = self.column.memory, self.memory_status
        if model_config is None or cfg.lora.validate(model_config.n_layer):
            label.setText("")
            status.setText("")
            return
        try:
            precision = pick_precision(cfg.precision, pick_device(cfg.device))
        except ConfigError:
            precision = "fp32"
        seq_len = padded_length(cfg.data.max_length, model_config.n_positions, self._longest_text)
        estimate = estimate_training_memory(
            model_config, cfg.lora, max(2, len(self._counts)), cfg.batch_size, seq_len, precision
        )
        device = device_memory(cfg.device)
        need = human_bytes(estimate.total)
        if device.available:
            share = estimate.total / device.available
            percent = "<1%" if share < 0.01 else f"{share:.0%}"
            text = f"est. {need} of {human_bytes(device.available)} {device.what} ({percent})"
        else:
            text = f"est. {need} needed"
        tight = is_tight(estimate.total, device.available)
        if tight:
            text = f"⚠ {text}: lower the batch size or max length"
        tip = (
            f"Estimated peak memory for training, batch {estimate.batch_size} × {estimate.seq_len} tokens "
            f"({'longest text of the dataset' if self._longest_text else 'max length'}), {precision}:\n"
            f"  weights {human_bytes(estimate.weights)}\n"
            + (f"  bf16 weight copies {human_bytes(estimate.weight_copies)}\n" if estimate.weight_copies else "")
            + f"  activations ({estimate.blocks_with_backward} blocks with backward) "
            f"{human_bytes(estimate.activations)}\n"
            f"  gradients {human_bytes(estimate.gradients)}\n"
            f"  AdamW state {human_bytes(estimate.optimizer)}\n"
            f"A rough guide (Korthikanti et al. 2022 for activations); shown in red above "
            f"{WARN_FRACTION:.0%} of the device's memory."
        )
        for widget in (label, status):
            widget.setText(text)
            widget.setToolTip(tip)
            widget.setStyleSheet(WARNING_STYLE if tight else "")
        self.memory_estimate = estimate

    def _all_fields(self) -> list[QWidget]:
        d, m, lo, t = self.data_panel, self.model_panel, self.lora_panel, self.training_panel
        return [
            lo.top_blocks,
            lo.rank,
            lo.alpha,
            lo.dropout,
            lo.targets_box,
            d.open_button,
            d.train_pct,
            d.val_pct,
            d.max_length,
            d.label_column,
            t.max_steps,
            t.epochs,
            t.batch_size,
            t.grad_accum,
            t.eval_every,
            t.eval_batches,
            t.lr,
            t.weight_decay,
            m.device_combo,
            m.model_combo,
        ]

    def problems(self) -> list[str]:
        return list(self._problems)

    def _update_run_buttons(self) -> None:
        running = self._train_job is not None
        can_start = not running and not self._problems
        self.start_button.setEnabled(can_start)
        self.start_action.setEnabled(can_start)
        self.stop_button.setEnabled(running)
        self.stop_action.setEnabled(running)
        if running:
            self.start_button.setToolTip("A run is in progress")
        elif self._problems:
            self.start_button.setToolTip("Fix these first:\n" + "\n".join(f"• {p}" for p in self._problems))
        else:
            self.start_button.setToolTip("Train with these settings (Ctrl+Enter)")
        for panel in (self.data_panel, self.model_panel, self.lora_panel, self.training_panel):
            panel.setEnabled(not running)
        self.runs_tab.set_training(running)
        self.save_adapter_action.setEnabled(self.adapter_path is not None)
        self.export_peft_action.setEnabled(PEFT_AVAILABLE and self.adapter_path is not None)

    def apply_config(self, cfg: TrainConfig) -> None:
        """Put a run's settings into the fields (Runs → Re-run, or remembered settings)."""
        if cfg.model:
            if cfg.model in MODEL_LABELS or Path(cfg.model).is_dir():
                self.model_panel.set_model(cfg.model)
        self.model_panel.set_device(cfg.device)
        self.lora_panel.apply(cfg.lora)
        self.training_panel.apply(cfg)
        source_changed = cfg.data.source != self.data_panel.source()
        if cfg.data.source != datamod.SMS_SPAM and not Path(cfg.data.source).is_file():
            cfg = cfg.with_changes(data=TrainConfig().data)  # the file has gone; fall back to SMS
            source_changed = True
        self.data_panel.apply(cfg.data)
        if source_changed or self._table is None:
            self._load_current_source()
        self._refresh()

    # --- the dataset -----------------------------------------------------------------------------

    def _choose_dataset(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a dataset",
            str(Path(self.data_panel.source()).parent) if self.data_panel.file_radio.isChecked() else "",
            "Tables (*.csv *.tsv *.tab *.txt);;All files (*)",
        )
        if path:
            self.open_dataset(path)

    def open_dataset(self, path: str) -> None:
        """Use a CSV/TSV file as the dataset and read it (on a worker) for the preview and counts.

        A very large file gets an offer first: its first SAMPLE_ROWS rows, read in a moment, or
        all of it (about 20 s a gigabyte, with progress, and training on it takes far longer).
        """
        self.data_panel.set_file(str(path), max_rows=self._ask_for_sample(Path(path)))
        self._load_current_source()

    def _ask_for_sample(self, path: Path) -> int | None:
        try:
            size = path.stat().st_size
        except OSError:
            return None  # reading it reports the problem
        if size < LARGE_FILE_BYTES:
            return None
        answer = QMessageBox.question(
            self,
            "Large dataset",
            f"{path.name} is {human_bytes(size)}. Use a sample of its first {SAMPLE_ROWS:,} rows? "
            "(No reads the whole file, with progress; it can be stopped.)",
        )
        return SAMPLE_ROWS if answer == QMessageBox.StandardButton.Yes else None

    def use_sms_spam(self) -> None:
        self.data_panel.sms_radio.setChecked(True)

    def _source_toggled(self, _checked: bool) -> None:
        self._load_current_source()

    def _sms_file(self) -> Path:
        return datamod.sms_spam_path()

    def _table_matches_source(self) -> bool:
        return self._table is not None and self._table.source == (self.data_panel.source())

    def _load_current_source(self) -> None:
        self._table = None
        self._counts = {}
        self._read_error = None
        self._longest_text = None
        self.data_panel.set_counts(None)
        source = self.data_panel.source()
        if source == datamod.SMS_SPAM:
            downloaded = self._sms_file().is_file()
            self.data_panel.set_sms_status(downloaded)
            if downloaded:
                path = self._sms_file()
                self._read(lambda progress, stop: datamod.read_sms_spam(path), "Reading the SMS Spam Collection…")
            else:
                self.data_tab.set_caption(
                    "The SMS Spam Collection is not downloaded yet: press Download (or Start, which fetches it)."
                )
        elif source:
            rows = self.data_panel.max_rows
            self._read(
                lambda progress, stop: datamod.read_table(source, max_rows=rows, progress=progress, stop=stop),
                f"Reading {Path(source).name}" + (f" (first {rows:,} rows)…" if rows else "…"),
            )
        self._refresh()

    def download_sms(self) -> None:
        self.data_panel.set_sms_status(False, busy="downloading…")

        def fetch(progress, stop):
            return datamod.read_sms_spam(datamod.download_sms_spam(progress=progress, stop=stop))

        self._read(fetch, "Downloading the SMS Spam Collection…")

    def _read(self, work, caption: str) -> None:
        if self._read_job is not None:
            self._read_job.stop()  # its result is ignored: the token below moves on
        self._read_token += 1
        token = self._read_token
        self.data_tab.set_caption(caption)
        self._read_job = self.pool.start(
            Worker.from_call(work, name="read dataset"),
            on_event=lambda item: self._read_event(token, item),
            on_failed=lambda error: self._read_failed(token, error),
            on_finished=lambda: self._read_finished(token),
        )

    def _read_event(self, token: int, item) -> None:
        if token != self._read_token:
            return
        if isinstance(item, Status):
            total = f" / {human_bytes(item.total)}" if item.total else ""
            self.data_tab.set_caption(f"{item.message} {human_bytes(item.done)}{total}" if item.done else item.message)
            if self.data_panel.source() == datamod.SMS_SPAM and item.done:
                self.data_panel.set_sms_status(False, busy=f"downloading… {human_bytes(item.done)}")
        elif isinstance(item, Returned):
            table: datamod.Table = item.value
            if table.source != self.data_panel.source() and not (
                table.source == datamod.SMS_SPAM and self.data_panel.sms_radio.isChecked()
            ):
                return
            self._table = table
            columns = [str(c) for c in table.frame.columns]
            self.data_panel.set_columns(columns, table.text_column, table.label_column)
            if table.source == datamod.SMS_SPAM:
                self.data_panel.set_sms_status(True)
            name = "SMS Spam Collection" if table.source == datamod.SMS_SPAM else Path(table.source).name
            more = " (first rows only)" if table.truncated_rows else ""
            self.data_tab.show_frame(
                table.frame,
                f"<b>{name}</b> · {len(table.frame):,} rows{more} · encoding {table.encoding} · "
                f"detected text column '{table.text_column}', label column '{table.label_column}' "
                "(change them on the left)",
            )
            self._update_counts()

    def _read_failed(self, token: int, error) -> None:
        if token != self._read_token or isinstance(error, Cancelled):
            return
        source = self.data_panel.source()
        if source == datamod.SMS_SPAM:
            self.data_panel.set_sms_status(self._sms_file().is_file())
        else:
            self._read_error = (source, error_text(error))  # Start stays off until another file is chosen
        self.data_tab.set_caption(f"Could not read the dataset: {error_text(error)}")
        self.data_panel.set_counts(None, "could not read this file")
        self._refresh()
        QMessageBox.warning(self, "Could not read the dataset", error_text(error))

    def _read_finished(self, token: int) -> None:
        if token == self._read_token:
            self._read_job = None

    @Slot()
    def _update_counts(self) -> None:
        table = self._table
        if table is None:
            return
        text, label = self.data_panel.effective_columns((table.text_column, table.label_column))
        counts: dict[str, int] = {}
        if label is not None and label in table.frame.columns:
            values = table.frame[label].astype(str).str.strip()
            counts = {str(k): int(v) for k, v in sorted(values[values != ""].value_counts().items())}
        self._counts = counts
        self._longest_text = None
        if text is not None and text in table.frame.columns and len(table.frame) and not table.truncated_rows:
            self._longest_text = int(table.frame[text].astype(str).str.len().max())
        self.data_panel.set_counts(counts)
        self._refresh()

    # --- the model -------------------------------------------------------------------------------

    def _choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with config.json and model.safetensors")
        if folder:
            self.set_model_folder(folder)

    def set_model_folder(self, folder: str) -> None:
        self.model_panel.set_model(str(folder))
        self._refresh()

    def download_model(self) -> None:
        model = self.model_panel.model()
        if not model or self._download_job is not None:
            return
        self.model_panel.set_downloading(True)
        self._download_job = self.pool.start(
            Worker.from_call(
                lambda progress, stop: hub.resolve_checkpoint(model, progress=progress, stop=stop),
                name="download model",
            ),
            on_event=self._download_event,
            on_failed=self._download_failed,
            on_finished=self._download_finished,
        )

    def _cancel_download(self) -> None:
        if self._download_job is not None:
            self._download_job.stop()

    def _download_event(self, item) -> None:
        if isinstance(item, Status):
            self.model_panel.set_download_progress(item.done or 0, item.total, item.message)
        elif isinstance(item, Returned):
            self.statusBar().showMessage(f"Model ready in {item.value}", 8000)

    def _download_failed(self, error) -> None:
        if not isinstance(error, Cancelled):
            QMessageBox.warning(self, "Download failed", error_text(error))

    def _download_finished(self) -> None:
        self._download_job = None
        self.model_panel.set_downloading(False)
        self._refresh()

    # --- training --------------------------------------------------------------------------------

    def is_training(self) -> bool:
        return self._train_job is not None

    def start_training(self) -> None:
        """Start a new run with the settings on the left."""
        if self._train_job is not None:
            return
        cfg, problems = self.build_config()
        if problems:
            self._refresh()
            return
        self._save_settings()
        self._start_run(cfg)

    def resume_run(self, run: RunFolder, events: list, extra_epochs: int = 0) -> None:
        """Continue a stopped or interrupted run from its checkpoint (``extra_epochs`` 0), or train
        a finished one for ``extra_epochs`` more epochs, in its own folder, curves continuing."""
        if self._train_job is not None:
            return
        try:
            cfg = run.config()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            QMessageBox.warning(self, "Cannot resume", f"The settings of {run.path.name} cannot be read ({exc}).")
            return
        if not run.checkpoint_path.is_file():
            QMessageBox.warning(
                self,
                "Cannot resume",
                f"{run.path.name} has no checkpoint to continue from: it stopped before its first epoch ended.",
            )
            return
        if extra_epochs:
            # max_steps off: "N more epochs" means whole epochs, whatever limit the first run had.
            cfg = cfg.with_changes(epochs=cfg.epochs + extra_epochs, max_steps=None)
        self._start_run(cfg, resume=str(run.checkpoint_path), history=events, log_path=run.log_path)

    def _start_run(
        self, cfg: TrainConfig, *, resume: str | None = None, history: list = (), log_path: Path | None = None
    ) -> None:
        self._run_cfg, self._run_resume, self._run_history = cfg, resume, list(history)
        self.training_tab.reset()
        self.results_tab.clear("Training… the test results appear here when the run finishes.")
        self._last_status = ""
        if history:
            self.training_tab.replay(history)
            if log_path is not None and log_path.is_file():
                self.training_tab.set_log(log_path.read_text(encoding="utf-8", errors="replace")[-20000:])
            what = f"{Path(resume).parent.name}, to {cfg.epochs} epochs" if resume else "the run"
            self.training_tab.add_log(f"— Resuming {what}")
        else:
            data = Path(cfg.data.source).name if cfg.data.source != datamod.SMS_SPAM else "SMS Spam Collection"
            self.training_tab.add_log(f"— Starting: {cfg.model or '?'} on {data}")
        self.tabs.setCurrentWidget(self.training_tab)
        worker = Worker.from_iterator(
            lambda stop: training.train(cfg, stop=stop, resume=resume),
            name="training",
            coalesce=(StepDone, Evaluated, Status),
        )
        self._train_job = self.pool.start(
            worker, on_event=self._train_event, on_failed=self._train_crashed, on_finished=self._train_finished
        )
        self._update_run_buttons()

    def stop_training(self) -> None:
        if self._train_job is not None:
            self._train_job.stop()
            self.training_tab.add_log("Stopping after the current step…")
            self.stop_button.setEnabled(False)

    def _train_event(self, event) -> None:
        tab = self.training_tab
        if isinstance(event, StepDone):
            tab.step(event)
        elif isinstance(event, Evaluated):
            tab.evaluated(event)
            if event.full:
                tab.add_log(
                    f"Epoch {event.epoch} validation: loss {event.val_loss:.3f}, accuracy {event.val_accuracy:.1%}"
                )
            else:
                tab.add_log(
                    f"Ep {event.epoch} step {event.step}: "
                    f"train loss {event.train_loss:.3f}, val loss {event.val_loss:.3f} · "
                    f"train acc {event.train_accuracy:.1%}, val acc {event.val_accuracy:.1%}"
                )
        elif isinstance(event, Status):
            tab.set_status(event.message, event.done, event.total)
            if event.message != self._last_status:
                self._last_status = event.message
                tab.add_log(event.message)
        elif isinstance(event, RunStarted):
            tab.run_started(event)
            tab.add_log(f"Run folder: {event.run_dir}")
            self.device_status.setText(f"device: {event.device} ({event.precision})")
        elif isinstance(event, EpochEnded):
            tab.add_log(f"Epoch {event.epoch} done ({event.examples_seen:,} examples seen)")
        elif isinstance(event, TrainingFinished):
            self._training_finished(event)
        elif isinstance(event, TrainingFailed):
            self._training_failed(event)

    def _training_finished(self, event: TrainingFinished) -> None:
        state = "Stopped" if event.stopped else "Finished"
        self.training_tab.finish(
            f"{state} after {event.step} steps · {event.examples_seen:,} examples · {event.elapsed_s:.0f} s"
        )
        self.training_tab.add_log(f"{state}. Adapter: {event.adapter_path}")
        if event.stopped:
            self.training_tab.add_log("Runs → Resume continues it from here.")
        if event.metrics is not None:
            self.results_tab.show_metrics(event.metrics, f"run {Path(event.run_dir).name}")
            self.training_tab.add_log(f"Test accuracy {event.metrics.accuracy:.1%}")
            self.tabs.setCurrentWidget(self.results_tab)
        else:
            self.results_tab.clear("The run was stopped early, so it has no test results. Its adapter is kept.")
        if Path(event.adapter_path).is_file() and not self._closing:
            model = self._run_cfg.model if self._run_cfg else None
            device = self._run_cfg.device if self._run_cfg else "auto"
            self.load_adapter_for_classify(event.adapter_path, model=model, device=device)
        if not self._closing:
            self.runs_tab.refresh()

    def _training_failed(self, event: TrainingFailed) -> None:
        self.training_tab.finish("Failed")
        self.training_tab.add_log(f"Failed: {event.message}")
        if event.kind == "cancelled" or self._closing:
            return
        self.runs_tab.refresh()
        if event.kind == "oom" and event.retry_batch_size and self._run_cfg is not None:
            cfg = self._run_cfg
            n, accum = event.retry_batch_size, cfg.grad_accum * 2
            answer = QMessageBox.question(
                self,
                "Out of memory",
                f"{event.message}\n\nRetry with batch size {n} and gradient accumulation ×2 ({accum})? "
                "The effective batch stays the same.",
            )
            if answer == QMessageBox.StandardButton.Yes:
                retry = cfg.with_changes(batch_size=n, grad_accum=accum)
                if self._run_resume is None:  # a new run: the fields show what will run
                    self.training_panel.batch_size.setValue(n)
                    self.training_panel.grad_accum.setValue(accum)
                self._pending_start = (retry, self._run_resume, self._run_history)
            return
        QMessageBox.warning(self, "Training failed", event.message)

    def _train_crashed(self, error) -> None:
        self.training_tab.finish("Failed")
        self.training_tab.add_log(f"Failed: {error_text(error)}")
        if not self._closing:
            QMessageBox.critical(self, "Training failed", error_text(error))

    def _train_finished(self) -> None:
        self._train_job = None
        self._update_run_buttons()
        self._refresh()
        pending, self._pending_start = self._pending_start, None
        if pending is not None and not self._closing:
            cfg, resume, history = pending
            run_dir = Path(resume).parent if resume else None
            self._start_run(cfg, resume=resume, history=history, log_path=run_dir / "log.txt" if run_dir else None)

    # --- adapters --------------------------------------------------------------------------------

    def _choose_adapter(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an adapter", "", "Adapters (*.safetensors);;All files (*)")
        if path:
            self.open_adapter(path)

    def open_adapter(self, path: str) -> None:
        """Read an adapter's metadata (worker), offer to switch model if needed, then load it."""
        self.classify_tab.set_loading(f"Reading {Path(path).name}…")
        self.pool.start(
            Worker.from_call(lambda progress, stop: read_adapter(path)[1], name="read adapter"),
            on_event=lambda item: self._adapter_read(path, item),
            on_failed=lambda error: self._adapter_failed(path, error),
        )

    def _adapter_read(self, path: str, item) -> None:
        if not isinstance(item, Returned):
            return
        info: AdapterInfo = item.value
        current = self.model_panel.model()
        base = info.base_model
        current_config = self.model_panel.model_config()
        other_base = base in MODEL_LABELS or Path(base).is_dir()
        if other_base and base != current and current_config != info.model_config:
            answer = QMessageBox.question(
                self,
                "Adapter made for another model",
                f"{Path(path).name} was trained on {info.describe_base()}, but {current or 'no model'} is selected.\n\n"
                f"Switch the model to {base}?",
            )
            if answer == QMessageBox.StandardButton.Yes:
                self.model_panel.set_model(base)
                self._refresh()
        self.tabs.setCurrentWidget(self.classify_tab)
        self.load_adapter_for_classify(
            path, model=self.model_panel.model() or None, device=self.model_panel.device(), info=info
        )

    def _adapter_failed(self, path: str, error) -> None:
        self.classify_tab.set_classifier(self.classify_tab.classifier, self._adapter_description())
        QMessageBox.critical(self, "Could not open the adapter", error_text(error))

    def load_adapter_for_classify(
        self, path: str, *, model: str | None, device: str = "auto", info: AdapterInfo | None = None
    ) -> None:
        """Build a Classifier (base + adapter, merged) on a worker and hand it to the Classify tab."""
        self.classify_tab.set_loading(f"Loading {Path(path).name} onto {model or 'its base model'}…")

        def load(progress, stop):
            return Classifier.from_adapter(path, model=model, device=device, progress=progress, stop=stop)

        self.pool.start(
            Worker.from_call(load, name="load classifier"),
            on_event=lambda item: self._classifier_loaded(path, item),
            on_failed=lambda error: self._adapter_failed(path, error),
        )

    def _classifier_loaded(self, path: str, item) -> None:
        if isinstance(item, Status):
            self.classify_tab.set_loading(f"{item.message} {human_bytes(item.done) if item.done else ''}")
            return
        if not isinstance(item, Returned):
            return
        classifier: Classifier = item.value
        self.adapter_path = path
        self.adapter_info = classifier.info
        description = self._adapter_description()
        note = self._label_mismatch(classifier.info)
        if note:
            description += f"<br><span style='color:#b8860b'>⚠ {note}</span>"
            self.statusBar().showMessage(note, 15000)
        self.classify_tab.set_classifier(classifier, description)
        self.adapter_status.setText(f"adapter: {Path(path).parent.name}/{Path(path).name}")
        self.adapter_status.setToolTip(path)
        self._update_run_buttons()

    def _label_mismatch(self, info: AdapterInfo) -> str:
        """A note when the adapter's classes are not the classes of the dataset on the left: it
        still classifies (into its own labels), but a person comparing it with that data should know."""
        if not self._table_matches_source() or len(self._counts) < 2:
            return ""
        name = (
            "SMS Spam Collection"
            if self.data_panel.source() == datamod.SMS_SPAM
            else Path(self.data_panel.source()).name
        )
        try:
            label_mapping(info, list(self._counts), name)
        except AdapterError as exc:
            return f"{exc} Classify predicts the adapter's own labels ({', '.join(info.label_names)})."
        return ""

    def _adapter_description(self) -> str:
        if self.adapter_path is None or self.adapter_info is None:
            return ""
        return describe_adapter(self.adapter_path, self.adapter_info)

    def _choose_save_adapter(self) -> None:
        if self.adapter_path is None:
            QMessageBox.information(self, "No adapter yet", "Train a model (or open an adapter) first.")
            return
        target, _ = QFileDialog.getSaveFileName(self, "Save adapter", "adapter.safetensors", "Adapters (*.safetensors)")
        if target:
            self.save_adapter(target)

    def save_adapter(self, target: str) -> Job | None:
        """Copy the current adapter file to ``target`` (on a worker: it may be a slow disk)."""
        source = self.adapter_path
        if source is None:
            return None
        if not target.endswith(ADAPTER_SUFFIX):
            target += ADAPTER_SUFFIX

        def copy(progress, stop):
            if Path(source).resolve() != Path(target).resolve():
                copy_adapter(source, target)  # atomic: a failed save leaves any file at target as it was
            return target

        return self.pool.start(
            Worker.from_call(copy, name="save adapter"),
            on_event=lambda item: (
                isinstance(item, Returned) and self.statusBar().showMessage(f"Adapter saved to {item.value}", 8000)
            ),
            on_failed=lambda error: QMessageBox.warning(self, "Could not save the adapter", error_text(error)),
        )

    def _choose_export_peft(self) -> None:
        if self.adapter_path is None or not PEFT_AVAILABLE:
            return
        folder = QFileDialog.getExistingDirectory(self, "Export for PEFT into folder")
        if folder:
            self.export_peft(folder)

    def export_peft(self, folder: str) -> None:
        from ..core import peft_io  # type: ignore[attr-defined]  # optional module, checked in PEFT_AVAILABLE

        source = self.adapter_path
        self.pool.start(
            Worker.from_call(lambda progress, stop: peft_io.export_peft(source, folder), name="export peft"),
            on_event=lambda item: (
                isinstance(item, Returned) and self.statusBar().showMessage(f"PEFT adapter written to {folder}", 8000)
            ),
            on_failed=lambda error: QMessageBox.warning(self, "PEFT export failed", error_text(error)),
        )

    # --- past runs -------------------------------------------------------------------------------

    def show_run(self, run: RunFolder, events: list) -> None:
        """Replay a past run's recorded events into the curves and the results."""
        self.training_tab.reset()
        self.results_tab.clear("That run has no test results (stopped, failed, or still running).")
        ended = self.training_tab.replay(events)
        if isinstance(ended, TrainingFinished):
            state = "stopped" if ended.stopped else "finished"
            self.training_tab.finish(f"{run.path.name}: {state} after {ended.step} steps")
            if ended.metrics is not None:
                self.results_tab.show_metrics(ended.metrics, f"run {run.path.name}")
        elif isinstance(ended, TrainingFailed):
            self.training_tab.finish(f"{run.path.name}: failed")
        else:
            self.training_tab.finish(f"{run.path.name}: no end recorded (interrupted)")
        log = run.log_path.read_text(encoding="utf-8", errors="replace")[-20000:] if run.log_path.exists() else ""
        self.training_tab.set_log(log)
        self.tabs.setCurrentWidget(self.training_tab)

    # --- drag and drop ---------------------------------------------------------------------------

    def _dropped_path(self, event) -> Path | None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                # Pickles are accepted only to be refused with a reason, rather than silently ignored.
                if path.suffix.lower() in DATASET_SUFFIXES | {ADAPTER_SUFFIX} | PICKLE_SUFFIXES or (
                    path.is_dir() and (path / "config.json").is_file()
                ):
                    return path
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_path(event) is not None and not self.is_training():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_path(event)
        if path is None:
            return
        event.acceptProposedAction()
        self.open_path(str(path))

    def open_path(self, path: str) -> None:
        """What a dropped file means: an adapter, a model folder, or a dataset."""
        p = Path(path)
        if p.suffix.lower() == ADAPTER_SUFFIX or p.suffix.lower() in PICKLE_SUFFIXES:
            self.open_adapter(path)  # read_adapter refuses a pickle, never unpickling it
        elif p.is_dir():
            self.set_model_folder(path)
        else:
            self.open_dataset(path)

    # --- settings that survive a restart ---------------------------------------------------------

    def _save_settings(self) -> None:
        cfg, _ = self.build_config()
        self.settings.setValue("config", json.dumps(cfg.to_dict()))
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.settings.setValue("tab", self.tabs.currentIndex())
        self.settings.sync()

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        splitter = self.settings.value("splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        text = self.settings.value("config")
        cfg = TrainConfig()
        if isinstance(text, str) and text:
            try:
                cfg = TrainConfig.from_dict(json.loads(text))
            except (ValueError, TypeError, KeyError):
                cfg = TrainConfig()
        self.apply_config(cfg)  # also starts reading the remembered dataset
        try:
            tab = int(self.settings.value("tab", 0))
        except (TypeError, ValueError):
            tab = 0
        self.tabs.setCurrentIndex(tab if 0 <= tab < self.tabs.count() else 0)

    # --- help and closing ------------------------------------------------------------------------

    def _about(self) -> None:
        import torch

        from ..core.device import describe, pick_device

        QMessageBox.about(
            self,
            "About LoRA Workbench",
            f"<h3>LoRA Workbench {__version__}</h3>"
            "<p>Fine-tune GPT-2 as a text classifier with low-rank adapters (LoRA), "
            "following <i>Build a Large Language Model (From Scratch)</i>, chapter 6 and appendix E.</p>"
            f"<p>PyTorch {torch.__version__} · Qt {qVersion()} · PySide6 {pyside_version} · "
            f"pyqtgraph {pg.__version__} · Python {sys.version.split()[0]}<br>"
            f"Device (auto): {describe(pick_device('auto'))}<br>"
            f"Runs are kept in {data_dir() / 'runs'}</p>",
        )

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.is_training() and not self._closing:
            answer = QMessageBox.question(
                self,
                "Training is running",
                "Stop the training and quit? The adapter trained so far is kept in the run folder.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        if not self._closing:
            self._save_settings()
        self._closing = True
        self.pool.stop_all()
        if not self.pool.wait_all(CLOSE_WAIT_MS):
            # Something is stuck in a slow call (a network timeout): never kill it; hide the
            # window and close for real when the pool reports that every job has ended.
            self.hide()
            self.pool.idle.connect(self.close)
            event.ignore()
            return
        event.accept()


def run_app(argv: list[str] | None = None) -> int:
    """Create the application and the window and run until it closes; the CLI calls this."""
    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("LoRA Workbench")
    app.setOrganizationName("lora-workbench")
    app.setWindowIcon(QIcon(str(resource_path("icon.svg"))))
    window = MainWindow()
    # Everything alive now (torch, Qt, pyqtgraph: ~400k objects) lives as long as the app. Frozen,
    # the garbage collector stops rescanning it: its full collections, which run on whichever
    # thread allocates and hold the GIL meanwhile, drop from ~0.5 s to ~0.1 s here, and that is
    # time the window could not repaint (measured while a run tokenizes and builds its model).
    gc.freeze()
    window.show()
    # Let the window paint before anything else happens (remembered dataset reads start on workers).
    QTimer.singleShot(0, window.raise_)
    return app.exec()
