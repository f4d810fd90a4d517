"""How large anything read from a file may be, before it sizes an allocation or a loop.

A 130 KB adapter whose metadata claims ``n_layer = 10**9`` once made the workbench build a billion
modules until the kernel killed it. Every size read from a file (model config, adapter metadata,
PEFT config, dataset labels) is checked against these bounds first, by the one validation
function of that kind of file (``ModelConfig.validate``, ``LoRAConfig.validate``,
``adapters._metadata_problems``, ``peft_io._check_supported``).

The bounds are GPT-2's real ranges with wide headroom for home-made GPT-2-shaped checkpoints. The
released sizes reach 48 layers, width 1600, 25 heads, a 1024-token context and 50,257 tokens
(Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", table 2).
"""

from __future__ import annotations

import math

MAX_LAYERS = 128  # gpt2-xl: 48
MAX_WIDTH = 8192  # n_embd; gpt2-xl: 1600
MAX_HEADS = 256  # gpt2-xl: 25
MAX_POSITIONS = 32_768  # context length; GPT-2: 1024
MAX_VOCABULARY = 1_000_000  # GPT-2: 50,257
MAX_RANK = 1600  # LoRA r: GPT-2 XL's width (rank <= width); the paper's largest is 64 (Hu et al. 2021, table 6)
MAX_LABELS = 1000  # classes of a classifier; more is a text column chosen as the labels
MAX_LABEL_CHARS = 1000  # one label name
MAX_NAME_CHARS = 4096  # a base model's name or folder path (PATH_MAX on Linux)
MAX_SHORT_TEXT_CHARS = 200  # creation time, package version, PEFT type, bias mode …
MAX_METADATA_CHARS = 4 * 2**20  # an adapter's JSON metadata; 1000 labels of 1000 characters fit
MAX_PATTERN_CHARS = 512  # a PEFT target_modules regular expression
MAX_LIST_ITEMS = 1000  # target_modules, layers_to_transform, modules_to_save lists


def label_names_problem(names: object) -> str | None:
    """The one rule for a classifier's label names, wherever they come from (a dataset column,
    adapter metadata, a PEFT folder's workbench.json): 2 to MAX_LABELS different texts of at most
    MAX_LABEL_CHARS characters."""
    if not isinstance(names, (list, tuple)):
        return f"label names must be a list of texts, got {shown(names)}"
    if not 2 <= len(names) <= MAX_LABELS:
        return f"a classifier has 2 to {MAX_LABELS:,} labels, not {len(names):,}"
    if not all(isinstance(name, str) for name in names):
        return "label names must all be texts"
    longest = max(len(name) for name in names)
    if longest > MAX_LABEL_CHARS:
        return f"a label name is {longest:,} characters long; at most {MAX_LABEL_CHARS:,} are allowed"
    if len(set(names)) != len(names):
        return "label names must differ from each other"
    return None


def whole_number_problem(name: str, value: object, low: int, high: int) -> str | None:
    """A message when ``value`` is not an ``int`` in [low, high] (``True`` is not a number here,
    nor is ``64.0``: JSON floats reach ``nn.Linear`` as floats and fail there)."""
    if type(value) is not int:
        return f"{name} must be a whole number, got {shown(value)}"
    if not low <= value <= high:
        return f"{name} must be from {low:,} to {high:,}, got {shown(value)}"
    return None


def real_number_problem(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> str | None:
    """A message when ``value`` is not a finite int or float in [low, high] (or (low, high])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be a number, got {shown(value)}"
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        return f"{name} must be a finite number, got {shown(value)}"
    if number < low or number > high or (low_open and number == low):
        bounds = [f"above {low:g}" if low_open else f"at least {low:g}"]
        bounds += [f"at most {high:g}"] if math.isfinite(high) else []
        return f"{name} must be {' and '.join(bounds)}, got {shown(value)}"
    return None


def text_problem(name: str, value: object, max_chars: int) -> str | None:
    """A message when ``value`` is not a string of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        return f"{name} must be text, got {shown(value)}"
    if len(value) > max_chars:
        return f"{name} is {len(value):,} characters long; at most {max_chars:,} are allowed"
    return None


def shown(value: object, limit: int = 40) -> str:
    """A value as a message quotes it: itself when short, else its kind (a huge int is never
    turned into digits: that alone can take seconds, and Python refuses past 4,300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return "a number too large to show"
    if isinstance(value, (bool, int, float, str, type(None))):
        text = repr(value)
        if len(text) <= limit:
            return text
    kinds = {dict: "a JSON object", list: "a JSON list", tuple: "a JSON list", str: "a long text"}
    return kinds.get(type(value), f"a {type(value).__name__}")
