"""Token attribution methods compared: cost on GPT-2 small, and faithfulness on a trained adapter.

The numbers behind the choice in workbench/core/explain.py (its docstring quotes them):

    python benchmarks/explain_methods.py --tokenizer ../shared/data/gpt2-tokenizer
    python benchmarks/explain_methods.py --tokenizer ../shared/data/gpt2-tokenizer \\
        --adapter tiny_sms.safetensors --data ../shared/data/sms_spam_collection/SMSSpamCollection

Cost: a GPT-2 small layout with random weights (the time does not depend on the values), the
LoRA adapter merged, messages of 10/25/50 tokens; CPU time of one thread by default, which a
busy shared machine disturbs less than wall time. Gradient methods run on an unpacked copy (packed
CPU weights take no gradients); occlusion runs on the classifier as it classifies.

Faithfulness (with --adapter): over the test split, the mean drop of the predicted class's
probability when the k pieces a method ranks highest are deleted, k = 1..5, against k random
pieces (10 draws per message).
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.core import explain as X
from workbench.core.adapters import AdapterInfo
from workbench.core.classify import Classifier, pack_weights_for_cpu, predict_probabilities
from workbench.core.config import DataConfig, LoRAConfig, ModelConfig
from workbench.core.device import autocast
from workbench.core.lora import apply_lora, merge_lora
from workbench.core.model import GPT2Classifier
from workbench.core.tokenizer import load_tokenizer

SPAM = (
    "WINNER!! As a valued network customer you have been selected to receive a £900 prize reward! "
    "To claim call 09061701461. Claim code KL341. Valid 12 hours only. "
)


def gradient_x_input(model, ids: list[int], device, precision, steps: int = 0) -> torch.Tensor:
    """(C, n): gradient x input on the token embeddings (steps=0), or integrated gradients from a
    zero embedding with ``steps`` midpoint steps; both of each class's log-odds."""
    box: dict = {}

    def swap(_module, _inputs, out):
        e = out.detach()  # (1, n, D)
        if steps:
            alphas = ((torch.arange(steps) + 0.5) / steps).to(e)
            scaled = (alphas[:, None, None] * e).requires_grad_()  # (steps, n, D)
        else:
            scaled = e.clone().requires_grad_()
        box["x"], box["e"] = scaled, e
        return scaled

    hook = model.transformer.wte.register_forward_hook(swap)
    try:
        with torch.enable_grad(), autocast(device, precision):
            odds = X.log_odds(model(torch.tensor([ids])).float())  # (steps or 1, C)
        rows = []
        for c in range(model.num_classes):
            (grad,) = torch.autograd.grad(odds[:, c].sum(), box["x"], retain_graph=c < model.num_classes - 1)
            rows.append((grad.mean(0) * box["e"][0]).sum(-1).float())
    finally:
        hook.remove()
    return torch.stack(rows).detach()


def plain_occlusion(classifier, ids: list[int]) -> torch.Tensor:
    """(C, n): each shortened text run whole, in one batch (no shared prefix)."""
    rows = [ids[:i] + ids[i + 1 :] or [50256] for i in range(len(ids))]
    with torch.inference_mode(), autocast(classifier.device, classifier.precision):
        full = classifier.model(torch.tensor([ids]))
        without = classifier.model(torch.tensor(rows))
    return (X.log_odds(full.float()) - X.log_odds(without.float())).T


