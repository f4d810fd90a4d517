"""Labels and splits: clean, balance and split a table into train/validation/test, reproducibly.

The SMS recipe is the one in chapter 6 of "Build a Large Language Model (From Scratch)"
(section 6.2): keep every message (repeats included), undersample "ham" to the 747 "spam"
messages, shuffle, and cut 70/10/20, which gives 1045/149/300 examples. Any other file goes
through the same path, with its own columns, labels and (by default) duplicate removal.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..errors import DataError
from .tables import _MISSING_LABELS, SMS_SPAM, Table, _is_number

# --------------------------------------------------------------------------- labels and splits

TEXT_LIKE_MIN_VALUES = 10  # fewer distinct values than this: too few to tell text from classes


def looks_like_text_column(class_counts: Mapping[str, int]) -> bool:
    """Whether a column chosen as the label holds texts rather than classes, from its counts
    (value -> rows): classes repeat, texts hardly ever do. More distinct values than half its
    rows (and at least TEXT_LIKE_MIN_VALUES) is a text column: the SMS messages as labels give
    5,158 "classes" in 5,574 rows. A dataset of that shape could not train a classifier anyway,
    since every class needs examples in each of train, validation and test."""
    distinct, rows = len(class_counts), sum(class_counts.values())
    return distinct >= TEXT_LIKE_MIN_VALUES and distinct > rows / 2


@dataclass(frozen=True)
class LabeledTexts:
    texts: list[str]
    labels: list[int]  # class ids: indices into DatasetSplits.label_names


@dataclass(frozen=True)
class DatasetSplits:
    train: LabeledTexts
    val: LabeledTexts
    test: LabeledTexts
    label_names: list[str]  # index = class id; sorted ("ham"=0, "spam"=1), numbers numerically
    class_counts: dict[str, int]  # per label after dropping empty rows and duplicates, before balancing
    dropped_empty: int  # rows with an empty text, or a missing label ("", NA, NaN, null, #N/A, ...)
    dropped_duplicates: int  # repeats of an earlier (text, label) pair


def make_splits(table: Table, cfg: DataConfig) -> DatasetSplits:
    """Clean, balance and split a table into train/validation/test, reproducibly for ``cfg.seed``.

    Sizes follow the book's ``random_split``: int(n*train), int(n*val), and the rest for test;
    within those totals every class gets its proportional share (stratified), so a small or
    skewed dataset still has every class in every split.
    """
    text_column, label_column = _chosen_columns(table, cfg)
    frame = table.frame
    texts = frame[text_column].fillna("").astype(str).tolist()
    labels = [label.strip() for label in frame[label_column].fillna("").astype(str).tolist()]

    rows = [(text, label) for text, label in zip(texts, labels) if text.strip() and label not in _MISSING_LABELS]
    dropped_empty = len(texts) - len(rows)
    drop_duplicates = cfg.drop_duplicates if cfg.drop_duplicates is not None else table.source != SMS_SPAM
    dropped_duplicates = 0
    if drop_duplicates:
        unique = list(dict.fromkeys(rows))  # keeps the first of each (text, label)
        dropped_duplicates = len(rows) - len(unique)
        rows = unique

    label_names = _sorted_labels({label for _, label in rows})
    if len(label_names) < 2:
        found = f"only the label {_short(label_names[0])!r}" if label_names else "no labels"
        raise DataError(
            f"Column {label_column!r} of {_describe(table)} has {found}; a classifier needs at "
            "least two classes. Choose another label column or another file."
        )
    by_class: dict[str, list[str]] = {name: [] for name in label_names}
    for text, label in rows:
        by_class[label].append(text)
    class_counts = {name: len(by_class[name]) for name in label_names}

    rng = random.Random(cfg.seed)
    if cfg.balance:
        smallest = min(class_counts.values())
        by_class = {name: rng.sample(items, smallest) for name, items in by_class.items()}
    for items in by_class.values():
        rng.shuffle(items)

    train, val, test = _stratified_split(by_class, label_names, cfg, rng, table)
    return DatasetSplits(train, val, test, label_names, class_counts, dropped_empty, dropped_duplicates)


def _short(label: str, limit: int = 24) -> str:
    """A label as a message quotes it: a "label" that is really a long text is cut."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _describe(table: Table) -> str:
    return "the SMS Spam Collection" if table.source == SMS_SPAM else Path(table.source).name


