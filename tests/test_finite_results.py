"""No NaN or infinity is ever shown as a probability: every prediction passes one check
(``probabilities_from_logits``), and the CLI's JSON never contains ``NaN``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_robustness import two_classes, write_csv

from workbench.cli import main, print_json
from workbench.core.adapters import AdapterInfo, save_adapter
from workbench.core.classify import Classifier
from workbench.core.config import LoRAConfig
from workbench.core.errors import NotFinite
from workbench.core.evaluate import predict_probabilities
from workbench.core.lora import build_lora_model


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity, as JavaScript and most other parsers do."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))


@pytest.fixture(scope="module")
def huge_adapter(tiny_checkpoint, tmp_path_factory) -> Path:
    """Finite weights (every file check passes) so large that the network's activations overflow."""
    lora = LoRAConfig(rank=2, alpha=4)
    model = build_lora_model(tiny_checkpoint, lora, 2, seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 1e20)
    info = AdapterInfo(str(tiny_checkpoint), model.config, lora, ("ham", "spam"), max_length=64)
    return save_adapter(tmp_path_factory.mktemp("huge") / "huge.safetensors", model, info)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_prediction_path_refuses_non_finite_output(huge_adapter, precision):
    classifier = Classifier.from_adapter(huge_adapter, precision=precision)
    for predict in (
        lambda: classifier.probabilities(["hello there", "win cash"]),
        lambda: classifier.predict(["hello there"]),
        lambda: classifier.predict_typing("hello"),
    ):
        with pytest.raises(NotFinite, match="not a number"):
            predict()


def test_the_shared_prediction_function_refuses_nan_logits():
    """The function training's evaluations call too (evaluate.loss_and_accuracy and score_split)."""

    class NaNModel(torch.nn.Module):
        num_classes = 3

        def forward(self, ids, lengths):
            out = torch.zeros(len(ids), 3)
            out[-1, 0] = math.nan
            return out

    with pytest.raises(NotFinite, match="1 of 4 texts"):
        predict_probabilities(NaNModel(), [[1], [2, 3], [4], [5, 6, 7]], 2, torch.device("cpu"), "fp32")


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_cli_classify_with_a_huge_adapter_says_why_and_prints_no_nan(huge_adapter, capsys, json_flag):
    assert main(["classify", "--adapter", str(huge_adapter), *json_flag, "hello", "win cash"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "nan" not in out.lower()
    assert len(err.strip().splitlines()) == 1 and "not a number" in err


def test_cli_classify_file_and_eval_with_a_huge_adapter_write_nothing(huge_adapter, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", two_classes())
    target = tmp_path / "out.csv"
    assert main(["classify", "--adapter", str(huge_adapter), "--input", str(data), "--output", str(target)]) == 2
    assert not target.exists()
    assert main(["eval", "--adapter", str(huge_adapter), "--data", str(data), "--json"]) == 2
    out, err = capsys.readouterr()
    assert "NaN" not in out and err.count("not a number") == 2


def test_json_output_never_holds_nan(capsys):
    print_json({"accuracy": math.nan, "f1": [1.0, math.inf, -math.inf], "nested": {"loss": math.nan}, "n": 3})
    printed = strict_json(capsys.readouterr().out)
    assert printed == {"accuracy": None, "f1": [1.0, None, None], "nested": {"loss": None}, "n": 3}
