"""Training and classify speed of LoRA Workbench against transformers + PEFT, side by side.

The reference is what a practitioner would write with the standard stack: Hugging Face
``GPT2ForSequenceClassification`` with a PEFT LoRA (r=16, alpha=16 on c_attn, attn.c_proj, c_fc
and mlp.c_proj, ``fan_in_fan_out=True`` for GPT-2's Conv1D, the ``score`` head trainable through
``modules_to_save``), AdamW, the same examples in the same batches of 8:

    hf-pad120        every batch padded to 120 tokens (the book's chapter 6 recipe)
    hf-dynamic       random order, each batch padded to its own longest message
    ours             this engine as training runs it (length grouping, last-token head, ...)
    ours-random      this engine on hf-dynamic's very batches (isolates the engine from grouping)
    ours-bf16 / hf-dynamic-bf16   the same under torch.autocast(bfloat16)

Dropout is 0 on both sides (the engine has none), so both compute the same function.

Each variant lives in its own worker process (so peak RSS is its own), and the driver hands out
one training step at a time, round-robin with a rotating order: on a shared, noisy machine every
variant then sees the same slow and fast moments, and the ratios hold even when absolute speeds
drift. The fp32 matmul ceiling is measured by the driver at both ends of the run.

    python -m workbench.bench.compare_hf_peft --model /path/to/gpt2-checkpoint \\
        --data ../shared/data/sms_spam_collection/SMSSpamCollection --steps 20 --json out.json

``workbench bench --compare`` runs the same driver (``benchmarks/compare_hf_peft.py`` is a
shortcut to this module).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.config import LORA_TARGETS, SMS_SPAM, LoRAConfig, ModelConfig
from ..core.device import autocast, cpu_has_fast_bf16, describe, pick_device
from ..core.model import load_model_config, store_frozen_weights
from ..core.tokenizer import EOT_ID
from ..core.training import make_optimizer, train_step
from . import machine, run, workload
from .config import SYNTHETIC, BenchConfig

MODULE = "workbench.bench.compare_hf_peft"  # what the worker processes run (``python -m``)
# The folder holding the ``workbench`` package: the worker processes import it from there.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
BOOK_PAD_LENGTH = 120  # the book pads every SMS batch to its longest training message, 120 tokens


@dataclass(frozen=True)
class Variant:
    engine: str  # "ours" or "hf"
    precision: str  # "fp32" or "bf16"
    padding: str  # "grouped" (length grouping), "batch" (random order, pad to batch longest), "fixed"
    what: str  # one line for the table


VARIANTS: dict[str, Variant] = {
    "ours": Variant("ours", "fp32", "grouped", "LoRA Workbench, as training runs it"),
    "ours-random": Variant("ours", "fp32", "batch", "LoRA Workbench on hf-dynamic's batches"),
    "hf-pad120": Variant("hf", "fp32", "fixed", "transformers + PEFT, padded to 120 (book)"),
    "hf-dynamic": Variant("hf", "fp32", "batch", "transformers + PEFT, pad to batch longest"),
    "ours-bf16": Variant("ours", "bf16", "grouped", "LoRA Workbench, bf16 autocast"),
    "hf-dynamic-bf16": Variant("hf", "bf16", "batch", "transformers + PEFT, bf16 autocast, per batch"),
}
FP32_VARIANTS = ("ours", "ours-random", "hf-dynamic", "hf-pad120")
BF16_VARIANTS = ("ours-bf16", "hf-dynamic-bf16")

# (name, numerator variant, denominator variant): throughput ratios; > 1 means the first is faster.
RATIOS = (
    ("ours / hf-pad120 (fp32, vs the book's recipe)", "ours", "hf-pad120"),
    ("ours / hf-dynamic (fp32, vs per-batch padding)", "ours", "hf-dynamic"),
    ("ours-random / hf-dynamic (same batches: the engine alone)", "ours-random", "hf-dynamic"),
    ("ours / ours-random (length grouping alone)", "ours", "ours-random"),
    ("hf-dynamic / hf-pad120 (per-batch padding alone)", "hf-dynamic", "hf-pad120"),
    ("ours-bf16 / hf-dynamic-bf16 (bf16 autocast)", "ours-bf16", "hf-dynamic-bf16"),
    ("ours-bf16 / ours (bf16 vs fp32 on this device)", "ours-bf16", "ours"),
)


def missing_reference() -> str | None:
    """Why the reference cannot run here, or None when transformers and peft are importable."""
    import importlib.util

    absent = [name for name in ("transformers", "peft") if importlib.util.find_spec(name) is None]
    if absent:
        return (
            f"the comparison needs {' and '.join(absent)} (pip install -e '.[test]'); "
            "without them only this engine is measured"
        )
    return None


# --------------------------------------------------------------------------- worker side


class OursWorker:
    """This engine through its real training path: epoch_batches -> train_step; Classifier."""

    def __init__(self, variant: Variant, cfg: BenchConfig):
        self.device = pick_device(cfg.device)
        self.precision = variant.precision
        self.cfg = cfg
        self.model, checkpoint = workload.build_bench_model(cfg, len(workload.LABEL_NAMES))
        self.model.to(self.device)
        store_frozen_weights(self.model, self.precision)  # as training does
        context = self.model.config.n_positions
        self.data = workload.load_bench_data(cfg, checkpoint, context)
        train_cfg = cfg.train_config()
        if variant.padding == "grouped":  # as training batches: grouped, widths rounded on a GPU
            self.batches = workload.training_batches(self.data.train, train_cfg, self.device, context)
        else:  # exactly hf-dynamic's batches
            self.batches = workload.training_batches(self.data.train, replace(train_cfg, length_grouping=0))
        self.optimizer = make_optimizer(self.model, train_cfg, self.device)
        self.classify_once = None

    def train(self, same_batch: bool = False) -> dict:
        if not same_batch:
            self.batch = next(self.batches)
        batch = self.batch
        machine.sync(self.device)
        start = time.perf_counter()
        train_step(self.model, self.optimizer, [batch], self.device, self.precision)
        machine.sync(self.device)
        return _step_record(time.perf_counter() - start, batch.lengths, batch.input_ids.numel())

    def prepare_classify(self) -> None:
        self.optimizer = None
        self.classify_once = run.single_message_classifier(self.model, self.data, self.cfg, self.device, self.precision)

    def classify(self) -> None:
        self.classify_once()


class HFWorker:
    """transformers GPT2ForSequenceClassification + PEFT LoRA, the usual way."""

    def __init__(self, variant: Variant, cfg: BenchConfig, pad_to: int):
        self.device = pick_device(cfg.device)
        self.precision = variant.precision
        checkpoint = workload.bench_checkpoint(cfg)
        config = load_model_config(checkpoint) if checkpoint else ModelConfig.for_size(cfg.model)
        self.data = workload.load_bench_data(cfg, checkpoint, config.n_positions)
        torch.manual_seed(cfg.seed)
        self.model = build_hf_peft_model(cfg.lora, config, checkpoint).to(self.device)
        self.attn_implementation = getattr(self.model.config, "_attn_implementation", "?")
        train_cfg = replace(cfg.train_config(), length_grouping=0)  # random order, as people train
        self.batches = workload.training_batches(self.data.train, train_cfg)
        self.pad_to = pad_to if variant.padding == "fixed" else 0
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=train_cfg.lr,
            weight_decay=train_cfg.weight_decay,
        )

    def train(self, same_batch: bool = False) -> dict:
        if not same_batch:
            self.batch = next(self.batches)
        batch = self.batch
        ids, lengths, labels = batch.input_ids, batch.lengths, batch.labels
        if self.pad_to > ids.shape[1]:
            ids = F.pad(ids, (0, self.pad_to - ids.shape[1]), value=EOT_ID)  # (B, pad_to)
        mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()  # (B, T)
        ids, mask, labels = ids.to(self.device), mask.to(self.device), labels.to(self.device)
        machine.sync(self.device)
        start = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            logits = self.model(input_ids=ids, attention_mask=mask).logits
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        self.optimizer.step()
        machine.sync(self.device)
        return _step_record(time.perf_counter() - start, lengths, ids.numel())

    def prepare_classify(self) -> None:
        """Merge LoRA into the weights (PEFT's merge_and_unload) and switch to evaluation."""
        self.optimizer = None
        self.model = self.model.merge_and_unload().eval()

    @torch.inference_mode()
    def classify(self) -> list[float]:
        tokenizer = self.data.tokenizer
        ids = tokenizer.encode_ordinary(self.data.message) if tokenizer and self.data.message else self.data.message_ids
        with autocast(self.device, self.precision):
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits
        return torch.softmax(logits.float(), dim=-1).cpu()[0].tolist()


def build_hf_peft_model(lora: LoRAConfig, config: ModelConfig, checkpoint: Path | None):
    """GPT2ForSequenceClassification + PEFT LoRA with the same targets, rank, alpha and blocks."""
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2ForSequenceClassification

    no_dropout = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "summary_first_dropout": 0.0}
    if checkpoint is not None:
        model = GPT2ForSequenceClassification.from_pretrained(
            str(checkpoint), num_labels=2, pad_token_id=EOT_ID, **no_dropout
        )
    else:
        model = GPT2ForSequenceClassification(
            GPT2Config(
                vocab_size=config.vocab_size,
                n_positions=config.n_positions,
                n_embd=config.n_embd,
                n_layer=config.n_layer,
                n_head=config.n_head,
                layer_norm_epsilon=config.layer_norm_epsilon,
                num_labels=2,
                pad_token_id=EOT_ID,
                **no_dropout,
            )
        )
    peft_config = LoraConfig(
        task_type="SEQ_CLS",
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=[LORA_TARGETS[t] for t in lora.targets],
        fan_in_fan_out=True,
        modules_to_save=["score"],
        layers_to_transform=lora.blocks(config.n_layer) if lora.top_blocks else None,
    )
    return get_peft_model(model, peft_config)


