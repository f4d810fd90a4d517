"""The Runs tab: every past run (its own folder under the data dir) as a row of a sortable table,
to look at again, name, annotate, compare, repeat, resume, extend or move to the trash.

What a row shows is ``core.run_table.run_row`` (the state from ``core.runs.run_outcome``, the
rule the CLI uses too). Reading every run's history is small file reads, but there may be
hundreds of runs and a slow disk, so the table is read on a worker and the histories kept until
the next refresh. The run training in this window is listed live: its row is rebuilt from the
events as they arrive. Resume and "Train N more epochs" hand the run to the window, which trains
it with ``training.train(cfg, resume=<its checkpoint>)`` in the run's own folder.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import (
    QFile,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core import run_table
from ..core.config import SMS_SPAM, TrainConfig
from ..core.errors import WorkbenchError
from ..core.events import Evaluated, RunStarted, StepDone, TrainingFailed, TrainingFinished
from ..core.run_table import RunAbout, RunRow
from ..core.runs import RunFolder, run_outcome
from ..worker import JobPool, Returned, Worker
from . import dialogs
from .escape import escaped
from .run_comparison import RunComparisonWidget
from .run_table_model import (
    COLUMNS,
    NAME_COLUMN,
    RUN_ROLE,
    STARTED_COLUMN,
    STATE_LABELS,
    STATUS_COLUMN,
    RunTableModel,
)
from .tables import ResultsTableView, numeric_sort_proxy


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


def describe_run(run: RunFolder, events: list, here: bool = False) -> str:
    """A few lines about a run, from its recorded events (``here``: this window trains it now)."""
    try:
        cfg = run.config()
    except (OSError, ValueError, KeyError, TypeError):
        return f"{escaped(run.path.name)}<br>(config.json unreadable)"
    data = "SMS Spam Collection" if cfg.data.source == SMS_SPAM else cfg.data.source
    name = run_table.display_name(run)
    lines = [
        f"<b>{escaped(name)}</b>" + (f" ({escaped(run.path.name)})" if name != run.path.name else ""),
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
        lines.append("training now, in this window (the Training tab follows it)" if here else "training now")
    else:
        lines.append("did not finish (no end recorded: the window was closed or the program stopped)")
    if state.can_resume:
        lines.append("It can be resumed from its last checkpoint.")
    elif state.reason and state.state != "finished" and not here:
        lines.append(escaped(state.reason))
    lines.append(f"adapter: {'yes' if run.adapter_path.exists() else 'none'}")
    earlier = run.earlier_adapters()
    if earlier:
        names = ", ".join(escaped(p.name) for p in earlier)
        lines.append(f"kept from before Train more: {names} (File → Open adapter…)")
    return "<br>".join(lines)


NAME_WIDTH_EM = 28  # the Name column's widest fit, in average characters
LIVE_STEP_INTERVAL_S = 1.0  # a live row's duration and percentage: once a second is enough


class RunsTab(QWidget):
    show_requested = Signal(object, object)  # RunFolder, its events: show curves and metrics
    rerun_requested = Signal(object)  # TrainConfig
    adapter_requested = Signal(str)  # path of the run's adapter
    resume_requested = Signal(object, object, int)  # RunFolder, its events, extra epochs (0: resume)
    rows_loaded = Signal()  # the table was read again (after ``refresh``)

    def __init__(self, pool: JobPool, parent: QWidget | None = None):
        super().__init__(parent)
        self._pool = pool
        self._events: dict[Path, list] = {}
        self._training = False
        self._generation = 0  # of refresh(): a slower, older read must not overwrite a newer one
        self._live: Path | None = None  # the run this window trains now
        self._live_events: list = []
        self._live_step: StepDone | None = None
        self._live_drawn = 0.0
        self._notes_run: RunFolder | None = None  # whose notes the editor holds

        self.model = RunTableModel(self._rename)
        self.proxy = numeric_sort_proxy(self.model, self)
        self.table = ResultsTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # F2 (or Rename, or a slow second click) edits a name; a double-click shows the run.
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.table.sortByColumn(STARTED_COLUMN, Qt.SortOrder.DescendingOrder)  # newest first
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self._columns_fitted = False  # fitted to the first rows read; afterwards, as the person left them
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)

        self.refresh_button = QPushButton("Refresh")
        self.rename_button = QPushButton("Rename")
        self.rename_button.setToolTip("Give the run a name of your own (F2; the folder keeps its name)")
        self.delete_button = QPushButton("Move to trash…")
        self.delete_button.setToolTip("Move the selected runs to the trash, after asking (Delete)")
        self.compare_button = QPushButton("Compare selected")
        self.compare_button.setToolTip(
            "Overlay the validation curves of the selected runs and list the settings that differ "
            "(Ctrl- or Shift-click to select several)"
        )
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the table, sorted as shown, as a CSV file (Ctrl+C copies selected rows)")

        self.details = QLabel("Select a run to see what it did.")
        self.details.setWordWrap(True)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.show_button = QPushButton("Show curves and results")
        self.show_button.setToolTip("Its curves in Training, its test results in Results (or double-click the row)")
        self.rerun_button = QPushButton("Re-run with these settings")
        self.adapter_button = QPushButton("Use its adapter")
        self.resume_button = QPushButton("Resume")
        self.extend_button = QPushButton("Train more epochs:")
        self.more_epochs = QSpinBox()
        self.more_epochs.setRange(1, 1000)
        self.more_epochs.setValue(1)
        self.more_epochs.setSuffix(" more")
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("Notes on this run: why you made it, what you learnt. Saved as you type.")
        self.notes_status = QLabel("")
        self._notes_timer = QTimer(self)
        self._notes_timer.setSingleShot(True)
        self._notes_timer.setInterval(800)
        self.comparison = RunComparisonWidget()

        self._lay_out()
        self._connect()
        self._set_buttons(None)
        self._set_notes_run(None)
        self._selection_changed()

    def _lay_out(self) -> None:
        bar = QHBoxLayout()
        for button in (self.refresh_button, self.rename_button, self.delete_button, self.compare_button):
            bar.addWidget(button)
        bar.addStretch(1)
        bar.addWidget(self.export_button)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.table, 1)
        top_layout.addLayout(bar)

        # Two buttons a row, so the tab fits beside the settings on a 1000-pixel-wide screen.
        buttons = QGridLayout()
        buttons.addWidget(self.show_button, 0, 0)
        buttons.addWidget(self.rerun_button, 0, 1)
        buttons.addWidget(self.adapter_button, 1, 0)
        buttons.addWidget(self.resume_button, 1, 1)
        extend = QHBoxLayout()
        extend.addWidget(self.extend_button)
        extend.addWidget(self.more_epochs)
        buttons.addLayout(extend, 2, 0, 1, 2)
        about = QVBoxLayout()
        about.addWidget(self.details)
        about.addLayout(buttons)
        about.addStretch(1)
        notes = QVBoxLayout()
        notes.addWidget(self.notes, 1)
        notes.addWidget(self.notes_status)
        run_page = QWidget()
        run_layout = QHBoxLayout(run_page)
        run_layout.addLayout(about, 3)
        run_layout.addLayout(notes, 2)

        self.pages = QTabWidget()
        self.pages.setDocumentMode(True)
        self.pages.addTab(run_page, "Selected run")
        self.pages.addTab(self.comparison, "Compare")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.pages)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _connect(self) -> None:
        selection = self.table.selectionModel()
        selection.currentRowChanged.connect(self._current_changed)
        selection.selectionChanged.connect(self._selection_changed)
        self.proxy.modelReset.connect(self._selection_changed)
        self.refresh_button.clicked.connect(self.refresh)
        self.rename_button.clicked.connect(self.rename_current)
        self.delete_button.clicked.connect(self.delete_selected)
        self.compare_button.clicked.connect(self.compare)
        self.export_button.clicked.connect(self.table.choose_export)
        self.show_button.clicked.connect(self._show)
        self.rerun_button.clicked.connect(self._rerun)
        self.adapter_button.clicked.connect(self._adapter)
        self.resume_button.clicked.connect(self._resume)
        self.extend_button.clicked.connect(self._extend)
        self.notes.textChanged.connect(self._notes_edited)
        self._notes_timer.timeout.connect(self.save_notes)
        self.table.delete_pressed.connect(self.delete_selected)
        self.table.doubleClicked.connect(lambda _index: self._show())

    # --- reading the table -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read every run's row on a worker; the table keeps its rows (and selection) meanwhile."""
        self._generation += 1
        generation = self._generation

        def read(_progress, _stop):
            try:
                return generation, run_table.run_rows()
            except OSError:  # the runs folder is missing or unreadable: no runs to show
                return generation, []

        self._pool.start(Worker.from_call(read, name="read runs"), on_event=self._rows_read)

    def _rows_read(self, item) -> None:
        if not isinstance(item, Returned) or item.value[0] != self._generation:
            return
        rows_and_events = item.value[1]
        selected = [run.path for run in self.selected_runs()]
        current = self.selected_run()
        self._events = {row.path: events for row, events in rows_and_events}
        rows = [row for row, _events in rows_and_events]
        if self._live is not None:  # the live run's own events are newer than its file's
            rows = [self._live_row() if row.path == self._live else row for row in rows]
        self.model.set_rows(rows)
        if self._live is not None and self.model.row_of(self._live) is None:
            self.model.set_row(self._live_row())
        self.select_runs(selected, current=current.path if current else None)
        if rows and not self._columns_fitted:
            self._fit_columns()
        if not rows:
            self.details.setText("No runs yet. Each training run is kept here with its settings, curves and adapter.")
        self.rows_loaded.emit()

    def _fit_columns(self) -> None:
        """Each column as wide as its cells, the name at most NAME_WIDTH_EM characters."""
        self._columns_fitted = True
        self.table.resizeColumnsToContents()
        most = self.table.fontMetrics().averageCharWidth() * NAME_WIDTH_EM
        header = self.table.horizontalHeader()
        header.resizeSection(NAME_COLUMN, min(header.sectionSize(NAME_COLUMN), most))
        # Room for the live run's "training now · 100%", which may come after the fit.
        widest = max(self.table.fontMetrics().horizontalAdvance(f"{label} · 100%") for label in STATE_LABELS.values())
        header.resizeSection(STATUS_COLUMN, max(header.sectionSize(STATUS_COLUMN), widest + 12))

    def run_count(self) -> int:
        return self.proxy.rowCount()

    def row_for(self, run: RunFolder | Path) -> RunRow | None:
        i = self.model.row_of(run.path if isinstance(run, RunFolder) else run)
        return None if i is None else self.model.rows[i]

    def column_texts(self, column: int) -> list[str]:
        """A column's cells as shown, top to bottom (what a test can check)."""
        return [self.proxy.index(row, column).data() for row in range(self.proxy.rowCount())]

    # --- the run training in this window ---------------------------------------------------------

    def live_event(self, event) -> None:
        """An event of the run this window trains: its row appears with RunStarted and follows."""
        if isinstance(event, RunStarted):
            self._live = Path(event.run_dir)
            self._live_events = [*self._events.get(self._live, []), event]
            self._live_step = None
        elif self._live is None:
            return
        elif isinstance(event, StepDone):
            self._live_step = event
            if time.monotonic() - self._live_drawn < LIVE_STEP_INTERVAL_S:
                return
        elif isinstance(event, (Evaluated, TrainingFinished, TrainingFailed)):
            self._live_events.append(event)
        else:
            return
        ended = isinstance(event, (TrainingFinished, TrainingFailed))
        if ended:
            self._live_step = None
        step = self._live_step
        self.model.progress.pop(self._live, None)
        if step is not None and step.total_steps:
            self.model.progress[self._live] = f"{step.step / step.total_steps:.0%}"
        self.model.set_row(self._live_row())
        self._live_drawn = time.monotonic()
        if ended:
            self._events[self._live] = self._live_events
            self._live = None
        current = self.selected_run()
        if current is not None and self.row_for(current) is not None:
            self._set_buttons(current)

    def _live_row(self) -> RunRow:
        events = self._live_events + ([self._live_step] if self._live_step else [])
        return run_table.run_row(RunFolder(self._live), events)

    # --- selection -------------------------------------------------------------------------------

    def set_training(self, training: bool) -> None:
        """While a run trains, nothing here may start another one (or touch its settings)."""
        self._training = training
        self._set_buttons(self.selected_run())

    def selected_run(self) -> RunFolder | None:
        index = self.table.selectionModel().currentIndex()
        if not index.isValid() or not self.table.selectionModel().isRowSelected(index.row(), QModelIndex()):
            return None
        return index.data(RUN_ROLE)

    def selected_runs(self) -> list[RunFolder]:
        """Every selected run, in the order the table shows them."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.proxy.index(row, 0).data(RUN_ROLE) for row in rows]

    def select_runs(self, paths: list[Path], current: Path | None = None) -> None:
        """Select the rows of these runs (those still listed); ``current`` (else the first) gets focus."""
        selection = self.table.selectionModel()
        wanted = set(paths)
        chosen = QItemSelection()
        focus = None
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            path = index.data(RUN_ROLE).path
            if path in wanted:
                chosen.select(index, self.proxy.index(row, len(COLUMNS) - 1))
                if focus is None or path == current:
                    focus = index
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
        selection.select(chosen, flags)
        if focus is not None:
            selection.setCurrentIndex(focus, QItemSelectionModel.SelectionFlag.NoUpdate)
            self.table.scrollTo(focus)
        self._current_changed(focus or QModelIndex())

    def select_row(self, row: int) -> None:
        """Select the ``row``-th run as shown (0: the top one)."""
        index = self.proxy.index(row, 0)
        if index.isValid():
            self.select_runs([index.data(RUN_ROLE).path])

    def state(self, run: RunFolder) -> RunChoices | None:
        """The run's state, once its history has been read (None before)."""
        events = self._events_or_none(run)
        return None if events is None else run_choices(run, events)

    def _events_or_none(self, run: RunFolder) -> list | None:
        if self._live is not None and run.path == self._live:
            return self._live_events
        return self._events.get(run.path)

    def _set_buttons(self, run: RunFolder | None) -> None:
        idle = not self._training
        self.show_button.setEnabled(run is not None)
        self.rerun_button.setEnabled(run is not None and idle)
        self.adapter_button.setEnabled(run is not None and run.adapter_path.exists())
        self.rename_button.setEnabled(run is not None)
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
                "Continue this finished run for more epochs, from its final checkpoint; its current "
                "adapter is kept beside the new one"
                if state and state.can_extend
                else "Only a finished run can be extended; Resume a stopped one"
            )
        )

    def _selection_changed(self, *_args) -> None:
        n = len(self.table.selectionModel().selectedRows())
        self.compare_button.setEnabled(n >= 2)
        self.compare_button.setText(f"Compare selected ({n})" if n >= 2 else "Compare selected")
        self.delete_button.setEnabled(n >= 1)
        self.export_button.setEnabled(self.proxy.rowCount() > 0)

    def _current_changed(self, index: QModelIndex, _previous=None) -> None:
        run = index.data(RUN_ROLE) if index.isValid() else None
        self._set_buttons(run)
        self._set_notes_run(run)
        if run is None:
            return
        events = self._events_or_none(run)
        here = run.path == self._live
        self.details.setText(describe_run(run, events if events is not None else run.events(), here))

    # --- name and notes ----------------------------------------------------------------------------

    def rename_current(self) -> None:
        """Edit the current run's name in its cell (Enter keeps it, Escape leaves it as it was)."""
        index = self.table.selectionModel().currentIndex()
        if index.isValid():
            name_cell = index.siblingAtColumn(NAME_COLUMN)
            self.table.setCurrentIndex(name_cell)
            self.table.edit(name_cell)

    def _rename(self, run: RunFolder, name: str) -> RunAbout | None:
        """Store a new name in the run folder (an empty one gives the folder name back)."""
        try:
            about = run_table.read_about(run)
            stored = run_table.save_about(run, dataclasses.replace(about, name=name))
        except (OSError, WorkbenchError) as exc:
            dialogs.warning(self, "Rename", f"Could not rename {run.path.name}: {_reason(exc)}")
            return None
        if self.selected_run() == run:
            self.details.setText(describe_run(run, self._events_or_none(run) or []))
        return stored

    def _set_notes_run(self, run: RunFolder | None) -> None:
        """Show ``run``'s notes, after saving any unsaved edit of the previous run's."""
        if run is not None and run == self._notes_run:
            return  # the same run (the table was read again): keep what is being typed
        if self._notes_timer.isActive():
            self.save_notes()
        self._notes_run = run
        row = self.row_for(run) if run is not None else None
        self.notes.blockSignals(True)
        self.notes.setPlainText(row.notes if row else "")
        self.notes.blockSignals(False)
        self.notes.setEnabled(row is not None)
        self.notes_status.setText("")

    def hideEvent(self, event) -> None:
        """Another tab, or the window closing: notes typed a moment ago are saved now."""
        if self._notes_timer.isActive():
            self.save_notes()
        super().hideEvent(event)

    def _notes_edited(self) -> None:
        self.notes_status.setText("editing…")
        self._notes_timer.start()

    def save_notes(self) -> bool:
        """Write the notes editor's text to its run's about.json (also called on leaving the run)."""
        self._notes_timer.stop()
        run = self._notes_run
        if run is None:
            return False
        text = self.notes.toPlainText()
        try:
            about = run_table.read_about(run)
            run_table.save_about(run, dataclasses.replace(about, notes=text))
        except (OSError, WorkbenchError) as exc:
            self.notes_status.setText(f"Not saved: {_reason(exc)}")
            return False
        row = self.row_for(run)
        if row is not None:
            self.model.set_row(dataclasses.replace(row, notes=text))
        self.notes_status.setText("saved")
        return True

    # --- removing runs -----------------------------------------------------------------------------

    def delete_selected(self) -> None:
        """Move the selected runs to the trash after asking; where there is no trash, say so and
        offer to delete them for good, asking a second time. A run training now is refused."""
        runs = self.selected_runs()
        if not runs:
            return
        busy = [run for run in runs if run.path == self._live or run_table.removal_problem(run)]
        if busy:
            dialogs.information(self, "Move to trash", f"{_names(busy)} is training now; stop it before removing it.")
            return
        answer = dialogs.question(
            self,
            "Move to trash",
            f"Move {_count(runs)} to the trash?\n\n{_names(runs)}\n\n"
            "Its settings, curves, checkpoint and adapter go with it; the trash can give them back.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.save_notes()
        no_trash, failed = [], []
        for run in runs:
            try:
                with run_table.held_for_removal(run):
                    moved = _moved_to_trash(run.path)
            except (OSError, WorkbenchError) as exc:
                failed.append(f"{run.path.name}: {_reason(exc)}")
                continue
            if not moved:
                no_trash.append(run)
        if no_trash:
            failed += self._delete_for_good(no_trash)
        if failed:
            dialogs.warning(self, "Move to trash", "Not removed:\n" + "\n".join(failed))
        self.refresh()

    def _delete_for_good(self, runs: list[RunFolder]) -> list[str]:
        answer = dialogs.question(
            self,
            "No trash",
            f"This system has no trash for {_names(runs)} (or it refused them).\n\n"
            f"Delete {_count(runs)} permanently instead? This cannot be undone.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return [f"{run.path.name}: kept (no trash, and permanent delete declined)" for run in runs]
        answer = dialogs.question(
            self,
            "Delete permanently",
            f"Really delete {_count(runs)} for good: {_names(runs)}? Nothing will be left of it.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return [f"{run.path.name}: kept" for run in runs]
        failed = []
        for run in runs:
            try:
                run_table.delete_permanently(run)
            except (OSError, WorkbenchError) as exc:
                failed.append(f"{run.path.name}: {_reason(exc)}")
        return failed

    # --- what the buttons ask of the window ----------------------------------------------------------

    def _events_of(self, run: RunFolder) -> list:
        events = self._events_or_none(run)
        return run.events() if events is None else events

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
        """Overlay the selected runs' validation curves and list the settings that differ (their
        histories and settings are read on a worker when not already known)."""
        runs = self.selected_runs()
        if len(runs) < 2:
            return
        self.pages.setCurrentWidget(self.comparison)
        self.comparison.caption.setText(f"Reading {len(runs)} runs…")
        known = {run.path: self._events_or_none(run) for run in runs}

        def read(_progress, _stop):
            out = []
            for run in runs:
                try:
                    cfg = run.config()
                except (OSError, ValueError, KeyError, TypeError):
                    cfg = None
                events = known.get(run.path)
                out.append((run, run.events() if events is None else events, cfg))
            return out

        self._pool.start(Worker.from_call(read, name="read runs"), on_event=self._compare_loaded)

    def _compare_loaded(self, item) -> None:
        if not isinstance(item, Returned):
            return
        names = []
        for run, _events, _cfg in item.value:
            row = self.row_for(run)
            names.append(row.name if row else run.path.name)
        self.comparison.show_runs([(name, events) for name, (_run, events, _cfg) in zip(names, item.value)])
        self.comparison.show_settings(names, [cfg for _run, _events, cfg in item.value])


def _moved_to_trash(path: Path) -> bool:
    """QFile.moveToTrash: False where the platform has no trash (or it refused the folder).
    PySide6 answers a bool, or (bool, path in the trash) in some versions."""
    result = QFile.moveToTrash(str(path))
    return bool(result[0] if isinstance(result, tuple) else result)


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _count(runs: list[RunFolder]) -> str:
    return "this run" if len(runs) == 1 else f"these {len(runs)} runs"


def _names(runs: list[RunFolder], most: int = 8) -> str:
    names = [run.path.name for run in runs[:most]]
    more = f" and {len(runs) - most} more" if len(runs) > most else ""
    return ", ".join(names) + more
