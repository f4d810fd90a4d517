"""Outputs never clobber inputs: every verb that writes compares each output with every input
before any work (``fileio.check_outputs``), however the two paths are spelled.

The table below crosses the verbs that write (train, classify, import-peft, export-peft) with the
ways one file can hide behind two names: the same path, ``./x`` against ``x``, ``sub/../x``, a
hard link, a symbolic link, a symbolic link to the folder, and a file inside the model folder.
Each case must exit 2 with one line, leave the victim byte-identical and create no run folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import write_tiny_checkpoint
from test_robustness import assert_one_line_error, run_cli, two_classes, write_csv

from workbench.core import events as ev
from workbench.core import training
from workbench.core.adapters import AdapterInfo, copy_adapter, save_adapter
from workbench.core.classify import Classifier, classify_file
from workbench.core.config import DataConfig, LoRAConfig, TrainConfig
from workbench.core.errors import OutputError
from workbench.core.fileio import check_outputs
from workbench.core.lora import build_lora_model
from workbench.core.peft_io import export_peft

SPELLINGS = ["same path", "./x", "sub/../x", "hard link", "symbolic link", "linked folder"]


def spell(victim: Path, how: str, workdir: Path) -> str:
    """Another name for ``victim``, relative to ``workdir`` (the test's current folder)."""
    if how == "same path":
        return str(victim)
    if how == "./x":
        return "./" + os.path.relpath(victim, workdir)
    if how == "sub/../x":
        sub = workdir / "sub"
        sub.mkdir(exist_ok=True)
        return os.path.join("sub", "..", os.path.relpath(victim, workdir))
    if how == "hard link":
        link = workdir / f"hard-{victim.name}"
        os.link(victim, link)
        return str(link)
    if how == "symbolic link":
        link = workdir / f"sym-{victim.name}"
        link.symlink_to(victim)
        return str(link)
    if how == "linked folder":
        link = workdir / "linked-folder"
        link.symlink_to(victim.parent, target_is_directory=True)
        return str(link / victim.name)
    raise ValueError(how)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A model folder, a dataset, an adapter and a PEFT folder, all in a fresh working folder."""
    monkeypatch.chdir(tmp_path)
    model = write_tiny_checkpoint(tmp_path / "ckpt", n_layer=1, n_embd=16, n_head=2, n_positions=64)
    data = write_csv(tmp_path / "victim.tsv", two_classes(20))
    lora = LoRAConfig(rank=2, alpha=4)
    info = AdapterInfo(
        base_model=str(model),
        model_config=build_lora_model(model, lora, 2, seed=0).config,
        lora=lora,
        label_names=("ham", "spam"),
        max_length=32,
    )
    adapter = save_adapter(tmp_path / "adapter.safetensors", build_lora_model(model, lora, 2, seed=0), info)
    peft = export_peft(adapter, tmp_path / "peft")
    return {"model": model, "data": data, "adapter": adapter, "peft": peft, "dir": tmp_path}


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


# Each verb: the file it must not overwrite, and its argv with OUT standing for the output.
VERBS = {
    "train --out = --data": (
        lambda w: w["data"],
        lambda w: ["train", "--model", w["model"], "--data", w["data"], "--rank", "2", "--out", "OUT"],
    ),
    "train --out = model weights": (
        lambda w: w["model"] / "model.safetensors",
        lambda w: ["train", "--model", w["model"], "--data", w["data"], "--rank", "2", "--out", "OUT"],
    ),
    "train --out = model config": (
        lambda w: w["model"] / "config.json",
        lambda w: ["train", "--model", w["model"], "--data", w["data"], "--rank", "2", "--out", "OUT"],
    ),
    "classify --output = --input": (
        lambda w: w["data"],
        lambda w: ["classify", "--adapter", w["adapter"], "--input", w["data"], "--output", "OUT"],
    ),
    "classify --output = --adapter": (
        lambda w: w["adapter"],
        lambda w: ["classify", "--adapter", w["adapter"], "--input", w["data"], "--output", "OUT"],
    ),
    "classify --output = model vocab": (
        lambda w: w["model"] / "vocab.json",
        lambda w: (
            ["classify", "--adapter", w["adapter"], "--model", w["model"], "--input", w["data"]] + ["--output", "OUT"]
        ),
    ),
    "import-peft --out = its weights": (
        lambda w: w["peft"] / "adapter_model.safetensors",
        lambda w: ["import-peft", w["peft"], "--model", w["model"], "--out", "OUT"],
    ),
    "import-peft --out = base weights": (
        lambda w: w["model"] / "model.safetensors",
        lambda w: ["import-peft", w["peft"], "--model", w["model"], "--out", "OUT"],
    ),
}


@pytest.mark.parametrize("how", SPELLINGS)
@pytest.mark.parametrize("verb", list(VERBS))
def test_no_verb_writes_over_its_input(world, verb, how, capsys):
    victim_of, argv_of = VERBS[verb]
    victim = victim_of(world)
    out = spell(victim, how, world["dir"])
    before = snapshot(world["dir"])
    argv = [out if a == "OUT" else a for a in argv_of(world)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(code, err, "same file as")
    assert snapshot(world["dir"]) == before
    runs = Path(os.environ["WORKBENCH_DATA_DIR"]) / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # refused before a run folder was made


def test_export_peft_does_not_write_over_its_adapter(world, capsys):
    """An adapter named like PEFT's weights file, exported into its own folder."""
    folder = world["dir"] / "exported"
    folder.mkdir()
    adapter = folder / "adapter_model.safetensors"
    adapter.write_bytes(world["adapter"].read_bytes())
    code, _, err = run_cli(capsys, "export-peft", adapter, "--out", folder)
    assert_one_line_error(code, err, "same file as")
    assert adapter.read_bytes() == world["adapter"].read_bytes()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: (d / "a-folder").mkdir() or d / "a-folder", "is a folder"),
        (lambda d: d / "missing" / "a.safetensors", "does not exist"),
        (lambda d: os.mkfifo(d / "pipe") or d / "pipe", "named pipe"),
    ],
    ids=["existing folder", "missing folder", "fifo"],
)
def test_unusable_output_is_refused_before_training(world, make, fragment, capsys):
    out = make(world["dir"])
    argv = ["train", "--model", world["model"], "--data", world["data"], "--rank", "2", "--out", out]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, fragment)
    assert code == 2
    runs = Path(os.environ["WORKBENCH_DATA_DIR"]) / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_core_entry_points_refuse_too(world):
    """The window calls the core directly: training start and classify_file check as the CLI does."""
    cfg = TrainConfig(model=str(world["model"]), data=DataConfig(source=str(world["data"])), lora=LoRAConfig(rank=2))
    before = world["data"].read_bytes()
    events = list(training.train(cfg, out=world["data"]))
    assert len(events) == 1 and isinstance(events[0], ev.TrainingFailed) and events[0].kind == "config"
    assert "same file as the dataset" in events[0].message

    classifier = Classifier.from_adapter(world["adapter"], model=str(world["model"]))
    with pytest.raises(OutputError, match="same file as the input file"):
        classify_file(classifier, world["data"], world["data"])
    with pytest.raises(OutputError, match="same file as the adapter"):
        classify_file(classifier, world["data"], world["adapter"])
    with pytest.raises(OutputError, match="model's model.safetensors"):
        classify_file(classifier, world["data"], world["model"] / "model.safetensors")
    assert world["data"].read_bytes() == before


def test_saving_a_run_adapter_refuses_the_run_inputs(world):
    """What the window's Save adapter as… can pass: the run's inputs (training_inputs)."""
    cfg = TrainConfig(model=str(world["model"]), data=DataConfig(source=str(world["data"])))
    before = world["data"].read_bytes()
    with pytest.raises(OutputError, match="same file as the dataset"):
        copy_adapter(world["adapter"], world["data"], inputs=training.training_inputs(cfg))
    assert world["data"].read_bytes() == before


def test_distinct_files_pass(tmp_path):
    """Not over-eager: a new file beside the inputs, or a dangling link's place, is fine."""
    source = write_csv(tmp_path / "in.csv", two_classes(4))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    check_outputs({"--out": tmp_path / "out.csv"}, {"--input": source, "--model": None})
    check_outputs({"--out": tmp_path / "dangling"}, {"--input": source})
