"""``--precision auto`` by measurement: time the model's own matmuls in fp32 and bf16, keep the faster.

CPU flags do not say whether bf16 pays. Measured side by side (issue 10): on one Xeon with
AVX512-BF16 bf16 autocast trained at 0.54x the speed of fp32, on another machine with the same
flag bf16 matmuls ran 4.5x faster; on an H200, GPT-2 small at batch 8 trained faster in fp32.
A bf16 run stores the frozen weights in bf16 once (``model.store_frozen_weights``; before that,
autocast cast every frozen fp32 weight to bf16 on every call, a cost that could eat what the
faster matmul saves). So the first time a device is used, the four linear layers of one GPT-2
block at the model's width run forward and backward on a batch of 8 x 32 tokens, exactly as
training runs them (fp32, or bf16-stored weights under autocast), for a few tenths of a second;
the verdict is cached per device, PyTorch version and width in the user cache (``precision.json``).

On a CPU the probe runs on one thread. Whether bf16 pays is a property of the core's instruction
set (AMX tiles, AVX512-BF16 dot products, or emulation), and one thread measures it steadily: on
the shared 2-core build machine, four 2-thread probes gave bf16/fp32 speed ratios from 0.66 to
2.01, because an OpenMP barrier waits for whichever thread the scheduler paused; four 1-thread
probes gave 2.2 to 3.7 (AMX). The 1-thread pass also finished sooner there (63 ms against 170-500).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from .errors import WorkbenchError
from .fileio import write_atomically
from .paths import cache_dir

CACHE_FILE = "precision.json"
CACHE_FORMAT = 2  # 2: bf16 timed with bf16-stored weights, as training now runs it
# A default training batch of SMS-length messages (mean 25 tokens; length grouping pads a batch to
# about its longest).
PROBE_BATCH, PROBE_TOKENS = 8, 32
PROBE_MIN_REPEATS, PROBE_MAX_REPEATS = 2, 20
PROBE_BUDGET_S = 0.1  # timed repetitions beyond the minimum stop after this; warm-up comes on top
# bf16 rounds every activation to 8 bits of mantissa; it must win clearly, not within timing noise.
BF16_MARGIN = 1.1

_verdicts: dict[str, PrecisionVerdict] = {}  # this process's verdicts, by cache key
_unmeasured: set[str] = set()  # keys known_precision found in no cache (until this process measures)


@dataclass(frozen=True)
class PrecisionVerdict:
    """One measurement: the block's matmuls in each precision, the fastest repetition of each."""

    fp32_ms: float
    bf16_ms: float
    measured: str  # when (UTC, ISO 8601)

    @property
    def speedup(self) -> float:
        """bf16's speed as a multiple of fp32's (above 1: bf16 is faster)."""
        return self.fp32_ms / self.bf16_ms if self.bf16_ms > 0 else 0.0

    @property
    def precision(self) -> str:
        return "bf16" if self.speedup >= BF16_MARGIN else "fp32"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "fp32" or "bf16"
    reason: str  # for the log: "bf16 0.73x the speed of fp32 here: using fp32"


def choose_precision(requested: str, device: torch.device, width: int = 768) -> PrecisionChoice:
    """The precision to run in, and why. ``fp32``/``bf16`` are taken as asked; ``auto`` measures
    (once per device, PyTorch version and model width, then cached)."""
    if requested in ("fp32", "bf16"):
        return PrecisionChoice(requested, f"{requested} as asked")
    if device.type == "cuda" and not _cuda_has_native_bf16(device):
        return PrecisionChoice("fp32", "this GPU has no native bf16: using fp32")
    try:
        verdict = precision_verdict(device, width)
    except RuntimeError as exc:  # bf16 autocast unsupported here (an old MPS, an odd build)
        return PrecisionChoice("fp32", f"bf16 does not run here ({str(exc).splitlines()[0][:80]}): using fp32")
    too_little = ", too little to give up fp32's precision" if 1 < verdict.speedup < BF16_MARGIN else ""
    return PrecisionChoice(
        verdict.precision,
        f"bf16 {verdict.speedup:.2f}x the speed of fp32 here{too_little} "
        f"(measured {verdict.measured[:10]}, width {width}): using {verdict.precision}",
    )


def known_precision(requested: str, device: torch.device, width: int = 768) -> PrecisionChoice | None:
    """``choose_precision`` without measuring: None when ``auto`` has no verdict for this device yet.
    For callers on a GUI thread (the memory estimate, the precision note), which call it on every
    settings change: the cache file is read once per key and process, a verdict kept, a miss
    remembered until this process measures (one measured by another process shows after a restart)."""
    if requested == "auto":
        key = cache_key(device, width)
        if key not in _verdicts:
            if key in _unmeasured:
                return None
            cached = _read_cache().get(key)
            if cached is None:
                _unmeasured.add(key)
                return None
            _verdicts[key] = cached
    return choose_precision(requested, device, width)


