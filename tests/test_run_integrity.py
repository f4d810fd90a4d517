"""A training run never loses a user's files: a run stopped before its first step writes nothing,
every setup phase honours Stop within a chunk of work, ``--resume`` changes nothing it cannot use,
and a run that diverges keeps the previous adapter."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from test_training import tiny_config, write_separable_csv

from workbench.core import events as ev
from workbench.core import progress
from workbench.core.config import DataConfig, LoRAConfig, ModelConfig, TrainConfig, resume_problems
from workbench.core.data import Table, encode_texts, make_splits
from workbench.core.data import splits as splits_module
from workbench.core.errors import Cancelled
from workbench.core.model import read_checkpoint_weights
from workbench.core.training import STOPPED_BEFORE_TRAINING, train


class StopAfter(threading.Event):
    """A stop event that reads as set from its ``n``-th check on, and counts the checks."""

    def __init__(self, n: int | None = None):
        super().__init__()
        self.n, self.checks = n, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.n is not None and self.checks > self.n


def two_class_table(n: int) -> Table:
    words = "win cash prize free see you at lunch ok thanks".split()
    rng = random.Random(0)
    frame = pd.DataFrame(
        {
            "text": [" ".join(rng.choices(words, k=5)) + f" {i}" for i in range(n)],
            "label": ["spam" if i % 3 else "ham" for i in range(n)],
        }
    )
    return Table(frame, "rows.csv", "utf-8", "text", "label")


# --------------------------------------------------------------------------- every phase checks Stop


def test_splitting_checks_stop_every_chunk_of_rows():
    table = two_class_table(3 * progress.CHECK_EVERY)
    cfg = DataConfig(source="rows.csv")
    counting = StopAfter()
    make_splits(table, cfg, seed=123, stop=counting)
    # Each pass over the rows (cleaning, deduplication, grouping, sampling, shuffling, splitting)
    # checks once per chunk, so the checks grow with the rows rather than one per phase.
    assert counting.checks >= 10 * len(table.frame) // progress.CHECK_EVERY
    for n in (0, counting.checks // 3, counting.checks // 2, counting.checks - 1):
        with pytest.raises(Cancelled, match="rows.csv"):
            make_splits(table, cfg, seed=123, stop=StopAfter(n))


@pytest.mark.parametrize("n", [0, 1, 6, 7, 8, 50, 1000])
def test_stoppable_shuffle_and_sample_pick_what_random_picks(monkeypatch, n):
    """The split's reproducibility (the book's 1045/149/300) rests on random's exact picks."""
    monkeypatch.setattr(splits_module, "CHECK_EVERY", 7)  # many chunk boundaries
    items = list(range(n))
    for seed in (0, 123):
        expected, got = items.copy(), items.copy()
        random.Random(seed).shuffle(expected)
        splits_module.shuffle(random.Random(seed), got, None, "test")
        assert got == expected
        for k in {0, n // 3, n // 2, n}:
            want = random.Random(seed).sample(items, k)
            assert splits_module.sample(random.Random(seed), items, k, None, "test") == want


class CountingTokenizer:
    eot_token = 50256

    def __init__(self):
        self.encoded = 0

    def encode_ordinary(self, text):
        self.encoded += 1
        return [ord(c) for c in text]


def test_tokenizing_checks_stop_between_chunks():
    from workbench.core.data import batches

    texts = ["hello"] * (5 * batches.ENCODE_CHUNK)
    tokenizer = CountingTokenizer()
    with pytest.raises(Cancelled):
        encode_texts(texts, tokenizer, 16, stop=StopAfter(2))
    assert tokenizer.encoded == 2 * batches.ENCODE_CHUNK


def test_model_loading_checks_stop_between_tensors(tiny_checkpoint):
    config = ModelConfig.from_hf_dict(__import__("json").loads((tiny_checkpoint / "config.json").read_text()))
    counting = StopAfter()
    read_checkpoint_weights(tiny_checkpoint, config, counting)
    assert counting.checks >= 4 + 12 * config.n_layer  # one check per tensor
    with pytest.raises(Cancelled):
        read_checkpoint_weights(tiny_checkpoint, config, StopAfter(counting.checks // 2))


# --------------------------------------------------------------------------- no step, no adapter


@pytest.mark.parametrize("phase", ["Loading", "Reading", "Splitting", "Tokenizing", "Building", "RunStarted"])
def test_stop_before_the_first_step_writes_nothing(tiny_checkpoint, tmp_path, phase):
    data = write_separable_csv(tmp_path / "d.csv", n=80)
    stop = threading.Event()
    events = []
    for event in train(tiny_config(tiny_checkpoint, data), stop=stop):
        events.append(event)
        if type(event).__name__ == phase or (isinstance(event, ev.Status) and event.message.startswith(phase)):
            stop.set()
    assert not any(isinstance(e, ev.StepDone) for e in events)
    failed = events[-1]
    assert isinstance(failed, ev.TrainingFailed) and failed.kind == "cancelled"
    assert failed.message == STOPPED_BEFORE_TRAINING
    run_files = {p.name for p in Path(failed.run_dir).iterdir()}
    assert not run_files & {"adapter.safetensors", "checkpoint.safetensors"}


def test_stopping_a_resumed_run_before_its_first_step_keeps_its_files(tiny_checkpoint, tmp_path):
    data = write_separable_csv(tmp_path / "d.csv", n=80)
    cfg = tiny_config(tiny_checkpoint, data, epochs=1)
    finished = list(train(cfg))[-1]
    run = Path(finished.run_dir)
    before = {name: (run / name).read_bytes() for name in ("adapter.safetensors", "checkpoint.safetensors")}
    stop = threading.Event()
    for event in train(cfg.with_changes(epochs=3), stop=stop, resume=finished.resume_path):
        if isinstance(event, ev.RunStarted):
            stop.set()
    assert isinstance(event, ev.TrainingFailed) and event.kind == "cancelled"
    assert {name: (run / name).read_bytes() for name in before} == before


@pytest.fixture(scope="module")
def large_csv(tmp_path_factory) -> Path:
    """200,000 rows: a minute and more of reading, splitting and tokenizing with the tiny model's
    byte-level vocabulary, so a Stop that were honoured only after those phases would be caught."""
    rng = random.Random(1)
    words = "win cash prize free claim now see you at lunch tomorrow ok thanks mum home later".split()
    path = tmp_path_factory.mktemp("large") / "large.csv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("text,label\n")
        f.writelines(
            f"{' '.join(rng.choices(words, k=rng.randint(5, 25)))} {i},{'spam' if i % 2 else 'ham'}\n"
            for i in range(200_000)
        )
    return path


def test_ctrl_c_while_reading_a_large_file_keeps_the_adapter_at_out(tiny_checkpoint, large_csv, tmp_path):
    out = tmp_path / "good.safetensors"
    out.write_bytes(b"an earlier, good adapter")
    runs = tmp_path / "data" / "runs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env["WORKBENCH_DATA_DIR"] = str(tmp_path / "data")
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(large_csv), "--out", str(out), "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        while not (runs.is_dir() and any(runs.iterdir())):  # the run folder: setup has begun
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)  # generous; unstopped, the run takes many minutes
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "no adapter written" in err and "Traceback" not in err
    assert out.read_bytes() == b"an earlier, good adapter"


# --------------------------------------------------------------------------- resume: check first


@pytest.mark.parametrize(
    "change",
    [
        {"lora": LoRAConfig(rank=4, alpha=16)},
        {"lora": LoRAConfig(rank=8, alpha=16, targets=("qkv",))},
        {"seed": 7},
        {"model": "gpt2"},
    ],
)
def test_resume_with_incompatible_settings_changes_nothing(tiny_checkpoint, tmp_path, change):
    data = write_separable_csv(tmp_path / "d.csv", n=80)
    cfg = tiny_config(tiny_checkpoint, data, epochs=1)
    finished = list(train(cfg))[-1]
    run = Path(finished.run_dir)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    events = list(train(cfg.with_changes(epochs=2, **change), resume=finished.resume_path))
    failed = events[-1]
    assert isinstance(failed, ev.TrainingFailed) and failed.kind == "config", failed
    assert "Cannot resume" in failed.message and "the run used" in failed.message
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # config.json included


def test_compatible_resume_settings_may_change():
    base = TrainConfig(model="gpt2", data=DataConfig(source="x.csv"))
    changed = base.with_changes(epochs=9, batch_size=2, grad_accum=4, lr=1e-3, device="cpu", max_steps=3)
    assert resume_problems(base, changed) == []
    assert resume_problems(base, base.with_changes(lora=LoRAConfig(rank=2))) == ["rank 2 (the run used 16)"]


def test_resume_from_a_checkpoint_made_with_other_shapes_fails_cleanly(tiny_checkpoint, tmp_path):
    """A checkpoint outside its run folder (no config.json to compare with) is checked tensor by
    tensor before anything is loaded into the model."""
    data = write_separable_csv(tmp_path / "d.csv", n=80)
    first = list(train(tiny_config(tiny_checkpoint, data, epochs=1)))[-1]
    loose = tmp_path / "loose" / "checkpoint.safetensors"
    loose.parent.mkdir()
    loose.write_bytes(Path(first.resume_path).read_bytes())
    other = tiny_config(tiny_checkpoint, data, epochs=2, lora=LoRAConfig(rank=4, alpha=16))
    failed = list(train(other, resume=loose))[-1]
    assert isinstance(failed, ev.TrainingFailed) and "other LoRA settings" in failed.message


# --------------------------------------------------------------------------- divergence


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"lr": math.inf}, "learning rate"),
        ({"lr": math.nan}, "learning rate"),
        ({"lr": 0.0}, "learning rate"),
        ({"lr": 5.0}, "learning rate"),
        ({"weight_decay": math.nan}, "weight decay"),
        ({"weight_decay": -0.1}, "weight decay"),
        ({"lora": LoRAConfig(alpha=1e30)}, "alpha"),
        ({"lora": LoRAConfig(alpha=math.nan)}, "alpha"),
        ({"lora": LoRAConfig(alpha=math.inf)}, "alpha"),
        ({"lora": LoRAConfig(dropout=math.nan)}, "dropout"),
        ({"lora": LoRAConfig(dropout=1.0)}, "dropout"),
        ({"lora": LoRAConfig(rank=10**9)}, "rank"),
        ({"lora": LoRAConfig(top_blocks=0)}, "top blocks"),
        ({"data.train_fraction": math.nan}, "train fraction"),
        ({"data.max_length": 1}, "max length"),
        ({"seed": 2**63 - 1}, "seed"),
        ({"seed": -1}, "seed"),
        ({"batch_size": True}, "batch size"),
        ({"epochs": 2.5}, "epochs"),
        ({"max_steps": 0}, "max steps"),
    ],
)
def test_non_finite_or_absurd_hyperparameters_are_config_errors(tiny_checkpoint, tmp_path, change, word):
    cfg = tiny_config(tiny_checkpoint, write_separable_csv(tmp_path / "d.csv", n=20))
    data_changes = {k.removeprefix("data."): v for k, v in change.items() if k.startswith("data.")}
    top_changes = {k: v for k, v in change.items() if not k.startswith("data.")}
    cfg = cfg.with_changes(data=dataclasses.replace(cfg.data, **data_changes), **top_changes)
    problems = cfg.validate()
    assert len(problems) == 1 and word in problems[0], problems
    (failed,) = list(train(cfg))  # refused before any run folder exists
    assert failed.kind == "config" and not (tmp_path / "data" / "runs").exists()


