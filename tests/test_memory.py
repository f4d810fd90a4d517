"""The memory estimate (core/memory.py): plain arithmetic and the words shown for it, no Qt."""

from __future__ import annotations

import pandas as pd

from workbench.core.config import DataConfig, LoRAConfig, ModelConfig, TrainConfig
from workbench.core.data import Table
from workbench.core.lora import count_trainable
from workbench.core.memory import (
    DeviceMemory,
    estimate_run_memory,
    estimate_training_memory,
    human_bytes,
    is_tight,
    longest_text_chars,
    memory_breakdown,
    memory_line,
    padded_length,
)

SMALL = ModelConfig.for_size("gpt2")


def test_memory_estimate_arithmetic():
    lora = LoRAConfig(rank=16)
    trainable = count_trainable(SMALL, lora, 2)
    fp32 = estimate_training_memory(SMALL, lora, 2, batch_size=8, seq_len=256, precision="fp32")
    assert fp32.weights == (SMALL.n_params + trainable) * 4
    # 17 values per token and width in each block (measured), 4 bytes each in fp32.
    assert fp32.activations == 12 * 8 * 256 * 17 * 768 * 4
    assert (fp32.gradients, fp32.optimizer) == (trainable * 4, trainable * 8)
    assert fp32.total == fp32.weights + fp32.activations + fp32.gradients + fp32.optimizer
    assert 1.7e9 < fp32.total < 1.9e9  # ~1.8 GB: GPT-2 small, batch 8 of 256 tokens

    bf16 = estimate_training_memory(SMALL, lora, 2, batch_size=8, seq_len=256, precision="bf16")
    assert bf16.activations == fp32.activations // 2
    # The blocks' frozen linears (weights and biases) stored in bf16: 2 bytes saved per value.
    assert bf16.weights == fp32.weights - 12 * (12 * 768 * 768 + 9 * 768) * 2

    top = estimate_training_memory(SMALL, LoRAConfig(rank=16, top_blocks=3), 2, 8, 256, "fp32")
    assert top.blocks_with_backward == 3 and top.activations == fp32.activations // 4  # only blocks with backward

    double = estimate_training_memory(SMALL, lora, 2, batch_size=16, seq_len=256, precision="fp32")
    assert double.activations == 2 * fp32.activations  # linear in the batch

    assert padded_length(None, 1024) == 1024
    assert padded_length(128, 1024) == 128
    assert padded_length(5000, 1024) == 1024
    assert padded_length(None, 1024, longest_text_chars=300) == 101  # ~3 characters a token, +1
    assert is_tight(81, 100) and not is_tight(80, 100) and not is_tight(10, None)


def test_run_estimate_follows_the_config():
    """A config's precision, batch and max length reach the arithmetic; the dataset's longest text
    shortens the rows; a device that is not there counts as fp32 rather than failing."""
    cfg = TrainConfig(device="cpu", precision="fp32", batch_size=4)
    estimate = estimate_run_memory(cfg, SMALL, 2)
    assert estimate == estimate_training_memory(SMALL, cfg.lora, 2, 4, SMALL.n_positions, "fp32")
    assert estimate_run_memory(cfg, SMALL, 2, longest_text_chars=300).seq_len == 101
    capped = cfg.with_changes(data=DataConfig(max_length=64))
    assert estimate_run_memory(capped, SMALL, 2, longest_text_chars=3000).seq_len == 64
    assert estimate_run_memory(cfg.with_changes(precision="bf16"), SMALL, 2).precision == "bf16"
    assert estimate_run_memory(cfg.with_changes(device="tpu", precision="bf16"), SMALL, 2).precision == "fp32"
    more_classes = estimate_run_memory(cfg, SMALL, 5)
    assert more_classes.weights > estimate.weights  # a wider classification head


def test_longest_text_bounds_the_rows_only_when_the_whole_file_was_read():
    frame = pd.DataFrame({"text": ["short", "a much longer message", ""], "label": ["a", "b", "a"]})
    table = Table(frame, "x.csv", "utf-8", "text", "label")
    assert longest_text_chars(table, "text") == len("a much longer message")
    assert longest_text_chars(table, "label") == 1
    assert longest_text_chars(table, None) is None
    assert longest_text_chars(table, "missing") is None
    assert longest_text_chars(Table(frame.iloc[:0], "x.csv", "utf-8", "text", "label"), "text") is None
    sample = Table(frame, "x.csv", "utf-8", "text", "label", truncated_rows=True)
    assert longest_text_chars(sample, "text") is None  # a longer text may follow the rows read


def test_memory_line_says_need_against_the_device():
    estimate = estimate_training_memory(SMALL, LoRAConfig(), 2, 8, 256, "fp32")
    need = human_bytes(estimate.total)
    assert memory_line(estimate, DeviceMemory(None, "unknown")) == f"est. {need} needed"
    roomy = memory_line(estimate, DeviceMemory(estimate.total * 1000, "free RAM"))
    assert roomy == f"est. {need} of {human_bytes(estimate.total * 1000)} free RAM (<1%)"
    half = memory_line(estimate, DeviceMemory(estimate.total * 2, "GPU memory"))
    assert half.endswith("GPU memory (50%)") and "⚠" not in half
    tight = memory_line(estimate, DeviceMemory(estimate.total, "GPU memory"))
    assert tight.startswith("⚠ est. ") and tight.endswith("(100%): lower the batch size or max length")


def test_memory_breakdown_names_every_kind():
    fp32 = estimate_training_memory(SMALL, LoRAConfig(), 2, 8, 256, "fp32")
    text = memory_breakdown(fp32, "max length")
    assert "batch 8 × 256 tokens (max length), fp32" in text
    for kind in ("weights", "activations (12 blocks with backward)", "gradients", "AdamW state"):
        assert kind in text
    bf16 = estimate_training_memory(SMALL, LoRAConfig(), 2, 8, 256, "bf16")
    assert f"weights {human_bytes(bf16.weights)}" in memory_breakdown(bf16, "max length")


def test_human_bytes():
    assert human_bytes(None) == "?"
    assert human_bytes(512) == "512 B"
    assert human_bytes(12 * 1024) == "12 KB"
    assert human_bytes(1.5 * 2**20) == "1.5 MB"
    assert human_bytes(1.3 * 2**30) == "1.3 GB"
    assert human_bytes(3 * 2**40) == "3072.0 GB"  # the largest unit stays GB
