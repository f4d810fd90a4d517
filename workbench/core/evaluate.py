"""Predictions and their scores: one implementation for training (its curves and test metrics),
``workbench eval`` and classification.

Texts are run in batches sorted by length, so padding costs almost nothing, under
``inference_mode``; the scores are the usual ones (accuracy, per-class precision, recall and F1,
the confusion matrix), computed from the predicted probabilities.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

from .config import BOUNDS
from .data import EncodedSplit, pad_batch
from .device import autocast, padding_multiple
from .errors import Cancelled, ConfigError, NotFinite
from .events import EvaluationMetrics, Misclassified
from .model import GPT2Classifier
from .progress import Progress
from .thresholds import decide
from .tokenizer import EOT_ID

MAX_MISCLASSIFIED = 200  # kept in the final metrics for the Results list
MAX_MISCLASSIFIED_CHARS = 1000  # of each one's text: a file's "text" may be megabytes
# The confusion matrix grows as k²: kept (metrics.jsonl, the Results tab) for up to this many classes.
MAX_CONFUSION_CLASSES = 100


@torch.inference_mode()
def predict_probabilities(
    model: GPT2Classifier,
    token_ids: list[list[int]],
    batch_size: int,
    device: torch.device,
    precision: str,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Class probabilities (N, C) in input order. Texts are batched by length, so padding costs
    almost nothing; ``stop`` is checked between batches."""
    problem = BOUNDS["batch_size"].problem(batch_size)  # the check `train` uses, for every caller
    if problem:
        raise ConfigError(problem)
    model.eval()
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    probs = torch.empty(len(token_ids), model.num_classes)
    multiple = padding_multiple(device)  # widths rounded on CUDA, never past the model's context
    context = model.config.n_positions if multiple > 1 else None
    for start in range(0, len(order), batch_size):
        if stop is not None and stop.is_set():
            raise Cancelled("Classification stopped")
        rows = order[start : start + batch_size]
        batch = pad_batch([token_ids[i] for i in rows], [0] * len(rows), EOT_ID, multiple, context)
        with autocast(device, precision):
            logits = model(batch.input_ids.to(device), batch.lengths.to(device))
        probs[rows] = probabilities_from_logits(logits, len(order)).cpu()
        if progress:
            progress(min(start + batch_size, len(order)), len(order), "Classifying")
    return probs


def probabilities_from_logits(logits: torch.Tensor, of_texts: int | None = None) -> torch.Tensor:
    """Class probabilities (B, C) from logits: the one place every prediction passes (classify,
    eval, the typing box, training's evaluations), so a NaN or infinity is refused here rather
    than shown as a probability, printed as invalid JSON or written as an empty CSV cell."""
    probs = torch.softmax(logits.float(), dim=-1)  # (B, C)
    finite = torch.isfinite(probs).all(dim=-1)  # (B,)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        texts = f"{bad} of {of_texts or len(finite)} texts"
        raise NotFinite(
            f"The model's output is not a number (NaN or infinity) for {texts}, so no probabilities can be "
            "given: the adapter's weights are too large for the arithmetic (a damaged or diverged adapter)."
        )
    return probs


def loss_and_accuracy(
    model: GPT2Classifier,
    split: EncodedSplit,
    batch_size: int,
    device: torch.device,
    precision: str,
    limit: int | None = None,
    *,
    stop: threading.Event | None = None,
    predict=predict_probabilities,
) -> tuple[float, float]:
    """Mean loss and accuracy on the first ``limit`` examples of a split (all when None).
    ``predict`` is ``predict_probabilities`` or a stand-in with its arguments (training under
    torchrun shares the texts out between its processes)."""
    ids = split.token_ids[:limit] if limit else split.token_ids
    labels = torch.tensor(split.labels[: len(ids)])
    if not len(ids):
        return math.nan, math.nan
    probs = predict(model, ids, batch_size, device, precision, stop=stop)
    return mean_loss(probs, labels), (probs.argmax(-1) == labels).float().mean().item()


def mean_loss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Cross-entropy from probabilities (N, C) already computed for the predictions."""
    return F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels).item()


def score_split(
    model: GPT2Classifier,
    split: EncodedSplit,
    label_names: tuple[str, ...],
    batch_size: int,
    device: torch.device,
    precision: str,
    *,
    stop: threading.Event | None = None,
    predict=predict_probabilities,
) -> EvaluationMetrics:
    """Every metric of a whole split, with its misclassified texts (the run's final test scores);
    ``predict`` as for ``loss_and_accuracy``."""
    probs = predict(model, split.token_ids, batch_size, device, precision, stop=stop)
    return metrics_from_probabilities(probs, split.labels, label_names, split.texts)


def metrics_from_probabilities(
    probs: torch.Tensor,
    labels: list[int],
    names: tuple[str, ...],
    texts: list[str] | None = None,
    threshold: float | None = None,
) -> EvaluationMetrics:
    """Metrics from predicted probabilities (N, C); with ``texts``, the misclassified ones too;
    decided by argmax, or by a two-class ``threshold`` (thresholds.decide)."""
    predicted = decide(probs, threshold).tolist()
    wrong = (
        [
            Misclassified(texts[i][:MAX_MISCLASSIFIED_CHARS], names[t], names[p], round(float(probs[i, p]), 4))
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
) -> EvaluationMetrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true labels; empty
    for more than ``MAX_CONFUSION_CLASSES`` classes)."""
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
    return EvaluationMetrics(
        accuracy,
        loss,
        tuple(names),
        tuple(precision),
        tuple(recall),
        tuple(f1),
        tuple(support),
        tuple(tuple(row) for row in confusion) if k <= MAX_CONFUSION_CLASSES else (),
        wrong,
    )
