"""Choosing where and in what precision to run: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache

import torch

from .errors import ConfigError
from .precision import choose_precision


@dataclass(frozen=True)
class DeviceInfo:
    """One place the model can run, as the device picker lists it."""

    key: str  # what --device takes: "cuda:0", "mps", "cpu"
    name: str  # what a person reads: "NVIDIA GeForce RTX 4070 (8.0 GB)"


def available_devices() -> list[DeviceInfo]:
    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gb = props.total_memory / 1024**3
            devices.append(DeviceInfo(f"cuda:{i}", f"{props.name} ({gb:.1f} GB)"))
    if torch.backends.mps.is_available():
        devices.append(DeviceInfo("mps", "Apple GPU (MPS)"))
    devices.append(DeviceInfo("cpu", f"CPU ({platform.processor() or platform.machine()})"))
    return devices


def pick_device(requested: str = "auto") -> torch.device:
    """The device for ``requested`` ("auto", "cpu", "cuda", "cuda:1", "mps"), checked to exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but this PyTorch build sees no NVIDIA GPU; use --device auto or cpu")
    if requested.startswith("cuda:"):
        index, count = requested.removeprefix("cuda:"), torch.cuda.device_count()
        if not index.isdigit() or int(index) >= count:
            present = ", ".join(f"cuda:{i}" for i in range(count))
            raise ConfigError(f"There is no GPU {requested[:20]!r}: this machine has {count} ({present})")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("Apple MPS was requested but is not available here; use --device auto or cpu")
    try:
        return torch.device(requested)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {requested!r}") from exc


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"CUDA: {torch.cuda.get_device_name(index)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def pick_precision(requested: str, device: torch.device, width: int = 768) -> str:
    """ "bf16" or "fp32": as asked, or for "auto" whichever ran the model's matmuls faster here
    (measured once per device; see precision.py)."""
    return choose_precision(requested, device, width).precision


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether the CPU advertises AVX512-BF16 or AMX. Shown by ``bench`` only; it never decides the
    precision, because the flag does not tell whether bf16 is faster (precision.py measures)."""
    flags = _cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def padding_multiple(device: torch.device) -> int:
    """What batch widths are rounded up to on this device (``data.pad_batch``).

    On CUDA a small model's step is bound by kernel launches, not arithmetic (GPT-2 small, batch
    8, H200: 4% of the matmul rate), so a few padding tokens cost nothing there, while widths in
    steps of 8 repeat: the same shapes for cuBLAS's heuristics, the caching allocator and CUDA
    graphs. On a CPU every padding token costs its full share of the work, so nothing is rounded.
    """
    return 8 if device.type == "cuda" else 1


def evaluation_batch_size(batch_size: int, device: torch.device) -> int:
    """Rows per forward pass when only predicting (evaluation, test scores).

    Inference keeps no activations for backward, so 4x training's rows take far less memory than
    one training step; on CUDA that is 4x fewer launches for the same work. On a CPU batches are
    compute-bound and bigger ones only pad more, so the training batch size stays.
    """
    return 4 * batch_size if device.type == "cuda" else batch_size


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision; fp32 gives a disabled one."""
    device_type = "cuda" if device.type == "cuda" else "cpu" if device.type == "cpu" else device.type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


# How PyTorch's allocators word a failed allocation: CUDA's, MPS's, and the CPU's
# ("DefaultCPUAllocator: can't allocate memory: you tried to allocate 256000000000 bytes").
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation on any device (Python's own MemoryError included)."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(words in str(exc).lower() for words in _OUT_OF_MEMORY)
