"""Scoring an adapter on a labelled file, honestly: held-out rows are the run's own held-out rows.

A test score means something only on rows the adapter never trained on. The adapter's data recipe
(``data/recipe.py``) says which file it was trained on (by its bytes) and how that file was split,
so evaluating on the same file rebuilds exactly the run's test (or validation) rows, whatever seed
the run used. A file whose bytes differ under the same name was edited since training: its split
cannot be rebuilt, so only ``split="all"`` scores it, and says so. A file the adapter never saw is
held out as a whole, so by default every row of it is scored.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import data as datamod
from .adapters import AdapterInfo, label_mapping
from .config import DataConfig
from .errors import Cancelled, DataError, WorkbenchError
from .events import EvaluationMetrics
from .progress import Progress

SPLITS = ("test", "val", "train", "all")
_SPLIT_NAMES = {"test": "test", "val": "validation", "train": "training"}


@dataclass(frozen=True)
class RowsToScore:
    """The labelled rows an evaluation scores, and what they are, in words."""

    texts: list[str]
    labels: list[int]  # the adapter's class ids
    split: str  # "test", "val", "train" or "all"
    description: str  # "the training run's test split: 40 rows of data.csv (70/10/20, balanced, seed 7)"


@dataclass(frozen=True)
class AdapterEvaluation:
    metrics: EvaluationMetrics
    split: str
    rows: int
    description: str  # what was scored, for a person (see RowsToScore)
    decision: dict  # how labels were decided and the ranking/calibration figures (thresholds.decision_summary)


def rows_to_score(
    source: str | Path,
    info: AdapterInfo,
    split: str | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    max_rows: int | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> RowsToScore:
    """Which rows of ``source`` to score with the adapter ``info`` describes.

    ``split`` None means: the run's test split when ``source`` is the file it was trained on,
    every row otherwise. ``test``/``val``/``train`` rebuild that part of the run's split and are
    refused (DataError, one line) when that is impossible: an adapter without a recipe, a file
    edited since training, or a file the run never saw. ``all`` scores every usable row.
    """
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    recipe = info.data
    name = _dataset_name(source)
    dataset = datamod.identify_dataset(source, progress=progress, stop=stop)
    trained_on = recipe is not None and dataset.sha256 == recipe.dataset.sha256
    edited = recipe is not None and not trained_on and dataset.name == recipe.dataset.name
    if split is None:
        split = "test" if trained_on or edited else "all"
    if split == "all":
        return _every_row(source, info, trained_on, edited, text_column, label_column, max_rows, progress, stop)
    if recipe is None:
        raise DataError(
            f"This adapter does not record how its training data was split (saved before data recipes, "
            f"or imported), so its {_SPLIT_NAMES[split]} rows cannot be rebuilt; use --split all to score "
            f"every row of {name}."
        )
    if edited:
        raise DataError(
            f"{name} has changed since this adapter was trained on it (sha256 {dataset.short_hash()}… now, "
            f"{recipe.dataset.short_hash()}… then), so its {_SPLIT_NAMES[split]} split cannot be rebuilt; "
            "use --split all to score every row of the file as it is now."
        )
    if not trained_on:
        raise DataError(
            f"{name} is not the file this adapter was trained on ({recipe.dataset.name}), so all of it is "
            "held out: use --split all (the default for a new file) to score every row."
        )
    _refuse_changed_settings(recipe, text_column, label_column, max_rows)
    splits = _rebuilt_splits(source, recipe, progress, stop)
    part = getattr(splits, split)
    to_adapter = label_mapping(info, splits.label_names, name)
    return RowsToScore(
        texts=list(part.texts),
        labels=[to_adapter[y] for y in part.labels],
        split=split,
        description=f"the training run's {_SPLIT_NAMES[split]} split: {len(part.texts):,} rows of {name} "
        f"({recipe.describe_split()})",
    )


def evaluate_adapter_on(
    source: str | Path,
    classifier,
    split: str | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    max_rows: int | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> AdapterEvaluation:
    """Test metrics of a loaded ``classify.Classifier`` on the rows ``rows_to_score`` picks."""
    from .evaluate import metrics_from_probabilities

    rows = rows_to_score(
        source,
        classifier.info,
        split,
        text_column=text_column,
        label_column=label_column,
        max_rows=max_rows,
        progress=progress,
        stop=stop,
    )
    from .thresholds import decision_summary

    probs = classifier.probabilities(rows.texts, batch_size=batch_size, stop=stop, progress=progress)
    names = tuple(classifier.info.label_names)
    metrics = metrics_from_probabilities(probs, rows.labels, names, rows.texts, threshold=classifier.threshold)
    decision = decision_summary(probs, rows.labels, classifier.threshold, classifier.temperature)
    return AdapterEvaluation(metrics, rows.split, len(rows.texts), rows.description, decision)


def _rebuilt_splits(source, recipe, progress, stop) -> datamod.DatasetSplits:
    cfg = recipe.data_config(source)
    return datamod.make_splits(datamod.load_table(cfg, progress=progress, stop=stop), cfg, seed=recipe.seed)


def run_splits(
    sources: Sequence[str | Path],
    info: AdapterInfo,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> tuple[str | Path, datamod.DatasetSplits]:
    """The run's own training/validation/test split, rebuilt from the first of ``sources`` that
    holds the bytes the adapter was trained on (a run folder's dataset, the file open in the window).

    DataError, naming what was tried, when none does: a threshold, a temperature or a label-error
    ranking is worth only what its rows are, so it is never computed on rows of unknown origin.
    """
    recipe = info.data
    if recipe is None:
        raise DataError(
            "This adapter does not record how its training data was split (saved before data recipes, "
            "or imported), so its held-out rows cannot be rebuilt."
        )
    tried = []
    for source in dict.fromkeys(str(s) for s in sources if s):
        try:
            dataset = datamod.identify_dataset(source, progress=progress, stop=stop)
        except Cancelled:
            raise
        except (WorkbenchError, OSError) as exc:  # gone, unreadable, not downloadable offline
            tried.append(f"{_dataset_name(source)}: {exc}")
            continue
        if dataset.sha256 == recipe.dataset.sha256:
            return source, _rebuilt_splits(source, recipe, progress, stop)
        tried.append(f"{_dataset_name(source)}: other contents (sha256 {dataset.short_hash()}…)")
    where = "; ".join(tried) if tried else "no file was given"
    raise DataError(
        f"The file this adapter was trained on ({recipe.dataset.name}, sha256 {recipe.dataset.short_hash()}…) "
        f"is needed to rebuild its held-out rows; open it as the dataset. Tried: {where}."
    )


@dataclass(frozen=True)
class ScoredSplit:
    """One held-out split of the run, scored by the adapter's model alone (no temperature, so a
    temperature can be fitted or compared; no threshold: the probabilities decide nothing yet)."""

    name: str  # "test" or "val"
    texts: list[str]
    labels: list[int]  # the adapter's class ids
    probabilities: torch.Tensor  # (N, C) float32


def score_held_out(
    classifier,
    sources: Sequence[str | Path],
    parts: Sequence[str] = ("val", "test"),
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> tuple[str, dict[str, ScoredSplit]]:
    """The run's held-out ``parts`` scored by ``classifier``: what the window's threshold and
    calibration views are drawn from. Returns the description of the rows and the scored parts."""
    from .thresholds import apply_temperature

    source, splits = run_splits(sources, classifier.info, progress=progress, stop=stop)
    to_adapter = label_mapping(classifier.info, splits.label_names, _dataset_name(source))
    scored = {}
    for name in parts:
        part = getattr(splits, name)
        probs = classifier.probabilities(list(part.texts), batch_size=batch_size, stop=stop, progress=progress)
        if classifier.temperature is not None:  # undo it: the views apply the temperature they show
            probs = apply_temperature(probs, 1 / classifier.temperature)
        scored[name] = ScoredSplit(name, list(part.texts), [to_adapter[y] for y in part.labels], probs)
    description = (
        f"the training run's held-out rows of {_dataset_name(source)} ({classifier.info.data.describe_split()})"
    )
    return description, scored


def _every_row(source, info, trained_on, edited, text_column, label_column, max_rows, progress, stop) -> RowsToScore:
    """Every usable row (repeats included, no balancing), in file order, plainly labelled."""
    recipe = info.data if trained_on or edited else None  # its columns fit this file
    cfg = DataConfig(
        source=str(source),
        text_column=text_column or (recipe.text_column if recipe else None),
        label_column=label_column or (recipe.label_column if recipe else None),
        max_rows=max_rows or (recipe.max_rows if recipe and trained_on else None),
    )
    usable = datamod.usable_rows(datamod.load_table(cfg, progress=progress, stop=stop), cfg, drop_duplicates=False)
    name = _dataset_name(source)
    names = list(usable.class_counts())
    to_adapter = dict(zip(names, label_mapping(info, names, name)))
    if trained_on:
        caveat = "training rows included, so this is not a held-out score"
    elif edited:
        caveat = "a changed copy of the training file, so some rows may have been trained on"
    elif info.data is None:
        caveat = "the adapter does not record its training data, so some rows may have been trained on"
    else:
        caveat = "a file this adapter was not trained on"
    return RowsToScore(
        texts=[text for text, _ in usable.rows],
        labels=[to_adapter[label] for _, label in usable.rows],
        split="all",
        description=f"every row of {name}: {len(usable.rows):,} rows ({caveat})",
    )


def _refuse_changed_settings(recipe, text_column, label_column, max_rows) -> None:
    """Columns or a row limit other than the run's would rebuild a different split: refuse."""
    for option, given, recorded in (
        ("--text-column", text_column, recipe.text_column),
        ("--label-column", label_column, recipe.label_column),
        ("--max-rows", max_rows, recipe.max_rows),
    ):
        if given is not None and given != recorded:
            raise DataError(
                f"The run's split was made with {option} {recorded!r}, not {given!r}; leave {option} out "
                "to rebuild it, or use --split all to score every row with your choice."
            )


def _dataset_name(source: str | Path) -> str:
    return "the SMS Spam Collection" if str(source) == datamod.SMS_SPAM else Path(source).name
