"""Strings from files never reach a terminal or Qt's rich text raw: the CLI prints them through
``printable`` (control characters escaped), the window through ``escaped``/``as_rich_text``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_robustness import write_csv

from workbench.cli import main
from workbench.core.adapters import AdapterInfo, save_adapter
from workbench.core.config import LoRAConfig
from workbench.core.lora import build_lora_model
from workbench.core.text import printable

HOSTILE = (
    "ham\x1b]0;retitled\x07\x1b[2J",  # retitles and clears a terminal
    "spam\nforged\t0.9999",  # would print an extra label<TAB>prob row
    "\u202eevil\x85\x7f",  # a right-to-left override, C1 NEL, DEL
)
# What must never reach the terminal from a file (tab and newline are the output's own structure).
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("text", [*HOSTILE, "a\rb", "\x00", "\u2028", "\u2066x\u2069"])
def test_printable_escapes_every_control_character(text):
    shown = printable(text)
    assert not RAW_CONTROL.search(shown) and "\n" not in shown and "\t" not in shown
    assert len(shown.splitlines()) == 1


@pytest.mark.parametrize("text", ["naïve café", "東京 🙂", "Straße", "👩\u200d💻 coder", "quotes \"'", ""])
def test_printable_leaves_ordinary_text_alone(text):
    assert printable(text) == text


def test_printable_cuts_long_names():
    assert printable("x" * 300, 80) == "x" * 79 + "…"


@pytest.fixture(scope="module")
def hostile_adapter(tiny_checkpoint, tmp_path_factory) -> Path:
    lora = LoRAConfig(rank=2, alpha=4)
    model = build_lora_model(tiny_checkpoint, lora, len(HOSTILE), seed=0)
    info = AdapterInfo(f"{tiny_checkpoint}", model.config, lora, HOSTILE, max_length=64, created="\x1b[2J2026")
    return save_adapter(tmp_path_factory.mktemp("hostile") / "hostile.safetensors", model, info)


def assert_no_raw_controls(text: str) -> None:
    assert not RAW_CONTROL.search(text), repr(text)


def test_classify_cannot_forge_rows_or_drive_the_terminal(hostile_adapter, capsys):
    assert main(["classify", "--adapter", str(hostile_adapter), "first text", "second text"]) == 0
    out, err = capsys.readouterr()
    assert_no_raw_controls(out + err)
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.count("\t") == 1 for line in lines)


def test_json_keeps_the_labels_exactly(hostile_adapter, capsys):
    assert main(["classify", "--adapter", str(hostile_adapter), "--json", "one text"]) == 0
    out = capsys.readouterr().out
    assert_no_raw_controls(out.replace("\n", ""))
    assert set(json.loads(out)["probabilities"]) == set(HOSTILE)


def test_info_eval_and_errors_escape_what_the_files_hold(hostile_adapter, tiny_checkpoint, tmp_path, capsys):
    assert main(["info", str(hostile_adapter)]) == 0
    rows = [(f"message {i} " + "long text " * 50, HOSTILE[i % 3]) for i in range(90)]  # under 2% controls
    data = write_csv(tmp_path / "hostile.csv", rows)
    assert main(["eval", "--adapter", str(hostile_adapter), "--data", str(data)]) == 0
    one_class = write_csv(tmp_path / "one.csv", [(f"m {i}", HOSTILE[0]) for i in range(20)])
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(one_class), "--out", str(tmp_path / "a.st")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert_no_raw_controls(out + err)
    assert "\\x1b]0;retitled" in out and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the window


IMG = '<img src="/some/local.png" width=4000 height=4000>'


def test_label_counts_are_escaped_in_rich_text(qtbot):
    from workbench.gui.panels import DataPanel

    panel = DataPanel()
    qtbot.addWidget(panel)
    panel.set_counts({IMG: 3, "ham": 5})
    assert "<img" not in panel.counts_label.text() and "&lt;img" in panel.counts_label.text()
    panel.set_counts(None, IMG)
    assert "<img" not in panel.counts_label.text()


def test_results_and_runs_escape_texts_labels_and_names(qtbot, tmp_path):
    from workbench.core.events import EvaluationMetrics, Misclassified
    from workbench.core.runs import RunFolder
    from workbench.gui.results_tab import ResultsTab
    from workbench.gui.runs_tab import describe_run

    tab = ResultsTab()
    qtbot.addWidget(tab)
    wrong = (Misclassified(IMG, "ham", IMG, 0.9),)
    metrics = EvaluationMetrics(
        0.5, 0.7, ("ham", IMG), (0.5, 0.5), (0.5, 0.5), (0.5, 0.5), (1, 1), ((1, 0), (1, 0)), wrong
    )
    tab.show_metrics(metrics, where=IMG)
    assert "<img" not in tab.headline.text()
    tip = tab.wrong_table.item(0, 0).toolTip()
    assert tip.startswith("<qt>") and "<img" not in tip and "&lt;img" in tip

    run = RunFolder(tmp_path / "<img src=x>")
    run.path.mkdir()
    assert "<img" not in describe_run(run, [])

    # A name and notes given in the Runs tab, as the details, tooltips and the diff show them.
    from PySide6.QtCore import Qt

    from workbench.core.config import TrainConfig
    from workbench.core.run_table import RunAbout, run_row, save_about
    from workbench.gui.run_comparison import RunComparisonWidget
    from workbench.gui.run_table_model import RunTableModel

    named = RunFolder(tmp_path / "named")
    named.path.mkdir()
    named.save_config(TrainConfig())
    save_about(named, RunAbout(IMG, IMG))
    assert "<img" not in describe_run(named, []) and "&lt;img" in describe_run(named, [])
    model = RunTableModel(rename=lambda run, name: None)
    model.set_rows([run_row(named)])
    for column in range(model.columnCount()):
        tip = model.index(0, column).data(Qt.ItemDataRole.ToolTipRole)
        assert tip is None or "<img" not in tip
    comparison = RunComparisonWidget()
    qtbot.addWidget(comparison)
    comparison.show_runs([(IMG, [])])
    assert "<img" not in comparison.caption.toolTip()


def test_plain_text_widgets_show_labels_literally(qtbot):
    from PySide6.QtCore import Qt

    from workbench.gui.training_tab import TrainingTab

    tab = TrainingTab()
    qtbot.addWidget(tab)
    assert tab.summary.textFormat() == Qt.TextFormat.PlainText


def test_the_window_describes_adapters_and_datasets_with_file_strings_escaped(tmp_path, tiny_checkpoint):
    """The adapter line and the problems list are rich text: names and labels from files go in escaped."""
    from test_gui_robustness import make_adapter

    from workbench.core.adapters import read_adapter
    from workbench.gui.controllers.adapter import describe_adapter

    path = make_adapter(tmp_path / "a.safetensors", tiny_checkpoint, labels=("ham", IMG))
    _, info = read_adapter(path)
    line = describe_adapter(str(path), info)
    assert "<img" not in line and "&lt;img" in line


def test_every_message_box_goes_through_the_escaping_dialogs():
    """A class of defect, not a case: Qt guesses whether a message box's text is markup, so every
    one must pass through gui/dialogs.py. This finds any direct QMessageBox text call."""
    import re
    from pathlib import Path

    import workbench.gui as gui

    pattern = re.compile(r"QMessageBox\.(warning|critical|information|question)\(")
    direct = [
        f"{path.name}:{number}"
        for path in Path(gui.__file__).parent.rglob("*.py")
        if path.name != "dialogs.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert direct == []


def test_a_message_quoting_a_hostile_name_is_shown_literally(monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from workbench.gui import dialogs

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda parent, title, text: shown.append(text)))
    dialogs.warning(None, "Could not read", f"{IMG} is not a table\nsecond line")
    assert shown[0].startswith("<qt>") and "<img" not in shown[0] and "&lt;img" in shown[0]
    assert "<br>second line" in shown[0]
