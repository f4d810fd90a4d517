"""The Data tab's health report: recomputed on a worker whenever what it depends on changes (the
table read, its columns, balancing, the split fractions, the seed, the max length, the model whose
tokenizer counts the lengths), never on the GUI thread: tokenizing a large file takes seconds.

Settings change in bursts (a spin box held down, a column picked and picked again), so a change
waits REPORT_DELAY_MS for the next one; at most one report is computed at a time, and one whose
settings no longer match the panel's when it ends is dropped and the latest settings computed next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QWidget

from ...core import data as datamod
from ...core.config import DataConfig
from ...core.data.health import DataHealth, data_health
from ...core.errors import Cancelled
from ...core.events import Status
from ...core.tokenizer import tokenizer_and_context
from ...worker import Job, JobPool, Returned, Worker
from ..data_tab import DataTab
from ..escape import escaped
from ..panels import SettingsColumn
from . import error_text
from .config import ConfigController
from .dataset import DatasetController

REPORT_DELAY_MS = 250  # a burst of setting changes is reported once


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report depends on; two equal inputs give the same report."""

    table: datamod.Table
    data: DataConfig
    seed: int
    model: str

    def __eq__(self, other: object) -> bool:  # the table by identity: a new read is a new table
        return (
            isinstance(other, ReportInputs)
            and self.table is other.table
            and (self.data, self.seed, self.model) == (other.data, other.seed, other.model)
        )

    __hash__ = None  # type: ignore[assignment]


def compute_report(inputs: ReportInputs, progress=None, stop=None) -> DataHealth:
    """``workbench data-report`` for the window's settings (the same core calls, on a worker)."""
    tokenizer, context = tokenizer_and_context(inputs.model or "gpt2")
    max_length = min(inputs.data.max_length or context, context)  # as training cuts (training.prepare)
    return data_health(inputs.table, inputs.data, tokenizer, max_length, inputs.seed, stop=stop, progress=progress)


class HealthController(QObject):
    def __init__(
        self,
        pool: JobPool,
        column: SettingsColumn,
        dataset: DatasetController,
        config: ConfigController,
        tab: DataTab,
        parent: QWidget,
    ):
        super().__init__(parent)
        self._pool, self._column, self._dataset, self._view = pool, column, dataset, tab.health
        self.shown: ReportInputs | None = None  # the inputs of the report on screen
        self._job: Job | None = None
        self._job_inputs: ReportInputs | None = None
        self._delay = QTimer(self)
        self._delay.setSingleShot(True)
        self._delay.setInterval(REPORT_DELAY_MS)
        self._delay.timeout.connect(self._start_latest)
        config.validated.connect(self.refresh)  # every change of a setting or of the table read

    def inputs(self) -> ReportInputs | str:
        """What the report would use now, or why there is nothing to report."""
        table = self._dataset.table
        if table is None or not self._dataset.matches_source():
            return "The data report appears here once a dataset is read."
        data = self._column.data.data_config()
        problems = data.validate()
        if problems:
            return f"No data report: {problems[0]}"
        return ReportInputs(table, data, int(self._column.training.seed.value()), self._column.model.model())

    def is_busy(self) -> bool:
        return self._job is not None or self._delay.isActive()

    @Slot()
    def refresh(self) -> None:
        wanted = self.inputs()
        if isinstance(wanted, str):
            self._delay.stop()
            self.shown = None
            self._view.set_message(wanted)
            return
        if wanted == self.shown or wanted == self._job_inputs:
            return
        self._delay.start()

    def _start_latest(self) -> None:
        wanted = self.inputs()
        if isinstance(wanted, str) or wanted == self.shown:
            return
        if self._job is not None:  # it ends soon; _finished starts the latest then
            self._job.stop()
            return
        self._view.set_busy("Checking the data (tokenizing every text, finding duplicates)…")
        self._job_inputs = wanted
        self._job = self._pool.start(
            Worker.from_call(lambda progress, stop: compute_report(wanted, progress, stop), name="data report"),
            on_event=lambda item: self._report(wanted, item),
            on_failed=lambda error: self._failed(wanted, error),
            on_finished=self._finished,
        )

    def _report(self, inputs: ReportInputs, item) -> None:
        if inputs != self.inputs():
            return  # stale: the settings changed while it ran
        if isinstance(item, Status) and item.total:
            self._view.set_busy(f"Checking the data: {item.message.lower()} {item.done or 0:,} / {item.total:,} texts…")
        if not isinstance(item, Returned):
            return
        self.shown = inputs
        self._view.set_health(item.value, _caption(item.value, inputs))

    def _failed(self, inputs: ReportInputs, error) -> None:
        if isinstance(error, Cancelled) or inputs != self.inputs():
            return
        self.shown = inputs  # not retried until something changes
        self._view.set_message(f"No data report: {error_text(error)}")

    def _finished(self) -> None:
        self._job = self._job_inputs = None
        self.refresh()


def _caption(h: DataHealth, inputs: ReportInputs) -> str:
    model = Path(inputs.model).name if inputs.model and Path(inputs.model).is_dir() else inputs.model or "gpt2"
    return (
        f"Text column '{escaped(h.text_column)}', label column '{escaped(h.label_column)}', split as training "
        f"splits it (seed {inputs.seed}{', balanced' if inputs.data.balance else ''}), lengths in "
        f"{escaped(model)} tokens: the figures of <tt>workbench data-report</tt>."
    )
