"""The CLI's contract for every verb: one line on stderr, exit 2 for the user's mistakes, 1 for a
failed run or write, 130 for Ctrl+C; a traceback only for a bug."""

from __future__ import annotations

import signal

import pytest
import torch
from test_robustness import adapter, write_csv  # noqa: F401 (a fixture)
from test_training import write_separable_csv

from workbench import cli
from workbench.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, exit_code, main
from workbench.core.errors import (
    AdapterError,
    Cancelled,
    CheckpointError,
    ConfigError,
    DataError,
    Diverged,
    DownloadError,
    NotFinite,
    OutputError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), EXIT_USAGE),
        (DataError("x"), EXIT_USAGE),
        (CheckpointError("x"), EXIT_USAGE),
        (AdapterError("x"), EXIT_USAGE),
        (NotFinite("x"), EXIT_USAGE),
        (Diverged("x"), EXIT_USAGE),
        (DownloadError("x"), EXIT_FAILED),
        (OutputError("x"), EXIT_FAILED),
        (Cancelled("x"), EXIT_INTERRUPTED),
        (MemoryError(), EXIT_FAILED),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), EXIT_FAILED),
        (PermissionError(13, "Permission denied", "/somewhere"), EXIT_FAILED),
        (ValueError("a bug"), None),
        (RuntimeError("shape mismatch, a bug"), None),
    ],
)
def test_exit_codes_follow_the_readme(error, code):
    assert exit_code(error) == code


VERBS = {
    "train": ["train", "--out", "a.safetensors"],
    "classify": ["classify", "--adapter", "a.safetensors", "hello"],
    "eval": ["eval", "--adapter", "a.safetensors"],
    "download": ["download", "gpt2"],
    "info": ["info", "a.safetensors"],
    "export_peft": ["export-peft", "a.safetensors", "--out", "folder"],
    "import_peft": ["import-peft", "folder", "--out", "a.safetensors"],
    "runs": ["runs"],
    "bench": ["bench"],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
@pytest.mark.parametrize(
    ("error", "code", "fragment"),
    [
        (DataError("a label\nwith a newline and \x1b[2J"), EXIT_USAGE, "a label\\nwith"),
        (MemoryError(), EXIT_FAILED, "out of memory"),
        (PermissionError(13, "Permission denied", "/some/file"), EXIT_FAILED, "/some/file: Permission denied"),
        (Cancelled("Download was cancelled."), EXIT_INTERRUPTED, "cancelled"),
    ],
)
def test_every_verb_ends_an_error_as_one_line(verb, error, code, fragment, monkeypatch, capsys):
    def fail(args):
        raise error

    monkeypatch.setattr(cli, f"cmd_{verb}", fail)
    assert main(VERBS[verb]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err and "Traceback" not in err, err


def test_a_bug_still_shows_its_traceback(monkeypatch):
    monkeypatch.setattr(cli, "cmd_info", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["info", "a.safetensors"])


def test_an_f8_adapter_tensor_is_one_line(adapter, tmp_path, capsys):
    from safetensors.torch import save

    from workbench.core.adapters import METADATA_KEY, read_adapter

    tensors, info = read_adapter(adapter)
    name = next(iter(tensors))
    tensors[name] = tensors[name].to(torch.float8_e4m3fn)
    f8 = tmp_path / "f8.safetensors"
    f8.write_bytes(save(tensors, metadata={METADATA_KEY: info.to_json()}))
    for argv in (["info", str(f8)], ["classify", "--adapter", str(f8), "hi"]):
        assert main(argv) == EXIT_USAGE
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "float8" in err and "Traceback" not in err


def test_a_data_error_in_a_run_exits_2(tiny_checkpoint, tmp_path, capsys):
    one_class = write_csv(tmp_path / "one.csv", [(f"m {i}", "ham") for i in range(20)])
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(one_class), "--out", str(tmp_path / "a.st")]
    assert main(argv) == EXIT_USAGE
    assert "at least two classes" in capsys.readouterr().err


def test_ctrl_c_after_some_steps_saves_the_adapter_and_exits_130(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from workbench.core import training

    real_step, steps = training.train_step, []

    def step_then_ctrl_c(*args, **kwargs):
        steps.append(1)
        if len(steps) == 2:
            signal.raise_signal(signal.SIGINT)  # what the terminal sends; the CLI's handler sets Stop
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", step_then_ctrl_c)
    data = write_separable_csv(tmp_path / "d.csv", n=80)
    out = tmp_path / "a.safetensors"
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(data), "--epochs", "5", "--quiet"]
    assert main([*argv, "--out", str(out)]) == EXIT_INTERRUPTED
    assert "Stopped after 2 steps" in capsys.readouterr().out and out.stat().st_size > 1000
