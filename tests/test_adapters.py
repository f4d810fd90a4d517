"""Adapter files: exact round trip, clear refusals, and saves that never destroy what was there."""

import errno
import os
import pickle
import random

import pytest
import torch
from conftest import write_tiny_checkpoint
from safetensors.torch import save_file

from workbench.core import fileio
from workbench.core.adapters import (
    AdapterInfo,
    adapter_size_bytes,
    check_compatible,
    load_adapter_weights,
    read_adapter,
    save_adapter,
)
from workbench.core.config import LoRAConfig
from workbench.core.errors import AdapterError
from workbench.core.lora import build_lora_model, count_trainable, lora_layers, trainable_state_dict
from workbench.core.model import load_model_config

LORA = LoRAConfig(rank=4, alpha=8, targets=("qkv", "attn_out", "mlp_down"), top_blocks=1, dropout=0.1)
IDS = torch.randint(0, 256, (3, 9), generator=torch.Generator().manual_seed(2))
LENGTHS = torch.tensor([9, 3, 6])


def trained_model(checkpoint, lora=LORA, num_classes=3, seed=0):
    """A LoRA model whose adapter and head are random, so they change every prediction."""
    model = build_lora_model(checkpoint, lora, num_classes, seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)
        model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=g))
    return model.eval()


def make_info(model, checkpoint, **changes):
    values = dict(
        base_model=str(checkpoint),
        model_config=model.config,
        lora=LORA,
        label_names=("ham", "spam", "eggs"),
        max_length=64,
    )
    return AdapterInfo(**{**values, **changes})


@pytest.fixture
def saved(tiny_checkpoint, tmp_path):
    model = trained_model(tiny_checkpoint)
    info = make_info(model, tiny_checkpoint)
    return model, info, save_adapter(tmp_path / "adapter.safetensors", model, info)


# --- round trip ---------------------------------------------------------------------------------


def test_round_trip_gives_bit_identical_predictions(tiny_checkpoint, saved):
    model, _, path = saved
    tensors, info = read_adapter(path)
    fresh = build_lora_model(tiny_checkpoint, info.lora, len(info.label_names), seed=1).eval()  # other A, head
    load_adapter_weights(fresh, tensors, info)
    with torch.no_grad():
        assert torch.equal(fresh(IDS, LENGTHS), model(IDS, LENGTHS))
    for name, tensor in trainable_state_dict(model).items():
        assert torch.equal(tensors[name], tensor), name


def test_metadata_round_trips(tiny_checkpoint, tmp_path):
    model = trained_model(tiny_checkpoint)
    info = make_info(
        model,
        tiny_checkpoint,
        max_length=17,
        pad_token_id=7,
        metrics={"test_accuracy": 0.875, "f1": {"ham": 0.9, "spam": 0.1 + 0.2}},
        created="2024-05-01T12:00:00+00:00",
        package_version="9.9.9",
    )
    _, back = read_adapter(save_adapter(tmp_path / "a.safetensors", model, info))
    assert back == info
    assert isinstance(back.lora.targets, tuple) and isinstance(back.label_names, tuple)


def test_package_version_is_filled_in(tiny_checkpoint, saved):
    from workbench import __version__

    assert read_adapter(saved[2])[1].package_version == __version__


def test_size_on_disk_is_the_parameters_plus_a_small_header(tiny_checkpoint, saved):
    model, info, path = saved
    tensor_bytes = adapter_size_bytes(model)
    assert tensor_bytes == 4 * count_trainable(model.config, info.lora, 3)
    assert tensor_bytes < path.stat().st_size < tensor_bytes + 4096


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (dict(n_layer=3), "3 layers, width 64"),
        (dict(n_embd=96), "2 layers, width 96"),
    ],
)
def test_adapter_for_another_base_is_refused_naming_both(tmp_path, saved, shape, expected):
    other = write_tiny_checkpoint(tmp_path / "other", **shape)
    _, info = read_adapter(saved[2])
    with pytest.raises(AdapterError) as err:  # what Classifier.from_adapter checks before loading
        check_compatible(info, load_model_config(other), str(other))
    message = str(err.value)
    assert "2 layers, width 64" in message and expected in message and str(other) in message


def test_truncated_file_is_reported_as_corrupt(saved):
    path = saved[2]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        read_adapter(path)


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.safetensors"
    noise = random.Random(0).randbytes(2048)
    assert noise[:1] != b"\x80" and noise[:4] != b"PK\x03\x04"  # so it tests the safetensors reader
    path.write_bytes(noise)
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        read_adapter(path)


class _LeavesMarker:
    """Unpickling this creates a file: proof that a loader ran pickle code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["adapter.pt", "adapter.bin", "adapter.safetensors"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickles_are_refused_without_being_unpickled(tmp_path, name, writer):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    payload = {"lora_A": torch.zeros(2, 2), "trap": _LeavesMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)  # a zip archive
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))  # starts with \x80
    with pytest.raises(AdapterError, match="pickle"):
        read_adapter(path)
    assert not marker.exists()


def test_plain_safetensors_file_points_to_import_peft(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"lora_A": torch.zeros(2, 2)}, str(path))
    with pytest.raises(AdapterError, match="import-peft"):
        read_adapter(path)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(AdapterError, match="does not exist"):
        read_adapter(tmp_path / "nope.safetensors")
    with pytest.raises(AdapterError, match="is a folder"):
        read_adapter(tmp_path)


def test_tensors_that_do_not_fit_the_settings_are_refused(tiny_checkpoint, saved):
    _, info, path = saved
    tensors, _ = read_adapter(path)
    model = build_lora_model(tiny_checkpoint, LoRAConfig(rank=4, alpha=8), 3, seed=0)  # every block and layer
    with pytest.raises(AdapterError, match="missing"):
        load_adapter_weights(model, tensors, info)
    bad = dict(tensors)
    name = next(k for k in bad if k.endswith("lora_B"))
    bad[name] = torch.full_like(bad[name], float("nan"))
    model = build_lora_model(tiny_checkpoint, info.lora, 3, seed=0)
    with pytest.raises(AdapterError, match="NaN"):
        load_adapter_weights(model, bad, info)


# --- atomic saves -------------------------------------------------------------------------------


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("failing", ["os.replace", "fsync"])
def test_failed_save_keeps_the_old_file_and_leaves_no_temp_files(tiny_checkpoint, saved, monkeypatch, failing):
    model, info, path = saved
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, failing.removeprefix("os."), disk_full)
    other = trained_model(tiny_checkpoint, seed=5)
    with pytest.raises(AdapterError, match="No space left on device.*unchanged"):
        save_adapter(path, other, info)
    assert path.read_bytes() == before
    assert _no_temp_files(path.parent)


def test_saving_into_a_missing_folder_is_refused(saved, tmp_path):
    model, info, _ = saved
    target = tmp_path / "missing" / "adapter.safetensors"
    with pytest.raises(AdapterError, match="does not exist"):
        save_adapter(target, model, info)
    assert not target.parent.exists()


def test_saving_into_a_read_only_folder_is_refused(saved, tmp_path, monkeypatch):
    model, info, _ = saved
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        # root writes through chmod 0o500, so simulate what the OS says to anyone else.
        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(fileio.tempfile, "mkstemp", denied)
    else:
        folder.chmod(0o500)
    try:
        with pytest.raises(AdapterError, match="Permission denied"):
            save_adapter(folder / "adapter.safetensors", model, info)
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []
