"""The GPU launch-overhead levers, each against its absence, side by side in one process.

    python benchmarks/gpu_levers_probe.py CHECKPOINT_FOLDER [--device cuda] [--steps 40] [--no-graphs]

Training variants (each its own copy of the model, the same examples, steps interleaved and the
order rotated; median ms per step):

- ``plain``: widths padded to each batch's longest row, AdamW's foreach kernels (before issue 13);
- ``rounded``: widths rounded up to a multiple of 8 (``device.padding_multiple``);
- ``fused``: the fused AdamW (``training.make_optimizer``) on unrounded widths;
- ``both``: what ``workbench train`` now does on CUDA;
- ``graphs`` (an experiment, not in the product): ``both`` with each step captured once per
  width as a CUDA graph (forward, backward and the optimizer step; Nvidia's "whole network
  capture") and replayed;

each in fp32 and bf16 (frozen weights stored in bf16), plus ``bf16-autocast`` (fp32 weights
cast by autocast every step, as before issue 13). Then evaluation (``predict_probabilities``,
449 messages) in batches of 8 against ``device.evaluation_batch_size``. On a CPU (``--device
cpu``, for a dry run) the graph variant is skipped.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.bench import BenchConfig, machine, workload
from workbench.core.config import TrainConfig
from workbench.core.device import autocast, evaluation_batch_size, pick_device
from workbench.core.evaluate import predict_probabilities
from workbench.core.model import store_frozen_weights
from workbench.core.training import epoch_batches, make_optimizer, train_step


class Variant:
    def __init__(self, name, model, precision, device, rounded: bool, fused: bool, graphs: bool, cfg: TrainConfig):
        self.name, self.model, self.precision, self.device = name, model, precision, device
        self.rounded, self.graphs = rounded, graphs
        if precision == "bf16" and name != "bf16-autocast":
            store_frozen_weights(model, "bf16")
        params = [p for p in model.parameters() if p.requires_grad]
        if fused:
            self.optimizer = make_optimizer(model, cfg, device)
            if graphs:
                self.optimizer = torch.optim.AdamW(
                    params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True, capturable=True
                )
        else:
            self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        self.captured: dict[int, tuple] = {}
        self.pool = None
        self.times: list[float] = []
        self.failed = ""

    def step(self, batch) -> None:
        machine.sync(self.device)
        start = time.perf_counter()
        if self.graphs:
            self._replay(batch)
        else:
            train_step(self.model, self.optimizer, [batch], self.device, self.precision)
        machine.sync(self.device)
        self.times.append(time.perf_counter() - start)

    # --- the CUDA graph experiment -------------------------------------------------------------

    def _body(self, ids, lengths, labels):
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.zero_()  # in the graph: replays must not accumulate
        with autocast(self.device, self.precision):
            logits = self.model(ids, lengths)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        self.optimizer.step()
        return loss

    def _replay(self, batch) -> None:
        width = batch.input_ids.shape[1]
        if width not in self.captured:
            self.model.train()
            static = tuple(t.to(self.device) for t in (batch.input_ids, batch.lengths, batch.labels))
            if not any(p.grad is not None for p in self.model.parameters()):
                self._body(*static)  # gradients and optimizer state allocated outside any graph
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up on a side stream, as the capture needs
                    self._body(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self._body(*static)
            self.pool = graph.pool()
            self.captured[width] = (graph, static)
        graph, static = self.captured[width]
        for target, source in zip(static, (batch.input_ids, batch.lengths, batch.labels)):
            target.copy_(source, non_blocking=True)
        graph.replay()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--no-graphs", action="store_true")
    args = parser.parse_args()
    bench = BenchConfig(model=args.checkpoint, device=args.device)
    device = pick_device(bench.device)
    cfg = bench.train_config()
    base, checkpoint = workload.build_bench_model(bench, 2)
    context = base.config.n_positions
    data = workload.load_bench_data(bench, checkpoint, context)
    graphs = device.type == "cuda" and not args.no_graphs
    print(f"{device}, {data.source}, {args.steps} steps per variant, graphs {'on' if graphs else 'off'}", flush=True)

    variants = []
    for precision in ("fp32", "bf16"):
        plan = [("plain", False, False), ("rounded", True, False), ("fused", False, True), ("both", True, True)]
        plan += [("graphs", True, True)] if graphs else []
        for name, rounded, fused in plan:
            model = copy.deepcopy(base).to(device)
            graphed = name == "graphs"
            variants.append(Variant(f"{precision}-{name}", model, precision, device, rounded, fused, graphed, cfg))
    variants.append(Variant("bf16-autocast", copy.deepcopy(base).to(device), "bf16", device, True, True, False, cfg))

    # The same examples for all: one epoch order, widths rounded or not per variant.
    rounded = epoch_batches(data.train, cfg, 0, device, context)
    plain = epoch_batches(data.train, cfg, 0)
    for i in range(min(args.steps + 3, len(plain))):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        for v in order:
            if v.failed:
                continue
            try:
                v.step(rounded[i] if v.rounded else plain[i])
            except Exception as exc:  # an experiment: report and go on with the others
                v.failed = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
        if i == 2:
            for v in variants:
                v.times.clear()  # the first steps: warm-up, graph capture
    base_ms = {}
    for v in variants:
        if v.failed:
            print(f"{v.name:<16} FAILED {v.failed[:200]}")
            continue
        ms = 1000 * statistics.median(v.times)
        base_ms.setdefault(v.precision, ms)
        extra = f", {len(v.captured)} graphs" if v.graphs else ""
        ratio = base_ms[v.precision] / ms
        print(f"{v.name:<16} {ms:7.2f} ms/step (median of {len(v.times)}), {ratio:.2f}x plain{extra}")

    eval_ids = data.eval.token_ids
    model = copy.deepcopy(base).to(device)
    for precision in ("fp32", "bf16"):
        store_frozen_weights(model, precision)
        for size in (cfg.batch_size, evaluation_batch_size(cfg.batch_size, device), 64):
            predict_probabilities(model, eval_ids[:size], size, device, precision)  # warm-up
            machine.sync(device)
            start = time.perf_counter()
            predict_probabilities(model, eval_ids, size, device, precision)
            machine.sync(device)
            seconds = time.perf_counter() - start
            print(f"eval {precision} batch {size:>3}: {len(eval_ids) / seconds:8.1f} examples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
