"""The window's places for issue 14: the Data tab's health report (the figures of
``workbench data-report``) and the Classify tab's colouring of why a message got its label."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_gui import dialogs, make_window  # noqa: F401  (dialogs: a fixture)

from workbench.cli import main


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
    assert shown_count(panel, "Texts with conflicting labels") == report["conflicting_labels"]
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
