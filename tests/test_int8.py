"""int8 classification (``Classifier.from_adapter(quantize=...)``, ``classify --int8``): it keeps
the decisions of the fp32 model, "auto" takes it only where it measured clearly faster and the
precision was left open, and the adapter file stays fp32.

Whether int8 pays depends on the machine, so no test assumes what "auto" decides here: the
measurement is replaced by a fixed verdict wherever the decision is tested."""

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import SMS_FILE, require_shared
from test_training import separable_csv, tiny_config  # noqa: F401  (fixture)

from workbench.cli import main
from workbench.core import classify
from workbench.core import int8 as int8mod
from workbench.core.classify import Classifier, PackedLinear, use_int8
from workbench.core.config import DataConfig, TrainConfig
from workbench.core.data import load_table, make_splits
from workbench.core.errors import ConfigError
from workbench.core.int8 import Int8Linear, Int8Verdict, can_run_int8
from workbench.core.training import train

int8_runs = pytest.mark.skipif(not can_run_int8(), reason="this PyTorch has no CPU int8 matmul (torch._int_mm)")
CPU = torch.device("cpu")


@int8_runs
def test_int8_linear_is_close_to_the_float_layer():
    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    with torch.no_grad():
        linear.weight.normal_(0, 0.05, generator=g)
    x = torch.randn(3, 7, 96, generator=g)
    x[1, 2] = 0  # an all-zero row (a scale of zero would divide by zero)
    layer = Int8Linear(linear)
    assert layer.weight_t.dtype == torch.int8 and layer.weight_t.shape == (96, 40)
    with torch.inference_mode():
        y, expected = layer(x), linear(x)
        assert y.shape == expected.shape and y.dtype == x.dtype
        # Two roundings to 1/254 of a row's range: ~1% of the output's size, not more.
        assert (y - expected).abs().max() <= 0.02 * expected.abs().max()
        assert torch.allclose(y[1, 2], linear.bias)
        assert layer(x.bfloat16()).dtype == torch.bfloat16
    no_bias = Int8Linear(torch.nn.Linear(96, 40, bias=False))
    assert no_bias.bias is None and no_bias(x).shape == (3, 7, 40)


@int8_runs
def test_int8_linear_matches_the_formula_written_out_and_leaves_the_weight():
    """The arithmetic itself, with float ops: per-channel weight scales and per-row input scales;
    building it must not touch the float layer's weight (bf16 or fp32)."""
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        linear = torch.nn.Linear(16, 8).to(dtype)
        before = linear.weight.detach().clone()
        layer = Int8Linear(linear)
        assert torch.equal(linear.weight, before)
        x = torch.randn(5, 16, generator=g)
        w = linear.weight.detach().float()
        w_scale = w.abs().amax(1) / 127
        x_scale = x.abs().amax(1, keepdim=True) / 127
        expected = F.linear(torch.round(x / x_scale), torch.round(w / w_scale[:, None])) * x_scale * w_scale
        with torch.inference_mode():
            assert torch.allclose(layer(x), expected + linear.bias.float(), atol=1e-5)


def fixed_verdict(monkeypatch, speedup: float) -> list[int]:
    """Replace the timing with a verdict of this speedup; returns the widths it was asked for."""
    asked = []

    def verdict(width, float_layer):
        asked.append(width)
        return Int8Verdict(float_ms=speedup, int8_ms=1.0)

    monkeypatch.setattr(classify, "int8_verdict", verdict)
    monkeypatch.setattr(classify, "can_run_int8", lambda: True)
    return asked


def test_auto_takes_int8_only_where_measured_faster_with_precision_left_to_choose(monkeypatch):
    asked = fixed_verdict(monkeypatch, speedup=2.0)
    assert use_int8("auto", "auto", "fp32", CPU, 768)
    assert asked == [768]  # measured at the model's width
    assert not use_int8("auto", "fp32", "fp32", CPU, 768)  # pinned fp32 means fp32 arithmetic
    assert not use_int8("auto", "bf16", "bf16", CPU, 768)
    assert not use_int8("auto", "auto", "bf16", CPU, 768)  # auto chose bf16: int8 stays out
    assert not use_int8("auto", "auto", "fp32", torch.device("meta"), 768)  # not a CPU
    assert asked == [768]  # none of those measured anything
    fixed_verdict(monkeypatch, speedup=int8mod.INT8_MARGIN * 0.99)  # faster, but not clearly
    assert not use_int8("auto", "auto", "fp32", CPU, 768)
    fixed_verdict(monkeypatch, speedup=0.5)
    assert not use_int8("auto", "auto", "fp32", CPU, 768)
    assert use_int8("int8", "fp32", "fp32", CPU, 768)  # asked for: taken whatever was measured
    assert not use_int8("off", "auto", "fp32", CPU, 768)


def test_quantize_mistakes_are_one_line_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="quantize must be one of auto, int8, off"):
        use_int8("int4", "auto", "fp32", CPU, 768)
    with pytest.raises(ConfigError, match="CPU only"):
        use_int8("int8", "auto", "fp32", torch.device("meta"), 768)
    monkeypatch.setattr(classify, "can_run_int8", lambda: False)
    with pytest.raises(ConfigError, match="no int8 matmul"):
        use_int8("int8", "auto", "fp32", CPU, 768)
    assert not use_int8("auto", "auto", "fp32", CPU, 768)  # auto quietly stays float


