"""Where to cut, and how far the probabilities can be trusted: curves, threshold metrics, calibration.

For a two-class adapter the decision "positive" (the adapter's second label, ``label_names[1]``:
"spam" for ham/spam) is ``p_positive >= threshold``; no threshold means argmax, which for two
classes is a cut at 0.5. Moving the cut trades missed positives for false alarms, which the
precision-recall and ROC curves show over every possible cut (Fawcett 2006, "An introduction to
ROC analysis"; average precision as scikit-learn defines it).

Calibration (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks"):
the reliability diagram bins predictions by confidence (the top probability) and compares each
bin's mean confidence with its accuracy; the expected calibration error is the count-weighted
mean gap (their eq. 3, 10 equal-width bins). Temperature scaling (their section 4.2) divides the
logits by one scalar T fitted on the validation split to minimise the negative log-likelihood;
it changes no argmax decision, only how sure the probabilities say the model is.

Only probabilities are stored, so logits are recovered as log p (a per-row constant away from the
true logits, which softmax ignores); p is clamped at 1e-30 first, so a probability that rounded to
zero in float32 counts as e^-69 rather than -inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError

POSITIVE = 1  # the class a threshold is about: the adapter's second label
TEMPERATURE_RANGE = (0.05, 20.0)  # fitted temperatures are kept inside this (a sane model is ~0.5-5)
SMALLEST_PROBABILITY = 1e-30


@dataclass(frozen=True)
class RocCurve:
    false_positive_rate: tuple[float, ...]  # from 0 (threshold above every score) to 1
    true_positive_rate: tuple[float, ...]
    thresholds: tuple[float, ...]  # the cut at each point: positive when p >= threshold (first: inf)
    auc: float  # area under the curve; nan when the labels hold one class only


@dataclass(frozen=True)
class PrecisionRecallCurve:
    recall: tuple[float, ...]  # from 0 (threshold above every score) upwards
    precision: tuple[float, ...]  # the first point is (0, 1) by convention
    thresholds: tuple[float, ...]  # as for RocCurve
    average_precision: float  # sum of precision x recall steps; nan without positives


@dataclass(frozen=True)
class ThresholdMetrics:
    threshold: float
    confusion: tuple[tuple[int, int], tuple[int, int]]  # [true][predicted]: ((tn, fp), (fn, tp))
    precision: float  # of the positive class; 0 when nothing is predicted positive
    recall: float
    f1: float
    accuracy: float


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram: per confidence bin, how sure the model said it was and how often it
    was right."""

    edges: tuple[float, ...]  # bins + 1 edges from 0 to 1; bin i is (edges[i], edges[i + 1]]
    confidence: tuple[float, ...]  # mean top probability per bin (nan: empty bin)
    accuracy: tuple[float, ...]  # share of correct argmax predictions per bin (nan: empty bin)
    counts: tuple[int, ...]
    ece: float  # expected calibration error: sum over bins of count/N * |accuracy - confidence|


# --------------------------------------------------------------------------- curves


def roc_curve(scores: Sequence[float], labels: Sequence[int]) -> RocCurve:
    """ROC over every distinct score as a threshold; ``scores`` are positive-class probabilities."""
    fps, tps, thresholds = _cumulative_counts(scores, labels)
    positives, negatives = tps[-1], fps[-1]
    tpr = tps / positives if positives else np.zeros_like(tps)
    fpr = fps / negatives if negatives else np.zeros_like(fps)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if positives and negatives else math.nan
    return RocCurve(_floats(fpr), _floats(tpr), _floats(thresholds), auc)


def precision_recall_curve(scores: Sequence[float], labels: Sequence[int]) -> PrecisionRecallCurve:
    fps, tps, thresholds = _cumulative_counts(scores, labels)
    positives = tps[-1]
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.ones_like(tps), where=predicted > 0)
    recall = tps / positives if positives else np.zeros_like(tps)
    average = float(np.sum(np.diff(recall) * precision[1:])) if positives else math.nan
    return PrecisionRecallCurve(_floats(recall), _floats(precision), _floats(thresholds), average)


