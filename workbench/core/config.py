"""Settings, one dataclass per concern.

Defaults follow appendix E of "Build a Large Language Model (From Scratch)" (LoRA r=16, alpha=16
on every linear layer of GPT-2 small; AdamW lr 5e-5, weight decay 0.1; 5 epochs, batch 8;
evaluation every 50 steps on 5 batches; balanced SMS spam split 70/10/20).

Each ``validate()`` returns every problem it finds (empty list: fine) instead of stopping at the
first, each a ``Problem(field, message)`` naming the setting it is about, so the window can mark
all bad fields at once; ``check()`` raises them together as one ConfigError.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import ConfigError
from .limits import (
    MAX_HEADS,
    MAX_LABEL_CHARS,
    MAX_LAYERS,
    MAX_POSITIONS,
    MAX_RANK,
    MAX_VOCABULARY,
    MAX_WIDTH,
    real_number_problem,
    whole_number_problem,
)
from .text import printable

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

SMS_SPAM = "sms-spam"  # DataConfig.source value for the built-in dataset (the book's chapter 6 data)

DEVICES = ("auto", "cpu", "cuda", "mps")  # and "cuda:N", the N-th NVIDIA GPU (checked to exist at run time)
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("constant", "linear", "cosine")  # the learning rate after warm-up (training.learning_rate_factor)


def is_device_name(name: object) -> bool:
    """A device the settings can name: one of DEVICES or "cuda:N" (whether it exists is checked
    when the run picks it, device.pick_device)."""
    return isinstance(name, str) and (name in DEVICES or re.fullmatch(r"cuda:[0-9]{1,3}", name) is not None)


@dataclass(frozen=True)
class Problem(str):
    """One thing wrong with the settings: which setting (``field``, its attribute path from a
    TrainConfig: "lora.rank", "data.source", "epochs"; "model_config.n_embd" for a checkpoint's
    architecture) and what is wrong, for a person (``message``). A window marks the widget of
    ``field``; no caller needs to read the message to know where it belongs.

    Temporarily also a ``str`` equal to its message, so code written for the plain-string problems
    of before (joining them, matching them by substring) keeps working until it is moved to
    ``field``; drop the ``str`` base then.
    """

    field: str
    message: str

    def __new__(cls, field: str, message: str) -> Problem:
        return super().__new__(cls, message)

    def __getnewargs__(self) -> tuple[str, str]:  # copy and pickle rebuild it from both parts
        return (self.field, self.message)

    def __str__(self) -> str:
        return self.message

    def __ne__(self, other: object) -> bool:  # str's own __ne__ would compare the messages only
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal


@dataclass(frozen=True)
class Bound:
    """The values one numeric setting accepts. Every verb's numeric options (the CLI's, the
    window's, the core's) are checked through these, so a value is refused the same way wherever
    it is given; floats must also be finite (NaN and infinity make a run diverge or mean nothing)."""

    label: str  # as messages name the setting (the window finds the field by it)
    low: float
    high: float
    whole: bool = True  # an int (not a bool); else any finite number
    low_open: bool = False  # ``low`` itself is refused (a learning rate of 0 learns nothing)
    high_open: bool = False  # ``high`` itself is refused (dropout 1 drops everything)
    optional: bool = False  # None is allowed and means "not set" (no step limit, every block, ...)

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, or None when it is fine."""
        if value is None and self.optional:
            return None
        low = "(" if self.low_open else "["
        high = ")" if self.high_open else "]"
        if self.whole:
            ok = isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
            return None if ok else f"{self.label} must be a whole number from {self.low:,} to {self.high:,}"
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (self.low < value if self.low_open else self.low <= value)
            and (value < self.high if self.high_open else value <= self.high)
        )
        return None if ok else f"{self.label} must be a number in {low}{self.low:g}, {self.high:g}{high}"


