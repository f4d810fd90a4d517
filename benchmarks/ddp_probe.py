"""Time training steps alone and under torchrun, for the same global batch.

    python benchmarks/ddp_probe.py CHECKPOINT --batch-size 8 --grad-accum 2              # one process
    torchrun --nproc-per-node 2 benchmarks/ddp_probe.py CHECKPOINT --batch-size 8        # two, 8 x 2 too

Runs ``training.train`` itself on the SMS collection (``--data``, default the downloaded copy) and
asks it to stop after ``--steps`` steps, so no test scoring is timed. Rank 0 prints one JSON line:
the processes, the global batch, the median seconds per step (the first two left out as warm-up)
and the examples per second that gives. Needs PYTHONPATH to hold the repository.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading

from workbench.core import distributed
from workbench.core import events as ev
from workbench.core.config import SMS_SPAM, DataConfig, TrainConfig
from workbench.core.training import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=SMS_SPAM)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    cfg = TrainConfig(
        model=args.checkpoint,
        data=DataConfig(source=args.data),
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        eval_every=10**9,
        device=args.device,
        precision=args.precision,
    )
    stop = threading.Event()
    elapsed, started = [], None
    for event in train(cfg, stop=stop):
        if isinstance(event, ev.RunStarted):
            started = event
        elif isinstance(event, ev.StepDone):
            elapsed.append(event.elapsed_s)
            if len(elapsed) >= args.steps:
                stop.set()
        elif isinstance(event, ev.TrainingFailed):
            print(event.message, file=sys.stderr)
            return 1
    per_step = statistics.median(b - a for a, b in zip(elapsed[1:], elapsed[2:]))
    examples = args.batch_size * args.grad_accum * distributed.world_size()
    if distributed.is_main():
        result = {
            "processes": started.processes,
            "device": started.device,
            "precision": started.precision,
            "global_batch": examples,
            "steps_timed": len(elapsed) - 2,
            "s_per_step_median": round(per_step, 4),
            "examples_per_s": round(examples / per_step, 2),
        }
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
