"""LoRA: identity at init, only adapters and head learn, merge equals unmerged."""

import platform

import pytest
import torch

from workbench.core.config import LoRAConfig
from workbench.core.errors import ConfigError
from workbench.core.lora import (
    LoRALinear,
    apply_lora,
    count_trainable,
    lora_layers,
    merge_lora,
    trainable_state_dict,
    unmerge_lora,
)
from workbench.core.model import GPT2Classifier, param_count

IDS = torch.randint(0, 50000, (3, 11), generator=torch.Generator().manual_seed(1))
LENGTHS = torch.tensor([11, 4, 7])


def wrapped(checkpoint, **lora):
    torch.manual_seed(0)
    return apply_lora(GPT2Classifier.from_checkpoint(checkpoint, 2), LoRAConfig(**lora))


def test_fresh_adapter_equals_base(tiny_checkpoint):
    torch.manual_seed(0)
    base = GPT2Classifier.from_checkpoint(tiny_checkpoint, 2).eval()
    with torch.no_grad():
        expected = base(IDS, LENGTHS)
        model = apply_lora(base, LoRAConfig(rank=4, alpha=8)).eval()
        assert torch.equal(model(IDS, LENGTHS), expected)


def test_only_lora_and_head_train_and_base_stays_bit_identical(tiny_checkpoint):
    model = wrapped(tiny_checkpoint, rank=4, alpha=8)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n or n == "score.weight" for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(IDS, LENGTHS), torch.tensor([0, 1, 0]))
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
        opt.step()
    for name, before in frozen.items():
        assert torch.equal(model.get_parameter(name), before), name
    assert any(layer.lora_B.abs().sum() > 0 for layer in lora_layers(model))


def test_merge_equals_unmerged_and_is_idempotent(tiny_checkpoint):
    model = wrapped(tiny_checkpoint, rank=4, alpha=16).eval()
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(std=0.05)
        unmerged = model(IDS, LENGTHS)
        weight_before = lora_layers(model)[0].base.weight.clone()
        merge_lora(model)
        merge_lora(model)  # second merge is a no-op
        assert torch.allclose(model(IDS, LENGTHS), unmerged, atol=1e-5)
        unmerge_lora(model)
        unmerge_lora(model)
        assert torch.allclose(lora_layers(model)[0].base.weight, weight_before, atol=1e-6)
        assert torch.allclose(model(IDS, LENGTHS), unmerged, atol=1e-5)


def test_merge_refuses_non_finite_update():
    layer = LoRALinear(torch.nn.Linear(4, 4), rank=2, alpha=2)
    with torch.no_grad():
        layer.lora_B.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        layer.merge()


def test_targets_and_top_blocks_choose_layers(tiny_checkpoint):
    model = wrapped(tiny_checkpoint, rank=2, targets=("qkv", "mlp_down"), top_blocks=1)
    names = sorted(n for n in trainable_state_dict(model) if ".lora_A" in n)
    assert names == ["transformer.h.1.attn.c_attn.lora_A", "transformer.h.1.mlp.c_proj.lora_A"]
    assert model.first_trainable_block == 1


def test_trainable_count_matches_the_model_and_the_book(tiny_checkpoint):
    lora = LoRAConfig(rank=4, alpha=4)
    model = wrapped(tiny_checkpoint, rank=4, alpha=4)
    assert param_count(model, trainable_only=True) == count_trainable(model.config, lora, 2)
    # GPT-2 small, r=16 on qkv/out/up/down in 12 blocks: 2,359,296 LoRA + 1,536 head weights
    from workbench.core.config import ModelConfig

    assert count_trainable(ModelConfig.for_size("gpt2"), LoRAConfig(), 2) == 2_360_832


def test_scaling_and_rank_validation():
    assert LoRALinear(torch.nn.Linear(4, 4), rank=8, alpha=16).scaling == 2.0
    with pytest.raises(ValueError):
        LoRALinear(torch.nn.Linear(4, 4), rank=0, alpha=16)
    problems = LoRAConfig(rank=0, alpha=-1, targets=("nope",)).validate()
    assert len(problems) == 3
    with pytest.raises(ConfigError, match="rank.*alpha"):
        LoRAConfig(rank=0, alpha=-1).check()


def test_seed_makes_lora_init_reproducible(tiny_checkpoint):
    a = trainable_state_dict(wrapped(tiny_checkpoint, rank=4))
    b = trainable_state_dict(wrapped(tiny_checkpoint, rank=4))
    assert all(torch.equal(a[k], b[k]) for k in a)


