"""A bf16 run keeps the frozen base in bf16 once (``model.store_frozen_weights``) instead of
autocast casting it every step: the same numbers, half the weight memory, only frozen layers."""

import pytest
import torch
import torch.nn.functional as F
from test_training import separable_csv, tiny_config  # noqa: F401  (fixture)

from workbench.core import events as ev
from workbench.core import training
from workbench.core.classify import Classifier, PackedLinear, can_pack_weights
from workbench.core.config import LoRAConfig
from workbench.core.lora import apply_lora, lora_layers
from workbench.core.model import GPT2Classifier, attention, store_frozen_weights

IDS = torch.randint(0, 50000, (3, 11), generator=torch.Generator().manual_seed(1))
LENGTHS = torch.tensor([11, 4, 7])


def busy_model(checkpoint):
    torch.manual_seed(0)
    model = apply_lora(GPT2Classifier.from_checkpoint(checkpoint, 2), LoRAConfig(rank=4, alpha=8))
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(0, 0.1)  # a fresh B is zero, which would leave A's gradient zero
    return model


def logits_and_gradients(model):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(IDS, LENGTHS)
    F.cross_entropy(logits.float(), torch.tensor([0, 1, 0])).backward()
    return logits.float().detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def frozen_linears(model):
    return [m for m in model.transformer.h.modules() if isinstance(m, torch.nn.Linear)]


def test_stored_bf16_base_gives_autocasts_logits_and_gradients(tiny_checkpoint):
    autocast_model, stored_model = busy_model(tiny_checkpoint), busy_model(tiny_checkpoint)
    store_frozen_weights(stored_model, "bf16")
    expected_logits, expected = logits_and_gradients(autocast_model)
    logits, grads = logits_and_gradients(stored_model)
    # Autocast rounds each fp32 weight to bf16 exactly as the stored copy was rounded, and the same
    # bf16 operands go into the same kernels: the numbers are the same to the bit.
    assert torch.equal(logits, expected_logits)
    assert grads.keys() == expected.keys() and len(grads) == 2 * len(lora_layers(stored_model)) + 1
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, name  # the optimizer sees fp32 gradients
        assert expected[name].abs().max() > 0, name  # a gradient that says something
        assert torch.equal(grad, expected[name]), name


def test_only_the_frozen_block_linears_turn_bf16_and_their_memory_halves(tiny_checkpoint):
    model = busy_model(tiny_checkpoint)
    before = sum(p.numel() * p.element_size() for m in frozen_linears(model) for p in m.parameters())
    store_frozen_weights(model, "fp32")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32: nothing changes

    store_frozen_weights(model, "bf16")
    after = sum(p.numel() * p.element_size() for m in frozen_linears(model) for p in m.parameters())
    assert after * 2 == before
    for name, p in model.named_parameters():
        frozen_linear = ".base." in name or name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
        frozen_linear = frozen_linear or name.endswith(("c_attn.bias", "c_proj.bias", "c_fc.bias"))
        expected = torch.bfloat16 if frozen_linear and ".lora_" not in name else torch.float32
        assert p.dtype == expected, name  # LoRA A/B, head, embeddings and layer norms stay fp32


def test_top_blocks_leave_unadapted_linears_bf16_too(tiny_checkpoint):
    torch.manual_seed(0)
    model = apply_lora(GPT2Classifier.from_checkpoint(tiny_checkpoint, 2), LoRAConfig(rank=4, top_blocks=1))
    store_frozen_weights(model, "bf16")
    assert all(m.weight.dtype == torch.bfloat16 for m in frozen_linears(model))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(IDS, LENGTHS)
    logits.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_bf16_training_learns_as_the_autocast_path_does(tiny_checkpoint, separable_csv, monkeypatch):
    cfg = tiny_config(tiny_checkpoint, separable_csv, precision="bf16", epochs=2)
    stored = list(training.train(cfg))
    monkeypatch.setattr(training, "store_frozen_weights", lambda model, precision: None)  # autocast only
    cast_each_step = list(training.train(cfg))

    def full_evaluations(events):
        return [e for e in events if isinstance(e, ev.Evaluated) and e.full]

    assert isinstance(stored[-1], ev.TrainingFinished) and isinstance(cast_each_step[-1], ev.TrainingFinished)
    for a, b in zip(full_evaluations(stored), full_evaluations(cast_each_step), strict=True):
        assert a.val_accuracy == pytest.approx(b.val_accuracy, abs=0.02)
        assert a.val_loss == pytest.approx(b.val_loss, rel=0.05, abs=0.01)
    assert stored[-1].metrics.accuracy >= 0.95
    assert stored[-1].metrics.accuracy == pytest.approx(cast_each_step[-1].metrics.accuracy, abs=0.02)


def test_bf16_classifier_stores_merged_weights_and_agrees_with_fp32(tiny_checkpoint, separable_csv):
    adapter = list(training.train(tiny_config(tiny_checkpoint, separable_csv, max_steps=8)))[-1].adapter_path
    texts = ["win cash now", "see you at lunch", "ok", "claim your free prize"]
    fp32 = Classifier.from_adapter(adapter, device="cpu", precision="fp32")
    bf16 = Classifier.from_adapter(adapter, device="cpu", precision="bf16")
    if can_pack_weights("bf16"):  # packed for oneDNN in bf16, as fp32 is
        assert all(isinstance(layer.base, PackedLinear) for layer in lora_layers(bf16.model))
        assert all(layer.base.weight.dtype == torch.bfloat16 for layer in lora_layers(bf16.model))
    else:
        assert all(m.weight.dtype == torch.bfloat16 for m in frozen_linears(bf16.model))
    assert torch.allclose(bf16.probabilities(texts), fp32.probabilities(texts), atol=0.02)
    typed = bf16.predict_typing("claim your free prize")
    assert typed.label == fp32.predict(["claim your free prize"])[0].label


def test_cpu_attention_runs_backward_in_fp32_under_bf16():
    """PyTorch's bf16 flash-attention backward on a CPU is ~16x slower than fp32's: with autograd
    on, bf16 inputs are attended in fp32 (and the result is no less exact)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attention(q, k, v, is_causal=True)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).bfloat16()
    assert y.dtype == torch.bfloat16 and torch.equal(y, reference)
    y.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()
    with torch.no_grad():  # inference keeps bf16's own (fast) forward kernel
        assert attention(q, k, v, is_causal=True).dtype == torch.bfloat16