def _step_record(seconds: float, lengths: torch.Tensor, padded_tokens: int) -> dict:
    return {"seconds": seconds, "examples": len(lengths), "tokens": int(lengths.sum()), "padded_tokens": padded_tokens}


def worker_main(name: str, config_json: str, pad_to: int, threads: int | None) -> int:
    """Serve one variant: one JSON command per stdin line, one JSON answer per line.

    The answers go to the original stdout; anything else printing to stdout (library notices)
    is sent to stderr so it cannot garble the protocol.
    """
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")

    if threads:
        torch.set_num_threads(threads)
    variant = VARIANTS[name]
    try:
        cfg = config_from_dict(json.loads(config_json))
        worker = OursWorker(variant, cfg) if variant.engine == "ours" else HFWorker(variant, cfg, pad_to)
    except Exception:
        send({"error": traceback.format_exc()})
        return 1
    send(
        {
            "ready": True,
            "load_peak_rss_mb": machine.peak_rss_mb(),
            "data_source": worker.data.source,
            "attn_implementation": getattr(worker, "attn_implementation", "sdpa"),
            "threads": torch.get_num_threads(),
        }
    )
    machine.reset_peak_rss()  # from here on the peak is training's (and classification's)
    for line in sys.stdin:
        message = json.loads(line)
        command = message["cmd"]
        try:
            if command == "train":
                send(worker.train(same_batch=message.get("same_batch", False)))
            elif command == "memory":
                send({"peak_rss_mb": machine.peak_rss_mb()})
            elif command == "prepare_classify":
                worker.prepare_classify()
                send({})
            elif command == "classify":
                start = time.perf_counter()
                worker.classify()
                machine.sync(worker.device)
                send({"ms": 1000 * (time.perf_counter() - start)})
            elif command == "quit":
                send({})
                return 0
            else:
                send({"error": f"unknown command {command!r}"})
        except Exception:
            send({"error": traceback.format_exc()})
    return 0


