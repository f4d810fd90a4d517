"""Training runs from the window: start, stop, the out-of-memory retry, resume and "train more",
and replaying a past run into the curves and results."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QTabWidget, QWidget

from ...core import data as datamod
from ...core import training
from ...core.config import TrainConfig
from ...core.events import (
    EpochEnded,
    Evaluated,
    RunStarted,
    Status,
    StepDone,
    TrainingFailed,
    TrainingFinished,
)
from ...core.runs import RunFolder
from ...worker import Job, JobPool, Worker
from .. import dialogs
from ..results_tab import ResultsTab
from ..training_tab import TrainingTab
from . import error_text
from .config import ConfigController

LOG_TAIL_CHARS = 20_000  # of a past run's log shown again: the end is what matters


class RunController(QObject):
    """At most one training run at a time, on a worker; its events drawn into the Training tab and
    its test metrics into Results. ``closing`` (set by the window) silences dialogs and follow-ups."""

    about_to_start = Signal()  # the settings are about to be used: worth remembering now
    running_changed = Signal(bool)
    stopping = Signal()  # Stop was pressed; the run ends after its current step
    run_started = Signal(object)  # RunStarted: the device and precision the run actually uses
    adapter_trained = Signal(str, object, str)  # adapter path, model (or None), device
    runs_changed = Signal()  # a run folder was written: the Runs list is stale
    training_event = Signal(object)  # every event of the run in progress (the Runs table lists it live)

    def __init__(
        self,
        pool: JobPool,
        config: ConfigController,
        training_tab: TrainingTab,
        results_tab: ResultsTab,
        tabs: QTabWidget,
        parent: QWidget,
    ):
        super().__init__(parent)
        self._pool, self._config, self._dialogs = pool, config, parent
        self._training_tab, self._results_tab, self._tabs = training_tab, results_tab, tabs
        self.closing = False
        self._job: Job | None = None
        self._cfg: TrainConfig | None = None
        self._resume: str | None = None  # the checkpoint the current run continues from
        self._history: list = []  # the recorded events of a resumed run, replayed first
        self._pending_start: tuple[TrainConfig, str | None, list] | None = None  # retry after OOM
        self._last_status = ""

    def is_training(self) -> bool:
        return self._job is not None

    def start(self) -> None:
        """Start a new run with the settings on the left."""
        if self._job is not None:
            return
        cfg, problems = self._config.build()
        if problems:
            self._config.refresh()
            return
        self.about_to_start.emit()
        self._start(cfg)

    def resume(self, run: RunFolder, events: list, extra_epochs: int = 0) -> None:
        """Continue a stopped or interrupted run from its checkpoint (``extra_epochs`` 0), or train
        a finished one for ``extra_epochs`` more epochs, in its own folder, curves continuing."""
        if self._job is not None:
            return
        try:
            cfg = run.config()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            dialogs.warning(self._dialogs, "Cannot resume", f"The settings of {run.path.name} cannot be read ({exc}).")
            return
        if not run.resume_path.is_file():
            dialogs.warning(
                self._dialogs,
                "Cannot resume",
                f"{run.path.name} has no checkpoint to continue from: it stopped before its first epoch ended.",
            )
            return
        if extra_epochs:
            # max_steps off: "N more epochs" means whole epochs, whatever limit the first run had.
            cfg = cfg.with_changes(epochs=cfg.epochs + extra_epochs, max_steps=None)
        self._start(cfg, resume=str(run.resume_path), history=events, log_path=run.log_path)

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()
            self._training_tab.add_log("Stopping after the current step…")
            self.stopping.emit()

    def show(self, run: RunFolder, events: list, switch_tab: bool = True) -> None:
        """Replay a past run's recorded events into the curves and the results."""
        tab = self._training_tab
        tab.reset()
        self._results_tab.clear("That run has no test results (stopped, failed, or still running).")
        ended = tab.replay(events, _examples_per_step(run))
        if isinstance(ended, TrainingFinished):
            state = "stopped" if ended.stopped else "finished"
            tab.finish(f"{run.path.name}: {state} after {ended.step} steps", step=ended.step if ended.stopped else None)
            if ended.metrics is not None:
                self._results_tab.show_metrics(ended.metrics, f"run {run.path.name}")
        elif isinstance(ended, TrainingFailed):
            tab.finish(f"{run.path.name}: failed", step=0)
        else:
            tab.finish(f"{run.path.name}: no end recorded (interrupted)", step=0)
        tab.set_log(_log_tail(run.log_path))
        if switch_tab:
            self._tabs.setCurrentWidget(tab)

    # --- the run in progress -----------------------------------------------------------------------

    def _start(
        self, cfg: TrainConfig, *, resume: str | None = None, history: list = (), log_path: Path | None = None
    ) -> None:
        self._cfg, self._resume, self._history = cfg, resume, list(history)
        self._config.show_run(cfg)
        tab = self._training_tab
        tab.reset()
        self._results_tab.clear("Training… the test results appear here when the run finishes.")
        self._last_status = ""
        if history:
            tab.replay(history, cfg.batch_size * cfg.grad_accum)
            if log_path is not None and log_path.is_file():
                tab.set_log(_log_tail(log_path))
            what = f"{Path(resume).parent.name}, to {cfg.epochs} epochs" if resume else "the run"
            tab.add_log(f"— Resuming {what}")
        else:
            data = Path(cfg.data.source).name if cfg.data.source != datamod.SMS_SPAM else "SMS Spam Collection"
            tab.add_log(f"— Starting: {cfg.model or '?'} on {data}")
        self._tabs.setCurrentWidget(tab)
        worker = Worker.from_iterator(
            lambda stop: training.train(cfg, stop=stop, resume=resume),
            name="training",
            coalesce=(StepDone, Evaluated, Status),
        )
        self._job = self._pool.start(worker, on_event=self._event, on_failed=self._crashed, on_finished=self._ended)
        self.running_changed.emit(True)

    def _event(self, event) -> None:
        self.training_event.emit(event)
        tab = self._training_tab
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
            tab.run_started(event, self._cfg.batch_size * self._cfg.grad_accum if self._cfg else None)
            tab.add_log(f"Run folder: {event.run_dir}")
            self.run_started.emit(event)
        elif isinstance(event, EpochEnded):
            tab.add_log(f"Epoch {event.epoch} done ({event.examples_seen:,} examples seen)")
        elif isinstance(event, TrainingFinished):
            self._finished(event)
        elif isinstance(event, TrainingFailed):
            self._failed(event)

    def _finished(self, event: TrainingFinished) -> None:
        state = "Stopped" if event.stopped else "Finished"
        tab = self._training_tab
        tab.finish(
            f"{state} after {event.step} steps · {event.examples_seen:,} examples · {event.elapsed_s:.0f} s",
            step=event.step if event.stopped else None,
        )
        tab.add_log(f"{state}. Adapter: {event.adapter_path}")
        if event.stopped:
            tab.add_log("Runs → Resume continues it from here.")
        if event.metrics is not None:
            self._results_tab.show_metrics(event.metrics, f"run {Path(event.run_dir).name}")
            tab.add_log(f"Test accuracy {event.metrics.accuracy:.1%}")
            self._tabs.setCurrentWidget(self._results_tab)
        else:
            self._results_tab.clear("The run was stopped early, so it has no test results. Its adapter is kept.")
        if Path(event.adapter_path).is_file() and not self.closing:
            model = self._cfg.model if self._cfg else None
            device = self._cfg.device if self._cfg else "auto"
            self.adapter_trained.emit(event.adapter_path, model, device)
        if not self.closing:
            self.runs_changed.emit()

    def _failed(self, event: TrainingFailed) -> None:
        self._training_tab.finish("Failed", step=self._training_tab.step_reached)
        self._training_tab.add_log(f"Failed: {event.message}")
        if event.kind == "cancelled" or self.closing:
            return
        self.runs_changed.emit()
        if event.kind == "oom" and event.retry_batch_size and self._cfg is not None:
            self._offer_smaller_batch(event)
            return
        dialogs.warning(self._dialogs, "Training failed", event.message)

    def _offer_smaller_batch(self, event: TrainingFailed) -> None:
        """Half the batch, twice the accumulation: the same effective batch, less memory a step.
        Accepted, the retry starts when this run's worker has ended."""
        cfg = self._cfg
        n, accum = event.retry_batch_size, cfg.grad_accum * 2
        answer = dialogs.question(
            self._dialogs,
            "Out of memory",
            f"{event.message}\n\nRetry with batch size {n} and gradient accumulation ×2 ({accum})? "
            "The effective batch stays the same.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            retry = cfg.with_changes(batch_size=n, grad_accum=accum)
            if self._resume is None:  # a new run: the fields show what will run
                self._config.set_batch(n, accum)
            self._pending_start = (retry, self._resume, self._history)

    def _crashed(self, error) -> None:
        self._training_tab.finish("Failed", step=self._training_tab.step_reached)
        self._training_tab.add_log(f"Failed: {error_text(error)}")
        if not self.closing:
            dialogs.critical(self._dialogs, "Training failed", error_text(error))

    def _ended(self) -> None:
        self._job = None
        if not self.closing:
            self._config.end_run()
        self.running_changed.emit(False)
        pending, self._pending_start = self._pending_start, None
        if pending is not None and not self.closing:
            cfg, resume, history = pending
            run_dir = Path(resume).parent if resume else None
            self._start(cfg, resume=resume, history=history, log_path=run_dir / "log.txt" if run_dir else None)


def _examples_per_step(run: RunFolder) -> int | None:
    try:
        cfg = run.config()
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the curves still show; only a max-steps run's x axis is then approximate
    return cfg.batch_size * cfg.grad_accum


def _log_tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:] if path.exists() else ""
