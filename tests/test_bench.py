"""`workbench bench`: every figure is there and plausible, through the real training path.

Timings on a shared machine are noise, so nothing here asserts a speed: only keys, types, ranges
and the padding arithmetic, which is deterministic.
"""

import dataclasses
import itertools
import json
import math

import pytest
from conftest import SMS_FILE, TOKENIZER_DIR, require_shared

from workbench.bench import BenchConfig, machine, run_bench, workload
from workbench.cli import main
from workbench.core.classify import can_pack_weights, can_run_int8
from workbench.core.config import LoRAConfig, ModelConfig, TrainConfig
from workbench.core.errors import ConfigError
from workbench.core.model import param_count

REQUIRED = {
    "train_examples_per_s",
    "train_tokens_per_s",
    "padding_fraction",
    "eval_examples_per_s",
    "classify_ms_median",
    "classify_ms_p95",
    "peak_rss_mb",
    "precision",
}


@pytest.fixture
def small_matmul(monkeypatch):
    """The ceiling's 2048³ matmul takes seconds on a busy 2-core box; 128³ exercises the same code."""
    real = machine.matmul_gflops
    monkeypatch.setattr(machine, "matmul_gflops", lambda device, dtype=None, n=0, repeats=3: real(device, n=128))


def tiny_bench(checkpoint, **changes) -> BenchConfig:
    cfg = BenchConfig(
        model=str(checkpoint),
        data="synthetic",
        steps=2,
        warmup=1,
        eval_examples=16,
        classify_runs=5,
        matmul_size=128,
        lora=LoRAConfig(rank=4, alpha=8),
        precision="fp32",  # pinned: "auto" depends on the machine
    )
    return dataclasses.replace(cfg, **changes)


def test_run_bench_reports_every_figure(tiny_checkpoint):
    progress = []
    result = run_bench(tiny_bench(tiny_checkpoint), progress=lambda done, total, message="": progress.append(message))
    d = json.loads(result.to_json())
    assert REQUIRED <= set(d)
    assert "cuda_max_allocated_mb" not in d  # CPU run
    for key in REQUIRED - {"precision", "padding_fraction"}:
        assert isinstance(d[key], float) and math.isfinite(d[key]) and d[key] > 0, key
    assert 0 <= d["padding_fraction"] < 1 and 0 <= d["epoch_padding_fraction"] < 0.1  # grouped by length
    assert d["classify_ms_p95"] >= d["classify_ms_median"]
    assert d["precision"] == "fp32"  # as asked
    assert d["classify_tokens"] == 25 and d["steps"] == 2 and d["n_train"] == 1045
    assert d["classify_packed"] == can_pack_weights()  # measured the way the classify box runs
    assert d["keystroke_ms"] > 0
    if can_run_int8():  # int8 timed too, as `classify --int8` runs
        assert d["classify_int8_ms"] > 0 and d["classify_int8_ms_p95"] >= d["classify_int8_ms"]
        assert d["keystroke_int8_ms"] > 0
    else:
        assert "classify_int8_ms" not in d
    assert d["data_source"].startswith("synthetic")
    assert 0 < d["ceiling_fraction"] < 10 and d["matmul_gflops_fp32"] > 0
    assert d["train_tokens_per_s"] > d["train_examples_per_s"]
    assert d["trainable_params"] < d["n_params"]
    assert "Training step 2/2" in progress and "Classifying one message" in progress
    model, _ = workload.build_bench_model(tiny_bench(tiny_checkpoint), 2)
    assert d["n_params"] == param_count(model)  # counted before classification packed the weights away


