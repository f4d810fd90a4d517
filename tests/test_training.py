"""The training loop: it learns, it reports plain events, it stops, resumes and saves."""

import csv
import dataclasses
import json
import random
import threading

import pytest
import torch

from workbench.core import events as ev
from workbench.core.classify import Classifier
from workbench.core.config import DataConfig, LoRAConfig, TrainConfig
from workbench.core.evaluate import classification_metrics
from workbench.core.runs import RunFolder, list_runs
from workbench.core.training import train

SPAM_WORDS = "win cash prize free claim now urgent offer call txt reward".split()
HAM_WORDS = "see you at lunch tomorrow ok thanks mum home later love".split()


def write_separable_csv(path, n=200, seed=0):
    """Two classes that differ only in vocabulary: a task a tiny model must learn."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["message", "label"])
        for i in range(n):
            words = SPAM_WORDS if i % 2 else HAM_WORDS
            writer.writerow([" ".join(rng.choices(words, k=rng.randint(3, 9))), "spam" if i % 2 else "ham"])
    return path


def tiny_config(checkpoint, csv_path, **changes):
    cfg = TrainConfig(
        model=str(checkpoint),
        data=DataConfig(source=str(csv_path)),
        lora=LoRAConfig(rank=8, alpha=16),
        epochs=4,
        batch_size=8,
        lr=1e-3,
        eval_every=5,
        eval_batches=2,
        # Numeric comparisons must not depend on what "auto" picks on this machine's CPU or GPU.
        precision="fp32",
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture
def separable_csv(tmp_path):
    return write_separable_csv(tmp_path / "separable.csv")


def test_tiny_model_learns_separable_task(tiny_checkpoint, separable_csv):
    events = list(train(tiny_config(tiny_checkpoint, separable_csv)))
    finished = events[-1]
    assert isinstance(finished, ev.TrainingFinished), finished
    full_evals = [e for e in events if isinstance(e, ev.Evaluated) and e.full]
    assert len(full_evals) == 4
    assert full_evals[-1].val_accuracy >= 0.95
    assert finished.metrics.accuracy >= 0.95
    losses = [e.loss for e in events if isinstance(e, ev.StepDone)]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_events_are_plain_values(tiny_checkpoint, separable_csv):
    events = list(train(tiny_config(tiny_checkpoint, separable_csv, max_steps=3, eval_every=2)))
    kinds = [type(e).__name__ for e in events]
    assert "RunStarted" in kinds and kinds[-1] == "TrainingFinished"
    assert kinds.count("StepDone") == 3
    for event in events:
        for field in dataclasses.fields(event):
            value = getattr(event, field.name)
            assert not isinstance(value, (torch.Tensor, torch.nn.Module)), (event, field.name)
        json.dumps(ev.to_json(event))  # every event serialises


def test_stop_ends_within_one_step_and_keeps_adapter(tiny_checkpoint, separable_csv):
    stop = threading.Event()
    steps = 0
    events = []
    for event in train(tiny_config(tiny_checkpoint, separable_csv, epochs=50), stop=stop):
        events.append(event)
        if isinstance(event, ev.StepDone):
            steps += 1
            if steps == 2:
                stop.set()
    assert [type(e).__name__ for e in events].count("StepDone") == 2
    finished = events[-1]
    assert isinstance(finished, ev.TrainingFinished) and finished.stopped and finished.metrics is None
    Classifier.from_adapter(finished.adapter_path).predict(["free cash"])  # usable as it stood


def test_resume_continues_to_the_same_result(tiny_checkpoint, separable_csv):
    cfg = tiny_config(tiny_checkpoint, separable_csv, epochs=2, eval_every=1000)
    straight = list(train(cfg))[-1]

    stop = threading.Event()
    for event in train(cfg, stop=stop):
        if isinstance(event, ev.StepDone) and event.step == 7:
            stop.set()
    interrupted = event
    assert interrupted.stopped
    resumed = list(train(cfg, resume=interrupted.resume_path))[-1]
    assert resumed.step == straight.step
    a = Classifier.from_adapter(straight.adapter_path, precision="fp32").probabilities(
        ["win cash now", "see you at lunch"]
    )
    b = Classifier.from_adapter(resumed.adapter_path, precision="fp32").probabilities(
        ["win cash now", "see you at lunch"]
    )
    assert torch.allclose(a, b, atol=1e-5)


def test_gradient_accumulation_equals_one_big_batch(tiny_checkpoint, separable_csv):
    big = list(train(tiny_config(tiny_checkpoint, separable_csv, batch_size=8, max_steps=4, length_grouping=0)))[-1]
    small = list(
        train(tiny_config(tiny_checkpoint, separable_csv, batch_size=4, grad_accum=2, max_steps=4, length_grouping=0))
    )[-1]
    texts = ["claim your prize", "home later mum"]
    a = Classifier.from_adapter(big.adapter_path, precision="fp32").probabilities(texts)
    b = Classifier.from_adapter(small.adapter_path, precision="fp32").probabilities(texts)
    assert torch.allclose(a, b, atol=1e-4)


def test_run_folder_keeps_settings_history_and_adapter(tiny_checkpoint, separable_csv):
    cfg = tiny_config(tiny_checkpoint, separable_csv, max_steps=4, eval_every=2)
    finished = list(train(cfg))[-1]
    runs = list_runs()
    assert [r.path for r in runs] == [RunFolder(finished_path := __import__("pathlib").Path(finished.run_dir)).path]
    run = runs[0]
    assert run.config() == cfg
    recorded = run.events()
    assert isinstance(recorded[-1], ev.TrainingFinished) and recorded[-1].metrics == finished.metrics
    assert any(isinstance(e, ev.Evaluated) for e in recorded)
    assert run.adapter_path.exists() and run.resume_path.exists() and "Finished" in run.log_path.read_text()
    assert finished_path.is_dir()


def test_bad_settings_fail_with_every_problem(tiny_checkpoint, separable_csv):
    cfg = tiny_config(tiny_checkpoint, separable_csv, epochs=0, lr=-1, lora=LoRAConfig(rank=0))
    (failed,) = list(train(cfg))
    assert isinstance(failed, ev.TrainingFailed) and failed.kind == "config"
    for word in ("epochs", "learning rate", "rank"):
        assert word in failed.message


def test_missing_data_file_fails_cleanly(tiny_checkpoint, tmp_path):
    (failed,) = list(train(tiny_config(tiny_checkpoint, tmp_path / "nope.csv")))
    assert isinstance(failed, ev.TrainingFailed) and "nope.csv" in failed.message


def test_out_of_memory_becomes_a_retry_offer(tiny_checkpoint, separable_csv, monkeypatch):
    import workbench.core.training as training

    def explode(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training, "train_step", explode)
    failed = list(train(tiny_config(tiny_checkpoint, separable_csv)))[-1]
    assert isinstance(failed, ev.TrainingFailed) and failed.kind == "oom"
    assert failed.retry_batch_size == 4 and "batch" in failed.message


def test_metrics_match_hand_computation():
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ("a", "b", "c"))
    assert m.confusion == ((1, 1, 0), (0, 2, 0), (1, 0, 0))
    assert m.accuracy == pytest.approx(0.6)
    assert m.precision == pytest.approx((0.5, 2 / 3, 0.0))
    assert m.recall == pytest.approx((0.5, 1.0, 0.0))
    assert m.f1[1] == pytest.approx(0.8)


def test_train_more_epochs_extends_a_finished_run(tiny_checkpoint, separable_csv):
    cfg = tiny_config(tiny_checkpoint, separable_csv, epochs=1, eval_every=1000)
    first = list(train(cfg))[-1]
    events = list(train(dataclasses.replace(cfg, epochs=2), resume=first.resume_path))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    finished = events[-1]
    assert started.start_step == first.step and finished.step == 2 * first.step
    assert finished.run_dir == first.run_dir and not finished.stopped
    assert RunFolder(__import__("pathlib").Path(first.run_dir)).config().epochs == 2
    assert [e.epoch for e in events if isinstance(e, ev.EpochEnded)] == [2]


def test_typing_reuses_prefix_and_matches_full_prediction(tiny_checkpoint, separable_csv):
    adapter = list(train(tiny_config(tiny_checkpoint, separable_csv, max_steps=3)))[-1].adapter_path
    classifier = Classifier.from_adapter(adapter, precision="fp32")
    for text in ["w", "wi", "win", "win c", "win cash", "win ca", "see you", "see you at lunch"]:
        typed = classifier.predict_typing(text)
        (whole,) = classifier.predict([text])
        assert typed.label == whole.label
        for name in typed.probabilities:
            assert typed.probabilities[name] == pytest.approx(whole.probabilities[name], abs=1e-5)


def test_classifier_on_a_cpu_packs_weights_and_matches_the_training_model(tiny_checkpoint, separable_csv):
    from test_lora import PACKING

    from workbench.core.adapters import load_adapter_weights, read_adapter
    from workbench.core.classify import PackedLinear
    from workbench.core.evaluate import predict_probabilities
    from workbench.core.lora import build_lora_model

    adapter = list(train(tiny_config(tiny_checkpoint, separable_csv, max_steps=3)))[-1].adapter_path
    classifier = Classifier.from_adapter(adapter, device="cpu", precision="fp32")
    assert any(isinstance(m, PackedLinear) for m in classifier.model.modules()) == PACKING
    texts = ["win cash now", "see you at lunch", "ok"]
    unpacked = build_lora_model(tiny_checkpoint, classifier.info.lora, 2, seed=0)
    load_adapter_weights(unpacked, *read_adapter(adapter))  # not merged, not packed
    expected = predict_probabilities(unpacked, [classifier.encode(t) for t in texts], 8, torch.device("cpu"), "fp32")
    assert torch.allclose(classifier.probabilities(texts), expected, atol=1e-5)


@pytest.mark.parametrize("lever", [{"precision": "bf16"}, {"length_grouping": 0}])
def test_speed_levers_keep_accuracy(tiny_checkpoint, separable_csv, lever):
    """bf16 autocast and length grouping change the arithmetic, not what the model learns."""
    baseline = list(train(tiny_config(tiny_checkpoint, separable_csv, precision="fp32")))[-1]
    variant = list(train(tiny_config(tiny_checkpoint, separable_csv, **{"precision": "fp32", **lever})))[-1]
    assert baseline.metrics.accuracy >= 0.95
    assert abs(variant.metrics.accuracy - baseline.metrics.accuracy) <= 0.05


def test_scoring_the_test_set_is_announced_after_the_last_step(tiny_checkpoint, separable_csv):
    """Scoring the test set can take minutes after the last step: a Status names that phase, so no
    progress display sits at "100 % · ETA 0:00" meanwhile."""
    events = list(train(tiny_config(tiny_checkpoint, separable_csv, epochs=2)))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    last_step = max(i for i, e in enumerate(events) if isinstance(e, ev.StepDone))
    after = [e.message for e in events[last_step:] if isinstance(e, ev.Status)]
    assert f"Scoring {started.n_test} test messages" in after
    # The full validation at each epoch's end is a phase too.
    epoch_end = [i for i, e in enumerate(events) if isinstance(e, ev.Evaluated) and e.full]
    assert all(events[i - 1] == ev.Status(f"Validating on {started.n_val} messages") for i in epoch_end)
    assert isinstance(events[-1], ev.TrainingFinished) and events[-1].metrics is not None


def test_time_left_leaves_out_the_warm_up_step():
    """The first step of a run (or of a resumed run) pays for allocations and kernel choices; the
    time left is estimated from the steps after it, including their evaluations, on average."""
    from workbench.core.training import Throughput

    now = [100.0]
    clock = Throughput(total_steps=20, already_done=10, clock=lambda: now[0])  # resumed at step 10
    for seconds in (10.0, 1.0, 1.0, 3.0):  # warm-up, two steps, one with an evaluation after it
        now[0] += seconds
        rate = clock.update(examples=8, tokens=80)
    assert rate.eta_s == pytest.approx(6 * (1 + 1 + 3) / 3)  # 6 steps left at the average after warm-up
    assert rate.elapsed_s == pytest.approx(15.0)
    assert rate.examples_per_s < 8.0  # the last step's 3 s count, the warm-up's 10 s do not
