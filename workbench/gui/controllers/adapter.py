"""The adapter the window holds: open (with the offer to switch to its base model), load it into a
classifier for the Classify tab, save a copy, export it for PEFT."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QTabWidget, QWidget

from ...core import hub, peft_io
from ...core.adapters import AdapterInfo, copy_adapter, label_mapping, read_adapter
from ...core.classify import Classifier
from ...core.config import MODEL_LABELS
from ...core.errors import AdapterError, WorkbenchError
from ...core.events import Status
from ...core.memory import human_bytes
from ...core.runs import RunFolder
from ...core.training import training_inputs
from ...worker import Job, JobPool, Returned, Worker
from .. import dialogs
from ..classify_tab import ClassifyTab
from ..escape import escaped
from ..panels import ModelPanel
from . import error_text
from .dataset import DatasetController
from .model import ModelController

ADAPTER_SUFFIX = ".safetensors"


def describe_adapter(path: str, info: AdapterInfo) -> str:
    metrics = ""
    if "test_accuracy" in info.metrics:
        metrics = f" · test accuracy {float(info.metrics['test_accuracy']):.1%}"
    created = info.created.replace("T", " ")[:16]
    return (
        f"<b>{escaped(Path(path).name)}</b> · base {escaped(info.describe_base())} · LoRA r={info.lora.rank}, "
        f"alpha={info.lora.alpha:g} · labels: {escaped(', '.join(info.label_names))}{metrics} · "
        f"created {escaped(created)}"
    )


class AdapterController(QObject):
    """``path`` and ``info`` name the adapter Save copies and Classify uses (None: none yet)."""

    changed = Signal()  # another adapter is loaded
    message = Signal(str, int)  # a passing note for the status bar, and for how many ms

    def __init__(
        self,
        pool: JobPool,
        dataset: DatasetController,
        model: ModelController,
        model_panel: ModelPanel,
        classify_tab: ClassifyTab,
        tabs: QTabWidget,
        parent: QWidget,
    ):
        super().__init__(parent)
        self._pool, self._dataset, self._model, self._model_panel = pool, dataset, model, model_panel
        self._classify_tab, self._tabs, self._dialogs = classify_tab, tabs, parent
        self.path: str | None = None
        self.info: AdapterInfo | None = None
        self.base: str | None = None  # the model the classifier was built on (None: the adapter's own)

    # --- open --------------------------------------------------------------------------------------

    def choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self._dialogs, "Open an adapter", "", "Adapters (*.safetensors);;All files (*)"
        )
        if path:
            self.open(path)

    def open(self, path: str) -> None:
        """Read an adapter's metadata (worker), offer to switch model if needed, then load it."""
        self._classify_tab.set_loading(f"Reading {Path(path).name}…")
        self._pool.start(
            Worker.from_call(lambda progress, stop: read_adapter(path)[1], name="read adapter"),
            on_event=lambda item: self._read(path, item),
            on_failed=lambda error: self._failed(path, error),
        )

    def _read(self, path: str, item) -> None:
        if not isinstance(item, Returned):
            return
        info: AdapterInfo = item.value
        panel = self._model_panel
        current = panel.model()
        base = info.base_model
        other_base = base in MODEL_LABELS or Path(base).is_dir()
        if other_base and base != current and panel.model_config() != info.model_config:
            answer = dialogs.question(
                self._dialogs,
                "Adapter made for another model",
                f"{Path(path).name} was trained on {info.describe_base()}, but {current or 'no model'} is selected.\n\n"
                f"Switch the model to {base}?",
            )
            if answer == QMessageBox.StandardButton.Yes:
                self._model.select(base)
        self._tabs.setCurrentWidget(self._classify_tab)
        self.load_for_classify(path, model=panel.model() or None, device=panel.device(), info=info)

    def _failed(self, path: str, error) -> None:
        self._classify_tab.set_classifier(self._classify_tab.classifier, self._description())
        dialogs.critical(self._dialogs, "Could not open the adapter", error_text(error))

    def load_for_classify(
        self, path: str, *, model: str | None, device: str = "auto", info: AdapterInfo | None = None
    ) -> None:
        """Build a Classifier (base + adapter, merged) on a worker and hand it to the Classify tab."""
        self._classify_tab.set_loading(f"Loading {Path(path).name} onto {model or 'its base model'}…")
        # The precision chosen in the Model panel governs classifying too, as --precision does
        # for `workbench classify`: fp32 or bf16 as asked; auto measures (and may take int8).
        precision = self._model_panel.precision()

        def load(progress, stop):
            return Classifier.from_adapter(
                path, model=model, device=device, precision=precision, progress=progress, stop=stop
            )

        self._pool.start(
            Worker.from_call(load, name="load classifier"),
            on_event=lambda item: self._loaded(path, model, item),
            on_failed=lambda error: self._failed(path, error),
        )

    def _loaded(self, path: str, model: str | None, item) -> None:
        if isinstance(item, Status):
            self._classify_tab.set_loading(f"{item.message} {human_bytes(item.done) if item.done else ''}")
            return
        if not isinstance(item, Returned):
            return
        classifier: Classifier = item.value
        self.path, self.base = path, model
        self.info = classifier.info
        description = self._description()
        note = self._label_mismatch(classifier.info)
        if note:
            description += f"<br><span style='color:#b8860b'>⚠ {note}</span>"
            self.message.emit(note, 15000)
        self._classify_tab.set_classifier(classifier, description)
        self.changed.emit()

    def apply_decision(self, info: AdapterInfo) -> None:
        """The adapter file's threshold or temperature changed (saved from the Results tab): the
        loaded classifier decides as the file now says, at once, without reloading the model."""
        classifier = self._classify_tab.classifier
        if classifier is None or self.path is None:
            return
        self.info = info
        classifier.info, classifier.threshold, classifier.temperature = info, info.threshold, info.temperature
        self._classify_tab.set_classifier(classifier, self._description())

    def _label_mismatch(self, info: AdapterInfo) -> str:
        """A note when the adapter's classes are not the classes of the dataset on the left: it
        still classifies (into its own labels), but a person comparing it with that data should know."""
        if not self._dataset.matches_source() or len(self._dataset.counts) < 2:
            return ""
        try:
            label_mapping(info, list(self._dataset.counts), self._dataset.display_name())
        except AdapterError as exc:
            return f"{exc} Classify predicts the adapter's own labels ({', '.join(info.label_names)})."
        return ""

    def _description(self) -> str:
        if self.path is None or self.info is None:
            return ""
        return describe_adapter(self.path, self.info)

    # --- save and export ---------------------------------------------------------------------------

    def choose_save(self) -> None:
        if self.path is None:
            dialogs.information(self._dialogs, "No adapter yet", "Train a model (or open an adapter) first.")
            return
        target, _ = QFileDialog.getSaveFileName(
            self._dialogs, "Save adapter", "adapter.safetensors", "Adapters (*.safetensors)"
        )
        if target:
            self.save(target)

    def save(self, target: str) -> Job | None:
        """Copy the current adapter file to ``target`` (on a worker: it may be a slow disk)."""
        source = self.path
        if source is None:
            return None
        if not target.endswith(ADAPTER_SUFFIX):
            target += ADAPTER_SUFFIX

        inputs = _files_behind(source, self.info)

        def copy(progress, stop):
            if Path(source).resolve() != Path(target).resolve():
                # atomic, and never over the run's dataset or the base model's files (check_outputs)
                copy_adapter(source, target, inputs=inputs)
            return target

        return self._pool.start(
            Worker.from_call(copy, name="save adapter"),
            on_event=lambda item: (
                isinstance(item, Returned) and self.message.emit(f"Adapter saved to {item.value}", 8000)
            ),
            on_failed=lambda error: dialogs.warning(self._dialogs, "Could not save the adapter", error_text(error)),
        )

    def choose_import_peft(self) -> None:
        folder = QFileDialog.getExistingDirectory(self._dialogs, "Import a PEFT LoRA folder")
        if not folder:
            return
        target, _ = QFileDialog.getSaveFileName(
            self._dialogs, "Save the imported adapter as", _peft_import_target(folder), "Adapters (*.safetensors)"
        )
        if target:
            self.import_peft(folder, target)

    def import_peft(self, folder: str, target: str) -> Job:
        """``workbench import-peft``: convert a PEFT folder (its base model from its own config, or
        the model selected here when that names none), then open the adapter file it wrote."""
        if not target.endswith(ADAPTER_SUFFIX):
            target += ADAPTER_SUFFIX
        selected = self._model_panel.model() or None

        def work(progress, stop):
            try:
                return peft_io.import_peft(folder, target)
            except peft_io.UnknownBaseModel:
                if selected is None:
                    raise
                return peft_io.import_peft(folder, target, model=selected)

        return self._pool.start(
            Worker.from_call(work, name="import peft"),
            on_event=lambda item: isinstance(item, Returned) and self.open(str(item.value)),
            on_failed=lambda error: dialogs.warning(self._dialogs, "PEFT import failed", error_text(error)),
        )

    def choose_export_peft(self) -> None:
        if self.path is None:
            return
        folder = QFileDialog.getExistingDirectory(self._dialogs, "Export for PEFT into folder")
        if folder:
            self.export_peft(folder)

    def export_peft(self, folder: str) -> None:
        source = self.path
        self._pool.start(
            Worker.from_call(lambda progress, stop: peft_io.export_peft(source, folder), name="export peft"),
            on_event=lambda item: (
                isinstance(item, Returned) and self.message.emit(f"PEFT adapter written to {folder}", 8000)
            ),
            on_failed=lambda error: dialogs.warning(self._dialogs, "PEFT export failed", error_text(error)),
        )


def _peft_import_target(folder: str) -> str:
    return str(Path(folder).with_name(Path(folder).name + ADAPTER_SUFFIX))


def _files_behind(adapter: str, info: AdapterInfo | None) -> dict[str, Path]:
    """The files an adapter came from, which saving it must not replace: its run's dataset and
    base model (from the run folder it sits in), and the base model it names."""
    inputs: dict[str, Path] = {}
    run = RunFolder(Path(adapter).parent)
    if run.config_path.is_file():
        try:
            inputs |= training_inputs(run.config())
        except (WorkbenchError, ValueError, OSError):
            pass  # a damaged run folder: the base model's files below still count
    if info is not None:
        try:
            inputs |= hub.checkpoint_files(info.base_model)
        except (WorkbenchError, OSError):
            pass
    return inputs
