"""What a training run reports, as frozen dataclasses of plain Python values.

Events never carry tensors or the trainer itself, so they can cross threads, be written as JSON
lines, and be compared in tests. ``to_json``/``from_json`` give the run folder's metrics history.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass


@dataclass(frozen=True)
class Status:
    """A phase without steps: downloading weights, reading data, building the model before the
    first step; scoring the test set after the last."""

    message: str
    done: int | None = None  # units done (bytes, rows), when the stage has a size
    total: int | None = None


@dataclass(frozen=True)
class RunStarted:
    run_dir: str
    device: str  # "CUDA: NVIDIA …", "CPU (2 threads)"
    precision: str  # "fp32" or "bf16"
    label_names: tuple[str, ...]
    n_train: int
    n_val: int
    n_test: int
    truncated: int  # texts cut to max_length tokens
    max_length: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    trainable_params: int
    total_params: int
    start_step: int = 0  # > 0 when resuming
    dropped_empty: int = 0  # rows without text or label, left out
    dropped_duplicates: int = 0  # exact repeats, left out
    precision_reason: str = ""  # why this precision ("bf16 0.73x the speed of fp32 here: using fp32")
    # classes written several ways in the file, merged: class name -> its spellings as written
    merged_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    processes: int = 1  # torchrun's processes sharing each step (one per GPU); 1 alone


@dataclass(frozen=True)
class StepDone:
    step: int  # optimiser steps so far
    epoch: int  # 1-based
    examples_seen: int
    loss: float  # this step's training loss
    examples_per_s: float  # training throughput, smoothed
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    total_steps: int


@dataclass(frozen=True)
class Evaluated:
    """Loss and accuracy on a few train and validation batches (the book's eval_freq/eval_iter),
    or on the whole validation set at an epoch's end (``full``)."""

    step: int
    epoch: int
    examples_seen: int
    train_loss: float
    val_loss: float
    train_accuracy: float
    val_accuracy: float
    full: bool = False


@dataclass(frozen=True)
class EpochEnded:
    epoch: int
    step: int
    examples_seen: int
    val_loss: float
    val_accuracy: float
    resume_path: str = ""  # the resume state written at this epoch's end


@dataclass(frozen=True)
class Misclassified:
    text: str
    true_label: str
    predicted_label: str
    probability: float  # the model's probability for the label it predicted


@dataclass(frozen=True)
class EvaluationMetrics:
    """Scores of a whole split (the test split at a run's end; any split in ``workbench eval``)."""

    accuracy: float
    loss: float
    label_names: tuple[str, ...]
    precision: tuple[float, ...]  # per class, in label order
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted]
    misclassified: tuple[Misclassified, ...] = ()


@dataclass(frozen=True)
class TrainingFinished:
    stopped: bool  # True when the user stopped it early
    step: int
    examples_seen: int
    elapsed_s: float
    run_dir: str
    adapter_path: str  # the adapter as it stood at the end (also when stopped)
    resume_path: str = ""  # the resume state (LoRA + head + optimiser + step)
    metrics: EvaluationMetrics | None = None  # test-set metrics; None when stopped


@dataclass(frozen=True)
class TrainingFailed:
    message: str  # for a person: what went wrong and what to try
    # "error" (a download or write failed), "oom" (out of memory), "config" (settings), "input" (the dataset,
    # model or adapter files), "cancelled" (stopped before the first step), "diverged" (NaN loss)
    kind: str = "error"
    retry_batch_size: int | None = None  # for "oom": a batch size that may fit
    run_dir: str = ""


Event = Status | RunStarted | StepDone | Evaluated | EpochEnded | TrainingFinished | TrainingFailed
_TYPES = {
    cls.__name__: cls for cls in (Status, RunStarted, StepDone, Evaluated, EpochEnded, TrainingFinished, TrainingFailed)
}


def to_json(event) -> dict:
    return {"type": type(event).__name__, **asdict(event)}


def from_json(d: dict):
    """Rebuild an event written by ``to_json`` (nested metrics included). Every field must have
    its declared type (a run folder's file may be damaged or edited: an accuracy that is a string
    would fail only later, when printed), else TypeError; KeyError or ValueError for other damage."""
    d = dict(d)
    cls = _TYPES[d.pop("type")]
    if "checkpoint" in d:  # histories written before the resume file had its own name
        d.setdefault("resume_path", d.pop("checkpoint"))
    if cls is TrainingFinished and d.get("metrics"):
        d["metrics"] = _metrics_from_dict(d["metrics"])
    names = {f.name for f in fields(cls)}
    values = {k: _tuples(v) for k, v in d.items() if k in names}
    return check_types(cls(**values))


def check_types(event):
    """``event`` itself when each field holds its annotated type (nested dataclasses included)."""
    hints = _type_hints(type(event))
    for f in fields(event):
        if not _has_type(getattr(event, f.name), hints[f.name]):
            raise TypeError(f"{type(event).__name__}.{f.name} holds {type(getattr(event, f.name)).__name__}")
    return event


@functools.cache
def _type_hints(cls: type) -> dict:
    """Once per event class: ``get_type_hints`` compiles each string annotation on every call, 3/4
    of the time reading a run's history took (200 runs of 133 events: 4.0 s, 0.6 s with this)."""
    return typing.get_type_hints(cls)


def _has_type(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in typing.get_args(hint))
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_has_type(k, key) and _has_type(v, item) for k, v in value.items())
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(_has_type(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return type(value) is int
    if is_dataclass(hint):
        try:
            return isinstance(value, hint) and check_types(value) is value
        except TypeError:
            return False
    return isinstance(value, hint)


def _tuples(value):
    """JSON's lists back to the tuples the events hold (also inside dicts)."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return value


def _metrics_from_dict(m: dict) -> EvaluationMetrics:
    m = dict(m)
    m["misclassified"] = tuple(Misclassified(**x) for x in m.get("misclassified", ()))
    m["confusion"] = tuple(tuple(row) for row in m["confusion"])
    for key in ("label_names", "precision", "recall", "f1", "support"):
        m[key] = tuple(m[key])
    return EvaluationMetrics(**m)
