"""The window's places for issue 14: the Data tab's health report (the figures of
``workbench data-report``) and the Classify tab's colouring of why a message got its label."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_gui import dialogs, make_window  # noqa: F401  (dialogs: a fixture)

from workbench.cli import main
from workbench.gui.classify_tab import AWAY, TOWARDS


def write_planted(path: Path, label_header: str = "label") -> Path:
    """60 distinct messages, plus planted findings: 2 empty texts, 1 missing label, 2 exact repeats,
    and 12 spellings of one spam template (near duplicates: digits and case differ), which a 70/10/20
    split cannot keep in one split."""
    rows = [(f"see you at lunch {chr(97 + i % 26)}{chr(97 + i // 26)}", "ham") for i in range(40)]
    rows += [(f"claim your cash prize {chr(97 + i)}", "spam") for i in range(20)]
    rows += [("", "ham"), ("  ", "spam"), ("a message with no label", "")]
    rows += [("see you at lunch aa", "ham"), ("see you at lunch aa", "ham")]
    rows += [(f"{'WIN' if i % 2 else 'win'} {1000 + 7 * i} pounds call 0906{i:03d}", "spam") for i in range(12)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", label_header, "other"])
        writer.writerows((text, label, "x" if i % 2 else "y") for i, (text, label) in enumerate(rows))
    return path


@pytest.fixture
def planted(tmp_path) -> Path:
    return write_planted(tmp_path / "planted.csv")


@pytest.fixture
def window(qtbot, tmp_path, tiny_checkpoint, planted, dialogs):
    w = make_window(qtbot, tmp_path, tiny_checkpoint, planted)
    yield w
    w.pool.stop_all()
    assert w.pool.wait_all(10_000)


def wait_for_report(qtbot, window):
    qtbot.waitUntil(lambda: window.health.shown is not None and not window.health.is_busy(), timeout=20_000)
    return window.data_tab.health


def shown_count(panel, title: str) -> int:
    item = panel.finding(title)
    assert item is not None, title
    return int(item.text(1).replace(",", ""))


def cli_report(capsys, planted: Path, checkpoint: Path, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["data-report", str(planted), "--model", str(checkpoint), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


# --- the Data tab's health report ----------------------------------------------------------------


def test_health_shows_the_data_reports_counts(qtbot, window, planted, tiny_checkpoint, capsys):
    panel = wait_for_report(qtbot, window)
    seed = window.training_panel.seed.value()
    report = cli_report(capsys, planted, tiny_checkpoint, "--seed", str(seed))
    assert report["empty_texts"] == 2 and report["missing_labels"] == 1  # the planted findings are found
    assert report["exact_duplicates"] == 2 and report["near_duplicates"] == 11
    assert shown_count(panel, "Empty texts") == report["empty_texts"]
    assert shown_count(panel, "Missing labels") == report["missing_labels"]
    assert shown_count(panel, "Exact duplicates") == report["exact_duplicates"]
    assert shown_count(panel, "Conflicting labels") == report["conflicting_labels"]
    assert shown_count(panel, "Near duplicates") == report["near_duplicates"]
    leaked = report["cross_split"]["test in train"] + report["cross_split"]["test in val"]
    assert shown_count(panel, "Test rows with a copy") == leaked
    assert {name: bar.value() for name, bar in panel.balance.bars.items()} == report["class_counts"]
    h = panel.health
    assert list(h.lengths.counts) == report["lengths"]["counts"]
    assert h.lengths.max_length == report["lengths"]["max_length"] == 256  # the tiny model's context
    assert panel.histogram.cut.value() == 256
    assert list(panel.histogram.bars.opts["height"]) == report["lengths"]["counts"]
    assert list(h.notes) == report["notes"]


def test_a_cross_split_duplicate_is_reported(qtbot, window):
    panel = wait_for_report(qtbot, window)
    item = panel.finding("Test rows with a copy")
    assert shown_count(panel, "Test rows with a copy") > 0
    examples = [item.child(i).text(0) for i in range(item.childCount())]
    assert any("pounds call" in line and "+" in line for line in examples), examples  # e.g. "12× train+test …"
    assert item.isExpanded()  # a leak is shown without a click
    assert any("test" in note and "copy" in note for note in panel.health.notes)


def test_changing_the_label_column_recomputes(qtbot, window):
    panel = wait_for_report(qtbot, window)
    first = window.health.shown
    assert set(panel.balance.bars) == {"ham", "spam"}
    combo = window.data_panel.label_column
    combo.setCurrentIndex(combo.findData("other"))
    qtbot.waitUntil(lambda: window.health.shown is not None and window.health.shown is not first, timeout=20_000)
    qtbot.waitUntil(lambda: not window.health.is_busy(), timeout=20_000)
    assert window.health.shown.data.label_column == "other"
    assert panel.health.label_column == "other"
    assert set(panel.balance.bars) == {"x", "y"}


def test_a_markup_label_shows_literally(qtbot, tmp_path, tiny_checkpoint, dialogs):
    path = tmp_path / "markup.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(20):
            writer.writerow([f"message number {i}", "<b>bold</b>" if i % 2 else "<i>&amp;</i>"])
    w = make_window(qtbot, tmp_path, tiny_checkpoint, path)
    try:
        panel = wait_for_report(qtbot, w)
        formats = sorted(bar.format() for bar in panel.balance.bars.values())
        assert formats[0].startswith("<b>bold</b>") and formats[1].startswith("<i>&amp;</i>")
    finally:
        w.pool.stop_all()
        assert w.pool.wait_all(10_000)


# --- the Classify tab's "why" --------------------------------------------------------------------


@pytest.fixture
def classifier(tmp_path, tiny_checkpoint):
    from test_gui_robustness import make_adapter

    from workbench.core.classify import Classifier

    adapter = make_adapter(tmp_path / "a.safetensors", tiny_checkpoint)
    return Classifier.from_adapter(adapter, device="cpu", precision="fp32")


def explained(qtbot, tab, text: str) -> None:
    qtbot.waitUntil(lambda: tab.explained_text == text and not tab.is_busy(), timeout=20_000)


def test_typing_colours_the_message_with_a_legend(qtbot, window, classifier):
    tab = window.classify_tab
    tab.set_classifier(classifier, "tiny")
    window.tabs.setCurrentWidget(tab)
    tab.input.setPlainText("win a cash prize now")
    explained(qtbot, tab, "win a cash prize now")
    pieces = tab.why_view.pieces
    assert "".join(p for p, _, _ in pieces) == "win a cash prize now" == tab.why_view.toPlainText()
    base = tab.why_view.palette().color(tab.why_view.backgroundRole())
    assert any(colour != base for _, _, colour in pieces)  # coloured, not plain
    strongest = max(pieces, key=lambda p: abs(p[1]))
    assert strongest[2] in (TOWARDS, AWAY)  # the strongest piece gets the full colour of its side
    predicted = tab.explanation.predicted
    assert tab.explained_class.currentData() is None  # by default: the predicted class
    assert f"towards <b>{predicted}</b>" in tab.legend.text() and "away from" in tab.legend.text()


def test_the_class_explained_flips_the_colours(qtbot, window, classifier):
    tab = window.classify_tab
    tab.set_classifier(classifier, "tiny")
    tab.input.setPlainText("free cash call now")
    explained(qtbot, tab, "free cash call now")
    tab.explained_class.setCurrentIndex(tab.explained_class.findData("ham"))
    ham = list(tab.why_view.pieces)
    tab.explained_class.setCurrentIndex(tab.explained_class.findData("spam"))
    spam = list(tab.why_view.pieces)
    assert [p for p, _, _ in ham] == [p for p, _, _ in spam]
    assert [s for _, s, _ in ham] == pytest.approx([-s for _, s, _ in spam], abs=1e-5)  # two classes mirror
    flipped = [(a, b) for (_, s, a), (_, _, b) in zip(ham, spam) if abs(s) > 1e-3]
    assert flipped and all(a != b for a, b in flipped)
    assert "towards <b>spam</b>" in tab.legend.text()


def test_markup_in_the_message_shows_literally(qtbot, window, classifier):
    tab = window.classify_tab
    tab.set_classifier(classifier, "tiny")
    text = "<b>& win</b> <img src=x> &amp;\nline two"
    tab.input.setPlainText(text)
    explained(qtbot, tab, text)
    assert tab.why_view.toPlainText() == text  # spaces, the newline and the markup as typed
    assert "<b>&" not in tab.legend.text().replace("<b>ham</b>", "").replace("<b>spam</b>", "")


def test_a_stale_explanation_is_dropped(qtbot, window, classifier, monkeypatch):
    import threading

    from workbench.gui import classify_tab

    tab = window.classify_tab
    tab.set_classifier(classifier, "tiny")
    release = threading.Event()
    started: list[str] = []
    shown: list[str] = []

    def slow_explain(c, text, stop=None):
        started.append(text)
        release.wait(10)  # the first text is still being explained when the second is typed
        return classify_tab.explain.__wrapped__(c, text)  # no stop: the stale result does come back

    slow_explain.__wrapped__ = classify_tab.explain
    monkeypatch.setattr(classify_tab, "explain", slow_explain)
    show = tab.why_view.show_explanation
    monkeypatch.setattr(
        tab.why_view, "show_explanation", lambda e, label: (shown.append("".join(e.tokens)), show(e, label))[1]
    )
    tab.input.setPlainText("first message")
    qtbot.waitUntil(lambda: started == ["first message"], timeout=10_000)
    tab.input.setPlainText("second message")
    release.set()
    explained(qtbot, tab, "second message")
    assert started[-1] == "second message"
    assert shown and set(shown) == {"second message"}  # the first one's result never reached the view
    assert tab.why_view.toPlainText() == "second message"


def test_fast_typing_runs_one_explanation(qtbot, window, classifier, monkeypatch):
    from workbench.gui import classify_tab

    tab = window.classify_tab
    tab.set_classifier(classifier, "tiny")
    seen: list[str] = []
    real = classify_tab.explain
    monkeypatch.setattr(classify_tab, "explain", lambda c, text, stop=None: (seen.append(text), real(c, text, stop))[1])
    for n in range(1, 12):
        tab.input.setPlainText("call now for cash"[: n + 4])  # keystrokes well inside the pause
    explained(qtbot, tab, "call now for cash"[:15])
    assert seen == ["call now for cash"[:15]]


def test_no_explanation_runs_without_an_adapter(qtbot, window, monkeypatch):
    from workbench.gui import classify_tab

    tab = window.classify_tab
    tab.set_classifier(None)
    seen: list[str] = []
    monkeypatch.setattr(classify_tab, "explain", lambda *a, **k: seen.append("called"))
    tab.input.setPlainText("win a cash prize now")
    qtbot.waitUntil(lambda: not tab._explain_delay.isActive(), timeout=5000)
    qtbot.wait(classify_tab.EXPLAIN_DELAY_MS)  # long enough for any job that would start
    assert seen == [] and not tab.is_busy() and tab.why_view.pieces == []
    assert not tab.why_busy.isVisible()
