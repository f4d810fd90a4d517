"""The Classify tab: type a message and see the label and a probability bar per class; or classify
a whole CSV file into a new CSV with the predictions.

Typing is throttled, not debounced: the first keystroke is classified at once, and then the latest
text at most every THROTTLE_MS while typing goes on, so the bars move with the words (a keystroke
costs tens of milliseconds with ``predict_typing``; a debounce would show nothing until typing
stops). Each prediction runs on a worker; while one runs, newer text waits, and only the latest
text is classified next (typing fast never queues a backlog).

Below the bars, "why": the message with each piece coloured by how much it pushed towards the
class chosen (core/explain.py: the log-odds lost when the piece is left out). An explanation costs
about five forward passes, too much for every keystroke, so it waits until typing pauses
(EXPLAIN_DELAY_MS), runs after the prediction of that text, at most one at a time; a newer text
stops the one running, and a result for text that has changed since is dropped.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from ..core.classify import Classifier, Prediction, classify_file
from ..core.errors import Cancelled, WorkbenchError
from ..core.events import Status
from ..core.explain import Explanation, explain
from ..core.text import printable
from ..worker import Job, JobPool, Returned, Worker
from . import dialogs
from .escape import as_rich_text, escaped

THROTTLE_MS = 100  # at most ten predictions a second while typing
EXPLAIN_DELAY_MS = 350  # a pause in typing this long starts an explanation
TOWARDS = QColor(214, 96, 77)  # a diverging scale (ColorBrewer RdBu's ends): red pushed towards the class,
AWAY = QColor(67, 147, 195)  # blue pushed away from it; both readable for red-green colour blindness
TOP_PIECES = 3  # named in the legend, each way


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


def attribution_colour(score: float, scale: float, base: QColor) -> QColor:
    """The background for a piece: TOWARDS or AWAY mixed into ``base`` in proportion to
    |score| / scale (the strongest piece of the message gets the full colour)."""
    end = TOWARDS if score > 0 else AWAY
    a = min(1.0, abs(score) / scale) if scale > 0 else 0.0
    return QColor.fromRgbF(*(e * a + b * (1 - a) for e, b in zip(end.getRgbF()[:3], base.getRgbF()[:3])))


class ExplanationView(QTextEdit):
    """The explained message, piece by piece, each on its colour. The text goes in through a
    QTextCursor as plain characters (never parsed as markup), so "<b>&" shows as typed; the
    pieces are whole characters (explain.character_pieces), so joined they are the text."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setAcceptRichText(False)
        self.setUndoRedoEnabled(False)
        self.pieces: list[tuple[str, float, QColor]] = []  # (piece, score for the class, colour) as shown

    def show_explanation(self, explanation: Explanation, label: str) -> float:
        """Colour the pieces for ``label``; returns the scale (the largest |score|)."""
        scores = explanation.scores_for(label)
        scale = max((abs(x) for x in scores), default=0.0)
        base = self.palette().color(QPalette.ColorRole.Base)
        self.clear()
        self.pieces = []
        cursor = QTextCursor(self.document())
        for piece, score in zip(explanation.tokens, scores):
            colour = attribution_colour(score, scale, base)
            fmt = QTextCharFormat()
            fmt.setBackground(colour)
            fmt.setForeground(self.palette().color(QPalette.ColorRole.Text))
            fmt.setToolTip(as_rich_text(f"{piece!r}: {score:+.2f} log-odds for {label}"))
            cursor.insertText(piece, fmt)
            self.pieces.append((piece, score, colour))
        return scale

    def show_nothing(self) -> None:
        self.clear()
        self.pieces = []


