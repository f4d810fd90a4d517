"""Base model + adapter -> labels and probabilities, for one text or a whole file.

The adapter is merged into the weights (LoRA's "no inference latency", Hu et al. 2021 section 4.1)
and the model runs under ``inference_mode``, so classifying costs what the plain GPT-2 costs.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import hub
from .adapters import AdapterInfo, check_compatible, load_adapter_weights, read_adapter
from .config import LORA_TARGETS
from .device import autocast, pick_device, pick_precision
from .errors import ConfigError
from .evaluate import predict_probabilities, probabilities_from_logits
from .fileio import check_outputs
from .int8 import Int8Linear, can_run_int8, int8_verdict
from .lora import LoRALinear, apply_lora, merge_lora
from .model import GPT2Classifier, load_model_config, store_frozen_weights
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

    def __init__(
        self,
        model: GPT2Classifier,
        tokenizer,
        info: AdapterInfo,
        device: torch.device,
        precision: str,
        sources: dict[str, Path] | None = None,
    ):
        self.model = model.eval()
        self.sources = sources or {}  # the files it was loaded from: no output may replace them
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
        quantize: str = "auto",
        progress=None,
        stop: threading.Event | None = None,
    ) -> Classifier:
        """Load ``adapter`` onto its base model (or onto ``model``, a size name or folder).

        ``quantize``: "int8" runs the blocks' attention-output and MLP layers in int8
        (``Int8Linear``; CPU only), "off" never, "auto" where it measured clearly faster and the
        precision was left to choose (``use_int8``). The adapter file is not changed: it stays fp32.
        """
        check_quantize(quantize, pick_device(device))
        tensors, info = read_adapter(adapter)
        base = model or info.base_model
        checkpoint = hub.resolve_checkpoint(base, progress=progress, stop=stop)
        check_compatible(info, load_model_config(checkpoint), base)
        gpt = apply_lora(GPT2Classifier.from_checkpoint(checkpoint, len(info.label_names), stop), info.lora)
        load_adapter_weights(gpt, tensors, info)
        merge_lora(gpt)
        torch_device = pick_device(device)
        chosen = pick_precision(precision, torch_device, info.model_config.n_embd)
        gpt.to(torch_device)
        int8 = use_int8(quantize, precision, chosen, torch_device, info.model_config.n_embd)
        prepare_for_inference(gpt, torch_device, chosen, int8)
        sources = {"the adapter": Path(adapter), **hub.checkpoint_files(str(checkpoint))}
        return cls(gpt, load_tokenizer(checkpoint), info, torch_device, chosen, sources)

    @property
    def int8(self) -> bool:
        """Whether the blocks' attention-output and MLP layers run in int8 (``Int8Linear``)."""
        return any(isinstance(m, Int8Linear) for m in self.model.modules())

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
        return self._prediction(probabilities_from_logits(logits[None].float().cpu() / (self.temperature or 1.0))[0])

    def _prediction(self, row: torch.Tensor) -> Prediction:
        names = self.info.label_names
        label = names[int(decide(row[None], self.threshold)[0])]
        return Prediction(label, {n: float(p) for n, p in zip(names, row.tolist())})


QUANTIZE_CHOICES = ("auto", "int8", "off")


def check_quantize(quantize: str, device: torch.device) -> None:
    """A one-line mistake for a ``quantize`` that cannot be, before anything loads."""
    if quantize not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not {quantize!r}")
    if quantize == "int8" and device.type != "cpu":
        raise ConfigError(f"int8 classification runs on the CPU only, not on {device.type}; leave out --int8")
    if quantize == "int8" and not can_run_int8():
        raise ConfigError("this PyTorch has no int8 matmul for the CPU (torch._int_mm); leave out --int8")


def use_int8(quantize: str, requested: str, precision: str, device: torch.device, width: int) -> bool:
    """Whether to classify with int8 layers: as asked, or for "auto" only where nobody pinned a
    precision, ``--precision auto`` chose fp32 on a CPU, and int8 measured clearly faster there
    (``int8.int8_verdict``, against the packed fp32 layers it would replace).

    A pinned "fp32" means fp32 arithmetic, so it is never quantized behind one's back; where bf16
    won, int8 is left out because on the 2-core AMX build machine (GPT-2 small, one thread) int8
    was no faster than bf16 with packed weights for one message, and slower in batches.
    """
    check_quantize(quantize, device)
    if quantize != "auto":
        return quantize == "int8"
    if device.type != "cpu" or requested != "auto" or precision != "fp32" or not can_run_int8():
        return False
    return int8_verdict(width, lambda linear: packed_or_plain(linear, precision)).pays


