"""The `workbench` command as a script would use it: exit codes, one-line errors, outputs."""

import csv
import io
import json
import subprocess
import sys

import pytest
from test_training import write_separable_csv

from workbench.cli import main


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tmp_path_factory):
    """One short CLI training run shared by the tests below (its run folder kept out of the
    user's real data dir: module fixtures run before the per-test isolation)."""
    folder = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_DATA_DIR", str(folder / "data"))
        mp.setenv("WORKBENCH_CACHE_DIR", str(folder / "cache"))
        return train_once(tiny_checkpoint, folder)


def train_once(tiny_checkpoint, folder):
    data = write_separable_csv(folder / "data.csv", n=80)
    adapter = folder / "adapter.safetensors"
    code = main(
        [
            "train",
            "--model",
            str(tiny_checkpoint),
            "--data",
            str(data),
            "--rank",
            "4",
            "--epochs",
            "2",
            "--lr",
            "3e-3",
            "--eval-every",
            "4",
            "--quiet",
            "--out",
            str(adapter),
        ]
    )
    assert code == 0
    return adapter, data


def test_train_prints_evaluations_and_writes_adapter(trained, capsys):
    adapter, _ = trained
    assert adapter.stat().st_size > 1000


def test_classify_texts_and_json(trained, tiny_checkpoint, capsys):
    adapter, _ = trained
    assert main(["classify", "--adapter", str(adapter), "win cash prize now", "see you at lunch"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    label, probability = lines[0].split("\t")
    assert label in ("ham", "spam") and 0 <= float(probability) <= 1
    assert main(["classify", "--adapter", str(adapter), "--json", "free prize"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["probabilities"]) == {"ham", "spam"}
    assert sum(record["probabilities"].values()) == pytest.approx(1.0)


def test_classify_reads_stdin(trained, monkeypatch, capsys):
    adapter, _ = trained
    monkeypatch.setattr(sys, "stdin", io.StringIO("claim your reward\n\nhome later\n"))
    assert main(["classify", "--adapter", str(adapter)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_classify_file_writes_predictions(trained, tmp_path, capsys):
    adapter, data = trained
    out = tmp_path / "predictions.csv"
    assert main(["classify", "--adapter", str(adapter), "--input", str(data), "--output", str(out)]) == 0
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 80 and {"predicted_label", "probability", "message"} <= set(rows[0])


def test_eval_and_info_json(trained, capsys):
    adapter, data = trained
    assert main(["eval", "--adapter", str(adapter), "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["accuracy"] <= 1 and len(metrics["confusion"]) == 2
    assert main(["info", str(adapter), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["lora"]["rank"] == 4 and info["label_names"] == ["ham", "spam"]
    assert "test_accuracy" in info["metrics"]


def test_runs_lists_the_run(trained, capsys, monkeypatch):
    assert main(["runs", "--json"]) == 0
    json.loads(capsys.readouterr().out)  # valid JSON even when this test's data dir has no runs


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["classify", "--adapter", "missing.safetensors", "hi"], "does not exist"),
        (["info", "missing.safetensors"], "does not exist"),
        (["train", "--model", "gpt2", "--data", "missing.csv", "--out", "a.safetensors"], "missing.csv"),
        (["train", "--model", "nowhere/", "--out", "a.safetensors", "--rank", "0"], "rank"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_python_dash_m_runs_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "info", str(tmp_path / "x.safetensors")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"model": "/models/my gpt2 (copy)", "epochs": 3, "lr": 3e-4, "precision": "bf16", "seed": 7},
        {
            "data": {"source": "/data/it's here.csv", "text_column": "msg", "label_column": "y", "balance": False},
            "lora": {"rank": 4, "alpha": 8.0, "dropout": 0.1, "targets": ("qkv", "mlp_down"), "top_blocks": 2},
        },
        {
            "data": {"max_length": 64, "max_rows": 1000, "train_fraction": 0.6, "val_fraction": 0.2},
            "max_steps": 20,
            "length_grouping": 0,
            "device": "cpu",
            "grad_accum": 4,
            "weight_decay": 0.0,
            "eval_every": 10,
            "eval_batches": 2,
            "batch_size": 16,
        },
        {"warmup_steps": 30, "schedule": "cosine", "early_stopping": 2, "keep_best": True},
        {"data": {"rename_labels": (("0", "ham"), ("1", "spam b"))}},
    ],
)
def test_train_command_parses_back_into_the_same_settings(changes):
    """The window's "Copy as command": the line it shows runs exactly the settings shown."""
    import shlex
    from dataclasses import replace

    from workbench.cli import build_parser, train_command, train_config
    from workbench.core.config import TrainConfig

    cfg = TrainConfig()
    top = {k: v for k, v in changes.items() if k not in ("data", "lora")}
    cfg = replace(
        cfg,
        data=replace(cfg.data, **changes.get("data", {})),
        lora=replace(cfg.lora, **changes.get("lora", {})),
        **top,
    )
    line = train_command(cfg, out="/tmp/out dir/a.safetensors")
    words = shlex.split(line)
    assert words[:2] == ["workbench", "train"]
    args = build_parser().parse_args(words[1:])
    assert train_config(args) == cfg and args.out == "/tmp/out dir/a.safetensors"
    if not changes:
        assert line == "workbench train --out '/tmp/out dir/a.safetensors'"  # defaults are left out


def test_train_settings_file_gives_defaults_that_options_override(tmp_path, capsys):
    from dataclasses import replace

    from workbench.cli import build_parser, main, train_config, with_settings_file
    from workbench.core.config import TrainConfig
    from workbench.core.runs import save_settings

    saved = TrainConfig(epochs=3, lr=1e-3, precision="fp32", seed=9)
    saved = replace(saved, lora=replace(saved.lora, rank=4, targets=("qkv",)), data=replace(saved.data, balance=False))
    path = save_settings(saved, tmp_path / "preset.json")
    argv = ["train", "--settings", str(path), "--epochs", "5", "--out", str(tmp_path / "a.safetensors")]
    parser = build_parser()
    cfg = train_config(with_settings_file(parser, argv, str(path)))
    assert cfg == replace(saved, epochs=5)  # the option written out wins, even at its default value

    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["train", "--settings", str(bad), "--out", str(tmp_path / "b.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: error:") and "not a settings file" in err and "\n" not in err


def test_runs_rename_note_diff_and_delete(capsys):
    """What the Runs tab does to a run, the command line does too (core.run_table for both)."""
    from workbench.core.config import LoRAConfig, TrainConfig
    from workbench.core.paths import runs_dir
    from workbench.core.run_table import read_about
    from workbench.core.runs import RunFolder

    folders = []
    for name, rank in (("2026-12-01_10-00-00_a", 16), ("2026-12-01_11-00-00_b", 8)):
        run = RunFolder(runs_dir() / name)
        run.path.mkdir(parents=True)
        run.save_config(TrainConfig(lora=LoRAConfig(rank=rank)))
        folders.append(run)
    first, second = folders

    assert main(["runs", "--rename", first.path.name, "baseline"]) == 0
    assert main(["runs", "--note", "baseline", "the book's recipe"]) == 0  # found by its given name
    assert read_about(first).name == "baseline" and read_about(first).notes == "the book's recipe"
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    listed = {row["run"]: row["name"] for row in json.loads(capsys.readouterr().out)}
    assert listed[first.path.name] == "baseline" and listed[second.path.name] == second.path.name

    assert main(["runs", "--diff", "baseline", second.path.name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["lora.rank"] and "16" in lines[0] and "8" in lines[0]

    assert main(["runs", "--delete", second.path.name]) == 2  # asks for --yes first
    assert second.path.is_dir()
    assert main(["runs", "--delete", second.path.name, "--yes"]) == 0
    assert not second.path.exists()

    capsys.readouterr()
    assert main(["runs", "--note", "no-such-run", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: error:") and "no run named 'no-such-run'" in err and "\n" not in err
