"""Everything the CLI's train can set has a place in the window, and the window can say the exact
command line, save its settings for `train --settings`, and import a PEFT adapter."""

from __future__ import annotations

import shlex

import pytest
from PySide6.QtWidgets import QApplication
from test_gui import dataset, dialogs, window  # noqa: F401 (fixtures)
from test_gui_robustness import make_adapter

from workbench.cli import build_parser, train_config


def test_precision_and_length_grouping_reach_the_run_settings(window):
    model, training = window.model_panel, window.training_panel
    model.precision_combo.setCurrentIndex(model.precision_combo.findData("bf16"))
    training.length_grouping.setValue(0)
    cfg, _ = window.build_config()
    assert cfg.precision == "bf16" and cfg.length_grouping == 0
    assert model.precision_note.text() == ""  # a fixed precision needs no explanation
    window.config.apply(cfg.with_changes(precision="fp32", length_grouping=20))
    assert model.precision() == "fp32" and training.length_grouping.value() == 20
    model.set_precision("auto")
    assert model.precision_note.text().startswith("auto: ")  # measured already, or when it will be


def test_copy_as_command_is_the_exact_run(window):
    window.training_panel.epochs.setValue(3)
    window.lora_panel.rank.setValue(4)
    window.model_panel.set_precision("fp32")
    line = window.copy_command()
    assert QApplication.clipboard().text() == line
    words = shlex.split(line)
    assert words[:2] == ["workbench", "train"] and "--rank" in words and "--precision" in words
    parsed = train_config(build_parser().parse_args(words[1:]))
    assert parsed == window.build_config()[0]


def test_settings_saved_then_loaded_restore_every_field(window, tmp_path, dialogs):
    window.training_panel.epochs.setValue(3)
    window.training_panel.lr.setText("2e-4")
    window.lora_panel.rank.setValue(8)
    window.model_panel.set_precision("bf16")
    saved = window.build_config()[0]
    path = tmp_path / "preset.json"
    window.save_settings_file(str(path))
    window.training_panel.epochs.setValue(9)
    window.lora_panel.rank.setValue(2)
    window.model_panel.set_precision("auto")
    window.load_settings_file(str(path))
    assert window.build_config()[0] == saved

    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    window.load_settings_file(str(bad))
    assert dialogs and dialogs[-1][0] == "warning" and "broken.json" in dialogs[-1][1]
    assert window.build_config()[0] == saved  # nothing half-applied


def test_a_peft_folder_imports_and_opens(qtbot, window, tmp_path, tiny_checkpoint, dialogs):
    from workbench.core.peft_io import export_peft

    adapter = make_adapter(tmp_path / "mine.safetensors", tiny_checkpoint)
    folder = tmp_path / "peft"
    export_peft(adapter, folder)
    target = tmp_path / "back.safetensors"
    window.adapter.import_peft(str(folder), str(target))
    qtbot.waitUntil(lambda: window.adapter.path == str(target), timeout=30_000)
    assert window.classify_tab.classifier is not None and not dialogs


def test_the_shortcut_list_is_read_from_the_menus(window, dialogs):
    window._show_shortcuts()
    text = dialogs[-1][1]
    assert "Copy as command" in text and "Start training" in text
    assert "Ctrl+Shift+C" in text


@pytest.mark.parametrize(
    "field", ["precision", "length_grouping", "seed", "warmup_steps", "schedule", "early_stopping", "keep_best"]
)
def test_a_problem_with_a_new_field_marks_that_field(window, field):
    from workbench.core.config import Problem

    widget = window.config._field_for(Problem(field, "bad"))
    assert widget is not None and widget in window.config._fields()


def test_schedule_early_stopping_and_keep_best_reach_the_run_and_the_command(window):
    t = window.training_panel
    t.warmup_steps.setValue(20)
    t.schedule.setCurrentIndex(t.schedule.findData("cosine"))
    t.early_stopping.setValue(2)
    t.keep_best.setChecked(True)
    cfg, problems = window.build_config()
    assert (cfg.warmup_steps, cfg.schedule, cfg.early_stopping, cfg.keep_best) == (20, "cosine", 2, True)
    assert problems == []
    words = shlex.split(window.copy_command())
    assert "--keep-best" in words and words[words.index("--schedule") + 1] == "cosine"
    window.config.apply(cfg.with_changes(schedule="linear", keep_best=False, early_stopping=0))
    assert t.schedule.currentData() == "linear" and not t.keep_best.isChecked() and t.early_stopping.text() == "off"


def test_label_renames_in_the_data_panel(qtbot, window, tmp_path):
    numbered = tmp_path / "numbered.csv"
    numbered.write_text("text,label\n" + "".join(f"message {i},{i % 2}\n" for i in range(40)))
    window.open_dataset(str(numbered))
    qtbot.waitUntil(lambda: window.dataset.counts == {"0": 20, "1": 20}, timeout=10_000)
    panel = window.data_panel
    panel.rename.setText("0=ham, 1=spam")
    assert window.dataset.counts == {"ham": 20, "spam": 20}  # the classes training will find
    cfg, problems = window.build_config()
    assert cfg.data.rename_labels == (("0", "ham"), ("1", "spam")) and problems == []
    assert "--rename-labels 0=ham 1=spam" in window.copy_command()

    panel.rename.setText("2=ham")
    assert any("no label '2'" in p for p in window.problems()) and not window.start_button.isEnabled()
    assert window.config._field_for(next(p for p in window.problems() if "'2'" in p)) is panel.rename
    panel.rename.setText("0=ham, spam")
    assert any("not OLD=NEW" in p for p in window.problems())


def test_help_opens_the_readme_at_its_sections(window, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    from workbench.gui.main_window import README_SECTIONS
    from workbench.resources import readme_path

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url) or True))
    headings = readme_path().read_text(encoding="utf-8")
    for title, anchor in README_SECTIONS:
        assert f"\n## {title[0].upper()}{title[1:]}\n" in headings  # the anchor heading exists
        window.open_readme(anchor)
    assert [u.fragment() for u in opened] == [a for _, a in README_SECTIONS]
    assert all(u.toLocalFile() == str(readme_path()) for u in opened)
