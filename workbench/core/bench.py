"""How fast training and classification run here: the numbers behind ``workbench bench``.

Everything is timed through the code that real runs use, so a speed-up in the engine shows up
here unchanged: batches come from ``data.iterate_batches`` with the run's length grouping, a step
is ``training.train_step``, evaluation is ``classify.predict_probabilities`` and one message goes
through ``classify.Classifier`` with the adapter merged. Only the model's weights may be random
(``random_init``): the time a step takes does not depend on the values in the matrices.

Lengths are those of the balanced SMS training split (the book's chapter 6 data: 1045 messages,
mean 30 GPT-2 tokens) when the collection and a GPT-2 tokenizer are at hand, else a synthetic
distribution shaped like it; ``BenchResult.data_source`` says which.

The throughput is also set against the machine's own fp32 matrix-multiply rate, measured in the
same run, to show how much of the hardware the step uses (see ``flops_per_token``).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import data as datamod
from . import hub
from .adapters import AdapterInfo
from .classify import Classifier, PackedLinear, pack_weights_for_cpu, predict_probabilities
from .config import MODEL_REPOS, PRECISIONS, DataConfig, LoRAConfig, ModelConfig, TrainConfig
from .device import autocast, cpu_has_fast_bf16, describe, pick_device, pick_precision
from .errors import ConfigError, WorkbenchError
from .lora import apply_lora, build_lora_model, merge_lora
from .model import GPT2Classifier, param_count
from .progress import Progress, raise_if_stopped
from .tokenizer import EOT_ID, load_tokenizer
from .training import EncodedSplit, Prepared, train_step

SYNTHETIC = "synthetic"  # BenchConfig.data value: synthetic lengths, no file needed
LABEL_NAMES = ("ham", "spam")
CLASSIFY_TOKENS = 25  # the single message timed for classify-as-you-type


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
    data: str = datamod.SMS_SPAM
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
        if self.data not in (datamod.SMS_SPAM, SYNTHETIC) and not os.path.isfile(self.data):
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
    # classify-as-you-type: one more token after the message, its earlier keys/values reused
    keystroke_ms_median: float
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
        if d["cuda_max_allocated_mb"] is None:
            del d["cuda_max_allocated_mb"]
        return d

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict())


# --------------------------------------------------------------------------- data


@dataclass
class BenchData:
    """Token ids to train and classify on, and where they came from."""

    train: EncodedSplit
    eval: EncodedSplit
    message: str | None  # the ~25-token message classified alone (None: synthetic ids)
    message_ids: list[int]
    source: str
    tokenizer: Any | None


def load_bench_data(cfg: BenchConfig, checkpoint: Path | None, max_length: int) -> BenchData:
    """The training split's real token ids when the file and a tokenizer are at hand, else synthetic."""
    if cfg.data == SYNTHETIC:
        return synthetic_data(cfg.seed, max_length, "synthetic lengths shaped like the SMS split")
    path = _data_file(cfg.data)
    if path is None:
        return synthetic_data(cfg.seed, max_length, "synthetic lengths (SMS collection not downloaded)")
    tokenizer = _find_tokenizer(cfg.tokenizer, checkpoint)
    if tokenizer is None:
        return synthetic_data(cfg.seed, max_length, "synthetic lengths (no GPT-2 tokenizer found)")
    if path.name == datamod.SMS_SPAM_FILE:
        table = datamod.read_sms_spam(path)  # keeps the book's repeats, as training does
        data_cfg = DataConfig(source=datamod.SMS_SPAM)
    else:
        table = datamod.read_table(path)
        data_cfg = DataConfig(source=str(path))
    splits = datamod.make_splits(table, data_cfg)
    train_ids, _ = datamod.encode_texts(splits.train.texts, tokenizer, max_length)
    eval_texts = splits.val.texts + splits.test.texts
    eval_ids, _ = datamod.encode_texts(eval_texts, tokenizer, max_length)
    # The message closest to 25 tokens stands for one typed into the classify box.
    index = min(range(len(eval_ids)), key=lambda i: (abs(len(eval_ids[i]) - CLASSIFY_TOKENS), i))
    name = "SMS Spam Collection" if table.source == datamod.SMS_SPAM else path.name
    return BenchData(
        train=EncodedSplit(train_ids, list(splits.train.labels), list(splits.train.texts)),
        eval=EncodedSplit(eval_ids, list(splits.val.labels + splits.test.labels), eval_texts),
        message=eval_texts[index],
        message_ids=eval_ids[index],
        source=f"{name}, balanced training split (real token lengths)",
        tokenizer=tokenizer,
    )


