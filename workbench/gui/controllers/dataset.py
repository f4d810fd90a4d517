"""The dataset on the left: reading it on a worker, the SMS download, the class counts, and what
about the data stops a run from starting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from ...core import data as datamod
from ...core.config import Problem
from ...core.errors import Cancelled
from ...core.events import Status
from ...core.memory import human_bytes, longest_text_chars
from ...worker import Job, JobPool, Returned, Worker
from .. import dialogs
from ..data_tab import DataTab
from ..escape import escaped
from ..panels import DataPanel
from . import error_text

LARGE_FILE_BYTES = 200 * 2**20  # above this, opening a dataset offers a sample first
SAMPLE_ROWS = 100_000


class DatasetController(QObject):
    """The table read from the chosen source, its class counts and longest text (for the memory
    estimate), and why it could not be read. A newer read supersedes an older one: each read gets
    a token, and only the latest token's results are used."""

    changed = Signal()  # the table, its counts or its read error changed: validate again

    def __init__(self, pool: JobPool, panel: DataPanel, tab: DataTab, parent: QWidget):
        super().__init__(parent)
        self._pool, self._panel, self._tab, self._dialogs = pool, panel, tab, parent
        self.table: datamod.Table | None = None
        self.counts: dict[str, int] = {}  # label -> rows, for the chosen label column
        self.longest_text: int | None = None  # characters of the longest text (memory estimate)
        self.rename_problem = ""  # why the label renames typed cannot apply to this column
        self._read_error: tuple[str, str] | None = None  # (source, why it could not be read)
        self._read_job: Job | None = None
        self._read_token = 0
        panel.open_file_requested.connect(self.choose)
        panel.download_requested.connect(self.download_sms)
        panel.columns_changed.connect(self.update_counts)
        panel.balance.toggled.connect(self.update_counts)
        panel.sms_radio.toggled.connect(self._source_toggled)

    # --- what the window asks ----------------------------------------------------------------------

    def matches_source(self) -> bool:
        """Whether the table read is the one the panel names (a newer choice may still be reading)."""
        return self.table is not None and self.table.source == self._panel.source()

    def display_name(self) -> str:
        source = self._panel.source()
        return "SMS Spam Collection" if source == datamod.SMS_SPAM else Path(source).name

    def problems(self) -> list[str]:
        """What about the data stops a run: a file that could not be read, or columns that cannot
        train a classifier (the same column twice, a single class)."""
        problems: list[str] = []
        source = self._panel.source()
        if self._read_error is not None and self._read_error[0] == source and Path(source).is_file():
            problems.append(f"dataset could not be read: {self._read_error[1]}")
        if self.table is not None and self.matches_source():
            text, label = self._panel.effective_columns((self.table.text_column, self.table.label_column))
            if text and text == label:
                problems.append("text and label column must differ")
            elif datamod.looks_like_text_column(self.counts):
                problems.append(
                    f"label column '{label}' looks like a text column ({len(self.counts):,} different values in "
                    f"{sum(self.counts.values()):,} rows): choose the column that holds the classes"
                )
            elif self.counts and len(self.counts) < 2:
                problems.append("the label column has only one class; a classifier needs at least two")
            if self.rename_problem:
                problems.append(Problem("data.rename_labels", f"rename labels: {self.rename_problem}"))
        rename_error = self._panel.renames()[1]
        if rename_error:
            problems.append(Problem("data.rename_labels", rename_error))
        return problems

    # --- choosing and reading ----------------------------------------------------------------------

    def choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self._dialogs,
            "Open a dataset",
            str(Path(self._panel.source()).parent) if self._panel.file_radio.isChecked() else "",
            "Tables (*.csv *.tsv *.tab *.txt);;All files (*)",
        )
        if path:
            self.open(path)

    def open(self, path: str) -> None:
        """Use a CSV/TSV file as the dataset and read it (on a worker) for the preview and counts.

        A very large file gets an offer first: its first SAMPLE_ROWS rows, read in a moment, or
        all of it (about 20 s a gigabyte, with progress, and training on it takes far longer).
        """
        self._panel.set_file(str(path), max_rows=self._ask_for_sample(Path(path)))
        self.load_current_source()

    def _ask_for_sample(self, path: Path) -> int | None:
        try:
            size = path.stat().st_size
        except OSError:
            return None  # reading it reports the problem
        if size < LARGE_FILE_BYTES:
            return None
        answer = dialogs.question(
            self._dialogs,
            "Large dataset",
            f"{path.name} is {human_bytes(size)}. Use a sample of its first {SAMPLE_ROWS:,} rows? "
            "(No reads the whole file, with progress; it can be stopped.)",
        )
        return SAMPLE_ROWS if answer == QMessageBox.StandardButton.Yes else None

    def _source_toggled(self, _checked: bool) -> None:
        self.load_current_source()

    def load_current_source(self) -> None:
        """Forget the table and read the source the panel names (the SMS file only if downloaded)."""
        self.table = None
        self.counts = {}
        self._read_error = None
        self.longest_text = None
        self._panel.set_counts(None)
        self._panel.clear_columns()
        source = self._panel.source()
        path = datamod.sms_spam_path()
        downloaded = path.is_file()
        self._panel.set_sms_status(downloaded)  # whichever source is chosen: the line is always shown
        if source == datamod.SMS_SPAM:
            if downloaded:
                self._read(lambda progress, stop: datamod.read_sms_spam(path), "Reading the SMS Spam Collection…")
            else:
                self._tab.set_caption(
                    "The SMS Spam Collection is not downloaded yet: press Download (or Start, which fetches it)."
                )
        elif source:
            rows = self._panel.max_rows
            self._read(
                lambda progress, stop: datamod.read_table(source, max_rows=rows, progress=progress, stop=stop),
                f"Reading {Path(source).name}" + (f" (first {rows:,} rows)…" if rows else "…"),
            )
        self.changed.emit()

    def download_sms(self) -> None:
        self._panel.set_sms_status(False, busy="downloading…")

        def fetch(progress, stop):
            return datamod.read_sms_spam(datamod.download_sms_spam(progress=progress, stop=stop))

        self._read(fetch, "Downloading the SMS Spam Collection…")

    def _read(self, work, caption: str) -> None:
        if self._read_job is not None:
            self._read_job.stop()  # its result is ignored: the token below moves on
        self._read_token += 1
        token = self._read_token
        self._tab.set_caption(caption)
        self._read_job = self._pool.start(
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
            self._tab.set_caption(f"{item.message} {human_bytes(item.done)}{total}" if item.done else item.message)
            if self._panel.source() == datamod.SMS_SPAM and item.done:
                self._panel.set_sms_status(False, busy=f"downloading… {human_bytes(item.done)}")
        elif isinstance(item, Returned):
            self._show_table(item.value)

    def _show_table(self, table: datamod.Table) -> None:
        if table.source != self._panel.source() and not (
            table.source == datamod.SMS_SPAM and self._panel.sms_radio.isChecked()
        ):
            return
        self.table = table
        columns = [str(c) for c in table.frame.columns]
        self._panel.set_columns(columns, table.text_column, table.label_column)
        if table.source == datamod.SMS_SPAM:
            self._panel.set_sms_status(True)
        name = "SMS Spam Collection" if table.source == datamod.SMS_SPAM else Path(table.source).name
        more = " (first rows only)" if table.truncated_rows else ""
        self._tab.show_frame(
            table.frame,
            f"<b>{escaped(name)}</b> · {len(table.frame):,} rows{more} · encoding {escaped(table.encoding)} · "
            f"detected text column '{escaped(table.text_column)}', label column '{escaped(table.label_column)}' "
            "(change them on the left)",
        )
        self.update_counts()

    def _read_failed(self, token: int, error) -> None:
        if token != self._read_token or isinstance(error, Cancelled):
            return
        source = self._panel.source()
        if source == datamod.SMS_SPAM:
            self._panel.set_sms_status(datamod.sms_spam_path().is_file())
        else:
            self._read_error = (source, error_text(error))  # Start stays off until another file is chosen
        self._tab.set_caption(escaped(f"Could not read the dataset: {error_text(error)}"))
        self._panel.clear_columns()
        self._panel.set_counts(None, "could not read this file")
        self.changed.emit()
        dialogs.warning(self._dialogs, "Could not read the dataset", error_text(error))

    def _read_finished(self, token: int) -> None:
        if token == self._read_token:
            self._read_job = None

    # --- the columns chosen ------------------------------------------------------------------------

    @Slot()
    def update_counts(self) -> None:
        table = self.table
        if table is None:
            return
        text, label = self._panel.effective_columns((table.text_column, table.label_column))
        self.counts, self.rename_problem = _label_counts(table.frame, label, self._panel.data_config().rename_labels)
        self.longest_text = longest_text_chars(table, text)
        if datamod.looks_like_text_column(self.counts):
            self._panel.set_counts(self.counts, "this looks like a text column, not labels", warning=True)
        else:
            self._panel.set_counts(self.counts)
        self.changed.emit()


def _label_counts(frame: pd.DataFrame, label: str | None, rename=()) -> tuple[dict[str, int], str]:
    """Rows per class of ``label`` by the core's own label cleaning (``canonical_labels``: missing
    labels such as NA or null left out, "Spam"/"spam " one class, the renames typed applied), so
    the counts shown are the classes training will find; and why the renames cannot apply."""
    if label is None or label not in frame.columns:
        return {}, ""
    classes = datamod.canonical_labels(frame[label].fillna("").astype(str).tolist(), rename=tuple(rename))
    return {name: classes.counts[name] for name in classes.names}, classes.rename_problem
