"""Hugging Face PEFT LoRA folders to and from LoRA Workbench adapter files.

The two formats hold the same numbers. ``LoRALinear`` keeps A (r, in) and B (out, r) exactly like
PEFT's ``lora_A.weight`` / ``lora_B.weight``, and PEFT uses the same scaling, alpha / r. GPT-2's
``Conv1D`` layers only change how the *base* weight is laid out (``fan_in_fan_out``), not A or B,
so nothing is transposed. What does differ:

* key names: PEFT prefixes every key with ``base_model.model.`` and ends LoRA keys in ``.weight``;
  the head is saved as a ``modules_to_save`` module under its own name (``…score.weight``);
* targets: ``c_proj`` names both the attention and the MLP output projection, so the exported
  ``target_modules`` are full suffixes (``attn.c_proj``), which PEFT matches as ``key.endswith``;
* label names and the training length have no place in ``adapter_config.json``; they go into a
  ``workbench.json`` beside it, which PEFT never reads.

Neither ``peft`` nor ``transformers`` is imported here: they are only needed to *use* the exported
folder, and reading one is plain JSON and safetensors. Pickled ``adapter_model.bin`` files are
never opened (a pickle runs code when loaded).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from . import patterns
from .adapters import AdapterInfo, check_adapter_info, check_adapter_tensors, read_adapter, save_adapter_tensors
from .config import LORA_TARGETS, MODEL_REPOS, LoRAConfig, ModelConfig
from .errors import AdapterError, CheckpointError, ConfigError, shorten
from .fileio import check_outputs, read_json, require_regular_file, write_atomically
from .hub import checkpoint_files
from .limits import (
    MAX_LAYERS,
    MAX_LIST_ITEMS,
    MAX_NAME_CHARS,
    MAX_PATTERN_CHARS,
    MAX_RANK,
    MAX_SHORT_TEXT_CHARS,
    label_names_problem,
    real_number_problem,
    shown,
    text_problem,
    whole_number_problem,
)
from .lora import adapter_shapes
from .model import load_model_config
from .patterns import PatternError, check_pattern
from .tokenizer import EOT_ID

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLED_WEIGHTS_FILE = "adapter_model.bin"
WORKBENCH_FILE = "workbench.json"  # label names etc.; PEFT ignores files it does not know
PEFT_PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the transformers model
HEAD = "score"  # GPT2ForSequenceClassification's head
# module path inside a block -> our target name (inverse of LORA_TARGETS)
TARGET_BY_MODULE = {module: target for target, module in LORA_TARGETS.items()}
# PEFT expands target_modules="all-linear" to every Linear/Conv1D except the classification head.
ALL_LINEAR = ("c_attn", "c_proj", "c_fc")
_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")
_BLOCK_MODULE = re.compile(r"transformer\.h\.(?P<block>\d+)\.(?P<inner>.+)")


# --- export ------------------------------------------------------------------------------------


def export_peft(adapter_path: str | Path, out_dir: str | Path) -> Path:
    """Write our adapter as a PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``).

    Load it with ``PeftModel.from_pretrained(GPT2ForSequenceClassification.from_pretrained(base,
    num_labels=K, pad_token_id=50256), out_dir)``; it gives the same probabilities as our model.
    """
    from safetensors.torch import save

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AdapterError(f"Cannot export to {out}: it is a file, not a folder")
    if out.is_dir():  # a folder made below has nothing in it to protect
        outputs = {f"The exported {name}": out / name for name in (WEIGHTS_FILE, CONFIG_FILE, WORKBENCH_FILE)}
        check_outputs(outputs, {"the adapter": Path(adapter_path)})
    tensors, info = read_adapter(adapter_path)
    _check_shapes(
        tensors,
        adapter_shapes(info.model_config, info.lora, len(info.label_names)),
        f"{Path(adapter_path).name} does not match its own metadata",
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdapterError(f"Cannot create the folder {out}: {exc.strerror or exc}") from exc

    peft_tensors = {PEFT_PREFIX + _peft_key(name): t.contiguous() for name, t in tensors.items()}
    write_atomically(out / WEIGHTS_FILE, save(peft_tensors, metadata={"format": "pt"}))
    write_atomically(out / CONFIG_FILE, _json_bytes(peft_config_dict(info)))
    write_atomically(out / WORKBENCH_FILE, _json_bytes(json.loads(info.to_json())))
    return out


def peft_config_dict(info: AdapterInfo) -> dict[str, Any]:
    """The ``adapter_config.json`` of a PEFT ``LoraConfig`` equivalent to ``info.lora``."""
    lora = info.lora
    n_layer = info.model_config.n_layer
    blocks = lora.blocks(n_layer)
    some_blocks = len(blocks) < n_layer
    alpha = int(lora.alpha) if float(lora.alpha).is_integer() else lora.alpha
    return {
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": MODEL_REPOS.get(info.base_model, info.base_model),
        "revision": None,
        "r": lora.rank,
        "lora_alpha": alpha,
        "lora_dropout": lora.dropout,
        # PEFT matches a list entry t when the module name ends in "." + t, so "attn.c_proj" picks
        # the attention projection without the MLP's c_proj.
        "target_modules": [LORA_TARGETS[t] for t in lora.targets],
        # Index of the block, read from the name segment after "h." (transformer.h.<i>.…).
        "layers_to_transform": blocks if some_blocks else None,
        "layers_pattern": "h" if some_blocks else None,
        "fan_in_fan_out": True,  # GPT-2's Conv1D stores weights (in, out)
        "bias": "none",
        "modules_to_save": [HEAD],
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def _peft_key(name: str) -> str:
    # "transformer.h.0.attn.c_attn.lora_A" -> "…c_attn.lora_A.weight"; "score.weight" stays.
    return name if name == f"{HEAD}.weight" else f"{name}.weight"


def _json_bytes(d: dict[str, Any]) -> bytes:
    return (json.dumps(d, indent=2) + "\n").encode("utf-8")


# --- import ------------------------------------------------------------------------------------


def import_peft(
    folder: str | Path,
    out_path: str | Path,
    *,
    model: str | Path | None = None,
    labels: Sequence[str] | None = None,
    max_length: int | None = None,
) -> Path:
    """Convert a PEFT LoRA folder for ``GPT2ForSequenceClassification`` into our adapter file.

    ``model`` (a GPT-2 size, Hub repo id or checkpoint folder) overrides the folder's
    ``base_model_name_or_path``; ``labels`` and ``max_length`` override what ``workbench.json``
    says (absent that: labels "0".."K-1", the model's context length).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterError(f"{folder} is not a folder; a PEFT adapter is a folder with {CONFIG_FILE}")
    inputs = {f"the PEFT folder's {name}": folder / name for name in (CONFIG_FILE, WEIGHTS_FILE, WORKBENCH_FILE)}
    check_outputs({"The output": out_path}, inputs)
    cfg = _read_peft_config(folder)
    _check_supported(cfg, folder)
    base_model, model_config = _resolve_base(model or cfg.get("base_model_name_or_path"), folder)
    check_outputs({"The output": out_path}, checkpoint_files(base_model, "the base model"))
    raw = _read_peft_weights(folder)
    lora = _lora_config(cfg, model_config, folder)
    tensors = _to_workbench_tensors(raw, folder)
    num_classes = tensors[f"{HEAD}.weight"].shape[0]
    _check_shapes(
        tensors,
        adapter_shapes(model_config, lora, num_classes),
        f"The PEFT adapter in {folder} does not fit {base_model} "
        f"({model_config.n_layer} layers, width {model_config.n_embd})",
    )

    extra = _read_workbench_json(folder)
    label_names = _label_names(labels, extra.get("label_names"), num_classes)
    max_length = _max_length(max_length, extra.get("max_length"), model_config)
    info = AdapterInfo(
        base_model=base_model,
        model_config=model_config,
        lora=lora,
        label_names=label_names,
        max_length=max_length,
        pad_token_id=_stored(extra, "pad_token_id", int, EOT_ID),
        metrics=_stored(extra, "metrics", dict, {}),
    )
    if isinstance(extra.get("created"), str):  # when it was trained, not when it was converted
        info = replace(info, created=extra["created"])
    check_adapter_info(info, f"The PEFT adapter in {folder}")  # the same rules as an adapter file's
    return save_adapter_tensors(out_path, tensors, info)


def _read_peft_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not os.path.lexists(path):
        raise AdapterError(f"{folder} has no {CONFIG_FILE}: not a PEFT adapter folder")
    cfg = read_json(path, "The PEFT config", AdapterError)
    if not isinstance(cfg, dict):
        raise AdapterError(f"{path} does not hold a PEFT config (expected a JSON object)")
    return cfg


def _check_supported(cfg: dict[str, Any], folder: Path) -> None:
    """The one check of ``adapter_config.json``: the JSON type and size of every field read
    (limits.py), then every PEFT feature our ``LoRALinear`` cannot reproduce, in one error."""
    problems = _config_type_problems(cfg)
    if problems:
        raise AdapterError(f"Cannot import the PEFT adapter in {folder}: " + "; ".join(problems))
    peft_type = cfg.get("peft_type", "LORA").upper()
    if peft_type != "LORA":
        problems.append(f"it is a {peft_type} adapter, not LoRA")
    if cfg.get("use_dora"):
        problems.append("DoRA (use_dora) is not supported")
    if cfg.get("use_rslora"):
        problems.append("rank-stabilised LoRA (use_rslora) is not supported")
    if cfg.get("rank_pattern"):
        problems.append("per-layer ranks (rank_pattern) are not supported")
    if cfg.get("alpha_pattern"):
        problems.append("per-layer alphas (alpha_pattern) are not supported")
    if cfg.get("bias", "none") != "none":
        problems.append(f"trained biases (bias={cfg['bias']!r}) are not supported")
    if cfg.get("lora_bias"):
        problems.append("a bias on lora_B (lora_bias) is not supported")
    for key in ("layer_replication", "target_parameters", "trainable_token_indices"):
        if cfg.get(key):
            problems.append(f"{key} is not supported")
    unknown_saved = [m for m in cfg.get("modules_to_save") or [] if m not in (HEAD, "classifier")]
    if unknown_saved:
        problems.append(f"fully trained modules other than the head ({', '.join(unknown_saved)}) are not supported")
    if problems:
        raise AdapterError(f"Cannot import the PEFT adapter in {folder}: " + "; ".join(problems))


# Names PEFT splices into regular expressions (layers_pattern, modules_to_save): plain names only.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def _config_type_problems(cfg: dict[str, Any]) -> list[str]:
    """Each field this module reads, with the JSON type PEFT writes and a bounded size."""
    problems = [
        whole_number_problem("r", cfg.get("r"), 1, MAX_RANK),
        real_number_problem("lora_alpha", cfg.get("lora_alpha", 8), 0.0, math.inf, low_open=True),  # PEFT's default 8
        real_number_problem("lora_dropout", cfg.get("lora_dropout") or 0.0, 0.0, 0.999),
        _optional_text("peft_type", cfg.get("peft_type"), MAX_SHORT_TEXT_CHARS),
        _optional_text("bias", cfg.get("bias"), MAX_SHORT_TEXT_CHARS),
        _optional_text("base_model_name_or_path", cfg.get("base_model_name_or_path"), MAX_NAME_CHARS),
        _names_problem("target_modules", cfg.get("target_modules"), pattern_allowed=True),
        _names_problem("exclude_modules", cfg.get("exclude_modules"), pattern_allowed=True),
        _names_problem("modules_to_save", cfg.get("modules_to_save"), plain=True),
        _names_problem("layers_pattern", cfg.get("layers_pattern"), pattern_allowed=True, plain=True),
    ]
    if cfg.get("target_modules") is None:
        problems.append("target_modules is missing")
    layers = cfg.get("layers_to_transform")
    layer_list = [layers] if type(layers) is int else layers if isinstance(layers, list) else None
    if layers is not None and (layer_list is None or len(layer_list) > MAX_LIST_ITEMS):
        problems.append(f"layers_to_transform must be a block number or a list of them, got {shown(layers)}")
    elif layer_list:
        problems += [whole_number_problem("a layers_to_transform entry", i, 0, MAX_LAYERS - 1) for i in layer_list]
    return list(dict.fromkeys(p for p in problems if p))


def _pattern_problem(name: str, pattern: str) -> str | None:
    """Why ``pattern`` cannot be matched here (see patterns.py), or None."""
    if pattern.lower() == "all-linear":
        return None
    try:
        check_pattern(pattern)
    except re.error as exc:
        return f"{name} is not a valid pattern ({exc})"
    except PatternError as exc:
        return f"{name} is a pattern LoRA Workbench does not match: {exc}"
    return None


def _optional_text(name: str, value: object, max_chars: int) -> str | None:
    return None if value is None else text_problem(name, value, max_chars)


def _names_problem(name: str, value: object, *, pattern_allowed: bool = False, plain: bool = False) -> str | None:
    """None, a list of module names, or (``pattern_allowed``) one string; ``plain`` names only
    (PEFT puts them into regular expressions unescaped)."""
    if value is None:
        return None
    if isinstance(value, str) and pattern_allowed:
        if plain and not _PLAIN_NAME.fullmatch(value):
            return f"{name} must be a plain module name such as 'h', got {shown(value)}"
        return text_problem(name, value, MAX_PATTERN_CHARS) or _pattern_problem(name, value)
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        return f"{name} must be a list of module names, got {shown(value)}"
    if not all(isinstance(item, str) and 0 < len(item) <= MAX_NAME_CHARS for item in value):
        return f"{name} must hold module names (texts)"
    if plain and not all(_PLAIN_NAME.fullmatch(item) for item in value):
        return f"{name} must hold plain module names such as 'score'"
    return None


class UnknownBaseModel(AdapterError):
    """The PEFT folder names no base model, or one that is not a size nor a folder here: the
    caller may say which (``--model``; the window offers the model it has selected)."""


def _resolve_base(name: str | Path | None, folder: Path) -> tuple[str, ModelConfig]:
    """(base_model for AdapterInfo, its architecture) from a size name, Hub repo id or folder."""
    if not name:
        raise UnknownBaseModel(
            f"{folder / CONFIG_FILE} names no base model; say which GPT-2 it was trained on (--model)"
        )
    name = str(name)
    size_by_repo = {repo: size for size, repo in MODEL_REPOS.items()}
    size = name if name in MODEL_REPOS else size_by_repo.get(name)
    if size:
        return size, ModelConfig.for_size(size)
    path = Path(name).expanduser()
    if path.is_dir():
        try:
            return str(path), load_model_config(path)
        except CheckpointError as exc:
            raise AdapterError(f"Base model folder {path}: {exc}") from exc
    raise UnknownBaseModel(
        f"Base model {name!r} is neither a GPT-2 size ({', '.join(MODEL_REPOS)} or their Hub ids) nor a "
        "checkpoint folder on this computer; say which GPT-2 the adapter was trained on (--model)"
    )


def _read_peft_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    path = folder / WEIGHTS_FILE
    if not os.path.lexists(path):
        if os.path.lexists(folder / PICKLED_WEIGHTS_FILE):
            raise AdapterError(
                f"{folder} holds only {PICKLED_WEIGHTS_FILE}, a PyTorch pickle. Pickles can run code when "
                "opened, so they are never loaded; save the adapter with safe_serialization=True"
            )
        raise AdapterError(f"{folder} has no {WEIGHTS_FILE}")
    require_regular_file(path, "The PEFT weights", AdapterError)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(f"{path.name} is corrupt or truncated: not a readable safetensors file ({exc})") from exc


def _lora_config(cfg: dict[str, Any], model_config: ModelConfig, folder: Path) -> LoRAConfig:
    """Our LoRAConfig for the layers PEFT would wrap on a GPT-2 with ``model_config``'s blocks."""
    try:
        matched = [name for name in hf_module_names(model_config.n_layer) if peft_targets(cfg, name)]
    except (re.error, PatternError) as exc:
        raise AdapterError(f"target_modules in {folder / CONFIG_FILE} is not a valid pattern ({exc})") from exc
    where = f"The PEFT adapter in {folder}"
    targets_by_block: dict[int, set[str]] = {}
    outside = []
    for name in matched:
        m = _BLOCK_MODULE.fullmatch(name)
        if m and m["inner"] in TARGET_BY_MODULE:
            targets_by_block.setdefault(int(m["block"]), set()).add(TARGET_BY_MODULE[m["inner"]])
        else:
            outside.append(name)
    if outside:
        shown = shorten(outside, 4)
        raise AdapterError(
            f"{where} adapts {shown}; only the target modules c_attn, c_proj and c_fc inside the blocks "
            "can carry LoRA here"
        )
    if not targets_by_block:
        raise AdapterError(
            f"{where} targets {cfg.get('target_modules')!r}, which matches no layer of a "
            f"{model_config.n_layer}-block GPT-2 (only c_attn, c_proj and c_fc can carry LoRA)"
        )
    target_sets = {frozenset(t) for t in targets_by_block.values()}
    if len(target_sets) > 1:
        raise AdapterError(
            f"{where} adapts different layers in different blocks; LoRA Workbench needs the same in each"
        )
    blocks = sorted(targets_by_block)
    n_layer = model_config.n_layer
    if blocks != list(range(n_layer - len(blocks), n_layer)):
        raise AdapterError(
            f"{where} adapts blocks {', '.join(map(str, blocks))}; LoRA Workbench adapts every block or the "
            f"last N of the {n_layer}"
        )
    chosen = target_sets.pop()
    try:
        lora = LoRAConfig(
            rank=cfg["r"],
            alpha=float(cfg.get("lora_alpha", 8)),
            dropout=float(cfg.get("lora_dropout") or 0.0),
            targets=tuple(t for t in LORA_TARGETS if t in chosen),
            top_blocks=len(blocks) if len(blocks) < n_layer else None,
        )
        lora.check(n_layer)
    except (ConfigError, TypeError, ValueError) as exc:
        raise AdapterError(f"{where}: {exc}") from exc
    return lora


def hf_module_names(n_layer: int) -> list[str]:
    """Module names of Hugging Face's ``GPT2ForSequenceClassification``, which PEFT matches against."""
    block = [
        "",
        ".ln_1",
        ".attn",
        ".attn.c_attn",
        ".attn.c_proj",
        ".attn.attn_dropout",
        ".attn.resid_dropout",
        ".ln_2",
        ".mlp",
        ".mlp.c_fc",
        ".mlp.c_proj",
        ".mlp.act",
        ".mlp.dropout",
    ]
    names = ["transformer", "transformer.wte", "transformer.wpe", "transformer.drop", "transformer.h"]
    names += [f"transformer.h.{i}{suffix}" for i in range(n_layer) for suffix in block]
    return names + ["transformer.ln_f", HEAD]


def peft_targets(cfg: dict[str, Any], key: str) -> bool:
    """Whether PEFT would put LoRA on module ``key``: its ``check_target_module_exists`` (peft 0.21,
    ``tuners/tuners_utils.py``) restated over the JSON config.

    A string target is a regex that must match the whole name (decided by ``patterns.fullmatch``,
    which cannot be made to backtrack for hours); a list entry matches the name
    itself or a ``.``-separated suffix of it; ``layers_to_transform`` then filters list matches
    by the number after ``<layers_pattern>.`` (without a pattern: the first ``.<name>.<number>.``).
    """
    exclude = cfg.get("exclude_modules")
    if exclude:
        if isinstance(exclude, str):
            if patterns.fullmatch(exclude, key):
                return False
        elif key in exclude or any(key.endswith(f".{e}") for e in exclude):
            return False
    # Modules trained in full (the head) never also get LoRA.
    if any(re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", key) for m in cfg.get("modules_to_save") or []):
        return False
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        if targets.lower() != "all-linear":
            return patterns.fullmatch(targets, key)
        targets = ALL_LINEAR
    if not targets:
        return False
    if not (key in targets or any(key.endswith(f".{t}") for t in targets)):
        return False
    layers = cfg.get("layers_to_transform")
    if layers is None or layers == []:
        return True
    layer_patterns = cfg.get("layers_pattern")
    match = None
    if not layer_patterns:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
    else:
        for pattern in [layer_patterns] if isinstance(layer_patterns, str) else layer_patterns:
            match = re.match(rf"(?:^|.*?\.){re.escape(pattern)}\.(?P<idx>\d+)\.", key)
            if match:
                break
    if match is None:
        return False
    index = int(match["idx"])
    return index == layers if isinstance(layers, int) else index in layers


def _to_workbench_tensors(raw: dict[str, torch.Tensor], folder: Path) -> dict[str, torch.Tensor]:
    """PEFT keys -> ours: ``base_model.model.X.lora_A.weight`` -> ``X.lora_A``; the head keeps its name."""
    tensors, unknown = {}, []
    for key, tensor in raw.items():
        name = key.removeprefix(PEFT_PREFIX)
        lora = _LORA_KEY.fullmatch(name)
        if lora:
            tensors[f"{lora['module']}.lora_{lora['ab']}"] = tensor
        elif name == f"{HEAD}.weight":
            tensors[name] = tensor
        else:
            unknown.append(key)
    if unknown:
        shown = shorten(unknown, 3)
        raise AdapterError(
            f"{folder / WEIGHTS_FILE} holds tensors LoRA Workbench cannot use ({shown}); only lora_A/lora_B "
            f"of c_attn, c_proj, c_fc and the '{HEAD}' head are supported"
        )
    if f"{HEAD}.weight" not in tensors:
        raise AdapterError(
            f"{folder / WEIGHTS_FILE} has no '{HEAD}' classification head; export it from PEFT with "
            f"task_type SEQ_CLS and modules_to_save=['{HEAD}']"
        )
    return tensors


def _check_shapes(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, int]], context: str) -> None:
    check_adapter_tensors(tensors, expected, context)
    if expected[f"{HEAD}.weight"][0] < 2:
        raise AdapterError(f"{context}: the '{HEAD}' head has fewer than 2 classes")


