"""What training does differently on CUDA, checked on the CPU: batch widths rounded to a multiple
of 8 (the same logits as unrounded), the fused AdamW (the same step), bigger evaluation batches
(the same probabilities). The GPU itself is measured by benchmarks/gpu_session.sh."""

import torch
import torch.nn.functional as F

from workbench.core import evaluate
from workbench.core.config import LoRAConfig, TrainConfig
from workbench.core.data import EncodedSplit, pad_batch
from workbench.core.device import evaluation_batch_size, padding_multiple
from workbench.core.evaluate import predict_probabilities
from workbench.core.lora import apply_lora, lora_layers
from workbench.core.model import GPT2Classifier
from workbench.core.training import epoch_batches, make_optimizer, train_step

CUDA = torch.device("cuda")  # only a name here: nothing is put on it
CPU = torch.device("cpu")
ROWS = [[5, 6, 7], [1] * 9, [2] * 17, [3]]


def busy_model(checkpoint):
    torch.manual_seed(0)
    model = apply_lora(GPT2Classifier.from_checkpoint(checkpoint, 2), LoRAConfig(rank=4, alpha=8))
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(0, 0.1)
    return model


def test_widths_round_up_to_the_multiple_but_never_past_the_context():
    plain = pad_batch(ROWS, [0, 1, 0, 1], pad_id=99)
    rounded = pad_batch(ROWS, [0, 1, 0, 1], pad_id=99, multiple=8, limit=1024)
    assert plain.input_ids.shape == (4, 17) and rounded.input_ids.shape == (4, 24)
    assert torch.equal(rounded.input_ids[:, :17], plain.input_ids)
    assert (rounded.input_ids[:, 17:] == 99).all()  # only padding added
    assert torch.equal(rounded.lengths, plain.lengths) and torch.equal(rounded.labels, plain.labels)
    assert pad_batch(ROWS, [0] * 4, 99, multiple=8, limit=20).input_ids.shape[1] == 20  # the context caps it
    assert pad_batch([[1] * 16], [0], 99, multiple=8).input_ids.shape[1] == 16  # already a multiple
    assert padding_multiple(CUDA) == 8 and padding_multiple(CPU) == 1


def test_rounded_widths_give_the_same_logits_and_gradients(tiny_checkpoint):
    model = busy_model(tiny_checkpoint)
    plain = pad_batch(ROWS, [0, 1, 0, 1], pad_id=50256)
    rounded = pad_batch(ROWS, [0, 1, 0, 1], pad_id=50256, multiple=8, limit=model.config.n_positions)

    def logits_and_grads(batch):
        model.zero_grad(set_to_none=True)
        logits = model(batch.input_ids, batch.lengths)
        F.cross_entropy(logits, batch.labels).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    expected, expected_grads = logits_and_grads(plain)
    logits, grads = logits_and_grads(rounded)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert all(torch.allclose(g, e, atol=1e-6) for g, e in zip(grads, expected_grads))


def test_cuda_epoch_batches_are_the_cpu_ones_with_rounded_widths():
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 50000, (int(n),), generator=g).tolist() for n in torch.randint(1, 60, (100,), generator=g)]
    train = EncodedSplit(ids, [i % 2 for i in range(100)], [])
    cfg = TrainConfig(batch_size=8, length_grouping=5, seed=3)
    on_cpu = epoch_batches(train, cfg, 0, CPU, 1024)
    on_cuda = epoch_batches(train, cfg, 0, CUDA, 1024)
    assert len(on_cpu) == len(on_cuda) == 13
    assert any(b.input_ids.shape[1] % 8 for b in on_cpu)  # the CPU pads to the longest row only
    for a, b in zip(on_cpu, on_cuda):
        assert b.input_ids.shape[1] % 8 == 0 and 0 <= b.input_ids.shape[1] - a.input_ids.shape[1] < 8
        assert torch.equal(a.lengths, b.lengths) and torch.equal(a.labels, b.labels)  # the same examples
        assert torch.equal(b.input_ids[:, : a.input_ids.shape[1]], a.input_ids)


def test_fused_adamw_on_cuda_takes_the_same_step(tiny_checkpoint):
    cfg = TrainConfig(lr=1e-3, weight_decay=0.1)
    batch = pad_batch(ROWS, [0, 1, 0, 1], pad_id=50256)
    models = [busy_model(tiny_checkpoint), busy_model(tiny_checkpoint)]
    # PyTorch has the fused kernel on the CPU too, so the CUDA choice can run here.
    optimizers = [make_optimizer(models[0], cfg, CPU), make_optimizer(models[1], cfg, CUDA)]
    assert not optimizers[0].defaults["fused"] and optimizers[1].defaults["fused"]
    for model, optimizer in zip(models, optimizers):
        for _ in range(3):
            train_step(model, optimizer, [batch], CPU, "fp32")
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.equal(models[0].score.weight, busy_model(tiny_checkpoint).score.weight)  # it moved


def test_bigger_rounded_evaluation_batches_give_the_same_probabilities(tiny_checkpoint, monkeypatch):
    assert evaluation_batch_size(8, CUDA) == 32 and evaluation_batch_size(8, CPU) == 8
    model = busy_model(tiny_checkpoint)
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(0, 50000, (int(n),), generator=g).tolist() for n in torch.randint(1, 40, (50,), generator=g)]
    expected = predict_probabilities(model, ids, 8, CPU, "fp32")
    monkeypatch.setattr(evaluate, "padding_multiple", lambda device: 8)  # what CUDA gets
    got = predict_probabilities(model, ids, evaluation_batch_size(8, CUDA), CPU, "fp32")
    assert torch.allclose(got, expected, atol=1e-5)
