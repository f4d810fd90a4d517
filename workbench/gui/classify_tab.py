"""The Classify tab: type a message and see the label and a probability bar per class; or classify
a whole CSV file into a new CSV with the predictions.

Typing is throttled, not debounced: the first keystroke is classified at once, and then the latest
text at most every THROTTLE_MS while typing goes on, so the bars move with the words (a keystroke
costs tens of milliseconds with ``predict_typing``; a debounce would show nothing until typing
stops). Each prediction runs on a worker; while one runs, newer text waits, and only the latest
text is classified next (typing fast never queues a backlog).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.classify import Classifier, Prediction, classify_file
from ..core.errors import Cancelled, WorkbenchError
from ..core.events import Status
from ..worker import Job, JobPool, Returned, Worker
from .escape import as_rich_text

THROTTLE_MS = 100  # at most ten predictions a second while typing


class ProbabilityBars(QWidget):
    """One horizontal bar per class, longest for the predicted one."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.bars: dict[str, QProgressBar] = {}

    def set_labels(self, names: tuple[str, ...]) -> None:
        if tuple(self.bars) == tuple(names):
            return
        for bar in self.bars.values():
            bar.deleteLater()
        self.bars = {}
        for name in names:
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(0)
            bar.setFormat(f"{name}")
            bar.setMinimumHeight(26)
            self._layout.addWidget(bar)
            self.bars[name] = bar

    def set_probabilities(self, probabilities: dict[str, float]) -> None:
        for name, p in probabilities.items():
            bar = self.bars.get(name)
            if bar is not None:
                bar.setValue(int(round(1000 * p)))
                bar.setFormat(f"{name}  {p:.1%}")

    def clear_values(self) -> None:
        for name, bar in self.bars.items():
            bar.setValue(0)
            bar.setFormat(name)


