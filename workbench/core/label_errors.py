"""Training and validation rows whose given label the model finds least likely: likely label errors.

Rows are ranked by the probability the model gives their *given* label (Northcutt, Jiang & Chuang
2021, "Confident Learning", JAIR 70: the "self-confidence" ranking), lowest first. The
probabilities must be out-of-sample: a model scoring the rows it was trained on has fitted their
labels, wrong ones included, so a mislabelled training row looks fine to it. Two ways, both here:

- ``suspects_from_adapter``: the trained adapter scores every row. Validation rows are
  out-of-sample (training never saw them); training rows are scored in-sample and marked so:
  one the model still doubts after training on it is a strong suspect, but a mislabelled row it
  has learned by heart is missed, so this finds fewer errors, not false ones. Cost: one
  classification pass. Measured: GPT-2 small's layout, the 1,194 balanced SMS training and
  validation rows, 271 s on this shared 2-core CPU (load average ~8 from other jobs); the
  2-layer, 64-wide test model, all 4,458 rows: 3.5 s.
- ``suspects_by_cross_validation``: k-fold cross-validation over the training and validation rows
  (stratified folds); k fresh adapters with the adapter's base model, LoRA settings and the run's
  recipe, each scoring the fold it did not train on, so every row is out-of-sample (Confident
  Learning's own procedure). Cost: k trainings on (k-1)/k of the rows. Measured: the 2-layer,
  64-wide model, 3 folds over the 4,458 unbalanced SMS rows, 5 epochs: 82 s. GPT-2 small, the
  book's 5 epochs on the balanced rows, k = 5 is about 4 full trainings: ~70 min on this CPU (one
  epoch of 1,045 rows takes 3 min 23 s, README) and ~2.5 min on an H200 (the whole recipe: 34.6 s).

The workbench defaults to the first (no retraining) and offers the second as ``--folds K``: on a
CPU with GPT-2 small, cross-validation is an hour, which a person should choose knowingly; on a
GPU it is minutes and gives every row an honest score.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from . import hub
from .classify import predict_probabilities
from .config import TrainConfig
from .data import DatasetSplits, encode_texts, iterate_batches, save_table
from .device import padding_multiple, pick_device, pick_precision
from .errors import DataError
from .lora import build_lora_model
from .model import store_frozen_weights
from .progress import Progress, raise_if_stopped
from .thresholds import decide
from .tokenizer import EOT_ID, load_tokenizer


@dataclass(frozen=True)
class Suspect:
    text: str
    given: str  # the label in the file
    predicted: str  # the label the model gives it
    confidence: float  # the model's probability of the given label: low means suspicious
    split: str  # "train" or "val"
    out_of_sample: bool  # scored by a model that never trained on this row


def suspects_from_adapter(
    classifier, splits: DatasetSplits, stop: threading.Event | None = None, progress: Progress | None = None
) -> list[Suspect]:
    """Every training and validation row scored by ``classifier`` (a classify.Classifier), least
    likely given label first; only validation rows are out-of-sample (see the module docstring)."""
    check_labels(splits, classifier.info.label_names)
    texts, labels, parts = _pooled(splits)
    probs = classifier.probabilities(texts, stop=stop, progress=progress)
    predicted = decide(probs, classifier.threshold).tolist()
    held_out = [part == "val" for part in parts]
    return _ranked(texts, labels, parts, probs, predicted, splits.label_names, out_of_sample=held_out)


def suspects_by_cross_validation(
    cfg: TrainConfig,
    splits: DatasetSplits,
    folds: int,
    *,
    max_length: int,
    threshold: float | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> list[Suspect]:
    """Every training and validation row scored by an adapter trained on the other ``folds - 1``
    folds with ``cfg``'s model, LoRA settings and recipe; least likely given label first."""
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}")
    texts, labels, parts = _pooled(splits)
    fold_of = stratified_folds(labels, folds, cfg.seed)
    if min(sum(1 for f in fold_of if f == k) for k in range(folds)) == 0:
        raise DataError(f"{len(texts)} rows are too few for {folds} folds")
    checkpoint = hub.resolve_checkpoint(cfg.model, stop=stop)
    ids, _ = encode_texts(texts, load_tokenizer(checkpoint), max_length)
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    probs = torch.empty(len(texts), len(splits.label_names))
    steps = _steps_per_fold(fold_of, folds, cfg)
    done = 0
    for k in range(folds):
        held_out = [i for i, f in enumerate(fold_of) if f == k]
        kept = [i for i, f in enumerate(fold_of) if f != k]

        def step_done(k=k):
            nonlocal done
            done += 1
            if progress:
                progress(done, steps * folds, f"Fold {k + 1} of {folds}")

        model = train_fold(
            checkpoint,
            cfg,
            [ids[i] for i in kept],
            [labels[i] for i in kept],
            len(splits.label_names),
            device,
            precision,
            stop,
            step_done,
        )
        probs[held_out] = predict_probabilities(model, [ids[i] for i in held_out], 32, device, precision, stop=stop)
    predicted = decide(probs, threshold).tolist()
    return _ranked(texts, labels, parts, probs, predicted, splits.label_names, out_of_sample=[True] * len(texts))


