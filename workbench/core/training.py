"""Training as an iterator of events, the book's chapter 6 loop with LoRA (appendix E).

``train(cfg)`` yields Status while it fetches weights and reads data, then RunStarted, a StepDone
per optimiser step, Evaluated every ``eval_every`` steps and at each epoch's end, EpochEnded, and
finally TrainingFinished, or TrainingFailed with a message for a person. Nothing here knows about
Qt: the CLI prints the events, the window plots them, a test collects them with ``list()``.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import data as datamod
from . import hub
from .adapters import AdapterInfo, save_adapter
from .classify import predict_probabilities
from .config import TrainConfig
from .device import autocast, describe, is_out_of_memory, pick_device, pick_precision
from .errors import Cancelled, ConfigError, WorkbenchError
from .events import (
    EpochEnded,
    Evaluated,
    Misclassified,
    RunStarted,
    Status,
    StepDone,
    TestMetrics,
    TrainingFailed,
    TrainingFinished,
)
from .lora import build_lora_model
from .model import GPT2Classifier, load_model_config, param_count
from .runs import Position, RunFolder, load_checkpoint, save_checkpoint
from .thresholds import decide
from .tokenizer import EOT_ID, load_tokenizer

MAX_MISCLASSIFIED = 200  # kept in the final metrics for the Results list


@dataclass
class EncodedSplit:
    token_ids: list[list[int]]
    labels: list[int]
    texts: list[str]


@dataclass
class Prepared:
    """Everything a run needs before its first step."""

    checkpoint: Path
    label_names: tuple[str, ...]
    train: EncodedSplit
    val: EncodedSplit
    test: EncodedSplit
    truncated: int
    max_length: int
    model: GPT2Classifier
    device: torch.device
    precision: str
    dropped_empty: int = 0
    dropped_duplicates: int = 0


def train(
    cfg: TrainConfig,
    *,
    stop: threading.Event | None = None,
    run: RunFolder | None = None,
    resume: str | Path | None = None,
) -> Iterator:
    """Run one training; see the module docstring for the events. ``stop`` ends it within one step
    (the adapter and a checkpoint are still written); ``resume`` continues from a checkpoint."""
    stop = stop or threading.Event()
    try:
        cfg.check()
        run = run or _run_folder_for(cfg, resume)
    except WorkbenchError as exc:
        yield TrainingFailed(str(exc), kind="config")
        return
    except OSError as exc:
        yield TrainingFailed(
            f"Cannot create the run folder {exc.filename or ''}: {exc.strerror or exc}. Set "
            "WORKBENCH_DATA_DIR to a writable folder with free space.",
            kind="config",
        )
        return
    try:
        for event in _train(cfg, stop, run, resume):
            if not isinstance(event, (Status, StepDone)):
                run.record(event)
            yield event
    except Cancelled:
        yield _failed(run, TrainingFailed("Stopped before training began.", kind="cancelled", run_dir=str(run.path)))
    except WorkbenchError as exc:
        kind = "config" if isinstance(exc, ConfigError) else "error"
        yield _failed(run, TrainingFailed(str(exc), kind=kind, run_dir=str(run.path)))
    except (RuntimeError, MemoryError) as exc:
        if not (isinstance(exc, MemoryError) or is_out_of_memory(exc)):
            raise
        yield _failed(run, out_of_memory(cfg, run))
    except OSError as exc:  # the run folder's disk is full or gone
        where = exc.filename or run.path
        yield _failed(
            run,
            TrainingFailed(
                f"Could not write {where}: {exc.strerror or exc}. Free some disk space, then resume the "
                "run from its last checkpoint.",
                run_dir=str(run.path),
            ),
        )


def _run_folder_for(cfg: TrainConfig, resume: str | Path | None) -> RunFolder:
    """A resumed (or extended) run continues in its own folder; a new run gets a new one."""
    if resume is not None:
        if not Path(resume).is_file():
            raise WorkbenchError(f"Checkpoint {resume} does not exist")
        folder = RunFolder(Path(resume).parent)
        if folder.config_path.is_file():
            folder.save_config(cfg)  # e.g. more epochs when extending a finished run
            return folder
    return RunFolder.create(cfg)


def out_of_memory(cfg: TrainConfig, run: RunFolder) -> TrainingFailed:
    half = max(1, cfg.batch_size // 2)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return TrainingFailed(
        f"Out of memory with batch size {cfg.batch_size}. Try a smaller batch (e.g. {half} with "
        f"gradient accumulation {cfg.grad_accum * 2}, the same effective batch), a smaller max length, "
        "or a smaller model.",
        kind="oom",
        retry_batch_size=half if cfg.batch_size > 1 else None,
        run_dir=str(run.path),
    )


def _failed(run: RunFolder, event: TrainingFailed) -> TrainingFailed:
    try:
        run.record(event)
        run.log(f"Failed: {event.message}")
    except OSError:
        pass  # the failure may be the full disk itself; the event still reaches the user
    return event


def _train(cfg: TrainConfig, stop: threading.Event, run: RunFolder, resume) -> Iterator:
    prepared = yield from prepare(cfg, stop)
    model, device = prepared.model, prepared.device
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    position = load_checkpoint(Path(resume), model, optimizer) if resume else Position(0, 0, 0, 0)

    n_batches = datamod.count_batches(len(prepared.train.labels), cfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    started = RunStarted(
        run_dir=str(run.path),
        device=describe(device),
        precision=prepared.precision,
        label_names=prepared.label_names,
        n_train=len(prepared.train.labels),
        n_val=len(prepared.val.labels),
        n_test=len(prepared.test.labels),
        truncated=prepared.truncated,
        max_length=prepared.max_length,
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        trainable_params=param_count(model, trainable_only=True),
        total_params=param_count(model),
        start_step=position.step,
        dropped_empty=prepared.dropped_empty,
        dropped_duplicates=prepared.dropped_duplicates,
    )
    run.log(
        f"Training {cfg.model} on {started.device} ({started.precision}): "
        f"{started.n_train}/{started.n_val}/{started.n_test} examples, {started.trainable_params:,} trainable"
    )
    yield started

    clock = Throughput(total_steps, already_done=position.step)
    step, seen = position.step, position.examples_seen
    for epoch in range(position.epoch, cfg.epochs):
        skip = position.batch_in_epoch if epoch == position.epoch else 0
        batches = _epoch_batches(prepared, cfg, epoch)
        for index in range(skip, len(batches), cfg.grad_accum):
            if stop.is_set() or step >= total_steps:
                break
            micro = batches[index : index + cfg.grad_accum]
            loss, tokens = train_step(model, optimizer, micro, prepared)
            step += 1
            seen += sum(len(b.labels) for b in micro)
            rate = clock.update(sum(len(b.labels) for b in micro), tokens)
            yield StepDone(
                step,
                epoch + 1,
                seen,
                loss,
                rate.examples_per_s,
                rate.tokens_per_s,
                rate.elapsed_s,
                rate.eta_s,
                total_steps,
            )
            if step % cfg.eval_every == 0:
                yield quick_evaluation(model, prepared, cfg, step, epoch + 1, seen)
            position = Position(step, epoch, index + len(micro), seen)
        if position.epoch != epoch or position.batch_in_epoch < len(batches):
            break  # stopped, or max_steps reached, inside this epoch
        position = Position(step, epoch + 1, 0, seen)
        val_loss, val_acc = evaluate(model, prepared.val, prepared, cfg.batch_size)
        yield Evaluated(step, epoch + 1, seen, math.nan, val_loss, math.nan, val_acc, full=True)
        save_checkpoint(run.checkpoint_path, model, optimizer, position)
        run.log(f"Epoch {epoch + 1}: validation loss {val_loss:.3f}, accuracy {val_acc:.1%}")
        yield EpochEnded(epoch + 1, step, seen, val_loss, val_acc, str(run.checkpoint_path))

    stopped = stop.is_set() and step < total_steps
    save_checkpoint(run.checkpoint_path, model, optimizer, position)
    metrics = None if stopped else test_metrics(model, prepared, cfg.batch_size)
    info = adapter_info(cfg, prepared, metrics)
    save_adapter(run.adapter_path, model, info)
    run.log(
        ("Stopped" if stopped else "Finished")
        + f" after {step} steps"
        + (f"; test accuracy {metrics.accuracy:.1%}" if metrics else "")
    )
    yield TrainingFinished(
        stopped, step, seen, clock.elapsed(), str(run.path), str(run.adapter_path), str(run.checkpoint_path), metrics
    )


# --- setup -----------------------------------------------------------------------------------


def prepare(cfg: TrainConfig, stop: threading.Event) -> Iterator:
    """Fetch weights, read and split the data, tokenize, build the model (a generator that yields
    Status events and returns a Prepared)."""
    checkpoint = yield from run_with_progress(
        f"Loading {cfg.model} weights",
        lambda progress: hub.resolve_checkpoint(cfg.model, progress=progress, stop=stop),
        stop,
    )
    table = yield from run_with_progress(
        "Reading the dataset", lambda progress: datamod.load_table(cfg.data, progress=progress, stop=stop), stop
    )
    splits = datamod.make_splits(table, cfg.data)
    yield Status("Tokenizing")
    tokenizer = load_tokenizer(checkpoint)
    model_config = load_model_config(checkpoint)
    max_length = min(cfg.data.max_length or model_config.n_positions, model_config.n_positions)
    encoded, truncated = {}, 0
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        ids, cut = datamod.encode_texts(part.texts, tokenizer, max_length)
        encoded[name] = EncodedSplit(ids, list(part.labels), list(part.texts))
        truncated += cut
    yield Status("Building the model")
    device = pick_device(cfg.device)
    model = build_lora_model(checkpoint, cfg.lora, len(splits.label_names), cfg.seed).to(device)
    return Prepared(
        checkpoint=checkpoint,
        label_names=tuple(splits.label_names),
        train=encoded["train"],
        val=encoded["val"],
        test=encoded["test"],
        truncated=truncated,
        max_length=max_length,
        dropped_empty=splits.dropped_empty,
        dropped_duplicates=splits.dropped_duplicates,
        model=model,
        device=device,
        precision=pick_precision(cfg.precision, device),
    )


def run_with_progress(message: str, work: Callable, stop: threading.Event) -> Iterator:
    """Run ``work(progress)`` on a helper thread, yielding its progress as Status events.

    Downloads report progress through callbacks, but a generator can only yield from its own
    frame; a queue carries the callbacks' values back here.
    """
    updates: queue.Queue = queue.Queue()
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = work(lambda done, total, text="": updates.put((done, total, text)))
        except BaseException as exc:  # re-raised on the caller's thread below
            outcome["error"] = exc
        finally:
            updates.put(None)

    yield Status(message)
    thread = threading.Thread(target=target, name=f"workbench: {message}", daemon=True)
    thread.start()
    while (item := updates.get()) is not None:
        done, total, text = item
        yield Status(text or message, done, total)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# --- steps and evaluation --------------------------------------------------------------------


def _epoch_batches(prepared: Prepared, cfg: TrainConfig, epoch: int) -> list[datamod.Batch]:
    """This epoch's batches, in an order fixed by (seed, epoch) so a resumed run sees the same."""
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    return list(
        datamod.iterate_batches(
            prepared.train.token_ids,
            prepared.train.labels,
            cfg.batch_size,
            pad_id=EOT_ID,
            shuffle=True,
            generator=generator,
            sort_chunk=cfg.length_grouping,
        )
    )


