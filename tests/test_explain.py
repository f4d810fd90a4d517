"""Token attributions: exact occlusion scores, pieces that are whole characters, and faithfulness
on a model trained on the real SMS data (a deletion curve)."""

import json
import random

import pytest
import torch
from conftest import SMS_FILE

from workbench.cli import main
from workbench.core import explain as X
from workbench.core.adapters import AdapterInfo, save_adapter
from workbench.core.classify import Classifier, predict_probabilities
from workbench.core.config import DataConfig, LoRAConfig
from workbench.core.lora import apply_lora
from workbench.core.model import GPT2Classifier, load_model_config
from workbench.core.tokenizer import EOT_ID


@pytest.fixture(scope="module")
def random_adapter(tiny_checkpoint, tmp_path_factory):
    """A three-class adapter with random (non-zero) LoRA matrices: scores that are not all equal."""
    torch.manual_seed(0)
    model = apply_lora(GPT2Classifier.from_checkpoint(tiny_checkpoint, 3), LoRAConfig(rank=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
            if name == "score.weight":
                p.normal_(0, 1.0)
    info = AdapterInfo(
        str(tiny_checkpoint), load_model_config(tiny_checkpoint), LoRAConfig(rank=4), ("a", "b", "c"), 64
    )
    return save_adapter(tmp_path_factory.mktemp("explain") / "random.safetensors", model, info)


@pytest.fixture(scope="module")
def classifier(random_adapter):
    return Classifier.from_adapter(random_adapter, precision="fp32")


def occlusion_by_hand(classifier, ids, spans):
    """Each shortened text run on its own through the model's plain forward pass."""
    with torch.inference_mode():
        full = classifier.model(torch.tensor([ids]))
        rows = [classifier.model(torch.tensor([ids[:s] + ids[e:] or [EOT_ID]]))[0] for s, e in spans]
    return (X.log_odds(full) - X.log_odds(torch.stack(rows))).T  # (C, R)


@pytest.mark.parametrize(
    ("text", "max_pieces", "group_tokens"),
    [
        ("win a prize now", 48, 512),
        ("£900 cash 😀 call", 48, 512),  # characters of several bytes: one piece each
        ("x", 48, 512),  # deleting the only piece leaves an empty message
        ("one two three four five six seven eight nine ten", 4, 512),  # spans
        ("one two three four five six seven eight nine ten", 48, 7),  # many batched passes
    ],
)
def test_scores_are_the_log_odds_lost_by_deleting_each_piece(classifier, monkeypatch, text, max_pieces, group_tokens):
    monkeypatch.setattr(X, "MAX_PIECES", max_pieces)
    monkeypatch.setattr(X, "GROUP_TOKENS", group_tokens)
    explanation = X.explain(classifier, text)
    ids = classifier.encode(text)
    spans = X.merge_spans(X.character_pieces(classifier.tokenizer, ids), max_pieces)
    assert len(spans) == len(explanation.tokens) <= max_pieces
    expected = occlusion_by_hand(classifier, ids, spans)
    assert torch.allclose(torch.tensor(explanation.scores), expected, atol=1e-4)
    assert "".join(explanation.tokens) == text
    assert not explanation.truncated
    assert explanation.predicted == classifier.predict([text])[0].label
    assert explanation.probabilities == pytest.approx(classifier.predict([text])[0].probabilities, abs=1e-5)


def test_pieces_hold_whole_characters(classifier):
    text = "£ é 😀 日本"
    explanation = X.explain(classifier, text)
    assert "".join(explanation.tokens) == text
    assert all("\ufffd" not in piece for piece in explanation.tokens)
    ids = classifier.encode(text)
    assert len(explanation.tokens) < len(ids)  # the byte-level test vocabulary splits each character


def test_long_text_is_cut_and_says_so(classifier):
    text = "word " * 100  # 500 byte tokens, beyond the adapter's 64
    explanation = X.explain(classifier, text)
    assert explanation.truncated
    assert "".join(explanation.tokens) == text[:64]
    assert len(explanation.tokens) <= X.MAX_PIECES


def test_merge_spans_covers_every_piece_once():
    pieces = [(i, i + 1) for i in range(10)]
    spans = X.merge_spans(pieces, 4)
    assert len(spans) == 4
    assert spans[0][0] == 0 and spans[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_log_odds_stay_finite_when_confident():
    odds = X.log_odds(torch.tensor([[40.0, 0.0, 0.0]]))
    assert torch.isfinite(odds).all()
    assert odds[0, 0] == pytest.approx(40 - torch.logsumexp(torch.zeros(2), 0).item())


def test_two_classes_mirror_each_other(tiny_checkpoint, tmp_path):
    torch.manual_seed(1)
    model = apply_lora(GPT2Classifier.from_checkpoint(tiny_checkpoint, 2), LoRAConfig(rank=4))
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    info = AdapterInfo(str(tiny_checkpoint), model.config, LoRAConfig(rank=4), ("ham", "spam"), 64)
    classifier = Classifier.from_adapter(save_adapter(tmp_path / "two.safetensors", model, info), precision="fp32")
    e = X.explain(classifier, "call now to claim")
    assert e.scores_for("ham") == pytest.approx([-s for s in e.scores_for("spam")], abs=1e-5)


def test_deletion_curve_beats_random_deletion(sms_tiny_adapter, capsys):
    """Faithfulness: deleting the k pieces ranked highest for the predicted class lowers that
    class's probability more, on average over the test split, than deleting k random pieces."""
    from workbench.core.data import encode_texts, load_table, make_splits

    classifier = Classifier.from_adapter(sms_tiny_adapter, precision="fp32")
    data = DataConfig(source=str(SMS_FILE), max_length=classifier.info.max_length)
    texts = make_splits(load_table(data), data, seed=123).test.texts
    encoded, _ = encode_texts(texts, classifier.tokenizer, classifier.info.max_length)
    rng = random.Random(0)
    ranked, randomly, used = [[] for _ in range(5)], [[] for _ in range(5)], 0

    def probability(rows, c):
        probs = predict_probabilities(classifier.model, rows, 64, classifier.device, classifier.precision)
        return probs[:, c].tolist()

    for ids in encoded:
        spans = X.merge_spans(X.character_pieces(classifier.tokenizer, ids), X.MAX_PIECES)
        if len(spans) <= 5:
            continue
        used += 1
        explanation = X.explain_ids(classifier, ids)
        c = explanation.label_names.index(explanation.predicted)
        p = explanation.probabilities[explanation.predicted]
        order = explanation.top(explanation.predicted, 5)

        def without(gone, ids=ids, spans=spans):
            return [t for i, (s, e) in enumerate(spans) if i not in gone for t in ids[s:e]]

        top_rows = [without(set(order[:k])) for k in range(1, 6)]
        random_rows = [without(set(rng.sample(range(len(spans)), k))) for k in range(1, 6) for _ in range(10)]
        for k, q in enumerate(probability(top_rows, c)):
            ranked[k].append(p - q)
        drops = probability(random_rows, c)
        for k in range(5):
            randomly[k].append(p - sum(drops[10 * k : 10 * k + 10]) / 10)
    curve = [sum(d) / len(d) for d in ranked]
    baseline = [sum(d) / len(d) for d in randomly]
    with capsys.disabled():
        print(f"\ndeletion curve over {used} test messages (mean drop of the predicted class's probability)")
        print("  k               " + "  ".join(f"{k:6d}" for k in range(1, 6)))
        print("  top-k pieces    " + "  ".join(f"{v:6.3f}" for v in curve))
        print("  random k pieces " + "  ".join(f"{v:6.3f}" for v in baseline))
    assert used > 100
    assert all(a > b for a, b in zip(curve, baseline)), (curve, baseline)


# --- the command line ------------------------------------------------------------------------


def test_cli_explain_prints_pieces_with_scores(random_adapter, capsys):
    assert main(["classify", "--adapter", str(random_adapter), "--explain", "win\x1b[31m cash"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out  # a terminal escape in the text is shown, not run
    lines = out.splitlines()
    assert lines[0].split("\t")[0] in ("a", "b", "c")
    pieces = [line.split('"', 1)[1][:-1] for line in lines[1:]]  # byte-level test vocabulary
    assert pieces == ["w", "i", "n", "\\x1b", "[", "3", "1", "m", " ", "c", "a", "s", "h"]


def test_cli_explain_json(random_adapter, capsys):
    assert main(["classify", "--adapter", str(random_adapter), "--explain", "--json", "win cash"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert "".join(row["tokens"]) == "win cash"
    assert set(row["scores"]) == {"a", "b", "c"}
    assert all(len(v) == len(row["tokens"]) for v in row["scores"].values())
    assert row["label"] in row["probabilities"]


def test_cli_explain_refuses_a_file(random_adapter, tmp_path, capsys):
    table = tmp_path / "in.csv"
    table.write_text("text\nhello\n")
    assert main(["classify", "--adapter", str(random_adapter), "--explain", "--input", str(table)]) == 2
    assert "--explain" in capsys.readouterr().err
