"""Labels: one cleaning rule (``canonical_labels``) merges spellings of a class and says so; a
text column chosen as the label column is refused early; per-class output is capped."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from test_robustness import write_csv

from workbench.cli import format_metrics, main
from workbench.core import events as ev
from workbench.core.adapters import read_adapter
from workbench.core.config import DataConfig
from workbench.core.data import Table, canonical_labels, clean_label, label_key, make_splits
from workbench.core.data.splits import MAX_CLASSES
from workbench.core.errors import DataError
from workbench.core.evaluate import MAX_CONFUSION_CLASSES, classification_metrics


def table_of(labels: list[str], texts: list[str] | None = None) -> Table:
    texts = texts or [f"message {i} {'win cash' if i % 2 else 'see you'}" for i in range(len(labels))]
    return Table(pd.DataFrame({"text": texts, "label": labels}), "labels.csv", "utf-8", "text", "label")


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "spellings",
    [
        ("spam", "Spam", "SPAM", " spam", "spam "),
        ("0", "0.0", "00", "-0", "0e3"),
        ("10", "10.0", "1e1", "+10"),
        ("Straße", "STRASSE"),  # casefold, not lower()
    ],
)
def test_spellings_of_one_class_share_a_key(spellings):
    assert len({label_key(clean_label(s)) for s in spellings}) == 1


@pytest.mark.parametrize(("a", "b"), [("1", "10"), ("1.5", "15"), ("spam", "spam2"), ("a b", "ab"), ("1", "1.0001")])
def test_different_labels_stay_apart(a, b):
    assert label_key(a) != label_key(b)


def test_missing_labels_are_not_classes():
    for missing in ("", "  ", "NA", "NaN", "null", "#N/A", None):
        assert clean_label(missing) is None
    assert canonical_labels(["", "NA", None, "ham"]).names == ["ham"]


def test_a_merged_class_is_named_by_its_most_frequent_spelling_and_keeps_the_others():
    classes = canonical_labels(["Spam", "spam", "spam", "spam ", "ham", "0", "0.0", "0.0"])
    assert classes.names == ["0.0", "ham", "spam"]
    assert classes.counts == {"spam": 4, "ham": 1, "0.0": 3}
    assert classes.merged == {"spam": ("spam", "Spam", "spam "), "0.0": ("0.0", "0")}
    assert classes.class_of["spam "] == "spam" and classes.class_of["0"] == "0.0"


def test_splitting_uses_the_rule_and_reports_the_merge():
    labels = ["spam", "spam", "Spam", "spam "] * 10 + ["ham"] * 40
    splits = make_splits(table_of(labels), DataConfig(source="labels.csv", balance=False), seed=123)
    assert splits.label_names == ["ham", "spam"] and splits.class_counts == {"ham": 40, "spam": 40}
    assert splits.merged_labels == {"spam": ("spam", "Spam", "spam ")}
    tie = make_splits(table_of(["b", "B"] * 10 + ["a"] * 20), DataConfig(source="x"), seed=123)
    assert tie.label_names == ["B", "a"]  # a tie: the first spelling in sort order names the class
    assert make_splits(table_of(["ham", "spam"] * 15), DataConfig(source="x"), seed=123).merged_labels == {}


def test_rows_that_repeat_once_spellings_merge_are_duplicates():
    texts = [f"t{i}" for i in range(20)] * 2 + [f"h{i}" for i in range(20)]
    labels = ["spam"] * 20 + ["Spam "] * 20 + ["ham"] * 20
    splits = make_splits(table_of(labels, texts), DataConfig(source="labels.csv"), seed=123)
    assert splits.class_counts == {"Spam": 20, "ham": 20} and splits.dropped_duplicates == 20  # a tie


# --------------------------------------------------------------------------- end to end


def test_training_merges_says_so_and_the_adapter_keeps_the_spellings(tiny_checkpoint, tmp_path, capsys):
    rows = [(f"win cash now {i}", ("spam", "spam", "Spam", "spam ")[i % 4]) for i in range(40)]
    rows += [(f"see you at lunch {i}", "ham") for i in range(40)]
    data = write_csv(tmp_path / "mixed.csv", rows)
    out = tmp_path / "a.safetensors"
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(data), "--rank", "2", "--epochs", "1"]
    assert main([*argv, "--max-steps", "2", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "labels written several ways, merged: 'spam' (also 'Spam', 'spam ')" in printed
    _, info = read_adapter(out)
    assert info.label_names == ("ham", "spam") and info.label_spellings == {"spam": ("spam", "Spam", "spam ")}

    # Another file spelling the class differently still evaluates against the adapter's classes.
    other = write_csv(tmp_path / "other.csv", [(t, "SPAM" if "win" in t else "Ham") for t, _ in rows])
    assert main(["eval", "--adapter", str(out), "--data", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label_names"] == list(info.label_names)


# --------------------------------------------------------------------------- text as labels


def test_ten_thousand_distinct_labels_are_refused_as_a_text_column(tiny_checkpoint, tmp_path, capsys):
    rows = [(f"message {i}", f"some free text number {i // 2}") for i in range(20_000)]  # 10,000 labels
    data = write_csv(tmp_path / "texty.csv", rows)
    table = table_of([label for _, label in rows], [text for text, _ in rows])
    with pytest.raises(DataError, match="looks like a text column"):
        make_splits(table, DataConfig(source="labels.csv"), seed=123)
    code = main(["train", "--model", str(tiny_checkpoint), "--data", str(data), "--out", str(tmp_path / "a.st")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "looks like a text column" in err


def test_mostly_unique_labels_are_refused_and_many_real_classes_are_not():
    unique = [f"label {i}" for i in range(60)] + ["a", "b"] * 10
    with pytest.raises(DataError, match="60 of them on a single row"):
        make_splits(table_of(unique), DataConfig(source="labels.csv"), seed=123)
    many = [f"class {i % 50}" for i in range(50 * 6)]  # 50 real classes of 6 rows each
    assert len(make_splits(table_of(many), DataConfig(source="labels.csv"), seed=123).label_names) == 50
    with pytest.raises(DataError, match="too small to split"):  # a tiny file keeps its own message
        make_splits(table_of(["a", "b", "c", "d"]), DataConfig(source="labels.csv"), seed=123)
    assert MAX_CLASSES == 1000


# --------------------------------------------------------------------------- capped output


def test_per_class_output_is_capped():
    k = 300
    names = tuple(f"class {i}" for i in range(k))
    true = [i % k for i in range(3 * k)]
    metrics = classification_metrics(true, true, names, loss=0.1)
    assert metrics.confusion == () and k > MAX_CONFUSION_CLASSES  # not stored as k² numbers
    assert len(metrics.f1) == k
    text = format_metrics(metrics)
    assert len(text.splitlines()) <= 25 and "and 280 more classes" in text
    recorded = json.dumps(ev.to_json(ev.TrainingFinished(False, 1, 1, 1.0, "r", "a", "c", metrics)))
    assert len(recorded) < 100_000
    few = classification_metrics([0, 1, 1], [0, 1, 0], ("ham", "spam"), loss=math.nan)
    assert few.confusion == ((1, 0), (1, 1)) and "confusion" in format_metrics(few)
