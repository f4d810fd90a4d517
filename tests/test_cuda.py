"""The CUDA path: same numbers as the CPU, bf16 learns as fp32 does, a real out-of-memory is caught,
auto measures the GPU.

Skipped where PyTorch sees no NVIDIA GPU (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

import pytest
import torch
from test_training import separable_csv, tiny_config  # noqa: F401 (fixture)

from workbench.bench import BenchConfig, run_bench
from workbench.core import events as ev
from workbench.core.classify import Classifier
from workbench.core.config import LoRAConfig
from workbench.core.lora import build_lora_model
from workbench.core.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    """TF32 would make CUDA's fp32 differ from the CPU's by ~1e-3; these tests compare exact fp32."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def lora_model_with_nonzero_update(checkpoint):
    model = build_lora_model(checkpoint, LoRAConfig(rank=4, alpha=8), num_classes=2, seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.05)  # fresh B is zero: make the adapters do something
    return model.eval()


def test_cuda_logits_equal_cpu_logits(tiny_checkpoint):
    model = lora_model_with_nonzero_update(tiny_checkpoint)
    ids = torch.randint(0, 50000, (4, 21))
    lengths = torch.tensor([21, 5, 13, 1])
    with torch.no_grad():
        on_cpu = model(ids, lengths)
        model.cuda()
        on_gpu = model(ids.cuda(), lengths.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            in_bf16 = model(ids.cuda(), lengths.cuda()).float().cpu()
    assert torch.allclose(on_gpu, on_cpu, atol=1e-4), (on_gpu - on_cpu).abs().max()
    assert torch.allclose(in_bf16, on_cpu, atol=0.05), (in_bf16 - on_cpu).abs().max()


def test_training_on_cuda_in_bf16_learns_like_the_cpu_in_fp32(tiny_checkpoint, separable_csv):
    on_cpu = list(train(tiny_config(tiny_checkpoint, separable_csv, device="cpu", precision="fp32")))
    on_gpu = list(train(tiny_config(tiny_checkpoint, separable_csv, device="cuda", precision="bf16")))
    started = next(e for e in on_gpu if isinstance(e, ev.RunStarted))
    assert "CUDA" in started.device and started.precision == "bf16"  # forced: auto measures, and may pick fp32
    cpu_done, gpu_done = on_cpu[-1], on_gpu[-1]
    assert isinstance(gpu_done, ev.TrainingFinished), gpu_done
    assert gpu_done.metrics.accuracy >= 0.95
    assert abs(gpu_done.metrics.accuracy - cpu_done.metrics.accuracy) <= 0.05


def test_adapter_trained_on_cuda_classifies_the_same_on_the_cpu(tiny_checkpoint, separable_csv):
    adapter = list(train(tiny_config(tiny_checkpoint, separable_csv, device="cuda", max_steps=6)))[-1].adapter_path
    texts = ["win cash prize now", "see you at lunch tomorrow", "free"]
    on_gpu = Classifier.from_adapter(adapter, device="cuda", precision="fp32").predict(texts)
    on_cpu = Classifier.from_adapter(adapter, device="cpu", precision="fp32").predict(texts)
    for g, c in zip(on_gpu, on_cpu):
        assert g.label == c.label
        for name in g.probabilities:
            assert g.probabilities[name] == pytest.approx(c.probabilities[name], abs=1e-4)


def test_typing_with_cached_keys_on_cuda_matches_the_whole_message(tiny_checkpoint, separable_csv):
    adapter = list(train(tiny_config(tiny_checkpoint, separable_csv, device="cuda", max_steps=3)))[-1].adapter_path
    classifier = Classifier.from_adapter(adapter, device="cuda", precision="fp32")
    for text in ["w", "win", "win cash", "win ca", "see you at lunch"]:
        typed = classifier.predict_typing(text)
        (whole,) = classifier.predict([text])
        for name in typed.probabilities:
            assert typed.probabilities[name] == pytest.approx(whole.probabilities[name], abs=1e-4)


def test_a_real_cuda_out_of_memory_becomes_a_retry_offer(tiny_checkpoint, separable_csv):
    """The caching allocator is capped just above the weights, so the first batch runs out."""
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(20 * 2**20 / total)  # 20 MB; the weights take ~14
    try:
        cfg = tiny_config(tiny_checkpoint, separable_csv, device="cuda", precision="fp32", batch_size=64)
        failed = list(train(cfg))[-1]
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert isinstance(failed, ev.TrainingFailed) and failed.kind == "oom", failed
    assert failed.retry_batch_size == 32


def test_bench_on_cuda_reports_allocated_memory(tiny_checkpoint):
    result = run_bench(
        BenchConfig(
            model=str(tiny_checkpoint),
            data="synthetic",
            steps=2,
            warmup=1,
            eval_examples=16,
            classify_runs=3,
            device="cuda",
            precision="bf16",  # forced: what auto picks is the probe's verdict on this GPU
            matmul_size=256,
        )
    )
    assert result.cuda_max_allocated_mb is not None and result.cuda_max_allocated_mb > 0
    assert result.precision == "bf16" and "CUDA" in result.device
    assert result.train_examples_per_s > 0


def test_auto_measures_the_gpu_and_says_why():
    from workbench.core import precision

    choice = precision.choose_precision("auto", torch.device("cuda"), 768)
    assert choice.precision in ("fp32", "bf16") and "the speed of fp32 here" in choice.reason
    print(choice.reason)  # the verdict on this GPU, for the session's notes