def fold_recipe(adapter: str | Path, info, data, *, model: str | None = None, **changes) -> TrainConfig:
    """The settings the folds train with: the run's own when the adapter sits in its run folder
    (runs.py's config.json beside it), else train's defaults; always the adapter's base model
    (or ``model``), LoRA settings and ``data``; ``changes`` (epochs, lr, device, ...) on top."""
    base = TrainConfig()
    recorded = Path(adapter).with_name("config.json")
    if recorded.is_file():
        try:
            base = TrainConfig.from_dict(json.loads(recorded.read_text(encoding="utf-8")))
        except (ValueError, TypeError, OSError):
            pass  # not a run's config: the defaults will do
    cfg = base.with_changes(model=model or info.base_model, data=data, lora=info.lora, **changes)
    cfg.check()
    return cfg


def stratified_folds(labels: list[int], folds: int, seed: int) -> list[int]:
    """A fold number per row; each class dealt round-robin after a seeded shuffle, so every fold
    holds each class in proportion."""
    rng = random.Random(seed)
    fold_of = [0] * len(labels)
    for c in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == c]
        rng.shuffle(rows)
        for n, i in enumerate(rows):
            fold_of[i] = n % folds
    return fold_of


def train_fold(checkpoint, cfg: TrainConfig, ids, labels, num_classes, device, precision, stop, step_done=None):
    """A fresh adapter trained on these rows with ``cfg``'s recipe: the training run's own step
    (training.train_step) and batches, without its evaluations, checkpoints and events."""
    from .training import make_optimizer, train_step  # the orchestrator's; imported here to keep layers apart

    model = build_lora_model(checkpoint, cfg.lora, num_classes, cfg.seed).to(device)
    store_frozen_weights(model, precision)  # as training.prepare does
    optimizer = make_optimizer(model, cfg, device)
    for epoch in range(cfg.epochs):
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        batches = list(
            iterate_batches(
                ids,
                labels,
                cfg.batch_size,
                pad_id=EOT_ID,
                shuffle=True,
                generator=generator,
                sort_chunk=cfg.length_grouping,
                multiple=padding_multiple(device),
                limit=model.config.n_positions,
            )
        )
        for start in range(0, len(batches), cfg.grad_accum):
            raise_if_stopped(stop, "Cross-validation")
            train_step(model, optimizer, batches[start : start + cfg.grad_accum], device, precision)
            if step_done:
                step_done()
    return model.eval()


def _steps_per_fold(fold_of: list[int], folds: int, cfg: TrainConfig) -> int:
    rows = len(fold_of) - min(fold_of.count(k) for k in range(folds))
    batches = -(-rows // cfg.batch_size)
    return -(-batches // cfg.grad_accum) * cfg.epochs


def _pooled(splits: DatasetSplits) -> tuple[list[str], list[int], list[str]]:
    texts = list(splits.train.texts) + list(splits.val.texts)
    labels = list(splits.train.labels) + list(splits.val.labels)
    parts = ["train"] * len(splits.train.texts) + ["val"] * len(splits.val.texts)
    return texts, labels, parts


def check_labels(splits: DatasetSplits, names) -> None:
    if tuple(splits.label_names) != tuple(names):
        raise DataError(f"the dataset's labels {list(splits.label_names)} differ from the adapter's {list(names)}")


def _ranked(texts, labels, parts, probs, predicted, names, out_of_sample) -> list[Suspect]:
    given_probability = probs[torch.arange(len(labels)), torch.tensor(labels, dtype=torch.long)].tolist()
    rows = [
        Suspect(text, names[y], names[p], round(float(q), 6), part, oos)
        for text, y, p, q, part, oos in zip(texts, labels, predicted, given_probability, parts, out_of_sample)
    ]
    return sorted(rows, key=lambda r: r.confidence)


def save_suspects(rows: list[Suspect], path: str | Path) -> Path:
    """The rows as CSV (TSV for .tsv), written atomically."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "text": [r.text for r in rows],
            "given_label": [r.given for r in rows],
            "predicted_label": [r.predicted for r in rows],
            "confidence_of_given": [r.confidence for r in rows],
            "split": [r.split for r in rows],
            "out_of_sample": [r.out_of_sample for r in rows],
        }
    )
    return save_table(frame, path)