@int8_runs
def test_the_measurement_times_both_forms_and_keeps_its_verdict(monkeypatch):
    monkeypatch.setattr(int8mod, "_verdicts", {})
    built = []

    def float_layer(linear):
        built.append((linear.in_features, linear.out_features))
        return linear

    verdict = int8mod.int8_verdict(32, float_layer)
    assert built == [(32, 32), (32, 128), (128, 32)]  # attention output, MLP up, MLP down
    assert verdict.float_ms > 0 and verdict.int8_ms > 0 and verdict.pays == (verdict.speedup >= int8mod.INT8_MARGIN)
    assert int8mod.int8_verdict(32, float_layer) is verdict and len(built) == 3  # measured once per width
    assert torch.get_num_threads() == 1  # conftest's one thread, restored after the 1-thread probe


@int8_runs
def test_int8_classifier_spares_qkv_types_as_it_classifies_and_leaves_the_adapter(tiny_checkpoint, separable_csv):
    adapter = list(train(tiny_config(tiny_checkpoint, separable_csv, max_steps=12)))[-1].adapter_path
    digest = hashlib.sha256(Path(adapter).read_bytes()).hexdigest()
    int8 = Classifier.from_adapter(adapter, device="cpu", precision="fp32", quantize="int8")
    fp32 = Classifier.from_adapter(adapter, device="cpu", precision="fp32", quantize="off")
    assert int8.int8 and not fp32.int8
    for block in int8.model.transformer.h:
        assert not isinstance(block.attn.c_attn.base, Int8Linear)  # queries and keys stay float
        assert isinstance(block.attn.c_attn.base, (PackedLinear, torch.nn.Linear))
        quantized = (block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj)
        assert all(isinstance(layer.base, Int8Linear) for layer in quantized)
    texts = ["win cash now", "see you at lunch", "claim your free prize", "ok"]
    assert torch.allclose(int8.probabilities(texts), fp32.probabilities(texts), atol=0.02)
    for text in ("claim your", "claim your free prize"):  # typing: cached keys/values through int8
        assert int8.predict_typing(text).label == int8.predict([text])[0].label
    assert hashlib.sha256(Path(adapter).read_bytes()).hexdigest() == digest  # the file stays fp32


@int8_runs
def test_auto_builds_the_classifier_the_verdict_says(tiny_checkpoint, separable_csv, monkeypatch):
    adapter = list(train(tiny_config(tiny_checkpoint, separable_csv, max_steps=1)))[-1].adapter_path
    monkeypatch.setattr(classify, "pick_precision", lambda requested, device, width: "fp32")  # auto chose fp32
    fixed_verdict(monkeypatch, speedup=2.0)
    assert Classifier.from_adapter(adapter, device="cpu").int8
    assert not Classifier.from_adapter(adapter, device="cpu", precision="fp32").int8
    fixed_verdict(monkeypatch, speedup=1.0)
    assert not Classifier.from_adapter(adapter, device="cpu").int8


@int8_runs
def test_int8_keeps_the_decisions_of_a_model_trained_on_the_sms_data(sms_tiny_adapter):
    """The bar for offering int8 at all: on a tiny GPT-2 trained on the real SMS data, at least
    99.5% of the test labels equal fp32's, every probability within 0.02."""
    data = DataConfig(source=str(require_shared(SMS_FILE)), max_length=64)  # as the fixture trained
    texts = make_splits(load_table(data), data, seed=TrainConfig().seed).test.texts
    fp32 = Classifier.from_adapter(sms_tiny_adapter, device="cpu", precision="fp32", quantize="off")
    int8 = Classifier.from_adapter(sms_tiny_adapter, device="cpu", precision="fp32", quantize="int8")
    expected, probs = fp32.probabilities(texts), int8.probabilities(texts)
    assert len(texts) >= 250 and int8.int8  # the held-out split (262 messages)
    assert (expected.argmax(-1) == 0).float().mean() < 0.95  # a model that decides, not one that says ham
    assert (probs.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.995
    assert (probs - expected).abs().max() <= 0.02


def test_cli_int8_flags_reach_the_classifier(monkeypatch, capsys):
    seen = []

    def fake_from_adapter(adapter, **kwargs):
        seen.append(kwargs["quantize"])
        raise ConfigError("stop here")

    monkeypatch.setattr(Classifier, "from_adapter", fake_from_adapter)
    for flags in ([], ["--int8"], ["--no-int8"]):
        assert main(["classify", "--adapter", "a.safetensors", *flags, "hello"]) == 2
    assert main(["eval", "--adapter", "a.safetensors", "--data", "sms-spam", "--int8"]) == 2
    assert seen == ["auto", "int8", "off", "int8"]
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("stop here")


def test_int8_on_a_gpu_is_a_one_line_mistake_before_anything_loads(capsys):
    with pytest.raises(ConfigError, match="CPU only"):
        Classifier.from_adapter("no-such.safetensors", device="meta", quantize="int8")
    code = main(["classify", "--adapter", "no-such.safetensors", "--device", "meta", "--int8", "hello"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "CPU only" in err
