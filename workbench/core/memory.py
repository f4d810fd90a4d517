"""How much memory a training run will need, before it starts: plain arithmetic.

The window shows this next to Start and in the status bar so a person can pick a batch size and a
max length that fit, instead of learning it from an out-of-memory error; the words it shows are
made here (``memory_line``, ``memory_breakdown``) so any other front end says the same. It counts:

- **weights**: every parameter at 4 bytes, except that a bf16 run keeps the blocks' frozen
  matmul weights and biases in bf16 (2 bytes; ``model.store_frozen_weights``), so no per-step
  bf16 copies of them exist either;
- **activations**: what autograd keeps per block for backward, plus backward's working set,
  measured at about 17 values per token per unit of width (B·T·17·C per block; 4 bytes each in
  fp32, 2 under bf16 autocast). For comparison, Korthikanti et al. 2022 ("Reducing Activation
  Recomputation in Large Transformer Models", §4.1) count 34·C bytes at 16 bits, i.e. 17·C values,
  plus an attention matrix that fused attention kernels (used here) never store. The model
  rebuilds the layer-norm and GELU outputs in backward rather than keeping them (see
  ``model.recompute_when_saved``). Only the blocks that need backward store activations (those
  from the lowest LoRA block up: the frozen blocks below run without autograd);
- **gradients** (4 bytes) and **AdamW's two moments** (8 bytes) for the trainable parameters.

Checked against the peak RSS of two training steps on the CPU (GPT-2 small, r=16 on every layer,
fp32; peak minus the loaded model, against the estimate less the weights; two runs each):
B=8 T=256 measured 1.32–1.33 GB vs 1.31 GB estimated; B=4 T=512 1.29–1.33 vs 1.31; B=8 T=64
0.37–0.38 vs 0.35; the top 4 blocks only, B=8 T=256, 0.50–0.55 vs 0.44. Within ~20%: enough to
tell "fits" from "will not fit", which is its job.
Not counted: the CUDA context (a few hundred MB outside PyTorch's allocator) and the allocator's
caching slack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from .config import LoRAConfig, ModelConfig, TrainConfig
from .device import pick_device, pick_precision
from .errors import ConfigError
from .lora import count_trainable

if TYPE_CHECKING:
    from .data import Table

WARN_FRACTION = 0.8  # above this share of the device's memory the estimate is shown as a warning
ACTIVATION_VALUES_PER_WIDTH = 17  # per token and block, measured (see the module docstring)
CHARS_PER_TOKEN = 3  # GPT-2 BPE averages ~3.6 characters per English token; 3 errs on the long side


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training step needs at its peak, by kind (see the module docstring)."""

    weights: int
    activations: int
    gradients: int
    optimizer: int
    batch_size: int
    seq_len: int  # tokens per row assumed for the longest batch
    blocks_with_backward: int
    precision: str

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.gradients + self.optimizer


def padded_length(max_length: int | None, n_positions: int, longest_text_chars: int | None = None) -> int:
    """Tokens per row of the longest batch: batches pad to their longest text, which is cut at
    ``max_length`` (None: the model's context). With the dataset read, its longest text bounds it."""
    limit = min(max_length or n_positions, n_positions)
    if longest_text_chars is not None:
        limit = min(limit, max(1, math.ceil(longest_text_chars / CHARS_PER_TOKEN)) + 1)
    return max(1, limit)


def longest_text_chars(table: Table, text_column: str | None) -> int | None:
    """Characters of the table's longest text, which bounds the row length (``padded_length``);
    None when it cannot: no such column, no rows, or only the first rows were read."""
    frame = table.frame
    if text_column is None or text_column not in frame.columns or not len(frame) or table.truncated_rows:
        return None
    return int(frame[text_column].astype(str).str.len().max())