def train_step(model: GPT2Classifier, optimizer, micro_batches: list, prepared: Prepared) -> tuple[float, int]:
    """One optimiser step over one or more micro-batches (gradient accumulation)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = sum(len(b.labels) for b in micro_batches)
    loss_sum, tokens = 0.0, 0
    for batch in micro_batches:
        ids, lengths, labels = _to_device(batch, prepared.device)
        with autocast(prepared.device, prepared.precision):
            logits = model(ids, lengths)
        # Weight each micro-batch by its size so accumulation equals one big batch exactly.
        loss = F.cross_entropy(logits.float(), labels, reduction="sum") / total
        loss.backward()
        loss_sum += loss.item()
        tokens += int(batch.lengths.sum())
    optimizer.step()
    return loss_sum, tokens


def _to_device(batch: datamod.Batch, device: torch.device):
    """On CUDA, copy from pinned memory without blocking, so the copy overlaps the GPU's work."""
    tensors = (batch.input_ids, batch.lengths, batch.labels)
    if device.type != "cuda":
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


def evaluate(
    model, split: EncodedSplit, prepared: Prepared, batch_size: int, limit: int | None = None
) -> tuple[float, float]:
    """Mean loss and accuracy on the first ``limit`` examples of a split (all when None)."""
    ids = split.token_ids[:limit] if limit else split.token_ids
    labels = torch.tensor(split.labels[: len(ids)])
    if not len(ids):
        return math.nan, math.nan
    probs = predict_probabilities(model, ids, batch_size, prepared.device, prepared.precision)
    return mean_loss(probs, labels), (probs.argmax(-1) == labels).float().mean().item()


