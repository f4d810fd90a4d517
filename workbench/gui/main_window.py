"""The main window: settings on the left in the order of the decisions, what the run shows on the
right, and a status bar that always answers "what will this run use?".

This module is layout and wiring. The work is the controllers' (``controllers/``): the dataset,
the model, the settings as a TrainConfig, training runs, adapters. All slow work goes to a
``Worker`` through one ``JobPool``; the window only connects the pieces and owns what is its own:
menus, the status bar, drag and drop, remembered geometry, closing.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, QUrl, qVersion
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
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
from ..core.config import MODEL_LABELS, TrainConfig
from ..core.errors import WorkbenchError
from ..core.events import RunStarted
from ..core.fileio import PICKLE_SUFFIXES
from ..core.paths import data_dir
from ..core.runs import RunFolder
from ..resources import readme_path, resource_path
from ..worker import Job, JobPool, Returned, Worker
from . import dialogs
from .classify_tab import ClassifyTab
from .controllers.adapter import ADAPTER_SUFFIX, AdapterController
from .controllers.config import ConfigController
from .controllers.dataset import DatasetController
from .controllers.health import HealthController
from .controllers.model import ModelController
from .controllers.review import ReviewController
from .controllers.run import RunController
from .data_tab import DataTab
from .escape import escaped
from .panels import SettingsColumn
from .results_tab import ResultsTab
from .runs_tab import RunsTab
from .training_tab import TrainingTab

README_SECTIONS = (  # Help menu entries: (title, the heading's anchor in README.md)
    ("the window", "the-window"),
    ("the command line", "the-command-line"),
    ("performance", "performance"),
)
CLOSE_WAIT_MS = 5000  # how long closing waits for a stopped run before hiding and finishing later
DATASET_SUFFIXES = {".csv", ".tsv", ".tab", ".txt"}


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings or QSettings(str(data_dir() / "settings.ini"), QSettings.Format.IniFormat)
        self.pool = JobPool(self)
        self._closing = False

        self.setWindowTitle("LoRA Workbench")
        self.setWindowIcon(QIcon(str(resource_path("icon.svg"))))
        self.setAcceptDrops(True)
        self._build_ui()
        self._build_status_bar()
        self._build_controllers()
        self._build_menus()
        self._connect()
        self._restore_settings()
        self.config.refresh()
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
        scroll.setMinimumWidth(self.column.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
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

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_status = QLabel()
        self.device_status = QLabel()
        self.memory_status = QLabel()
        self.adapter_status = QLabel("adapter: none loaded")
        for label in (self.model_status, self.device_status, self.memory_status, self.adapter_status):
            # Cut when space is short: a long adapter path must not make the window wider than the screen.
            label.setMinimumWidth(40)
            bar.addPermanentWidget(label)

    def _build_controllers(self) -> None:
        self.dataset = DatasetController(self.pool, self.data_panel, self.data_tab, parent=self)
        self.model = ModelController(self.pool, self.model_panel, parent=self)
        self.config = ConfigController(
            self.column,
            self.dataset,
            model_status=self.model_status,
            device_status=self.device_status,
            memory_status=self.memory_status,
            parent=self,
        )
        self.health = HealthController(self.pool, self.column, self.dataset, self.config, self.data_tab, parent=self)
        self.run = RunController(self.pool, self.config, self.training_tab, self.results_tab, self.tabs, parent=self)
        self.adapter = AdapterController(
            self.pool, self.dataset, self.model, self.model_panel, self.classify_tab, self.tabs, parent=self
        )
        self.review = ReviewController(
            self.pool, self.adapter, self.dataset, self.classify_tab, self.results_tab, self.tabs, parent=self
        )

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.setToolTipsVisible(True)
        self.open_dataset_action = self._action(
            file_menu, "Open &dataset…", self.dataset.choose, QKeySequence.StandardKey.Open
        )
        file_menu.addSeparator()
        self.open_adapter_action = self._action(file_menu, "Open &adapter…", self.adapter.choose, "Ctrl+Shift+O")
        self.save_adapter_action = self._action(
            file_menu, "&Save adapter…", self.adapter.choose_save, QKeySequence.StandardKey.Save
        )
        self.export_peft_action = self._action(file_menu, "Export for &PEFT…", self.adapter.choose_export_peft)
        self._action(file_menu, "&Import a PEFT adapter…", self.adapter.choose_import_peft)
        file_menu.addSeparator()
        self._action(file_menu, "&Load settings…", self._choose_settings_to_load)
        self._action(file_menu, "Save settings &as…", self._choose_settings_file)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        run_menu = bar.addMenu("&Run")
        run_menu.setToolTipsVisible(True)
        self.start_action = self._action(run_menu, "&Start training", self.run.start, "Ctrl+Return")
        self.stop_action = self._action(run_menu, "S&top", self.run.stop, "Ctrl+.")

        run_menu.addSeparator()
        self._action(run_menu, "&Copy as command", self.copy_command, "Ctrl+Shift+C")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self._show_shortcuts, QKeySequence.StandardKey.HelpContents)
        for title, anchor in README_SECTIONS:
            self._action(help_menu, f"README: {title}", lambda _=False, a=anchor: self.open_readme(a))
        self._action(help_menu, "&About LoRA Workbench", self._about)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _connect(self) -> None:
        for panel in (self.data_panel, self.model_panel, self.lora_panel, self.training_panel):
            panel.changed.connect(self.config.refresh)
        for controller in (self.dataset, self.model):
            controller.changed.connect(self.config.refresh)
        for controller in (self.model, self.adapter, self.review):
            controller.message.connect(self.statusBar().showMessage)
        self.config.validated.connect(self._update_run_buttons)
        self.start_button.clicked.connect(self.run.start)
        self.stop_button.clicked.connect(self.run.stop)
        self.run.about_to_start.connect(self._save_settings)
        self.run.running_changed.connect(self._running_changed)
        self.run.stopping.connect(lambda: self.stop_button.setEnabled(False))
        self.run.run_started.connect(self._run_started)
        self.run.adapter_trained.connect(
            lambda path, model, device: self.adapter.load_for_classify(path, model=model, device=device)
        )
        self.run.runs_changed.connect(self.runs_tab.refresh)
        self.run.training_event.connect(self.runs_tab.live_event)
        self.adapter.changed.connect(self._adapter_changed)
        self.runs_tab.show_requested.connect(self.run.show)
        self.runs_tab.rerun_requested.connect(self.config.apply)
        self.runs_tab.adapter_requested.connect(self.adapter.open)
        self.runs_tab.resume_requested.connect(self.run.resume)

    # --- what the controllers report -------------------------------------------------------------

    def _update_run_buttons(self) -> None:
        running = self.run.is_training()
        problems = self.config.problems
        can_start = not running and not problems
        self.start_button.setEnabled(can_start)
        self.start_action.setEnabled(can_start)
        self.stop_button.setEnabled(running)
        self.stop_action.setEnabled(running)
        if running:
            self.start_button.setToolTip("A run is in progress; the settings shown are the ones it uses")
        elif problems:
            self.start_button.setToolTip("Fix these first:\n" + "\n".join(f"• {p}" for p in problems))
        else:
            self.start_button.setToolTip("Train with these settings (Ctrl+Enter)")
        for panel in (self.data_panel, self.model_panel, self.lora_panel, self.training_panel):
            panel.setEnabled(not running)
        self.runs_tab.set_training(running)
        self.save_adapter_action.setEnabled(self.adapter.path is not None)
        self.export_peft_action.setEnabled(self.adapter.path is not None)

    def _running_changed(self, running: bool) -> None:
        if running:
            self._update_run_buttons()
        else:
            self.config.refresh()  # the run may have downloaded the model or the data

    def _run_started(self, event: RunStarted) -> None:
        self.device_status.setText(f"device: {event.device} ({event.precision})")
        self.settings.setValue("last_run", event.run_dir)  # shown again after a restart

    def _adapter_changed(self) -> None:
        path = self.adapter.path
        if path is not None:
            self.adapter_status.setText(f"adapter: {Path(path).parent.name}/{Path(path).name}")
            self.adapter_status.setToolTip(path)
        self._update_run_buttons()

    # --- what a person can do (menus, drops and tests call these) --------------------------------

    def open_dataset(self, path: str) -> None:
        self.dataset.open(path)

    def set_model_folder(self, folder: str) -> None:
        self.model.select(folder)

    def open_adapter(self, path: str) -> None:
        self.adapter.open(path)

    def save_adapter(self, target: str) -> Job | None:
        return self.adapter.save(target)

    def export_peft(self, folder: str) -> None:
        self.adapter.export_peft(folder)

    def start_training(self) -> None:
        self.run.start()

    def stop_training(self) -> None:
        self.run.stop()

    def is_training(self) -> bool:
        return self.run.is_training()

    def show_run(self, run: RunFolder, events: list) -> None:
        self.run.show(run, events)

    def build_config(self) -> tuple[TrainConfig, list[str]]:
        return self.config.build()

    def problems(self) -> list[str]:
        return list(self.config.problems)

    def open_path(self, path: str) -> None:
        """What a dropped file means: an adapter, a model folder, or a dataset."""
        p = Path(path)
        if p.suffix.lower() == ADAPTER_SUFFIX or p.suffix.lower() in PICKLE_SUFFIXES:
            self.adapter.open(path)  # read_adapter refuses a pickle, never unpickling it
        elif p.is_dir():
            self.model.select(path)
        else:
            self.dataset.open(path)

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
        if self._dropped_path(event) is not None and not self.run.is_training():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_path(event)
        if path is None:
            return
        event.acceptProposedAction()
        self.open_path(str(path))

    # --- settings that survive a restart ---------------------------------------------------------

    def _save_settings(self) -> None:
        cfg = self.config.user_config()
        self.settings.setValue("config", json.dumps(cfg.to_dict()))
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.settings.setValue("tab", self.tabs.currentIndex())
        self.settings.setValue("adapter", self.adapter.path or "")
        self.settings.setValue("adapter_model", self.adapter.base or "")
        self.settings.sync()

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
            self._fit_to_screen()  # remembered on a bigger screen, it may not fit this one
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
        self.config.apply(cfg)  # also starts reading the remembered dataset
        try:
            tab = int(self.settings.value("tab", 0))
        except (TypeError, ValueError):
            tab = 0
        self.tabs.setCurrentIndex(tab if 0 <= tab < self.tabs.count() else 0)
        self._reopen_last_run()
        self._reload_adapter()

    def _fit_to_screen(self) -> None:
        screen = self.screen()
        if screen is None:
            return
        available = screen.availableGeometry()
        if not available.contains(self.frameGeometry()):
            self.resize(self.size().boundedTo(available.size() - QSize(16, 40)))
            self.move(available.topLeft())

    def _reopen_last_run(self) -> None:
        """The curves and results of the last run trained, as they were (read on a worker)."""
        folder = self.settings.value("last_run")
        if not isinstance(folder, str) or not folder or not Path(folder).is_dir():
            return
        run = RunFolder(Path(folder))

        def show(item) -> None:
            if isinstance(item, Returned) and not self.run.is_training() and not self._closing:
                self.run.show(run, item.value, switch_tab=False)

        self.pool.start(Worker.from_call(lambda progress, stop: run.events(), name="read last run"), on_event=show)

    def _reload_adapter(self) -> None:
        """The adapter the Classify tab held, if its file is still there, on the model it was used with."""
        path = self.settings.value("adapter")
        if not isinstance(path, str) or not path or not Path(path).is_file():
            return
        model = self.settings.value("adapter_model")
        usable = isinstance(model, str) and model and (model in MODEL_LABELS or Path(model).is_dir())
        self.adapter.load_for_classify(path, model=model if usable else None, device=self.model_panel.device())

    # --- help and closing ------------------------------------------------------------------------

    def copy_command(self) -> str:
        """Put the ``workbench train`` line for the settings shown on the clipboard."""
        line = self.config.command_line()
        QApplication.clipboard().setText(line)
        self.statusBar().showMessage(f"Copied: {line}", 15000)
        return line

    def _choose_settings_file(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save settings as", "settings.json", "Settings (*.json)")
        if path:
            self.save_settings_file(path)

    def save_settings_file(self, path: str) -> None:
        try:
            self.config.save_settings(path)
        except WorkbenchError as exc:
            dialogs.warning(self, "Could not save the settings", exc)
            return
        self.statusBar().showMessage(f"Settings saved to {path}", 8000)

    def _choose_settings_to_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load settings", "", "Settings or a run's config.json (*.json);;All files (*)"
        )
        if path:
            self.load_settings_file(path)

    def load_settings_file(self, path: str) -> None:
        if self.run.is_training():
            return  # the fields show the running run's settings until it ends
        try:
            self.config.load_settings(path)
        except WorkbenchError as exc:
            dialogs.warning(self, "Could not load the settings", exc)
            return
        self.statusBar().showMessage(f"Settings loaded from {path}", 8000)

    def _show_shortcuts(self) -> None:
        """Every menu command that has a shortcut, read from the menus themselves (never stale)."""
        rows = []
        for menu_action in self.menuBar().actions():
            for action in menu_action.menu().actions():
                keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
                if keys:
                    name = action.text().replace("&", "").rstrip("…")
                    rows.append(f"<tr><td><b>{escaped(keys)}</b>&nbsp;&nbsp;</td><td>{escaped(name)}</td></tr>")
        dialogs.rich_information(
            self,
            "Keyboard shortcuts",
            "<table>" + "".join(rows) + "</table><p>Drop a dataset, an adapter or a model folder on the "
            "window to open it. README.md, beside the program, explains every setting.</p>",
        )

    def open_readme(self, anchor: str = "") -> QUrl | None:
        """README.md at one of its sections, in whatever the desktop opens a Markdown file with."""
        readme = readme_path()
        if not readme.is_file():
            dialogs.information(self, "README", f"README.md is not beside this program ({readme}).")
            return None
        url = QUrl.fromLocalFile(str(readme))
        url.setFragment(anchor)
        if not QDesktopServices.openUrl(url):
            dialogs.information(self, "README", f"No program here opens {readme}; it is a Markdown text file.")
        return url

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
            f"Runs are kept in {escaped(data_dir() / 'runs')}</p>",
        )

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.run.is_training() and not self._closing:
            answer = dialogs.question(
                self,
                "Training is running",
                "Stop the training and quit? The adapter trained so far is kept in the run folder.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        if not self._closing:
            self._save_settings()
        self._closing = self.run.closing = True
        self.pool.close()
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
