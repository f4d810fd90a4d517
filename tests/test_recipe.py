"""The adapter carries its data recipe: the dataset's bytes, its columns and how it was split."""

import csv
import dataclasses
import hashlib
import json

import pytest
from test_training import tiny_config, write_separable_csv

from workbench.cli import main
from workbench.core import events as ev
from workbench.core.adapters import AdapterInfo, read_adapter, save_adapter_tensors
from workbench.core.config import DataConfig
from workbench.core.data import identify_dataset, make_splits, read_table, recipe_for
from workbench.core.data import recipe as recipe_module
from workbench.core.errors import WorkbenchError
from workbench.core.training import train


def test_identity_hashes_the_bytes_in_chunks(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    payload = b"text,label\n" + b"hello there,ham\n" * 1000
    path.write_bytes(payload)
    monkeypatch.setattr(recipe_module, "_HASH_CHUNK", 100)  # many chunks: each read is bounded
    reports = []
    identity = identify_dataset(path, progress=lambda done, total, message="": reports.append((done, total)))
    assert identity.name == "data.csv" and identity.size == len(payload)
    assert identity.sha256 == hashlib.sha256(payload).hexdigest()
    assert len(reports) == -(-len(payload) // 100) and reports[-1] == (len(payload), len(payload))


def test_recipe_round_trips_and_rebuilds_the_same_split(tmp_path):
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["body", "kind"])
        for i in range(60):
            writer.writerow([f"message number {i}", " spam" if i % 3 == 0 else "ham" if i % 3 == 1 else "spam"])
    cfg = DataConfig(source=str(path), balance=False, train_fraction=0.6, val_fraction=0.2)
    splits = make_splits(read_table(path), cfg, seed=7)
    recipe = recipe_for(cfg, splits, identify_dataset(path), max_length=32, seed=7)
    assert (recipe.text_column, recipe.label_column) == ("body", "kind")
    assert recipe.label_names == ("ham", "spam")
    assert recipe.label_values == (("ham",), (" spam", "spam"))  # original spellings, before stripping
    assert recipe.drop_duplicates is True  # resolved: a user's file drops repeats by default
    again = type(recipe).from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe
    rebuilt = make_splits(read_table(path), again.data_config(path), seed=again.seed)
    assert rebuilt.test == splits.test and rebuilt.train == splits.train
    assert recipe.describe_split() == "60/20/20, not balanced, seed 7"


def test_trained_adapter_records_its_recipe(tiny_checkpoint, tmp_path, capsys):
    data = write_separable_csv(tmp_path / "separable.csv", n=60)
    cfg = tiny_config(tiny_checkpoint, data, max_steps=2)
    cfg = cfg.with_changes(seed=7, data=DataConfig(source=str(data), max_rows=50))
    finished = list(train(cfg))[-1]
    assert isinstance(finished, ev.TrainingFinished), finished
    _, info = read_adapter(finished.adapter_path)
    recipe = info.data
    assert recipe.dataset.name == "separable.csv"
    assert recipe.dataset.size == data.stat().st_size
    assert recipe.dataset.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (recipe.text_column, recipe.label_column) == ("message", "label")
    assert (recipe.seed, recipe.max_rows, recipe.balance) == (7, 50, True)
    assert (recipe.train_fraction, recipe.val_fraction) == (0.7, 0.1)
    assert recipe.max_length == info.max_length and recipe.label_names == info.label_names

    assert main(["info", finished.adapter_path]) == 0
    out = capsys.readouterr().out
    assert f"separable.csv ({data.stat().st_size:,} bytes, sha256 {recipe.dataset.sha256[:12]}" in out
    assert "text 'message', label 'label'" in out
    assert "70/10/20, balanced, seed 7; duplicates dropped; first 50 rows" in out
    assert main(["info", finished.adapter_path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["seed"] == 7


def test_adapters_without_a_recipe_still_load(tiny_checkpoint, tmp_path, capsys):
    data = write_separable_csv(tmp_path / "separable.csv", n=60)
    finished = list(train(tiny_config(tiny_checkpoint, data, max_steps=1)))[-1]
    tensors, info = read_adapter(finished.adapter_path)
    old = json.loads(info.to_json())
    del old["data"]  # as written before the recipe existed
    assert AdapterInfo.from_json(json.dumps(old)).data is None
    old_file = save_adapter_tensors(tmp_path / "old.safetensors", tensors, dataclasses.replace(info, data=None))
    assert main(["info", str(old_file)]) == 0
    assert "data         not recorded" in capsys.readouterr().out


@pytest.mark.parametrize("damage", [{"seed": "seven"}, {"dataset": {"name": "x"}}])
def test_a_damaged_recipe_is_unreadable_metadata(damage):
    from workbench.core.data import DataRecipe

    base = {
        "dataset": {"name": "x.csv", "size": 1, "sha256": "0" * 64},
        "text_column": "t",
        "label_column": "l",
        "balance": True,
        "drop_duplicates": True,
        "train_fraction": 0.7,
        "val_fraction": 0.1,
        "seed": 1,
        "max_rows": None,
        "max_length": 8,
        "label_names": ["a", "b"],
        "label_values": [["a"], ["b"]],
    }
    assert DataRecipe.from_dict(base).seed == 1
    with pytest.raises((ValueError, KeyError, TypeError)):
        DataRecipe.from_dict({**base, **damage})


# --------------------------------------------------------------------------- eval rebuilds the split


def _train_recording_test_rows(tiny_checkpoint, data, seed, monkeypatch):
    """Train, and keep the exact texts the run's final test metrics were computed on."""
    from workbench.core import training

    seen = {}
    real = training.score_split

    def recording(model, split, *args, **kwargs):
        seen["texts"], seen["labels"] = list(split.texts), list(split.labels)
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(training, "score_split", recording)
    cfg = tiny_config(tiny_checkpoint, data, epochs=2, seed=seed)
    cfg = cfg.with_changes(data=DataConfig(source=str(data)))
    finished = list(train(cfg))[-1]
    assert isinstance(finished, ev.TrainingFinished), finished
    return finished, seen


@pytest.mark.parametrize("seed", [7, 123])
def test_eval_scores_exactly_the_runs_test_rows(tiny_checkpoint, tmp_path, monkeypatch, seed):
    from workbench.core.adapter_eval import evaluate_adapter_on, rows_to_score
    from workbench.core.classify import Classifier

    data = write_separable_csv(tmp_path / "data.csv", n=120)
    finished, seen = _train_recording_test_rows(tiny_checkpoint, data, seed, monkeypatch)
    classifier = Classifier.from_adapter(finished.adapter_path, precision="fp32")

    rows = rows_to_score(data, classifier.info)  # default: the training file's test split
    assert rows.split == "test" and rows.texts == seen["texts"] and rows.labels == seen["labels"]
    assert f"seed {seed}" in rows.description
    other_seed = make_splits(read_table(data), DataConfig(source=str(data)), seed=seed + 1).test.texts
    assert sorted(other_seed) != sorted(seen["texts"])  # the seed matters: a guessed one scores other rows

    result = evaluate_adapter_on(data, classifier)
    assert result.metrics.accuracy == finished.metrics.accuracy
    assert result.metrics.confusion == finished.metrics.confusion
    assert result.metrics.loss == pytest.approx(finished.metrics.loss, abs=1e-4)
    assert rows_to_score(data, classifier.info, "val").texts != rows.texts


def test_eval_cli_refuses_a_changed_file_unless_every_row_is_asked_for(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    data = write_separable_csv(tmp_path / "data.csv", n=120)
    finished, seen = _train_recording_test_rows(tiny_checkpoint, data, 7, monkeypatch)
    adapter = finished.adapter_path

    assert main(["eval", "--adapter", adapter, "--data", str(data), "--precision", "fp32", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["split"] == "test" and scored["rows"] == len(seen["texts"])
    assert scored["accuracy"] == finished.metrics.accuracy

    recorded = hashlib.sha256(data.read_bytes()).hexdigest()
    with open(data, "a", encoding="utf-8") as f:
        f.write("one more message,ham\n")
    now = hashlib.sha256(data.read_bytes()).hexdigest()
    for split in ([], ["--split", "test"]):
        assert main(["eval", "--adapter", adapter, "--data", str(data), *split]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "data.csv has changed" in err and now[:12] in err and recorded[:12] in err and "--split all" in err

    assert main(["eval", "--adapter", adapter, "--data", str(data), "--split", "all", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "Scored every row of data.csv: 121 rows (a changed copy of the training file" in out
    assert "121 examples" in out


def test_a_file_never_seen_is_scored_whole(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    data = write_separable_csv(tmp_path / "data.csv", n=120)
    finished, _ = _train_recording_test_rows(tiny_checkpoint, data, 7, monkeypatch)
    other = write_separable_csv(tmp_path / "other.csv", n=30, seed=5)
    with open(other, "a", encoding="utf-8") as f:
        f.write("a repeated message,ham\na repeated message,ham\nno label here,NA\n")

    assert main(["eval", "--adapter", finished.adapter_path, "--data", str(other), "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    # every row with a text and a label, repeats included; the NA row is not a class
    assert "Scored every row of other.csv: 32 rows (a file this adapter was not trained on)" in out
    assert main(["eval", "--adapter", finished.adapter_path, "--data", str(other), "--split", "test"]) == 2
    assert "not the file this adapter was trained on (data.csv)" in capsys.readouterr().err


def test_training_file_with_every_row_says_it_is_not_held_out(tiny_checkpoint, tmp_path, monkeypatch):
    from workbench.core.adapter_eval import rows_to_score

    data = write_separable_csv(tmp_path / "data.csv", n=120)
    finished, _ = _train_recording_test_rows(tiny_checkpoint, data, 7, monkeypatch)
    _, info = read_adapter(finished.adapter_path)
    rows = rows_to_score(data, info, "all")
    assert len(rows.texts) == 120 and "not a held-out score" in rows.description
    with pytest.raises(WorkbenchError, match="made with --text-column 'message', not 'label'"):
        rows_to_score(data, info, "test", text_column="label")
    old = dataclasses.replace(info, data=None)
    with pytest.raises(WorkbenchError, match="does not record how its training data was split"):
        rows_to_score(data, old, "test")
    assert "does not record its training data" in rows_to_score(data, old).description


def test_held_out_scores_come_from_the_file_the_run_trained_on(tiny_checkpoint, tmp_path, monkeypatch):
    """The window's threshold and calibration views: the run's own validation and test rows,
    found among candidate files by their bytes, scored without the adapter's temperature."""
    import torch

    from workbench.core.adapter_eval import rows_to_score, score_held_out
    from workbench.core.adapters import update_decision
    from workbench.core.classify import Classifier
    from workbench.core.errors import DataError

    data = write_separable_csv(tmp_path / "data.csv", n=120)
    finished, seen = _train_recording_test_rows(tiny_checkpoint, data, 7, monkeypatch)
    other = tmp_path / "other.csv"
    other.write_text("text,label\nwin cash,spam\nhi mum,ham\n")
    classifier = Classifier.from_adapter(finished.adapter_path, precision="fp32")
    plain = classifier.probabilities(seen["texts"])

    update_decision(finished.adapter_path, temperature=2.5)
    warm = Classifier.from_adapter(finished.adapter_path, precision="fp32")
    description, scored = score_held_out(warm, [tmp_path / "missing.csv", other, data])
    assert "data.csv" in description and "seed 7" in description
    assert scored["test"].texts == seen["texts"] and scored["test"].labels == seen["labels"]
    assert scored["val"].texts == rows_to_score(data, warm.info, "val").texts
    assert torch.allclose(scored["test"].probabilities, plain, atol=1e-5)  # the temperature undone

    with pytest.raises(DataError, match="missing.csv.*other.csv: other contents"):
        score_held_out(warm, [tmp_path / "missing.csv", other])
