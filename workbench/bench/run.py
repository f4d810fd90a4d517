"""How fast training and classification run here: the measurements behind ``workbench bench``.

Everything is timed through the code that real runs use, so a speed-up in the engine shows up
here unchanged: batches are ``training.epoch_batches`` (the run's shuffling and length
grouping), a step is ``training.train_step``, evaluation is ``evaluate.predict_probabilities``
and one message goes through ``classify.Classifier`` with the adapter merged. What is trained on
is described in ``workload``, the machine's own readings in ``machine``.
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable

import torch

from ..core import data as datamod
from ..core.adapters import AdapterInfo
from ..core.classify import Classifier, PackedLinear, int8_layers, pack_weights_for_cpu, use_int8
from ..core.device import autocast, cpu_has_fast_bf16, describe, evaluation_batch_size, pick_device, pick_precision
from ..core.evaluate import predict_probabilities
from ..core.int8 import can_run_int8
from ..core.lora import merge_lora
from ..core.model import GPT2Classifier, param_count, store_frozen_weights
from ..core.progress import Progress, raise_if_stopped
from ..core.training import make_optimizer, train_step
from . import machine
from .config import BenchConfig, BenchResult
from .machine import flops_per_token, load_average, peak_rss_mb, percentile, reset_peak_rss, sync
from .workload import LABEL_NAMES, BenchData, build_bench_model, load_bench_data, padding_fraction, training_batches


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
    store_frozen_weights(model, precision)  # as training and classification do
    config = model.config
    n_params = param_count(model)  # before classification packs the weights away
    load_peak = peak_rss_mb()
    scope = "after model load" if reset_peak_rss() else "process"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    report(0, None, "Reading the data")
    bench_data = load_bench_data(cfg, checkpoint, config.n_positions)
    n_batches = datamod.count_batches(len(bench_data.train.labels), cfg.batch_size)
    context = config.n_positions
    epoch = itertools.islice(training_batches(bench_data.train, train_cfg, device, context), n_batches)
    epoch_padding = padding_fraction(list(epoch))

    report(0, None, "Measuring the matmul ceiling")
    gflops = [machine.matmul_gflops(device, n=cfg.matmul_size)]

    # Training: the optimizer training builds, steps through train_step.
    optimizer = make_optimizer(model, train_cfg, device)
    batches = training_batches(bench_data.train, train_cfg, device, context)
    total = cfg.warmup + cfg.steps
    for i in range(cfg.warmup):
        raise_if_stopped(stop, "The benchmark")
        report(i, total, f"Warm-up step {i + 1}/{cfg.warmup}")
        train_step(model, optimizer, [next(batches)], device, precision)
    timed, seconds = [], []
    for i in range(cfg.steps):
        raise_if_stopped(stop, "The benchmark")
        report(cfg.warmup + i, total, f"Training step {i + 1}/{cfg.steps}")
        batch = next(batches)
        sync(device)
        start = time.perf_counter()
        train_step(model, optimizer, [batch], device, precision)
        sync(device)
        seconds.append(time.perf_counter() - start)
        timed.append(batch)
    train_time = sum(seconds)
    examples = sum(len(b.labels) for b in timed)
    tokens = sum(int(b.lengths.sum()) for b in timed)
    del optimizer

    report(0, None, "Measuring the matmul ceiling")
    gflops.append(machine.matmul_gflops(device, n=cfg.matmul_size))  # best of both ends of the run: less noise

    raise_if_stopped(stop, "The benchmark")
    report(0, None, "Evaluating")
    eval_ids = (bench_data.eval.token_ids * math.ceil(cfg.eval_examples / len(bench_data.eval.token_ids)))[
        : cfg.eval_examples
    ]
    eval_batch = evaluation_batch_size(cfg.batch_size, device)  # as training's evaluations
    predict_probabilities(model, eval_ids[:eval_batch], eval_batch, device, precision)  # warm-up
    sync(device)
    start = time.perf_counter()
    predict_probabilities(model, eval_ids, eval_batch, device, precision)
    sync(device)
    eval_time = time.perf_counter() - start

    report(0, None, "Classifying one message")
    merge_lora(model)
    int8 = int8_layers(model) if device.type == "cpu" and can_run_int8() else []  # before packing
    latencies = classify_latencies(model, bench_data, cfg, device, precision, stop)
    keystrokes = keystroke_latencies(model, bench_data.message_ids, cfg.classify_runs, device, precision)
    packed = any(isinstance(m, PackedLinear) for m in model.modules())
    peak_rss = peak_rss_mb()  # training, evaluation, classification: the int8 rerun below is extra
    int8_latencies = int8_keystrokes = None
    if int8:
        report(0, None, "Classifying one message in int8")
        for owner, name, layer in int8:
            setattr(owner, name, layer)  # as Classifier.from_adapter(quantize="int8") does
        int8_latencies = classify_latencies(model, bench_data, cfg, device, precision, stop)
        int8_keystrokes = keystroke_latencies(model, bench_data.message_ids, cfg.classify_runs, device, precision)
    int8_auto = use_int8("auto", cfg.precision, precision, device, config.n_embd)  # what --int8 unset would do

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
        classify_packed=packed,
        keystroke_ms=statistics.median(keystrokes),
        classify_int8_ms=statistics.median(int8_latencies) if int8_latencies else None,
        classify_int8_ms_p95=percentile(int8_latencies, 95) if int8_latencies else None,
        keystroke_int8_ms=statistics.median(int8_keystrokes) if int8_keystrokes else None,
        int8_auto=int8_auto,
        peak_rss_mb=peak_rss,
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
        n_params=n_params,
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
        sync(device)
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
            sync(device)
            latencies.append(1000 * (time.perf_counter() - start))
    return latencies


def single_message_classifier(
    model: GPT2Classifier, bench_data: BenchData, cfg: BenchConfig, device: torch.device, precision: str
) -> Callable[[], object]:
    """Merge the adapter (and pack the weights, on a CPU) and return a call that classifies the
    ~25-token message once through whatever layers the model holds when called; after this the
    model only classifies.

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