# Seeds go to random.Random, torch.Generator (at most 2**64 - 1) and numpy (2**32 - 1); the batch
# order seeds torch with seed * 1000 + epoch, which must stay below 2**63.
MAX_SEED = 2**32 - 1
BOUNDS: dict[str, Bound] = {
    "epochs": Bound("epochs", 1, 100_000),
    "batch_size": Bound("batch size", 1, 65_536),
    "grad_accum": Bound("grad accumulation", 1, 65_536),
    "eval_every": Bound("eval every", 1, 10**9),
    "eval_batches": Bound("eval batches", 1, 10**6),
    "max_steps": Bound("max steps", 1, 10**12, optional=True),
    "length_grouping": Bound("length grouping", 0, 10**6),
    "seed": Bound("seed", 0, MAX_SEED),
    "warmup_steps": Bound("warm-up steps", 0, 10**9),
    "early_stopping": Bound("early stopping patience", 0, 100_000),
    # Adam moves every weight by about lr per step; above 1 a step dwarfs GPT-2's weights (~0.1).
    "lr": Bound("learning rate", 0, 1, whole=False, low_open=True),
    # AdamW scales each weight by (1 - lr * weight_decay) per step: with both at most 1 that stays in [0, 1].
    "weight_decay": Bound("weight decay", 0, 1, whole=False),
    "rank": Bound("rank", 1, MAX_RANK),
    # The update is scaled by alpha / rank; papers use alpha from 1 to 2 * rank.
    "alpha": Bound("alpha", 0, 4096, whole=False, low_open=True),
    "dropout": Bound("dropout", 0, 1, whole=False, high_open=True),
    "top_blocks": Bound("top blocks", 1, 10_000, optional=True),
    "max_length": Bound("max length", 2, 1_048_576, optional=True),
    "max_rows": Bound("sample rows", 1, 10**12, optional=True),
    "train_fraction": Bound("train fraction", 0, 1, whole=False, low_open=True, high_open=True),
    "val_fraction": Bound("validation fraction", 0, 1, whole=False, low_open=True, high_open=True),
    # `workbench bench`'s own options
    "steps": Bound("steps", 1, 10**6),
    "warmup": Bound("warmup", 0, 10**6),
    "classify_runs": Bound("classify runs", 1, 10**6),
    "bf16_steps": Bound("bf16 steps", 0, 10**6),
    # the review commands (cli_review.py)
    "threshold": Bound("threshold", 0, 1, whole=False),  # a probability of the second label
    "folds": Bound("folds", 0, 1000),
    "top": Bound("top", 0, 10**6),
}


def bound_problems(owner: Any, names: tuple[str, ...], prefix: str = "") -> list[Problem]:
    """The ``BOUNDS`` problems of ``owner``'s fields ``names``, each naming its field (``prefix`` +
    name, e.g. "lora.rank")."""
    found = ((name, BOUNDS[name].problem(getattr(owner, name))) for name in names)
    return [Problem(prefix + name, message) for name, message in found if message]


