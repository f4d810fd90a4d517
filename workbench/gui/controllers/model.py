"""The GPT-2 on the left: a size name or a local folder, and downloading a size's weights."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from ...core import hub
from ...core.errors import Cancelled, CheckpointError
from ...core.events import Status
from ...worker import Job, JobPool, Returned, Worker
from .. import dialogs
from ..panels import ModelPanel
from . import error_text

UNREACHABLE = "could not be reached"  # the words of hub's error when the Hub does not answer


class ModelController(QObject):
    changed = Signal()  # another model chosen, or its weights arrived: validate again
    message = Signal(str, int)  # a passing note for the status bar, and for how many ms

    def __init__(self, pool: JobPool, panel: ModelPanel, parent: QWidget):
        super().__init__(parent)
        self._pool, self._panel, self._dialogs = pool, panel, parent
        self.download_job: Job | None = None
        panel.local_folder_requested.connect(self.choose_folder)
        panel.download_requested.connect(self.download)
        panel.cancel_download_requested.connect(self.cancel_download)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self._dialogs, "Folder with config.json and model.safetensors")
        if folder:
            self.select(folder)

    def select(self, model: str) -> None:
        """Use a GPT-2 size name or a local checkpoint folder."""
        self._panel.set_model(str(model))
        self.changed.emit()

    def download(self) -> None:
        model = self._panel.model()
        if not model or self.download_job is not None:
            return
        self._panel.set_downloading(True)
        self.download_job = self._pool.start(
            Worker.from_call(
                lambda progress, stop: hub.resolve_checkpoint(model, progress=progress, stop=stop),
                name="download model",
            ),
            on_event=self._download_event,
            on_failed=self._download_failed,
            on_finished=self._download_finished,
        )

    def cancel_download(self) -> None:
        if self.download_job is not None:
            self.download_job.stop()

    def _download_event(self, item) -> None:
        if isinstance(item, Status):
            self._panel.set_download_progress(item.done or 0, item.total, item.message)
        elif isinstance(item, Returned):
            self.message.emit(f"Model ready in {item.value}", 8000)

    def _download_failed(self, error) -> None:
        if isinstance(error, Cancelled):
            return
        text = error_text(error)
        if isinstance(error, CheckpointError) and UNREACHABLE in text:
            # The core's message is written for the command line; here the way out is a button.
            text = (
                "The Hugging Face Hub could not be reached, so nothing was downloaded. Check the "
                "connection and press Download again, or press “Choose a model folder…” to use a GPT-2 "
                "checkpoint already on this computer (a folder with config.json and model.safetensors)."
            )
        dialogs.warning(self._dialogs, "Download failed", text)

    def _download_finished(self) -> None:
        self.download_job = None
        self._panel.set_downloading(False)
        self.changed.emit()
