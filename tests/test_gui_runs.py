"""The Runs tab as a run table (issue 12): sorted as numbers, the live run listed as it trains,
delete to the trash after asking, rename and notes kept in the run folder, the settings that
differ between compared runs, Ctrl+C as TSV and a CSV export that reads back.

Driven through the window offscreen with the tiny GPT-2 and the 60-message CSV of test_gui; the
runs other than the live one are run folders with a recorded history (no training needed).
"""

from __future__ import annotations

import csv
import sys

import pytest
from PySide6.QtCore import QFile, QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox
from test_gui import dataset, dialogs, make_window, refreshed, select_runs, window  # noqa: F401 (fixtures)

from workbench.core import events as ev
from workbench.core.config import LoRAConfig, TrainConfig
from workbench.core.runs import RunFolder
from workbench.gui.run_table_model import COLUMNS, unstamped

RANK, ACCURACY, DURATION = (
    next(i for i, c in enumerate(COLUMNS) if c.title == title) for title in ("Rank", "Test acc.", "Duration")
)


def column(tab, title: str) -> list[str]:
    return tab.column_texts(next(i for i, c in enumerate(COLUMNS) if c.title == title))


def recorded_run(rank: int, accuracy: float, seconds: float, lr: float = 5e-5) -> RunFolder:
    """A finished run folder: settings, a RunStarted and a TrainingFinished with test metrics."""
    cfg = TrainConfig(lora=LoRAConfig(rank=rank, alpha=16.0), lr=lr)
    run = RunFolder.create(cfg)
    run.record(ev.RunStarted(str(run.path), "CPU", "fp32", ("ham", "spam"), 40, 6, 12, 0, 64, 5, 5, 25, 1000, 10**5))
    run.record(ev.Evaluated(5, 1, 40, 0.6, 0.6, accuracy, accuracy))
    metrics = ev.EvaluationMetrics(
        accuracy, 0.3, ("ham", "spam"), (0.9, 0.8), (0.9, 0.8), (0.9, 0.8), (6, 6), ((5, 1), (1, 5))
    )
    run.record(ev.TrainingFinished(False, 25, 200, seconds, str(run.path), str(run.adapter_path), metrics=metrics))
    return run


@pytest.fixture
def three_runs(qtbot, window):
    runs = [recorded_run(16, 0.95, 75.0), recorded_run(4, 0.9, 600.0), recorded_run(8, 0.975, 9.0)]
    refreshed(qtbot, window.runs_tab)
    return runs


def on_runs_tab(qtbot, window) -> None:
    """The Runs tab shown and the window active, so that keys reach the table as a person's do."""
    window.tabs.setCurrentWidget(window.runs_tab)
    qtbot.waitExposed(window.runs_tab.table)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)


def click_header(tab, section: int) -> None:
    header = tab.table.horizontalHeader()
    x = header.sectionViewportPosition(section) + header.sectionSize(section) // 2
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2))


def test_a_numeric_column_sorts_as_numbers(qtbot, window, three_runs):
    tab = window.runs_tab
    window.tabs.setCurrentWidget(tab)
    qtbot.waitExposed(tab.table)
    tab.table.horizontalHeader().resizeSection(0, 80)  # every column in view, to be clicked
    click_header(tab, RANK)
    ranks = column(tab, "Rank")
    assert ranks in (["4", "8", "16"], ["16", "8", "4"])  # as text it would be 16, 4, 8
    click_header(tab, RANK)
    assert column(tab, "Rank") == ranks[::-1]
    click_header(tab, DURATION)
    durations = column(tab, "Duration")
    assert durations in (["0:09", "1:15", "10:00"], ["10:00", "1:15", "0:09"])  # as text: 0:09, 10:00, 1:15
    tab.table.sortByColumn(ACCURACY, Qt.SortOrder.DescendingOrder)
    assert column(tab, "Test acc.") == ["97.5%", "95.0%", "90.0%"]


def test_the_run_training_now_is_listed_live(qtbot, window):
    tab = window.runs_tab
    window.training_panel.epochs.setValue(500)
    window.start_training()

    def live_status() -> str:
        statuses = column(tab, "Status")
        return statuses[0] if statuses else ""

    qtbot.waitUntil(lambda: live_status().startswith("training now · "), timeout=30_000)
    assert tab.run_count() == 1
    assert column(tab, "Rank") == ["4"] and column(tab, "Epochs") == ["500"]
    window.stop_training()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=10_000)
    qtbot.waitUntil(lambda: live_status() == "stopped early", timeout=10_000)
    assert column(tab, "Duration")[0] != ""