def mean_loss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Cross-entropy from probabilities (N, C) already computed for the predictions."""
    return F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels).item()


def quick_evaluation(model, prepared: Prepared, cfg: TrainConfig, step: int, epoch: int, seen: int) -> Evaluated:
    """The book's evaluate_model: a few batches of train and validation data, for the curves."""
    n = cfg.eval_batches * cfg.batch_size
    generator = torch.Generator().manual_seed(cfg.seed + step)
    pick = torch.randperm(len(prepared.train.labels), generator=generator)[:n].tolist()
    sample = EncodedSplit([prepared.train.token_ids[i] for i in pick], [prepared.train.labels[i] for i in pick], [])
    train_loss, train_acc = evaluate(model, sample, prepared, cfg.batch_size)
    val_loss, val_acc = evaluate(model, prepared.val, prepared, cfg.batch_size, limit=n)
    return Evaluated(step, epoch, seen, train_loss, val_loss, train_acc, val_acc)


def test_metrics(model, prepared: Prepared, batch_size: int) -> TestMetrics:
    split = prepared.test
    probs = predict_probabilities(model, split.token_ids, batch_size, prepared.device, prepared.precision)
    return metrics_from_probabilities(probs, split.labels, prepared.label_names, split.texts)


def metrics_from_probabilities(
    probs: torch.Tensor,
    labels: list[int],
    names: tuple[str, ...],
    texts: list[str] | None = None,
    threshold: float | None = None,
) -> TestMetrics:
    """Test metrics from predicted probabilities (N, C); with ``texts``, the misclassified ones too;
    decided by argmax, or by a two-class ``threshold`` (thresholds.decide)."""
    predicted = decide(probs, threshold).tolist()
    wrong = (
        [
            Misclassified(texts[i], names[t], names[p], round(float(probs[i, p]), 4))
            for i, (t, p) in enumerate(zip(labels, predicted))
            if t != p
        ]
        if texts
        else []
    )
    loss = mean_loss(probs, torch.tensor(labels))
    return classification_metrics(labels, predicted, names, loss, tuple(wrong[:MAX_MISCLASSIFIED]))


