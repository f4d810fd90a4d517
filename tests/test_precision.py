"""``--precision auto`` measures instead of reading CPU flags; the probe itself is faked here, so
every assertion holds on any machine (nothing below asserts a timing)."""

import json

import pytest
import torch
from test_training import tiny_config, write_separable_csv

from workbench.core import events as ev
from workbench.core import precision as prec
from workbench.core.device import pick_precision
from workbench.core.paths import cache_dir
from workbench.core.training import train

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch):
    monkeypatch.setattr(prec, "_verdicts", {})
    monkeypatch.setattr(prec, "_unmeasured", set())


def fake_probe(monkeypatch, fp32_ms, bf16_ms):
    calls = []

    def measure(device, width, rows=None):
        calls.append((device.type, width))
        return fp32_ms, bf16_ms

    monkeypatch.setattr(prec, "measure", measure)
    return calls


@pytest.mark.parametrize(
    ("fp32_ms", "bf16_ms", "expected", "said"),
    [
        (10.0, 4.0, "bf16", "bf16 2.50x the speed of fp32 here"),
        (10.0, 19.2, "fp32", "bf16 0.52x the speed of fp32 here"),
        (10.0, 9.5, "fp32", "bf16 1.05x the speed of fp32 here, too little"),  # within noise: keep fp32
    ],
)
def test_auto_takes_what_the_probe_found_faster(monkeypatch, fp32_ms, bf16_ms, expected, said):
    calls = fake_probe(monkeypatch, fp32_ms, bf16_ms)
    choice = prec.choose_precision("auto", CPU, width=96)
    assert choice.precision == expected and pick_precision("auto", CPU, 96) == expected
    assert said in choice.reason and choice.reason.endswith(f"using {expected}")
    assert calls == [("cpu", 96)]  # measured once, then remembered


def test_forced_precisions_never_measure(monkeypatch):
    calls = fake_probe(monkeypatch, 10.0, 1.0)
    assert prec.choose_precision("fp32", CPU).precision == "fp32"
    assert prec.choose_precision("bf16", CPU).reason == "bf16 as asked"
    assert calls == []


def test_the_verdict_is_cached_per_device_torch_and_width(monkeypatch):
    calls = fake_probe(monkeypatch, 10.0, 4.0)
    prec.choose_precision("auto", CPU, width=96)
    saved = json.loads((cache_dir() / prec.CACHE_FILE).read_text())
    key = prec.cache_key(CPU, 96)
    assert torch.__version__ in key and "width 96" in key and key.startswith("cpu: ")
    assert saved["verdicts"][key]["fp32_ms"] == 10.0

    monkeypatch.setattr(prec, "_verdicts", {})  # a new process: the file answers
    monkeypatch.setattr(prec, "_unmeasured", set())
    assert prec.choose_precision("auto", CPU, width=96).precision == "bf16"
    assert len(calls) == 1
    prec.choose_precision("auto", CPU, width=128)  # another model width is measured anew
    assert len(calls) == 2 and len(json.loads((cache_dir() / prec.CACHE_FILE).read_text())["verdicts"]) == 2


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff not json", b"[1, 2]", b'{"format": 1, "verdicts": {"k": {"fp32_ms": "fast"}}}', b'{"format": 99}'],
)
def test_a_damaged_cache_means_measuring_again(monkeypatch, content):
    key = prec.cache_key(CPU, 96)
    (cache_dir() / prec.CACHE_FILE).write_bytes(content.replace(b'"k"', json.dumps(key).encode()))
    calls = fake_probe(monkeypatch, 10.0, 19.2)
    assert prec.choose_precision("auto", CPU, width=96).precision == "fp32"
    assert len(calls) == 1
    assert key in json.loads((cache_dir() / prec.CACHE_FILE).read_text())["verdicts"]  # repaired


def test_a_cache_that_cannot_be_written_is_only_slower(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(blocker / "cache"))
    fake_probe(monkeypatch, 10.0, 4.0)
    assert prec.choose_precision("auto", CPU, width=96).precision == "bf16"


def test_bf16_that_does_not_run_means_fp32(monkeypatch):
    def broken(device, width, rows=None):
        raise RuntimeError("Got unsupported ScalarType BFloat16\nmore detail")

    monkeypatch.setattr(prec, "measure", broken)
    choice = prec.choose_precision("auto", CPU, width=96)
    assert choice.precision == "fp32" and "unsupported ScalarType BFloat16" in choice.reason


def test_the_probe_runs_the_block_shapes_in_both_precisions():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fp32_ms, bf16_ms = prec.measure(CPU, width=8, rows=4)
        assert torch.get_num_threads() == 2  # measured on one thread, then given back
    finally:
        torch.set_num_threads(threads)
    assert fp32_ms > 0 and bf16_ms > 0
    assert prec.probe_rows(768) == prec.probe_rows(64) == 8 * 32 and 32 <= prec.probe_rows(1600) < 8 * 32


def test_training_says_why_it_chose(monkeypatch, tiny_checkpoint, tmp_path):
    fake_probe(monkeypatch, 10.0, 19.2)
    data = write_separable_csv(tmp_path / "data.csv", n=40)
    events = list(train(tiny_config(tiny_checkpoint, data, precision="auto", max_steps=1)))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.precision == "fp32" and "bf16 0.52x the speed of fp32 here" in started.precision_reason
    log = (tmp_path / "data" / "runs").glob("*/log.txt")
    assert any("Precision: bf16 0.52x the speed of fp32" in path.read_text() for path in log)


def test_bench_says_why_it_chose(monkeypatch, tiny_checkpoint, capsys):
    from workbench.bench import machine
    from workbench.cli import main

    real = machine.matmul_gflops
    monkeypatch.setattr(machine, "matmul_gflops", lambda device, dtype=None, n=0, repeats=3: real(device, n=64))
    fake_probe(monkeypatch, 10.0, 19.2)
    argv = ["bench", "--model", str(tiny_checkpoint), "--data", "synthetic", "--steps", "1", "--warmup", "0"]
    assert main([*argv, "--classify-runs", "2", "--rank", "4"]) == 0
    out = capsys.readouterr().out
    assert "precision: bf16 0.52x the speed of fp32 here" in out and "using fp32" in out
    assert main([*argv, "--classify-runs", "2", "--rank", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"


def test_known_precision_never_measures(monkeypatch):
    calls = fake_probe(monkeypatch, 10.0, 4.0)
    assert prec.known_precision("auto", CPU, 96) is None  # not measured yet: the caller shows fp32 or waits
    assert prec.known_precision("bf16", CPU, 96).precision == "bf16"
    assert calls == []
    prec.choose_precision("auto", CPU, 96)
    monkeypatch.setattr(prec, "_verdicts", {})
    monkeypatch.setattr(prec, "_unmeasured", set())
    assert prec.known_precision("auto", CPU, 96).precision == "bf16"  # from the cache file
    assert len(calls) == 1