def time_methods(args) -> None:
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.tokenizer)
    config = ModelConfig.for_size("gpt2")
    lora = LoRAConfig()
    model = apply_lora(GPT2Classifier(config, 2), lora).eval()
    merge_lora(model)
    unpacked = copy.deepcopy(model)
    cpu = torch.device("cpu")
    pack_weights_for_cpu(model, cpu, "fp32")
    info = AdapterInfo("gpt2", config, lora, ("ham", "spam"), config.n_positions)
    classifier = Classifier(model, tokenizer, info, cpu, "fp32")
    clock = time.process_time if args.threads == 1 else time.perf_counter
    for length in args.lengths:
        ids = tokenizer.encode_ordinary(SPAM * 8)[:length]
        text = tokenizer.decode(ids)
        methods = {
            "forward": lambda text=text: classifier.probabilities([text]),
            "grad x input": lambda ids=ids: gradient_x_input(unpacked, ids, cpu, "fp32"),
            "IG 4 steps": lambda ids=ids: gradient_x_input(unpacked, ids, cpu, "fp32", steps=4),
            "IG 8 steps": lambda ids=ids: gradient_x_input(unpacked, ids, cpu, "fp32", steps=8),
            "occlusion, whole texts": lambda ids=ids: plain_occlusion(classifier, ids),
            "occlusion, shared prefix": lambda text=text: X.explain(classifier, text),
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        for call in methods.values():
            call()
        for _ in range(args.runs):  # interleaved, so a busy moment hits every method alike
            for name, call in methods.items():
                start = clock()
                call()
                times[name].append(1000 * (clock() - start))
        base = min(times["forward"])
        print(f"{length} tokens: " + ", ".join(f"{n} {min(t):.0f} ms ({min(t) / base:.1f}x)" for n, t in times.items()))


def faithfulness(args) -> None:
    from workbench.core.adapters import load_adapter_weights, read_adapter
    from workbench.core.data import encode_texts, load_table, make_splits

    classifier = Classifier.from_adapter(args.adapter, device="cpu", precision="fp32")
    tensors, info = read_adapter(args.adapter)
    unpacked = apply_lora(GPT2Classifier.from_checkpoint(Path(info.base_model), len(info.label_names)), info.lora)
    load_adapter_weights(unpacked, tensors, info)
    merge_lora(unpacked)
    unpacked.eval()
    data = DataConfig(source=args.data, max_length=info.max_length)
    texts = make_splits(load_table(data), data).test.texts
    encoded, _ = encode_texts(texts, classifier.tokenizer, info.max_length)
    cpu = torch.device("cpu")
    methods = {
        "occlusion": lambda ids: torch.tensor(X.explain_ids(classifier, ids).scores),
        "integrated gradients (8)": lambda ids: gradient_x_input(unpacked, ids, cpu, "fp32", steps=8),
        "gradient x input": lambda ids: gradient_x_input(unpacked, ids, cpu, "fp32"),
    }
    rng = random.Random(0)
    drops: dict[str, list[list[float]]] = {name: [[] for _ in range(5)] for name in [*methods, "random"]}
    used = 0
    for ids in encoded:
        pieces = X.character_pieces(classifier.tokenizer, ids)
        if len(pieces) != len(ids) or len(ids) <= 5:
            continue  # gradients score tokens, occlusion pieces: compare where they are the same
        used += 1
        base = probabilities(classifier, [ids])[0]
        c = int(base.argmax())

        def p_without(gone: set[int], c=c, ids=ids) -> float:
            return float(probabilities(classifier, [[t for i, t in enumerate(ids) if i not in gone]])[0, c])

        for name, method in methods.items():
            order = method(ids)[c].argsort(descending=True).tolist()
            for k in range(1, 6):
                drops[name][k - 1].append(float(base[c]) - p_without(set(order[:k])))
        for k in range(1, 6):
            draws = [p_without(set(rng.sample(range(len(ids)), k))) for _ in range(10)]
            drops["random"][k - 1].append(float(base[c]) - sum(draws) / len(draws))
    print(f"deletion curve over {used} test messages (mean drop of the predicted class's probability)")
    for name, curve in drops.items():
        print(f"  {name:26s}" + "  ".join(f"k={k + 1}: {sum(d) / len(d):.3f}" for k, d in enumerate(curve)))


def probabilities(classifier, rows: list[list[int]]) -> torch.Tensor:
    """The classifier's probabilities for token ids as they are (no re-tokenizing)."""
    return predict_probabilities(classifier.model, rows, 32, classifier.device, classifier.precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="folder with gpt2.tiktoken or vocab.json + merges.txt")
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--adapter", help="a trained adapter: measure faithfulness instead of cost")
    parser.add_argument("--data", help="the adapter's dataset (its test split is used)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.adapter:
        faithfulness(args)
    else:
        time_methods(args)


if __name__ == "__main__":
    main()
