"""Training as an iterator of events, the book's chapter 6 loop with LoRA (appendix E).

``train(cfg)`` yields Status while it fetches weights and reads data, then RunStarted, a StepDone
per optimiser step, Evaluated every ``eval_every`` steps and at each epoch's end, EpochEnded, and
finally TrainingFinished, or TrainingFailed with a message for a person. Nothing here knows about
Qt: the CLI prints the events, the window plots them, a test collects them with ``list()``.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from . import data as datamod
from . import distributed, hub
from .adapters import AdapterInfo, load_adapter_weights, read_adapter, save_adapter
from .config import TrainConfig, resume_problems
from .data import EncodedSplit
from .device import autocast, describe, evaluation_batch_size, is_out_of_memory, padding_multiple
from .errors import (
    AdapterError,
    Cancelled,
    CheckpointError,
    ConfigError,
    DataError,
    Diverged,
    NotFinite,
    WorkbenchError,
)
from .evaluate import loss_and_accuracy, predict_probabilities, score_split
from .events import (
    EpochEnded,
    Evaluated,
    EvaluationMetrics,
    RunStarted,
    Status,
    StepDone,
    TrainingFailed,
    TrainingFinished,
)
from .fileio import check_outputs, require_regular_file
from .lora import build_lora_model
from .model import GPT2Classifier, load_model_config, param_count, store_frozen_weights
from .precision import choose_precision
from .runs import Position, ReadOnlyRunFolder, RunFolder, load_resume_state, save_resume_state
from .tokenizer import EOT_ID, load_tokenizer

# A run stopped before its first step writes nothing: an adapter at the output stays as it was.
STOPPED_BEFORE_TRAINING = "Stopped before training: no adapter written."

# Evaluations during training: shared out between torchrun's processes, the plain one alone.
SHARED_PREDICT = distributed.sharded(predict_probabilities)


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
    recipe: datamod.DataRecipe | None = None  # how the data was chosen and split, for the adapter
    precision_reason: str = ""  # why this precision: "bf16 0.73x the speed of fp32 here: using fp32"
    merged_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)


def train(
    cfg: TrainConfig,
    *,
    stop: threading.Event | None = None,
    run: RunFolder | None = None,
    resume: str | Path | None = None,
    out: str | Path | None = None,
) -> Iterator:
    """Run one training; see the module docstring for the events. ``stop`` ends it within one step
    (the adapter and a checkpoint are still written once a step was trained; before that nothing
    is written and the run fails as "cancelled"); ``resume`` continues from a checkpoint.
    ``out``, where the caller will save the adapter, is refused before any work when it cannot be
    written or would replace one of the run's inputs."""
    stop = stop or threading.Event()
    hold = contextlib.ExitStack()  # the run's training lock, for as long as this generator runs
    try:
        cfg.check()
        hold.enter_context(distributed.process_group(cfg.device))  # under torchrun: join the others
        # Rank 0 (or the only process) checks the output and opens the run folder; torchrun's others
        # follow it (a refusal on rank 0 fails every rank).
        run = distributed.shared_folder(lambda: _open_run(cfg, run, resume, out, hold), follow=ReadOnlyRunFolder)
    except WorkbenchError as exc:
        hold.close()
        yield TrainingFailed(str(exc), kind="config")
        return
    except OSError as exc:
        hold.close()
        yield TrainingFailed(
            f"Cannot create the run folder {exc.filename or ''}: {exc.strerror or exc}. Set "
            "WORKBENCH_DATA_DIR to a writable folder with free space.",
            kind="config",
        )
        return
    with hold:
        yield from _recorded(cfg, stop, run, resume)


def _open_run(cfg: TrainConfig, run: RunFolder | None, resume, out, hold: contextlib.ExitStack) -> RunFolder:
    """The run's folder, locked for as long as ``hold`` is open (on rank 0 alone under torchrun),
    once ``out`` (when given) is known to be writable and none of the run's inputs."""
    if out is not None:
        check_outputs({"The adapter output": out}, training_inputs(cfg, resume))
    continuing = run is None and resume is not None
    run = run or _run_folder_for(cfg, resume)
    hold.enter_context(run.training_lock())
    if continuing:
        run.keep_finished_adapter()  # "train more" writes a new adapter; the finished one stays
        run.save_config(cfg)  # e.g. more epochs when extending a finished run
    return run