def config_to_dict(cfg: BenchConfig) -> dict:
    return asdict(cfg)


def config_from_dict(d: dict) -> BenchConfig:
    lora = dict(d.pop("lora"))
    lora["targets"] = tuple(lora["targets"])
    return BenchConfig(**d, lora=LoRAConfig(**lora))


# --------------------------------------------------------------------------- driver side


class WorkerProcess:
    """One variant's worker process and its command pipe."""

    def __init__(self, name: str, cfg: BenchConfig, pad_to: int, threads: int | None):
        self.name = name
        self.log = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            MODULE,
            "--worker",
            name,
            "--config-json",
            json.dumps(config_to_dict(cfg)),
            "--pad-to",
            str(pad_to),
        ]
        if threads:
            command += ["--threads", str(threads)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1, env=env
        )
        self.info = self._receive()

    def ask(self, command: str, **options) -> dict:
        self.process.stdin.write(json.dumps({"cmd": command, **options}) + "\n")
        self.process.stdin.flush()
        return self._receive()

    def _receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited:\n{self._log_tail()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"worker {self.name} failed:\n{answer['error']}")
        return answer

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.ask("quit")
        except (RuntimeError, BrokenPipeError, OSError):
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.log):
            stream.close()


def run_group(
    names: list[str],
    cfg: BenchConfig,
    steps: int,
    warmup: int,
    repeats: int,
    classify_runs: int,
    pad_to: int,
    threads: int | None,
    say,
) -> dict[str, dict]:
    """Start the group's workers, interleave their steps and classifications, and summarise.

    Each timed batch runs ``repeats`` times, in separate round-robin passes, and its best time
    counts: on a shared machine other processes only ever add time, so the minimum is the
    least disturbed estimate (the reasoning behind ``timeit``'s min). The repeats share no
    contention window, because every other variant runs in between.
    """
    workers: list[WorkerProcess] = []
    try:
        for name in names:
            say(f"starting {name}")
            workers.append(WorkerProcess(name, cfg, pad_to, threads))
        for i in range(warmup):
            for w in workers:
                say(f"warm-up step {i + 1}/{warmup}: {w.name}")
                w.ask("train")
        records: dict[str, list[dict]] = {w.name: [] for w in workers}
        passes: dict[str, list[float]] = {w.name: [] for w in workers}
        turn = 0
        for i in range(steps):
            for r in range(repeats):
                for w in _rotated(workers, turn):
                    record = w.ask("train", same_batch=r > 0)
                    passes[w.name].append(record["seconds"])
                    if r == 0:
                        records[w.name].append(record)
                    else:
                        records[w.name][-1]["seconds"] = min(records[w.name][-1]["seconds"], record["seconds"])
                turn += 1
            say(
                f"step {i + 1}/{steps}: "
                + ", ".join(f"{w.name} {records[w.name][-1]['seconds']:.2f}s" for w in workers)
            )
        memory = {w.name: w.ask("memory")["peak_rss_mb"] for w in workers}
        latencies: dict[str, list[float]] = {w.name: [] for w in workers}
        for w in workers:
            w.ask("prepare_classify")
            for _ in range(3):
                w.ask("classify")
        say(f"classifying one message {classify_runs} times each")
        for i in range(classify_runs):
            for w in _rotated(workers, i):
                latencies[w.name].append(w.ask("classify")["ms"])
        return {
            w.name: summarise(w, records[w.name], passes[w.name], memory[w.name], latencies[w.name]) for w in workers
        }
    finally:
        for w in workers:
            w.close()


