"""Readings of the machine itself: its matmul ceiling, this process's peak memory, the load.

The throughput is set against the machine's own fp32 matrix-multiply rate, measured in the same
run, to show how much of the hardware a training step uses (see ``flops_per_token``).
"""

from __future__ import annotations

import math
import os
import sys
import time

import torch

from ..core.config import LoRAConfig, ModelConfig

# --------------------------------------------------------------------------- the ceiling


def flops_per_token(config: ModelConfig, lora: LoRAConfig) -> float:
    """Matmul FLOPs one real token costs in a frozen-base LoRA training step.

    A weight multiply-add is 2 FLOPs. The forward pass costs 2·P per token (P: the blocks' matmul
    weights, ``n_layer * block_matmul_weights``).
    Backward through a frozen layer needs only the gradient for its input (one more matmul with
    the same weight, 2·P), not the one for its weight (the third matmul full fine-tuning pays,
    which is where the familiar 6·P comes from). So a step costs 4·P per token when every block is
    adapted; blocks below the lowest adapted one run forward only. LoRA's own matmuls, the head
    and attention's T² scores are left out: at rank 16 and ~30 tokens they are a few per cent.
    """
    per_block = config.block_matmul_weights
    adapted = len(lora.blocks(config.n_layer))
    return 2.0 * per_block * config.n_layer + 2.0 * per_block * adapted


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 3) -> float:
    """Best GFLOP/s of an n x n x n matmul: what this device's matrix units can reach."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # first call picks kernels
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a timer read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- memory


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (Linux: VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process (since the last reset, on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource  # Unix only
    except ImportError:  # Windows: the peak working set
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB elsewhere


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load_average() -> tuple[float, float, float]:
    """The system's run-queue length (0s where the OS does not say): above the core count, other
    processes took time from the measurement."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return (0.0, 0.0, 0.0)