def _recorded(cfg: TrainConfig, stop: threading.Event, run: RunFolder, resume) -> Iterator:
    """The run's events, each written to its history, every failure turned into TrainingFailed."""
    try:
        for event in _train(cfg, stop, run, resume):
            if not isinstance(event, (Status, StepDone)):
                run.record(event)
            yield event
    except Cancelled:
        yield _failed(run, TrainingFailed(STOPPED_BEFORE_TRAINING, kind="cancelled", run_dir=str(run.path)))
    except NotFinite as exc:  # a NaN loss, overflowed weights, or an evaluation's NaN output
        message = str(exc) if isinstance(exc, Diverged) else f"Training diverged: {exc} Lower the learning rate."
        yield _failed(run, TrainingFailed(message, kind="diverged", run_dir=str(run.path)))
    except WorkbenchError as exc:
        kind = failure_kind(exc)
        yield _failed(run, TrainingFailed(str(exc), kind=kind, run_dir=str(run.path)))
    except (RuntimeError, MemoryError) as exc:
        if distributed.is_lost_peer(exc):
            message = distributed.lost_peer_message(exc, run.resume_path)
            yield _failed(run, TrainingFailed(message, run_dir=str(run.path)))
            return
        if not is_out_of_memory(exc):
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


def failure_kind(exc: WorkbenchError) -> str:
    """TrainingFailed.kind for an error: "config" (the settings), "input" (the dataset, model or
    adapter files: the user's to fix, like settings) or "error" (a download or a write failed)."""
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, (DataError, CheckpointError, AdapterError)):
        return "input"
    return "error"


def training_inputs(cfg: TrainConfig, resume: str | Path | None = None) -> dict[str, Path]:
    """Every file a run reads, named for messages: what no output may replace."""
    dataset = datamod.sms_spam_path() if cfg.data.source == datamod.SMS_SPAM else Path(cfg.data.source)
    inputs = {"the dataset": dataset, **hub.checkpoint_files(cfg.model)}
    if resume is not None:
        inputs["the checkpoint to resume"] = Path(resume)
    return inputs


def _run_folder_for(cfg: TrainConfig, resume: str | Path | None) -> RunFolder:
    """A resumed (or extended) run continues in its own folder; a new run gets a new one.

    A resumed run's settings are checked against the run's own before anything is written; its
    config.json is rewritten (e.g. more epochs) only once the checkpoint has loaded (``_train``).
    """
    if resume is not None:
        require_regular_file(resume, "Checkpoint", WorkbenchError)
        folder = RunFolder(Path(resume).parent)
        if folder.config_path.is_file():
            check_resumable(folder, cfg)
            return folder
    return RunFolder.create(cfg)


def check_resumable(folder: RunFolder, cfg: TrainConfig) -> None:
    """Refuse, changing nothing, settings the run in ``folder`` cannot be continued with."""
    try:
        saved = folder.config()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"Cannot resume {folder.path.name}: its settings (config.json) are unreadable ({exc})"
        ) from exc
    problems = resume_problems(saved, cfg)
    if problems:
        raise ConfigError(
            f"Cannot resume {folder.path.name} with other settings: {'; '.join(problems)}. Resume it with "
            "its own settings, or start a new run."
        )