def _chosen_columns(table: Table, cfg: DataConfig) -> tuple[str, str]:
    """The configured columns, else the detected ones; errors list what the file offers."""
    available = [str(c) for c in table.frame.columns]
    listing = ", ".join(repr(c) for c in available) or "(none)"
    chosen: list[str] = []
    for role, configured, detected in (
        ("text", cfg.text_column, table.text_column),
        ("label", cfg.label_column, table.label_column),
    ):
        if configured is not None and configured not in available:
            raise DataError(
                f"The {role} column {configured!r} is not in {_describe(table)}. "
                f"Its columns are: {listing}. Choose one of those."
            )
        column = configured if configured is not None else detected
        if column is None or column not in available:
            raise DataError(
                f"Could not tell which column of {_describe(table)} holds the {role}. "
                f"Its columns are: {listing}. Choose the {role} column."
            )
        chosen.append(column)
    if chosen[0] == chosen[1]:
        raise DataError(
            f"The text and the label column are both {chosen[0]!r}. Choose two different columns "
            f"of {_describe(table)} (its columns are: {listing})."
        )
    return chosen[0], chosen[1]


def _sorted_labels(labels: set[str]) -> list[str]:
    """Alphabetical, or numerical when every label is a number (so "2" < "10")."""
    if labels and all(_is_number(label) for label in labels):
        return sorted(labels, key=lambda label: (float(label), label))
    return sorted(labels)


def _stratified_split(
    by_class: dict[str, list[str]],
    label_names: list[str],
    cfg: DataConfig,
    rng: random.Random,
    table: Table,
) -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
    sizes = [len(by_class[name]) for name in label_names]
    n = sum(sizes)
    n_train = int(n * cfg.train_fraction)
    n_val = int(n * cfg.val_fraction)
    n_test = n - n_train - n_val
    train_k = _apportion(n_train, sizes)
    left = [size - k for size, k in zip(sizes, train_k)]
    val_k = _apportion(n_val, left)  # shares of what is left keep the test set stratified too

    if min(n_train, n_val, n_test) < 1 or min(train_k) < 1:
        shown = 6  # a label column that is really text has a "class" per row; list a few
        counts = ", ".join(f"{size} {_short(name)!r}" for name, size in zip(label_names[:shown], sizes))
        if len(label_names) > shown:
            counts += f" and {len(label_names) - shown} more labels"
        raise DataError(
            f"{_describe(table)} is too small to split: {n} usable rows ({counts}) give {n_train} "
            f"training, {n_val} validation and {n_test} test examples, but every split needs "
            "examples and training needs every class. Add more rows, or change the split fractions."
        )

    splits: list[list[tuple[str, int]]] = [[], [], []]
    for class_id, name in enumerate(label_names):
        items = by_class[name]
        cut_val, cut_test = train_k[class_id], train_k[class_id] + val_k[class_id]
        for split, part in zip(splits, (items[:cut_val], items[cut_val:cut_test], items[cut_test:])):
            split.extend((text, class_id) for text in part)
    result = []
    for split in splits:
        rng.shuffle(split)  # mix the classes
        result.append(LabeledTexts([text for text, _ in split], [label for _, label in split]))
    return result[0], result[1], result[2]


def _apportion(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` across classes in proportion to ``sizes`` (largest remainder), never above a size."""
    whole = sum(sizes)
    if total <= 0 or whole <= 0:
        return [0] * len(sizes)
    exact = [total * size / whole for size in sizes]
    shares = [min(int(x), size) for x, size in zip(exact, sizes)]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    rest = total - sum(shares)
    while rest > 0:
        open_classes = [i for i in by_remainder if shares[i] < sizes[i]]
        if not open_classes:
            break
        for i in open_classes[:rest]:
            shares[i] += 1
        rest = total - sum(shares)
    return shares
