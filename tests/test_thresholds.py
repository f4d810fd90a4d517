"""Curves, threshold metrics, calibration and temperature scaling; the decision saved in adapters."""

import json
import math
import random

import pytest
import torch
from test_cli import train_once

from workbench.cli import main
from workbench.core import thresholds as T
from workbench.core.adapters import AdapterInfo, read_adapter, save_adapter_tensors, update_decision
from workbench.core.classify import Classifier
from workbench.core.errors import AdapterError

# --- curves ----------------------------------------------------------------------------------


def test_auc_of_perfect_reversed_and_tied_rankings():
    labels = [0, 0, 0, 1, 1]
    assert T.roc_curve([0.1, 0.2, 0.3, 0.8, 0.9], labels).auc == 1.0
    assert T.roc_curve([0.9, 0.8, 0.7, 0.2, 0.1], labels).auc == 0.0
    assert T.roc_curve([0.5] * 5, labels).auc == 0.5  # one tie: a diagonal, not a staircase


def test_auc_of_a_random_ranking_is_about_one_half():
    rng = random.Random(0)
    labels = [rng.randrange(2) for _ in range(20_000)]
    scores = [rng.random() for _ in labels]
    assert T.roc_curve(scores, labels).auc == pytest.approx(0.5, abs=0.015)


def test_auc_equals_the_pairwise_ranking_probability():
    """AUC = P(a positive outranks a negative), ties counting one half (Mann-Whitney)."""
    rng = random.Random(1)
    scores = [rng.choice([0.1, 0.3, 0.3, 0.6, 0.9]) for _ in range(60)]
    labels = [int(rng.random() < s) for s in scores]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert T.roc_curve(scores, labels).auc == pytest.approx(pairs / (len(pos) * len(neg)))


def test_curves_from_hand_counts():
    scores = [0.9, 0.8, 0.7, 0.4, 0.2]
    labels = [1, 0, 1, 1, 0]
    roc = T.roc_curve(scores, labels)
    assert roc.true_positive_rate == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    assert roc.false_positive_rate == pytest.approx([0, 0, 0.5, 0.5, 0.5, 1])
    assert roc.thresholds[0] == math.inf and roc.thresholds[1:] == tuple(scores)
    pr = T.precision_recall_curve(scores, labels)
    assert pr.precision == pytest.approx([1, 1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    assert pr.recall == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    assert pr.average_precision == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 4)


def test_one_class_gives_no_auc():
    assert math.isnan(T.roc_curve([0.2, 0.7], [0, 0]).auc)
    assert math.isnan(T.precision_recall_curve([0.2, 0.7], [0, 0]).average_precision)


def test_metrics_at_a_threshold_match_hand_counts():
    scores = [0.9, 0.8, 0.7, 0.4, 0.2]
    labels = [1, 0, 1, 1, 0]
    m = T.metrics_at(scores, labels, 0.5)  # predicted positive: the first three
    assert m.confusion == ((1, 1), (1, 2))  # (tn, fp), (fn, tp)
    assert (m.precision, m.recall, m.f1, m.accuracy) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3 / 5))
    high = T.metrics_at(scores, labels, 0.95)  # nothing predicted positive
    assert high.confusion == ((2, 0), (3, 0)) and high.precision == 0.0 and high.f1 == 0.0
    assert T.metrics_at(scores, labels, 0.7).confusion == ((1, 1), (1, 2))  # p >= threshold is positive


def test_best_f1_threshold_is_one_of_the_scores():
    scores = [0.9, 0.8, 0.7, 0.4, 0.2]
    labels = [1, 0, 1, 1, 0]
    best = T.best_f1_threshold(scores, labels)
    assert best == 0.4  # recall 1, precision 3/4: F1 6/7, the highest
    assert all(T.metrics_at(scores, labels, s).f1 <= T.metrics_at(scores, labels, best).f1 for s in scores)


def test_labels_beyond_two_classes_are_refused():
    with pytest.raises(Exception, match="two classes"):
        T.roc_curve([0.1, 0.2], [0, 2])


def test_decide_by_argmax_or_threshold():
    probs = torch.tensor([[0.4, 0.6], [0.75, 0.25], [0.3, 0.7]])
    assert T.decide(probs, None).tolist() == [1, 0, 1]
    assert T.decide(probs, 0.65).tolist() == [0, 0, 1]
    assert T.decide(probs, 0.2).tolist() == [1, 1, 1]
    with pytest.raises(Exception, match="two-class"):
        T.decide(torch.tensor([[0.2, 0.3, 0.5]]), 0.5)


# --- calibration -----------------------------------------------------------------------------


