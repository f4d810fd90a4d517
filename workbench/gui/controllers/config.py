"""The settings column as a TrainConfig: building it, marking every problem at its field, and
what the run will use (trainable parameters, the memory estimate) next to Start and in the status bar.

The decisions are the core's (``TrainConfig.validate``, ``LoRAConfig.validate``, the memory
estimate); this module gathers them and shows them where a person will look.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QLabel, QWidget

from ...cli import train_command
from ...core import data as datamod
from ...core import hub
from ...core.config import MODEL_LABELS, ModelConfig, Problem, TrainConfig
from ...core.device import pick_device
from ...core.errors import WorkbenchError
from ...core.lora import count_trainable
from ...core.memory import MemoryEstimate, device_memory, estimate_run_memory, is_tight, memory_breakdown, memory_line
from ...core.precision import known_precision
from ...core.runs import load_settings, save_settings
from ..escape import escaped
from ..panels import MODEL_NAMES, SettingsColumn, mark_invalid
from .dataset import DatasetController

WARNING_STYLE = "color: #d9534f; font-weight: bold;"
ERROR_STYLE = "color: #d9534f;"


class ConfigController(QObject):
    validated = Signal()  # the problems (and so whether Start may run) may have changed

    def __init__(
        self,
        column: SettingsColumn,
        dataset: DatasetController,
        *,
        model_status: QLabel,
        device_status: QLabel,
        memory_status: QLabel,
        parent: QWidget,
    ):
        super().__init__(parent)
        self._column, self._dataset = column, dataset
        self._model_status, self._device_status, self._memory_status = model_status, device_status, memory_status
        self.problems: list[str] = []  # the last validation's; empty: ready to start
        self.steps: list[str] = []  # those of the problems that are a step to take, not a mistake
        self._before_run: TrainConfig | None = None  # the person's settings while a run shows its own
        self.memory_estimate: MemoryEstimate | None = None  # the last estimate shown next to Start

    def build(self) -> tuple[TrainConfig, list[str]]:
        """The run the fields describe, and every problem with it (empty: ready to start)."""
        c = self._column
        values = c.training.values()
        problems: list[str] = []
        if values["lr"] is None:
            problems.append("learning rate is not a number (write e.g. 5e-5)")
            values["lr"] = TrainConfig().lr
        cfg = TrainConfig(
            model=c.model.model(),
            data=c.data.data_config(),
            lora=c.lora.lora_config(),
            device=c.model.device(),
            precision=c.model.precision(),
            **values,
        )
        problems += cfg.validate()
        model_config = c.model.model_config()
        if model_config is not None:
            problems += [p for p in cfg.lora.validate(model_config.n_layer) if p not in problems]
        elif cfg.model:
            problems.append("model folder has no readable config.json")
        self.steps = []
        if cfg.model in MODEL_LABELS and not hub.is_cached(cfg.model) and hub.offline_mode(None):
            # Start would fail at once; say so now (the core reads HF_HUB_OFFLINE the same way), as
            # a step to take in the window rather than an error.
            self.steps.append(
                f"{MODEL_NAMES[cfg.model]} is not downloaded and offline mode is on: choose a model folder "
                "(the button under the model list), or download it when online"
            )
            problems += self.steps
        problems += self._dataset.problems()
        return cfg, problems

    def apply(self, cfg: TrainConfig) -> None:
        """Put a run's settings into the fields (Runs → Re-run, or remembered settings)."""
        c = self._column
        if cfg.model:
            if cfg.model in MODEL_LABELS or Path(cfg.model).is_dir():
                c.model.set_model(cfg.model)
        c.model.set_device(cfg.device)
        c.model.set_precision(cfg.precision)
        c.lora.apply(cfg.lora)
        c.training.apply(cfg)
        source_changed = cfg.data.source != c.data.source()
        if cfg.data.source != datamod.SMS_SPAM and not Path(cfg.data.source).is_file():
            cfg = cfg.with_changes(data=TrainConfig().data)  # the file has gone; fall back to SMS
            source_changed = True
        c.data.apply(cfg.data)
        if source_changed or self._dataset.table is None:
            self._dataset.load_current_source()
        self.refresh()

    def show_run(self, cfg: TrainConfig) -> None:
        """While a run trains, the fields show the settings it uses (read-only: the window disables
        them), so the column and the status bar never describe another run than the one training.
        A resumed or extended run may differ from what the person had set; ``end_run`` puts that back.
        """
        current, _ = self.build()
        if self._before_run is None and current.to_dict() != cfg.to_dict():
            self._before_run = current
        if current.to_dict() != cfg.to_dict():
            self.apply(cfg)

    def end_run(self) -> None:
        """The run ended: the person's own settings again, if the run showed other ones."""
        before, self._before_run = self._before_run, None
        if before is not None:
            self.apply(before)

    def user_config(self) -> TrainConfig:
        """The settings the person chose (not those of a run shown meanwhile): what to remember."""
        return self._before_run or self.build()[0]

    def save_settings(self, path: str) -> None:
        """The person's settings as a file that File → Load settings… and ``train --settings`` read."""
        save_settings(self.user_config(), path)

    def load_settings(self, path: str) -> None:
        """Put a saved settings file (or any run's config.json) into the fields; ConfigError if it
        is not one. Settings that cannot run are then listed like any other problem."""
        self.apply(load_settings(path))

    def command_line(self) -> str:
        """The ``workbench train`` line for the settings shown (Run → Copy as command)."""
        return train_command(self.build()[0])

    def set_batch(self, batch_size: int, grad_accum: int) -> None:
        """Show a changed batch in the fields (the OOM retry), so they describe what runs."""
        self._column.training.batch_size.setValue(batch_size)
        self._column.training.grad_accum.setValue(grad_accum)

    @Slot()
    def refresh(self) -> None:
        """Re-validate, mark bad fields, recount trainable parameters, update the status bar."""
        cfg, problems = self.build()
        marked: dict[QWidget, list[str]] = {}
        for problem in problems:
            widget = self._field_for(problem) if problem not in self.steps else None  # a step: no red
            if widget is not None:
                marked.setdefault(widget, []).append(problem)
        for widget in self._fields():
            mark_invalid(widget, marked.get(widget, []), widget.property("default_tip") or "")
        self._column.problems.setVisible(bool(problems))
        self._column.problems.setText(
            "<br>".join(
                f"→ {escaped(p)}" if p in self.steps else f"<span style='{ERROR_STYLE}'>⚠ {escaped(p)}</span>"
                for p in problems
            )
        )
        self.problems = problems
        self.validated.emit()

        model_config = self._column.model.model_config()
        trainable = None
        if model_config is not None and not cfg.lora.validate(model_config.n_layer):
            trainable = count_trainable(model_config, cfg.lora, self._num_classes())
        self._column.lora.set_summary(trainable)
        name = cfg.model if cfg.model in MODEL_LABELS else (Path(cfg.model).name if cfg.model else "no model")
        size = f" {MODEL_LABELS[cfg.model]}" if cfg.model in MODEL_LABELS else ""
        self._model_status.setText(f"model: {name}{size}")
        self._device_status.setText(f"device: {self._column.model.device_text()}")
        self._show_precision(cfg, model_config)
        self._show_memory_estimate(cfg, model_config)

    def _show_precision(self, cfg: TrainConfig, model_config: ModelConfig | None) -> None:
        """What ``auto`` will choose on this device and why, when it has been measured before (the
        measurement itself runs at the start of a run, never on the GUI thread)."""
        note = self._column.model.precision_note
        if cfg.precision != "auto":
            note.setText("")
            return
        try:
            device = pick_device(cfg.device)
        except WorkbenchError:
            note.setText("")  # the device problem is listed with the others
            return
        choice = known_precision("auto", device, model_config.n_embd if model_config else 768)
        note.setText(
            f"auto: {choice.reason}"
            if choice
            else "auto: measured at the start of the first run on this device (a few seconds), then remembered"
        )

    def _num_classes(self) -> int:
        return max(2, len(self._dataset.counts))  # before the data is read: the usual two

    def _show_memory_estimate(self, cfg: TrainConfig, model_config: ModelConfig | None) -> None:
        """Next to Start and in the status bar: what the run needs against what the device has."""
        labels = (self._column.memory, self._memory_status)
        if model_config is None or cfg.lora.validate(model_config.n_layer):
            for label in labels:
                label.setText("")
            return
        longest = self._dataset.longest_text
        estimate = estimate_run_memory(cfg, model_config, self._num_classes(), longest)
        device = device_memory(cfg.device)
        text = memory_line(estimate, device)
        tip = memory_breakdown(estimate, "longest text of the dataset" if longest else "max length")
        tight = is_tight(estimate.total, device.available)
        for label in labels:
            label.setText(text)
            label.setToolTip(tip)
            label.setStyleSheet(WARNING_STYLE if tight else "")
        self.memory_estimate = estimate

    def _field_for(self, problem: str) -> QWidget | None:
        """The field a problem is about: by the setting the core names (``Problem.field``), never
        by the words of its message (a path can mention "rank"); the window's own messages,
        plain strings, by their words."""
        d, m, lo, t = self._column.data, self._column.model, self._column.lora, self._column.training
        if isinstance(problem, Problem):
            by_field = {
                "lora.top_blocks": lo.top_blocks,
                "lora.rank": lo.rank,
                "lora.alpha": lo.alpha,
                "lora.dropout": lo.dropout,
                "lora.targets": lo.targets_box,
                "data.source": d.open_button,
                "data.train_fraction": d.train_pct,
                "data.val_fraction": d.val_pct,
                "data.max_length": d.max_length,
                "data.max_rows": d.open_button,
                "data.label_column": d.label_column,
                "data.text_column": d.text_column,
                "data.rename_labels": d.rename,
                "max_steps": t.max_steps,
                "epochs": t.epochs,
                "batch_size": t.batch_size,
                "grad_accum": t.grad_accum,
                "eval_every": t.eval_every,
                "eval_batches": t.eval_batches,
                "lr": t.lr,
                "weight_decay": t.weight_decay,
                "device": m.device_combo,
                "precision": m.precision_combo,
                "length_grouping": t.length_grouping,
                "warmup_steps": t.warmup_steps,
                "schedule": t.schedule,
                "early_stopping": t.early_stopping,
                "keep_best": t.keep_best,
                "seed": t.seed,
                "model": m.model_combo,
            }
            return by_field.get(problem.field)
        p = problem.lower()
        table = [
            ("top blocks", lo.top_blocks),
            ("rank", lo.rank),
            ("alpha", lo.alpha),
            ("dropout", lo.dropout),
            ("target", lo.targets_box),
            ("dataset", d.open_button),
            ("train fraction", d.train_pct),
            ("validation fraction", d.val_pct),
            ("train + validation", d.val_pct),
            ("max length", d.max_length),
            ("label column", d.label_column),
            ("text and label", d.label_column),
            ("max steps", t.max_steps),
            ("epochs", t.epochs),
            ("batch size", t.batch_size),
            ("grad accum", t.grad_accum),
            ("eval every", t.eval_every),
            ("eval batches", t.eval_batches),
            ("learning rate", t.lr),
            ("weight decay", t.weight_decay),
            ("device", m.device_combo),
            ("model", m.model_combo),
        ]
        return next((widget for key, widget in table if key in p), None)

    def _fields(self) -> list[QWidget]:
        d, m, lo, t = self._column.data, self._column.model, self._column.lora, self._column.training
        return [
            lo.top_blocks,
            lo.rank,
            lo.alpha,
            lo.dropout,
            lo.targets_box,
            d.open_button,
            d.train_pct,
            d.val_pct,
            d.max_length,
            d.label_column,
            d.rename,
            t.max_steps,
            t.epochs,
            t.batch_size,
            t.grad_accum,
            t.eval_every,
            t.eval_batches,
            t.lr,
            t.weight_decay,
            t.seed,
            t.length_grouping,
            t.warmup_steps,
            t.schedule,
            t.early_stopping,
            t.keep_best,
            m.device_combo,
            m.precision_combo,
            m.model_combo,
        ]
