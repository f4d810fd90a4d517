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
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import events as ev
from .config import TrainConfig
from .errors import WorkbenchError
from .fileio import create_unique_folder, read_json, require_regular_file, write_atomically
from .paths import runs_dir

CHECKPOINT_KEY = "lora_workbench_checkpoint"


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
