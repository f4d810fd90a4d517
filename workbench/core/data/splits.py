"""Labels and splits: clean, balance and split a table into train/validation/test, reproducibly.

The SMS recipe is the one in chapter 6 of "Build a Large Language Model (From Scratch)"
(section 6.2): keep every message (repeats included), undersample "ham" to the 747 "spam"
messages, shuffle, and cut 70/10/20, which gives 1045/149/300 examples. Any other file goes
through the same path, with its own columns, labels and (by default) duplicate removal.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..config import SMS_SPAM, DataConfig
from ..errors import DataError
from ..limits import label_names_problem
from ..progress import CHECK_EVERY, checked_chunks, raise_if_stopped
from ..text import printable
from .tables import _MISSING_LABELS, Table, _is_number

# --------------------------------------------------------------------------- labels and splits


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
    # Classes written several ways in the file ("spam", "Spam", "spam "): class name -> every
    # spelling it stands for, most frequent first. Empty when every class has one spelling.
    merged_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # What the split was made from, for the adapter's data recipe (see recipe.py).
    text_column: str = ""
    label_column: str = ""
    drop_duplicates: bool = True  # the resolved setting (DataConfig.drop_duplicates None: by source)
    label_values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class -> spellings in the file


# --------------------------------------------------------------------------- label cleaning

# A label column with more classes than this is not a label column (a classifier over thousands
# of classes from a CSV is not what the workbench is for, and the per-class metrics grow as k²).
MAX_CLASSES = 1000
# ... nor is one where most rows carry a label no other row has (checked from this many rows on,
# so a tiny file still gets the "too small to split" message that lists its labels).
MOSTLY_UNIQUE_SHARE = 0.5
MOSTLY_UNIQUE_MIN_ROWS = 20


def looks_like_text_column(class_counts: Mapping[str, int]) -> bool:
    """Whether a column chosen as the label holds texts rather than classes, from its counts
    (value -> rows): classes repeat, texts hardly ever do. The one rule, for the window's check
    before Start and for ``make_splits``: more than MAX_CLASSES values, or (from
    MOSTLY_UNIQUE_MIN_ROWS rows on) most rows carrying a value no other row has. The SMS
    messages as labels give 5,158 "classes" in 5,574 rows."""
    rows = sum(class_counts.values())
    singletons = sum(1 for n in class_counts.values() if n == 1)
    mostly_unique = rows >= MOSTLY_UNIQUE_MIN_ROWS and singletons > MOSTLY_UNIQUE_SHARE * rows
    return len(class_counts) > MAX_CLASSES or mostly_unique


def clean_label(value: object) -> str | None:
    """A label cell as a class spelling: surrounding whitespace removed; None for a missing
    label (empty, or what pandas, R, SQL and Excel write for "no value")."""
    label = "" if value is None else str(value).strip()
    return None if label in _MISSING_LABELS else label


def label_key(label: str) -> str:
    """What two spellings of one class share: case does not count ("Spam" = "spam"), and numbers
    compare by value ("0" = "0.0" = "00", "1e1" = "10"), exactly (Decimal, not float)."""
    try:
        number = Decimal(label)
    except InvalidOperation:
        return label.casefold()
    if not number.is_finite():
        return label.casefold()
    # str, not format "f": "1e999999" must not become a million zeros
    return "0" if number.is_zero() else str(number.normalize())


@dataclass(frozen=True)
class LabelClasses:
    """The classes a label column holds, once spellings of one class are merged."""

    names: list[str]  # sorted: alphabetically, or numerically when every class is a number
    class_of: dict[str, str]  # every spelling as written in the file -> the name of its class
    counts: dict[str, int]  # rows per class
    merged: dict[str, tuple[str, ...]]  # class -> its spellings as written (most frequent first), when several
    rename_problem: str = ""  # why the renames asked for cannot apply (a label not there, two made one)


def canonical_labels(
    values: Iterable[object],
    stop: threading.Event | None = None,
    rename: tuple[tuple[str, str], ...] = (),
) -> LabelClasses:
    """The one label-cleaning rule, for splitting and for counting classes (the window's too).

    Missing labels are skipped (``clean_label``) and spellings with the same ``label_key`` become
    one class ("spam", "Spam", "spam "), named by its most frequent spelling without surrounding
    spaces (ties: the first in sort order), so an adapter's label names are spellings the user wrote,
    or the names ``rename`` gives them (("0", "ham"): a label matched by the same rule, "0.0" too).
    A rename that matches no class, or that would make two classes one, is not applied but said in
    ``rename_problem`` (the caller decides: training refuses, the window shows it).
    """
    spellings: Counter[str] = Counter()
    for part in checked_chunks(list(values), stop, "Reading the labels"):
        spellings.update("" if value is None else str(value) for value in part)
    groups: dict[str, list[str]] = {}
    for part in checked_chunks(sorted(spellings), stop, "Reading the labels"):
        for spelling in part:
            label = clean_label(spelling)
            if label is not None:
                groups.setdefault(label_key(label), []).append(spelling)
    class_of: dict[str, str] = {}
    counts: dict[str, int] = {}
    merged: dict[str, tuple[str, ...]] = {}
    for group in groups.values():
        group.sort(key=lambda spelling: -spellings[spelling])  # stable: ties keep sort order
        name = group[0].strip()
        counts[name] = sum(spellings[spelling] for spelling in group)
        class_of.update(dict.fromkeys(group, name))
        if len(group) > 1:
            merged[name] = tuple(group)
    classes = LabelClasses(_sorted_labels(set(counts)), class_of, counts, merged)
    return _renamed(classes, rename) if rename else classes


def _renamed(classes: LabelClasses, rename: tuple[tuple[str, str], ...]) -> LabelClasses:
    """``classes`` with the names ``rename`` gives; each renamed class keeps its spellings in
    ``merged``, so an adapter records them and recognises "0" in another file as its "ham"."""
    by_key = {label_key(name): name for name in classes.names}
    unknown = [old for old, _ in rename if label_key(old) not in by_key]
    new_of = {by_key[label_key(old)]: new.strip() for old, new in rename if label_key(old) in by_key}
    final = [new_of.get(name, name) for name in classes.names]
    problem = ""
    if unknown:
        problem = (
            f"no label {', '.join(repr(printable(u, 24)) for u in unknown[:3])} to rename (the labels are "
            + (", ".join(repr(printable(n, 24)) for n in classes.names[:8]))
            + ")"
        )
    elif len({label_key(n) for n in final}) < len(final):
        problem = "renaming would make two classes one; give each class its own name"
    if problem:
        return replace(classes, rename_problem=problem)
    spellings = {name: classes.merged.get(name, (name,)) for name in classes.names}
    return LabelClasses(
        _sorted_labels(set(final)),
        {spelling: new_of.get(name, name) for spelling, name in classes.class_of.items()},
        {new_of.get(name, name): count for name, count in classes.counts.items()},
        {new_of.get(name, name): spellings[name] for name in classes.names if name in new_of or name in classes.merged},
    )


def describe_merges(merged: dict[str, tuple[str, ...]], limit: int = 5) -> str:
    """ "'spam' (also 'Spam', 'spam '), …" for a log line; labels escaped and cut, at most ``limit``."""
    shown = [
        f"{printable(name, 24)!r} (also {', '.join(repr(printable(s, 24)) for s in spellings[1:4])}"
        + (" …" if len(spellings) > 4 else "")
        + ")"
        for name, spellings in list(merged.items())[:limit]
    ]
    more = f" and {len(merged) - limit} more" if len(merged) > limit else ""
    return ", ".join(shown) + more


# --------------------------------------------------------------------------- splitting


@dataclass(frozen=True)
class UsableRows:
    """A table's rows as training sees them: (text, class name) pairs after the one cleaning rule."""

    rows: list[tuple[str, str]]
    text_column: str
    label_column: str
    dropped_empty: int
    dropped_duplicates: int
    drop_duplicates: bool
    classes: LabelClasses

    def class_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, label in self.rows:
            counts[label] = counts.get(label, 0) + 1
        return {name: counts[name] for name in _sorted_labels(set(counts))}

    def label_values(self, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Each class's spellings as written in the file (" spam", "Spam"), a few, most frequent first."""
        values: dict[str, list[str]] = {name: [] for name in names}
        for spelling, name in self.classes.class_of.items():
            if name in values and len(values[name]) < MAX_SPELLINGS:
                values[name].append(spelling)
        return {name: tuple(found) for name, found in values.items()}


MAX_SPELLINGS = 4  # original spellings kept per label: enough to show, bounded for a messy column


def usable_rows(
    table: Table, cfg: DataConfig, *, drop_duplicates: bool | None = None, stop: threading.Event | None = None
) -> UsableRows:
    """The rows of ``table`` that can train or score: a text that is not blank and a label that is
    not missing, spellings of one class merged (``canonical_labels``); exact repeats of a (text,
    label) pair dropped where ``cfg`` (or ``drop_duplicates``) says so. The one cleaning rule:
    splits, class counts and evaluation all read rows through here."""
    what = f"Splitting {_describe(table)}"
    text_column, label_column = _chosen_columns(table, cfg)
    frame = table.frame
    texts = frame[text_column].fillna("").astype(str).tolist()
    raise_if_stopped(stop, what)
    labels = frame[label_column].fillna("").astype(str).tolist()

    classes = canonical_labels([label for text, label in zip(texts, labels) if text.strip()], stop, cfg.rename_labels)
    if classes.rename_problem:
        raise DataError(f"Column {printable(label_column, 40)!r}: {classes.rename_problem}.")
    rows: list[tuple[str, str]] = []
    for part_texts, part_labels in zip(checked_chunks(texts, stop, what), checked_chunks(labels, stop, what)):
        rows.extend(
            (text, classes.class_of[label])
            for text, label in zip(part_texts, part_labels)
            if label in classes.class_of and text.strip()
        )
    dropped_empty = len(texts) - len(rows)
    if drop_duplicates is None:
        drop_duplicates = cfg.drop_duplicates if cfg.drop_duplicates is not None else table.source != SMS_SPAM
    dropped_duplicates = 0
    if drop_duplicates:
        unique: dict[tuple[str, str], None] = {}
        for part in checked_chunks(rows, stop, what):
            unique.update(dict.fromkeys(part))  # keeps the first of each (text, label), in order
        dropped_duplicates = len(rows) - len(unique)
        rows = list(unique)
        del unique
    return UsableRows(rows, text_column, label_column, dropped_empty, dropped_duplicates, drop_duplicates, classes)


def count_classes(table: Table, cfg: DataConfig) -> dict[str, int]:
    """Usable rows per class, exactly as ``make_splits`` counts them before balancing (in its label
    order): what a window shows next to the label column, so it never counts "NA" as a class."""
    return usable_rows(table, cfg).class_counts()


def make_splits(table: Table, cfg: DataConfig, *, seed: int, stop: threading.Event | None = None) -> DatasetSplits:
    """Clean, balance and split a table into train/validation/test, reproducibly for ``seed`` (the
    run's ``TrainConfig.seed``, so `workbench eval` rebuilding from the adapter's recipe scores the
    same test set).

    Sizes follow the book's ``random_split``: int(n*train), int(n*val), and the rest for test;
    within those totals every class gets its proportional share (stratified), so a small or
    skewed dataset still has every class in every split. Labels are cleaned and merged by
    ``canonical_labels``; a column that looks like text rather than labels is refused before any
    work that grows with the number of classes. ``stop`` is checked every ``CHECK_EVERY`` rows.
    """
    what = f"Splitting {_describe(table)}"
    usable = usable_rows(table, cfg, stop=stop)
    rows, label_column = usable.rows, usable.label_column
    by_label: dict[str, list[str]] = {}
    for part in checked_chunks(rows, stop, what):
        for text, label in part:
            by_label.setdefault(label, []).append(text)
    n_rows = len(rows)
    del rows
    _refuse_text_as_labels(by_label, n_rows, label_column, table)
    label_names = _sorted_labels(set(by_label))
    if len(label_names) < 2:
        found = f"only the label {_short(label_names[0])!r}" if label_names else "no labels"
        raise DataError(
            f"Column {label_column!r} of {_describe(table)} has {found}; a classifier needs at "
            "least two classes. Choose another label column or another file."
        )
    problem = label_names_problem(label_names)  # the bounds an adapter's labels must keep (limits.py)
    if problem:
        raise DataError(
            f"Column {printable(label_column, 40)!r} of {_describe(table)} cannot be the labels: {problem}. "
            "It looks like a text column; choose the column that holds the labels."
        )
    by_class = {name: by_label[name] for name in label_names}
    class_counts = {name: len(by_class[name]) for name in label_names}

    rng = random.Random(seed)
    if cfg.balance:
        smallest = min(class_counts.values())
        by_class = {name: sample(rng, items, smallest, stop, what) for name, items in by_class.items()}
    for items in by_class.values():
        shuffle(rng, items, stop, what)

    train, val, test = _stratified_split(by_class, label_names, cfg, rng, table, stop, what)
    merged = {name: spellings for name, spellings in usable.classes.merged.items() if name in by_class}
    return DatasetSplits(
        train,
        val,
        test,
        label_names,
        class_counts,
        usable.dropped_empty,
        usable.dropped_duplicates,
        merged,
        text_column=usable.text_column,
        label_column=label_column,
        drop_duplicates=usable.drop_duplicates,
        label_values=usable.label_values(label_names),
    )


def _refuse_text_as_labels(by_label: dict[str, list[str]], n_rows: int, column: str, table: Table) -> None:
    """A text column chosen as the label column has a "class" per row or nearly: say so, before
    the per-class work (splitting, metrics) that grows with the number of classes."""
    singletons = sum(1 for texts in by_label.values() if len(texts) == 1)
    if looks_like_text_column({label: len(texts) for label, texts in by_label.items()}):
        raise DataError(
            f"Column {printable(column, 40)!r} of {_describe(table)} looks like a text column, not labels: "
            f"{len(by_label):,} different values in {n_rows:,} rows, {singletons:,} of them on a single row "
            f"(at most {MAX_CLASSES:,} classes, and most rows sharing their label with others, make a label "
            "column). Choose the column that holds the class names as the label column."
        )


def shuffle(rng: random.Random, items: list, stop: threading.Event | None, what: str) -> None:
    """``rng.shuffle(items)``, the same permutation for the same seed, checking ``stop`` every
    ``CHECK_EVERY`` swaps. CPython's Fisher-Yates loop (Lib/random.py) is pure Python too, so this
    costs what it costs; a test pins the equality."""
    randbelow = rng._randbelow
    for top in range(len(items) - 1, 0, -CHECK_EVERY):
        raise_if_stopped(stop, what)
        for i in range(top, max(top - CHECK_EVERY, 0), -1):
            j = randbelow(i + 1)
            items[i], items[j] = items[j], items[i]


def sample(rng: random.Random, population: list, k: int, stop: threading.Event | None, what: str) -> list:
    """``rng.sample(population, k)``, the same picks for the same seed (CPython's algorithm from
    Lib/random.py: a pool for large samples, a set of picks for small ones), checking ``stop``
    every ``CHECK_EVERY`` picks; a test pins the equality."""
    n = len(population)
    if not 0 <= k <= n:
        raise ValueError("Sample larger than population or is negative")
    randbelow = rng._randbelow
    result = [None] * k
    setsize = 21  # CPython's: the size of a small set minus that of an empty list
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    if n <= setsize:
        pool = list(population)
        for i in range(k):
            if i % CHECK_EVERY == 0:
                raise_if_stopped(stop, what)
            j = randbelow(n - i)
            result[i] = pool[j]
            pool[j] = pool[n - i - 1]
    else:
        selected: set[int] = set()
        for i in range(k):
            if i % CHECK_EVERY == 0:
                raise_if_stopped(stop, what)
            j = randbelow(n)
            while j in selected:
                j = randbelow(n)
            selected.add(j)
            result[i] = population[j]
    return result


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
    stop: threading.Event | None,
    what: str,
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
            for chunk in checked_chunks(part, stop, what):
                split.extend((text, class_id) for text in chunk)
    result = []
    while splits:
        split = splits.pop(0)
        shuffle(rng, split, stop, what)  # mix the classes
        texts: list[str] = []
        labels: list[int] = []
        for chunk in checked_chunks(split, stop, what):
            texts.extend(text for text, _ in chunk)
            labels.extend(label for _, label in chunk)
        del split, chunk  # the pairs, freed now rather than all at once on return
        raise_if_stopped(stop, what)
        result.append(LabeledTexts(texts, labels))
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
