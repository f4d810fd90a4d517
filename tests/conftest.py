"""Shared fixtures: tiny GPT-2 checkpoints in the real Hub format, offscreen Qt, real-data paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SMS_FILE = SHARED_DATA / "sms_spam_collection" / "SMSSpamCollection"
TOKENIZER_DIR = SHARED_DATA / "gpt2-tokenizer"


def gpt2_byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in token-id order (its bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    ordered = printable + [b for b in range(256) if b not in printable]
    return [chars[b] for b in ordered]


def write_tiny_checkpoint(
    folder: Path, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_positions: int = 256, seed: int = 0
) -> Path:
    """A random GPT-2 saved exactly like a Hub checkpoint (HF names, Conv1D (in, out) weights).

    Its tokenizer is byte-level BPE with no merges (ids 0-255), so tests need no downloaded vocabulary;
    the model keeps GPT-2's 50,257-token embedding so <|endoftext|> (50256) is a valid pad id.
    """
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": 50257,
        "n_positions": n_positions,
        "n_ctx": n_positions,
        "n_embd": n_embd,
        "n_layer": n_layer,
        "n_head": n_head,
        "layer_norm_epsilon": 1e-5,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
    }
    (folder / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    d = n_embd
    tensors = {
        "wte.weight": rand(50257, d),
        "wpe.weight": rand(n_positions, d),
        "ln_f.weight": 1 + rand(d, std=0.1),
        "ln_f.bias": rand(d),
    }
    for i in range(n_layer):
        p = f"h.{i}."
        tensors.update(
            {
                p + "ln_1.weight": 1 + rand(d, std=0.1),
                p + "ln_1.bias": rand(d),
                p + "attn.c_attn.weight": rand(d, 3 * d, std=0.1),
                p + "attn.c_attn.bias": rand(3 * d),
                p + "attn.c_proj.weight": rand(d, d),
                p + "attn.c_proj.bias": rand(d),
                p + "ln_2.weight": 1 + rand(d, std=0.1),
                p + "ln_2.bias": rand(d),
                p + "mlp.c_fc.weight": rand(d, 4 * d, std=0.1),
                p + "mlp.c_fc.bias": rand(4 * d),
                p + "mlp.c_proj.weight": rand(4 * d, d),
                p + "mlp.c_proj.bias": rand(d),
            }
        )
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    vocab = {ch: i for i, ch in enumerate(gpt2_byte_alphabet())}
    vocab["<|endoftext|>"] = 50256
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Keep every test's caches, runs and settings out of the real user folders."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not present at {path} (shared/data is optional)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny test models run fastest on one thread, and a 2-core CI box has no cores to spare."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def sms_tiny_adapter(tmp_path_factory) -> Path:
    """An adapter trained on the real SMS Spam Collection: a 2-layer, 64-wide random GPT-2 with the
    real GPT-2 BPE, LoRA r=8 and its head trained 5 epochs (about 85% test accuracy, some seconds).
    For tests of what a trained model's outputs mean (attributions, label errors); skips without
    the shared data."""
    import shutil

    from workbench.core import events
    from workbench.core.config import DataConfig, LoRAConfig, TrainConfig
    from workbench.core.training import train

    require_shared(SMS_FILE)
    require_shared(TOKENIZER_DIR / "encoder.json")
    folder = tmp_path_factory.mktemp("sms-tiny")
    checkpoint = write_tiny_checkpoint(folder / "gpt2-tiny-bpe", n_layer=2, n_embd=64, n_head=4)
    shutil.copy(TOKENIZER_DIR / "encoder.json", checkpoint / "vocab.json")
    shutil.copy(TOKENIZER_DIR / "vocab.bpe", checkpoint / "merges.txt")
    cfg = TrainConfig(
        model=str(checkpoint),
        data=DataConfig(source=str(SMS_FILE), max_length=64),
        lora=LoRAConfig(rank=8, alpha=16),
        epochs=5,
        batch_size=16,
        lr=2e-3,
        eval_every=10_000,
        device="cpu",
        precision="fp32",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_DATA_DIR", str(folder / "data"))
        mp.setenv("WORKBENCH_CACHE_DIR", str(folder / "cache"))
        finished = [e for e in train(cfg) if isinstance(e, (events.TrainingFinished, events.TrainingFailed))][-1]
    assert isinstance(finished, events.TrainingFinished), finished
    return Path(finished.adapter_path)
