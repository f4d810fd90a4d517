"""Low-rank adaptation (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

A frozen linear layer W gets a trainable update scaled by alpha / r:

    y = x Wᵀ + b + (alpha / r) · dropout(x) Aᵀ Bᵀ      A: (r, in), B: (out, r)

A starts Kaiming-uniform and B at zero (section 4.1), so a freshly wrapped model computes exactly
what the base model computes. A and B are stored like PEFT's ``lora_A.weight`` / ``lora_B.weight``
so adapters convert to PEFT without reshaping.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import LORA_TARGETS, LoRAConfig, ModelConfig
from .model import GPT2Classifier


class LoRALinear(nn.Module):
    """An ``nn.Linear`` plus a low-rank update; ``merge()`` folds the update into the weight."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be ≥ 1, got {rank}")
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank  # computed once; the book's alpha/r
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, rank, device=base.weight.device))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and PEFT do
        nn.init.zeros_(self.lora_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        # Cast to the activation dtype so bf16 autocast keeps one precision throughout.
        a, b = self.lora_A.to(x.dtype), self.lora_B.to(x.dtype)
        # Scale the rank-r intermediate rather than the full-width update, and let the second
        # matmul add into the base output (addmm): two fewer passes over a tokens x out tensor,
        # forward and backward (about 4% of a GPT-2 small step on a CPU).
        low = F.linear(self.dropout(x), a) * self.scaling  # (..., r)
        return torch.addmm(y.flatten(0, -2), low.flatten(0, -2), b.t()).view(y.shape)

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) · B A, shaped like the base weight; the one formula merge and unmerge share."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into W for inference (one matmul per layer instead of three)."""
        if self.merged:
            return
        delta = self.delta_weight()
        if not torch.isfinite(delta).all():
            raise ValueError("LoRA update holds NaN or inf; refusing to merge it into the weights")
        self.base.weight += delta.to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}, merged={self.merged}"


def lora_module_paths(model: GPT2Classifier, lora: LoRAConfig) -> list[str]:
    """Module paths (``transformer.h.11.attn.c_attn`` …) that ``apply_lora`` wraps."""
    return [
        f"transformer.h.{i}.{LORA_TARGETS[target]}"
        for i in lora.blocks(model.config.n_layer)
        for target in lora.targets
    ]


def apply_lora(model: GPT2Classifier, lora: LoRAConfig) -> GPT2Classifier:
    """Freeze the base, wrap the chosen layers with LoRA, keep the head trainable.

    Seed torch before calling: the A matrices are random, and a run should be reproducible.
    """
    lora.check(model.config.n_layer, model.config.n_embd)
    for p in model.parameters():
        p.requires_grad_(False)
    for path in lora_module_paths(model, lora):
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        base = getattr(parent, child)
        if isinstance(base, LoRALinear):
            raise ValueError(f"{path} already has a LoRA adapter")
        setattr(parent, child, LoRALinear(base, lora.rank, lora.alpha, lora.dropout))
    model.score.weight.requires_grad_(True)
    model.first_trainable_block = min(lora.blocks(model.config.n_layer))
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changed: LoRA A/B and the head; this is what an adapter file holds."""
    return {name: p.detach() for name, p in model.named_parameters() if ".lora_" in name or name.startswith("score.")}


def adapter_shapes(config: ModelConfig, lora: LoRAConfig, num_classes: int) -> dict[str, tuple[int, int]]:
    """Name -> shape of every tensor an adapter holds for these settings (A: (r, in), B: (out, r),
    head: (classes, width)), without building a model."""
    d, r = config.n_embd, lora.rank
    in_out = {"qkv": (d, 3 * d), "attn_out": (d, d), "mlp_up": (d, 4 * d), "mlp_down": (4 * d, d)}
    shapes = {}
    for block in lora.blocks(config.n_layer):
        for target in lora.targets:
            fan_in, fan_out = in_out[target]
            module = f"transformer.h.{block}.{LORA_TARGETS[target]}"
            shapes[f"{module}.lora_A"] = (r, fan_in)
            shapes[f"{module}.lora_B"] = (fan_out, r)
    shapes["score.weight"] = (num_classes, d)
    return shapes


def count_trainable(config: ModelConfig, lora: LoRAConfig, num_classes: int) -> int:
    """Trainable parameters (LoRA + head) for these settings, without building a model."""
    return sum(a * b for a, b in adapter_shapes(config, lora, num_classes).values())


def build_lora_model(
    checkpoint: Path, lora: LoRAConfig, num_classes: int, seed: int, stop: threading.Event | None = None
) -> GPT2Classifier:
    """Pretrained GPT-2 from ``checkpoint`` with a fresh head and fresh adapters.

    Seeded first so the head and the A matrices (the only random parts) are the same every run.
    """
    torch.manual_seed(seed)
    model = GPT2Classifier.from_checkpoint(checkpoint, num_classes, stop)
    return apply_lora(model, lora)
