"""GPT-2 forward pass: equal to Hugging Face transformers on the same checkpoint."""

import pytest
import torch

from workbench.core.config import ModelConfig
from workbench.core.errors import CheckpointError
from workbench.core.model import GPT2Classifier, export_hf_state_dict

transformers = pytest.importorskip("transformers")


def hf_classifier(folder, score_weight):
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(
        str(folder), num_labels=score_weight.shape[0], pad_token_id=50256
    ).eval()
    with torch.no_grad():
        hf.score.weight.copy_(score_weight)
    return hf


def padded_batch(lengths, vocab=50000, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.full((len(lengths), T), 50256)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(0, vocab, (n,), generator=g)
    return ids, torch.tensor(lengths)


def test_logits_equal_transformers(tiny_checkpoint):
    model = GPT2Classifier.from_checkpoint(tiny_checkpoint, num_classes=3).eval()
    hf = hf_classifier(tiny_checkpoint, model.score.weight)
    ids, lengths = padded_batch([5, 17, 1, 12])
    with torch.no_grad():
        ours = model(ids, lengths)
        theirs = hf(input_ids=ids, attention_mask=(ids != 50256).long()).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_trunk_hidden_states_equal_transformers(tiny_checkpoint):
    model = GPT2Classifier.from_checkpoint(tiny_checkpoint, num_classes=2).eval()
    hf = transformers.GPT2Model.from_pretrained(str(tiny_checkpoint)).eval()
    ids, _ = padded_batch([9])
    with torch.no_grad():
        ours = model.hidden_states(ids)
        theirs = hf(input_ids=ids).last_hidden_state
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_dynamic_padding_equals_padding_to_max_length(tiny_checkpoint):
    model = GPT2Classifier.from_checkpoint(tiny_checkpoint, num_classes=2).eval()
    ids, lengths = padded_batch([3, 8, 6])
    wide = torch.full((3, 40), 50256)
    wide[:, : ids.shape[1]] = ids
    with torch.no_grad():
        assert torch.allclose(model(ids, lengths), model(wide, lengths), atol=1e-5)
        # and each row alone, unpadded
        for row, n in enumerate(lengths.tolist()):
            alone = model(ids[row : row + 1, :n])
            assert torch.allclose(alone[0], model(ids, lengths)[row], atol=1e-5)


def test_export_round_trips_hub_layout(tiny_checkpoint):
    from safetensors.torch import load_file

    model = GPT2Classifier.from_checkpoint(tiny_checkpoint, num_classes=2)
    original = load_file(str(tiny_checkpoint / "model.safetensors"))
    exported = export_hf_state_dict(model)
    assert set(exported) == set(original)
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name


def test_checkpoint_errors_are_clear(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="config.json"):
        GPT2Classifier.from_checkpoint(tmp_path, 2)
    (tmp_path / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        GPT2Classifier.from_checkpoint(tmp_path, 2)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        GPT2Classifier.from_checkpoint(tmp_path, 2)


def test_checkpoint_reader_refuses_broken_files_and_skips_foreign_buffers(tmp_path, tiny_checkpoint):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    expected = GPT2Classifier.from_checkpoint(folder, 2).transformer.state_dict()

    weights.write_bytes(good[: len(good) - 1000])  # cut inside the last tensor
    with pytest.raises(CheckpointError, match="truncated"):
        GPT2Classifier.from_checkpoint(folder, 2)
    weights.write_bytes((10**9).to_bytes(8, "little") + good[8:])  # header longer than the file
    with pytest.raises(CheckpointError, match="header length"):
        GPT2Classifier.from_checkpoint(folder, 2)
    weights.write_bytes(len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        GPT2Classifier.from_checkpoint(folder, 2)

    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    tensors["h.0.attn.bias"] = torch.ones(1, 1, 4, 4, dtype=torch.bool)  # a causal-mask buffer
    tensors["h.1.attn.masked_bias"] = torch.tensor(-1e4).to(torch.int64)
    save_file(tensors, str(weights))
    loaded = GPT2Classifier.from_checkpoint(folder, 2).transformer.state_dict()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)

    tensors["h.0.mlp.c_fc.weight"] = tensors["h.0.mlp.c_fc.weight"].to(torch.int32)
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match="stored as I32"):
        GPT2Classifier.from_checkpoint(folder, 2)


def test_half_precision_checkpoints_load_as_fp32(tmp_path, tiny_checkpoint):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, str(folder / "model.safetensors"))
    model = GPT2Classifier.from_checkpoint(folder, 2)
    exported = export_hf_state_dict(model)
    for name, tensor in tensors.items():
        assert exported[name].dtype == torch.float32
        assert torch.equal(exported[name], tensor.to(torch.bfloat16).float()), name


def test_sizes_have_published_shapes():
    assert ModelConfig.for_size("gpt2").n_params == pytest.approx(124.4e6, rel=0.01)
    assert ModelConfig.for_size("gpt2-medium").n_params == pytest.approx(354.8e6, rel=0.01)
    assert ModelConfig.for_size("gpt2-large").n_params == pytest.approx(774.0e6, rel=0.01)
    assert ModelConfig.for_size("gpt2-xl").n_params == pytest.approx(1557.6e6, rel=0.01)


def test_cached_forward_equals_full_forward(tiny_checkpoint):
    model = GPT2Classifier.from_checkpoint(tiny_checkpoint, num_classes=2).eval()
    ids, _ = padded_batch([12])
    with torch.no_grad():
        full = model(ids)
        _, cache = model.forward_cached(ids[:, :7], None)
        logits, cache = model.forward_cached(ids[:, 7:], cache)
    assert torch.allclose(logits, full, atol=1e-5)
    assert cache[0][0].shape[2] == 12