def test_a_non_finite_loss_stops_the_run_and_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    from workbench.core import training

    data = write_separable_csv(tmp_path / "d.csv", n=80)
    real_step = training.train_step
    calls = []

    def step_that_diverges(*args, **kwargs):
        loss, tokens = real_step(*args, **kwargs)
        calls.append(loss)
        return (math.nan if len(calls) >= 3 else loss), tokens

    monkeypatch.setattr(training, "train_step", step_that_diverges)
    events = list(train(tiny_config(tiny_checkpoint, data, epochs=2)))
    failed = events[-1]
    assert isinstance(failed, ev.TrainingFailed) and failed.kind == "diverged"
    assert "diverged at step 3: loss is nan" in failed.message and "learning rate" in failed.message
    assert [e.step for e in events if isinstance(e, ev.StepDone)] == [1, 2]  # no step 3 reported
    assert not (Path(failed.run_dir) / "adapter.safetensors").exists()


def test_weights_that_overflowed_are_never_saved(tiny_checkpoint, tmp_path, monkeypatch):
    """A last step can leave inf in the weights with a finite loss; the end-of-run check catches it."""
    import torch

    from workbench.core import training

    data = write_separable_csv(tmp_path / "d.csv", n=80)
    real_step = training.train_step

    def step_that_overflows(model, *args, **kwargs):
        result = real_step(model, *args, **kwargs)
        with torch.no_grad():
            next(p for p in model.parameters() if p.requires_grad).fill_(math.inf)
        return result

    monkeypatch.setattr(training, "train_step", step_that_overflows)
    failed = list(train(tiny_config(tiny_checkpoint, data, max_steps=1, eval_every=100)))[-1]
    assert failed.kind == "diverged" and "weights are no longer finite" in failed.message
    assert not {"adapter.safetensors", "checkpoint.safetensors"} & {p.name for p in Path(failed.run_dir).iterdir()}


def test_cli_divergence_exits_1_and_keeps_the_adapter_at_out(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.core import training

    data = write_separable_csv(tmp_path / "d.csv", n=80)
    out = tmp_path / "good.safetensors"
    out.write_bytes(b"an earlier, good adapter")
    monkeypatch.setattr(training, "train_step", lambda *args, **kwargs: (math.inf, 1))
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(data), "--out", str(out), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diverged at step 1: loss is inf" in err
    assert out.read_bytes() == b"an earlier, good adapter"
