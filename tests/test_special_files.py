"""Anything that is not a regular file is refused before it is opened: every reader asks
``fileio.require_regular_file`` / ``open_regular_file`` first.

Opening a named pipe for reading waits until some process opens it for writing, so a reader that
opens first hangs for good, and a reader in native code (safetensors) holds the interpreter lock
while it waits, freezing every thread. So the readers run in a child process that says which
reader it starts before each; a child that has not finished within a generous wait is killed
and the reader it was in is named.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tiny_checkpoint
from test_robustness import assert_one_line_error, two_classes, write_csv

from workbench.core import events as ev
from workbench.core import training
from workbench.core.adapters import AdapterInfo, copy_adapter, read_adapter, save_adapter
from workbench.core.config import DataConfig, LoRAConfig, TrainConfig
from workbench.core.data import load_table, read_sms_spam, read_table
from workbench.core.errors import AdapterError, CheckpointError, DataError, WorkbenchError
from workbench.core.hub import resolve_checkpoint
from workbench.core.lora import build_lora_model
from workbench.core.model import GPT2Classifier, load_model_config
from workbench.core.peft_io import export_peft, import_peft
from workbench.core.runs import RunFolder, load_resume_state
from workbench.core.tokenizer import load_tokenizer

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")

PATIENCE_S = 120.0  # far more than the child needs; only a blocked reader makes it wait this long
TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """A good model folder, adapter and PEFT folder, copied and sabotaged by each case."""
    root = tmp_path_factory.mktemp("special")
    model = write_tiny_checkpoint(root / "ckpt", n_layer=1, n_embd=16, n_head=2, n_positions=64)
    lora = LoRAConfig(rank=2, alpha=4)
    gpt = build_lora_model(model, lora, 2, seed=0)
    info = AdapterInfo(str(model), gpt.config, lora, ("ham", "spam"), 32)
    adapter = save_adapter(root / "adapter.safetensors", gpt, info)
    return {"model": model, "adapter": adapter, "peft": export_peft(adapter, root / "peft")}


def fifo_in_copy(folder: Path, name: str, tmp_path: Path) -> dict[str, str]:
    """A copy of ``folder`` whose file ``name`` is a named pipe."""
    copy = tmp_path / f"{folder.name}-{name}"
    shutil.copytree(folder, copy)
    (copy / name).unlink()
    os.mkfifo(copy / name)
    return {"folder": str(copy)}


def lone_fifo(tmp_path: Path, name: str) -> dict[str, str]:
    os.mkfifo(tmp_path / name)
    return {"path": str(tmp_path / name)}


def _resume(a: dict) -> None:
    import torch

    model = build_lora_model(Path(a["model"]), LoRAConfig(rank=2), 2, seed=0)
    load_resume_state(Path(a["path"]), model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad]))


def _train_resume(a: dict) -> None:
    cfg = TrainConfig(model=a["model"], data=DataConfig(source=a["data"]), lora=LoRAConfig(rank=2))
    last = list(training.train(cfg, resume=a["path"]))[-1]
    assert isinstance(last, ev.TrainingFailed)
    raise WorkbenchError(last.message)


# name -> (make the inputs in the parent, read them in the child, the error expected)
CASES = {
    "adapter": (lambda p, t: lone_fifo(t, "a.safetensors"), lambda a: read_adapter(a["path"]), AdapterError),
    "adapter copy": (
        lambda p, t: lone_fifo(t, "b.safetensors"),
        lambda a: copy_adapter(a["path"], Path(a["path"]).with_name("copy.safetensors")),
        AdapterError,
    ),
    "dataset": (lambda p, t: lone_fifo(t, "d.csv"), lambda a: read_table(a["path"]), DataError),
    "dataset config": (
        lambda p, t: lone_fifo(t, "d.tsv"),
        lambda a: load_table(DataConfig(source=a["path"])),
        DataError,
    ),
    "sms file": (lambda p, t: lone_fifo(t, "SMSSpamCollection"), lambda a: read_sms_spam(a["path"]), DataError),
    "model config": (
        lambda p, t: fifo_in_copy(p["model"], "config.json", t),
        lambda a: load_model_config(Path(a["folder"])),
        CheckpointError,
    ),
    "model folder": (
        lambda p, t: fifo_in_copy(p["model"], "model.safetensors", t),
        lambda a: resolve_checkpoint(a["folder"]),
        CheckpointError,
    ),
    "model weights": (
        lambda p, t: fifo_in_copy(p["model"], "model.safetensors", t),
        lambda a: GPT2Classifier.from_checkpoint(Path(a["folder"]), 2),
        CheckpointError,
    ),
    "tokenizer": (
        lambda p, t: fifo_in_copy(p["model"], "vocab.json", t),
        lambda a: load_tokenizer(a["folder"]),
        CheckpointError,
    ),
    "peft config": (
        lambda p, t: {**fifo_in_copy(p["peft"], "adapter_config.json", t), "model": str(p["model"])},
        lambda a: import_peft(a["folder"], Path(a["folder"]).with_name("x.safetensors"), model=a["model"]),
        AdapterError,
    ),
    "peft weights": (
        lambda p, t: {**fifo_in_copy(p["peft"], "adapter_model.safetensors", t), "model": str(p["model"])},
        lambda a: import_peft(a["folder"], Path(a["folder"]).with_name("x.safetensors"), model=a["model"]),
        AdapterError,
    ),
    "peft labels": (
        lambda p, t: {**fifo_in_copy(p["peft"], "workbench.json", t), "model": str(p["model"])},
        lambda a: import_peft(a["folder"], Path(a["folder"]).with_name("x.safetensors"), model=a["model"]),
        AdapterError,
    ),
    "resume checkpoint": (
        lambda p, t: {**lone_fifo(t, "checkpoint.safetensors"), "model": str(p["model"])},
        _resume,
        WorkbenchError,
    ),
    "training resume": (
        lambda p, t: {
            **lone_fifo(t, "resume.safetensors"),
            "model": str(p["model"]),
            "data": str(write_csv(t / "two.csv", two_classes())),
        },
        _train_resume,
        WorkbenchError,
    ),
    "run settings": (
        lambda p, t: (os.mkfifo(t / "config.json"), {"folder": str(t)})[1],
        lambda a: RunFolder(Path(a["folder"])).config(),
        WorkbenchError,
    ),
}


def child_main(plan_file: str) -> None:
    """In the child: run each planned reader, one JSON line before and one after."""
    for name, args in json.loads(Path(plan_file).read_text()).items():
        print(json.dumps({"start": name}), flush=True)
        _, call, expected = CASES[name]
        try:
            call(args)
            answer = {"name": name, "error": None}
        except Exception as exc:
            answer = {"name": name, "error": type(exc).__name__, "expected": isinstance(exc, expected)}
            answer["message"] = str(exc)
        print(json.dumps(answer), flush=True)


def test_every_reader_refuses_a_named_pipe_without_blocking(pieces, tmp_path):
    plan = {}
    for name, (make, _, _) in CASES.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        plan[name] = make(pieces, folder)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    code = f"import test_special_files as t; t.child_main({str(tmp_path / 'plan.json')!r})"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE_S, env=env, cwd=tmp_path
        )
        output = result.stdout
    except subprocess.TimeoutExpired as timeout:
        output = timeout.stdout.decode() if isinstance(timeout.stdout, bytes) else timeout.stdout or ""
        started = [json.loads(line)["start"] for line in output.splitlines() if '"start"' in line]
        pytest.fail(f"the reader of the {started[-1] if started else '?'} case blocked on a named pipe")
    answers = {a["name"]: a for a in map(json.loads, output.splitlines()) if "name" in a}
    assert set(answers) == set(CASES), result.stderr[-2000:]
    for name, answer in answers.items():
        assert answer["error"] is not None and answer["expected"], (name, answer)
        assert "named pipe" in answer["message"] and len(answer["message"].splitlines()) == 1, (name, answer)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_link_to_a_device_is_refused(tmp_path):
    """A device never ends: /dev/zero read as an adapter or a dataset would fill the memory."""
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    with pytest.raises(AdapterError, match="character device"):
        read_adapter(link)
    with pytest.raises(DataError, match="character device"):
        read_table(link)


def run_cli_process(*argv) -> tuple[int, str]:
    """``python -m workbench`` (the CLI's train installs a signal handler: main thread only); a
    blocked reader shows as a timeout, and subprocess.run kills the process then."""
    result = subprocess.run(
        [sys.executable, "-m", "workbench", *map(str, argv)], capture_output=True, text=True, timeout=PATIENCE_S * 3
    )
    return result.returncode, result.stderr


@pytest.mark.parametrize("verb", ["info", "classify", "train --data", "train --model", "eval"])
def test_cli_refuses_pipes_in_one_line(pieces, tmp_path, verb):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = write_csv(tmp_path / "d.csv", two_classes())
    out = tmp_path / "a.safetensors"
    argv = {
        "info": ["info", fifo],
        "classify": ["classify", "--adapter", fifo, "hello"],
        "train --data": ["train", "--model", pieces["model"], "--data", fifo, "--out", out],
        "train --model": ["train", "--model", fifo, "--data", data, "--out", out],
        "eval": ["eval", "--adapter", pieces["adapter"], "--data", fifo],
    }[verb]
    code, err = run_cli_process(*argv)
    assert_one_line_error(code, err, "pipe" if verb != "train --model" else str(fifo))