def out_of_memory(cfg: TrainConfig, run: RunFolder) -> TrainingFailed:
    half = max(1, cfg.batch_size // 2)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return TrainingFailed(
        f"Out of memory with batch size {cfg.batch_size}. Try a smaller batch (e.g. {half} with "
        f"gradient accumulation {cfg.grad_accum * 2}, the same effective batch), a smaller max length, "
        f"a lower LoRA rank (now {cfg.lora.rank}), or a smaller model.",
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
    optimizer = make_optimizer(model, cfg, device)
    position = Position(0, 0, 0, 0)
    if resume:  # every rank loads rank 0's copy of the file
        position = distributed.load_everywhere(Path(resume), lambda path: load_resume_state(path, model, optimizer))
        if distributed.is_main():
            run.save_config(cfg)  # e.g. more epochs when extending a finished run
    splits = (prepared.train, prepared.val, prepared.test)
    distributed.check_agreement(cfg, splits, prepared.label_names, prepared.precision)
    trained = distributed.wrap(model, device, cfg.seed)  # DDP under torchrun, the model itself alone
    # Under torchrun a step takes grad_accum batches on each of the world's processes.
    per_step = cfg.grad_accum * distributed.world_size()

    n_batches = datamod.count_batches(len(prepared.train.labels), cfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / per_step)
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
        precision_reason=prepared.precision_reason,
        merged_labels=prepared.merged_labels,
        processes=distributed.world_size(),
    )
    run.log(
        f"Training {cfg.model} on {started.device} ({started.precision}): "
        f"{started.n_train}/{started.n_val}/{started.n_test} examples, {started.trainable_params:,} trainable"
        + (f"; {global_batch(cfg, started.processes)}" if started.processes > 1 else "")
    )
    run.log(f"Precision: {prepared.precision_reason}")
    if prepared.merged_labels:
        run.log(f"Labels written several ways, merged: {datamod.describe_merges(prepared.merged_labels)}")
    yield started

    eval_batch = evaluation_batch_size(cfg.batch_size, device)
    clock = Throughput(total_steps, already_done=position.step)
    step, seen = position.step, position.examples_seen
    best = _recorded_best(cfg, run)  # (validation loss, epoch) of the best epoch so far
    validated = (position.epoch, step)  # the weights of the last validation: (epoch, step)
    first_step = step
    for epoch in range(position.epoch, cfg.epochs):
        skip = position.batch_in_epoch if epoch == position.epoch else 0
        batches = epoch_batches(prepared.train, cfg, epoch, device, model.config.n_positions)
        for index in range(skip, len(batches), per_step):
            if step >= total_steps:
                break
            if distributed.agree_to_stop(stop.is_set(), step):
                stop.set()  # every rank stops here, as the one asked first
                break
            micro = batches[index : index + per_step]
            share = distributed.share_of_step(micro)
            set_learning_rate(optimizer, cfg.lr * learning_rate_factor(cfg, step, total_steps))
            loss, tokens = train_step(
                trained,
                optimizer,
                share.batches,
                device,
                prepared.precision,
                examples=share.examples,
                scale=share.loss_scale,
            )
            loss, tokens = distributed.step_totals(share, loss, tokens)
            step += 1
            raise_if_diverged(cfg, step, loss)
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
        yield Status(f"Validating on {len(prepared.val.labels)} messages")
        try:
            val_loss, val_acc = loss_and_accuracy(
                model, prepared.val, eval_batch, device, prepared.precision, stop=stop, predict=SHARED_PREDICT
            )
        except Cancelled:
            break  # the position is this epoch's end; the resume state below keeps it
        yield Evaluated(step, epoch + 1, seen, math.nan, val_loss, math.nan, val_acc, full=True)
        raise_if_weights_diverged(cfg, step, model)
        if distributed.is_main():
            save_resume_state(run.resume_path, model, optimizer, position)
        run.log(f"Epoch {epoch + 1}: validation loss {val_loss:.3f}, accuracy {val_acc:.1%}")
        yield EpochEnded(epoch + 1, step, seen, val_loss, val_acc, str(run.resume_path))
        best = _track_best(cfg, run, model, prepared, best, epoch + 1, val_loss)
        validated = (epoch + 1, step)
        patience_over = bool(cfg.early_stopping) and epoch + 1 - best[1] >= cfg.early_stopping
        if distributed.any_rank(patience_over) and epoch + 1 < cfg.epochs:  # not Stop: it gets test scores
            run.log(
                f"Early stop after epoch {epoch + 1}: validation loss has not improved for "
                f"{cfg.early_stopping} epoch(s) (best {best[0]:.3f} at epoch {best[1]})"
            )
            yield Status(f"Stopping early: no better validation loss since epoch {best[1]}")
            break

    if stop.is_set() and step == first_step:
        raise Cancelled(STOPPED_BEFORE_TRAINING)  # nothing learnt: keep every file as it was
    stopped = stop.is_set() and step < total_steps
    raise_if_weights_diverged(cfg, step, model)
    if distributed.is_main():
        save_resume_state(run.resume_path, model, optimizer, position)
    if cfg.keep_best and distributed.any_rank(not stopped and best[1] > 0 and (best[1], step) != validated):
        _load_best(run, model)  # the final adapter and the test scores are the best epoch's
        run.log(f"Kept epoch {best[1]} (validation loss {best[0]:.3f}), the best by validation")
        yield Status(f"Keeping epoch {best[1]}, the best by validation loss")
    metrics = None
    if not stopped:  # test scores only for a run that saw all its steps (or stopped early by rule)
        yield Status(f"Scoring {len(prepared.test.labels)} test messages")  # minutes on a big test set
        try:
            metrics = score_split(
                model,
                prepared.test,
                prepared.label_names,
                eval_batch,
                device,
                prepared.precision,
                stop=stop,
                predict=SHARED_PREDICT,
            )
        except Cancelled:
            stopped = True
    info = adapter_info(cfg, prepared, metrics)
    if distributed.is_main():
        save_adapter(run.adapter_path, model, info)
    run.log(
        ("Stopped" if stopped else "Finished")
        + f" after {step} steps"
        + (f"; test accuracy {metrics.accuracy:.1%}" if metrics else "")
    )
    yield TrainingFinished(
        stopped, step, seen, clock.elapsed(), str(run.path), str(run.adapter_path), str(run.resume_path), metrics
    )


