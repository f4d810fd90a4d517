"""Renaming a file's labels (0/1 -> ham/spam): the classes a run trains, the adapter's names, and
evaluation on the same file and on another file written with the old labels."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from test_training import tiny_config

from workbench.core import events as ev
from workbench.core.config import DataConfig, TrainConfig, parse_renames
from workbench.core.data import load_table, make_splits
from workbench.core.errors import ConfigError, DataError
from workbench.core.training import train

RENAME = (("0", "ham"), ("1", "spam"))


def write_numbered(path, n=120, spellings=("0", "1")):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(n):
            spam = i % 2
            writer.writerow([("win cash prize now " if spam else "see you at lunch ") + str(i), spellings[spam]])
    return path


def test_renamed_labels_are_the_classes_and_the_rule_matches_spellings(tmp_path):
    data = write_numbered(tmp_path / "d.csv", spellings=("0.0", "1"))  # "0.0" is the label "0"
    cfg = DataConfig(source=str(data), rename_labels=RENAME)
    splits = make_splits(load_table(cfg), cfg, seed=1)
    assert splits.label_names == ["ham", "spam"]
    plain = make_splits(load_table(DataConfig(source=str(data))), DataConfig(source=str(data)), seed=1)
    assert [len(p.texts) for p in (splits.train, splits.val, splits.test)] == [
        len(p.texts) for p in (plain.train, plain.val, plain.test)
    ]
    assert splits.train.labels == plain.train.labels  # the same rows, only the names differ


@pytest.mark.parametrize(
    ("rename", "message"),
    [((("2", "x"),), "no label '2' to rename"), ((("0", "x"), ("1", "x")), "two classes one")],
)
def test_a_rename_that_cannot_apply_is_refused(tmp_path, rename, message):
    data = write_numbered(tmp_path / "d.csv")
    cfg = DataConfig(source=str(data), rename_labels=rename)
    with pytest.raises(DataError, match=message):
        make_splits(load_table(cfg), cfg, seed=1)


def test_renames_parse_and_validate():
    assert parse_renames("0=ham, 1 = spam") == RENAME
    with pytest.raises(ConfigError, match="not OLD=NEW"):
        parse_renames("0=ham, spam")
    problems = DataConfig(rename_labels=(("0", " "), ("0", "x"))).validate()
    assert {p.field for p in problems} == {"data.rename_labels"} and len(problems) == 2
    saved = TrainConfig(data=DataConfig(rename_labels=RENAME)).to_dict()
    assert TrainConfig.from_dict(saved).data.rename_labels == RENAME  # JSON lists back to pairs


def test_an_adapter_trained_with_renames_reads_the_old_labels_elsewhere(tiny_checkpoint, tmp_path):
    from workbench.core.adapter_eval import evaluate_adapter_on, rows_to_score
    from workbench.core.classify import Classifier

    data = write_numbered(tmp_path / "d.csv")
    cfg = tiny_config(tiny_checkpoint, data, epochs=2)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, rename_labels=RENAME))
    finished = list(train(cfg))[-1]
    assert isinstance(finished, ev.TrainingFinished), finished
    classifier = Classifier.from_adapter(finished.adapter_path, precision="fp32")
    assert classifier.info.label_names == ("ham", "spam")
    assert rows_to_score(data, classifier.info).split == "test"  # the recipe rebuilds the split, renames too
    assert evaluate_adapter_on(data, classifier).metrics.accuracy == finished.metrics.accuracy

    other = write_numbered(tmp_path / "other.csv", n=10)  # written with 0/1, as the training file was
    result = evaluate_adapter_on(other, classifier)
    assert result.split == "all" and sum(result.metrics.support) == 10