@pytest.mark.skipif(sys.platform != "linux", reason="elsewhere Qt moves to the user's own trash, not the test's")
def test_delete_asks_then_moves_the_run_to_the_trash(qtbot, window, three_runs, dialogs, tmp_path, monkeypatch):
    (tmp_path / "xdg").mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # the trash of this test alone
    tab = window.runs_tab
    victim = three_runs[1]
    on_runs_tab(qtbot, window)
    select_runs(window, victim)
    tab.table.setFocus()
    with qtbot.waitSignal(tab.rows_loaded, timeout=10_000):
        QTest.keyClick(tab.table, Qt.Key.Key_Delete)
    assert [kind for kind, _text in dialogs] == ["question"], dialogs
    assert "Move this run to the trash?" in dialogs[0][1] and victim.path.name in dialogs[0][1]
    assert not victim.path.exists()
    assert (tmp_path / "xdg" / "Trash" / "files" / victim.path.name / "config.json").is_file()
    assert tab.run_count() == 2 and all(run.path.exists() for run in (three_runs[0], three_runs[2]))


def test_declining_keeps_the_run(qtbot, window, three_runs, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.No))
    select_runs(window, three_runs[0])
    window.runs_tab.delete_button.click()
    assert three_runs[0].path.is_dir()


def test_without_a_trash_it_says_so_and_asks_twice_before_deleting(qtbot, window, three_runs, dialogs, monkeypatch):
    monkeypatch.setattr(QFile, "moveToTrash", staticmethod(lambda path: (False, "")))
    select_runs(window, three_runs[0], three_runs[2])
    with qtbot.waitSignal(window.runs_tab.rows_loaded, timeout=10_000):
        window.runs_tab.delete_button.click()
    questions = [text for kind, text in dialogs if kind == "question"]
    assert len(questions) == 3
    assert "these 2 runs to the trash" in questions[0]
    assert "no trash" in questions[1] and "cannot be undone" in questions[1]
    assert "Really delete" in questions[2]
    assert not three_runs[0].path.exists() and not three_runs[2].path.exists() and three_runs[1].path.exists()


def test_a_run_training_now_is_not_deleted(qtbot, window, three_runs, dialogs):
    run = three_runs[0]
    with run.training_lock():  # as another window or `workbench train --resume` holds it
        select_runs(window, run)
        window.runs_tab.delete_button.click()
    assert [kind for kind, _text in dialogs] == ["information"]
    assert "training now" in dialogs[0][1]
    assert run.path.is_dir()


def test_rename_and_notes_survive_a_new_window(qtbot, window, three_runs, tmp_path, tiny_checkpoint, dataset):
    tab = window.runs_tab
    run = three_runs[2]
    on_runs_tab(qtbot, window)
    select_runs(window, run)
    tab.rename_button.click()
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit) and tab.table.isAncestorOf(editor)  # the cell's own editor
    editor.selectAll()
    QTest.keyClicks(editor, "rank 8, the good one")
    QTest.keyClick(editor, Qt.Key.Key_Return)  # Qt commits the edit on its next turn of the event loop
    qtbot.waitUntil(lambda: tab.row_for(run).name == "rank 8, the good one", timeout=5_000)
    assert "rank 8, the good one" in tab.details.text()
    tab.notes.setFocus()
    QTest.keyClicks(tab.notes, "best F1 so far")
    qtbot.waitUntil(lambda: tab.notes_status.text() == "saved", timeout=5_000)
    window.close()

    again = make_window(qtbot, tmp_path, tiny_checkpoint, dataset)
    qtbot.waitUntil(lambda: again.runs_tab.run_count() == 3, timeout=10_000)
    assert "rank 8, the good one" in column(again.runs_tab, "Name")
    select_runs(again, run)
    assert again.runs_tab.notes.toPlainText() == "best F1 so far"
    assert run.path.name in again.runs_tab.row_for(run).path.name  # the folder keeps its name


