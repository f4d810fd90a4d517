"""GPT-2 as a sequence classifier, laid out like Hugging Face's ``GPT2ForSequenceClassification``.

Module names mirror the Hub checkpoints (``transformer.h.0.attn.c_attn`` …, head ``score``) so a
checkpoint maps straight on, and LoRA on the fused ``c_attn`` is exactly PEFT's LoRA on ``c_attn``.
The one difference from the Hub files: HF stores these projections as ``Conv1D`` with weights of
shape (in, out); here they are ``nn.Linear`` (out, in), so those weights are transposed on load.

The classification head reads the hidden state of each row's last real token (not a padding
token), as in the book's chapter 6 argument that the last token has attended to all the others.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .config import ModelConfig
from .errors import CheckpointError, ConfigError, shorten
from .fileio import open_regular_file, read_json
from .progress import raise_if_stopped
from .recompute import recompute_when_saved
from .safetensors_reader import TensorReader, read_safetensors_index

# Hugging Face Conv1D layers: their weights are stored (in, out) and must be transposed.
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers some checkpoints carry that are not parameters here (the causal mask is SDPA's job).
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


# SDPA's kernels for CUDA, cuDNN's left out: it builds a new plan for every new sequence length,
# and training batches change length every step (measured on an H200, bf16: 320 ms per step
# instead of ~40, the plans' build time).
CUDA_SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, on CUDA without the cuDNN kernel (see above); on a CPU,
    in fp32 when backward will run through it (see ``_needs_fp32_backward``)."""
    if _needs_fp32_backward(q):
        with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
    if not q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    with sdpa_kernel(CUDA_SDPA_BACKENDS):
        return F.scaled_dot_product_attention(q, k, v, **kwargs)