def _raise_if(problems: list[Problem], what: str) -> None:
    if problems:
        raise ConfigError(f"Invalid {what}: " + "; ".join(str(p) for p in problems))


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

    def validate(self) -> list[Problem]:
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
            Problem(f"model_config.{name}", p)
            for name, high in bounds.items()
            if (p := whole_number_problem(name, getattr(self, name), 1, high))
        ]
        if not problems and self.n_embd % self.n_head:
            problems.append(
                Problem("model_config.n_embd", f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
            )
        epsilon = real_number_problem("layer_norm_epsilon", self.layer_norm_epsilon, 0.0, 0.1, low_open=True)
        return problems + ([Problem("model_config.layer_norm_epsilon", epsilon)] if epsilon else [])

    def check(self) -> None:
        _raise_if(self.validate(), "model config")

    @property
    def block_matmul_weights(self) -> int:
        """Weights of one block's four matmuls: qkv 3d², attention out d², MLP up 4d², down 4d²."""
        return 12 * self.n_embd**2

    @property
    def block_params(self) -> int:
        """One block's parameters: the matmul weights, their biases (9d) and two layer norms (4d)."""
        return self.block_matmul_weights + 13 * self.n_embd

    @property
    def n_params(self) -> int:
        """Parameters of the transformer (embeddings tied to the LM head, so counted once)."""
        d = self.n_embd
        return self.vocab_size * d + self.n_positions * d + self.n_layer * self.block_params + 2 * d


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

    def validate(self, n_layer: int | None = None, n_embd: int | None = None) -> list[Problem]:
        """Every problem; with the model's ``n_layer`` and ``n_embd``, also the bounds they set
        (a rank above the width adds parameters but no expressiveness: B A has rank ≤ width)."""
        problems = bound_problems(self, ("rank", "alpha", "dropout", "top_blocks"), "lora.")
        if type(self.rank) is int and n_embd is not None and 0 < n_embd < self.rank <= MAX_RANK:
            problems.append(Problem("lora.rank", f"rank {self.rank:,} is above {n_embd}, the model's width"))
        if isinstance(self.targets, str) or not isinstance(self.targets, (tuple, list)):
            problems.append(Problem("lora.targets", "targets must be a list of layer names"))
        elif not self.targets:
            problems.append(Problem("lora.targets", "choose at least one target layer"))
        else:
            unknown = [str(t)[:40] for t in self.targets if not isinstance(t, str) or t not in LORA_TARGETS]
            if unknown:
                problems.append(
                    Problem(
                        "lora.targets",
                        f"unknown target(s) {', '.join(unknown[:8])}; choose from {', '.join(ALL_TARGETS)}",
                    )
                )
        if isinstance(self.top_blocks, int) and self.top_blocks > (n_layer or MAX_LAYERS):
            problems.append(
                Problem(
                    "lora.top_blocks",
                    f"top blocks {self.top_blocks:,} exceeds the model's {n_layer or MAX_LAYERS} blocks",
                )
            )
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

    source: str = SMS_SPAM  # SMS_SPAM (downloaded on first use) or a CSV/TSV path
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
    # Names for the file's labels: (("0", "ham"), ("1", "spam")) trains an adapter whose classes read
    # ham and spam; a label is matched as the label rule matches spellings ("0.0" is "0").
    rename_labels: tuple[tuple[str, str], ...] = ()
    # Shuffling, balancing and splitting follow the run's one seed, TrainConfig.seed.

    def validate(self) -> list[Problem]:
        problems = []
        if not self.source:
            problems.append(Problem("data.source", "choose a dataset"))
        elif self.source != SMS_SPAM and not os.path.exists(self.source):
            problems.append(Problem("data.source", f"dataset file {printable(self.source, 200)} does not exist"))
        fractions = bound_problems(self, ("train_fraction", "val_fraction"), "data.")
        problems += fractions
        if not fractions and self.train_fraction + self.val_fraction >= 1:
            problems.append(Problem("data.val_fraction", "train + validation fractions must leave room for a test set"))
        problems += bound_problems(self, ("max_rows", "max_length"), "data.")
        problems += [Problem("data.rename_labels", p) for p in rename_problems(self.rename_labels)]
        return problems


def rename_problems(renames: object) -> list[str]:
    """What is wrong with label renames: pairs of a label and a new, non-blank name of a sane length."""
    if not isinstance(renames, (tuple, list)):
        return ["label renames must be pairs of a label and its new name"]
    problems = []
    for pair in renames:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
            problems.append("label renames must be pairs of a label and its new name")
        elif not pair[1].strip():
            problems.append(f"the new name for label {printable(pair[0], 40)!r} is empty")
        elif max(len(pair[0]), len(pair[1])) > MAX_LABEL_CHARS:
            problems.append(f"a renamed label is longer than {MAX_LABEL_CHARS:,} characters")
    sources = [pair[0].strip() for pair in renames if isinstance(pair, (tuple, list)) and len(pair) == 2]
    if len(set(sources)) < len(sources):
        problems.append("a label is renamed twice")
    return list(dict.fromkeys(problems))


def parse_renames(text: str) -> tuple[tuple[str, str], ...]:
    """ "0=ham, 1=spam" (the window's field; the CLI takes each OLD=NEW as one argument) as pairs;
    ConfigError naming the part that is not OLD=NEW."""
    pairs = []
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        old, sep, new = part.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"rename {printable(part, 40)!r} is not OLD=NEW (e.g. 0=ham)")
        pairs.append((old.strip(), new.strip()))
    return tuple(pairs)


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
    precision: str = "auto"  # auto: bf16 autocast or fp32, whichever ran faster here (precision.py)
    seed: int = 123  # the run's one seed: the data split, LoRA initialisation, dropout and batch order
    # The learning rate: 0 -> lr linearly over warmup_steps, then held (constant, the book's) or
    # decayed to 0 at the last step (linear, cosine). See training.learning_rate_factor.
    warmup_steps: int = 0
    schedule: str = "constant"
    # After each epoch: stop once validation loss has not improved for this many epochs (0: never),
    # and/or finish with the epoch of the lowest validation loss instead of the last one.
    early_stopping: int = 0
    keep_best: bool = False

    def validate(self) -> list[Problem]:
        problems = []
        if not self.model:
            problems.append(Problem("model", "choose a model"))
        elif self.model not in MODEL_REPOS and not os.path.isdir(self.model):
            shown = printable(self.model, 80)
            problems.append(
                Problem("model", f"model {shown!r} is neither a GPT-2 size ({', '.join(MODEL_REPOS)}) nor a folder")
            )
        problems += self.data.validate()
        problems += self.lora.validate()
        numbers = ("epochs", "batch_size", "grad_accum", "eval_every", "eval_batches", "max_steps")
        problems += bound_problems(
            self, (*numbers, "length_grouping", "seed", "lr", "weight_decay", "warmup_steps", "early_stopping")
        )
        if self.schedule not in SCHEDULES:
            problems.append(Problem("schedule", f"schedule must be one of {', '.join(SCHEDULES)}"))
        if not isinstance(self.keep_best, bool):
            problems.append(Problem("keep_best", "keep best must be true or false"))
        if not is_device_name(self.device):
            problems.append(Problem("device", f"device must be one of {', '.join(DEVICES)} or cuda:N (N = 0, 1, …)"))
        if self.precision not in PRECISIONS:
            problems.append(Problem("precision", f"precision must be one of {', '.join(PRECISIONS)}"))
        return problems

    def check(self) -> None:
        _raise_if(list(dict.fromkeys(self.validate())), "settings")  # the two seeds may say the same

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are ignored so old run folders still load."""
        if "seed" not in d and "seed" in d.get("data", {}):  # files from when the split had its own seed
            d = {**d, "seed": d["data"]["seed"]}
        data_values = _known(DataConfig, d.get("data", {}))
        if isinstance(data_values.get("rename_labels"), list):  # JSON lists back to pairs
            data_values["rename_labels"] = tuple(
                tuple(pair) if isinstance(pair, list) else pair for pair in data_values["rename_labels"]
            )
        data = DataConfig(**data_values)
        lora_values = _known(LoRAConfig, d.get("lora", {}))
        if "targets" in lora_values:
            lora_values["targets"] = tuple(lora_values["targets"])
        top = _known(cls, d)
        top.pop("data", None)
        top.pop("lora", None)
        return cls(data=data, lora=LoRAConfig(**lora_values), **top)

    def with_changes(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


# What a run's checkpoint and splits were made with: a resumed run must keep these (the tensor
# shapes, the meaning of the weights, which rows are test rows). Everything else (epochs, batch
# size, learning rate, device, ...) may change when a run is continued or extended.
RESUME_FIXED: tuple[str, ...] = (
    "model",
    "seed",
    "lora.rank",
    "lora.alpha",
    "lora.targets",
    "lora.top_blocks",
    "data.source",
    "data.text_column",
    "data.label_column",
    "data.balance",
    "data.drop_duplicates",
    "data.train_fraction",
    "data.val_fraction",
    "data.max_rows",
)


def resume_problems(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    """The settings in ``wanted`` that a run made with ``saved`` cannot be continued with."""
    problems = []
    for path in RESUME_FIXED:
        old, new = _field(saved, path), _field(wanted, path)
        if not _same_setting(old, new):
            problems.append(f"{path.split('.')[-1].replace('_', ' ')} {new!r} (the run used {old!r})")
    return problems


def _field(cfg: TrainConfig, path: str) -> Any:
    value: Any = cfg
    for name in path.split("."):
        value = getattr(value, name)
    return value


def _same_setting(old: Any, new: Any) -> bool:
    """Equal, or two spellings of the same folder or file (relative and absolute paths)."""
    if old == new:
        return True
    if isinstance(old, str) and isinstance(new, str) and os.path.exists(old) and os.path.exists(new):
        try:
            return os.path.samefile(old, new)
        except OSError:
            return False
    return False


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