def estimate_training_memory(
    model: ModelConfig, lora: LoRAConfig, num_classes: int, batch_size: int, seq_len: int, precision: str
) -> MemoryEstimate:
    """Peak bytes for training ``model`` with ``lora`` at this batch and length; ``precision`` is
    "fp32" or "bf16" (what the run will actually use, after "auto" is resolved)."""
    C, L = model.n_embd, model.n_layer
    trainable = count_trainable(model, lora, num_classes)
    blocks = len(lora.blocks(L))
    bytes_per_value = 2 if precision == "bf16" else 4
    activations = blocks * batch_size * seq_len * ACTIVATION_VALUES_PER_WIDTH * C * bytes_per_value
    # The blocks' linear layers (12·C² weights, 9·C biases each), stored in bf16 for a bf16 run.
    linears = L * (model.block_matmul_weights + 9 * C)
    weights = (model.n_params + trainable) * 4 - (linears * 2 if precision == "bf16" else 0)
    return MemoryEstimate(
        weights=weights,
        activations=activations,
        gradients=trainable * 4,
        optimizer=trainable * 8,
        batch_size=batch_size,
        seq_len=seq_len,
        blocks_with_backward=blocks,
        precision=precision,
    )


def estimate_run_memory(
    cfg: TrainConfig, model: ModelConfig, num_classes: int, longest_text_chars: int | None = None
) -> MemoryEstimate:
    """The estimate for ``cfg`` as it would run: "auto" precision resolved on its device (fp32 when
    the device is not there: the run will not start anyway), rows padded to the dataset's longest
    text when it has been read, else to the max length."""
    try:
        precision = pick_precision(cfg.precision, pick_device(cfg.device))
    except ConfigError:
        precision = "fp32"
    seq_len = padded_length(cfg.data.max_length, model.n_positions, longest_text_chars)
    return estimate_training_memory(model, cfg.lora, num_classes, cfg.batch_size, seq_len, precision)


def share_of(need: int, available: int | None) -> float | None:
    """``need`` as a fraction of ``available`` (None when the device's memory is unknown)."""
    if not available:
        return None
    return need / available


def is_tight(need: int, available: int | None) -> bool:
    share = share_of(need, available)
    return share is not None and share > WARN_FRACTION


@dataclass(frozen=True)
class DeviceMemory:
    """What a device offers a run: bytes (None when unknown) and how to say it."""

    available: int | None
    what: str  # "GPU memory", "free RAM", …


def device_memory(requested: str) -> DeviceMemory:
    """The memory of the device a run on ``requested`` ("auto", "cpu", "cuda:0", "mps") would use:
    a GPU's total memory (PyTorch may use nearly all of it), or the RAM free right now on the CPU.
    Unknown devices (a CUDA device that is not there) answer None rather than raising."""
    import psutil
    import torch

    try:
        device = pick_device(requested)
    except ConfigError:
        return DeviceMemory(None, "unknown")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DeviceMemory(_cuda_total_memory(index), "GPU memory")
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        if recommended is not None:
            return DeviceMemory(int(recommended()), "GPU memory (shared)")
    return DeviceMemory(int(psutil.virtual_memory().available), "free RAM")


@cache
def _cuda_total_memory(index: int) -> int:
    """A GPU's size never changes; asked once, not at every settings change."""
    import torch

    return int(torch.cuda.get_device_properties(index).total_memory)


def memory_line(estimate: MemoryEstimate, device: DeviceMemory) -> str:
    """One line: the need against what the device offers, with advice when it is tight."""
    need = human_bytes(estimate.total)
    if device.available:
        share = estimate.total / device.available
        percent = "<1%" if share < 0.01 else f"{share:.0%}"
        text = f"est. {need} of {human_bytes(device.available)} {device.what} ({percent})"
    else:
        text = f"est. {need} needed"
    if is_tight(estimate.total, device.available):
        text = f"⚠ {text}: lower the batch size or max length"
    return text


def memory_breakdown(estimate: MemoryEstimate, padded_to: str) -> str:
    """The estimate by kind, a few lines; ``padded_to`` says where the row length came from."""
    return (
        f"Estimated peak memory for training, batch {estimate.batch_size} × {estimate.seq_len} tokens "
        f"({padded_to}), {estimate.precision}:\n"
        f"  weights {human_bytes(estimate.weights)}\n"
        f"  activations ({estimate.blocks_with_backward} blocks with backward) "
        f"{human_bytes(estimate.activations)}\n"
        f"  gradients {human_bytes(estimate.gradients)}\n"
        f"  AdamW state {human_bytes(estimate.optimizer)}\n"
        f"A rough guide (Korthikanti et al. 2022 for activations); shown in red above "
        f"{WARN_FRACTION:.0%} of the device's memory."
    )


def human_bytes(n: float | None) -> str:
    """A size as a person reads it: "512 B", "12 KB", "1.3 GB" (binary units, as file managers)."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
