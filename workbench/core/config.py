"""Settings, one dataclass per concern.

Defaults follow appendix E of "Build a Large Language Model (From Scratch)" (LoRA r=16, alpha=16
on every linear layer of GPT-2 small; AdamW lr 5e-5, weight decay 0.1; 5 epochs, batch 8;
evaluation every 50 steps on 5 batches; balanced SMS spam split 70/10/20).

Each ``validate()`` returns every problem it finds (empty list: fine) instead of stopping at the
first, so the window can mark all bad fields at once; ``check()`` raises them together.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import ConfigError
from .limits import (
    MAX_HEADS,
    MAX_LAYERS,
    MAX_POSITIONS,
    MAX_RANK,
    MAX_VOCABULARY,
    MAX_WIDTH,
    real_number_problem,
    shown,
    whole_number_problem,
)

# The four released GPT-2 sizes and their Hub repositories.
MODEL_REPOS: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
MODEL_LABELS: dict[str, str] = {
    "gpt2": "124M",
    "gpt2-medium": "355M",
    "gpt2-large": "774M",
    "gpt2-xl": "1558M",
}

# LoRA can wrap these linear layers of each block; the names are the user-facing ones, the values
# the module paths inside a block (Hugging Face GPT-2 names).
LORA_TARGETS: dict[str, str] = {
    "qkv": "attn.c_attn",
    "attn_out": "attn.c_proj",
    "mlp_up": "mlp.c_fc",
    "mlp_down": "mlp.c_proj",
}
ALL_TARGETS: tuple[str, ...] = tuple(LORA_TARGETS)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise ConfigError(f"Invalid {what}: " + "; ".join(problems))


@dataclass(frozen=True)
class ModelConfig:
    """GPT-2 architecture; field names are those of a Hugging Face ``config.json``."""

    vocab_size: int = 50257  # BPE vocabulary incl. <|endoftext|>
    n_positions: int = 1024  # context length
    n_embd: int = 768  # width of the residual stream
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; n_embd must divide evenly
    layer_norm_epsilon: float = 1e-5

    @classmethod
    def for_size(cls, name: str) -> ModelConfig:
        """The published architecture of a named GPT-2 size."""
        shapes = {
            "gpt2": (12, 12, 768),
            "gpt2-medium": (24, 16, 1024),
            "gpt2-large": (36, 20, 1280),
            "gpt2-xl": (48, 25, 1600),
        }
        if name not in shapes:
            raise ConfigError(f"Unknown GPT-2 size {name!r}; choose one of {', '.join(shapes)}")
        n_layer, n_head, n_embd = shapes[name]
        return cls(n_layer=n_layer, n_head=n_head, n_embd=n_embd)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Read a Hugging Face GPT-2 ``config.json`` (older files say n_ctx for n_positions)."""
        known = {f.name for f in fields(cls)}
        values = {k: d[k] for k in known if k in d}
        if "n_positions" not in values and "n_ctx" in d:
            values["n_positions"] = d["n_ctx"]
        missing = {"n_embd", "n_layer", "n_head"} - set(values)
        if missing:
            raise ConfigError(f"config.json lacks {', '.join(sorted(missing))}: not a GPT-2 config")
        config = cls(**values)
        config.check()
        return config

    def to_hf_dict(self) -> dict[str, Any]:
        """A minimal ``config.json`` that transformers reads as a GPT-2 config."""
        return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], **asdict(self)}

    def validate(self) -> list[str]:
        """Types and sizes too: these values come from files (config.json, adapter metadata) and
        size every allocation of the model, so they are bounded by limits.py before any is made."""
        bounds = {
            "vocab_size": MAX_VOCABULARY,
            "n_positions": MAX_POSITIONS,
            "n_embd": MAX_WIDTH,
            "n_layer": MAX_LAYERS,
            "n_head": MAX_HEADS,
        }
        problems = [
            p for name, high in bounds.items() if (p := whole_number_problem(name, getattr(self, name), 1, high))
        ]
        if not problems and self.n_embd % self.n_head:
            problems.append(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        epsilon = real_number_problem("layer_norm_epsilon", self.layer_norm_epsilon, 0.0, 0.1, low_open=True)
        return problems + ([epsilon] if epsilon else [])

    def check(self) -> None:
        _raise_if(self.validate(), "model config")

    @property
    def n_params(self) -> int:
        """Parameters of the transformer (embeddings tied to the LM head, so counted once)."""
        d, L = self.n_embd, self.n_layer
        per_block = 12 * d * d + 13 * d  # qkv, proj, fc, proj weights+biases, two layer norms
        return self.vocab_size * d + self.n_positions * d + L * per_block + 2 * d


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters, W + (alpha/r)·BA (Hu et al. 2021, "LoRA", section 4.1)."""

    rank: int = 16  # r: inner dimension of the adapter
    alpha: float = 16.0  # scaling numerator; the update is multiplied by alpha / rank
    dropout: float = 0.0  # dropout on the adapter's input; 0 makes it an identity
    targets: tuple[str, ...] = ALL_TARGETS  # which linear layers of each block get adapters
    top_blocks: int | None = None  # adapt only the last N blocks; None means every block

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def validate(self, n_layer: int | None = None, n_embd: int | None = None) -> list[str]:
        """Every problem; with the model's ``n_layer`` and ``n_embd``, also the bounds they set
        (a rank above the width adds parameters but no expressiveness: B A has rank ≤ width)."""
        problems = []
        if type(self.rank) is not int or self.rank <= 0:
            problems.append("rank must be a whole number ≥ 1")
        elif self.rank > min(MAX_RANK, n_embd or MAX_RANK):
            width = ", the model's width" if n_embd is not None and n_embd < MAX_RANK else ""
            problems.append(f"rank {self.rank:,} is above {min(MAX_RANK, n_embd or MAX_RANK)}{width}")
        alpha = real_number_problem("alpha", self.alpha, 0.0, math.inf, low_open=True)
        problems += [alpha] if alpha else []
        if real_number_problem("dropout", self.dropout, 0.0, 1.0) or self.dropout == 1:
            problems.append(f"dropout must be a number in [0, 1), got {shown(self.dropout)}")
        if isinstance(self.targets, str) or not isinstance(self.targets, (tuple, list)):
            problems.append("targets must be a list of layer names")
        elif not self.targets:
            problems.append("choose at least one target layer")
        else:
            unknown = [str(t)[:40] for t in self.targets if not isinstance(t, str) or t not in LORA_TARGETS]
            if unknown:
                problems.append(f"unknown target(s) {', '.join(unknown[:8])}; choose from {', '.join(ALL_TARGETS)}")
        if self.top_blocks is not None:
            if type(self.top_blocks) is not int or self.top_blocks <= 0:
                problems.append("top blocks must be a whole number ≥ 1 (or empty for all blocks)")
            elif self.top_blocks > (n_layer or MAX_LAYERS):
                problems.append(f"top blocks {self.top_blocks:,} exceeds the model's {n_layer or MAX_LAYERS} blocks")
        return problems

    def check(self, n_layer: int | None = None, n_embd: int | None = None) -> None:
        _raise_if(self.validate(n_layer, n_embd), "LoRA settings")

    def blocks(self, n_layer: int) -> list[int]:
        """Indices of the blocks that get adapters."""
        first = 0 if self.top_blocks is None else max(0, n_layer - self.top_blocks)
        return list(range(first, n_layer))


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, which columns, and how to split it."""

    source: str = "sms-spam"  # "sms-spam" (downloaded on first use) or a CSV/TSV path
    text_column: str | None = None  # None: detect (the column with the longest texts)
    label_column: str | None = None  # None: detect (a column with few distinct values)
    balance: bool = True  # undersample every class to the smallest one (the book's 747 + 747)
    # Exact repeats of a (text, label) row. None: drop them from your own files, keep them in the
    # SMS collection so its split reproduces the book's 1045/149/300 (403 of its rows repeat).
    drop_duplicates: bool | None = None
    train_fraction: float = 0.7
    val_fraction: float = 0.1  # the test set gets what is left
    max_length: int | None = None  # tokens per text; None: the model's context length
    max_rows: int | None = None  # read only a file's first N rows (a sample of a very large file)
    seed: int = 123  # shuffling, balancing and splitting

    def validate(self) -> list[str]:
        problems = []
        if not self.source:
            problems.append("choose a dataset")
        elif self.source != "sms-spam" and not os.path.exists(self.source):
            problems.append(f"dataset file {self.source} does not exist")
        if not 0 < self.train_fraction < 1:
            problems.append("train fraction must be between 0 and 1")
        if not 0 < self.val_fraction < 1:
            problems.append("validation fraction must be between 0 and 1")
        if self.train_fraction + self.val_fraction >= 1:
            problems.append("train + validation fractions must leave room for a test set")
        if self.max_rows is not None and self.max_rows < 1:
            problems.append("sample rows must be ≥ 1 (or empty for the whole file)")
        if self.max_length is not None and self.max_length < 2:
            problems.append("max length must be at least 2 tokens")
        return problems


@dataclass(frozen=True)
class TrainConfig:
    """One training run: which model, which data, which adapters, and the optimiser schedule."""

    model: str = "gpt2"  # a size name (gpt2 … gpt2-xl) or a folder with config.json + weights
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    epochs: int = 5
    batch_size: int = 8  # examples per optimiser step (before gradient accumulation)
    grad_accum: int = 1  # micro-batches per optimiser step; effective batch = batch_size * grad_accum
    lr: float = 5e-5  # AdamW learning rate
    weight_decay: float = 0.1  # AdamW decoupled weight decay
    eval_every: int = 50  # optimiser steps between quick evaluations (the book's eval_freq)
    eval_batches: int = 5  # batches per quick evaluation (the book's eval_iter)
    max_steps: int | None = None  # stop after this many optimiser steps (for quick checks)
    # Group examples of similar length: after shuffling, sort within chunks of this many batches
    # so a batch pads to almost nothing; 0 pads batches of random lengths. Order stays random.
    length_grouping: int = 50
    device: str = "auto"  # auto picks CUDA, then Apple MPS, then CPU
    precision: str = "auto"  # auto: bf16 autocast where the device runs it fast, else fp32
    seed: int = 123  # LoRA initialisation, dropout and batch order

    def validate(self) -> list[str]:
        problems = []
        if not self.model:
            problems.append("choose a model")
        elif self.model not in MODEL_REPOS and not os.path.isdir(self.model):
            problems.append(f"model {self.model!r} is neither a GPT-2 size ({', '.join(MODEL_REPOS)}) nor a folder")
        problems += self.data.validate()
        problems += self.lora.validate()
        for name in ("epochs", "batch_size", "grad_accum", "eval_every", "eval_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name.replace('_', ' ')} must be a whole number ≥ 1")
        if not self.lr > 0:
            problems.append("learning rate must be greater than 0")
        if self.weight_decay < 0:
            problems.append("weight decay must be ≥ 0")
        if self.length_grouping < 0:
            problems.append("length grouping must be ≥ 0")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max steps must be ≥ 1")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}")
        return problems

    def check(self) -> None:
        _raise_if(self.validate(), "settings")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are ignored so old run folders still load."""
        data = DataConfig(**_known(DataConfig, d.get("data", {})))
        lora_values = _known(LoRAConfig, d.get("lora", {}))
        if "targets" in lora_values:
            lora_values["targets"] = tuple(lora_values["targets"])
        top = _known(cls, d)
        top.pop("data", None)
        top.pop("lora", None)
        return cls(data=data, lora=LoRAConfig(**lora_values), **top)

    def with_changes(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