def test_grouping_by_length_cuts_padding_on_sms_like_lengths():
    data = workload.synthetic_data(seed=7, max_length=1024, source="synthetic")
    n_batches = -(-len(data.train.labels) // 8)

    def epoch_padding(grouping: int) -> float:
        cfg = TrainConfig(batch_size=8, length_grouping=grouping, seed=7)
        batches = workload.training_batches(data.train, cfg)
        return workload.padding_fraction([next(batches) for _ in range(n_batches)])

    grouped, random_order = epoch_padding(50), epoch_padding(0)
    assert grouped < 0.1 < 0.3 < random_order  # the real split: about 3% against 43%


def test_synthetic_lengths_look_like_the_sms_split():
    lengths = workload.synthetic_lengths(1045, seed=1)
    assert 26 < sum(lengths) / len(lengths) < 34
    assert min(lengths) >= 1 and max(lengths) <= 120


def test_real_sms_lengths_are_used_when_present():
    require_shared(SMS_FILE)
    cfg = BenchConfig(data=str(SMS_FILE), tokenizer=str(require_shared(TOKENIZER_DIR)))
    data = workload.load_bench_data(cfg, checkpoint=None, max_length=1024)
    lengths = [len(ids) for ids in data.train.token_ids]
    assert "real token lengths" in data.source and len(lengths) == 1045  # the book's split
    assert 28 < sum(lengths) / len(lengths) < 33 and max(lengths) <= 120
    assert abs(len(data.message_ids) - 25) <= 1 and data.message


def test_flops_per_token_counts_forward_and_input_gradients():
    config = ModelConfig()  # GPT-2 small: 85M matmul weights
    p = config.n_layer * config.block_matmul_weights
    assert p == 84_934_656
    assert machine.flops_per_token(config, LoRAConfig()) == 4 * p
    top2 = machine.flops_per_token(config, LoRAConfig(top_blocks=2))  # backward only through 2 blocks
    assert top2 == pytest.approx(2 * p + 2 * p * 2 / 12)


def test_config_reports_every_problem_and_random_init_is_explicit(monkeypatch):
    problems = BenchConfig(model="gpt3", data="no/such/file.csv", steps=0, precision="fp8").validate()
    assert len(problems) == 4
    monkeypatch.setattr(workload.hub, "is_cached", lambda model: False)
    with pytest.raises(ConfigError, match="--random-init"):
        workload.build_bench_model(BenchConfig(model="gpt2"), 2)


def test_percentile_interpolates():
    assert machine.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert machine.percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    assert machine.percentile([7.0], 95) == 7.0


def test_cli_bench_json(tiny_checkpoint, small_matmul, capsys):
    code = main(
        [
            "bench",
            "--model",
            str(tiny_checkpoint),
            "--data",
            "synthetic",
            "--steps",
            "2",
            "--warmup",
            "0",
            "--classify-runs",
            "3",
            "--rank",
            "4",
            "--json",
        ]
    )
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert REQUIRED <= set(d) and d["batch_size"] == 8 and d["trainable_params"] > 0


def test_cli_bench_table_and_usage_errors(tiny_checkpoint, small_matmul, capsys):
    assert (
        main(
            [
                "bench",
                "--model",
                str(tiny_checkpoint),
                "--data",
                "synthetic",
                "--steps",
                "1",
                "--warmup",
                "0",
                "--classify-runs",
                "2",
                "--length-grouping",
                "0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "examples/s" in out and "peak RSS" in out and "classify" in out
    assert main(["bench", "--model", str(tiny_checkpoint), "--steps", "0"]) == 2
    assert "steps must be" in capsys.readouterr().err


def test_comparison_driver_runs_a_worker_process(tiny_checkpoint):
    """One worker end to end through its pipe protocol (the two sides are tested in process below)."""
    from workbench.cli import comparison_driver

    driver = comparison_driver()  # what `workbench bench --compare` loads; needs transformers + peft
    cfg = tiny_bench(tiny_checkpoint, steps=2, warmup=0, classify_runs=2)
    result = driver.compare(cfg, variants=["ours"], say=lambda message: None)
    ours = result["variants"]["ours"]
    assert ours["steps"] == 2 and ours["classify_runs"] == 2 and ours["peak_rss_mb"] > 0
    assert 0 <= ours["padding_fraction"] < 0.2 and ours["ceiling_fraction"] > 0
    assert "LoRA Workbench" in driver.format_comparison(result)


def test_reference_trains_on_the_same_batches_as_the_engine(tiny_checkpoint):
    """The transformers + PEFT side, in process: same batches, LoRA where ours has it, merge works."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from workbench.cli import comparison_driver

    driver = comparison_driver()
    cfg = tiny_bench(tiny_checkpoint)
    ours = driver.OursWorker(driver.VARIANTS["ours-random"], cfg)
    hf = driver.HFWorker(driver.VARIANTS["hf-dynamic"], cfg, pad_to=120)
    padded = driver.HFWorker(driver.VARIANTS["hf-pad120"], cfg, pad_to=200)
    for _ in range(2):
        a, b, c = ours.train(), hf.train(), padded.train()
        assert a["padded_tokens"] == b["padded_tokens"] and a["tokens"] == b["tokens"] == c["tokens"]
        assert c["padded_tokens"] == 8 * 200
    trainable = {n for n, p in hf.model.named_parameters() if p.requires_grad}
    assert sum(".lora_A." in n for n in trainable) == 4 * ours.model.config.n_layer  # 4 targets per block
    assert any("score" in n for n in trainable)
    hf.prepare_classify()
    assert sum(hf.classify()) == pytest.approx(1.0)


def test_benchmark_batches_are_trainings_own_epoch_after_epoch():
    """One batch order: the benchmark takes training.epoch_batches, epoch 0 then epoch 1."""
    from workbench.core.training import epoch_batches

    data = workload.synthetic_data(seed=3, max_length=1024, source="synthetic", n_train=40, n_eval=4)
    cfg = TrainConfig(batch_size=8, length_grouping=2, seed=3)
    expected = epoch_batches(data.train, cfg, 0) + epoch_batches(data.train, cfg, 1)
    got = list(itertools.islice(workload.training_batches(data.train, cfg), len(expected)))
    assert [b.input_ids.tolist() for b in got] == [b.input_ids.tolist() for b in expected]
    assert epoch_batches(data.train, cfg, 0)[0].input_ids.tolist() != expected[5].input_ids.tolist()  # reshuffled