def _rotated(items: list, i: int) -> list:
    k = i % len(items)
    return items[k:] + items[:k]


def summarise(
    w: WorkerProcess, records: list[dict], passes: list[float], peak_rss: float, latencies: list[float]
) -> dict:
    seconds = sum(r["seconds"] for r in records)
    half = len(records) // 2
    variant = VARIANTS[w.name]

    def rate(part: list[dict]) -> float:
        return sum(r["examples"] for r in part) / sum(r["seconds"] for r in part) if part else float("nan")

    return {
        "engine": variant.engine,
        "precision": variant.precision,
        "padding": variant.padding,
        "what": variant.what,
        "steps": len(records),
        "repeats": len(passes) // max(1, len(records)),
        "train_examples_per_s": rate(records),  # each batch's best time over its repeats
        # every pass counted, disturbances included: what a user would have waited
        "train_examples_per_s_all_passes": sum(r["examples"] for r in records)
        * len(passes)
        / len(records)
        / sum(passes),
        "train_examples_per_s_halves": [rate(records[:half]), rate(records[half:])],
        "train_tokens_per_s": sum(r["tokens"] for r in records) / seconds,
        "train_ms_per_step": 1000 * seconds / len(records),
        "padding_fraction": 1 - sum(r["tokens"] for r in records) / sum(r["padded_tokens"] for r in records),
        "mean_batch_length": sum(r["padded_tokens"] for r in records) / sum(r["examples"] for r in records),
        "peak_rss_mb": peak_rss,
        "load_peak_rss_mb": w.info["load_peak_rss_mb"],
        "classify_ms_median": statistics.median(latencies),
        "classify_ms_p95": machine.percentile(latencies, 95),
        "classify_runs": len(latencies),
        "attn_implementation": w.info["attn_implementation"],
        "data_source": w.info["data_source"],
        "threads": w.info["threads"],
    }


