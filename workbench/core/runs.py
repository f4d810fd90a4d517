"""Every training run keeps a folder: its settings, metric history, log, checkpoint and adapter.

<data dir>/runs/2026-11-28_13-05-12_gpt2_sms-spam/
    config.json          the TrainConfig, as JSON
    metrics.jsonl        one event per line (events.to_json), the curves' history
    log.txt              the lines the CLI and the window's log pane show
    checkpoint.safetensors   the resume state: LoRA + head + AdamW state + position, to resume or
                         extend the run (the file keeps this name so runs of earlier versions resume)
    adapter.safetensors  the trained adapter (of the latest attempt)
    adapter-epoch3.safetensors   the adapter a finished run had before "train more" extended it
                         (one per extension; ``keep_finished_adapter``)
    about.json           the name and notes a person gave the run (``run_table``)
    training.lock        locked while a process trains the run (how "running" differs from "interrupted")

A run's state (``run_state``) comes from its recorded events, in one place for the CLI and the
window.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import events as ev
from .config import SMS_SPAM, TrainConfig
from .errors import ConfigError, WorkbenchError
from .fileio import create_unique_folder, open_regular_file, read_json, require_regular_file, write_atomically
from .paths import runs_dir

RESUME_KEY = "lora_workbench_checkpoint"  # the resume file's metadata key (unchanged: old files load)
MAX_METRICS_BYTES = 256 * 2**20  # a long run writes a few MB
# A look at whether a run trains (``is_training``, from any window or command) holds its lock for
# microseconds; a trainer holds it for minutes. A trainer that finds it held waits this long
# before refusing, so a look never makes a run fail to start.
LOCK_WAIT_S = 1.0
KEPT_ADAPTER_PREFIX = "adapter-"  # adapter-epoch3.safetensors: a finished run's adapter before an extension


class DamagedRunError(WorkbenchError, ValueError):
    """A run folder's file that cannot be read (also a ValueError: callers of ``config()`` that
    predate this class catch that)."""


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def create(cls, cfg: TrainConfig, parent: Path | None = None) -> RunFolder:
        parent = parent or runs_dir()
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        data = SMS_SPAM if cfg.data.source == SMS_SPAM else Path(cfg.data.source).stem
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{stamp}_{Path(cfg.model).name}_{data}")
        run = cls(create_unique_folder(parent, base))
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

    def earlier_adapters(self) -> list[Path]:
        """The adapters kept when the run was extended (``keep_finished_adapter``), oldest first."""
        kept = [p for p in self.path.glob(f"{KEPT_ADAPTER_PREFIX}*.safetensors") if p.is_file()]
        return sorted(kept, key=lambda p: p.stat().st_mtime)

    def keep_finished_adapter(self) -> Path | None:
        """Before a finished run trains more epochs, keep its adapter beside the new one.

        The extension writes adapter.safetensors again; the adapter the run finished with is
        copied first to adapter-epochN.safetensors (N: the epochs it had), or adapter-stepN when
        a step limit ended it before its last epoch. Decided from the recorded events alone: the
        caller holds the training lock, so ``run_state`` would say "running". Returns the kept
        file, or None when the run had not finished (a resumed stop continues the same adapter).
        """
        events = self.events()
        ended = outcome(events).ended
        if not isinstance(ended, ev.TrainingFinished) or ended.stopped or not self.adapter_path.is_file():
            return None
        started = [e for e in events if isinstance(e, ev.RunStarted)]
        whole_epochs = started and ended.step == started[-1].steps_per_epoch * started[-1].epochs
        label = f"epoch{started[-1].epochs}" if whole_epochs else f"step{ended.step}"
        kept = self.path / f"{KEPT_ADAPTER_PREFIX}{label}.safetensors"
        if not kept.exists():  # an extension retried after a failure: already kept
            with open_regular_file(self.adapter_path, "Its adapter", DamagedRunError) as f:
                write_atomically(kept, f.read())
        return kept

    @property
    def best_adapter_path(self) -> Path:
        """keep_best's snapshot: the LoRA and head of the epoch with the lowest validation loss."""
        return self.path / "best-adapter.safetensors"

    @property
    def lock_path(self) -> Path:
        return self.path / "training.lock"

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held while this process trains the run. The operating system lets go of it when the
        process ends, however it ends, so a crashed run never looks like a running one."""
        with open(self.lock_path, "ab") as f:
            deadline = time.monotonic() + LOCK_WAIT_S
            while not _try_lock(f):
                if time.monotonic() >= deadline:
                    raise ConfigError(f"Another process is training the run {self.path.name}; wait for it to end.")
                time.sleep(0.02)
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
        write_atomically(self.config_path, json.dumps(cfg.to_dict(), indent=2).encode("utf-8"))

    def config(self) -> TrainConfig:
        values = read_json(self.config_path, "The run's settings", DamagedRunError)
        try:
            return TrainConfig.from_dict(values)
        except (TypeError, ValueError, AttributeError) as exc:
            raise DamagedRunError(f"The run's settings {self.config_path} are damaged ({exc})") from exc

    def record(self, event) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(ev.to_json(event)) + "\n")

    def log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")

    def events(self) -> list:
        """The recorded history; a line cut short by a crash, or damaged, is skipped, not fatal."""
        return self.read_events()[0]

    def read_events(self) -> tuple[list, str | None]:
        """The recorded history, and what is damaged in it (None when nothing is).

        Each line is read on its own, so one bad line (not UTF-8, not JSON, nested too deeply, a
        field of the wrong type) costs that line only; a last line without its newline is a
        write cut short by a crash, not damage. A metrics.jsonl that is not a regular file, or
        is larger than MAX_METRICS_BYTES, gives no events.
        """
        if not os.path.lexists(self.metrics_path):
            return [], None
        try:
            with open_regular_file(self.metrics_path, "Its metrics.jsonl", DamagedRunError) as f:
                raw = f.read(MAX_METRICS_BYTES + 1)
        except DamagedRunError as exc:
            return [], str(exc)
        except OSError as exc:
            return [], f"its metrics.jsonl cannot be read: {exc.strerror or exc}"
        if len(raw) > MAX_METRICS_BYTES:
            return [], f"its metrics.jsonl is larger than {MAX_METRICS_BYTES // 2**20} MB"
        lines = raw.split(b"\n")
        cut_short = lines.pop()  # b"" after a final newline
        out, damaged = [], 0
        for line in lines:
            try:
                out.append(ev.from_json(json.loads(line.decode("utf-8"))))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                damaged += int(bool(line.strip()))
        if cut_short.strip():
            try:
                out.append(ev.from_json(json.loads(cut_short.decode("utf-8"))))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                pass
        problem = f"{damaged} of {len(lines)} lines of its metrics.jsonl are unreadable" if damaged else None
        return out, problem


@dataclass(frozen=True)
class RunSummary:
    """One line of a run listing."""

    name: str
    path: Path
    state: str  # "finished", "stopped", "failed", "running or crashed", or "damaged"
    test_accuracy: float | None
    problem: str = ""  # for "damaged": what is wrong with the run folder


def summarize(run: RunFolder) -> RunSummary:
    """How the run's latest attempt ended, from its metrics.jsonl; a damaged file is reported,
    never raised, so one damaged run cannot hide the others in a listing."""
    events, problem = run.read_events()
    if problem:
        return RunSummary(run.path.name, run.path, "damaged", None, problem)
    result = run_outcome(run, events)  # the one rule for a run's state (see ``outcome``)
    state, ended = result.state, result.ended
    metrics = getattr(ended, "metrics", None)
    return RunSummary(run.path.name, run.path, state, metrics.accuracy if metrics else None)


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

    require_regular_file(path, "Checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        position = Position(**json.loads(meta[RESUME_KEY]))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkbenchError(f"Cannot resume from {path}: not a readable checkpoint ({exc})") from exc
    params = trainable_state_dict(model)
    fits = all(
        f"model.{k}" in tensors and tuple(tensors[f"model.{k}"].shape) == tuple(p.shape) for k, p in params.items()
    )
    if not fits:
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


# --------------------------------------------------------------------------- settings files


def save_settings(cfg: TrainConfig, path: str | Path) -> Path:
    """A run's settings as a file to load again (the window's presets, ``train --settings``): the
    format of a run folder's config.json, so any run's settings load the same way."""
    path = Path(path)
    write_atomically(path, json.dumps(cfg.to_dict(), indent=2).encode("utf-8"))
    return path


def load_settings(path: str | Path) -> TrainConfig:
    """The settings in ``path`` (a saved preset or a run folder's config.json); ConfigError with one
    line for a file that is not one. Whether the settings can run is ``TrainConfig.validate``'s say."""
    values = read_json(path, "The settings file", ConfigError)
    if not isinstance(values, dict):
        raise ConfigError(f"{path} is not a settings file (it holds {type(values).__name__}, not an object)")
    try:
        cfg = TrainConfig.from_dict(values)
        cfg.validate()  # a value of the wrong type fails here rather than later, in a run
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a valid settings file ({exc})") from exc
    return cfg
