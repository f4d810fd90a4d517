"""Adapter files: only the LoRA matrices and the head, in one ``.safetensors`` with JSON metadata.

A GPT-2 small adapter at r=16 on every layer is about 9 MB instead of the 500 MB model. The file
says which base it needs and how it was made, so loading can refuse a mismatch with a clear
message instead of producing nonsense. Pickles (``.pt``/``.pth``/``.bin``) are never opened: a
pickle runs code when loaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from .config import LoRAConfig, ModelConfig
from .errors import AdapterError, WorkbenchError
from .fileio import write_atomically
from .lora import adapter_shapes, trainable_state_dict
from .model import GPT2Classifier
from .thresholds import threshold_problem

FORMAT_VERSION = 1
METADATA_KEY = "lora_workbench"
PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle"}


@dataclass(frozen=True)
class AdapterInfo:
    """Everything needed to rebuild the classifier, stored as the file's metadata."""

    base_model: str  # a GPT-2 size name or the folder it was trained from
    model_config: ModelConfig
    lora: LoRAConfig
    label_names: tuple[str, ...]
    max_length: int  # tokens per text used in training
    pad_token_id: int = 50256
    metrics: dict = field(default_factory=dict)  # final test metrics (accuracy, …) when known
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    package_version: str = ""
    format_version: int = FORMAT_VERSION
    # The decision (thresholds.py): for two classes, the positive (second) label when its
    # probability reaches this; None: argmax. Older adapters have neither and load unchanged.
    threshold: float | None = None
    temperature: float | None = None  # logits are divided by this (fitted on validation); None: 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AdapterInfo:
        d = json.loads(text)
        lora = dict(d["lora"])
        lora["targets"] = tuple(lora["targets"])
        return cls(
            base_model=d["base_model"],
            model_config=ModelConfig(**d["model_config"]),
            lora=LoRAConfig(**lora),
            label_names=tuple(d["label_names"]),
            max_length=int(d["max_length"]),
            pad_token_id=int(d.get("pad_token_id", 50256)),
            metrics=dict(d.get("metrics", {})),
            created=d.get("created", ""),
            package_version=d.get("package_version", ""),
            format_version=int(d.get("format_version", FORMAT_VERSION)),
            threshold=_optional_float(d.get("threshold")),
            temperature=_optional_float(d.get("temperature")),
        )

    def describe_base(self) -> str:
        c = self.model_config
        return f"{self.base_model} ({c.n_layer} layers, width {c.n_embd})"


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


def copy_adapter(source: str | Path, target: str | Path) -> Path:
    """Copy a saved adapter (a run folder's) to where the user asked, atomically like a save, so a
    full disk or a read-only folder leaves any file at ``target`` as it was; the message says
    where the adapter is still kept."""
    source, target = Path(source), Path(target)
    try:
        payload = source.read_bytes()
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
        if info.format_version > FORMAT_VERSION:
            raise AdapterError(
                f"{path.name} uses adapter format {info.format_version}; update LoRA Workbench to open it"
            )
        problems = _metadata_problems(info)
        if problems:
            raise AdapterError(f"{path.name} has invalid adapter metadata: {'; '.join(problems)}")
        _check_tensors(tensors, info, path)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise AdapterError(f"{path.name} has unreadable adapter metadata ({exc})") from exc
    return tensors, info


def _metadata_problems(info: AdapterInfo) -> list[str]:
    """Settings a model could not be built from (a file edited by hand or damaged on disk),
    found here rather than as an odd error, or a huge allocation, while building the model."""
    c = info.model_config
    whole = {
        "n_layer": c.n_layer,
        "n_embd": c.n_embd,
        "n_head": c.n_head,
        "n_positions": c.n_positions,
        "vocab_size": c.vocab_size,
        "top_blocks": info.lora.top_blocks or 1,
    }
    not_whole = [name for name, value in whole.items() if type(value) is not int]
    if not_whole:
        return [f"{', '.join(not_whole)} must be whole numbers"]
    problems = c.validate() + info.lora.validate(c.n_layer)
    names = info.label_names
    if len(names) < 2 or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        problems.append(f"label names must be two or more different texts, got {list(names)!r}")
    if not 1 <= info.max_length <= info.model_config.n_positions:
        problems.append(f"max length {info.max_length} is outside 1..{info.model_config.n_positions}")
    if not 0 <= info.pad_token_id < info.model_config.vocab_size:
        problems.append(f"pad token {info.pad_token_id} is outside the vocabulary")
    return problems + decision_problems(info)


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
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise AdapterError(f"{context}: {name} holds NaN, infinite or non-float values")


def label_mapping(info: AdapterInfo, dataset_labels: Sequence[str], dataset: str = "the dataset") -> list[int]:
    """For each class id of a dataset, the adapter's class id with the same label name.

    A dataset may use fewer of the adapter's labels (a test file without one class still scores),
    but a label the adapter never learned makes evaluation meaningless, so it is refused naming
    both label sets."""
    index = {name: i for i, name in enumerate(info.label_names)}
    unknown = [name for name in dataset_labels if name not in index]
    if unknown:
        raise AdapterError(
            f"The labels of {dataset} ({_listing(dataset_labels)}) do not match the adapter's "
            f"({_listing(info.label_names)}): the adapter never learned {_listing(unknown)}. "
            "Choose the dataset the adapter was trained for, or the right label column."
        )
    return [index[name] for name in dataset_labels]


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _refuse_non_adapter(path: Path) -> None:
    if not path.exists():
        raise AdapterError(f"Adapter file {path} does not exist")
    if path.is_dir():
        raise AdapterError(
            f"{path} is a folder; choose an adapter .safetensors file (a PEFT folder: `workbench import-peft`)"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError as exc:
        raise AdapterError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    # A safetensors file opens with its JSON header's length (8 bytes, little-endian), then "{";
    # that length's first byte may well be 0x80, the first byte of a pickle, so rule it out first.
    header_length = int.from_bytes(head[:8], "little")
    is_safetensors = head[8:9] == b"{" and 0 < header_length <= size - 8
    pickle_opcode = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")  # PROTO 2-5
    is_pickle = not is_safetensors and (pickle_opcode or head[:4] == b"PK\x03\x04")  # or torch.save's zip
    if path.suffix.lower() in PICKLE_SUFFIXES or is_pickle:
        raise AdapterError(
            f"{path.name} looks like a PyTorch pickle. Pickles can run code when opened, so they are "
            "never loaded; use a .safetensors adapter."
        )


def check_compatible(info: AdapterInfo, model_config: ModelConfig, base_model: str | None = None) -> None:
    """Refuse an adapter whose base architecture differs from the model it is put on."""
    if info.model_config != model_config:
        c = model_config
        given = f"{base_model or 'the chosen model'} ({c.n_layer} layers, width {c.n_embd})"
        raise AdapterError(f"This adapter was made for {info.describe_base()}, not for {given}")


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