# --- the learning rate and the best epoch ----------------------------------------------------


def learning_rate_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The share of ``cfg.lr`` for the optimiser step after ``step`` steps: a linear warm-up from
    1/warmup to 1 over the first ``warmup_steps`` steps, then 1 (constant, the book's recipe) or a
    decay to 0 at ``total_steps`` (linear; cosine as in Loshchilov & Hutter 2017, SGDR, without
    restarts). A function of the step alone, so a resumed run continues the same curve."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    if cfg.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _recorded_best(cfg: TrainConfig, run: RunFolder) -> tuple[float, int]:
    """The best epoch a resumed run had reached (its snapshot's metadata), else none yet."""
    if (cfg.keep_best or cfg.early_stopping) and run.best_adapter_path.is_file():
        try:
            metrics = read_adapter(run.best_adapter_path)[1].metrics
            return float(metrics["val_loss"]), int(metrics["epoch"])
        except (WorkbenchError, KeyError, TypeError, ValueError):
            pass  # a damaged snapshot: start the comparison afresh
    return math.inf, 0


def _track_best(cfg, run: RunFolder, model, prepared, best: tuple[float, int], epoch: int, val_loss: float):
    """After an epoch: a lower validation loss than ``best`` becomes the best, and with keep_best
    its LoRA and head are kept as a snapshot in the run folder (an adapter file, a few MB)."""
    if not (cfg.keep_best or cfg.early_stopping) or not val_loss < best[0]:
        return best
    if cfg.keep_best and distributed.is_main():
        info = adapter_info(cfg, prepared, None)
        save_adapter(run.best_adapter_path, model, replace(info, metrics={"val_loss": val_loss, "epoch": epoch}))
    return val_loss, epoch


def _load_best(run: RunFolder, model) -> None:
    """The best epoch's snapshot back into the model, on every process (rank 0's file)."""
    tensors, info = distributed.load_everywhere(run.best_adapter_path, read_adapter)
    load_adapter_weights(model, tensors, info)


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
    dataset = yield from run_with_progress(
        "Fingerprinting the dataset",
        lambda progress: datamod.identify_dataset(cfg.data.source, progress=progress, stop=stop),
        stop,
    )
    yield Status("Splitting the dataset")
    splits = datamod.make_splits(table, cfg.data, seed=cfg.seed, stop=stop)
    del table  # a large file's frame is no longer needed
    tokenizer = load_tokenizer(checkpoint)
    model_config = load_model_config(checkpoint)
    max_length = min(cfg.data.max_length or model_config.n_positions, model_config.n_positions)
    encoded, truncated = yield from run_with_progress(
        "Tokenizing", lambda progress: encode_splits(splits, tokenizer, max_length, stop, progress), stop
    )
    yield Status("Building the model")
    device = distributed.pick_device(cfg.device)
    model = build_lora_model(checkpoint, cfg.lora, len(splits.label_names), cfg.seed, stop).to(device)
    if cfg.precision == "auto":
        yield Status("Measuring fp32 and bf16 speed on this device (once)")
    precision = choose_precision(cfg.precision, device, model_config.n_embd)
    store_frozen_weights(model, precision.precision)
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
        merged_labels=splits.merged_labels,
        model=model,
        device=device,
        precision=precision.precision,
        precision_reason=precision.reason,
        recipe=datamod.recipe_for(cfg.data, splits, dataset, max_length, seed=cfg.seed),
    )