def gradients(model, precision="fp32"):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(IDS, LENGTHS)
    torch.nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1, 0])).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def with_busy_adapters(checkpoint, **lora):
    model = wrapped(checkpoint, rank=4, alpha=8, **lora)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(0, 0.1)  # fresh B is zero, which would leave A's gradient zero
    return model


def counting_recompute(monkeypatch, enabled=True):
    """Replace model.recompute_when_saved: count the rebuilds, or (disabled) keep everything."""
    import contextlib

    import workbench.core.model as model_module

    real = model_module.recompute_when_saved
    rebuilt = []

    def counted(tensor, make):
        if not enabled:
            return contextlib.nullcontext()
        return real(tensor, lambda: rebuilt.append(1) or make())

    monkeypatch.setattr(model_module, "recompute_when_saved", counted)
    return rebuilt


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_recomputed_activations_give_bit_identical_gradients(tiny_checkpoint, monkeypatch, precision):
    model = with_busy_adapters(tiny_checkpoint)
    rebuilt = counting_recompute(monkeypatch)
    recomputed = gradients(model, precision)
    if precision == "fp32":  # GELU output and both layer-norm outputs, each block
        assert len(rebuilt) == 3 * model.config.n_layer
    else:  # under autocast the LoRA layers keep bf16 copies of the (fp32) layer-norm outputs
        assert len(rebuilt) == model.config.n_layer
    counting_recompute(monkeypatch, enabled=False)
    kept = gradients(model, precision)
    assert recomputed.keys() == kept.keys()
    assert all(torch.equal(recomputed[n], kept[n]) for n in kept)


def test_only_what_a_lora_layer_would_keep_is_recomputed(tiny_checkpoint, monkeypatch):
    """With LoRA on qkv alone, only ln_1's output is kept for an A gradient; the frozen MLP keeps
    neither its input nor the GELU output, so nothing there is rebuilt."""
    model = with_busy_adapters(tiny_checkpoint, targets=("qkv",))
    rebuilt = counting_recompute(monkeypatch)
    gradients(model)
    assert len(rebuilt) == model.config.n_layer
    rebuilt.clear()
    with torch.no_grad():
        model(IDS, LENGTHS)
    assert rebuilt == []


PACKING = torch.backends.mkldnn.is_available() and platform.machine().lower() in ("x86_64", "amd64")
packing_available = pytest.mark.skipif(not PACKING, reason="weights are packed only on x86 CPUs with oneDNN")


@packing_available
def test_packed_weights_classify_like_the_dense_ones(tiny_checkpoint):
    from workbench.core.classify import PackedLinear, pack_weights_for_cpu

    model = with_busy_adapters(tiny_checkpoint).eval()
    merge_lora(model)
    with torch.inference_mode():
        dense = model(IDS, LENGTHS)
        _, cache = model.forward_cached(IDS[:1, :6], None)
        dense_step, _ = model.forward_cached(IDS[:1, 6:7], cache)
    pack_weights_for_cpu(model, torch.device("cpu"), "fp32")
    assert all(isinstance(layer.base, PackedLinear) for layer in lora_layers(model))
    with torch.inference_mode():
        packed = model(IDS, LENGTHS)
        _, cache = model.forward_cached(IDS[:1, :6], None)
        packed_step, _ = model.forward_cached(IDS[:1, 6:7], cache)
    assert torch.allclose(packed, dense, atol=1e-5)
    assert torch.allclose(packed_step, dense_step, atol=1e-5)


def test_packing_needs_merged_adapters_and_skips_gpus(tiny_checkpoint):
    from workbench.core.classify import PackedLinear, pack_weights_for_cpu

    model = with_busy_adapters(tiny_checkpoint)
    for device, precision in ((torch.device("meta"), "bf16"), (torch.device("meta"), "fp32")):
        pack_weights_for_cpu(model, device, precision)
        assert not any(isinstance(m, PackedLinear) for m in model.modules())
    if PACKING:
        with pytest.raises(ValueError, match="merge"):
            pack_weights_for_cpu(model, torch.device("cpu"), "fp32")


@packing_available
def test_packing_that_fails_leaves_a_working_model(tiny_checkpoint, monkeypatch):
    from workbench.core import classify

    model = with_busy_adapters(tiny_checkpoint).eval()
    merge_lora(model)
    with torch.inference_mode():
        expected = model(IDS, LENGTHS)

    def refuse(*args):
        raise RuntimeError("oneDNN cannot reorder this weight")

    monkeypatch.setattr(classify.PackedLinear, "__init__", refuse)
    classify.pack_weights_for_cpu(model, torch.device("cpu"), "fp32")
    with torch.inference_mode():
        assert torch.equal(model(IDS, LENGTHS), expected)