def classification_metrics(
    true: list[int], predicted: list[int], names: tuple[str, ...], loss: float = math.nan, wrong: tuple = ()
) -> TestMetrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true labels)."""
    k = len(names)
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(true, predicted):
        confusion[t][p] += 1
    precision, recall, f1, support = [], [], [], []
    for c in range(k):
        tp = confusion[c][c]
        predicted_c = sum(confusion[r][c] for r in range(k))
        actual_c = sum(confusion[c])
        pr = tp / predicted_c if predicted_c else 0.0
        rc = tp / actual_c if actual_c else 0.0
        precision.append(pr)
        recall.append(rc)
        f1.append(2 * pr * rc / (pr + rc) if pr + rc else 0.0)
        support.append(actual_c)
    accuracy = sum(confusion[c][c] for c in range(k)) / max(1, len(true))
    return TestMetrics(
        accuracy,
        loss,
        tuple(names),
        tuple(precision),
        tuple(recall),
        tuple(f1),
        tuple(support),
        tuple(tuple(row) for row in confusion),
        wrong,
    )


def adapter_info(cfg: TrainConfig, prepared: Prepared, metrics: TestMetrics | None) -> AdapterInfo:
    summary = {}
    if metrics:
        summary = {
            "test_accuracy": metrics.accuracy,
            "test_loss": metrics.loss,
            "f1": dict(zip(metrics.label_names, metrics.f1)),
        }
    return AdapterInfo(
        base_model=cfg.model,
        model_config=prepared.model.config,
        lora=cfg.lora,
        label_names=prepared.label_names,
        max_length=prepared.max_length,
        pad_token_id=EOT_ID,
        metrics=summary,
    )


class Throughput:
    """Examples/s and tokens/s smoothed over recent steps, and the time left."""

    def __init__(self, total_steps: int, already_done: int = 0, smoothing: float = 0.1):
        self.total_steps = total_steps
        self.steps = already_done
        self.start = self.last = time.perf_counter()
        self.smoothing = smoothing
        self.examples_per_s = self.tokens_per_s = 0.0
        self.seconds_per_step = 0.0

    @dataclass(frozen=True)
    class Rate:
        examples_per_s: float
        tokens_per_s: float
        elapsed_s: float
        eta_s: float

    def update(self, examples: int, tokens: int) -> Throughput.Rate:
        now = time.perf_counter()
        dt = max(now - self.last, 1e-9)
        self.last = now
        self.steps += 1
        a = self.smoothing if self.examples_per_s else 1.0
        self.examples_per_s += a * (examples / dt - self.examples_per_s)
        self.tokens_per_s += a * (tokens / dt - self.tokens_per_s)
        self.seconds_per_step += a * (dt - self.seconds_per_step)
        eta = max(0, self.total_steps - self.steps) * self.seconds_per_step
        return self.Rate(self.examples_per_s, self.tokens_per_s, now - self.start, eta)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
