"""``workbench bench``: how fast training and classification run on this machine, and the
side-by-side comparison with transformers + PEFT (``compare_hf_peft``).

A developer's tool beside the core, not part of it: it times the core's own training and
classification code, and the core never imports it.

    config           BenchConfig (what to measure), BenchResult (the figures)
    workload         the data's token lengths and the model the steps run on
    machine          matmul ceiling, peak memory, load average
    run              run_bench: the timed phases
    report           the printed table
    compare_hf_peft  the same workload through transformers + PEFT, in worker processes
"""

from .config import SYNTHETIC, BenchConfig, BenchResult
from .report import format_result
from .run import run_bench

__all__ = ["SYNTHETIC", "BenchConfig", "BenchResult", "format_result", "run_bench"]