def encode_splits(
    splits: datamod.DatasetSplits, tokenizer, max_length: int, stop: threading.Event, progress
) -> tuple[dict[str, EncodedSplit], int]:
    """Token ids of the three splits, and how many texts were cut; progress counts texts."""
    parts = {name: getattr(splits, name) for name in ("train", "val", "test")}
    total = sum(len(part.texts) for part in parts.values())
    encoded, truncated, done = {}, 0, 0
    for name, part in parts.items():
        ids, cut = datamod.encode_texts(
            part.texts,
            tokenizer,
            max_length,
            stop=stop,
            progress=lambda n, _total, message, before=done: progress(before + n, total, message),
        )
        encoded[name] = EncodedSplit(ids, list(part.labels), list(part.texts))
        truncated += cut
        done += len(part.texts)
    return encoded, truncated


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


def make_optimizer(model: GPT2Classifier, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (LoRA and the head). On CUDA the fused kernel: one
    launch for all the tensors instead of several per tensor, and a small model's step there is
    bound by launches (``device.padding_multiple``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda" or None)


def epoch_batches(
    train: EncodedSplit,
    cfg: TrainConfig,
    epoch: int,
    device: torch.device | None = None,
    context: int | None = None,
) -> list[datamod.Batch]:
    """This epoch's batches, in an order fixed by (seed, epoch) so a resumed run sees the same,
    their widths rounded as ``device`` wants (``device.padding_multiple``; never past ``context``).

    The one definition of the training order: ``workbench bench`` times these very batches.
    """
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    return list(
        datamod.iterate_batches(
            train.token_ids,
            train.labels,
            cfg.batch_size,
            pad_id=EOT_ID,
            shuffle=True,
            generator=generator,
            sort_chunk=cfg.length_grouping,
            multiple=padding_multiple(device) if device is not None else 1,
            limit=context,
        )
    )


def train_step(
    model: GPT2Classifier,
    optimizer,
    micro_batches: list,
    device: torch.device,
    precision: str,
    *,
    examples: int | None = None,
    scale: float = 1.0,
) -> tuple[float, int]:
    """One optimiser step over one or more micro-batches (gradient accumulation); returns the
    step's loss and the real (non-padding) tokens it read.

    Under torchrun ``model`` is DDP's and the micro-batches are this rank's share of a step of
    ``examples`` examples; ``scale`` (the world size) undoes DDP's mean over the ranks.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = examples or sum(len(b.labels) for b in micro_batches)
    loss_sum, tokens = 0.0, 0
    for i, batch in enumerate(micro_batches):
        ids, lengths, labels = _to_device(batch, device)
        with distributed.accumulating(model, last=i == len(micro_batches) - 1):
            with autocast(device, precision):
                logits = model(ids, lengths)
            # Weight each micro-batch by its size so accumulation equals one big batch exactly.
            loss = F.cross_entropy(logits.float(), labels, reduction="sum") / total
            (loss * scale).backward()
        loss_sum += loss.item()
        tokens += int(batch.lengths.sum())
    optimizer.step()
    return loss_sum, tokens


def raise_if_diverged(cfg: TrainConfig, step: int, loss: float) -> None:
    """A NaN or infinite loss ends the run before anything is saved: the weights it would write
    are damaged, and an adapter or checkpoint already on disk must stay as it was."""
    if not math.isfinite(loss):
        raise Diverged(_divergence_advice(cfg, step, f"loss is {loss}"))


def raise_if_weights_diverged(cfg: TrainConfig, step: int, model: GPT2Classifier) -> None:
    """The last step's update can overflow the weights even when its loss was finite."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad):
        raise Diverged(_divergence_advice(cfg, step, "the adapter's weights are no longer finite"))


def _divergence_advice(cfg: TrainConfig, step: int, what: str) -> str:
    return (
        f"Training diverged at step {step}: {what}; no adapter was written (an earlier one is kept). "
        f"Lower the learning rate (now {cfg.lr:g}) or alpha (now {cfg.lora.alpha:g})"
        + (", or train in fp32 (--precision fp32)" if cfg.precision != "fp32" else "")
        + "."
    )


def _to_device(batch: datamod.Batch, device: torch.device):
    """On CUDA, copy from pinned memory without blocking, so the copy overlaps the GPU's work."""
    tensors = (batch.input_ids, batch.lengths, batch.labels)
    if device.type != "cuda":
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


def quick_evaluation(model, prepared: Prepared, cfg: TrainConfig, step: int, epoch: int, seen: int) -> Evaluated:
    """The book's evaluate_model: a few batches of train and validation data, for the curves."""
    n = cfg.eval_batches * cfg.batch_size
    generator = torch.Generator().manual_seed(cfg.seed + step)
    pick = torch.randperm(len(prepared.train.labels), generator=generator)[:n].tolist()
    sample = EncodedSplit([prepared.train.token_ids[i] for i in pick], [prepared.train.labels[i] for i in pick], [])
    device, precision = prepared.device, prepared.precision
    predict, batch = SHARED_PREDICT, evaluation_batch_size(cfg.batch_size, device)
    train_loss, train_acc = loss_and_accuracy(model, sample, batch, device, precision, predict=predict)
    val_loss, val_acc = loss_and_accuracy(model, prepared.val, batch, device, precision, n, predict=predict)
    return Evaluated(step, epoch, seen, train_loss, val_loss, train_acc, val_acc)


def global_batch(cfg: TrainConfig, processes: int) -> str:
    """How many examples one optimiser step takes, and how they come about."""
    return (
        f"global batch {cfg.batch_size} x {cfg.grad_accum} accumulated x {processes} processes = "
        f"{cfg.batch_size * cfg.grad_accum * processes} examples per step"
    )


def adapter_info(cfg: TrainConfig, prepared: Prepared, metrics: EvaluationMetrics | None) -> AdapterInfo:
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
        data=prepared.recipe,
        label_spellings=prepared.merged_labels,
    )


class Throughput:
    """Examples/s and tokens/s smoothed over recent steps, and the time left.

    The first step of a run, or of a resumed run, pays for warm-up (allocations, kernel choices,
    caches); it counts in the elapsed time but not in the rates. The time left is the average time
    a step took since then, evaluations included, so it neither starts from the warm-up nor grows
    as the first evaluations arrive.
    """

    def __init__(
        self,
        total_steps: int,
        already_done: int = 0,
        smoothing: float = 0.1,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.total_steps = total_steps
        self.steps = already_done
        self.clock = clock
        self.start = self.last = clock()
        self.smoothing = smoothing
        self.examples_per_s = self.tokens_per_s = 0.0
        self.warm: tuple[float, int] | None = None  # (time, steps) when the warm-up step ended

    @dataclass(frozen=True)
    class Rate:
        examples_per_s: float
        tokens_per_s: float
        elapsed_s: float
        eta_s: float

    def update(self, examples: int, tokens: int) -> Throughput.Rate:
        now = self.clock()
        dt = max(now - self.last, 1e-9)
        self.last = now
        self.steps += 1
        left = max(0, self.total_steps - self.steps)
        if self.warm is None:  # the warm-up step: its own rate, a first guess at the time left
            self.warm = (now, self.steps)
            self.examples_per_s, self.tokens_per_s = examples / dt, tokens / dt
            return self.Rate(self.examples_per_s, self.tokens_per_s, now - self.start, left * dt)
        a = self.smoothing if self.steps - self.warm[1] > 1 else 1.0
        self.examples_per_s += a * (examples / dt - self.examples_per_s)
        self.tokens_per_s += a * (tokens / dt - self.tokens_per_s)
        seconds_per_step = (now - self.warm[0]) / (self.steps - self.warm[1])
        return self.Rate(self.examples_per_s, self.tokens_per_s, now - self.start, left * seconds_per_step)

    def elapsed(self) -> float:
        return self.clock() - self.start
