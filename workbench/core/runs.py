"""Every training run keeps a folder: its settings, metric history, log, checkpoint and adapter.

<data dir>/runs/2026-11-28_13-05-12_gpt2_sms-spam/
    config.json          the TrainConfig, as JSON
    metrics.jsonl        one event per line (events.to_json), the curves' history
    log.txt              the lines the CLI and the window's log pane show
    checkpoint.safetensors   LoRA + head + AdamW state + position, to resume or extend
    adapter.safetensors  the trained adapter
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import events as ev
from .config import TrainConfig
from .errors import WorkbenchError
from .fileio import create_unique_folder, open_regular_file, read_json, require_regular_file, write_atomically
from .paths import runs_dir

CHECKPOINT_KEY = "lora_workbench_checkpoint"
MAX_METRICS_BYTES = 256 * 2**20  # a long run writes a few MB


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
        data = "sms-spam" if cfg.data.source == "sms-spam" else Path(cfg.data.source).stem
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
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def adapter_path(self) -> Path:
        return self.path / "adapter.safetensors"

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
    ended = next((e for e in reversed(events) if isinstance(e, (ev.TrainingFinished, ev.TrainingFailed))), None)
    if ended is None:
        state = "running or crashed"
    elif isinstance(ended, ev.TrainingFailed):
        state = "failed"
    else:
        state = "stopped" if ended.stopped else "finished"
    metrics = getattr(ended, "metrics", None)
    return RunSummary(run.path.name, run.path, state, metrics.accuracy if metrics else None)


def list_runs(parent: Path | None = None) -> list[RunFolder]:
    """Run folders, newest first."""
    parent = parent or runs_dir()
    runs = [RunFolder(p) for p in parent.iterdir() if (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: r.path.name, reverse=True)


# --- resumable checkpoints -------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a run stands: optimiser steps done and the next batch to take."""

    step: int
    epoch: int  # 0-based epoch the next batch belongs to
    batch_in_epoch: int  # batches of that epoch already consumed
    examples_seen: int


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, position: Position) -> None:
    """LoRA + head + AdamW moments + position, as safetensors (no pickle), written atomically."""
    from safetensors.torch import save

    from .lora import trainable_state_dict

    tensors = {f"model.{k}": v.detach().float().cpu().contiguous() for k, v in trainable_state_dict(model).items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().float().cpu().contiguous()
    meta = {CHECKPOINT_KEY: json.dumps(position.__dict__)}
    write_atomically(path, save(tensors, metadata=meta))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Position:
    from safetensors import SafetensorError, safe_open

    from .lora import trainable_state_dict

    require_regular_file(path, "Checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        position = Position(**json.loads(meta[CHECKPOINT_KEY]))
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
