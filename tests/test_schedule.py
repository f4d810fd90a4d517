"""The learning-rate schedule (warm-up, decay), early stopping and keeping the best epoch: the rate
each step really used, the epoch a run stops at, and the weights its adapter holds."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from test_training import tiny_config, write_separable_csv

from workbench.core import events as ev
from workbench.core import training
from workbench.core.adapters import read_adapter
from workbench.core.config import TrainConfig
from workbench.core.runs import RunFolder
from workbench.core.training import learning_rate_factor, train


def factors(cfg, total):
    return [learning_rate_factor(cfg, step, total) for step in range(total)]


def test_warm_up_then_constant_linear_or_cosine():
    cfg = TrainConfig(warmup_steps=4)
    assert factors(cfg, 6) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    linear = factors(dataclasses.replace(cfg, schedule="linear"), 8)
    assert linear[:4] == [0.25, 0.5, 0.75, 1.0] and linear[4:] == [1.0, 0.75, 0.5, 0.25]
    cosine = factors(dataclasses.replace(cfg, warmup_steps=0, schedule="cosine"), 4)
    assert cosine == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2])
    assert factors(TrainConfig(), 3) == [1.0, 1.0, 1.0]  # the book's recipe: no schedule


def test_each_step_uses_the_scheduled_rate(tiny_checkpoint, tmp_path, monkeypatch):
    used = []
    real = training.train_step

    def recording(model, optimizer, *args, **kwargs):
        used.append(optimizer.param_groups[0]["lr"])
        return real(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(training, "train_step", recording)
    cfg = tiny_config(
        tiny_checkpoint, write_separable_csv(tmp_path / "d.csv"), max_steps=6, warmup_steps=2, schedule="linear"
    )
    assert isinstance(list(train(cfg))[-1], ev.TrainingFinished)
    assert used == pytest.approx([cfg.lr * f for f in factors(cfg, 6)])


def scripted_validation(monkeypatch, losses):
    """The end-of-epoch validation loss follows ``losses``; quick evaluations run for real."""
    real, calls = training.loss_and_accuracy, []

    def scripted(model, split, *args, stop=None, **kwargs):
        if stop is None:
            return real(model, split, *args, **kwargs)
        calls.append(losses[len(calls)])
        return calls[-1], 0.5

    monkeypatch.setattr(training, "loss_and_accuracy", scripted)
    return calls


def test_early_stopping_ends_after_patience_and_keep_best_keeps_that_epoch(tiny_checkpoint, tmp_path, monkeypatch):
    calls = scripted_validation(monkeypatch, [0.5, 0.4, 0.45, 0.46, 0.3, 0.2])
    cfg = tiny_config(tiny_checkpoint, write_separable_csv(tmp_path / "d.csv"), epochs=6)
    cfg = dataclasses.replace(cfg, early_stopping=2, keep_best=True)
    events = list(train(cfg))
    finished = events[-1]
    assert isinstance(finished, ev.TrainingFinished), finished
    assert [e.epoch for e in events if isinstance(e, ev.EpochEnded)] == [1, 2, 3, 4]  # 2 epochs without a better loss
    assert len(calls) == 4 and not finished.stopped and finished.metrics is not None  # test scores, as finished

    run = RunFolder(Path(finished.run_dir))
    best, info = read_adapter(run.best_adapter_path)
    assert info.metrics == {"val_loss": 0.4, "epoch": 2}
    final, _ = read_adapter(finished.adapter_path)
    assert all(torch.equal(final[k], best[k]) for k in best)  # the adapter is epoch 2's weights
    assert "Kept epoch 2" in run.log_path.read_text()


def test_without_keep_best_the_adapter_is_the_last_epoch(tiny_checkpoint, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.4, 0.45, 0.46])
    cfg = dataclasses.replace(
        tiny_config(tiny_checkpoint, write_separable_csv(tmp_path / "d.csv"), epochs=4), keep_best=True
    )
    with_best = list(train(cfg))[-1]
    scripted_validation(monkeypatch, [0.5, 0.4, 0.45, 0.46])
    plain = list(train(dataclasses.replace(cfg, keep_best=False)))[-1]
    kept, _ = read_adapter(with_best.adapter_path)
    last, _ = read_adapter(plain.adapter_path)
    assert not all(torch.equal(kept[k], last[k]) for k in kept)  # same seed: only the kept epoch differs
    assert not RunFolder(Path(plain.run_dir)).best_adapter_path.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schedule": "step"}, "schedule"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"early_stopping": 1.5}, "early_stopping"),
    ],
)
def test_bad_schedule_settings_name_their_field(changes, field):
    problems = dataclasses.replace(TrainConfig(), **changes).validate()
    assert [p.field for p in problems] == [field]
