"""Class counts come from the core's one cleaning rule, so a window never counts "NA" as a class
that training then drops."""

import csv

import pytest

from workbench.core.config import DataConfig
from workbench.core.data import count_classes, make_splits, read_table
from workbench.core.data.tables import _MISSING_LABELS
from workbench.core.errors import DataError


def write_rows(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("missing", sorted(_MISSING_LABELS))
def test_missing_labels_are_not_classes(tmp_path, missing):
    rows = [(f"ham text {i}", "ham") for i in range(10)] + [(f"spam text {i}", " spam ") for i in range(10)]
    rows += [(f"unlabelled {i}", missing) for i in range(5)]
    path = write_rows(tmp_path / "data.csv", rows)
    cfg = DataConfig(source=str(path), text_column="text", label_column="label")
    counts = count_classes(read_table(path), cfg)
    assert counts == {"ham": 10, "spam": 10}  # stripped, and the missing label is no class
    assert counts == make_splits(read_table(path), cfg, seed=123).class_counts


def test_counts_follow_the_same_rows_training_keeps(tmp_path):
    rows = [("hello", "b"), ("hello", "b"), ("   ", "a"), ("x", "a"), ("y", "a"), ("z", "b"), ("w", "10"), ("v", "2")]
    path = write_rows(tmp_path / "data.csv", rows)
    cfg = DataConfig(source=str(path), text_column="text", label_column="label")
    # make_splits' label order; a blank text is dropped, the repeated ("hello", "b") counts once
    assert list(count_classes(read_table(path), cfg).items()) == [("10", 1), ("2", 1), ("a", 2), ("b", 2)]
    numbers = write_rows(tmp_path / "numbers.csv", [("p", "10"), ("q", "2"), ("r", "2")])
    assert list(count_classes(read_table(numbers), DataConfig(source=str(numbers)))) == ["2", "10"]
    kept = count_classes(read_table(path), DataConfig(source=str(path), drop_duplicates=False))
    assert kept["b"] == 3


def test_counting_columns_that_do_not_exist_says_so(tmp_path):
    path = write_rows(tmp_path / "data.csv", [("a", "x"), ("b", "y")])
    with pytest.raises(DataError, match="The label column 'tag' is not in data.csv"):
        count_classes(read_table(path), DataConfig(source=str(path), label_column="tag"))
