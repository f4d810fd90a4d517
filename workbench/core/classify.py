"""Base model + adapter -> labels and probabilities, for one text or a whole file.

The adapter is merged into the weights (LoRA's "no inference latency", Hu et al. 2021 section 4.1)
and the model runs under ``inference_mode``, so classifying costs what the plain GPT-2 costs.
"""

from __future__ import annotations

import platform
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from . import hub
from .adapters import AdapterInfo, check_compatible, load_adapter_weights, read_adapter
from .config import LORA_TARGETS
from .data import pad_batch
from .device import autocast, describe, pick_device, pick_precision
from .errors import Cancelled
from .lora import LoRALinear, apply_lora, merge_lora
from .model import GPT2Classifier, load_model_config
from .thresholds import apply_temperature, decide
from .tokenizer import EOT_ID, load_tokenizer


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]  # every class, in the adapter's label order

    @property
    def probability(self) -> float:
        return self.probabilities[self.label]


class Classifier:
    """A ready-to-use classifier; build it once (seconds), then ``predict`` is fast."""

    def __init__(self, model: GPT2Classifier, tokenizer, info: AdapterInfo, device: torch.device, precision: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.info = info
        self.device = device
        self.precision = precision
        self._typed: tuple[list[int], list] | None = None  # last typed text's tokens + keys/values
        # The decision, from the adapter unless changed here (thresholds.py): a two-class cut on
        # the second label's probability (None: argmax) and a temperature for the logits.
        self.threshold: float | None = info.threshold
        self.temperature: float | None = info.temperature

    @classmethod
    def from_adapter(
        cls,
        adapter: str | Path,
        *,
        model: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        progress=None,
        stop: threading.Event | None = None,
    ) -> Classifier:
        """Load ``adapter`` onto its base model (or onto ``model``, a size name or folder)."""
        tensors, info = read_adapter(adapter)
        base = model or info.base_model
        checkpoint = hub.resolve_checkpoint(base, progress=progress, stop=stop)
        check_compatible(info, load_model_config(checkpoint), base)
        gpt = apply_lora(GPT2Classifier.from_checkpoint(checkpoint, len(info.label_names)), info.lora)
        load_adapter_weights(gpt, tensors, info)
        merge_lora(gpt)
        torch_device = pick_device(device)
        chosen = pick_precision(precision, torch_device)
        gpt.to(torch_device)
        pack_weights_for_cpu(gpt, torch_device, chosen)
        return cls(gpt, load_tokenizer(checkpoint), info, torch_device, chosen)

    @property
    def device_name(self) -> str:
        return describe(self.device)

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode_ordinary(text)[: self.info.max_length]
        return ids or [EOT_ID]

    def probabilities(self, texts: list[str], batch_size: int = 32, stop=None, progress=None) -> torch.Tensor:
        encoded = [self.encode(t) for t in texts]
        probs = predict_probabilities(
            self.model, encoded, batch_size, self.device, self.precision, stop=stop, progress=progress
        )
        return apply_temperature(probs, self.temperature)

    def predict_typing(self, text: str) -> Prediction:
        """Classify a text that changes a little between calls, as in a box classifying while the
        user types: the keys and values of the tokens it shares with the previous call are reused,
        so a keystroke costs a token or two of work instead of the whole message."""
        ids = self.encode(text)
        previous, cache = self._typed or ([], None)
        shared = 0
        for a, b in zip(previous, ids):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(ids) - 1)  # at least one new token to read the logits from
        cache = [(k[:, :, :shared], v[:, :, :shared]) for k, v in cache] if shared and cache else None
        new = torch.tensor([ids[shared:]], device=self.device)
        with torch.inference_mode(), autocast(self.device, self.precision):
            logits, cache = self.model.forward_cached(new, cache)
        self._typed = (ids, cache)
        return self.prediction_from_logits(logits[0])

    def predict(self, texts: list[str], batch_size: int = 32, stop=None, progress=None) -> list[Prediction]:
        probs = self.probabilities(texts, batch_size, stop=stop, progress=progress)
        return [self._prediction(row) for row in probs]

    def prediction_from_logits(self, logits: torch.Tensor) -> Prediction:
        """The decision for one text's logits (C,): the temperature, then the threshold."""
        return self._prediction(torch.softmax(logits.float().cpu() / (self.temperature or 1.0), dim=-1))

    def _prediction(self, row: torch.Tensor) -> Prediction:
        names = self.info.label_names
        label = names[int(decide(row[None], self.threshold)[0])]
        return Prediction(label, {n: float(p) for n, p in zip(names, row.tolist())})


