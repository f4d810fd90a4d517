"""Does ``torch.compile`` pay for a training step? Eager and compiled, side by side, same batches.

    python benchmarks/compile_probe.py CHECKPOINT_FOLDER [--device cuda] [--steps 40]

A probe for deciding whether to offer compilation, not a product feature: it prints the compile
time and the median step time of each, on the SMS training split's real lengths (which vary
from batch to batch, so the compiled model is built with dynamic shapes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.bench import BenchConfig, machine, workload
from workbench.core.device import pick_device, pick_precision
from workbench.core.training import train_step


def step_times(model, batches, device, precision, steps: int) -> tuple[float, list[float]]:
    """Seconds for the first step (compilation, for a compiled model) and each later step."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    times = []
    for _ in range(steps + 1):
        batch = next(batches)
        machine.sync(device)
        start = time.perf_counter()
        train_step(model, optimizer, [batch], device, precision)
        machine.sync(device)
        times.append(time.perf_counter() - start)
    return times[0], times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    cfg = BenchConfig(model=args.checkpoint, device=args.device, precision=args.precision)
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    model, checkpoint = workload.build_bench_model(cfg, 2)
    model.to(device)
    data = workload.load_bench_data(cfg, checkpoint, model.config.n_positions)
    print(f"{device} {precision}, {data.source}")
    for name, candidate in (("eager", model), ("compiled", torch.compile(model, dynamic=True))):
        first, rest = step_times(
            candidate, workload.training_batches(data.train, cfg.train_config()), device, precision, args.steps
        )
        later = rest[len(rest) // 2 :]  # after any recompilations for new shapes
        print(
            f"{name:<9} first step {first:7.2f} s; median step {1000 * statistics.median(rest):7.2f} ms, "
            f"second half {1000 * statistics.median(later):7.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