def compare(
    cfg: BenchConfig,
    *,
    variants: list[str] | None = None,
    bf16_steps: int = 2,
    repeats: int = 2,
    classify_runs: int | None = None,
    pad_to: int = BOOK_PAD_LENGTH,
    threads: int | None = None,
    say=None,
) -> dict:
    """Run the variants (fp32 group, then bf16 group when bf16_steps > 0) and return the figures."""
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    cfg.check()
    problem = missing_reference()
    names = variants or [*FP32_VARIANTS, *(BF16_VARIANTS if bf16_steps > 0 else ())]
    if problem and any(VARIANTS[n].engine == "hf" for n in names):
        raise RuntimeError(problem)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    device = pick_device(cfg.device)
    runs = classify_runs or cfg.classify_runs
    started = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)  # the ceiling on as many threads as each worker has
    say("measuring the fp32 matmul ceiling")
    gflops = [machine.matmul_gflops(device, n=cfg.matmul_size)]
    results: dict[str, dict] = {}
    groups: dict[str, dict] = {}
    fp32 = [n for n in names if VARIANTS[n].precision == "fp32"]
    bf16 = [n for n in names if VARIANTS[n].precision == "bf16"]
    if fp32:
        groups["fp32"] = {"steps": cfg.steps, "warmup": cfg.warmup, "repeats": repeats, "classify_runs": runs}
    if bf16 and bf16_steps > 0:
        # bf16 on a CPU without AVX512-BF16/AMX is emulated, 10-50x slower than fp32: a step takes
        # up to minutes, so no warm-up (kernel set-up is milliseconds of it), one pass, 5 messages.
        slow = device.type == "cpu" and not cpu_has_fast_bf16()
        groups["bf16"] = {
            "steps": bf16_steps,
            "warmup": 0 if slow else cfg.warmup,
            "repeats": 1 if slow else repeats,
            "classify_runs": min(runs, 5) if slow else runs,
        }
    for precision, group in groups.items():
        results.update(
            run_group(
                fp32 if precision == "fp32" else bf16,
                cfg,
                group["steps"],
                group["warmup"],
                group["repeats"],
                group["classify_runs"],
                pad_to,
                threads,
                say,
            )
        )
    gflops.append(machine.matmul_gflops(device, n=cfg.matmul_size))

    any_worker = next(iter(results.values()))
    config = _model_config(cfg)
    per_token = machine.flops_per_token(config, cfg.lora)
    ceiling = max(gflops) * 1e9 / per_token
    for r in results.values():
        r["ceiling_fraction"] = r["train_tokens_per_s"] / ceiling
    ratios = {}
    for label, a, b in RATIOS:
        if a in results and b in results:
            ratios[label] = results[a]["train_examples_per_s"] / results[b]["train_examples_per_s"]
            if results[a]["steps"] >= 4 and results[b]["steps"] >= 4:  # a half of 1 step says nothing
                ratios[label + " [halves]"] = [
                    x / y
                    for x, y in zip(
                        results[a]["train_examples_per_s_halves"], results[b]["train_examples_per_s_halves"]
                    )
                ]
    for ours, ref in (("ours", "hf-dynamic"), ("ours-bf16", "hf-dynamic-bf16")):
        if ours in results and ref in results:
            ratios[f"classify ms {ours} / {ref}"] = (
                results[ours]["classify_ms_median"] / results[ref]["classify_ms_median"]
            )
    return {
        "machine": machine_description(device),
        "model": cfg.model,
        "weights": "random init" if workload.bench_checkpoint(cfg) is None else "checkpoint",
        "data_source": any_worker["data_source"],
        "batch_size": cfg.batch_size,
        "groups": groups,
        "pad_to": pad_to,
        "lora": asdict(cfg.lora),
        "matmul_gflops_fp32": max(gflops),
        "matmul_gflops_fp32_each": gflops,
        "flops_per_token": per_token,
        "ceiling_tokens_per_s": ceiling,
        "load_average_end": machine.load_average(),
        "wall_s": time.perf_counter() - started,
        "variants": results,
        "ratios": ratios,
        "versions": _versions(),
    }


