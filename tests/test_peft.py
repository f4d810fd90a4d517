"""PEFT interchange: an exported adapter gives the same probabilities under Hugging Face PEFT, a
PEFT-trained adapter the same under LoRA Workbench, and what we cannot reproduce is refused."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from workbench.core.adapters import (
    AdapterInfo,
    load_adapter_weights,
    read_adapter,
    save_adapter,
    save_adapter_tensors,
)
from workbench.core.config import LoRAConfig, ModelConfig
from workbench.core.errors import AdapterError
from workbench.core.lora import adapter_shapes as expected_shapes
from workbench.core.lora import build_lora_model, lora_layers
from workbench.core.peft_io import export_peft, hf_module_names, import_peft, peft_targets

LABELS = ("neg", "neu", "pos")
PAD = 50256
LENGTHS = torch.tensor([12, 5, 9, 1])


def padded_batch():
    """Right-padded byte-level ids (never the pad id itself), as both models expect."""
    ids = torch.randint(0, 256, (len(LENGTHS), int(LENGTHS.max())), generator=torch.Generator().manual_seed(3))
    mask = torch.arange(ids.shape[1]) < LENGTHS[:, None]
    return ids.masked_fill(~mask, PAD), mask.long()


def our_adapter(checkpoint, folder, lora, seed=0):
    """Our model with random lora_B and head (so both matter), saved as an adapter file."""
    model = build_lora_model(checkpoint, lora, len(LABELS), seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.2)
        model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=g) * 0.15)
    info = AdapterInfo(
        base_model=str(checkpoint),
        model_config=model.config,
        lora=lora,
        label_names=LABELS,
        max_length=48,
        metrics={"test_accuracy": 0.5},
    )
    return model.eval(), save_adapter(folder / "ours.safetensors", model, info)


@pytest.fixture(scope="module")
def peft():
    """PEFT and transformers are a test extra; the tests that do not run them need neither."""
    pytest.importorskip("transformers")
    return pytest.importorskip("peft")


def hf_model(checkpoint):
    from transformers import GPT2ForSequenceClassification

    return GPT2ForSequenceClassification.from_pretrained(checkpoint, num_labels=len(LABELS), pad_token_id=PAD).eval()


@torch.no_grad()
def our_probs(model):
    ids, _ = padded_batch()
    return torch.softmax(model.eval()(ids, LENGTHS), dim=-1)


@torch.no_grad()
def hf_probs(model):
    ids, mask = padded_batch()
    return torch.softmax(model.eval()(input_ids=ids, attention_mask=mask).logits, dim=-1)


def lora_modules(peft_model):
    """Module names (as in the transformers model) that PEFT put LoRA on."""
    prefix = "base_model.model."
    return {
        n.removeprefix(prefix).removesuffix(".lora_A") for n, _ in peft_model.named_modules() if n.endswith(".lora_A")
    }


CASES = {
    "all": LoRAConfig(rank=4, alpha=8),
    "attn_out only": LoRAConfig(rank=2, alpha=3.5, targets=("attn_out",)),  # not mlp.c_proj
    "mlp_down only": LoRAConfig(rank=2, alpha=4, targets=("mlp_down",)),  # not attn.c_proj
    "top block": LoRAConfig(rank=8, alpha=16, targets=("qkv", "mlp_up", "mlp_down"), top_blocks=1),
}


@pytest.mark.parametrize("lora", CASES.values(), ids=CASES.keys())
def test_exported_adapter_gives_our_probabilities_in_peft(peft, tiny_checkpoint, tmp_path, lora):
    model, adapter = our_adapter(tiny_checkpoint, tmp_path, lora)
    folder = export_peft(adapter, tmp_path / "peft")

    peft_model = peft.PeftModel.from_pretrained(hf_model(tiny_checkpoint), folder)
    assert lora_modules(peft_model) == {
        name.removesuffix(".lora_A") for name, _ in model.named_parameters() if name.endswith(".lora_A")
    }
    expected = our_probs(model)
    assert (expected.max(dim=-1).values < 0.99).all()  # not saturated, so a difference would show
    torch.testing.assert_close(hf_probs(peft_model), expected, atol=1e-5, rtol=0)
    # and the adapter matters: without it PEFT's base model disagrees
    with peft_model.disable_adapter():
        assert (hf_probs(peft_model) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("lora", CASES.values(), ids=CASES.keys())
def test_export_then_import_restores_the_adapter_exactly(tiny_checkpoint, tmp_path, lora):
    _, adapter = our_adapter(tiny_checkpoint, tmp_path, lora)
    back = import_peft(export_peft(adapter, tmp_path / "peft"), tmp_path / "back.safetensors")
    (tensors, info), (original, original_info) = read_adapter(back), read_adapter(adapter)
    assert tensors.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(tensors[name], tensor), name
    for field in ("base_model", "model_config", "lora", "label_names", "max_length", "pad_token_id", "metrics"):
        assert getattr(info, field) == getattr(original_info, field), field


def test_peft_trained_adapter_gives_peft_probabilities_here(peft, tiny_checkpoint, tmp_path):
    config = peft.LoraConfig(
        r=4,
        lora_alpha=12,
        target_modules=r".*\.h\.1\.(attn\.c_attn|mlp\.c_proj)",
        modules_to_save=["score"],
        task_type="SEQ_CLS",
        fan_in_fan_out=True,
    )
    peft_model = peft.get_peft_model(hf_model(tiny_checkpoint), config)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _name, p in peft_model.named_parameters():
            if p.requires_grad:  # lora_A, lora_B and the saved copy of the head
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    peft_model.save_pretrained(tmp_path / "peft")

    path = import_peft(tmp_path / "peft", tmp_path / "ours.safetensors", labels=list(LABELS), max_length=32)
    tensors, info = read_adapter(path)
    assert info.lora == LoRAConfig(rank=4, alpha=12, targets=("qkv", "mlp_down"), top_blocks=1)
    assert (info.label_names, info.max_length, info.base_model) == (LABELS, 32, str(tiny_checkpoint))
    ours = build_lora_model(tiny_checkpoint, info.lora, len(LABELS), seed=0)
    load_adapter_weights(ours, tensors, info)
    torch.testing.assert_close(our_probs(ours), hf_probs(peft_model), atol=1e-5, rtol=0)


# PEFT's own matcher decides which layers an imported config adapts; ours must agree with it.
MATCHING = {
    "plain c_proj means both": dict(target_modules=["c_proj"]),
    "suffixes": dict(target_modules=["attn.c_proj", "c_fc"]),
    "regex": dict(target_modules=r".*h\.\d+\.(mlp\.c_fc|attn\.c_proj)"),
    "layers": dict(target_modules=["c_attn", "mlp.c_proj"], layers_to_transform=[1], layers_pattern="h"),
    "layers, no pattern": dict(target_modules=["c_attn"], layers_to_transform=1),
    "all-linear": dict(target_modules="all-linear"),
    "excluded": dict(target_modules=["c_attn", "c_fc"], exclude_modules=["h.0.mlp.c_fc"]),
}


@pytest.mark.parametrize("options", MATCHING.values(), ids=MATCHING.keys())
def test_target_matching_agrees_with_peft(peft, tiny_checkpoint, options):
    config = peft.LoraConfig(r=2, task_type="SEQ_CLS", fan_in_fan_out=True, **options)
    hf = hf_model(tiny_checkpoint)
    assert hf_module_names(2) == [n for n, _ in hf.named_modules() if n]
    expected = lora_modules(peft.get_peft_model(hf, config))
    saved = json.loads(json.dumps(config.to_dict(), default=sorted))  # as adapter_config.json holds it
    assert {n for n in hf_module_names(2) if peft_targets(saved, n)} == expected


# --- without PEFT installed -------------------------------------------------------------------


@pytest.fixture
def exported(tiny_checkpoint, tmp_path):
    _, adapter = our_adapter(tiny_checkpoint, tmp_path, LoRAConfig(rank=2, alpha=2, targets=("qkv", "attn_out")))
    return export_peft(adapter, tmp_path / "peft")


def edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(use_dora=True), "DoRA"),
        (dict(use_rslora=True), "use_rslora"),
        (dict(rank_pattern={"c_attn": 8}), "rank_pattern"),
        (dict(alpha_pattern={"c_attn": 8}), "alpha_pattern"),
        (dict(bias="lora_only"), "bias"),
        (dict(peft_type="IA3"), "IA3 adapter, not LoRA"),
        (dict(modules_to_save=["score", "ln_f"]), "ln_f"),
        (dict(target_modules=["wte", "c_attn"]), "transformer.wte"),
        (dict(target_modules=["q_proj", "v_proj"]), "matches no layer"),
        (dict(target_modules="[unclosed"), "not a valid pattern"),
        (dict(layers_to_transform=[0], layers_pattern="h"), "blocks 0"),
        (dict(target_modules=r"transformer\.h\.0\.attn\.c_attn|transformer\.h\.1\.attn\.c_proj"), "different layers"),
        (dict(target_modules=["c_attn"]), "tensors do not match its LoRA settings"),
        (dict(r=3), "shape"),
        (dict(base_model_name_or_path="EleutherAI/gpt-neo-125m"), "neither a GPT-2 size"),
        (dict(base_model_name_or_path="gpt2"), "does not fit gpt2 \\(12 layers, width 768\\)"),
    ],
)
def test_unsupported_peft_adapters_are_refused(exported, tmp_path, changes, message):
    edit_config(exported, **changes)
    with pytest.raises(AdapterError, match=message):
        import_peft(exported, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_several_problems_are_reported_together(exported, tmp_path):
    edit_config(exported, use_dora=True, use_rslora=True)
    with pytest.raises(AdapterError, match="DoRA.*use_rslora"):
        import_peft(exported, tmp_path / "out.safetensors")


def test_adapter_without_a_score_head_is_refused(exported, tmp_path):
    weights = exported / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if "score" not in k}, weights)
    with pytest.raises(AdapterError, match="no 'score' classification head"):
        import_peft(exported, tmp_path / "out.safetensors")


def test_dora_magnitude_tensors_are_refused(exported, tmp_path):
    weights = exported / "adapter_model.safetensors"
    tensors = load_file(weights)
    tensors["base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector"] = torch.ones(192)
    save_file(tensors, weights)
    with pytest.raises(AdapterError, match="lora_magnitude_vector"):
        import_peft(exported, tmp_path / "out.safetensors")


class _LeavesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_adapter_model_bin_is_never_opened(exported, tmp_path):
    marker = tmp_path / "unpickled"
    (exported / "adapter_model.safetensors").unlink()
    (exported / "adapter_model.bin").write_bytes(pickle.dumps({"trap": _LeavesMarker(marker)}))
    with pytest.raises(AdapterError, match="pickle"):
        import_peft(exported, tmp_path / "out.safetensors")
    assert not marker.exists()


def test_labels_and_base_model_can_be_given(exported, tiny_checkpoint, tmp_path):
    (exported / "workbench.json").unlink()
    edit_config(exported, base_model_name_or_path="/nowhere/on/this/machine")
    path = import_peft(exported, tmp_path / "a.safetensors", model=str(tiny_checkpoint))
    info = read_adapter(path)[1]
    assert info.label_names == ("0", "1", "2") and info.max_length == 256  # the context length
    path = import_peft(exported, tmp_path / "b.safetensors", model=str(tiny_checkpoint), labels=["a", "b", "c"])
    assert read_adapter(path)[1].label_names == ("a", "b", "c")
    with pytest.raises(AdapterError, match="3 classes but 2 label names"):
        import_peft(exported, tmp_path / "c.safetensors", model=str(tiny_checkpoint), labels=["a", "b"])


def test_not_a_peft_folder(tmp_path):
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        import_peft(tmp_path, tmp_path / "out.safetensors")
    with pytest.raises(AdapterError, match="not a folder"):
        import_peft(tmp_path / "missing", tmp_path / "out.safetensors")


def test_export_refuses_a_file_as_the_folder(exported, tmp_path):
    adapter = tmp_path / "ours.safetensors"
    with pytest.raises(AdapterError, match="not a folder"):
        export_peft(adapter, adapter)


def test_gpt2_sizes_travel_as_hub_repo_ids(tmp_path):
    config = ModelConfig.for_size("gpt2-medium")
    lora = LoRAConfig(rank=1, alpha=2, targets=("qkv",), top_blocks=1)
    g = torch.Generator().manual_seed(0)
    tensors = {name: torch.randn(shape, generator=g) for name, shape in expected_shapes(config, lora, 2).items()}
    info = AdapterInfo(base_model="gpt2-medium", model_config=config, lora=lora, label_names=("a", "b"), max_length=128)
    folder = export_peft(save_adapter_tensors(tmp_path / "a.safetensors", tensors, info), tmp_path / "peft")

    saved = json.loads((folder / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "openai-community/gpt2-medium"
    assert (saved["target_modules"], saved["layers_to_transform"], saved["layers_pattern"]) == (
        ["attn.c_attn"],
        [23],
        "h",
    )
    assert (saved["fan_in_fan_out"], saved["modules_to_save"], saved["task_type"]) == (True, ["score"], "SEQ_CLS")
    assert sorted(load_file(folder / "adapter_model.safetensors")) == [
        "base_model.model.score.weight",
        "base_model.model.transformer.h.23.attn.c_attn.lora_A.weight",
        "base_model.model.transformer.h.23.attn.c_attn.lora_B.weight",
    ]
    back, back_info = read_adapter(import_peft(folder, tmp_path / "b.safetensors"))
    assert (back_info.base_model, back_info.model_config, back_info.lora) == ("gpt2-medium", config, lora)
    assert all(torch.equal(back[name], tensor) for name, tensor in tensors.items())