def _stored(extra: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = extra.get(key)
    return value if isinstance(value, kind) else default


def _read_workbench_json(folder: Path) -> dict[str, Any]:
    path = folder / WORKBENCH_FILE
    if not os.path.lexists(path):
        return {}
    extra = read_json(path, "The label file", AdapterError)
    return extra if isinstance(extra, dict) else {}


def _label_names(given: Sequence[str] | None, stored: Any, num_classes: int) -> tuple[str, ...]:
    if given is not None:
        names, source = tuple(str(x) for x in given), "given"
    elif stored:
        problem = label_names_problem(stored)
        if problem:
            raise AdapterError(f"{WORKBENCH_FILE}: {problem}")
        names, source = tuple(stored), f"in {WORKBENCH_FILE}"
    else:
        return tuple(str(i) for i in range(num_classes))
    if len(names) != num_classes:
        raise AdapterError(f"The adapter's head has {num_classes} classes but {len(names)} label names are {source}")
    if len(set(names)) != len(names):
        raise AdapterError(f"Label names must differ from each other: {', '.join(names)}")
    return names


def _max_length(given: int | None, stored: Any, config: ModelConfig) -> int:
    value = given if given is not None else stored if stored is not None else config.n_positions
    if not isinstance(value, int) or not 2 <= value <= config.n_positions:
        raise AdapterError(f"max length must be a whole number from 2 to {config.n_positions}, got {value!r}")
    return value