def pack_weights_for_cpu(model: GPT2Classifier, device: torch.device, precision: str) -> None:
    """Store the blocks' merged weights in oneDNN's layout, once, for fp32 inference on an x86 CPU.

    A plain CPU matmul re-packs the weight matrix on every call; for the few rows of one short
    message that is a large part of the work. On the build machine: a 25-token message 1.4-1.6x
    faster, a keystroke 1.2x, batches of 32 1.3x; outputs equal within 1e-5. After this the model
    can only classify: packed weights take no gradients and LoRA can no longer be unmerged.
    Nothing changes elsewhere (GPUs, bf16, other CPUs, PyTorch without oneDNN): measured on x86
    only.
    """
    if device.type != "cpu" or precision != "fp32" or not can_pack_weights():
        return
    for owner, name in _block_linears(model):
        linear = getattr(owner, name)
        if isinstance(linear, LoRALinear):
            if not linear.merged:
                raise ValueError("merge the LoRA adapters before packing the weights")
            owner, name, linear = linear, "base", linear.base
        if isinstance(linear, torch.nn.Linear):
            try:
                packed = PackedLinear(linear)
            except RuntimeError:  # an oneDNN build that cannot: the plain layers work as they are
                return
            setattr(owner, name, packed)


class PackedLinear(torch.nn.Module):
    """An ``nn.Linear`` for inference with its weight reordered once into oneDNN's blocked format.

    These are the operators PyTorch's own compiler uses for frozen CPU weights
    (``torch.ops.mkldnn``); ``torch.utils.mkldnn.MkldnnLinear`` keeps a plain-format weight and is
    TorchScript, which PyTorch deprecates. Measured here for one forward pass of GPT-2 small's
    linears at 25 tokens: 63 ms plain, 53 ms with MkldnnLinear's format, 40 ms blocked.
    """

    ROWS_HINT = 32  # the row count oneDNN picks the blocking for: a short message

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), self.ROWS_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def can_pack_weights() -> bool:
    """An x86 CPU and a PyTorch with oneDNN and its linear-packing operators."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    ops = hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    return x86 and torch.backends.mkldnn.is_available() and ops


def _block_linears(model: GPT2Classifier):
    """(parent module, attribute) of each block's four linear layers, the ones LoRA can adapt."""
    for i in range(model.config.n_layer):
        for path in LORA_TARGETS.values():
            parent, _, name = f"transformer.h.{i}.{path}".rpartition(".")
            yield model.get_submodule(parent), name


@torch.inference_mode()
def predict_probabilities(
    model: GPT2Classifier,
    token_ids: list[list[int]],
    batch_size: int,
    device: torch.device,
    precision: str,
    stop: threading.Event | None = None,
    progress=None,
) -> torch.Tensor:
    """Class probabilities (N, C) in input order. Texts are batched by length, so padding costs
    almost nothing; ``stop`` is checked between batches."""
    model.eval()
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    probs = torch.empty(len(token_ids), model.num_classes)
    for start in range(0, len(order), batch_size):
        if stop is not None and stop.is_set():
            raise Cancelled("Classification stopped")
        rows = order[start : start + batch_size]
        batch = pad_batch([token_ids[i] for i in rows], [0] * len(rows), EOT_ID)
        with autocast(device, precision):
            logits = model(batch.input_ids.to(device), batch.lengths.to(device))
        probs[rows] = torch.softmax(logits.float(), dim=-1).cpu()
        if progress:
            progress(min(start + batch_size, len(order)), len(order), "Classifying")
    return probs


def classify_table(
    classifier: Classifier,
    source: str | Path,
    *,
    text_column: str | None = None,
    progress=None,
    stop: threading.Event | None = None,
):
    """Every row of a CSV/TSV with ``predicted_label``, ``probability`` and one ``p_<label>``
    column per class added (a pandas DataFrame)."""
    from .data import read_table
    from .errors import DataError

    table = read_table(source, progress=progress, stop=stop)
    column = text_column or table.text_column or table.frame.columns[0]
    if column not in table.frame.columns:
        available = ", ".join(map(str, table.frame.columns))
        raise DataError(f"{Path(source).name} has no column {column!r}; its columns are: {available}")
    predictions = classifier.predict(table.frame[column].astype(str).tolist(), stop=stop, progress=progress)
    out = table.frame.copy()
    out["predicted_label"] = [p.label for p in predictions]
    out["probability"] = [round(p.probability, 6) for p in predictions]
    for name in classifier.info.label_names:
        out[f"p_{name}"] = [round(p.probabilities[name], 6) for p in predictions]
    return out


def classify_file(
    classifier: Classifier,
    source: str | Path,
    target: str | Path,
    *,
    text_column: str | None = None,
    progress=None,
    stop: threading.Event | None = None,
) -> int:
    """``classify_table`` written to ``target`` (CSV, or TSV for .tsv); returns the rows written."""
    from .data import save_table

    out = classify_table(classifier, source, text_column=text_column, progress=progress, stop=stop)
    save_table(out, target)  # atomic: a full disk leaves an existing file as it was
    return len(out)