def _needs_fp32_backward(q: torch.Tensor) -> bool:
    """PyTorch's CPU flash-attention backward is ~16x slower in bf16 than in fp32 (torch 2.13,
    (8, 12, 28, 64), causal: 34 ms against 2.1, forward and backward; forward alone is as fast in
    either), so a bf16 training step on a CPU runs attention in fp32: faster, and no less exact."""
    return q.device.type == "cpu" and q.dtype != torch.float32 and q.requires_grad and torch.is_grad_enabled()


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # fused q, k, v
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); with ``last`` (B,), only each row's token at ``last`` asks the
        question and the result is (B, C)."""
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if last is None:
            q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            # Right padding only: a real token never attends to a later (padding) position, so
            # the causal mask alone keeps padding out of every real token's output.
            y = attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        rows = torch.arange(B, device=x.device)
        q = q[rows, last].view(B, nh, 1, hs)  # (B, nh, 1, hs)
        visible = torch.arange(T, device=x.device) <= last[:, None]  # (B, T): itself and before
        y = attention(q, k, v, attn_mask=visible[:, None, None, :])  # (B, nh, 1, hs)
        return self.c_proj(y.reshape(B, C))  # (B, C)

    def forward_cached(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        visible: torch.Tensor | None = None,
    ):
        """Attention for new positions ``x`` (1, n, C) after ``past`` keys/values (1, nh, P, hs).

        Returns the output (1, n, C) and the keys/values of all P + n positions, so typing one more
        word costs one word's work instead of the whole message's. ``visible`` (n, P + n), when
        given, replaces the causal mask: several sequences sharing one prefix can then run as one
        (explain.py's occlusion).
        """
        B, n, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, n, nh, hs).transpose(1, 2)  # (B, nh, n, hs)
        k = k.view(B, n, nh, hs).transpose(1, 2)  # (B, nh, n, hs)
        v = v.view(B, n, nh, hs).transpose(1, 2)  # (B, nh, n, hs)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, nh, P + n, hs)
            v = torch.cat([past[1], v], dim=2)
        P = k.shape[2] - n
        if visible is None:
            # New position i (absolute P + i) sees every key up to and including itself.
            visible = torch.arange(P + n, device=x.device)[None, :] <= (P + torch.arange(n, device=x.device))[:, None]
        y = attention(q, k, v, attn_mask=visible)  # (B, nh, n, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, n, C)), (k, v)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.c_fc(x)
        g = F.gelu(u, approximate="tanh")  # GPT-2's "gelu_new"
        # A LoRA c_proj keeps its input for its A gradient: 4 floats per token and width, the
        # largest thing a block keeps. GELU is cheap to redo from u, which its own backward keeps.
        with recompute_when_saved(g, lambda: F.gelu(u, approximate="tanh")):
            return self.c_proj(g)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), or (B, C) for only the positions in ``last`` (see attention)."""
        if last is None:
            x = x + normed_into(self.ln_1, x, self.attn)
            return x + normed_into(self.ln_2, x, self.mlp)
        rows = torch.arange(x.shape[0], device=x.device)
        x = x[rows, last] + normed_into(self.ln_1, x, self.attn, last)  # (B, C)
        return x + normed_into(self.ln_2, x, self.mlp)

    def forward_cached(self, x: torch.Tensor, past, visible: torch.Tensor | None = None):
        a, kv = self.attn.forward_cached(self.ln_1(x), past, visible)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


def normed_into(norm: nn.LayerNorm, x: torch.Tensor, layer: nn.Module, *args) -> torch.Tensor:
    """``layer(norm(x), *args)``, the normalised input redone in backward rather than kept (LoRA
    layers keep their input; ``norm``'s own backward keeps ``x`` anyway)."""
    h = norm(x)
    with recompute_when_saved(h, lambda: norm(x)):
        return layer(h, *args)


class Transformer(nn.Module):
    """The GPT-2 trunk: embeddings, blocks, final layer norm (HF's ``GPT2Model``)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)


class GPT2Classifier(nn.Module):
    """GPT-2 trunk plus a linear head over the last real token of each sequence."""

    def __init__(self, config: ModelConfig, num_classes: int):
        super().__init__()
        config.check()
        self.config = config
        self.num_classes = num_classes
        self.transformer = Transformer(config)
        self.score = nn.Linear(config.n_embd, num_classes, bias=False)  # HF's head has no bias
        # Blocks below this index run without autograd: nothing under them is trainable, so
        # keeping their activations for backward would only cost memory and time.
        self.first_trainable_block = 0
        self.apply(_init_weights)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, num_classes) for right-padded ``input_ids`` (B, T).

        ``lengths`` (B,) gives each row's real tokens; None means no padding. Only the last real
        token's state reaches the head, so the final block runs its attention output and MLP for
        that token alone (about 6% of GPT-2 small's work saved, forward and backward).
        """
        B, T = input_ids.shape
        if lengths is None:
            last = torch.full((B,), T - 1, device=input_ids.device)
        else:
            last = lengths.to(input_ids.device) - 1
        *body, final = self.transformer.h
        x = self._run_blocks(input_ids, body)  # (B, T, C)
        x = final(x, last)  # (B, C)
        return self.score(self.transformer.ln_f(x))  # (B, num_classes)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Every position's final hidden state (B, T, C), as GPT-2 itself computes it."""
        return self.transformer.ln_f(self._run_blocks(input_ids, list(self.transformer.h)))

    @torch.inference_mode()
    def forward_cached(self, new_ids: torch.Tensor, cache: list | None) -> tuple[torch.Tensor, list]:
        """Logits (1, num_classes) for a sequence whose first tokens were seen before.

        ``cache`` holds each block's keys/values for those earlier tokens (None: no earlier
        tokens); ``new_ids`` (1, n) are the tokens after them. Returns the logits of the last new
        token and the cache for the whole sequence.
        """
        start = 0 if cache is None else cache[0][0].shape[2]
        if start + new_ids.shape[1] > self.config.n_positions:
            raise ValueError(f"sequence exceeds the context of {self.config.n_positions}")
        t = self.transformer
        pos = torch.arange(start, start + new_ids.shape[1], device=new_ids.device)
        x = t.wte(new_ids) + t.wpe(pos)  # (1, n, C)
        new_cache = []
        for i, block in enumerate(t.h):
            x, kv = block.forward_cached(x, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.score(t.ln_f(x[:, -1])), new_cache

    def _run_blocks(self, input_ids: torch.Tensor, blocks: list[Block]) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.config.n_positions:
            raise ValueError(f"sequence of {T} tokens exceeds the context of {self.config.n_positions}")
        t = self.transformer
        n_frozen = min(self.first_trainable_block, len(blocks))
        pos = torch.arange(T, device=input_ids.device)
        with torch.no_grad() if n_frozen else contextlib.nullcontext():
            x = t.wte(input_ids) + t.wpe(pos)  # (B, T, C)
            for block in blocks[:n_frozen]:
                x = block(x)
        for block in blocks[n_frozen:]:
            x = block(x)
        return x

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, folder: str | Path, num_classes: int, stop: threading.Event | None = None
    ) -> GPT2Classifier:
        """Build from a folder holding a Hugging Face ``config.json`` and ``model.safetensors``.

        The trunk is built on the meta device and the file's tensors are assigned in place, so no
        second copy of the weights (and no throwaway random init) ever exists. ``stop`` is checked
        between tensors.
        """
        folder = Path(folder)
        config = load_model_config(folder)
        weights = read_checkpoint_weights(folder, config, stop)
        with torch.device("meta"):
            model = cls(config, num_classes)
        model.transformer.load_state_dict(weights, assign=True)
        model.score = nn.Linear(config.n_embd, num_classes, bias=False)
        _init_weights(model.score)
        return model


def store_frozen_weights(model: GPT2Classifier, precision: str) -> None:
    """Keep the blocks' frozen linear weights and biases in the precision they run in, once.

    Under bf16 autocast every matmul casts its fp32 weight to bf16 again, forward and backward:
    for GPT-2 small 85M weights per step, and a bf16 copy kept alive for backward. Casting them
    once at load gives the very same bf16 values (autocast rounds the same way), so outputs and
    gradients are unchanged, and the weights take half the memory. Only frozen ``nn.Linear``s of
    the blocks change: LoRA's A and B, the head, embeddings and layer norms stay fp32 (autocast
    runs layer norms in fp32 anyway), and so does the optimizer's state. Afterwards the model
    must run under ``device.autocast(device, "bf16")``, as training, evaluation and classification
    do for a bf16 run. fp32 leaves the model as it is. Measured on a 2-core AMX CPU (GPT-2 small,
    batch 8, real SMS lengths, one thread, steps interleaved): 1.29x autocast's step time, gradients
    bit-identical, resident memory after loading 779 -> 654 MB.
    """
    if precision != "bf16":
        return
    for module in model.transformer.h.modules():
        if isinstance(module, nn.Linear) and not module.weight.requires_grad:
            module.to(torch.bfloat16)


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation (normal, std 0.02; zero biases); used for fresh models and the head."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def load_model_config(folder: Path) -> ModelConfig:
    path = folder / "config.json"
    if not os.path.lexists(path):
        raise CheckpointError(f"{folder} has no config.json: not a GPT-2 checkpoint folder")
    values = read_json(path, "The model config", CheckpointError)
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not a GPT-2 config (expected a JSON object)")
    try:
        return ModelConfig.from_hf_dict(values)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a usable GPT-2 config: {exc}") from exc


def read_checkpoint_weights(
    folder: Path, config: ModelConfig, stop: threading.Event | None = None
) -> dict[str, torch.Tensor]:
    """The trunk's weights from ``model.safetensors``, renamed and transposed to this layout.

    Each tensor is read with plain file reads into its own buffer, one at a time, not through a
    memory map whose pages stay counted as the process's while any tensor points into it (GPT-2
    small: 945 MB resident after loading that way, 769 MB this way). Only safetensors are read:
    a pickled ``.bin`` can run code when loaded.
    """
    path = folder / "model.safetensors"
    if not os.path.lexists(path):
        raise CheckpointError(f"{folder} has no model.safetensors (pickled .bin weights are not loaded)")
    expected = trunk_shapes(config)
    state: dict[str, torch.Tensor] = {}
    try:
        with open_regular_file(path, "The model weights", CheckpointError) as f:
            entries, data_start = read_safetensors_index(f)
            reader = TensorReader(f, data_start)
            for key, entry in entries.items():
                raise_if_stopped(stop, f"Loading {path}")  # the largest tensor (GPT-2 XL's wte) is 0.3 GB
                name = key.removeprefix("transformer.")
                if name.endswith(IGNORED_SUFFIXES) or name not in expected:
                    continue  # lm_head (tied to wte), causal-mask buffers, other heads
                state[name] = reader.read(entry, transpose=name.endswith(CONV1D_SUFFIXES))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    _check_complete(state, expected, path)
    return state


def _check_complete(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], path: Path) -> None:
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} GPT-2 weights ({shorten(missing, 5)})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != expected[name]:
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, config.json implies {expected[name]}"
            )


def trunk_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Expected name -> shape of every trunk weight, in this module's (nn.Linear) layout."""
    with torch.device("meta"):
        trunk = Transformer(config)
    return {name: tuple(p.shape) for name, p in trunk.state_dict().items()}


def export_hf_state_dict(model: GPT2Classifier) -> dict[str, torch.Tensor]:
    """The trunk in Hugging Face checkpoint names and Conv1D layout (for tests and export)."""
    out = {}
    for name, tensor in model.transformer.state_dict().items():
        name = name.replace(".base.", ".")  # if LoRA-wrapped
        if ".lora_" in name:
            continue
        if name.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t()
        out[name] = tensor.detach().contiguous()
    return out


def param_count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
