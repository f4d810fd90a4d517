"""What ``workbench bench`` measures (BenchConfig) and what it reports (BenchResult)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.config import MODEL_REPOS, PRECISIONS, SMS_SPAM, LoRAConfig, TrainConfig
from ..core.errors import ConfigError

SYNTHETIC = "synthetic"  # BenchConfig.data value: synthetic lengths, no file needed


@dataclass(frozen=True)
class BenchConfig:
    """What to measure, and on what."""

    model: str = "gpt2"  # a size name (gpt2 … gpt2-xl) or a checkpoint folder
    # Use random weights of the named size's architecture when it is not downloaded: a step takes
    # the same time whatever the values. A cached checkpoint is still used when there is one.
    random_init: bool = False
    # "sms-spam": the downloaded collection's balanced training split (synthetic lengths shaped
    # like it when it is not downloaded); a CSV/TSV path (the SMSSpamCollection file itself is
    # read as such); or "synthetic".
    data: str = SMS_SPAM
    # A folder with vocab.json + merges.txt or gpt2.tiktoken, for real token lengths; None: the
    # checkpoint's own (or tiktoken's cached "gpt2").
    tokenizer: str | None = None
    batch_size: int = 8
    steps: int = 20  # timed training steps
    warmup: int = 3  # untimed steps first (allocator, oneDNN kernel choice, CUDA context)
    eval_examples: int = 128  # examples classified in batches for the evaluation throughput
    classify_runs: int = 30  # single-message classifications timed for the median and p95
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16, as for training
    length_grouping: int = 50  # TrainConfig.length_grouping: 0 pads batches of random lengths
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank, alpha, targets, top blocks
    seed: int = 123  # batch order, LoRA initialisation, synthetic lengths
    matmul_size: int = 2048  # n of the n x n x n fp32 matmul that measures the ceiling

    def validate(self) -> list[str]:
        problems = []
        if not self.model:
            problems.append("choose a model")
        elif self.model not in MODEL_REPOS and not os.path.isdir(self.model):
            problems.append(f"model {self.model!r} is neither a GPT-2 size ({', '.join(MODEL_REPOS)}) nor a folder")
        if self.data not in (SMS_SPAM, SYNTHETIC) and not os.path.isfile(self.data):
            problems.append(f"data {self.data!r} is not sms-spam, synthetic or an existing file")
        for name in ("batch_size", "steps", "eval_examples", "classify_runs", "matmul_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name.replace('_', ' ')} must be a whole number ≥ 1")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            problems.append("warmup must be a whole number ≥ 0")
        if self.length_grouping < 0:
            problems.append("length grouping must be ≥ 0")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}")
        problems += self.lora.validate()
        return problems

    def check(self) -> None:
        problems = self.validate()
        if problems:
            raise ConfigError("Invalid benchmark settings: " + "; ".join(problems))

    def train_config(self) -> TrainConfig:
        """The training settings a real run with these choices would use."""
        return TrainConfig(
            model=self.model,
            lora=self.lora,
            batch_size=self.batch_size,
            length_grouping=self.length_grouping,
            device=self.device,
            precision=self.precision,
            seed=self.seed,
        )


@dataclass(frozen=True)
class BenchResult:
    """One benchmark's measurements; ``to_dict()`` is what ``--json`` prints."""

    # training (timed steps only)
    train_examples_per_s: float
    train_tokens_per_s: float  # real (non-padding) tokens
    train_ms_per_step: float  # mean
    train_ms_per_step_median: float
    padding_fraction: float  # pad tokens / all tokens in the timed batches
    epoch_padding_fraction: float  # the same over a whole epoch's batches (no sampling noise)
    mean_batch_length: float  # tokens per row after padding, timed batches
    # evaluation and classification
    eval_examples_per_s: float
    classify_ms_median: float
    classify_ms_p95: float
    classify_tokens: int
    classify_packed: bool  # weights reordered for oneDNN, as the classify box does on x86 CPUs
    # classify-as-you-type: one more token after the message, its earlier keys/values reused (median)
    keystroke_ms: float
    # the same two in int8 (Classifier.from_adapter(quantize="int8")); None where int8 cannot run
    classify_int8_ms: float | None
    classify_int8_ms_p95: float | None
    keystroke_int8_ms: float | None
    int8_auto: bool  # whether classify with --int8 unset would take int8 here (int8.int8_verdict)
    # memory
    peak_rss_mb: float  # peak resident memory over training, evaluation and classification
    load_peak_rss_mb: float  # peak resident memory up to the model being built
    peak_rss_scope: str  # "after model load" where the OS lets the peak be reset, else "process"
    cuda_max_allocated_mb: float | None
    # the hardware ceiling
    matmul_gflops_fp32: float
    flops_per_token: float  # see flops_per_token()
    ceiling_tokens_per_s: float  # real tokens/s if every FLOP ran at the matmul rate
    ceiling_fraction: float  # train_tokens_per_s / ceiling_tokens_per_s
    # what was measured
    precision: str
    device: str
    threads: int
    cpu_fast_bf16: bool
    model: str
    weights: str  # "checkpoint <folder>" or "random init"
    n_params: int
    trainable_params: int
    data_source: str
    n_train: int
    mean_tokens: float  # real tokens per training example
    batch_size: int
    steps: int
    warmup: int
    length_grouping: int
    torch_version: str
    load_average: tuple[float, float, float]  # 1/5/15-minute load at the end: others' work adds noise

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("cuda_max_allocated_mb", "classify_int8_ms", "classify_int8_ms_p95", "keystroke_int8_ms"):
            if d[key] is None:
                del d[key]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
