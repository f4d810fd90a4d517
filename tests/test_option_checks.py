"""Every numeric option of every verb is checked by the same ``BOUNDS`` entries that validate a
run's settings, before any work or any run folder; devices, huge sizes and odd names give one line."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from test_robustness import adapter, two_classes, write_csv  # noqa: F401 (a fixture)

from workbench.cli import build_parser, main
from workbench.core import events as ev
from workbench.core.config import BOUNDS, TrainConfig
from workbench.core.device import is_out_of_memory, pick_device
from workbench.core.errors import ConfigError
from workbench.core.evaluate import predict_probabilities


def subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_numeric_option_of_every_verb_is_bounded():
    """A new numeric option with a bare type=int would slip past the checks; this finds it."""
    numeric = []
    for verb, sub in subparsers(build_parser()):
        for action in sub._actions:
            is_number = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
            bare = action.type in (int, float)  # a type of its own (rename_pair) is not a number
            if bare or is_number or getattr(action.type, "__qualname__", "").startswith("bounded."):
                numeric.append((verb, action.dest))
                assert getattr(action.type, "__qualname__", "").startswith("bounded."), (verb, action.dest)
    assert ("eval", "batch_size") in numeric and ("train", "seed") in numeric and ("bench", "steps") in numeric


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["eval", "--batch-size", "-1"], "batch size must be a whole number from 1"),
        (["eval", "--batch-size", "0"], "batch size must be"),
        (["eval", "--max-rows", "0"], "sample rows"),
        (["train", "--seed", "9223372036854775807"], "seed must be a whole number from 0 to 4,294,967,295"),
        (["train", "--rank", "1e9"], "rank must be a whole number, not '1e9'"),
        (["train", "--rank", "1000000000"], "rank must be a whole number from 1 to 1,600"),
        (["train", "--weight-decay", "nan"], "weight decay must be a number in [0, 1]"),
        (["train", "--lr", "inf"], "learning rate"),
        (["train", "--alpha", "1e30"], "alpha"),
        (["train", "--dropout", "1"], "dropout"),
        (["import-peft", "folder", "--max-length", "-5"], "max length"),
        (["bench", "--steps", "0"], "steps must be"),
        (["bench", "--classify-runs", "-1"], "classify runs"),
    ],
)
def test_bad_numbers_are_one_line_before_any_work(argv, fragment, tmp_path, capsys):
    verb, *options = argv
    needs = {"eval": ["--adapter", "a.safetensors"], "train": ["--out", "a.safetensors"], "import-peft": ["--out", "x"]}
    assert main([verb, *needs.get(verb, []), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "data" / "runs").exists()  # nothing created: refused while parsing


def test_the_core_checks_batch_sizes_for_every_caller():
    with pytest.raises(ConfigError, match="batch size"):
        predict_probabilities(torch.nn.Identity(), [[1]], 0, torch.device("cpu"), "fp32")
    assert BOUNDS["batch_size"].problem(-1) and BOUNDS["batch_size"].problem(8) is None


def test_bounds_refuse_non_finite_and_non_numbers():
    lr = BOUNDS["lr"]
    for bad in (math.nan, math.inf, -math.inf, 0.0, 1.5, "1e-3", True, None):
        assert lr.problem(bad), bad
    assert lr.problem(1) is None and lr.problem(5e-5) is None


# --------------------------------------------------------------------------- devices


def test_cuda_n_is_a_valid_setting_and_junk_is_not():
    assert not TrainConfig(device="cuda:0").validate()
    assert not TrainConfig(device="cuda:12").validate()
    for bad in ("cuda:", "cuda:x", "cuda:-1", "gpu", "cuda:0 ", "cuda:12345"):
        assert any("device must be" in p for p in TrainConfig(device=bad).validate()), bad


def test_a_gpu_index_that_does_not_exist_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"no GPU 'cuda:2': this machine has 2 \(cuda:0, cuda:1\)"):
        pick_device("cuda:2")
    assert pick_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_train_on_cuda_n_without_a_gpu_is_one_line(tiny_checkpoint, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", two_classes())
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(data), "--device", "cuda:1", "--out", "a.st"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no NVIDIA GPU" in err


# --------------------------------------------------------------------------- memory and names


def test_the_cpu_allocators_failure_is_out_of_memory():
    cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
        "to allocate 256000000000 bytes. Error code 12 (Cannot allocate memory)"
    )
    assert is_out_of_memory(cpu) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_out_of_memory_while_building_the_model_fails_the_run_cleanly(tiny_checkpoint, tmp_path, monkeypatch):
    from test_training import tiny_config, write_separable_csv

    from workbench.core import training

    def allocate(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 256000000000 bytes.")

    monkeypatch.setattr(training, "build_lora_model", allocate)
    data = write_separable_csv(tmp_path / "d.csv", n=40)
    failed = list(training.train(tiny_config(tiny_checkpoint, data)))[-1]
    assert isinstance(failed, ev.TrainingFailed) and failed.kind == "oom"
    assert "Out of memory" in failed.message and "rank" in failed.message


@pytest.mark.parametrize("verb", ["classify", "train", "eval"])
def test_a_300_character_model_name_is_one_short_line(verb, adapter, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", two_classes())
    name = "m" * 300
    argv = {
        "classify": ["classify", "--adapter", str(adapter), "--model", name, "hello"],
        "train": ["train", "--model", name, "--data", str(data), "--out", str(tmp_path / "a.safetensors")],
        "eval": ["eval", "--adapter", str(adapter), "--model", name, "--data", str(data)],
    }[verb]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and len(err) < 300, err
