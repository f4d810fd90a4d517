"""Adapter files: only the LoRA matrices and the head, in one ``.safetensors`` with JSON metadata.

A GPT-2 small adapter at r=16 on every layer is about 9 MB instead of the 500 MB model. The file
says which base it needs and how it was made, so loading can refuse a mismatch with a clear
message instead of producing nonsense. Pickles (``.pt``/``.pth``/``.bin``) are never opened: a
pickle runs code when loaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from .config import LoRAConfig, ModelConfig, rename_problems
from .data.recipe import DataRecipe
from .errors import AdapterError, WorkbenchError
from .fileio import check_outputs, is_pickle_name, open_regular_file, require_regular_file, write_atomically
from .limits import (
    MAX_METADATA_CHARS,
    MAX_NAME_CHARS,
    MAX_SHORT_TEXT_CHARS,
    label_names_problem,
    shown,
    text_problem,
    whole_number_problem,
)
from .lora import adapter_shapes, trainable_state_dict
from .model import GPT2Classifier
from .thresholds import threshold_problem
from .tokenizer import EOT_ID

FORMAT_VERSION = 1
METADATA_KEY = "lora_workbench"
ADAPTER_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(frozen=True)
class AdapterInfo:
    """Everything needed to rebuild the classifier, stored as the file's metadata."""

    base_model: str  # a GPT-2 size name or the folder it was trained from
    model_config: ModelConfig
    lora: LoRAConfig
    label_names: tuple[str, ...]
    max_length: int  # tokens per text used in training
    pad_token_id: int = EOT_ID
    metrics: dict = field(default_factory=dict)  # final test metrics (accuracy, …) when known
    # Classes the training data wrote several ways ("spam", "Spam", "spam "), merged into the
    # label name: name -> every spelling as written, so the file keeps the originals.
    label_spellings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    package_version: str = ""
    format_version: int = FORMAT_VERSION
    # How the training data was chosen and split; None in adapters saved before it was recorded
    # (and in imported PEFT adapters), which therefore cannot rebuild their held-out split.
    data: DataRecipe | None = None
    # The decision (thresholds.py): for two classes, the positive (second) label when its
    # probability reaches this; None: argmax. Older adapters have neither and load unchanged.
    threshold: float | None = None
    temperature: float | None = None  # logits are divided by this (fitted on validation); None: 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AdapterInfo:
        """The metadata as written, values kept as they are (lists become tuples, nothing is
        coerced: ``"abc"`` must not turn into three labels); ``_metadata_problems`` judges them.
        Raises ValueError (text too long, not JSON), RecursionError (nested too deeply), or
        KeyError/TypeError (a field missing or misplaced)."""
        if len(text) > MAX_METADATA_CHARS:
            raise ValueError(f"{len(text):,} characters, far more than an adapter's metadata")
        d = json.loads(text)
        if not isinstance(d, dict) or not isinstance(d["lora"], dict) or not isinstance(d["model_config"], dict):
            raise TypeError("the metadata is not laid out as a LoRA Workbench adapter's")
        lora = {key: _tuple_if_list(value) for key, value in d["lora"].items()}
        return cls(
            base_model=d["base_model"],
            model_config=ModelConfig(**d["model_config"]),
            lora=LoRAConfig(**lora),
            label_names=_tuple_if_list(d["label_names"]),
            max_length=d["max_length"],
            pad_token_id=d.get("pad_token_id", EOT_ID),
            metrics=d.get("metrics", {}),
            label_spellings=_spellings(d.get("label_spellings", {})),
            created=d.get("created", ""),
            package_version=d.get("package_version", ""),
            format_version=d.get("format_version", FORMAT_VERSION),
            data=DataRecipe.from_dict(d["data"]) if d.get("data") else None,
            threshold=_optional_float(d.get("threshold")),
            temperature=_optional_float(d.get("temperature")),
        )

    def describe_base(self, fields_shown: Sequence[str] = ()) -> str:
        c = self.model_config
        return f"{self.base_model} ({describe_config(c, fields_shown)})"


