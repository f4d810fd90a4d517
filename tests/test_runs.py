"""A run's state, decided once (core.runs.outcome) and read the same by the CLI and the window."""

import json
import subprocess
import sys
import threading

import pytest
from test_training import separable_csv, tiny_config, write_separable_csv  # noqa: F401 (fixture)

from workbench.cli import main
from workbench.core import events as ev
from workbench.core.config import TrainConfig
from workbench.core.runs import RUN_STATES, RunFolder, list_runs, outcome, run_state
from workbench.core.training import train

STARTED = ev.RunStarted("r", "CPU", "fp32", ("a", "b"), 8, 2, 2, 0, 32, 2, 1, 2, 10, 100)
STOPPED = ev.TrainingFinished(True, 1, 8, 1.0, "r", "a.safetensors")
FINISHED = ev.TrainingFinished(False, 2, 16, 2.0, "r", "a.safetensors")
FAILED = ev.TrainingFailed("out of memory", kind="oom")
CANCELLED = ev.TrainingFailed("Stopped before training began.", kind="cancelled")


@pytest.mark.parametrize(
    ("history", "state"),
    [
        ([], "interrupted"),  # nothing recorded, and no process holds it
        ([STARTED], "interrupted"),
        ([STARTED, FINISHED], "finished"),
        ([STARTED, STOPPED], "stopped"),
        ([STARTED, FAILED], "failed"),
        ([CANCELLED], "failed"),  # failed before it ever began
        ([STARTED, STOPPED, STARTED], "interrupted"),  # resumed, then cut off: not "stopped"
        ([STARTED, STOPPED, STARTED, FINISHED], "finished"),
        ([STARTED, FINISHED, CANCELLED], "finished"),  # an extension stopped while loading changed nothing
        ([STARTED, STOPPED, STARTED, FAILED], "failed"),
    ],
)
def test_a_runs_state_is_how_its_latest_attempt_ended(history, state):
    assert outcome(history).state == state
    assert outcome(history, running=True).state == ("running" if state == "interrupted" else state)
    assert state in RUN_STATES


def cli_states(capsys) -> dict[str, str]:
    assert main(["runs", "--json"]) == 0
    return {row["path"]: row["state"] for row in json.loads(capsys.readouterr().out)}


def test_resumed_then_interrupted_run_reads_the_same_in_cli_and_window(tiny_checkpoint, separable_csv, capsys):
    from workbench.gui.runs_tab import run_choices

    cfg = tiny_config(tiny_checkpoint, separable_csv, epochs=3, eval_every=1000)
    stop = threading.Event()
    for event in train(cfg, stop=stop):
        if isinstance(event, ev.EpochEnded):
            stop.set()
    assert isinstance(event, ev.TrainingFinished) and event.stopped
    (run,) = list_runs()
    assert run_state(run) == "stopped" and cli_states(capsys) == {str(run.path): "stopped"}

    resumed = train(cfg, resume=event.resume_path)
    for event in resumed:
        if isinstance(event, ev.StepDone):
            break  # the resumed attempt is training: its generator holds the run
    assert run_state(run) == "running" and cli_states(capsys) == {str(run.path): "running"}
    assert run_choices(run, run.events()).summary == "training now" and not run_choices(run, run.events()).can_resume

    resumed.close()  # cut off mid-epoch: no end recorded, as when the window or machine dies
    assert run_state(run) == "interrupted" and cli_states(capsys) == {str(run.path): "interrupted"}
    choices = run_choices(run, run.events())
    assert choices.summary == "interrupted" and choices.can_resume and choices.ended is None


def test_a_run_another_process_trains_is_running_and_cannot_be_trained_twice(tmp_path, tiny_checkpoint):
    run = RunFolder(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from workbench.core.runs import RunFolder\n"
            "with RunFolder(Path(sys.argv[1])).training_lock():\n"
            "    print('held', flush=True); sys.stdin.readline()\n",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run.is_training() and run_state(run, []) == "running"
        cfg = tiny_config(tiny_checkpoint, write_separable_csv(tmp_path / "data.csv", n=40))
        (failed,) = list(train(cfg, run=run))
        assert isinstance(failed, ev.TrainingFailed) and failed.kind == "config"
        assert "Another process is training" in failed.message
        assert not run.metrics_path.exists()  # nothing written into the other process's run
    finally:
        holder.communicate("\n", timeout=30)
    assert not run.is_training() and run_state(run, []) == "interrupted"  # the lock died with it


def test_histories_and_settings_of_earlier_versions_still_load(tmp_path):
    """The resume file's path was recorded as "checkpoint", and the split had its own data.seed."""
    run = RunFolder(tmp_path)
    old_end = {**ev.to_json(FINISHED), "checkpoint": "/runs/r/checkpoint.safetensors"}
    del old_end["resume_path"]
    run.metrics_path.write_text(json.dumps(old_end) + "\n", encoding="utf-8")
    (ended,) = run.events()
    assert ended.resume_path == "/runs/r/checkpoint.safetensors"

    old_config = TrainConfig().to_dict()
    del old_config["seed"]
    old_config["data"]["seed"] = 7
    run.config_path.write_text(json.dumps(old_config), encoding="utf-8")
    assert run.config().seed == 7
    assert "seed" not in TrainConfig().to_dict()["data"]  # one seed now: TrainConfig.seed


def test_durations_read_the_same_in_the_terminal_and_the_window():
    from workbench.core.progress import format_duration

    assert [format_duration(s) for s in (0, 59.4, 59.6, 3599, 3600, 3725.2)] == [
        "0:00",
        "0:59",
        "1:00",
        "59:59",
        "1:00:00",
        "1:02:05",
    ]
    assert format_duration(float("nan")) == format_duration(float("inf")) == "?"
