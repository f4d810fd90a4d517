"""A dataset's health before training: class balance, token lengths against the cut, empty rows,
exact and near duplicates, and duplicates that land in different splits.

Duplicates across splits matter most: a test message whose copy is in the training split is
classified from memory, so test accuracy overstates what the model does on new text. The splits
are the ones training makes (``splits.make_splits`` with the same DataConfig), so what is
reported is what a run with these settings would see.

Near duplicates: two texts are near duplicates when their *normalised* forms are equal:
casefolded, every run of digits replaced by "0", every run of whitespace by one space, and
trimmed. That catches the template messages of a spam campaign ("Call 09061701461 to claim
£900" / "call 09061701939 to claim £800") and case or spacing variants, and nothing looser (no
fuzzy matching: what it reports is exact under that rule, with no threshold to tune).
"""

from __future__ import annotations

import re
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from ..progress import Progress
from .batches import encode_texts
from .splits import _chosen_columns, make_splits  # the columns and splits training uses
from .tables import _MISSING_LABELS, Table

EXAMPLES = 5  # examples kept per finding
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class DuplicateGroup:
    texts: tuple[str, ...]  # the different spellings (one for exact duplicates)
    labels: tuple[str, ...]  # every distinct label the copies carry
    count: int  # rows in the group
    splits: tuple[str, ...] = ()  # the splits its copies land in (cross-split findings only)


@dataclass(frozen=True)
class LengthHistogram:
    edges: tuple[int, ...]  # bin i counts lengths in [edges[i], edges[i + 1]); the last bin is closed
    counts: tuple[int, ...]
    max_length: int  # the cut: tokens beyond it are not read
    over_max: int  # texts longer than the cut
    longest: int
    median: float