class ClassifyTab(QWidget):
    file_classified = Signal(str)  # a whole file was classified: score it if it has a label column

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
        self.input.setMaximumHeight(100)
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

        why_box = QGroupBox("Why: each piece of the message, coloured by how much it pushed")
        self.explained_class = QComboBox()
        self.explained_class.setToolTip("Which class the colours explain (by default the one predicted)")
        self.explained_class.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.why_busy = QLabel("explaining…")
        self.why_busy.setStyleSheet("color: palette(mid);")
        self.why_busy.setVisible(False)
        self.legend = QLabel(" ")
        self.legend.setWordWrap(True)
        self.why_view = ExplanationView()
        self.why_view.setMinimumHeight(48)
        self.why_view.setMaximumHeight(110)
        why_row = QHBoxLayout()
        why_row.addWidget(QLabel("Explain"))
        why_row.addWidget(self.explained_class)
        why_row.addStretch(1)
        why_row.addWidget(self.why_busy)
        why_layout = QVBoxLayout(why_box)
        why_layout.addLayout(why_row)
        why_layout.addWidget(self.why_view)
        why_layout.addWidget(self.legend)
        self.explanation: Explanation | None = None  # the one shown
        self.explained_text: str | None = None  # the text it explains
        self._explain_job: Job | None = None
        self._explain_pending = False

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
        layout.addWidget(why_box)
        layout.addStretch(1)
        layout.addWidget(file_box)

        self._throttle = QTimer(self)  # running: a prediction started less than THROTTLE_MS ago
        self._throttle.setSingleShot(True)
        self._throttle.setInterval(THROTTLE_MS)
        self._throttle.timeout.connect(self._classify_latest)
        self.input.textChanged.connect(self._text_changed)
        self._explain_delay = QTimer(self)  # running: typing has not paused long enough yet
        self._explain_delay.setSingleShot(True)
        self._explain_delay.setInterval(EXPLAIN_DELAY_MS)
        self._explain_delay.timeout.connect(self._explain_latest)
        self.explained_class.currentIndexChanged.connect(self._show_explanation)
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
        self._set_class_choices(classifier.info.label_names if classifier is not None else ())
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
        self._explain_pending = True
        self._explain_delay.start()  # restarted by every keystroke: explain once typing pauses
        self._update_why_busy()

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
        self._explain_latest()  # one that waited for this prediction to end

    # --- why -------------------------------------------------------------------------------------

    def _set_class_choices(self, names: tuple[str, ...]) -> None:
        self.explained_class.blockSignals(True)
        self.explained_class.clear()
        self.explained_class.addItem("the predicted class", None)
        for name in names:
            self.explained_class.addItem(name, name)  # item text is plain: a label is never markup
        self.explained_class.blockSignals(False)
        self.explanation = self.explained_text = None
        self.why_view.show_nothing()
        self.legend.setText(" ")

    @Slot()
    def _explain_latest(self) -> None:
        """Explain the text as it is now, unless typing has not paused yet, or the prediction or
        an older explanation is still running: then this runs again when they end."""
        if not self._explain_pending or self._explain_delay.isActive():
            return self._update_why_busy()
        text, classifier = self.input.toPlainText().strip(), self.classifier
        if not text or classifier is None:  # nothing to explain: no work at all
            self._explain_pending = False
            self.explanation = self.explained_text = None
            self.why_view.show_nothing()
            self.legend.setText("Type a message to see which words decide its class." if classifier else " ")
            return self._update_why_busy()
        if text == self.explained_text:
            self._explain_pending = False
            return self._update_why_busy()
        if self._explain_job is not None:
            self._explain_job.stop()  # its text is gone; _explanation_done comes back here
            return self._update_why_busy()
        if self._predict_job is not None:
            return self._update_why_busy()  # the two would share the CPU; the prediction is quicker
        self._explain_pending = False
        worker = Worker.from_call(lambda _progress, stop: explain(classifier, text, stop=stop), name="explain text")
        self._explain_job = self._pool.start(
            worker,
            on_event=lambda item: self._explained(classifier, text, item),
            on_failed=self._explanation_failed,
            on_finished=self._explanation_done,
        )
        self._update_why_busy()

    def _explained(self, classifier: Classifier, text: str, item) -> None:
        if not isinstance(item, Returned) or not isinstance(item.value, Explanation):
            return
        if classifier is not self.classifier or text != self.input.toPlainText().strip():
            return  # stale: the text or the adapter changed while it ran
        self.explanation, self.explained_text = item.value, text
        self._show_explanation()

    def _explanation_failed(self, error) -> None:
        if isinstance(error, Cancelled):
            return
        self.legend.setText(as_rich_text(f"Could not explain: {error}"))

    def _explanation_done(self) -> None:
        self._explain_job = None
        self._explain_latest()

    def _update_why_busy(self) -> None:
        self.why_busy.setVisible(
            self._explain_job is not None or (self._explain_pending and self.classifier is not None)
        )

    @Slot()
    def _show_explanation(self) -> None:
        e = self.explanation
        if e is None:
            return
        label = self.explained_class.currentData() or e.predicted
        scale = self.why_view.show_explanation(e, label)
        self.legend.setText(self._legend(e, label, scale))

    def _legend(self, e: Explanation, label: str, scale: float) -> str:
        """What the colours mean, and the strongest pieces each way."""
        name = escaped(label)
        swatch = "<span style='background-color:{}'>&nbsp;&nbsp;&nbsp;&nbsp;</span>"
        scores = e.scores_for(label)
        order = sorted(range(len(scores)), key=lambda i: scores[i])
        towards = [i for i in reversed(order) if scores[i] > 0][:TOP_PIECES]
        away = [i for i in order if scores[i] < 0][:TOP_PIECES]
        lines = [
            f"{swatch.format(TOWARDS.name())} towards <b>{name}</b> &nbsp; "
            f"{swatch.format(AWAY.name())} away from <b>{name}</b> &nbsp; "
            f"full colour: {scale:.2f} log-odds lost when the piece is left out"
        ]
        if towards:
            lines.append(f"most towards {name}: {_listed(e, scores, towards)}")
        if away:
            lines.append(f"most away: {_listed(e, scores, away)}")
        if e.truncated:
            lines.append("only the first tokens were read (the adapter's max length); the rest is not coloured")
        return "<br>".join(lines)

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
            self.file_classified.emit(self._source)

    def show_file_score(self, text: str) -> None:
        """A line under the file's result: how the predictions compare with its label column."""
        lines = self.file_result.text().split("\n")[:1]
        self.file_result.setText("\n".join([*lines, text]))

    def _file_failed(self, error) -> None:
        self.file_progress.setRange(0, 1)
        self.file_progress.setValue(0)
        if isinstance(error, Cancelled):
            self.file_progress.setFormat("stopped")
            return
        self.file_progress.setFormat("failed")
        message = str(error) if isinstance(error, WorkbenchError) else f"{type(error).__name__}: {error}"
        dialogs.warning(self, "Could not classify the file", message)

    def _file_done(self) -> None:
        self._file_job = None
        self.file_stop.setEnabled(False)
        self._update_enabled()

    def is_busy(self) -> bool:
        return self._predict_job is not None or self._file_job is not None or self._explain_job is not None


def _listed(e: Explanation, scores: tuple[float, ...], indices: list[int]) -> str:
    """Pieces with their scores, for the legend (escaped: a piece is the user's text)."""
    return ", ".join(f"“{escaped(printable(e.tokens[i].strip() or e.tokens[i]))}” {scores[i]:+.2f}" for i in indices)
