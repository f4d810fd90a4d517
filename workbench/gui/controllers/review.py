"""Reviewing the loaded adapter in the Results tab: evaluate it on a labelled file, draw its
threshold and calibration views from the run's held-out rows, rank suspicious labels, and save a
chosen threshold or temperature back into the adapter file. The numbers all come from the core
(``adapter_eval``, ``thresholds``, ``label_errors``), on workers; this controller only routes.

Held-out rows are the run's own, rebuilt from the adapter's data recipe out of the file it was
trained on (``adapter_eval.run_splits``): the run folder's dataset, else the dataset open on the
left, whichever holds the same bytes. A threshold chosen on rows the adapter trained on would be
chosen on numbers it has learned by heart, so without that file the views say what to open.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QTabWidget, QWidget

from ...core.adapter_eval import evaluate_adapter_on, run_splits, score_held_out
from ...core.adapters import update_decision
from ...core.errors import Cancelled, WorkbenchError
from ...core.events import Status
from ...core.fileio import check_outputs
from ...core.label_errors import save_suspects, suspects_from_adapter
from ...core.runs import RunFolder
from ...worker import Job, JobPool, Returned, Worker
from .. import dialogs
from ..classify_tab import ClassifyTab
from ..escape import escaped
from ..results_tab import ResultsTab
from . import error_text
from .adapter import AdapterController
from .dataset import DatasetController


class ReviewController(QObject):
    message = Signal(str, int)  # a passing note for the status bar, and for how many ms

    def __init__(
        self,
        pool: JobPool,
        adapter: AdapterController,
        dataset: DatasetController,
        classify_tab: ClassifyTab,
        results_tab: ResultsTab,
        tabs: QTabWidget,
        parent: QWidget,
    ):
        super().__init__(parent)
        self._pool, self._adapter, self._dataset = pool, adapter, dataset
        self._classify_tab, self._results, self._tabs, self._dialogs = classify_tab, results_tab, tabs, parent
        self._scored_for: object | None = None  # the classifier the decision views show (None: stale)
        self._score_job: Job | None = None
        self._suspects_job: Job | None = None
        self._evaluate_job: Job | None = None
        adapter.changed.connect(self._adapter_changed)
        results_tab.view_shown.connect(self.score_if_stale)
        results_tab.evaluate_requested.connect(self.choose_evaluation_file)
        results_tab.threshold_view.save_requested.connect(self.save_threshold)
        results_tab.calibration_view.save_requested.connect(self.save_temperature)
        results_tab.suspects_view.find_requested.connect(self.find_suspects)
        results_tab.suspects_view.export_requested.connect(self.choose_export)
        results_tab.suspects_view.open_in_classify.connect(self.open_in_classify)
        classify_tab.file_classified.connect(self.score_classified_file)
        self._adapter_changed()

    def _classifier(self):
        return self._classify_tab.classifier

    def _adapter_changed(self) -> None:
        loaded = self._classifier() is not None and self._adapter.path is not None
        self._scored_for = None
        for job in (self._score_job, self._suspects_job):
            if job is not None:
                job.stop()  # scores of the previous adapter: not worth the minutes a big model takes
        self._results.evaluate_button.setEnabled(loaded and self._evaluate_job is None)
        self._results.suspects_view.set_suspects([])  # another adapter's ranking says nothing of this one
        self._results.suspects_view.set_idle("" if loaded else "Load an adapter (or train one) first.")
        self._results.suspects_view.find_button.setEnabled(loaded and self._suspects_job is None)
        why = "Scoring the run's held-out rows…" if loaded else "Load an adapter (or train one) to see its curves."
        self._results.threshold_view.clear(why)
        self._results.calibration_view.clear(why)
        if loaded and self._results.decision_view_visible():
            self.score_if_stale()

    def candidate_sources(self) -> list[str]:
        """Where the adapter's training file may be: its run folder's dataset, then the open one."""
        sources: list[str] = []
        if self._adapter.path is not None:
            run = RunFolder(Path(self._adapter.path).parent)
            if run.config_path.is_file():
                try:
                    sources.append(run.config().data.source)
                except (WorkbenchError, ValueError, OSError):
                    pass  # a damaged run folder: the open dataset may still be the file
        table = self._dataset.table
        if table is not None:
            sources.append(str(table.source))
        return sources

    # --- threshold and calibration -----------------------------------------------------------------

    def score_if_stale(self) -> None:
        classifier = self._classifier()
        if classifier is None or self._scored_for is classifier or self._score_job is not None:
            return
        sources = self.candidate_sources()
        self._scored_for = classifier

        def work(progress, stop):
            return score_held_out(classifier, sources, progress=progress, stop=stop)

        self._score_job = self._pool.start(
            Worker.from_call(work, name="score held-out rows"),
            on_event=lambda item: self._scored(classifier, item),
            on_failed=lambda error: self._score_failed(classifier, error),
            on_finished=self._score_done,
        )

    def _scored(self, classifier, item) -> None:
        if classifier is not self._classifier():
            return  # another adapter was loaded meanwhile; its own scoring follows
        threshold, calibration = self._results.threshold_view, self._results.calibration_view
        if isinstance(item, Status):
            text = f"Scoring the run's held-out rows… {item.message}"
            if item.total:
                text += f" {item.done:,}/{item.total:,}"
            threshold.note.setText(escaped(text))
            calibration.note.setText(escaped(text))
            return
        if not isinstance(item, Returned):
            return
        description, scored = item.value
        test, val = scored["test"], scored["val"]
        names = tuple(classifier.info.label_names)
        threshold.set_scores(test.probabilities, test.labels, names, classifier.threshold, f"test rows, {description}")
        calibration.set_scores(
            (val.probabilities, val.labels),
            (test.probabilities, test.labels),
            classifier.temperature,
            f"test rows, {description}",
        )

    def _score_failed(self, classifier, error) -> None:
        if classifier is not self._classifier():
            return
        self._scored_for = None if isinstance(error, Cancelled) else classifier  # a refusal stays until a change
        text = error_text(error)
        self._results.threshold_view.clear(text)
        self._results.calibration_view.clear(text)

    def _score_done(self) -> None:
        self._score_job = None
        if self._scored_for is not self._classifier() and self._results.decision_view_visible():
            self.score_if_stale()  # the adapter changed while the old one was being scored

    def save_threshold(self, threshold: float | None) -> None:
        self._save_decision({"threshold": threshold}, "threshold", threshold)

    def save_temperature(self, temperature: float | None) -> None:
        self._save_decision({"temperature": temperature}, "temperature", temperature)

    def _save_decision(self, change: dict, what: str, value: float | None) -> None:
        path = self._adapter.path
        if path is None:
            return

        def work(progress, stop):
            return update_decision(path, **change)

        def saved(item) -> None:
            if not isinstance(item, Returned) or path != self._adapter.path:
                return
            self._adapter.apply_decision(item.value)
            self._results.threshold_view.set_saved(item.value.threshold)
            self._results.calibration_view.set_saved(item.value.temperature)
            done = f"{what} {value:.3f} saved in" if value is not None else f"{what} removed from"
            self.message.emit(f"{done} {Path(path).name}", 8000)

        self._pool.start(
            Worker.from_call(work, name=f"save {what}"),
            on_event=saved,
            on_failed=lambda error: dialogs.warning(self._dialogs, f"Could not save the {what}", error_text(error)),
        )

    # --- evaluate on a labelled file -----------------------------------------------------------------

    def choose_evaluation_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self._dialogs, "Evaluate on which labelled file?", "", "Tables (*.csv *.tsv *.tab *.txt);;All files (*)"
        )
        if path:
            self.evaluate_file(path)

    def evaluate_file(self, path: str, *, from_classify: bool = False) -> Job | None:
        """The same as ``workbench eval --data path``: the run's test rows of its own training file,
        every row of any other file, with the adapter's saved decision. ``from_classify``: a file
        Classify has just labelled, scored when it has a label column (a line under its result,
        the details in Results; no dialog and no tab switch, and no label column is no error)."""
        classifier, adapter = self._classifier(), self._adapter.path
        if classifier is None or adapter is None or self._evaluate_job is not None:
            return None

        def work(progress, stop):
            return evaluate_adapter_on(path, classifier, progress=progress, stop=stop)

        self._results.evaluate_button.setEnabled(False)
        if from_classify:  # the Results tab keeps what it shows unless there is a score
            self._classify_tab.show_file_score("Scoring it against its label column…")
        else:
            self._results.headline.setText(f"Evaluating {Path(adapter).name} on {Path(path).name}…")
        self._evaluate_job = self._pool.start(
            Worker.from_call(work, name="evaluate adapter"),
            on_event=lambda item: self._evaluated(adapter, item, from_classify),
            on_failed=lambda error: self._evaluate_failed(error, from_classify),
            on_finished=self._evaluate_done,
        )
        return self._evaluate_job

    def score_classified_file(self, path: str) -> None:
        self.evaluate_file(path, from_classify=True)

    def _evaluated(self, adapter: str, item, from_classify: bool) -> None:
        if isinstance(item, Status):
            if not from_classify:
                done = f" {item.done:,}/{item.total:,}" if item.total else ""
                self._results.headline.setText(f"Evaluating… {item.message}{done}")
            return
        if not isinstance(item, Returned):
            return
        result = item.value
        held_out = result.split == "test"
        self._results.show_metrics(result.metrics, f"{Path(adapter).name} on {result.description}", held_out=held_out)
        self._results.views.setCurrentIndex(0)
        if from_classify:
            what = "Test accuracy" if held_out else "Accuracy"
            self._classify_tab.show_file_score(
                f"{what} {result.metrics.accuracy:.1%} against its labels: {result.description}. "
                "Per class and the confusion matrix: the Results tab."
            )
        else:
            self._tabs.setCurrentWidget(self._results)

    def _evaluate_failed(self, error, from_classify: bool) -> None:
        if from_classify:
            # Most files to classify have no labels: say why there is no score, quietly.
            self._classify_tab.show_file_score(f"Not scored: {error_text(error)}")
            return
        self._results.clear("Evaluation stopped." if isinstance(error, Cancelled) else "Evaluation failed.")
        if not isinstance(error, Cancelled):
            dialogs.warning(self._dialogs, "Could not evaluate the adapter", error_text(error))

    def _evaluate_done(self) -> None:
        self._evaluate_job = None
        self._results.evaluate_button.setEnabled(self._classifier() is not None)

    # --- suspicious labels ---------------------------------------------------------------------------

    def find_suspects(self) -> Job | None:
        classifier = self._classifier()
        if classifier is None or self._suspects_job is not None:
            return None
        sources = self.candidate_sources()

        def work(progress, stop):
            _, splits = run_splits(sources, classifier.info, progress=progress, stop=stop)
            return suspects_from_adapter(classifier, splits, stop=stop, progress=progress)

        view = self._results.suspects_view
        view.set_busy("Scoring the training and validation rows…")
        self._suspects_job = self._pool.start(
            Worker.from_call(work, name="find suspicious labels"),
            on_event=lambda item: self._suspects_event(classifier, item),
            on_failed=lambda error: view.set_idle(error_text(error)),
            on_finished=self._suspects_done,
        )
        return self._suspects_job

    def _suspects_event(self, classifier, item) -> None:
        view = self._results.suspects_view
        if classifier is not self._classifier():
            return
        if isinstance(item, Status) and item.total:
            view.set_busy(f"Scoring the training and validation rows… {item.done:,}/{item.total:,}")
        elif isinstance(item, Returned):
            view.set_suspects(item.value)

    def _suspects_done(self) -> None:
        self._suspects_job = None
        self._results.suspects_view.find_button.setEnabled(self._classifier() is not None)

    def choose_export(self) -> None:
        target, _ = QFileDialog.getSaveFileName(
            self._dialogs, "Export suspicious labels", "suspicious_labels.csv", "CSV (*.csv);;TSV (*.tsv)"
        )
        if target:
            self.export_suspects(target)

    def export_suspects(self, target: str) -> Job | None:
        rows = list(self._results.suspects_view.suspects)
        if not rows:
            return None
        # Never over what the rows came from: the dataset files, the adapter.
        inputs = {f"the dataset {Path(s).name}": Path(s) for s in self.candidate_sources() if Path(s).is_file()}
        if self._adapter.path is not None:
            inputs["the adapter"] = Path(self._adapter.path)

        def work(progress, stop):
            check_outputs({"the export": target}, inputs)
            return save_suspects(rows, target)

        return self._pool.start(
            Worker.from_call(work, name="export suspicious labels"),
            on_event=lambda item: (
                isinstance(item, Returned) and self.message.emit(f"{len(rows):,} rows written to {target}", 8000)
            ),
            on_failed=lambda error: dialogs.warning(self._dialogs, "Could not export", error_text(error)),
        )

    def open_in_classify(self, text: str) -> None:
        self._classify_tab.input.setPlainText(text)
        self._tabs.setCurrentWidget(self._classify_tab)
