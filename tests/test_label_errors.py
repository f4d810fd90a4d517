"""Likely label errors: rows ranked by the out-of-sample probability of their given label."""

import csv
import json
import random

import pytest
from test_training import HAM_WORDS, SPAM_WORDS

from workbench.cli import main
from workbench.core import label_errors as L
from workbench.core.classify import Classifier
from workbench.core.config import DataConfig, LoRAConfig, TrainConfig
from workbench.core.data import load_table, make_splits


def write_noisy_csv(path, n=160, flips=6, seed=0):
    """Separable ham/spam vocabularies with ``flips`` rows given the other label; returns the
    flipped texts."""
    rng = random.Random(seed)
    flipped = set()
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["message", "label"])
        for i in range(n):
            spam = i % 2 == 1
            text = " ".join(rng.choices(SPAM_WORDS if spam else HAM_WORDS, k=rng.randint(4, 9))) + f" #{i}"
            if i < flips:
                spam = not spam
                flipped.add(text)
            writer.writerow([text, "spam" if spam else "ham"])
    return flipped


def recipe(checkpoint, data, **changes):
    cfg = TrainConfig(
        model=str(checkpoint),
        data=DataConfig(source=str(data), train_fraction=0.7, val_fraction=0.2),
        lora=LoRAConfig(rank=8, alpha=16),
        epochs=4,
        batch_size=8,
        lr=3e-3,
        precision="fp32",
    )
    return cfg.with_changes(**changes)


def test_folds_are_stratified_and_reproducible():
    labels = [0] * 30 + [1] * 10
    folds = L.stratified_folds(labels, 5, seed=1)
    for k in range(5):
        members = [y for y, f in zip(labels, folds) if f == k]
        assert members.count(0) == 6 and members.count(1) == 2
    assert folds == L.stratified_folds(labels, 5, seed=1)
    assert folds != L.stratified_folds(labels, 5, seed=2)


def test_cross_validation_puts_flipped_labels_first(tiny_checkpoint, tmp_path):
    data = tmp_path / "noisy.csv"
    flipped = write_noisy_csv(data)
    cfg = recipe(tiny_checkpoint, data)
    splits = make_splits(load_table(cfg.data), cfg.data, seed=123)
    pooled = set(splits.train.texts) | set(splits.val.texts)
    planted = flipped & pooled
    assert len(planted) >= 4  # most planted errors fall in train or val (the rest went to test)
    seen = []
    rows = L.suspects_by_cross_validation(
        cfg, splits, 3, max_length=64, progress=lambda done, total, message: seen.append((done, total))
    )
    assert len(rows) == len(pooled) and all(r.out_of_sample for r in rows)
    assert [r.confidence for r in rows] == sorted(r.confidence for r in rows)
    top = {r.text for r in rows[: len(planted) + 2]}
    assert len(planted & top) >= len(planted) - 1, [(r.text, r.given, r.confidence) for r in rows[:10]]
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached its total


def test_adapter_scores_mark_training_rows_in_sample(tiny_checkpoint, tmp_path, monkeypatch):
    from workbench.core import events
    from workbench.core.training import train

    data = tmp_path / "noisy.csv"
    write_noisy_csv(data)
    cfg = recipe(tiny_checkpoint, data)
    finished = [e for e in train(cfg) if isinstance(e, events.TrainingFinished)][-1]
    classifier = Classifier.from_adapter(finished.adapter_path, precision="fp32")
    splits = make_splits(load_table(cfg.data), cfg.data, seed=123)
    rows = L.suspects_from_adapter(classifier, splits)
    assert {r.split for r in rows if r.out_of_sample} == {"val"}
    assert {r.split for r in rows if not r.out_of_sample} == {"train"}
    assert [r.confidence for r in rows] == sorted(r.confidence for r in rows)
    first = rows[0]
    probability = classifier.predict([first.text])[0].probabilities[first.given]
    assert first.confidence == pytest.approx(probability, abs=1e-5)


def test_too_few_rows_for_the_folds_are_refused(tiny_checkpoint, tmp_path):
    data = tmp_path / "noisy.csv"
    write_noisy_csv(data, n=20)
    cfg = recipe(tiny_checkpoint, data)
    splits = make_splits(load_table(cfg.data), cfg.data, seed=123)
    with pytest.raises(Exception, match="too few"):
        L.suspects_by_cross_validation(cfg, splits, 40, max_length=64)
    with pytest.raises(Exception, match="at least 2"):
        L.suspects_by_cross_validation(cfg, splits, 1, max_length=64)


# --- the command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_adapter(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("label-errors")
    data = folder / "noisy.csv"
    write_noisy_csv(data)
    adapter = folder / "adapter.safetensors"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_DATA_DIR", str(folder / "data"))
        mp.setenv("WORKBENCH_CACHE_DIR", str(folder / "cache"))
        argv = ["train", "--model", str(tiny_checkpoint), "--data", str(data), "--rank", "8", "--epochs", "3"]
        assert main([*argv, "--lr", "3e-3", "--quiet", "--out", str(adapter)]) == 0
    return adapter, data


def test_cli_lists_rows_and_writes_csv(noisy_adapter, tmp_path, capsys):
    adapter, data = noisy_adapter
    out = tmp_path / "suspicious.csv"
    assert main(["label-errors", "--adapter", str(adapter), "--data", str(data), "--top", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "least likely given label first" in printed[0] and len(printed) == 2 + 5 + 1
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["text", "given_label", "predicted_label", "confidence_of_given", "split", "out_of_sample"]
    confidences = [float(r["confidence_of_given"]) for r in rows]
    assert confidences == sorted(confidences) and len(rows) > 5


def test_cli_json_with_folds(noisy_adapter, capsys):
    adapter, data = noisy_adapter
    argv = ["label-errors", "--adapter", str(adapter), "--data", str(data), "--folds", "2", "--epochs", "1"]
    assert main([*argv, "--top", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and all(r["out_of_sample"] for r in rows)
    assert set(rows[0]) == {"text", "given", "predicted", "confidence", "split", "out_of_sample"}


@pytest.mark.parametrize(("extra", "fragment"), [(["--folds", "1"], "--folds"), (["--top", "-1"], "--top")])
def test_cli_mistakes_exit_2(noisy_adapter, extra, fragment, capsys):
    adapter, data = noisy_adapter
    assert main(["label-errors", "--adapter", str(adapter), "--data", str(data), *extra]) == 2
    assert fragment in capsys.readouterr().err


def test_fold_recipe_follows_the_run_folder_and_overrides(tiny_checkpoint, tmp_path):
    from workbench.core.adapters import AdapterInfo
    from workbench.core.model import load_model_config

    write_noisy_csv(tmp_path / "noisy.csv")
    data = DataConfig(source=str(tmp_path / "noisy.csv"))
    config = load_model_config(tiny_checkpoint)
    info = AdapterInfo(str(tiny_checkpoint), config, LoRAConfig(rank=2), ("ham", "spam"), 64)
    run = tmp_path / "run"
    run.mkdir()
    adapter = run / "adapter.safetensors"
    assert L.fold_recipe(adapter, info, data).epochs == TrainConfig().epochs  # no run config: defaults
    (run / "config.json").write_text(json.dumps(TrainConfig(epochs=7, lr=1e-4).to_dict()))
    cfg = L.fold_recipe(adapter, info, data, lr=2e-3)
    assert (cfg.epochs, cfg.lr, cfg.lora, cfg.model, cfg.data) == (7, 2e-3, info.lora, str(tiny_checkpoint), data)