def _cumulative_counts(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives when cutting just below each distinct score, highest first, with a
    leading (0, 0) point for a cut above every score. Tied scores move together: one point each."""
    s, y = _binary(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.array([], dtype=int)
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return np.r_[0.0, fps].astype(float), np.r_[0.0, tps].astype(float), np.r_[np.inf, s[last_of_tie]]


def metrics_at(scores: Sequence[float], labels: Sequence[int], threshold: float) -> ThresholdMetrics:
    """Confusion matrix, precision, recall, F1 (of the positive class) and accuracy at one cut."""
    s, y = _binary(scores, labels)
    predicted = s >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = (tp + tn) / len(y) if len(y) else math.nan
    return ThresholdMetrics(float(threshold), ((tn, fp), (fn, tp)), precision, recall, f1, accuracy)


def best_f1_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The cut (one of the scores) with the highest F1; ties go to the higher cut (fewer alarms)."""
    curve = precision_recall_curve(scores, labels)
    p, r = np.array(curve.precision[1:]), np.array(curve.recall[1:])
    if not len(p):
        raise DataError("no examples to choose a threshold from")
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return float(curve.thresholds[1:][int(np.argmax(f1))])


def _binary(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if len(s) != len(y):
        raise ValueError(f"{len(s)} scores but {len(y)} labels")
    if not np.isin(y, (0, 1)).all():
        raise DataError("threshold curves need two classes (labels 0 and 1)")
    return s, y.astype(int)


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def decision_summary(
    probabilities: torch.Tensor, labels: Sequence[int], threshold: float | None, temperature: float | None
) -> dict:
    """How labels were decided, the expected calibration error, and for two classes the ranking
    figures (ROC AUC, average precision): what ``eval`` adds to its metrics."""
    summary = {"threshold": threshold, "temperature": temperature, "ece": reliability(probabilities, labels).ece}
    if probabilities.shape[1] == 2 and len(set(labels)) == 2:
        scores = probabilities[:, POSITIVE].tolist()
        summary["roc_auc"] = roc_curve(scores, labels).auc
        summary["average_precision"] = precision_recall_curve(scores, labels).average_precision
    return summary


# --------------------------------------------------------------------------- decisions


def decide(probabilities: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """Class ids (N,) from probabilities (N, C): argmax, or for two classes the positive class
    where its probability reaches ``threshold``."""
    if threshold is None:
        return probabilities.argmax(-1)
    if probabilities.shape[-1] != 2:
        raise DataError(f"a threshold applies to two-class adapters; this one has {probabilities.shape[-1]} classes")
    return (probabilities[..., POSITIVE] >= threshold).long()


def threshold_problem(threshold: float | None, num_classes: int) -> str | None:
    """Why ``threshold`` cannot be used with an adapter of ``num_classes`` classes, or None."""
    if threshold is None:
        return None
    if num_classes != 2:
        return f"a threshold applies to two-class adapters; this one has {num_classes} classes"
    if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        return f"the threshold must be a probability from 0 to 1, got {threshold!r}"
    return None


# --------------------------------------------------------------------------- calibration


def reliability(probabilities: torch.Tensor, labels: Sequence[int], bins: int = 10) -> Reliability:
    """Reliability diagram and expected calibration error of the top-label confidence."""
    probs = torch.as_tensor(probabilities, dtype=torch.float64)
    y = torch.as_tensor(list(labels), dtype=torch.long)
    confidence, predicted = probs.max(-1) if len(probs) else (probs.new_zeros(0), y)
    correct = (predicted == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    # Bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 joins the first bin.
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, bins - 1)
    counts, mean_confidence, accuracy, gap = [], [], [], 0.0
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        counts.append(n)
        if n:
            conf, acc = float(confidence[members].mean()), float(correct[members].mean())
            gap += n * abs(acc - conf)
        else:
            conf = acc = math.nan
        mean_confidence.append(conf)
        accuracy.append(acc)
    ece = gap / len(y) if len(y) else math.nan
    return Reliability(_floats(edges.numpy()), tuple(mean_confidence), tuple(accuracy), tuple(counts), ece)


def logits_of(probabilities: torch.Tensor) -> torch.Tensor:
    """Logits up to a per-row constant (see the module docstring)."""
    return torch.log(torch.as_tensor(probabilities, dtype=torch.float64).clamp_min(SMALLEST_PROBABILITY))


def apply_temperature(probabilities: torch.Tensor, temperature: float | None) -> torch.Tensor:
    """softmax(logits / T) from probabilities; T None or 1 returns them unchanged."""
    if temperature is None or temperature == 1:
        return probabilities
    scaled = torch.softmax(logits_of(probabilities) / temperature, dim=-1)
    return scaled.to(probabilities.dtype if isinstance(probabilities, torch.Tensor) else torch.float32)


def negative_log_likelihood(logits: torch.Tensor, labels: Sequence[int], temperature: float = 1.0) -> float:
    y = torch.as_tensor(list(labels), dtype=torch.long)
    return float(F.cross_entropy(torch.as_tensor(logits, dtype=torch.float64) / temperature, y))


def fit_temperature(logits: torch.Tensor, labels: Sequence[int], iterations: int = 100) -> float:
    """The T in TEMPERATURE_RANGE minimising the mean NLL of softmax(logits / T).

    The NLL is convex in 1/T (a log-sum-exp of terms linear in 1/T, minus a linear term), so a
    golden-section search over log(1/T) finds the one minimum; 100 steps narrow the bracket by
    0.618^100, far below any difference that matters. No learning rate, no divergence (Guo et al.
    fit T with LBFGS; a bounded 1-D search needs neither gradients nor a starting guess).
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(list(labels), dtype=torch.long)
    if not len(y):
        raise DataError("the validation split is empty: there is nothing to fit a temperature on")

    def nll(log_beta: float) -> float:
        return float(F.cross_entropy(z * math.exp(log_beta), y))

    low, high = -math.log(TEMPERATURE_RANGE[1]), -math.log(TEMPERATURE_RANGE[0])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return 1 / math.exp((low + high) / 2)