def prepare_for_inference(model: GPT2Classifier, device: torch.device, precision: str, int8: bool) -> None:
    """Put the merged model's block weights in the form classification runs fastest in: int8
    (but qkv), then the rest in ``precision`` (``store_frozen_weights``) and, on an x86 CPU,
    packed for oneDNN. After this the model can only classify."""
    if int8:
        quantize_int8(model)  # the qkv projection stays, and is packed below
    store_frozen_weights(model, precision)  # after merging: the merged weights rounded once
    pack_weights_for_cpu(model, device, precision)


INT8_SPARED = ("qkv",)  # LORA_TARGETS keys of the layers quantize_int8 leaves in float


def quantize_int8(model: GPT2Classifier) -> None:
    """Replace the blocks' merged linear layers with ``Int8Linear``, all but the query/key/value
    projection.

    Attention's softmax magnifies errors in queries and keys: on tiny GPT-2s trained on the SMS
    data (300 test messages), int8 qkv alone moved probabilities by up to 0.032 and flipped one
    label, each of the other three layers by at most 0.009; without qkv all three together moved
    them by 0.007-0.012 and flipped none. qkv is a quarter of the blocks' weights.
    """
    for owner, name, layer in int8_layers(model):
        setattr(owner, name, layer)


def int8_layers(model: GPT2Classifier) -> list[tuple[torch.nn.Module, str, Int8Linear]]:
    """(owner, attribute, int8 layer) for each linear layer ``quantize_int8`` replaces, without
    replacing it yet (``workbench bench`` times the model both ways)."""
    quantized = tuple(target for target in LORA_TARGETS if target not in INT8_SPARED)
    return [
        (owner, name, Int8Linear(linear))
        for owner, name, linear in _merged_block_linears(model, quantized)
        if isinstance(linear, torch.nn.Linear)
    ]


def pack_weights_for_cpu(model: GPT2Classifier, device: torch.device, precision: str) -> None:
    """Store the blocks' merged weights in oneDNN's layout, once, for inference on an x86 CPU.

    A plain CPU matmul re-packs the weight matrix on every call; for the few rows of one short
    message that is a large part of the work. On the build machine (fp32): a 25-token message
    1.4-1.6x faster, a keystroke 1.2x, batches of 32 1.3x; outputs equal within 1e-5. In bf16
    (weights already bf16, ``store_frozen_weights``; oneDNN with bf16 support) on a 2-core AMX
    CPU: a message 1.27x, a keystroke 1.56x, batches 1.13x; outputs equal. After this the model
    can only classify: packed weights take no gradients and LoRA can no longer be unmerged.
    Nothing changes elsewhere (GPUs, other CPUs, PyTorch without oneDNN): measured on x86 only.
    """
    if device.type != "cpu" or not can_pack_weights(precision):
        return
    for owner, name, linear in _merged_block_linears(model):
        if isinstance(linear, torch.nn.Linear):
            try:
                packed = PackedLinear(linear)
            except RuntimeError:  # an oneDNN build that cannot: the plain layers work as they are
                return
            setattr(owner, name, packed)


def packed_or_plain(linear: torch.nn.Linear, precision: str) -> torch.nn.Module:
    """The layer as fp32/bf16 classification runs it on this machine: packed where it can be."""
    if not can_pack_weights(precision):
        return linear
    try:
        return PackedLinear(linear)
    except RuntimeError:
        return linear


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
        self.dtype = linear.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Autocast does not reach this operator: the input is brought to the weights' dtype here.
        return torch.ops.mkldnn._linear_pointwise(x.to(self.dtype), self.weight, self.bias, "none", [], "")