def test_ece_of_calibrated_data_is_near_zero_and_of_overconfident_data_is_not():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(200_000, generator=g, dtype=torch.float64)
    labels = (torch.rand(200_000, generator=g, dtype=torch.float64) < p).long().tolist()
    calibrated = torch.stack([1 - p, p], dim=1)
    result = T.reliability(calibrated, labels)
    assert result.ece < 0.005
    assert sum(result.counts) == 200_000 and result.counts[:5] == (0, 0, 0, 0, 0)  # top label >= 0.5
    sharpened = T.apply_temperature(calibrated, 0.3)
    assert T.reliability(sharpened, labels).ece > 0.1


def test_reliability_bins_by_hand():
    probs = torch.tensor([[0.05, 0.95], [0.15, 0.85], [0.75, 0.25], [0.35, 0.65]], dtype=torch.float64)
    labels = [1, 0, 0, 1]
    r = T.reliability(probs, labels, bins=5)  # bins of 0.2
    assert r.counts == (0, 0, 0, 2, 2)
    assert r.confidence[3] == pytest.approx((0.75 + 0.65) / 2) and r.accuracy[3] == 1.0
    assert r.confidence[4] == pytest.approx((0.95 + 0.85) / 2) and r.accuracy[4] == 0.5
    assert r.ece == pytest.approx(0.5 * abs(1 - 0.7) + 0.5 * abs(0.5 - 0.9))


def test_temperature_fit_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    true_logits = 2.0 * torch.randn(40_000, 3, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=g)[:, 0].tolist()
    for temperature in (0.5, 2.5):
        fitted = T.fit_temperature(true_logits * temperature, labels)
        assert fitted == pytest.approx(temperature, rel=0.05)


def test_temperature_from_probabilities_matches_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], dtype=torch.float64)
    probs = torch.softmax(logits, -1)
    assert torch.allclose(T.apply_temperature(probs, 2.0), torch.softmax(logits / 2.0, -1))
    assert T.apply_temperature(probs, None) is probs
    assert T.decide(T.apply_temperature(probs, 3.0), None).tolist() == T.decide(probs, None).tolist()


def test_temperature_fit_needs_examples():
    with pytest.raises(Exception, match="empty"):
        T.fit_temperature(torch.zeros(0, 2), [])


# --- saved in the adapter, used by classify and eval -----------------------------------------