def _data_file(data: str) -> Path | None:
    if data != datamod.SMS_SPAM:
        return Path(data)
    cached = datamod.sms_spam_path()  # where `workbench download` puts it
    return cached if cached.is_file() else None


def _find_tokenizer(requested: str | None, checkpoint: Path | None):
    if requested:
        return load_tokenizer(requested)
    try:
        return load_tokenizer(checkpoint)
    except WorkbenchError:
        return None


def synthetic_lengths(n: int, seed: int, max_length: int = 120) -> list[int]:
    """Token counts shaped like the balanced SMS training split (mean ~30, max ≤ 120).

    Half "ham": short and skewed (median 14, mean 19 tokens, so log-normal); half "spam": longer
    and bell-shaped (mean 42, sd 11). Fitted to the real split's GPT-2 token counts.
    """
    rng = random.Random(seed)
    cap = min(120, max_length)
    lengths = []
    for i in range(n):
        x = rng.lognormvariate(math.log(14), 0.78) if i % 2 == 0 else rng.gauss(41.6, 11.0)
        lengths.append(max(1, min(cap, round(x))))
    return lengths


def synthetic_data(seed: int, max_length: int, source: str, n_train: int = 1045, n_eval: int = 449) -> BenchData:
    rng = random.Random(seed + 1)
    lengths = synthetic_lengths(n_train + n_eval, seed, max_length)

    def ids(length: int) -> list[int]:
        return [rng.randrange(EOT_ID) for _ in range(length)]  # never the pad id

    train = [ids(k) for k in lengths[:n_train]]
    held_out = [ids(k) for k in lengths[n_train:]]
    labels = [i % 2 for i in range(n_train + n_eval)]
    return BenchData(
        train=EncodedSplit(train, labels[:n_train], []),
        eval=EncodedSplit(held_out, labels[n_train:], []),
        message=None,
        message_ids=ids(min(CLASSIFY_TOKENS, max_length)),
        source=source,
        tokenizer=None,
    )


def training_batches(train: EncodedSplit, cfg: TrainConfig) -> Iterator[datamod.Batch]:
    """Batches exactly as training forms them (shuffled per epoch, grouped by length), endlessly."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        yield from datamod.iterate_batches(
            train.token_ids,
            train.labels,
            cfg.batch_size,
            pad_id=EOT_ID,
            shuffle=True,
            generator=generator,
            sort_chunk=cfg.length_grouping,
        )
        epoch += 1


def padding_fraction(batches: list[datamod.Batch]) -> float:
    """Pad tokens / all tokens: the share of the work spent on nothing."""
    real = sum(int(b.lengths.sum()) for b in batches)
    total = sum(b.input_ids.numel() for b in batches)
    return 1.0 - real / total if total else 0.0


# --------------------------------------------------------------------------- model


def bench_checkpoint(cfg: BenchConfig) -> Path | None:
    """The checkpoint folder to load, or None for random weights (only with ``random_init``)."""
    if os.path.isdir(cfg.model):
        return Path(cfg.model)
    if cfg.model in MODEL_REPOS and hub.is_cached(cfg.model):
        return hub.resolve_checkpoint(cfg.model)
    if cfg.random_init:
        return None
    raise ConfigError(
        f"{cfg.model} is not downloaded. Run `workbench download {cfg.model}`, or benchmark with "
        "random weights (--random-init): speed does not depend on the weights' values."
    )


def build_bench_model(cfg: BenchConfig, num_classes: int) -> tuple[GPT2Classifier, Path | None]:
    """The LoRA model, from its checkpoint when there is one, else (``random_init``) random."""
    checkpoint = bench_checkpoint(cfg)
    if checkpoint is not None:
        return build_lora_model(checkpoint, cfg.lora, num_classes, cfg.seed), checkpoint
    torch.manual_seed(cfg.seed)
    return apply_lora(GPT2Classifier(ModelConfig.for_size(cfg.model), num_classes), cfg.lora), None


def matmul_params(config: ModelConfig) -> int:
    """Weights of the blocks' four matmuls: qkv 3d², proj d², fc 4d², proj 4d² per block."""
    return 12 * config.n_layer * config.n_embd**2