def test_notes_typed_then_left_are_saved_at_once(qtbot, window, three_runs):
    tab = window.runs_tab
    select_runs(window, three_runs[0])
    QTest.keyClicks(tab.notes, "typed quickly")
    select_runs(window, three_runs[1])  # before the save timer fires
    assert tab.row_for(three_runs[0]).notes == "typed quickly"
    from workbench.core.run_table import read_about

    assert read_about(three_runs[0]).notes == "typed quickly"
    on_runs_tab(qtbot, window)
    QTest.keyClicks(tab.notes, " and away")
    window.tabs.setCurrentWidget(window.training_tab)  # to another tab before the save timer fires
    assert read_about(three_runs[1]).notes == " and away"


def test_compare_lists_the_settings_that_differ(qtbot, window, tmp_path):
    first = recorded_run(16, 0.9, 10.0)
    second = recorded_run(4, 0.95, 10.0, lr=1e-3)
    refreshed(qtbot, window.runs_tab)
    select_runs(window, first, second)
    window.runs_tab.compare_button.click()
    comparison = window.runs_tab.comparison
    qtbot.waitUntil(lambda: len(comparison.curves("loss")) == 2, timeout=10_000)
    shown = comparison.settings_shown()
    assert set(shown) == {"lora.rank", "lr"}
    order = [run.path for run in window.runs_tab.selected_runs()]
    expected = {first.path: ("16", "5e-05"), second.path: ("4", "0.001")}
    assert shown["lora.rank"] == tuple(expected[p][0] for p in order)
    assert shown["lr"] == tuple(expected[p][1] for p in order)
    assert "2 settings differ" in comparison.diff_caption.text()
    assert window.runs_tab.pages.currentWidget() is comparison
    out = tmp_path / "diff.csv"
    assert comparison.diff_table.export_csv(str(out))
    with open(out, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert header[0] == "setting" and len(header) == 3
    assert {row[0]: tuple(row[1:]) for row in rows} == shown


def test_double_click_shows_the_run(qtbot, window, three_runs):
    tab = window.runs_tab
    on_runs_tab(qtbot, window)
    select_runs(window, three_runs[0])
    index = tab.proxy.index(tab.table.selectionModel().currentIndex().row(), RANK)
    rect = tab.table.visualRect(index)
    with qtbot.waitSignal(tab.show_requested, timeout=5_000) as shown:  # press, release, double-click
        QTest.mouseClick(tab.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        QTest.mouseDClick(tab.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert shown.args[0].path == three_runs[0].path
    assert window.tabs.currentWidget() is window.training_tab


def test_ctrl_c_copies_the_selected_rows_as_tsv(qtbot, window, three_runs):
    tab = window.runs_tab
    on_runs_tab(qtbot, window)
    tab.table.sortByColumn(RANK, Qt.SortOrder.AscendingOrder)
    select_runs(window, three_runs[0], three_runs[1])  # ranks 16 and 4
    QApplication.clipboard().clear()
    tab.table.setFocus()
    QTest.keyClick(tab.table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    lines = QApplication.clipboard().text().splitlines()
    assert len(lines) == 2
    cells = [line.split("\t") for line in lines]
    assert all(len(row) == len(COLUMNS) for row in cells)
    assert [row[RANK] for row in cells] == ["4", "16"]  # in the order shown
    # An unnamed run shows its folder's name less the time stamp (Started has the time).
    assert [row[0] for row in cells] == [unstamped(three_runs[1].path.name), unstamped(three_runs[0].path.name)]
    assert cells[0][0] == three_runs[1].path.name[20:]


def test_csv_export_reads_back(qtbot, window, three_runs, tmp_path):
    from workbench.core.run_table import RunAbout, save_about

    save_about(three_runs[0], RunAbout('=cmd, "quoted"', "line one\nline two"))
    refreshed(qtbot, window.runs_tab)
    tab = window.runs_tab
    tab.table.sortByColumn(RANK, Qt.SortOrder.AscendingOrder)
    out = tmp_path / "runs"
    assert tab.table.export_csv(str(out))
    with open(tmp_path / "runs.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert header == [c.title for c in COLUMNS]
    assert [int(row[RANK]) for row in rows] == [4, 8, 16]
    assert [float(row[ACCURACY]) for row in rows] == [0.9, 0.975, 0.95]
    assert [float(row[DURATION]) for row in rows] == [600.0, 9.0, 75.0]
    assert rows[2][0] == '\'=cmd, "quoted"'  # a spreadsheet must not run it as a formula
    assert rows[2][-1] == "line one\nline two"
