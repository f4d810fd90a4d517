"""int8 linear layers for classification on a CPU, and the measurement that decides whether they
pay on this machine.

Dynamic int8 quantization (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference"; PyTorch's ``quantize_dynamic``, which torch 2.13
deprecates along with its quantized tensors, so the arithmetic is written out here around
``torch._int_mm``).

Whether int8 is faster is not written in the CPU's flags: VNNI or AMX make int8 dot products
fast, but a message of 25 tokens also pays for quantizing its activations, and oneDNN's int8
kernels differ between builds. So ``--int8`` left unset measures, as ``--precision auto`` does
(precision.py): the layers int8 would replace, at the model's width, on one message's rows, int8
against the float layers classification would otherwise run, the fastest of alternating
repetitions on one thread. The verdict is kept for the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

from .precision import fastest_alternating

PROBE_ROWS = 25  # one SMS message: the median message is about 25 GPT-2 tokens
PROBE_MIN_REPEATS, PROBE_MAX_REPEATS = 3, 30
# int8 rounds the activations of three layers in every block to 8 bits: it must win clearly.
INT8_MARGIN = 1.3

_verdicts: dict[int, Int8Verdict] = {}  # this process's verdicts, by model width


class Int8Linear(torch.nn.Module):
    """An ``nn.Linear`` for inference in int8, quantized dynamically: each output channel's
    weights are scaled to int8 once; each input row is scaled to int8 when it arrives;
    ``torch._int_mm`` multiplies int8 by int8 into int32 (oneDNN: VNNI or AMX where present), and
    the two scales bring the result back. Symmetric scales, per output channel and per token: an
    outlier in one token or channel costs the others no precision. A quarter of fp32's weight bytes.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach()  # (out, in)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_scale = _int8_scale(weight)  # (out,)
        # One temporary the size of the weight, not several: this runs on a model already loaded.
        q = weight.to(torch.float32, copy=True).div_(self.weight_scale[:, None])
        # Stored (out, in) and used transposed: the layout oneDNN wants for the second operand.
        self.weight_t = q.round_().to(torch.int8).t()  # (in, out)
        self.bias = None if linear.bias is None else linear.bias.detach().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()  # (N, in)
        scale = _int8_scale(rows)[:, None]  # (N, 1)
        q = torch.round(rows / scale).to(torch.int8)
        y = torch._int_mm(q, self.weight_t).float().mul_(scale).mul_(self.weight_scale)  # (N, out)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


def _int8_scale(t: torch.Tensor) -> torch.Tensor:
    """Per-row scale mapping the row's largest magnitude to 127 (a zero row gets a harmless 1)."""
    # The largest |value| (no |t| copy), exact in any dtype; divided in fp32, so a bf16 weight's
    # scale is not rounded below its maximum (which would round that value to 128: -128 in int8).
    amax = torch.linalg.vector_norm(t, ord=float("inf"), dim=1).float()
    return torch.where(amax > 0, amax / 127, torch.ones_like(amax))


@lru_cache(maxsize=1)
def can_run_int8() -> bool:
    """A PyTorch whose int8 matmul (``torch._int_mm``) runs on CPU tensors (tried, not inferred)."""
    try:
        a = torch.ones(1, 8, dtype=torch.int8)
        return bool(torch._int_mm(a, a.t()).item() == 8)
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Int8Verdict:
    """One measurement: the int8-able layers of one block on one message, the fastest repetition."""

    float_ms: float
    int8_ms: float

    @property
    def speedup(self) -> float:
        """int8's speed as a multiple of the float layers' (above 1: int8 is faster)."""
        return self.float_ms / self.int8_ms if self.int8_ms > 0 else 0.0

    @property
    def pays(self) -> bool:
        return self.speedup >= INT8_MARGIN


def int8_verdict(width: int, float_layer: Callable[[torch.nn.Linear], torch.nn.Module]) -> Int8Verdict:
    """This process's verdict for this width, else a fresh measurement. ``float_layer`` turns a
    linear layer into the form fp32 classification runs it in (packed for oneDNN, or as it is)."""
    if width not in _verdicts:
        _verdicts[width] = Int8Verdict(*measure(width, float_layer))
    return _verdicts[width]


@torch.inference_mode()
def measure(width: int, float_layer: Callable[[torch.nn.Linear], torch.nn.Module]) -> tuple[float, float]:
    """Milliseconds for one message's rows through the three linear layers of a GPT-2 block that
    int8 would replace (attention output, MLP up, MLP down), as float layers and as ``Int8Linear``;
    the fastest of alternating repetitions each, after one warm-up, on one thread (precision.py
    says why one: a 2-thread ratio on a shared machine swings with the scheduler)."""
    g = torch.Generator().manual_seed(0)
    linears = []
    for n_in, n_out in ((width, width), (width, 4 * width), (4 * width, width)):
        linear = torch.nn.Linear(n_in, n_out)
        linear.weight.normal_(0, 0.02, generator=g)
        linears.append(linear)
    forms = {"float": [float_layer(m) for m in linears], "int8": [Int8Linear(m) for m in linears]}
    x = torch.randn(1, PROBE_ROWS, width, generator=g)

    def one_pass(form: str) -> float:
        start = time.perf_counter()
        h = x
        for layer in forms[form]:
            h = layer(h)
        return time.perf_counter() - start

    best = fastest_alternating(one_pass, ("float", "int8"), (PROBE_MIN_REPEATS, PROBE_MAX_REPEATS), one_thread=True)
    return best["float"], best["int8"]