def describe_config(c: ModelConfig, fields_shown: Sequence[str] = ()) -> str:
    """ "2 layers, width 64", plus ``fields_shown`` by name: the fields that tell two configs apart."""
    extra = "".join(f", {name} {getattr(c, name)!r}" for name in fields_shown)
    return f"{c.n_layer} layers, width {c.n_embd}{extra}"


def _tuple_if_list(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _spellings(value: object) -> dict[str, tuple[str, ...]]:
    """``label_spellings`` as read from a file: a dict of texts to lists of texts, or a TypeError."""
    if not isinstance(value, dict) or not all(
        isinstance(name, str) and isinstance(spellings, list) and all(isinstance(s, str) for s in spellings)
        for name, spellings in value.items()
    ):
        raise TypeError("label_spellings must map label names to lists of spellings")
    return {name: tuple(spellings) for name, spellings in value.items()}


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def save_adapter(path: str | Path, model: GPT2Classifier, info: AdapterInfo) -> Path:
    """Write the model's LoRA and head tensors with ``info`` as metadata (see save_adapter_tensors)."""
    return save_adapter_tensors(path, trainable_state_dict(model), info)


def save_adapter_tensors(path: str | Path, tensors: dict[str, torch.Tensor], info: AdapterInfo) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then rename over the target, so a
    failed save (full disk, no permission) never destroys an existing adapter."""
    from safetensors.torch import save

    from .. import __version__

    path = Path(path)
    if not info.package_version:
        info = replace(info, package_version=__version__)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    try:
        write_atomically(path, save(tensors, metadata={METADATA_KEY: info.to_json()}))
    except WorkbenchError as exc:
        raise AdapterError(str(exc)) from exc
    return path


def copy_adapter(source: str | Path, target: str | Path, inputs: Mapping[str, Path] | None = None) -> Path:
    """Copy a saved adapter (a run folder's) to where the user asked, atomically like a save, so a
    full disk or a read-only folder leaves any file at ``target`` as it was; the message says
    where the adapter is still kept. ``inputs`` (``training.training_inputs`` of the run) are
    files ``target`` must not replace (``fileio.check_outputs``)."""
    source, target = Path(source), Path(target)
    if inputs:
        check_outputs({"The adapter's destination": target}, inputs)
    try:
        with open_regular_file(source, "The adapter", AdapterError) as f:
            payload = f.read()
    except OSError as exc:
        raise AdapterError(f"Cannot read the adapter {source}: {exc.strerror or exc}") from exc
    try:
        write_atomically(target, payload)
    except WorkbenchError as exc:
        raise AdapterError(f"{exc} The trained adapter is kept at {source}.") from exc
    return target


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], AdapterInfo]:
    """Tensors and metadata of an adapter file, or an AdapterError saying what is wrong with it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _refuse_non_adapter(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(f"{path.name} is corrupt or truncated: not a readable safetensors file ({exc})") from exc
    if METADATA_KEY not in metadata:
        raise AdapterError(
            f"{path.name} is a safetensors file but not a LoRA Workbench adapter (no '{METADATA_KEY}' "
            "metadata). For a PEFT adapter folder use `workbench import-peft`."
        )
    try:
        info = AdapterInfo.from_json(metadata[METADATA_KEY])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise AdapterError(f"{path.name} has unreadable adapter metadata ({type(exc).__name__}: {exc})") from exc
    if type(info.format_version) is int and info.format_version > FORMAT_VERSION:
        raise AdapterError(f"{path.name} uses adapter format {info.format_version}; update LoRA Workbench to open it")
    check_adapter_info(info, path.name)
    _check_tensors(tensors, info, path)
    return tensors, info


def check_adapter_info(info: AdapterInfo, where: str) -> None:
    """AdapterError listing every problem of ``info`` (see _metadata_problems); ``where`` starts it."""
    problems = _metadata_problems(info)
    if problems:
        raise AdapterError(f"{where} has invalid adapter metadata: {'; '.join(problems)}")


def _metadata_problems(info: AdapterInfo) -> list[str]:
    """The one check of adapter metadata, for files and PEFT imports alike: every type and size
    (limits.py) before anything is built from it, so a file edited by hand or damaged on disk
    is refused here rather than as an odd error, or a huge allocation, while building the model."""
    c = info.model_config
    problems = c.validate()
    model_ok = not problems
    problems += info.lora.validate(c.n_layer, c.n_embd) if model_ok else info.lora.validate()
    problems.append(label_names_problem(info.label_names))
    if model_ok:
        problems.append(whole_number_problem("max length", info.max_length, 1, c.n_positions))
        problems.append(whole_number_problem("pad token", info.pad_token_id, 0, c.vocab_size - 1))
    problems.append(text_problem("base model", info.base_model, MAX_NAME_CHARS))
    problems.append(text_problem("created", info.created, MAX_SHORT_TEXT_CHARS))
    problems.append(text_problem("package version", info.package_version, MAX_SHORT_TEXT_CHARS))
    problems.append(whole_number_problem("format version", info.format_version, 1, FORMAT_VERSION))
    if not isinstance(info.metrics, dict):
        problems.append(f"metrics must be a JSON object, got {shown(info.metrics)}")
    if info.data is not None:
        problems += rename_problems(info.data.rename_labels)
    problems = [p for p in problems if p]
    return problems or decision_problems(info)  # the decision is judged on otherwise sound metadata


def decision_problems(info: AdapterInfo) -> list[str]:
    """A stored threshold or temperature that cannot be used (see thresholds.py)."""
    problems = []
    problem = threshold_problem(info.threshold, len(info.label_names))
    if problem:
        problems.append(problem)
    t = info.temperature
    if t is not None and not (math.isfinite(t) and t > 0):
        problems.append(f"the temperature must be a positive number, got {t!r}")
    return problems


_KEEP = object()


def update_decision(path: str | Path, *, threshold=_KEEP, temperature=_KEEP) -> AdapterInfo:
    """Rewrite an adapter's ``threshold`` and/or ``temperature`` (None clears one), atomically:
    the tensors are written back unchanged, and a failed write leaves the file as it was."""
    tensors, info = read_adapter(path)
    changes = {"threshold": threshold, "temperature": temperature}
    updated = replace(info, **{name: value for name, value in changes.items() if value is not _KEEP})
    problems = decision_problems(updated)
    if problems:
        raise AdapterError(f"Cannot save to {Path(path).name}: {'; '.join(problems)}")
    save_adapter_tensors(path, tensors, updated)
    return updated


def _check_tensors(tensors: dict[str, torch.Tensor], info: AdapterInfo, path: Path) -> None:
    """Every tensor the settings call for, with its shape, and nothing else; finite values."""
    expected = adapter_shapes(info.model_config, info.lora, len(info.label_names))
    check_adapter_tensors(tensors, expected, f"{path.name} is damaged")


def check_adapter_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], context: str) -> None:
    """The one check of adapter tensors against their settings (files, PEFT folders, models):
    the same names, the same shapes, finite float values; ``context`` starts the message."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        raise AdapterError(f"{context}: its tensors do not match its LoRA settings ({detail})")
    for name, shape in expected.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != tuple(shape):
            raise AdapterError(f"{context}: {name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
        if tensor.dtype not in ADAPTER_DTYPES:  # float8 and the like: torch cannot even check them
            raise AdapterError(f"{context}: {name} is stored as {tensor.dtype}; adapters hold F32, F16 or BF16")
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"{context}: {name} holds NaN, infinite or non-float values")


def label_mapping(info: AdapterInfo, dataset_labels: Sequence[str], dataset: str = "the dataset") -> list[int]:
    """For each class id of a dataset, the adapter's class id with the same label name (the same
    ``label_key``: "Spam" finds "spam", "0.0" finds "0", as when the adapter was trained).

    A dataset may use fewer of the adapter's labels (a test file without one class still scores),
    but a label the adapter never learned makes evaluation meaningless, so it is refused naming
    both label sets."""
    from .data.splits import label_key  # the rule that merged the training data's spellings

    index = {label_key(name): i for i, name in enumerate(info.label_names)}
    if info.data is not None:  # the spellings it was trained from: "0" in another file is its "ham"
        for i, spellings in enumerate(info.data.label_values):
            for spelling in spellings:
                index.setdefault(label_key(spelling), i)  # a class's own name wins over a spelling
    unknown = [name for name in dataset_labels if label_key(name) not in index]
    if unknown:
        raise AdapterError(
            f"The labels of {dataset} ({_listing(dataset_labels)}) do not match the adapter's "
            f"({_listing(info.label_names)}): the adapter never learned {_listing(unknown)}. "
            "Choose the dataset the adapter was trained for, or the right label column."
        )
    return [index[label_key(name)] for name in dataset_labels]


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _refuse_non_adapter(path: Path) -> None:
    if path.is_dir():
        raise AdapterError(
            f"{path} is a folder; choose an adapter .safetensors file (a PEFT folder: `workbench import-peft`)"
        )
    size = require_regular_file(path, "Adapter file", AdapterError).st_size
    try:
        with open_regular_file(path, "Adapter file", AdapterError) as f:
            head = f.read(9)
    except OSError as exc:
        raise AdapterError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    # A safetensors file opens with its JSON header's length (8 bytes, little-endian), then "{";
    # that length's first byte may well be 0x80, the first byte of a pickle, so rule it out first.
    header_length = int.from_bytes(head[:8], "little")
    is_safetensors = head[8:9] == b"{" and 0 < header_length <= size - 8
    pickle_opcode = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")  # PROTO 2-5
    is_pickle = not is_safetensors and (pickle_opcode or head[:4] == b"PK\x03\x04")  # or torch.save's zip
    if is_pickle_name(path) or is_pickle:
        raise AdapterError(
            f"{path.name} looks like a PyTorch pickle. Pickles can run code when opened, so they are "
            "never loaded; use a .safetensors adapter."
        )


def check_compatible(info: AdapterInfo, model_config: ModelConfig, base_model: str | None = None) -> None:
    """Refuse an adapter whose base architecture differs from the model it is put on. When the
    layers and width agree, the fields that differ (heads, epsilon, …) are named on both sides."""
    ours = info.model_config
    if ours != model_config:
        differing = [f.name for f in fields(ModelConfig) if getattr(ours, f.name) != getattr(model_config, f.name)]
        same_shape = (ours.n_layer, ours.n_embd) == (model_config.n_layer, model_config.n_embd)
        shown_fields = differing if same_shape else []
        given = f"{base_model or 'the chosen model'} ({describe_config(model_config, shown_fields)})"
        raise AdapterError(f"This adapter was made for {info.describe_base(shown_fields)}, not for {given}")


def load_adapter_weights(model: GPT2Classifier, tensors: dict[str, torch.Tensor], info: AdapterInfo) -> None:
    """Copy adapter tensors into a model already wrapped with ``info.lora``; every name and shape
    must match exactly (a file edited by hand or cut short fails here, not at predict time)."""
    params = trainable_state_dict(model)
    check_adapter_tensors(tensors, {k: tuple(p.shape) for k, p in params.items()}, "The adapter")
    with torch.no_grad():
        for name, target in params.items():
            target.copy_(tensors[name])


def adapter_size_bytes(model: GPT2Classifier) -> int:
    """Size on disk of this model's adapter (fp32 tensors; metadata is a few KB)."""
    return sum(t.numel() * 4 for t in trainable_state_dict(model).values())
