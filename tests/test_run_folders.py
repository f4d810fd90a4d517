"""Run folders and the files beside our outputs.

- A run folder's name is made unique by ``os.mkdir`` itself (``fileio.create_unique_folder``), so
  runs started in the same second never collide.
- A temp file that a killed ``write_atomically`` left behind is removed by the next write to its
  folder once it is stale; nothing else is ever removed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from workbench.core import runs
from workbench.core.config import DataConfig, TrainConfig
from workbench.core.fileio import STALE_TEMP_AGE_S, create_unique_folder, write_atomically
from workbench.core.runs import RunFolder


class _FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 1, 2, 3, 4, 5)


@pytest.mark.parametrize("starters", [4, 12])
def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch, starters):
    """Every thread starts at once with the same clock reading, and every check whether a path
    exists pauses, letting the other threads run: a check-then-create naming would hand two runs
    one folder (and fail one of them), a creation that is itself the check cannot."""
    monkeypatch.setattr(runs, "datetime", _FrozenClock)
    for owner, name in ((Path, "exists"), (Path, "is_dir"), (os.path, "exists"), (os.path, "isdir")):
        real = getattr(owner, name)
        monkeypatch.setattr(
            owner, name, lambda *args, _real=real, **kwargs: (time.sleep(0.005), _real(*args, **kwargs))[1]
        )
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    cfg = TrainConfig(model="gpt2", data=DataConfig(source="sms-spam"))
    barrier = threading.Barrier(starters)
    made: list[Path] = []
    errors: list[BaseException] = []

    def start_a_run():
        try:
            barrier.wait()
            made.append(RunFolder.create(cfg, parent=tmp_path).path)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start_a_run) for _ in range(starters)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert len(set(made)) == starters
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in made)
    assert all((p / "config.json").is_file() for p in made)
    assert "2026-01-02_03-04-05_gpt2_sms-spam" in {p.name for p in made}


def test_unique_folder_skips_names_taken_meanwhile(tmp_path, monkeypatch):
    """A name taken between any check and the creation is skipped, never reused."""
    (tmp_path / "run").mkdir()
    real_mkdir = os.mkdir
    calls = []

    def mkdir_after_a_rival(path, *args, **kwargs):
        calls.append(Path(path).name)
        if Path(path).name == "run_2" and not (tmp_path / "run_2").exists():
            real_mkdir(path)  # another process wins this name at the last moment
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir_after_a_rival)
    assert create_unique_folder(tmp_path, "run") == tmp_path / "run_3"
    assert [name for name in calls if name.startswith("run")] == ["run", "run_2", "run_3"]


def leftover(folder: Path, name: str, age_s: float) -> Path:
    """A temp file exactly as a killed write_atomically leaves it, ``age_s`` old."""
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.write(fd, b"half an adapter")
    os.close(fd)
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return Path(path)


def test_stale_temp_files_of_a_killed_write_are_cleaned_on_the_next_write(tmp_path):
    old = STALE_TEMP_AGE_S + 60
    stale = [leftover(tmp_path, "adapter.safetensors", old), leftover(tmp_path, "predictions.csv", old)]
    fresh = leftover(tmp_path, "adapter.safetensors", 5)  # a write that may still be running
    keep = {
        "user file": tmp_path / "notes.tmp",
        "short random part": tmp_path / ".notes.abc.tmp",
        "no leading dot": tmp_path / "adapter.safetensors.abcdefgh.tmp",
        "another suffix": tmp_path / ".adapter.safetensors.abcdefgh.temp",
        "capital letters": tmp_path / ".adapter.safetensors.ABCDEFGH.tmp",
    }
    for path in keep.values():
        path.write_text("theirs")
    folder_like_ours = tmp_path / ".data.abcdefgh.tmp"
    folder_like_ours.mkdir()
    link_like_ours = tmp_path / ".link.abcdefgh.tmp"
    link_like_ours.symlink_to(keep["user file"])
    for path in [*keep.values(), folder_like_ours]:
        os.utime(path, (time.time() - old, time.time() - old))

    write_atomically(tmp_path / "other.csv", b"a,b\n")

    assert not any(path.exists() for path in stale)
    assert fresh.exists() and folder_like_ours.is_dir() and link_like_ours.is_symlink()
    assert all(path.read_text() == "theirs" for path in keep.values())
    assert (tmp_path / "other.csv").read_bytes() == b"a,b\n"


def test_a_killed_write_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    """The real thing: a child writing an adapter-sized file is killed with SIGKILL mid-write."""
    import signal
    import subprocess

    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    code = (
        "import sys, os; from pathlib import Path; from workbench.core import fileio\n"
        "real = os.fsync\n"
        "def stuck(fd): print('writing', flush=True); sys.stdin.read()\n"
        "os.fsync = stuck\n"
        f"fileio.write_atomically(Path({str(tmp_path / 'adapter.safetensors')!r}), b'x' * 1000)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout.readline().strip() == "writing"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(60)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".adapter.safetensors.")]
    assert len(left) == 1
    os.utime(left[0], (time.time() - STALE_TEMP_AGE_S - 1, time.time() - STALE_TEMP_AGE_S - 1))
    write_atomically(tmp_path / "adapter.safetensors", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.safetensors"]


# --------------------------------------------------------------------------- unusable home and cache folders


@pytest.fixture
def file_shaped(tmp_path, monkeypatch) -> Path:
    """A plain file where a folder is expected; no workbench or Hugging Face folder set."""
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    for name in ("WORKBENCH_DATA_DIR", "WORKBENCH_CACHE_DIR", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return path


VERBS = {
    "runs": ["runs"],
    "download gpt2": ["download", "gpt2"],
    "download sms-spam": ["download", "sms-spam"],
    "eval": ["eval", "--adapter", "ADAPTER", "--data", "sms-spam"],
}
# (variable set to the file, verb) -> the variable the message must name
CASES = [
    ("HOME", "runs", "WORKBENCH_DATA_DIR"),
    ("HOME", "download gpt2", "HF_HOME"),
    ("HOME", "download sms-spam", "WORKBENCH_CACHE_DIR"),
    ("HOME", "eval", "WORKBENCH_CACHE_DIR"),
    ("WORKBENCH_DATA_DIR", "runs", "WORKBENCH_DATA_DIR"),
    ("WORKBENCH_CACHE_DIR", "download sms-spam", "WORKBENCH_CACHE_DIR"),
    ("WORKBENCH_CACHE_DIR", "eval", "WORKBENCH_CACHE_DIR"),
    ("HF_HOME", "download gpt2", "HF_HOME"),
]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    from conftest import write_tiny_checkpoint

    from workbench.core.adapters import AdapterInfo, save_adapter
    from workbench.core.config import LoRAConfig
    from workbench.core.lora import build_lora_model

    root = tmp_path_factory.mktemp("home")
    model = write_tiny_checkpoint(root / "ckpt", n_layer=1, n_embd=16, n_head=2, n_positions=64)
    lora = LoRAConfig(rank=2, alpha=4)
    gpt = build_lora_model(model, lora, 2, seed=0)
    return save_adapter(root / "a.safetensors", gpt, AdapterInfo(str(model), gpt.config, lora, ("ham", "spam"), 32))


@pytest.mark.parametrize(("variable", "verb", "named"), CASES)
def test_a_file_where_a_folder_belongs_is_one_line(file_shaped, adapter, monkeypatch, capsys, variable, verb, named):
    from test_robustness import assert_one_line_error, run_cli

    monkeypatch.setenv(variable, str(file_shaped))
    if variable == "HOME":  # huggingface_hub read its default cache from HOME at import, in this process
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(file_shaped / ".cache" / "huggingface" / "hub"))
    argv = [str(adapter) if a == "ADAPTER" else a for a in VERBS[verb]]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(code, err, named, str(file_shaped))


def test_an_unwritable_data_folder_is_one_line(tmp_path, monkeypatch, capsys):
    from test_robustness import FaultyDisk, assert_one_line_error, run_cli

    disk = FaultyDisk(monkeypatch)
    read_only = disk.read_only(tmp_path / "read-only")
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(read_only / "data"))
    try:
        code, _, err = run_cli(capsys, "runs")
    finally:
        monkeypatch.undo()
        disk.restore()
    assert code == 2
    assert_one_line_error(code, err, "Permission denied", "WORKBENCH_DATA_DIR")


# --------------------------------------------------------------------------- damaged runs in a listing


def _finished_line(accuracy) -> str:
    import json

    from workbench.core import events as ev

    metrics = ev.EvaluationMetrics(
        0.9, 0.3, ("ham", "spam"), (0.9, 0.9), (0.9, 0.9), (0.9, 0.9), (5, 5), ((4, 1), (0, 5))
    )
    event = ev.TrainingFinished(False, 10, 80, 1.5, "run", "adapter", "", metrics)
    line = ev.to_json(event)
    line["metrics"]["accuracy"] = accuracy
    return json.dumps(line)


DAMAGE = {
    "not UTF-8": lambda p: p.write_bytes(b'{"type": "Status", "message": "\xff"}\n' + _finished_line(0.9).encode()),
    "a folder": lambda p: p.mkdir(),
    "a named pipe": lambda p: os.mkfifo(p),
    "nested 100k deep": lambda p: p.write_text("[" * 100_000 + "]" * 100_000 + "\n" + _finished_line(0.9) + "\n"),
    "a string accuracy": lambda p: p.write_text(_finished_line("90%") + "\n"),
}


def test_runs_lists_damaged_runs_as_damaged_and_the_others_as_they_are(tmp_path, monkeypatch, capsys):
    import json

    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    runs_folder = tmp_path / "data" / "runs"
    names = {"good": _finished_line(0.9)}
    names.update(DAMAGE)
    for i, (name, damage) in enumerate(names.items()):
        folder = runs_folder / f"2026-01-0{i + 1}_run_{name.replace(' ', '-')}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        if name == "good":
            (folder / "metrics.jsonl").write_text(damage + "\n")
        elif name == "a named pipe" and not hasattr(os, "mkfifo"):
            continue
        else:
            damage(folder / "metrics.jsonl")
    assert main(["runs", "--json"]) == 0
    rows = {row["run"].split("_run_")[1]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["good"]["state"] == "finished" and rows["good"]["test_accuracy"] == 0.9
    for name in DAMAGE:
        row = rows[name.replace(" ", "-")]
        assert row["state"] == "damaged" and row["test_accuracy"] is None and row["problem"], row
    assert main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.strip().splitlines()) == len(names)
    states = [line.split()[1] for line in out.strip().splitlines()]
    assert "90.00%" in out and states.count("damaged") == len(DAMAGE)