class ClassifyTab(QWidget):
    def __init__(self, pool: JobPool, parent: QWidget | None = None):
        super().__init__(parent)
        self._pool = pool
        self.classifier: Classifier | None = None
        self._predict_job: Job | None = None
        self._file_job: Job | None = None
        self._pending = False

        self.adapter_label = QLabel("No adapter loaded: train one, or File → Open adapter….")
        self.adapter_label.setWordWrap(True)
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Type or paste a message, e.g. “You have won a £1000 cash prize! Call now”")
        self.input.setMaximumHeight(140)
        self.result_label = QLabel(" ")
        self.result_label.setTextFormat(Qt.TextFormat.PlainText)  # shows a label name from the adapter
        font = self.result_label.font()
        font.setPointSize(font.pointSize() + 8)
        font.setBold(True)
        self.result_label.setFont(font)
        self.busy = QLabel("classifying…")
        self.busy.setStyleSheet("color: palette(mid);")
        self.busy.setVisible(False)
        self.bars = ProbabilityBars()

        file_box = QGroupBox("Classify a file")
        self.file_button = QPushButton("Classify file…")
        self.file_button.setToolTip(
            "Read a CSV/TSV of messages and write a copy with the predicted label and probabilities"
        )
        self.file_stop = QPushButton("Stop")
        self.file_stop.setEnabled(False)
        self.file_progress = QProgressBar()
        self.file_progress.setRange(0, 1)
        self.file_progress.setValue(0)
        self.file_progress.setFormat("")
        self.file_result = QLabel("")  # which column was read, where the predictions went
        self.file_result.setTextFormat(Qt.TextFormat.PlainText)  # names from a file are never markup
        self.file_result.setWordWrap(True)
        self.file_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        file_layout = QVBoxLayout(file_box)
        row = QHBoxLayout()
        row.addWidget(self.file_button)
        row.addWidget(self.file_progress, 1)
        row.addWidget(self.file_stop)
        file_layout.addLayout(row)
        file_layout.addWidget(self.file_result)

        layout = QVBoxLayout(self)
        layout.addWidget(self.adapter_label)
        layout.addWidget(QLabel("Message"))
        layout.addWidget(self.input)
        result_row = QHBoxLayout()
        result_row.addWidget(self.result_label)
        result_row.addStretch(1)
        result_row.addWidget(self.busy)
        layout.addLayout(result_row)
        layout.addWidget(self.bars)
        layout.addStretch(1)
        layout.addWidget(file_box)

        self._throttle = QTimer(self)  # running: a prediction started less than THROTTLE_MS ago
        self._throttle.setSingleShot(True)
        self._throttle.setInterval(THROTTLE_MS)
        self._throttle.timeout.connect(self._classify_latest)
        self.input.textChanged.connect(self._text_changed)
        self.file_button.clicked.connect(self._choose_files)
        self.file_stop.clicked.connect(self._stop_file)
        self._update_enabled()

    # --- the classifier --------------------------------------------------------------------------

    def set_classifier(self, classifier: Classifier | None, description: str = "") -> None:
        self.classifier = classifier
        if classifier is None:
            self.adapter_label.setText(description or "No adapter loaded: train one, or File → Open adapter….")
            self.bars.set_labels(())
        else:
            self.adapter_label.setText(description)
            self.bars.set_labels(classifier.info.label_names)
        self._update_enabled()
        self._text_changed()

    def set_loading(self, message: str) -> None:
        self.adapter_label.setText(message)

    def _update_enabled(self) -> None:
        ready = self.classifier is not None
        self.file_button.setEnabled(ready and self._file_job is None)

    # --- as you type -----------------------------------------------------------------------------

    @Slot()
    def _text_changed(self) -> None:
        self._pending = True
        self._classify_latest()

    @Slot()
    def _classify_latest(self) -> None:
        """Classify the text as it is now, unless a prediction is running or started less than
        THROTTLE_MS ago: then this runs again when that one ends, or the interval has passed."""
        if self._pending and self._predict_job is None and not self._throttle.isActive():
            self._pending = False
            self._throttle.start()
            self._classify_now()
        self.busy.setVisible(self._pending or self._predict_job is not None)

    def _classify_now(self) -> None:
        text = self.input.toPlainText().strip()
        if not text:
            self.result_label.setText(" ")
            self.bars.clear_values()
            return
        if self.classifier is None:
            self.result_label.setText("no adapter loaded")
            return
        classifier = self.classifier
        # predict_typing reuses the keys/values of the text typed so far: a keystroke costs a token.
        worker = Worker.from_call(lambda _progress, _stop: classifier.predict_typing(text), name="classify text")
        self._predict_job = self._pool.start(
            worker, on_event=self._prediction, on_failed=self._prediction_failed, on_finished=self._prediction_done
        )

    def _prediction(self, item) -> None:
        if isinstance(item, Returned) and isinstance(item.value, Prediction):
            p = item.value
            self.result_label.setText(f"{p.label}  ({p.probability:.0%})")
            self.bars.set_probabilities(p.probabilities)

    def _prediction_failed(self, error) -> None:
        self.result_label.setText("could not classify")
        self.result_label.setToolTip(as_rich_text(error))

    def _prediction_done(self) -> None:
        self._predict_job = None
        self._classify_latest()

    # --- a whole file ----------------------------------------------------------------------------

    def _choose_files(self) -> None:
        source, _ = QFileDialog.getOpenFileName(
            self, "Classify which file?", "", "Tables (*.csv *.tsv *.txt);;All files (*)"
        )
        if not source:
            return
        suggestion = str(Path(source).with_name(Path(source).stem + "_predictions.csv"))
        target, _ = QFileDialog.getSaveFileName(self, "Write the predictions to", suggestion, "CSV (*.csv)")
        if target:
            self.classify_file(source, target)

    def classify_file(self, source: str, target: str) -> None:
        if self.classifier is None or self._file_job is not None:
            return
        classifier = self.classifier

        def work(progress, stop) -> tuple[int, str]:
            columns: list[str] = []
            rows = classify_file(classifier, source, target, progress=progress, stop=stop, on_column=columns.append)
            return rows, columns[0] if columns else "?"

        worker = Worker.from_call(work, name="classify file")
        self._target, self._source = target, source
        self.file_result.setText("")
        self.file_progress.setRange(0, 0)
        self.file_progress.setFormat("reading…")
        self.file_stop.setEnabled(True)
        self._file_job = self._pool.start(
            worker, on_event=self._file_event, on_failed=self._file_failed, on_finished=self._file_done
        )
        self._update_enabled()

    def _stop_file(self) -> None:
        if self._file_job is not None:
            self._file_job.stop()

    def _file_event(self, item) -> None:
        if isinstance(item, Status):
            if item.total:
                self.file_progress.setRange(0, item.total)
                self.file_progress.setValue(min(item.done or 0, item.total))
                self.file_progress.setFormat(f"{item.message} %v / %m")
            else:
                self.file_progress.setRange(0, 0)
        elif isinstance(item, Returned):
            rows, column = item.value
            self.file_progress.setRange(0, 1)
            self.file_progress.setValue(1)
            self.file_progress.setFormat(f"{rows:,} rows → {Path(self._target).name}")
            self.file_result.setText(
                f"Read the messages from column {column!r} of {Path(self._source).name}; wrote {rows:,} rows "
                f"with predicted_label, probability and p_<label> to {self._target}"
            )

    def _file_failed(self, error) -> None:
        self.file_progress.setRange(0, 1)
        self.file_progress.setValue(0)
        if isinstance(error, Cancelled):
            self.file_progress.setFormat("stopped")
            return
        self.file_progress.setFormat("failed")
        message = str(error) if isinstance(error, WorkbenchError) else f"{type(error).__name__}: {error}"
        QMessageBox.warning(self, "Could not classify the file", as_rich_text(message))

    def _file_done(self) -> None:
        self._file_job = None
        self.file_stop.setEnabled(False)
        self._update_enabled()

    def is_busy(self) -> bool:
        return self._predict_job is not None or self._file_job is not None
