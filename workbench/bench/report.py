"""The table ``workbench bench`` prints."""

from __future__ import annotations

from .config import BenchResult


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
        ("classify, typing", f"{r.keystroke_ms:8.1f} ms median per added token (earlier keys/values reused)"),
    ]
    if r.classify_int8_ms is not None:
        rows.append(
            (
                "classify, int8",
                f"{r.classify_int8_ms:8.1f} ms median, {r.classify_int8_ms_p95:.1f} ms p95; typing "
                f"{r.keystroke_int8_ms:.1f} ms (int8 but qkv; --int8; "
                + ("chosen by default here)" if r.int8_auto else "not chosen by default here)"),
            )
        )
    rows += [
        (
            "memory",
            f"{r.peak_rss_mb:8.0f} MB peak RSS ({r.peak_rss_scope}); {r.load_peak_rss_mb:.0f} MB while loading"
            + (f"; CUDA max allocated {r.cuda_max_allocated_mb:.0f} MB" if r.cuda_max_allocated_mb is not None else ""),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" if name else "" for name, value in rows)