@pytest.fixture(scope="module")
def two_class(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("thresholds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_DATA_DIR", str(folder / "data"))
        mp.setenv("WORKBENCH_CACHE_DIR", str(folder / "cache"))
        return train_once(tiny_checkpoint, folder)


@pytest.fixture
def adapter(two_class, tmp_path):
    """A fresh copy per test, so saving a decision in one test does not leak into another."""
    copy = tmp_path / "adapter.safetensors"
    copy.write_bytes(two_class[0].read_bytes())
    return copy


def test_old_adapters_load_without_a_decision(adapter):
    tensors, info = read_adapter(adapter)
    metadata = json.loads(info.to_json())
    del metadata["threshold"], metadata["temperature"]  # as written before these existed
    info = AdapterInfo.from_json(json.dumps(metadata))
    assert info.threshold is None and info.temperature is None
    save_adapter_tensors(adapter, tensors, info)
    classifier = Classifier.from_adapter(adapter)
    assert classifier.threshold is None and classifier.temperature is None


def test_decision_is_saved_and_read_back(adapter):
    before = adapter.read_bytes()
    update_decision(adapter, threshold=0.7)
    update_decision(adapter, temperature=1.5)
    _, info = read_adapter(adapter)
    assert (info.threshold, info.temperature) == (0.7, 1.5)
    update_decision(adapter, threshold=None)
    assert read_adapter(adapter)[1].threshold is None and read_adapter(adapter)[1].temperature == 1.5
    assert len(adapter.read_bytes()) > len(before) * 0.9  # the tensors were written back


@pytest.mark.parametrize(
    ("change", "fragment"), [({"threshold": 1.5}, "from 0 to 1"), ({"temperature": 0.0}, "positive")]
)
def test_unusable_decisions_are_refused_and_leave_the_file(adapter, change, fragment):
    before = adapter.read_bytes()
    with pytest.raises(AdapterError, match=fragment):
        update_decision(adapter, **change)
    assert adapter.read_bytes() == before


def test_hand_edited_metadata_with_a_bad_threshold_is_refused(adapter):
    tensors, info = read_adapter(adapter)
    metadata = json.loads(info.to_json())
    metadata["threshold"] = float("nan")
    from safetensors.torch import save_file

    save_file(tensors, str(adapter), metadata={"lora_workbench": json.dumps(metadata)})
    with pytest.raises(AdapterError, match="threshold"):
        read_adapter(adapter)


def test_threshold_changes_the_classifiers_decision(adapter):
    text = "win cash prize now"
    classifier = Classifier.from_adapter(adapter, precision="fp32")
    p_spam = classifier.predict([text])[0].probabilities["spam"]
    classifier.threshold = p_spam + (1 - p_spam) / 2  # just out of reach
    assert classifier.predict([text])[0].label == "ham"
    assert classifier.predict_typing(text).label == "ham"
    classifier.threshold = p_spam / 2
    assert classifier.predict([text])[0].label == "spam"
    update_decision(adapter, threshold=p_spam + (1 - p_spam) / 2)
    assert Classifier.from_adapter(adapter, precision="fp32").predict([text])[0].label == "ham"


def test_temperature_changes_probabilities_not_the_argmax(adapter):
    texts = ["win cash prize now", "see you at lunch", "hello"]
    plain = Classifier.from_adapter(adapter, precision="fp32")
    update_decision(adapter, temperature=3.0)
    scaled = Classifier.from_adapter(adapter, precision="fp32")
    expected = T.apply_temperature(plain.probabilities(texts), 3.0)
    assert torch.allclose(scaled.probabilities(texts), expected, atol=1e-5)
    assert [p.label for p in scaled.predict(texts)] == [p.label for p in plain.predict(texts)]
    typed = scaled.predict_typing(texts[0]).probabilities["spam"]
    assert typed == pytest.approx(float(expected[0, 1]), abs=1e-4)


def test_cli_threshold_set_then_classify_uses_it(adapter, capsys):
    assert main(["classify", "--adapter", str(adapter), "--json", "win cash prize now"]) == 0
    p_spam = json.loads(capsys.readouterr().out)["probabilities"]["spam"]
    cut = round(p_spam + (1 - p_spam) / 2, 6)
    assert main(["threshold", str(adapter), "--set", str(cut)]) == 0
    assert main(["info", str(adapter)]) == 0
    assert f"spam when p >= {cut:g}" in capsys.readouterr().out
    assert main(["classify", "--adapter", str(adapter), "win cash prize now"]) == 0
    assert capsys.readouterr().out.startswith("ham\t")
    assert main(["classify", "--adapter", str(adapter), "--threshold", "0", "win cash prize now"]) == 0
    assert capsys.readouterr().out.startswith("spam\t")
    assert main(["threshold", str(adapter), "--clear"]) == 0
    assert read_adapter(adapter)[1].threshold is None


def test_cli_threshold_report_and_best_f1(two_class, adapter, capsys):
    _, data = two_class
    assert main(["threshold", str(adapter), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 <= report["roc_auc"] <= 1 and report["positive"] == "spam"
    assert any(row["threshold"] == report["best_f1_threshold"] for row in report["rows"])
    assert main(["threshold", str(adapter), "--data", str(data), "--best-f1"]) == 0
    assert "best F1" in capsys.readouterr().out
    assert read_adapter(adapter)[1].threshold == report["best_f1_threshold"]


def test_cli_eval_reports_auc_and_follows_threshold(two_class, adapter, capsys):
    _, data = two_class
    assert main(["eval", "--adapter", str(adapter), "--data", str(data), "--json", "--threshold", "1.0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threshold"] == 1.0 and 0 <= result["roc_auc"] <= 1 and 0 <= result["ece"] <= 1
    assert [row[1] for row in result["confusion"]] == [0, 0] or result["confusion"][1][1] == 1  # rarely p = 1
    assert main(["eval", "--adapter", str(adapter), "--data", str(data), "--threshold", "0"]) == 0
    out = capsys.readouterr().out
    assert "threshold 0" in out and "ROC AUC" in out


def test_cli_calibrate_writes_a_temperature(two_class, adapter, capsys):
    _, data = two_class
    assert main(["calibrate", str(adapter), "--data", str(data), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["val_nll_after"] <= figures["val_nll_before"] + 1e-9  # the fit never makes it worse
    assert read_adapter(adapter)[1].temperature == pytest.approx(figures["temperature"])
    assert main(["calibrate", str(adapter), "--clear"]) == 0
    assert read_adapter(adapter)[1].temperature is None


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["threshold", "ADAPTER", "--set", "1.5"], "in [0, 1]"),
        (["classify", "--adapter", "ADAPTER", "--threshold", "-0.1", "x"], "--threshold"),
        (["calibrate", "ADAPTER", "--data", "missing.csv"], "missing.csv"),
    ],
)
def test_cli_decision_mistakes_exit_2(adapter, argv, fragment, capsys):
    assert main([str(adapter) if a == "ADAPTER" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_cli_threshold_choices_exclude_each_other(adapter, capsys):
    assert main(["threshold", str(adapter), "--set", "0.5", "--clear"]) == 2
