"""What the benchmark trains and classifies on: the data's token lengths and the model.

Lengths are those of the balanced SMS training split (the book's chapter 6 data: 1045 messages,
mean 30 GPT-2 tokens) when the collection and a GPT-2 tokenizer are at hand, else a synthetic
distribution shaped like it; ``BenchData.source`` says which. Only the model's weights may be
random (``random_init``): the time a step takes does not depend on the values in the matrices.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core import data as datamod
from ..core import hub
from ..core.config import MODEL_REPOS, DataConfig, ModelConfig, TrainConfig
from ..core.data import EncodedSplit
from ..core.errors import ConfigError, WorkbenchError
from ..core.lora import apply_lora, build_lora_model
from ..core.model import GPT2Classifier
from ..core.tokenizer import EOT_ID, load_tokenizer
from ..core.training import epoch_batches
from .config import SYNTHETIC, BenchConfig

LABEL_NAMES = ("ham", "spam")
CLASSIFY_TOKENS = 25  # the single message timed for classify-as-you-type


@dataclass
class BenchData:
    """Token ids to train and classify on, and where they came from."""

    train: EncodedSplit
    eval: EncodedSplit
    message: str | None  # the ~25-token message classified alone (None: synthetic ids)
    message_ids: list[int]
    source: str
    tokenizer: Any | None


def load_bench_data(cfg: BenchConfig, checkpoint: Path | None, max_length: int) -> BenchData:
    """The training split's real token ids when the file and a tokenizer are at hand, else synthetic."""
    if cfg.data == SYNTHETIC:
        return synthetic_data(cfg.seed, max_length, "synthetic lengths shaped like the SMS split")
    path = _data_file(cfg.data)
    if path is None:
        return synthetic_data(cfg.seed, max_length, "synthetic lengths (SMS collection not downloaded)")
    tokenizer = _find_tokenizer(cfg.tokenizer, checkpoint)
    if tokenizer is None:
        return synthetic_data(cfg.seed, max_length, "synthetic lengths (no GPT-2 tokenizer found)")
    if path.name == datamod.SMS_SPAM_FILE:
        table = datamod.read_sms_spam(path)  # keeps the book's repeats, as training does
        data_cfg = DataConfig(source=datamod.SMS_SPAM)
    else:
        table = datamod.read_table(path)
        data_cfg = DataConfig(source=str(path))
    splits = datamod.make_splits(table, data_cfg, seed=cfg.seed)
    train_ids, _ = datamod.encode_texts(splits.train.texts, tokenizer, max_length)
    eval_texts = splits.val.texts + splits.test.texts
    eval_ids, _ = datamod.encode_texts(eval_texts, tokenizer, max_length)
    # The message closest to 25 tokens stands for one typed into the classify box.
    index = min(range(len(eval_ids)), key=lambda i: (abs(len(eval_ids[i]) - CLASSIFY_TOKENS), i))
    name = "SMS Spam Collection" if table.source == datamod.SMS_SPAM else path.name
    return BenchData(
        train=EncodedSplit(train_ids, list(splits.train.labels), list(splits.train.texts)),
        eval=EncodedSplit(eval_ids, list(splits.val.labels + splits.test.labels), eval_texts),
        message=eval_texts[index],
        message_ids=eval_ids[index],
        source=f"{name}, balanced training split (real token lengths)",
        tokenizer=tokenizer,
    )


def _data_file(data: str) -> Path | None:
    if data != datamod.SMS_SPAM:
        return Path(data)
    cached = datamod.sms_spam_path()  # where `workbench download` puts it
    return cached if cached.is_file() else None


def _find_tokenizer(requested: str | None, checkpoint: Path | None):
    if requested:
        return load_tokenizer(requested)
    try:
        return load_tokenizer(checkpoint)
    except WorkbenchError:
        return None


def synthetic_lengths(n: int, seed: int, max_length: int = 120) -> list[int]:
    """Token counts shaped like the balanced SMS training split (mean ~30, max ≤ 120).

    Half "ham": short and skewed (median 14, mean 19 tokens, so log-normal); half "spam": longer
    and bell-shaped (mean 42, sd 11). Fitted to the real split's GPT-2 token counts.
    """
    rng = random.Random(seed)
    cap = min(120, max_length)
    lengths = []
    for i in range(n):
        x = rng.lognormvariate(math.log(14), 0.78) if i % 2 == 0 else rng.gauss(41.6, 11.0)
        lengths.append(max(1, min(cap, round(x))))
    return lengths


def synthetic_data(seed: int, max_length: int, source: str, n_train: int = 1045, n_eval: int = 449) -> BenchData:
    rng = random.Random(seed + 1)
    lengths = synthetic_lengths(n_train + n_eval, seed, max_length)

    def ids(length: int) -> list[int]:
        return [rng.randrange(EOT_ID) for _ in range(length)]  # never the pad id

    train = [ids(k) for k in lengths[:n_train]]
    held_out = [ids(k) for k in lengths[n_train:]]
    labels = [i % 2 for i in range(n_train + n_eval)]
    return BenchData(
        train=EncodedSplit(train, labels[:n_train], []),
        eval=EncodedSplit(held_out, labels[n_train:], []),
        message=None,
        message_ids=ids(min(CLASSIFY_TOKENS, max_length)),
        source=source,
        tokenizer=None,
    )


def training_batches(
    train: EncodedSplit, cfg: TrainConfig, device: torch.device | None = None, context: int | None = None
) -> Iterator[datamod.Batch]:
    """Training's own batches (``training.epoch_batches``: shuffled per epoch, grouped by length,
    widths rounded as ``device`` wants), epoch after epoch, endlessly."""
    for epoch in itertools.count():
        yield from epoch_batches(train, cfg, epoch, device, context)


def padding_fraction(batches: list[datamod.Batch]) -> float:
    """Pad tokens / all tokens: the share of the work spent on nothing."""
    real = sum(int(b.lengths.sum()) for b in batches)
    total = sum(b.input_ids.numel() for b in batches)
    return 1.0 - real / total if total else 0.0


def bench_checkpoint(cfg: BenchConfig) -> Path | None:
    """The checkpoint folder to load, or None for random weights (only with ``random_init``)."""
    if os.path.isdir(cfg.model):
        return Path(cfg.model)
    if cfg.model in MODEL_REPOS and hub.is_cached(cfg.model):
        return hub.resolve_checkpoint(cfg.model)
    if cfg.random_init:
        return None
    raise ConfigError(
        f"{cfg.model} is not downloaded. Run `workbench download {cfg.model}`, or benchmark with "
        "random weights (--random-init): speed does not depend on the weights' values."
    )


def build_bench_model(cfg: BenchConfig, num_classes: int) -> tuple[GPT2Classifier, Path | None]:
    """The LoRA model, from its checkpoint when there is one, else (``random_init``) random."""
    checkpoint = bench_checkpoint(cfg)
    if checkpoint is not None:
        return build_lora_model(checkpoint, cfg.lora, num_classes, cfg.seed), checkpoint
    torch.manual_seed(cfg.seed)
    return apply_lora(GPT2Classifier(ModelConfig.for_size(cfg.model), num_classes), cfg.lora), None
