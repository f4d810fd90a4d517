"""The window as a daily tool: the interaction defects of issue 12, one test (or a few) each.

Each test drives the window as a person would (real wheel events through the window system,
clicks, typing), offscreen, with the tiny GPT-2 of conftest and the 60-message CSV of test_gui.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QScrollArea
from test_gui import dataset, dialogs, make_window, refreshed, window  # noqa: F401 (fixtures)

# --- 1. the mouse wheel scrolls the settings, it does not edit them ------------------------------


def settings_scroll(window) -> QScrollArea:
    return next(w for w in window.findChildren(QScrollArea) if w.widget() is window.column)


def wheel_over(window, widget, notches: int = -1) -> None:
    """One real wheel notch (down for -1) over ``widget``, through the window system, so Qt
    delivers it as a spontaneous event and passes it on to the parents when it is ignored."""
    centre = widget.mapTo(window, widget.rect().center())
    QTest.wheelEvent(window.windowHandle(), centre, QPoint(0, 120 * notches))
    QApplication.processEvents()


def value_of(widget):
    return widget.currentIndex() if isinstance(widget, QComboBox) else widget.value()


def test_the_wheel_over_an_unfocused_field_scrolls_the_column_and_changes_nothing(qtbot, window):
    window.resize(1000, 420)  # short enough that the settings column scrolls
    qtbot.waitExposed(window)
    scroll = settings_scroll(window)
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0
    fields = [
        w
        for w in window.column.findChildren(QAbstractSpinBox) + window.column.findChildren(QComboBox)
        if w.isVisibleTo(window.column)
    ]
    assert window.lora_panel.rank in fields and window.model_panel.model_combo in fields
    assert window.training_panel.eval_every in fields
    window.tabs.setFocus()
    for field in fields:
        scroll.ensureWidgetVisible(field)
        bar.setValue(min(bar.value(), bar.maximum() - 1))  # room to scroll down
        before, position = value_of(field), bar.value()
        wheel_over(window, field)
        assert value_of(field) == before, field
        assert bar.value() > position, field  # the column scrolled instead
        assert not field.hasFocus()
        assert field.focusPolicy() == Qt.FocusPolicy.StrongFocus, field  # a wheel never gives focus


def test_one_notch_over_the_model_list_opens_no_folder_dialog(qtbot, window, monkeypatch):
    opened = []
    monkeypatch.setattr(window.model, "choose_folder", lambda: opened.append(True))
    window.model_panel.local_folder_requested.disconnect()
    window.model_panel.local_folder_requested.connect(window.model.choose_folder)
    window.resize(1000, 420)
    qtbot.waitExposed(window)
    combo = window.model_panel.model_combo
    settings_scroll(window).ensureWidgetVisible(combo)
    window.tabs.setFocus()
    before = combo.currentIndex()  # the tiny folder: the entry just above "Local folder…"
    wheel_over(window, combo)
    assert combo.currentIndex() == before and opened == []


def test_a_focused_field_still_takes_the_wheel(qtbot, window):
    qtbot.waitExposed(window)
    window.activateWindow()
    rank = window.lora_panel.rank
    settings_scroll(window).ensureWidgetVisible(rank)
    rank.setFocus()
    qtbot.waitUntil(rank.hasFocus, timeout=5000)
    before = rank.value()
    wheel_over(window, rank, notches=1)
    assert rank.value() == before + 1


# --- 2. legends outside the data, a lone point visible --------------------------------------------


def test_training_legends_sit_above_the_plots_not_on_the_curves(qtbot, window):
    tab = window.training_tab
    window.tabs.setCurrentWidget(tab)
    qtbot.waitExposed(tab)
    for plot, names in (
        (tab.loss_plot, ["train (each step)", "train", "validation", "validation, epoch end"]),
        (tab.accuracy_plot, ["train", "validation", "validation, epoch end"]),
    ):
        assert plot.plot.getPlotItem().legend is None  # nothing drawn inside the data area
        assert plot.legend.names() == names
        assert plot.legend.isVisible()
        assert plot.legend.geometry().bottom() <= plot.plot.geometry().top()


def test_a_lone_evaluation_is_drawn_as_a_marker(qtbot, window):
    from workbench.core.events import Evaluated

    tab = window.training_tab
    window.tabs.setCurrentWidget(tab)
    qtbot.waitExposed(tab)
    tab.evaluated(Evaluated(2, 1, 16, 0.7, 0.69, 0.5, 0.55))
    tab._redraw()
    for plot in (tab.loss_plot, tab.accuracy_plot):
        curve = plot._series["val"][2]
        assert plot.points("val") == 1 and curve.opts["symbol"] is not None  # a line of one point is invisible
    tab.evaluated(Evaluated(4, 1, 32, 0.6, 0.6, 0.6, 0.6))
    tab._redraw()
    assert tab.accuracy_plot.points("val") == 2  # two points: the line shows them, no marker per point
    assert tab.accuracy_plot._series["val"][2].opts["symbol"] is None


def test_compared_runs_are_named_above_the_plots(qtbot, window):
    from test_gui import fake_run, select_runs

    from workbench.core.config import TrainConfig

    first = fake_run(TrainConfig(), [(8, 0.7, 0.5), (16, 0.5, 0.7)])
    second = fake_run(TrainConfig(lr=1e-3), [(8, 0.69, 0.55)])  # one point: drawn as a marker
    refreshed(qtbot, window.runs_tab)
    select_runs(window, first, second)
    window.runs_tab.compare_button.click()
    comparison = window.runs_tab.comparison
    qtbot.waitUntil(lambda: len(comparison.curves("loss")) == 2, timeout=10_000)
    for plot in (comparison.loss_plot, comparison.accuracy_plot):
        assert plot.getPlotItem().legend is None
    assert sorted(comparison.legend.names()) == sorted(comparison.curves("loss"))


# --- 3. while a run trains, the left column shows that run's settings ------------------------------


def test_train_more_shows_the_runs_settings_read_only_and_restores_them(qtbot, window, tmp_path, tiny_checkpoint):
    from conftest import write_tiny_checkpoint

    window.training_panel.epochs.setValue(1)
    window.start_training()
    qtbot.waitUntil(lambda: not window.is_training() and window.results_tab.metrics is not None, timeout=60_000)
    # The person moves on: another model, another rank, more epochs.
    other = write_tiny_checkpoint(tmp_path / "other-gpt2", n_layer=1)
    window.set_model_folder(str(other))
    window.lora_panel.rank.setValue(8)
    window.training_panel.epochs.setValue(5)
    assert "other-gpt2" in window.model_status.text()

    tab = window.runs_tab
    refreshed(qtbot, tab)
    tab.select_row(0)
    qtbot.waitUntil(tab.extend_button.isEnabled, timeout=10_000)
    tab.more_epochs.setValue(1)
    tab.extend_button.click()
    assert window.is_training()
    # What trains is the old run: rank 4 on the first model, 1 + 1 epochs; the column says so.
    assert window.lora_panel.rank.value() == 4
    assert window.training_panel.epochs.value() == 2
    assert window.model_panel.model() == str(tiny_checkpoint)
    assert tiny_checkpoint.name in window.model_status.text() and "other-gpt2" not in window.model_status.text()
    for panel in (window.data_panel, window.model_panel, window.lora_panel, window.training_panel):
        assert not panel.isEnabled()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=60_000)
    # Afterwards the person's own settings are back, editable.
    assert window.lora_panel.rank.value() == 8 and window.training_panel.epochs.value() == 5
    assert window.model_panel.model() == str(other) and "other-gpt2" in window.model_status.text()
    assert window.lora_panel.isEnabled()


# --- 4. honest progress -------------------------------------------------------------------------


def test_a_phase_after_the_last_step_replaces_the_100_percent(qtbot, window):
    from workbench.core.events import StepDone

    tab = window.training_tab
    tab.step(StepDone(10, 1, 80, 0.3, 50.0, 500.0, 2.0, 0.0, 10))
    tab.set_status("Scoring 300 test messages")  # arrives before the redraw tick shows step 10
    tab._redraw()
    assert tab.progress.format() == "Scoring 300 test messages…"
    assert tab.progress.maximum() > 0  # not a busy bar: most styles draw those without their text


def test_with_max_steps_the_x_axis_spans_what_will_run(qtbot, window):
    from workbench.core.events import RunStarted

    window.training_panel.epochs.setValue(4)
    window.training_panel.max_steps.setValue(3)
    window.start_training()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=30_000)
    started = next(e for e in run_events(window) if isinstance(e, RunStarted))
    assert started.total_steps == 3
    planned = 3 * 8  # three steps of eight messages
    for plot in (window.training_tab.loss_plot, window.training_tab.accuracy_plot):
        low, high = plot.plot.getPlotItem().vb.viewRange()[0]
        assert planned <= high <= planned * 1.1, (high, started.n_train * 4)


def test_stop_leaves_the_bar_where_the_run_stopped(qtbot, window):
    window.training_panel.epochs.setValue(500)
    window.start_training()
    qtbot.waitUntil(lambda: window.training_tab.loss_plot.points("step") > 0, timeout=30_000)
    window.stop_training()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=10_000)
    bar = window.training_tab.progress
    assert "Stopped" in bar.format()
    assert 0 < bar.value() < bar.maximum()  # part of the run, not a full bar


def run_events(window) -> list:
    from workbench.core.runs import list_runs

    runs = list_runs()
    return runs[0].events() if runs else []


# --- 5. the log belongs to the run shown, and follows it -----------------------------------------


def test_a_new_run_starts_with_an_empty_log(qtbot, window):
    window.training_panel.max_steps.setValue(2)
    window.start_training()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=30_000)
    first = run_events(window)[0].run_dir
    assert first in window.training_tab.log_text()
    window.start_training()  # Re-run puts settings back; Start begins the new run either way
    assert window.training_tab.log_text().count("— Starting") == 1
    qtbot.waitUntil(lambda: not window.is_training(), timeout=30_000)
    assert f"{first}/" not in window.training_tab.log_text()  # (the new run's folder may be first + "_2")


def test_the_log_follows_new_lines_unless_scrolled_up(qtbot, window):
    tab = window.training_tab
    bar = tab.log.verticalScrollBar()
    window.tabs.setCurrentWidget(window.results_tab)  # lines arrive while another tab is shown
    for i in range(300):
        tab.add_log(f"line {i}")
    tab._redraw()
    window.tabs.setCurrentWidget(tab)
    qtbot.waitExposed(tab)
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    tab.add_log("one more")
    tab._redraw()
    assert bar.value() == bar.maximum()
    bar.setValue(10)  # the person scrolls up to read
    tab.add_log("and another")
    tab._redraw()
    assert bar.value() == 10


# --- 6. a text column chosen as the label is caught before Start --------------------------------


def test_choosing_the_text_column_as_label_keeps_start_off_with_a_reason(qtbot, window, tmp_path, dialogs):
    counts = window.data_panel.counts_label
    heights = {counts.height()}
    labels, texts = window.data_panel.label_column, window.data_panel.text_column
    texts.setCurrentIndex(texts.findData("label"))  # the columns swapped: the messages as labels
    labels.setCurrentIndex(labels.findData("text"))
    assert any("looks like a text column" in p for p in window.problems())
    assert not window.start_button.isEnabled()
    assert "looks like a text column" in window.start_button.toolTip()
    assert labels.property("problems")  # marked at the field
    assert "looks like a text column" in counts.text()
    heights.add(counts.height())
    texts.setCurrentIndex(texts.findData("text"))
    labels.setCurrentIndex(labels.findData("label"))
    assert window.problems() == [] and window.start_button.isEnabled()
    heights.add(counts.height())
    many = tmp_path / "many.csv"  # a dozen classes: the longest counts line
    many.write_text("text,label\n" + "".join(f"message number {i},class{i % 12}\n" for i in range(120)))
    window.open_dataset(str(many))
    qtbot.waitUntil(lambda: len(window.dataset.counts) == 12, timeout=10_000)
    heights.add(counts.height())
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\x00\x01\x02binary")
    window.open_dataset(str(broken))
    qtbot.waitUntil(lambda: window.problems() != [], timeout=10_000)
    heights.add(counts.height())
    assert len(heights) == 1  # the counts line never pushes the settings below it around


# --- 7. first launch offline --------------------------------------------------------------------


def test_first_launch_offline_says_what_to_do_in_the_window(qtbot, tmp_path, tiny_checkpoint, monkeypatch, dialogs):
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QFileDialog

    from workbench.gui.main_window import MainWindow

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    window = MainWindow(settings=QSettings(str(tmp_path / "first.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    panel = window.model_panel
    assert panel.model() == "gpt2"  # the default, not downloaded (the cache is empty)
    said = " ".join([*window.problems(), window.column.problems.text(), panel.info_label.text()])
    assert "`" not in said and "workbench download" not in said  # nothing to type in a shell
    assert "choose a model folder" in said.lower()
    assert not window.start_button.isEnabled()
    assert not panel.download_button.isEnabled() and "offline" in panel.download_button.toolTip().lower()
    model_step = next(p for p in window.problems() if "not downloaded" in p)
    assert "#d9534f" not in line_of(window.column.problems.text(), model_step)  # a step to take, not an error
    assert not panel.model_combo.property("problems")  # and no red outline on the list
    # The way out is a button beside Download, not the last entry of the list.
    assert panel.folder_button.isVisible() and panel.folder_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(tiny_checkpoint))
    panel.folder_button.click()
    assert panel.model() == str(tiny_checkpoint)
    assert not any("not downloaded" in p for p in window.problems())
    window.pool.stop_all()
    assert window.pool.wait_all(5000)


def line_of(html: str, text: str) -> str:
    return next(line for line in html.split("<br>") if text[:30] in line)


def test_a_download_that_cannot_reach_the_hub_says_what_to_do(qtbot, window, monkeypatch, dialogs, tmp_path):
    from workbench.core import hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))

    def unreachable(model, **kwargs):
        reason = "the Hugging Face Hub could not be reached (timeout)"
        raise hub._not_cached_error(model, hub.MODEL_REPOS[model], reason)

    monkeypatch.setattr(hub, "resolve_checkpoint", unreachable)
    window.model_panel.set_model("gpt2")
    window.model_panel.download_button.click()
    qtbot.waitUntil(lambda: bool(dialogs), timeout=10_000)
    (kind, text), *_ = dialogs
    assert kind == "warning" and "could not be reached" in text
    assert "`" not in text and "Choose a model folder" in text


# --- 8. reopen where the person left off ---------------------------------------------------------


def reopen(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from workbench.gui.main_window import MainWindow

    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    return window


def test_a_restart_reloads_the_adapter_and_shows_the_last_run(qtbot, tmp_path, tiny_checkpoint, dataset, dialogs):
    first = make_window(qtbot, tmp_path, tiny_checkpoint, dataset)
    first.training_panel.epochs.setValue(1)
    first.start_training()
    qtbot.waitUntil(lambda: first.adapter.path is not None and not first.classify_tab.is_busy(), timeout=60_000)
    adapter = first.adapter.path
    first.tabs.setCurrentWidget(first.data_tab)  # the tab the person was on
    first.close()

    second = reopen(qtbot, tmp_path)
    qtbot.waitUntil(lambda: second.classify_tab.classifier is not None, timeout=30_000)
    assert second.adapter.path == adapter and "adapter.safetensors" in second.adapter_status.text()
    tab = second.training_tab
    qtbot.waitUntil(lambda: tab.accuracy_plot._series["val_epoch"][1].n == 1, timeout=10_000)
    assert tab.loss_plot._series["val"][1].n > 0  # the curves of the last run
    assert "finished" in tab.progress.format() and second.results_tab.metrics is not None
    assert second.tabs.currentWidget() is second.data_tab  # restoring did not switch tabs
    second.pool.stop_all()
    assert second.pool.wait_all(5000)


def test_a_failed_read_leaves_no_stale_column_choices(qtbot, window, tmp_path):
    labels = window.data_panel.label_column
    labels.setCurrentIndex(labels.findData("label"))
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\x00\x01\x02binary")
    window.open_dataset(str(broken))
    qtbot.waitUntil(lambda: window.problems() != [], timeout=10_000)
    for combo in (window.data_panel.text_column, labels):
        assert [combo.itemText(i) for i in range(combo.count())] == ["auto"]


def test_the_sms_line_offers_no_download_when_the_data_is_there(qtbot, tmp_path, tiny_checkpoint, dataset, dialogs):
    from workbench.core.data import sms_spam_path

    first = make_window(qtbot, tmp_path, tiny_checkpoint, dataset)  # a CSV is the dataset
    first.close()
    path = sms_spam_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ham\tsee you at lunch\nspam\twin a prize now\n", encoding="utf-8")
    second = reopen(qtbot, tmp_path)
    panel = second.data_panel
    assert panel.source() == str(dataset)
    assert not panel.download_button.isVisibleTo(panel) and "downloaded ✓" in panel.sms_status.text()
    second.pool.stop_all()
    assert second.pool.wait_all(5000)


# --- 9. classify as you type, and a whole file ---------------------------------------------------


@pytest.fixture
def classifier(tmp_path, tiny_checkpoint):
    from test_gui_robustness import make_adapter

    from workbench.core.classify import Classifier

    return Classifier.from_adapter(make_adapter(tmp_path / "a.safetensors", tiny_checkpoint), device="cpu")


def test_typing_shows_predictions_while_typing_and_ends_on_the_latest_text(qtbot, window, classifier, monkeypatch):
    tab = window.classify_tab
    tab.set_classifier(classifier, "tiny")
    window.tabs.setCurrentWidget(tab)
    seen: list[str] = []
    typing = classifier.predict_typing
    monkeypatch.setattr(classifier, "predict_typing", lambda text: (seen.append(text), typing(text))[1])
    message = "win a cash prize now"
    tab.input.setFocus()
    for i, char in enumerate(message):
        QTest.keyClick(tab.input, char)  # each keystroke about 30 ms apart, as a person types
        if i == 0:
            assert tab.busy.isVisible()  # the small "classifying…" sign
        qtbot.wait(30)
    during = list(seen)
    qtbot.waitUntil(lambda: not tab.is_busy() and bool(seen) and seen[-1] == message, timeout=10_000)
    assert during, "nothing was classified while typing"
    assert len(seen) < len(message)  # throttled: not one prediction per keystroke
    assert tab.result_label.text().split(" ")[0] in ("ham", "spam")
    qtbot.waitUntil(lambda: not tab.busy.isVisible(), timeout=5000)


def test_classify_file_says_which_column_it_read(qtbot, window, classifier, tmp_path, dataset):
    tab = window.classify_tab
    tab.set_classifier(classifier, "tiny")
    out = tmp_path / "predicted.csv"
    tab.classify_file(str(dataset), str(out))
    qtbot.waitUntil(lambda: not tab.is_busy() and out.exists(), timeout=20_000)
    assert "60 rows" in tab.file_progress.format()
    assert "column 'text'" in tab.file_result.text()


# --- a small screen -----------------------------------------------------------------------------


def test_the_window_fits_a_1000_pixel_wide_screen(qtbot, window):
    window.adapter_status.setText("adapter: " + "2026-12-01_22-33-41_a-long-model-name_sms-spam/" * 3)
    QApplication.processEvents()
    assert window.minimumSizeHint().width() <= 1000


# --- issue 10: one source of truth for the window's counts and its field marks ----------------


def test_the_window_counts_classes_as_training_will(qtbot, window, tmp_path):
    """Missing labels (NA, null) are no class, and "Spam"/"spam " are one: the core's rule."""
    path = tmp_path / "messy.csv"
    rows = [("win cash", "spam"), ("hi mum", "ham"), ("call now", "Spam "), ("lunch?", "NA"), ("ok", "null")] * 6
    path.write_text("text,label\n" + "".join(f"{t} {i},{y}\n" for i, (t, y) in enumerate(rows)))
    window.open_dataset(str(path))
    loaded = lambda: window.dataset.table is not None and window.dataset.table.source == str(path)  # noqa: E731
    qtbot.waitUntil(loaded, timeout=10_000)
    assert window.dataset.counts == {"Spam": 12, "ham": 6}  # a tie between spellings: the first in sort order


def test_a_problem_is_marked_on_the_setting_it_names_not_by_its_words(qtbot, window):
    from workbench.core.config import Problem

    column = window.config._column
    about_a_path = Problem("data.source", "dataset file /home/frank/rank-alpha-spam.csv does not exist")
    assert window.config._field_for(about_a_path) is column.data.open_button
    assert window.config._field_for(Problem("lora.rank", "rank must be a whole number")) is column.lora.rank