@dataclass(frozen=True)
class DataHealth:
    source: str
    text_column: str
    label_column: str
    rows: int  # rows in the file
    class_counts: dict[str, int]  # usable rows (text and label present) per label, before de-duplication
    empty_texts: int  # rows whose text is empty or only whitespace
    empty_examples: tuple[int, ...]  # their 1-based row numbers
    missing_labels: int  # rows with a text but no label ("", NA, NaN, null, ...)
    missing_examples: tuple[int, ...]
    exact_duplicates: int  # rows repeating an earlier row's text exactly
    exact_groups: tuple[DuplicateGroup, ...]  # the largest few
    conflicting_labels: int  # texts that appear with more than one label
    conflict_groups: tuple[DuplicateGroup, ...]
    near_duplicates: int  # rows repeating an earlier row's normalised text but not its exact text
    near_groups: tuple[DuplicateGroup, ...]
    split_sizes: dict[str, int]  # train / val / test as training would make them
    cross_split: dict[str, int]  # "val in train", "test in train", "test in val": rows with a (near) copy there
    cross_split_exact: dict[str, int]  # the same, counting exact copies only
    cross_split_groups: tuple[DuplicateGroup, ...]
    lengths: LengthHistogram
    notes: tuple[str, ...] = field(default=())  # one line per thing worth acting on

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def normalise(text: str) -> str:
    """The near-duplicate key (see the module docstring)."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "0", text.casefold())).strip()


def data_health(
    table: Table,
    cfg: DataConfig,
    tokenizer,
    max_length: int,
    seed: int = 123,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> DataHealth:
    """Everything above for ``table`` read with ``cfg``'s columns and split with its settings;
    token lengths with ``tokenizer`` against ``max_length``. Tokenizing a large file takes seconds:
    ``stop`` ends it early (Cancelled) and ``progress`` hears how far it got (the window's Data tab)."""
    text_column, label_column = _chosen_columns(table, cfg)
    texts = table.frame[text_column].fillna("").astype(str).tolist()
    labels = [label.strip() for label in table.frame[label_column].fillna("").astype(str).tolist()]
    empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
    missing = [i + 1 for i, (t, y) in enumerate(zip(texts, labels)) if t.strip() and y in _MISSING_LABELS]
    usable = [(t, y) for t, y in zip(texts, labels) if t.strip() and y not in _MISSING_LABELS]

    exact, exact_groups = _duplicates(usable, key=lambda t: t)
    near_all, near_groups = _duplicates(usable, key=normalise, differing_only=True)
    conflicts = _conflicts(usable)
    splits = make_splits(table, cfg, seed=seed, stop=stop)
    cross, cross_exact, cross_groups = _cross_split(splits)
    # Full lengths (no cut): the histogram marks the cut rather than applying it.
    ids, _ = encode_texts([t for t, _ in usable], tokenizer, 10**9, stop=stop, progress=progress)
    lengths = _histogram([len(row) for row in ids], max_length)
    health = DataHealth(
        source=str(table.source),
        text_column=text_column,
        label_column=label_column,
        rows=len(texts),
        class_counts=dict(sorted(Counter(y for _, y in usable).items())),
        empty_texts=len(empty),
        empty_examples=tuple(empty[:EXAMPLES]),
        missing_labels=len(missing),
        missing_examples=tuple(missing[:EXAMPLES]),
        exact_duplicates=exact,
        exact_groups=exact_groups,
        conflicting_labels=len(conflicts),
        conflict_groups=tuple(conflicts[:EXAMPLES]),
        near_duplicates=max(0, near_all - exact),
        near_groups=near_groups,
        split_sizes={"train": len(splits.train.texts), "val": len(splits.val.texts), "test": len(splits.test.texts)},
        cross_split=cross,
        cross_split_exact=cross_exact,
        cross_split_groups=cross_groups,
        lengths=lengths,
    )
    return _with_notes(health, cfg)


def _duplicates(rows: list[tuple[str, str]], key, differing_only: bool = False) -> tuple[int, tuple]:
    """Rows repeating an earlier row's key, and the largest groups (for near duplicates, only the
    groups whose texts differ: exact repeats are reported on their own)."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for text, label in rows:
        groups[key(text)].append((text, label))
    repeats = sum(len(g) - 1 for g in groups.values())
    shown = [g for g in groups.values() if len(g) > 1 and (not differing_only or len({t for t, _ in g}) > 1)]
    shown.sort(key=lambda g: -len(g))
    return repeats, tuple(_group(g) for g in shown[:EXAMPLES])


def _conflicts(rows: list[tuple[str, str]]) -> list[DuplicateGroup]:
    """Identical texts given different labels: at least one copy is mislabelled (or the task is
    ambiguous), and training sees both answers."""
    by_text: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for text, label in rows:
        by_text[text].append((text, label))
    found = [g for g in by_text.values() if len({y for _, y in g}) > 1]
    found.sort(key=lambda g: -len(g))
    return [_group(g) for g in found]


def _group(members: list[tuple[str, str]], splits: tuple[str, ...] = ()) -> DuplicateGroup:
    texts = tuple(dict.fromkeys(t for t, _ in members))[:EXAMPLES]
    labels = tuple(sorted({y for _, y in members}))
    return DuplicateGroup(texts, labels, len(members), splits)


def _cross_split(splits) -> tuple[dict[str, int], dict[str, int], tuple]:
    """Rows of a later split whose text (exactly, or normalised) is also in an earlier one."""
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    near_keys = {name: {normalise(t) for t in part.texts} for name, part in parts.items()}
    exact_keys = {name: set(part.texts) for name, part in parts.items()}
    near, exact = {}, {}
    for later, earlier in (("val", "train"), ("test", "train"), ("test", "val")):
        texts = parts[later].texts
        near[f"{later} in {earlier}"] = sum(normalise(t) in near_keys[earlier] for t in texts)
        exact[f"{later} in {earlier}"] = sum(t in exact_keys[earlier] for t in texts)
    members: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for name, part in parts.items():
        for text, label in zip(part.texts, part.labels):
            members[normalise(text)].append((text, splits.label_names[label], name))
    spread = [m for m in members.values() if len({s for _, _, s in m}) > 1]
    spread.sort(key=lambda m: -len(m))
    groups = []
    for m in spread[:EXAMPLES]:
        landed = {split for _, _, split in m}
        groups.append(_group([(t, y) for t, y, _ in m], tuple(name for name in parts if name in landed)))
    return near, exact, tuple(groups)


def _histogram(lengths: list[int], max_length: int) -> LengthHistogram:
    if not lengths:
        return LengthHistogram((0, 1), (0,), max_length, 0, 0, 0.0)
    longest = max(lengths)
    top = longest + 1  # the bins span the texts; a cut beyond them is only stated
    width = max(1, -(-top // HISTOGRAM_BINS))
    edges = tuple(range(0, width * HISTOGRAM_BINS + 1, width))
    counts = [0] * HISTOGRAM_BINS
    for n in lengths:
        counts[min(n // width, HISTOGRAM_BINS - 1)] += 1
    ordered = sorted(lengths)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    over = sum(n > max_length for n in lengths)
    return LengthHistogram(edges, tuple(counts), max_length, over, longest, float(median))


def _with_notes(h: DataHealth, cfg: DataConfig) -> DataHealth:
    """The findings a person should act on, one line each."""
    from dataclasses import replace

    notes = []
    counts = list(h.class_counts.values())
    if counts and max(counts) > 3 * min(counts):
        smallest = min(h.class_counts, key=h.class_counts.get)
        notes.append(
            f"classes are imbalanced ({max(counts)}:{min(counts)}); "
            + ("training undersamples to the smallest class (--balance)" if cfg.balance else f"few {smallest!r} rows")
        )
    leaked = h.cross_split["test in train"] + h.cross_split["test in val"]
    if leaked:
        notes.append(
            f"{leaked} of {h.split_sizes['test']} test rows have a (near) copy in training or validation: "
            "test accuracy will overstate accuracy on new text"
        )
    if h.conflicting_labels:
        notes.append(f"{h.conflicting_labels} texts appear with different labels")
    if h.lengths.over_max:
        notes.append(f"{h.lengths.over_max} texts are longer than {h.lengths.max_length} tokens and will be cut")
    if h.empty_texts or h.missing_labels:
        notes.append(f"{h.empty_texts} empty texts and {h.missing_labels} missing labels are left out of training")
    return replace(h, notes=tuple(notes))
