"""Every training run keeps a folder: its settings, metric history, log, checkpoint and adapter.

<data dir>/runs/2026-11-28_13-05-12_gpt2_sms-spam/
    config.json          the TrainConfig, as JSON
    metrics.jsonl        one event per line (events.to_json), the curves' history
    log.txt              the lines the CLI and the window's log pane show
    checkpoint.safetensors   the resume state: LoRA + head + AdamW state + position, to resume or
                         extend the run (the file keeps this name so runs of earlier versions resume)
    adapter.safetensors  the trained adapter
    training.lock        locked while a process trains the run (how "running" differs from "interrupted")

A run's state (``run_state``) comes from its recorded events, in one place for the CLI and the
window.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import events as ev
from .config import SMS_SPAM, TrainConfig
from .errors import ConfigError, WorkbenchError
from .fileio import write_atomically
from .paths import runs_dir

RESUME_KEY = "lora_workbench_checkpoint"  # the resume file's metadata key (unchanged: old files load)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def create(cls, cfg: TrainConfig, parent: Path | None = None) -> RunFolder:
        parent = parent or runs_dir()
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        data = SMS_SPAM if cfg.data.source == SMS_SPAM else Path(cfg.data.source).stem
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{stamp}_{Path(cfg.model).name}_{data}")
        path = parent / base
        n = 1
        while path.exists():
            n += 1
            path = parent / f"{base}_{n}"
        path.mkdir(parents=True)
        run = cls(path)
        run.save_config(cfg)
        return run

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    @property
    def resume_path(self) -> Path:
        """The resume state. In the code "checkpoint" means a model's weights folder (as on the
        Hub); only the file name, which people and older runs know, says checkpoint here."""
        return self.path / "checkpoint.safetensors"

    @property
    def adapter_path(self) -> Path:
        return self.path / "adapter.safetensors"

    @property
    def lock_path(self) -> Path:
        return self.path / "training.lock"

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held while this process trains the run. The operating system lets go of it when the
        process ends, however it ends, so a crashed run never looks like a running one."""
        with open(self.lock_path, "ab") as f:
            if not _try_lock(f):
                raise ConfigError(f"Another process is training the run {self.path.name}; wait for it to end.")
            try:
                yield
            finally:
                _unlock(f)

    def is_training(self) -> bool:
        """Whether a process (this one included) holds the run's training lock now."""
        try:
            with open(self.lock_path, "rb") as f:
                if not _try_lock(f):
                    return True
                _unlock(f)
        except OSError:  # no lock file: never trained since locks existed, or unreadable
            pass
        return False

    def save_config(self, cfg: TrainConfig) -> None:
        self.config_path.write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(json.loads(self.config_path.read_text(encoding="utf-8")))

    def record(self, event) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(ev.to_json(event)) + "\n")

    def log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")

    def events(self) -> list:
        """The recorded history; a line cut short by a crash is skipped, not fatal."""
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(ev.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        return out


@dataclass(frozen=True)
class ReadOnlyRunFolder(RunFolder):
    """A run folder followed, never written: how torchrun's processes other than rank 0 hold the
    run (its path names the run in their events; rank 0 writes everything)."""

    def save_config(self, cfg: TrainConfig) -> None:
        pass

    def record(self, event) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        yield


def _try_lock(f) -> bool:
    """An exclusive lock on the open file ``f`` without waiting; False when someone holds it.
    ``flock`` locks belong to the open file, so a second open in the same process conflicts too."""
    try:
        if os.name == "nt":
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(f) -> None:
    if os.name == "nt":
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --- how a run stands ------------------------------------------------------------------------

RUN_STATES = ("finished", "stopped", "failed", "interrupted", "running")


@dataclass(frozen=True)
class RunOutcome:
    state: str  # one of RUN_STATES
    ended: ev.TrainingFinished | ev.TrainingFailed | None  # the end that decided it (None: no end)


def outcome(events: list, *, running: bool = False) -> RunOutcome:
    """How a run stands, from its recorded events: the way its latest attempt ended.

    An attempt begins at RunStarted and ends at the next TrainingFinished or TrainingFailed. With
    no end after the latest RunStarted the run is "running" when a process holds it (``running``)
    and "interrupted" otherwise (the window closed, the machine crashed), whatever an earlier
    attempt did: a stopped run that was resumed and then cut off is interrupted, not stopped. A
    failure after an attempt had ended, before any new RunStarted (an extension whose data was
    gone, Stop while loading), changed nothing in the run and leaves its state as it was.
    """
    ended = None
    for event in events:
        if isinstance(event, ev.RunStarted):
            ended = None
        elif isinstance(event, ev.TrainingFinished):
            ended = event
        elif isinstance(event, ev.TrainingFailed) and ended is None:
            ended = event
    if ended is None:
        return RunOutcome("running" if running else "interrupted", None)
    if isinstance(ended, ev.TrainingFailed):
        return RunOutcome("failed", ended)
    return RunOutcome("stopped" if ended.stopped else "finished", ended)


def run_outcome(run: RunFolder, events: list | None = None) -> RunOutcome:
    """``outcome`` of a run folder (its events read unless given), "running" while it is locked."""
    history = run.events() if events is None else events
    return outcome(history, running=run.is_training())


def run_state(run: RunFolder, events: list | None = None) -> str:
    """ "finished", "stopped", "failed", "interrupted" or "running": see ``outcome``."""
    return run_outcome(run, events).state


def list_runs(parent: Path | None = None) -> list[RunFolder]:
    """Run folders, newest first."""
    parent = parent or runs_dir()
    runs = [RunFolder(p) for p in parent.iterdir() if (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: r.path.name, reverse=True)


# --- the resume state -------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a run stands: optimiser steps done and the next batch to take."""

    step: int
    epoch: int  # 0-based epoch the next batch belongs to
    batch_in_epoch: int  # batches of that epoch already consumed
    examples_seen: int


def save_resume_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, position: Position) -> None:
    """LoRA + head + AdamW moments + position, as safetensors (no pickle), written atomically."""
    from safetensors.torch import save

    from .lora import trainable_state_dict

    tensors = {f"model.{k}": v.detach().float().cpu().contiguous() for k, v in trainable_state_dict(model).items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().float().cpu().contiguous()
    meta = {RESUME_KEY: json.dumps(position.__dict__)}
    write_atomically(path, save(tensors, metadata=meta))


def load_resume_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Position:
    from safetensors import SafetensorError, safe_open

    from .lora import trainable_state_dict

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        position = Position(**json.loads(meta[RESUME_KEY]))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkbenchError(f"Cannot resume from {path}: not a readable checkpoint ({exc})") from exc
    params = trainable_state_dict(model)
    wanted = {f"model.{k}" for k in params}
    if not wanted <= set(tensors):
        raise WorkbenchError(f"Checkpoint {path} was made with other LoRA settings; it cannot resume this run")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[f"model.{name}"])
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    if state:
        sd = optimizer.state_dict()
        sd["state"] = state
        optimizer.load_state_dict(sd)
    return position
