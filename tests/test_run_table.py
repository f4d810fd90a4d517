"""The run table's core (core.run_table): rows, the name and notes a person gives a run, which
settings differ, removing a run; and "train more" keeping the adapter the run finished with."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path

import pytest
from test_training import separable_csv, tiny_config, write_separable_csv  # noqa: F401 (fixture)

from workbench.cli import main
from workbench.core import events as ev
from workbench.core import run_table
from workbench.core.config import LoRAConfig, TrainConfig
from workbench.core.errors import ConfigError
from workbench.core.run_table import RunAbout
from workbench.core.runs import RunFolder, _try_lock, _unlock, list_runs
from workbench.core.training import train

METRICS = ev.EvaluationMetrics(
    0.9, 0.3, ("ham", "spam"), (0.9, 0.8), (0.95, 0.6), (0.92, 0.70), (80, 20), ((76, 4), (8, 12))
)


def started(run: RunFolder, epochs: int = 2, steps_per_epoch: int = 5) -> ev.RunStarted:
    return ev.RunStarted(
        str(run.path), "CPU", "fp32", ("ham", "spam"), 40, 6, 12, 0, 64, epochs, steps_per_epoch, 10, 1000, 10**5
    )


def finished_run(cfg: TrainConfig, *, elapsed=(12.5,), metrics=METRICS) -> RunFolder:
    """A run folder with a recorded history of one or more attempts, the last one finished."""
    run = RunFolder.create(cfg)
    for i, seconds in enumerate(elapsed):
        run.record(started(run))
        last = i == len(elapsed) - 1
        run.record(ev.TrainingFinished(not last, 10, 80, seconds, str(run.path), "", metrics=metrics if last else None))
    run.adapter_path.write_bytes(b"x" * 1234)
    return run


# --- rows ----------------------------------------------------------------------------------------


def test_a_row_says_what_the_run_did():
    cfg = TrainConfig(lora=LoRAConfig(rank=4, alpha=8.0), epochs=3)
    run = finished_run(cfg, elapsed=(10.0, 5.5))  # stopped once, resumed, finished
    (row, events), *_ = run_table.run_rows()
    assert row.path == run.path and row.name == run.path.name and events == run.events()
    assert row.state == "finished"
    assert (row.model, row.data, row.rank, row.epochs) == ("gpt2", "SMS Spam Collection", 4, 3)
    assert row.test_accuracy == 0.9
    assert row.f1 == pytest.approx((0.92 + 0.70) / 2)  # macro: spam's poor F1 counts as much as ham's
    assert row.duration_s == pytest.approx(15.5)  # both attempts
    assert row.adapter_bytes == 1234
    stamp = datetime.strptime(run.path.name[:19], "%Y-%m-%d_%H-%M-%S")
    assert row.started == stamp


def test_a_row_of_a_run_in_progress_counts_its_live_steps():
    run = RunFolder.create(TrainConfig())
    first = [started(run), ev.TrainingFinished(True, 3, 24, 20.0, str(run.path), "")]
    live = [*first, started(run), ev.StepDone(5, 1, 40, 0.5, 10.0, 100.0, 7.0, 1.0, 10)]
    with run.training_lock():
        row = run_table.run_row(run, live)
    assert row.state == "running" and row.duration_s == pytest.approx(27.0)
    assert row.test_accuracy is None and row.f1 is None and row.adapter_bytes is None


def test_a_damaged_history_or_settings_file_is_a_row_with_its_problem():
    run = RunFolder.create(TrainConfig())
    run.metrics_path.write_bytes(b"\xff\xfe not json\n")
    broken = RunFolder.create(TrainConfig(seed=1))
    broken.config_path.write_text("{", encoding="utf-8")
    broken.record(started(broken))
    rows = {row.path: row for row, _events in run_table.run_rows()}
    assert rows[run.path].state == "damaged" and "unreadable" in rows[run.path].problem
    assert rows[broken.path].model is None and "damaged" in rows[broken.path].problem
    assert rows[broken.path].state == "interrupted"  # its history still says how it stands


# --- name and notes ------------------------------------------------------------------------------


def test_name_and_notes_are_kept_in_the_run_folder_and_read_back(tmp_path):
    run = RunFolder.create(TrainConfig())
    assert run_table.read_about(run) == RunAbout() and run_table.display_name(run) == run.path.name
    stored = run_table.save_about(run, RunAbout("  baseline\n r=16\x1b[31m ", "first line\nsecond line"))
    assert stored.name == "baseline r=16 [31m"  # one line, no control characters
    assert run_table.read_about(RunFolder(run.path)) == stored
    assert run_table.display_name(run) == "baseline r=16 [31m"
    assert [p.name for p in run.path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    (row, _events), *_ = run_table.run_rows()
    assert row.name == stored.name and row.notes == "first line\nsecond line"


@pytest.mark.parametrize("content", [b"{", b"[1, 2]", b'{"name": 5, "notes": null}', b"\xff" * 10, b"[" * 100_000])
def test_a_damaged_about_file_reads_as_no_name(content):
    run = RunFolder.create(TrainConfig())
    run_table.about_path(run).write_bytes(content)
    assert run_table.read_about(run) == RunAbout()
    assert run_table.run_row(run).name == run.path.name


def test_too_long_a_name_or_notes_is_refused_not_cut():
    run = RunFolder.create(TrainConfig())
    with pytest.raises(ConfigError, match="at most 200"):
        run_table.save_about(run, RunAbout("n" * 201))
    with pytest.raises(ConfigError, match="100,000"):
        run_table.save_about(run, RunAbout("", "x" * 100_001))
    assert not run_table.about_path(run).exists()


def test_the_cli_lists_runs_by_the_name_given_in_the_window(capsys):
    run = finished_run(TrainConfig())
    other = finished_run(TrainConfig(seed=5))
    run_table.save_about(run, RunAbout("my baseline", "notes here"))
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("my baseline") and run.path.name in line for line in lines)
    assert any(line.startswith(other.path.name) for line in lines)
    assert main(["runs", "--json"]) == 0
    rows = {row["run"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[run.path.name]["name"] == "my baseline" and rows[run.path.name]["notes"] == "notes here"
    assert rows[other.path.name]["name"] == other.path.name


# --- which settings differ -----------------------------------------------------------------------


def test_settings_diff_lists_exactly_the_settings_that_differ():
    a = TrainConfig()
    b = a.with_changes(lr=1e-3, lora=LoRAConfig(rank=4, alpha=16.0, targets=("qkv",)))
    c = a.with_changes(lr=1e-3)
    diffs = run_table.settings_diff([a, b, c])
    assert [d.setting for d in diffs] == ["lora.rank", "lora.targets", "lr"]
    by_name = {d.setting: d.values for d in diffs}
    assert by_name["lr"] == ("5e-05", "0.001", "0.001")
    assert by_name["lora.rank"] == ("16", "4", "16")
    assert by_name["lora.targets"][1] == "qkv"
    assert run_table.settings_diff([a, TrainConfig()]) == []


# --- removing a run ------------------------------------------------------------------------------


def test_a_run_being_trained_is_never_removed():
    run = finished_run(TrainConfig())
    with run.training_lock():
        assert "training now" in run_table.removal_problem(run)
        with pytest.raises(ConfigError, match="training now"):
            run_table.delete_permanently(run)
    assert run.path.is_dir()
    run_table.delete_permanently(run)
    assert not run.path.exists() and list_runs() == []


def test_only_a_run_folder_is_deleted(tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a run folder"):
        run_table.delete_permanently(RunFolder(folder))
    assert (folder / "precious.txt").exists()


def test_a_trainer_waits_out_a_look_at_the_lock_instead_of_failing(tmp_path):
    """``is_training`` takes the lock for an instant; a trainer starting in that instant must
    not be refused as if another process trained the run."""
    run = RunFolder(tmp_path)
    held, release = threading.Event(), threading.Event()

    def look():
        with open(run.lock_path, "ab") as f:
            assert _try_lock(f)
            held.set()
            release.wait(5)
            _unlock(f)

    looker = threading.Thread(target=look)
    looker.start()
    held.wait(5)
    threading.Timer(0.1, release.set).start()
    with run.training_lock():  # would raise "Another process is training" without the wait
        pass
    looker.join()


# --- train more keeps the adapter the run finished with ---------------------------------------------


def test_each_extension_keeps_the_adapter_the_run_had(tiny_checkpoint, separable_csv):
    cfg = tiny_config(tiny_checkpoint, separable_csv, epochs=1, eval_every=1000)
    end = list(train(cfg))[-1]
    assert isinstance(end, ev.TrainingFinished) and not end.stopped
    (run,) = list_runs()
    after_one = run.adapter_path.read_bytes()

    end = list(train(cfg.with_changes(epochs=2), resume=end.resume_path))[-1]
    assert isinstance(end, ev.TrainingFinished) and not end.stopped
    assert (run.path / "adapter-epoch1.safetensors").read_bytes() == after_one
    after_two = run.adapter_path.read_bytes()
    assert after_two != after_one  # the extension trained and wrote its own

    end = list(train(cfg.with_changes(epochs=3), resume=end.resume_path))[-1]
    assert [p.name for p in run.earlier_adapters()] == ["adapter-epoch1.safetensors", "adapter-epoch2.safetensors"]
    assert (run.path / "adapter-epoch2.safetensors").read_bytes() == after_two
    assert (run.path / "adapter-epoch1.safetensors").read_bytes() == after_one


def test_resuming_a_stopped_run_continues_its_adapter_without_a_copy(tiny_checkpoint, separable_csv):
    cfg = tiny_config(tiny_checkpoint, separable_csv, epochs=2, eval_every=1000)
    stop = threading.Event()
    for event in train(cfg, stop=stop):
        if isinstance(event, ev.EpochEnded):
            stop.set()
    assert isinstance(event, ev.TrainingFinished) and event.stopped
    end = list(train(cfg, resume=event.resume_path))[-1]
    assert isinstance(end, ev.TrainingFinished) and not end.stopped
    (run,) = list_runs()
    assert run.earlier_adapters() == []


def test_a_run_cut_short_by_a_step_limit_keeps_its_adapter_by_step(tiny_checkpoint, tmp_path):
    csv_path = write_separable_csv(tmp_path / "steps.csv", n=120)
    cfg = tiny_config(tiny_checkpoint, csv_path, epochs=3, max_steps=2, eval_every=1000)
    end = list(train(cfg))[-1]
    assert isinstance(end, ev.TrainingFinished) and not end.stopped and end.step == 2
    list(train(cfg.with_changes(epochs=4, max_steps=None), resume=end.resume_path))
    run = RunFolder(Path(end.run_dir))
    assert [p.name for p in run.earlier_adapters()] == ["adapter-step2.safetensors"]