def _model_config(cfg: BenchConfig) -> ModelConfig:
    checkpoint = workload.bench_checkpoint(cfg)
    return load_model_config(checkpoint) if checkpoint else ModelConfig.for_size(cfg.model)


def machine_description(device: torch.device) -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability()
    bf16 = "native bf16 (AVX512-BF16/AMX)" if cpu_has_fast_bf16() else "no AVX512-BF16/AMX, bf16 emulated"
    text = f"{cpu}, {os.cpu_count()} cores, {isa}, {bf16}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    return text if device.type == "cpu" else f"{describe(device)}; host {text}"


def _versions() -> dict:
    out = {"torch": torch.__version__}
    for name in ("transformers", "peft"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def format_comparison(result: dict) -> str:
    lines = [
        f"machine: {result['machine']}",
        f"model {result['model']} ({result['weights']}), data: {result['data_source']}, batch {result['batch_size']}",
        "per variant, interleaved: "
        + "; ".join(
            f"{name} {g['warmup']} warm-up + {g['steps']} timed steps (best of {g['repeats']} passes), "
            f"{g['classify_runs']} classifications"
            for name, g in result["groups"].items()
        )
        + f"; load average at the end {result['load_average_end'][0]:.1f}",
        f"fp32 matmul ceiling {result['matmul_gflops_fp32']:.0f} GFLOP/s -> {result['ceiling_tokens_per_s']:.0f} "
        f"real tokens/s at {result['flops_per_token'] / 1e6:.3g} MFLOP/token (4 x matmul params)",
        "",
        f"{'variant':<16} {'ex/s':>7} {'(all)':>7} {'tok/s':>7} {'ms/step':>8} {'pad':>5} {'batch T':>7} {'%ceil':>6} "
        f"{'RSS MB':>7} {'cls ms':>7} {'p95':>7}  what",
    ]
    for name, r in result["variants"].items():
        lines.append(
            f"{name:<16} {r['train_examples_per_s']:7.2f} {r['train_examples_per_s_all_passes']:7.2f} "
            f"{r['train_tokens_per_s']:7.0f} {r['train_ms_per_step']:8.0f} "
            f"{r['padding_fraction']:5.0%} {r['mean_batch_length']:7.1f} {r['ceiling_fraction']:6.0%} "
            f"{r['peak_rss_mb']:7.0f} {r['classify_ms_median']:7.1f} {r['classify_ms_p95']:7.1f}  {r['what']}"
        )
    lines.append(
        "ex/s: each batch's best pass; (all): every pass, disturbances included; tok/s, ms/step and "
        "%ceil from the best passes"
    )
    lines.append("")
    for label, value in result["ratios"].items():
        if label.endswith("[halves]"):
            continue
        halves = result["ratios"].get(label + " [halves]")
        extra = f"   (first/second half of the steps: {halves[0]:.2f}, {halves[1]:.2f})" if halves else ""
        lines.append(f"{label:<60} {value:6.2f}x{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, default_data: str = SMS_SPAM) -> int:
    """The command line; ``default_data`` is what --data defaults to."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2", help="size name or checkpoint folder")
    parser.add_argument("--random-init", action="store_true", help="random weights if the size is not downloaded")
    parser.add_argument("--data", default=default_data, help=f"{SMS_SPAM}, {SYNTHETIC} or a CSV/TSV path")
    parser.add_argument("--tokenizer", default=None, help="folder with vocab.json + merges.txt or gpt2.tiktoken")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per fp32 variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="passes per timed batch; its best time counts")
    parser.add_argument("--bf16-steps", type=int, default=2, help="timed steps per bf16 variant (0: skip bf16)")
    parser.add_argument("--classify-runs", type=int, default=30)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    parser.add_argument("--pad-to", type=int, default=BOOK_PAD_LENGTH, help="hf-pad120's fixed length")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default torch's)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.config_json, args.pad_to, args.threads)
    cfg = BenchConfig(
        model=args.model,
        random_init=args.random_init,
        data=args.data,
        tokenizer=args.tokenizer,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        classify_runs=args.classify_runs,
        device=args.device,
    )
    result = compare(
        cfg,
        variants=args.variants,
        bf16_steps=args.bf16_steps,
        repeats=args.repeats,
        pad_to=args.pad_to,
        threads=args.threads,
    )
    print(format_comparison(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