def can_pack_weights(precision: str = "fp32") -> bool:
    """An x86 CPU and a PyTorch with oneDNN and its linear-packing operators (for bf16, oneDNN
    with bf16 support on this CPU)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    ops = hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    if not (x86 and torch.backends.mkldnn.is_available() and ops):
        return False
    if precision == "bf16":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return precision == "fp32"


def _merged_block_linears(model: GPT2Classifier, targets: tuple[str, ...] = tuple(LORA_TARGETS)):
    """(owner, attribute, layer) of each block's linear layers of these kinds (``LORA_TARGETS``
    keys), LoRA merged into them."""
    for owner, name in _block_linears(model, targets):
        linear = getattr(owner, name)
        if isinstance(linear, LoRALinear):
            if not linear.merged:
                raise ValueError("merge the LoRA adapters before packing or quantizing the weights")
            owner, name, linear = linear, "base", linear.base
        yield owner, name, linear


def _block_linears(model: GPT2Classifier, targets: tuple[str, ...] = tuple(LORA_TARGETS)):
    """(parent module, attribute) of each block's linear layers of these kinds (the ones LoRA can
    adapt, named by ``LORA_TARGETS`` keys)."""
    for i in range(model.config.n_layer):
        for target in targets:
            parent, _, name = f"transformer.h.{i}.{LORA_TARGETS[target]}".rpartition(".")
            yield model.get_submodule(parent), name


# Rows read, classified and written at a time: memory stays bounded whatever the file's size, and
# Stop and progress come at least once a chunk (the model itself checks Stop between batches).
CLASSIFY_CHUNK_ROWS = 10_000


def classify_rows(
    classifier: Classifier,
    source: str | Path,
    *,
    text_column: str | None = None,
    chunk_rows: int | None = None,
    progress=None,
    stop: threading.Event | None = None,
    on_column: Callable[[str], None] | None = None,
) -> Iterator:
    """The rows of a CSV/TSV, chunk by chunk (pandas DataFrames), each with ``predicted_label``,
    ``probability`` and one ``p_<label>`` column per class added. The file is never held whole:
    a first pass (progress in bytes) learns its layout, the second classifies (progress in rows)."""
    from .data import stream_table
    from .errors import DataError

    stream = stream_table(source, progress=progress, stop=stop)
    column = text_column or stream.text_column or stream.columns[0]
    if column not in stream.columns:
        available = ", ".join(map(str, stream.columns))
        raise DataError(f"{Path(source).name} has no column {column!r}; its columns are: {available}")
    if on_column:
        on_column(column)  # which column was read, for a person to check
    done = 0
    for chunk in stream.chunks(chunk_rows=chunk_rows or CLASSIFY_CHUNK_ROWS, stop=stop):
        report = _offset_progress(progress, done, stream.rows, "Classifying")
        predictions = classifier.predict(chunk[column].astype(str).tolist(), stop=stop, progress=report)
        chunk["predicted_label"] = [p.label for p in predictions]
        chunk["probability"] = [round(p.probability, 6) for p in predictions]
        for name in classifier.info.label_names:
            chunk[f"p_{name}"] = [round(p.probabilities[name], 6) for p in predictions]
        done += len(chunk)
        yield chunk


def _offset_progress(progress, before: int, total: int, message: str):
    """A chunk's progress reported as the whole file's: rows done before it, plus its own."""
    if progress is None:
        return None
    return lambda done, _total, _message: progress(before + done, total, message)


def classify_file(
    classifier: Classifier,
    source: str | Path,
    target: str | Path,
    *,
    text_column: str | None = None,
    chunk_rows: int | None = None,
    progress=None,
    stop: threading.Event | None = None,
    on_column: Callable[[str], None] | None = None,
) -> int:
    """``classify_rows`` written to ``target`` (CSV, or TSV for .tsv) as they come, into a temp
    file that replaces ``target`` only at the end: a Stop, Ctrl+C, an error or a full disk leave
    whatever was at ``target`` as it was. Returns the rows written."""
    from .data import table_bytes
    from .errors import DataError, OutputError
    from .fileio import open_atomically

    target = Path(target)
    check_outputs({"The output file": target}, {"the input file": Path(source), **classifier.sources})
    rows = 0
    try:
        with open_atomically(target) as out:
            for chunk in classify_rows(
                classifier,
                source,
                text_column=text_column,
                chunk_rows=chunk_rows,
                progress=progress,
                stop=stop,
                on_column=on_column,
            ):
                out.write(table_bytes(chunk, target, header=rows == 0))
                rows += len(chunk)
    except OutputError as error:
        raise DataError(str(error)) from error
    return rows