def precision_verdict(device: torch.device, width: int) -> PrecisionVerdict:
    """This process's verdict, else the cached one, else a fresh measurement (then cached)."""
    key = cache_key(device, width)
    if key in _verdicts:
        return _verdicts[key]
    verdict = _read_cache().get(key)
    if verdict is None:
        fp32_ms, bf16_ms = measure(device, width)
        verdict = PrecisionVerdict(fp32_ms, bf16_ms, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        _write_cache(key, verdict)
    _verdicts[key] = verdict
    _unmeasured.discard(key)
    return verdict


def measure(device: torch.device, width: int, rows: int | None = None) -> tuple[float, float]:
    """Milliseconds for a training step's matmuls in one GPT-2 block's four linear layers (qkv,
    attention output, MLP up, MLP down) on ``rows`` tokens: forward, and backward to the input as
    LoRA training needs it (the frozen weights take no gradient). In fp32, and under bf16 autocast
    with the weights stored in bf16 as a bf16 run stores them; the fastest of alternating
    repetitions each, after one warm-up (kernel choice, allocator)."""
    rows = rows or probe_rows(width)
    g = torch.Generator().manual_seed(0)
    shapes = [(width, 3 * width), (width, width), (width, 4 * width), (4 * width, width)]  # (in, out)
    fp32_weights = [(torch.randn(n_out, n_in, generator=g) * 0.02).to(device) for n_in, n_out in shapes]
    weights = {"fp32": fp32_weights, "bf16": [w.to(torch.bfloat16) for w in fp32_weights]}
    inputs = {n_in: torch.randn(rows, n_in, generator=g).to(device).requires_grad_() for n_in, _ in shapes}

    def one_pass(precision: str) -> float:
        _synchronize(device)
        start = time.perf_counter()
        for weight in weights[precision]:
            x = inputs[weight.shape[1]]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                y = F.linear(x, weight)
            torch.autograd.grad(y, x, torch.ones_like(y))  # training's backward: the input's gradient
        _synchronize(device)
        return time.perf_counter() - start

    # One thread on a CPU: see the module docstring (one core's ratio, free of scheduling noise).
    best = fastest_alternating(one_pass, ("fp32", "bf16"), (PROBE_MIN_REPEATS, PROBE_MAX_REPEATS), device.type == "cpu")
    return best["fp32"], best["bf16"]


def fastest_alternating(
    one_pass: Callable[[str], float], forms: tuple[str, ...], repeats: tuple[int, int], one_thread: bool
) -> dict[str, float]:
    """Milliseconds of the fastest ``one_pass(form)`` for each form, timed in turns (a burst of
    load from elsewhere hits every form alike) after one warm-up pass each (kernel choice,
    allocator): at least ``repeats[0]`` turns, more until PROBE_BUDGET_S has passed, at most
    ``repeats[1]``. The probes of bf16 (here) and of int8 classification (int8.py) share it."""
    threads = torch.get_num_threads()
    if one_thread:
        torch.set_num_threads(1)
    try:
        for form in forms:
            one_pass(form)
        times: dict[str, list[float]] = {form: [] for form in forms}
        started = time.perf_counter()
        while len(times[forms[0]]) < repeats[1]:
            for form in forms:
                times[form].append(one_pass(form))
            if len(times[forms[0]]) >= repeats[0] and time.perf_counter() - started > PROBE_BUDGET_S:
                break
    finally:
        torch.set_num_threads(threads)
    return {form: min(values) * 1e3 for form, values in times.items()}


def probe_rows(width: int) -> int:
    """8 x 32 tokens up to GPT-2 small's width; fewer at larger widths so every size probes in
    about the same time (the work grows with width squared)."""
    tokens = PROBE_BATCH * PROBE_TOKENS
    return max(32, min(tokens, tokens * 768 * 768 // (width * width)))


def cache_key(device: torch.device, width: int) -> str:
    return f"{device_name(device)} | torch {torch.__version__} | width {width}"


def device_name(device: torch.device) -> str:
    """What the verdict belongs to: the GPU's or the CPU's model name."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda: {torch.cuda.get_device_name(index)}"
    if device.type == "cpu":
        return f"cpu: {_cpu_model_name()}"
    return device.type


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cuda_has_native_bf16(device: torch.device) -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older PyTorch: no emulation to exclude
        return torch.cuda.is_bf16_supported()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --------------------------------------------------------------------------- the cache file


def _read_cache() -> dict[str, PrecisionVerdict]:
    """The cached verdicts; an unreadable or damaged file counts as empty (measure again)."""
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text(encoding="utf-8"))
        if data.get("format") != CACHE_FORMAT:
            return {}
        return {
            str(key): PrecisionVerdict(float(v["fp32_ms"]), float(v["bf16_ms"]), str(v["measured"]))
            for key, v in data["verdicts"].items()
            if float(v["fp32_ms"]) > 0 and float(v["bf16_ms"]) > 0
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError, WorkbenchError):  # re-measure
        return {}


def _write_cache(key: str, verdict: PrecisionVerdict) -> None:
    """Add one verdict to the file, atomically; a cache that cannot be written is only slower."""
    verdicts = _read_cache()
    verdicts[key] = verdict
    payload = {
        "format": CACHE_FORMAT,
        "verdicts": {
            k: {"fp32_ms": round(v.fp32_ms, 4), "bf16_ms": round(v.bf16_ms, 4), "measured": v.measured}
            for k, v in verdicts.items()
        },
    }
    try:
        write_atomically(cache_dir() / CACHE_FILE, json.dumps(payload, indent=1).encode("utf-8"))
    except (WorkbenchError, OSError):
        pass