def flops_per_token(config: ModelConfig, lora: LoRAConfig) -> float:
    """Matmul FLOPs one real token costs in a frozen-base LoRA training step.

    A weight multiply-add is 2 FLOPs. The forward pass costs 2·P per token (P = matmul_params).
    Backward through a frozen layer needs only the gradient for its input (one more matmul with
    the same weight, 2·P), not the one for its weight (the third matmul full fine-tuning pays,
    which is where the familiar 6·P comes from). So a step costs 4·P per token when every block is
    adapted; blocks below the lowest adapted one run forward only. LoRA's own matmuls, the head
    and attention's T² scores are left out: at rank 16 and ~30 tokens they are a few per cent.
    """
    per_block = 12 * config.n_embd**2
    adapted = len(lora.blocks(config.n_layer))
    return 2.0 * per_block * config.n_layer + 2.0 * per_block * adapted


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 3) -> float:
    """Best GFLOP/s of an n x n x n matmul: what this device's matrix units can reach."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # first call picks kernels
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
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


# --------------------------------------------------------------------------- the benchmark


def run_bench(cfg: BenchConfig, progress: Progress | None = None, stop: threading.Event | None = None) -> BenchResult:
    """Measure training, evaluation and single-message classification; see the module docstring.

    ``progress(done, total, message)`` is called between phases and steps; setting ``stop``
    raises ``Cancelled`` at the next one.
    """
    cfg.check()
    report: Callable[[int, int | None, str], None] = progress or (lambda done, total, message="": None)
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    train_cfg = cfg.train_config()

    report(0, None, "Building the model")
    model, checkpoint = build_bench_model(cfg, len(LABEL_NAMES))
    model.to(device)
    config = model.config
    load_peak = peak_rss_mb()
    scope = "after model load" if reset_peak_rss() else "process"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    report(0, None, "Reading the data")
    bench_data = load_bench_data(cfg, checkpoint, config.n_positions)
    prepared = Prepared(
        checkpoint=checkpoint or Path(cfg.model),
        label_names=LABEL_NAMES,
        train=bench_data.train,
        val=bench_data.eval,
        test=bench_data.eval,
        truncated=0,
        max_length=config.n_positions,
        model=model,
        device=device,
        precision=precision,
    )
    n_batches = datamod.count_batches(len(bench_data.train.labels), cfg.batch_size)
    epoch_padding = padding_fraction(list(_take(training_batches(bench_data.train, train_cfg), n_batches)))

    report(0, None, "Measuring the matmul ceiling")
    gflops = [matmul_gflops(device, n=cfg.matmul_size)]

    # Training: the optimizer training builds, steps through train_step.
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    batches = training_batches(bench_data.train, train_cfg)
    total = cfg.warmup + cfg.steps
    for i in range(cfg.warmup):
        raise_if_stopped(stop, "The benchmark")
        report(i, total, f"Warm-up step {i + 1}/{cfg.warmup}")
        train_step(model, optimizer, [next(batches)], prepared)
    timed, seconds = [], []
    for i in range(cfg.steps):
        raise_if_stopped(stop, "The benchmark")
        report(cfg.warmup + i, total, f"Training step {i + 1}/{cfg.steps}")
        batch = next(batches)
        _sync(device)
        start = time.perf_counter()
        train_step(model, optimizer, [batch], prepared)
        _sync(device)
        seconds.append(time.perf_counter() - start)
        timed.append(batch)
    train_time = sum(seconds)
    examples = sum(len(b.labels) for b in timed)
    tokens = sum(int(b.lengths.sum()) for b in timed)
    del optimizer

    report(0, None, "Measuring the matmul ceiling")
    gflops.append(matmul_gflops(device, n=cfg.matmul_size))  # best of both ends of the run: less noise

    raise_if_stopped(stop, "The benchmark")
    report(0, None, "Evaluating")
    eval_ids = (bench_data.eval.token_ids * math.ceil(cfg.eval_examples / len(bench_data.eval.token_ids)))[
        : cfg.eval_examples
    ]
    predict_probabilities(model, eval_ids[: cfg.batch_size], cfg.batch_size, device, precision)  # warm-up
    _sync(device)
    start = time.perf_counter()
    predict_probabilities(model, eval_ids, cfg.batch_size, device, precision)
    _sync(device)
    eval_time = time.perf_counter() - start

    report(0, None, "Classifying one message")
    latencies = classify_latencies(model, bench_data, cfg, device, precision, stop)
    keystrokes = keystroke_latencies(model, bench_data.message_ids, cfg.classify_runs, device, precision)

    ceiling_gflops = max(gflops)
    per_token = flops_per_token(config, cfg.lora)
    ceiling_tokens = ceiling_gflops * 1e9 / per_token
    tokens_per_s = tokens / train_time
    cuda_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    report(total, total, "Done")
    return BenchResult(
        train_examples_per_s=examples / train_time,
        train_tokens_per_s=tokens_per_s,
        train_ms_per_step=1000 * train_time / len(seconds),
        train_ms_per_step_median=1000 * statistics.median(seconds),
        padding_fraction=padding_fraction(timed),
        epoch_padding_fraction=epoch_padding,
        mean_batch_length=statistics.mean(b.input_ids.shape[1] for b in timed),
        eval_examples_per_s=len(eval_ids) / eval_time,
        classify_ms_median=statistics.median(latencies),
        classify_ms_p95=percentile(latencies, 95),
        classify_tokens=len(bench_data.message_ids),
        classify_packed=any(isinstance(m, PackedLinear) for m in model.modules()),
        keystroke_ms_median=statistics.median(keystrokes),
        peak_rss_mb=peak_rss_mb(),
        load_peak_rss_mb=load_peak,
        peak_rss_scope=scope,
        cuda_max_allocated_mb=cuda_mb,
        matmul_gflops_fp32=ceiling_gflops,
        flops_per_token=per_token,
        ceiling_tokens_per_s=ceiling_tokens,
        ceiling_fraction=tokens_per_s / ceiling_tokens,
        precision=precision,
        device=describe(device),
        threads=torch.get_num_threads(),
        cpu_fast_bf16=cpu_has_fast_bf16(),
        model=cfg.model,
        weights=f"checkpoint {checkpoint}" if checkpoint else "random init",
        n_params=param_count(model),
        trainable_params=param_count(model, trainable_only=True),
        data_source=bench_data.source,
        n_train=len(bench_data.train.labels),
        mean_tokens=statistics.mean(len(ids) for ids in bench_data.train.token_ids),
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        warmup=cfg.warmup,
        length_grouping=cfg.length_grouping,
        torch_version=torch.__version__,
        load_average=load_average(),
    )


def classify_latencies(
    model: GPT2Classifier,
    bench_data: BenchData,
    cfg: BenchConfig,
    device: torch.device,
    precision: str,
    stop: threading.Event | None = None,
) -> list[float]:
    """Milliseconds per single-message classification, adapter merged, as the classify box runs it."""
    once = single_message_classifier(model, bench_data, cfg, device, precision)
    for _ in range(3):
        once()
    latencies = []
    for _ in range(cfg.classify_runs):
        raise_if_stopped(stop, "The benchmark")
        start = time.perf_counter()
        once()
        _sync(device)
        latencies.append(1000 * (time.perf_counter() - start))
    return latencies


@torch.inference_mode()
def keystroke_latencies(
    model: GPT2Classifier, ids: list[int], runs: int, device: torch.device, precision: str
) -> list[float]:
    """Milliseconds to re-classify the message after its last token is typed, the earlier tokens'
    keys and values kept (``Classifier.predict_typing``, what the classify box does)."""
    prefix = torch.tensor([ids[:-1]], device=device)
    last = torch.tensor([ids[-1:]], device=device)
    with autocast(device, precision):
        _, cache = model.forward_cached(prefix, None)
        latencies = []
        for _ in range(runs):
            start = time.perf_counter()
            model.forward_cached(last, cache)
            _sync(device)
            latencies.append(1000 * (time.perf_counter() - start))
    return latencies


def single_message_classifier(
    model: GPT2Classifier, bench_data: BenchData, cfg: BenchConfig, device: torch.device, precision: str
) -> Callable[[], object]:
    """Merge the adapter (and pack the weights, on a CPU) and return a call that classifies the
    ~25-token message once; after this the model only classifies.

    With a tokenizer the message goes through ``Classifier.predict`` (tokenizing included);
    synthetic data has only ids, which go straight to ``predict_probabilities``.
    """
    merge_lora(model)
    pack_weights_for_cpu(model, device, precision)  # as Classifier.from_adapter does
    if bench_data.tokenizer is not None and bench_data.message is not None:
        info = AdapterInfo(
            base_model=cfg.model,
            model_config=model.config,
            lora=cfg.lora,
            label_names=LABEL_NAMES,
            max_length=model.config.n_positions,
        )
        classifier = Classifier(model, bench_data.tokenizer, info, device, precision)
        text = bench_data.message
        return lambda: classifier.predict([text])
    ids = bench_data.message_ids
    return lambda: predict_probabilities(model, [ids], 1, device, precision)


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


def _take(iterator: Iterator, n: int) -> Iterator:
    for _, item in zip(range(n), iterator):
        yield item


# --------------------------------------------------------------------------- reporting


def format_result(r: BenchResult) -> str:
    """The table ``workbench bench`` prints."""
    rows = [
        ("model", f"{r.model} ({r.weights}; {r.n_params / 1e6:.0f}M parameters, {r.trainable_params:,} trainable)"),
        (
            "device",
            f"{r.device}, {r.precision}"
            + ("" if r.cpu_fast_bf16 or "CPU" not in r.device else " (no AVX512-BF16/AMX: bf16 would be emulated)")
            + f"; load average {r.load_average[0]:.1f}",
        ),
        ("data", f"{r.data_source}: {r.n_train} examples, mean {r.mean_tokens:.1f} tokens"),
        (
            "batches",
            f"batch {r.batch_size}, length grouping {r.length_grouping}, {r.warmup} warm-up + {r.steps} timed steps",
        ),
        ("", ""),
        (
            "training",
            f"{r.train_examples_per_s:8.2f} examples/s  {r.train_tokens_per_s:8.0f} real tokens/s  "
            f"{r.train_ms_per_step:7.0f} ms/step (median {r.train_ms_per_step_median:.0f})",
        ),
        (
            "padding",
            f"{r.padding_fraction:8.1%} of batch tokens (whole epoch {r.epoch_padding_fraction:.1%}); "
            f"mean batch length {r.mean_batch_length:.1f}",
        ),
        (
            "ceiling",
            f"{r.matmul_gflops_fp32:8.1f} GFLOP/s fp32 matmul; {r.flops_per_token / 1e6:.3g} MFLOP/token "
            f"-> {r.ceiling_tokens_per_s:.0f} tokens/s; training reaches {r.ceiling_fraction:.0%}",
        ),
        ("evaluation", f"{r.eval_examples_per_s:8.2f} examples/s (inference mode)"),
        (
            "classify",
            f"{r.classify_ms_median:8.1f} ms median, {r.classify_ms_p95:.1f} ms p95 "
            f"({r.classify_tokens} tokens, LoRA merged" + (", weights packed)" if r.classify_packed else ")"),
        ),
        ("classify, typing", f"{r.keystroke_ms_median:8.1f} ms median per added token (earlier keys/values reused)"),
        (
            "memory",
            f"{r.peak_rss_mb:8.0f} MB peak RSS ({r.peak_rss_scope}); {r.load_peak_rss_mb:.0f} MB while loading"
            + (f"; CUDA max allocated {r.cuda_max_allocated_mb:.0f} MB" if r.cuda_max_allocated_mb is not None else ""),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" if name else "" for name, value in rows)
