"""The Results tab's review of an adapter, driven as a user would: threshold curves and slider,
calibration, evaluating on a labelled file, suspicious labels; every number checked against the
core function the CLI prints, every save checked in the adapter file."""

from __future__ import annotations

import csv
import shutil

import pytest
from test_gui import dataset, dialogs, window  # noqa: F401 (fixtures)

from workbench.core.adapters import read_adapter
from workbench.core.thresholds import metrics_at


def trained(qtbot, window):
    # fp32 for training and classifying: on a CPU where auto picks fp32, auto classify may take int8,
    # whose probabilities differ slightly, and these tests compare the window's scores with the run's.
    window.model_panel.set_precision("fp32")
    window.start_training()
    qtbot.waitUntil(lambda: window.results_tab.metrics is not None, timeout=60_000)
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None, timeout=30_000)
    return window.classify_tab.classifier


def show_view(qtbot, window, view):
    window.tabs.setCurrentWidget(window.results_tab)
    window.results_tab.views.setCurrentWidget(view)


def test_threshold_slider_follows_the_core_and_saves_into_the_adapter(qtbot, window, dialogs):
    classifier = trained(qtbot, window)
    run_metrics = window.results_tab.metrics
    view = window.results_tab.threshold_view
    show_view(qtbot, window, view)
    qtbot.waitUntil(lambda: bool(view.scores), timeout=30_000)
    assert len(view.scores) == sum(run_metrics.support)  # the run's own test rows
    assert "seed" in view.note.text()

    for cut in (0.0, 0.3, 0.5, 0.9, 1.0):
        view.slider.setValue(round(cut * 1000))
        expected = metrics_at(view.scores, view.labels, cut)
        assert view.spin.value() == pytest.approx(cut)
        assert f"F1 <b>{expected.f1:.3f}</b>" in view.figures.text()
        assert f"{expected.confusion[1][0]:,} of" in view.figures.text()  # missed positives
    view.slider.setValue(0)
    assert metrics_at(view.scores, view.labels, 0.0).recall == 1.0  # a cut at 0 flags everything

    view.spin.setValue(0.42)
    assert view.slider.value() == 420
    adapter = window.adapter.path
    view.save_button.click()
    qtbot.waitUntil(lambda: read_adapter(adapter)[1].threshold == pytest.approx(0.42), timeout=10_000)
    qtbot.waitUntil(lambda: classifier.threshold == pytest.approx(0.42), timeout=5_000)  # Classify follows
    assert "0.420" in view.figures.text()
    view.clear_button.click()
    qtbot.waitUntil(lambda: read_adapter(adapter)[1].threshold is None, timeout=10_000)
    qtbot.waitUntil(lambda: classifier.threshold is None, timeout=5_000)
    assert not [c for c in dialogs if c[0] in ("warning", "critical")], dialogs


def test_calibration_fits_on_validation_and_saves_the_temperature(qtbot, window):
    classifier = trained(qtbot, window)
    view = window.results_tab.calibration_view
    show_view(qtbot, window, view)
    qtbot.waitUntil(lambda: view.test is not None, timeout=30_000)
    assert view.fit_button.isEnabled() and not view.save_button.isEnabled()
    assert "ECE" in view.legend.text()
    view.fit_button.click()
    assert view.fitted is not None and "test NLL" in view.figures.text()
    view.save_button.click()
    adapter = window.adapter.path
    qtbot.waitUntil(lambda: read_adapter(adapter)[1].temperature == pytest.approx(view.fitted), timeout=10_000)
    qtbot.waitUntil(lambda: classifier.temperature == pytest.approx(view.fitted), timeout=5_000)
    view.remove_button.click()
    qtbot.waitUntil(lambda: read_adapter(adapter)[1].temperature is None, timeout=10_000)


def test_evaluate_on_a_labelled_file_is_honest_about_which_rows(qtbot, window, dataset, tmp_path):
    trained(qtbot, window)
    run_accuracy = window.results_tab.metrics.accuracy
    tab = window.results_tab
    window.review.evaluate_file(str(dataset))  # the file it trained on: the run's test rows again
    qtbot.waitUntil(lambda: tab.evaluate_button.isEnabled() and "Test accuracy" in tab.headline.text(), timeout=30_000)
    assert tab.metrics.accuracy == run_accuracy and "test split" in tab.headline.text()

    other = tmp_path / "new.csv"
    with other.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([["claim your free cash prize", "spam"], ["lunch at noon?", "ham"], ["win now", "spam"]])
    window.review.evaluate_file(str(other))
    qtbot.waitUntil(lambda: sum(tab.metrics.support) == 3, timeout=30_000)
    assert tab.headline.text().startswith("Accuracy") and "every row of new.csv" in tab.headline.text()


def test_suspicious_labels_rank_export_and_open_in_classify(qtbot, window, dataset, tmp_path, dialogs):
    trained(qtbot, window)
    view = window.results_tab.suspects_view
    window.review.find_suspects()
    qtbot.waitUntil(lambda: bool(view.suspects), timeout=30_000)
    assert len(view.suspects) == 60 - 12  # every training and validation row, not the test rows
    shown = [float(view.table.item(r, 0).text()) for r in range(view.table.rowCount())]
    assert shown == sorted(shown)  # least likely given label first

    out = tmp_path / "suspects.csv"
    window.review.export_suspects(str(out))
    qtbot.waitUntil(out.exists, timeout=10_000)
    assert out.read_text().splitlines()[0].startswith("text,given_label,predicted_label")
    before = dataset.read_bytes()
    window.review.export_suspects(str(dataset))  # never over the data it came from
    qtbot.waitUntil(lambda: bool(dialogs), timeout=10_000)
    assert "same file as" in dialogs[-1][1] and dataset.read_bytes() == before

    view.table.cellDoubleClicked.emit(0, 4)
    assert window.tabs.currentWidget() is window.classify_tab
    assert window.classify_tab.input.toPlainText() == view.table.item(0, 4).text()


def test_without_the_training_file_the_views_say_what_to_open(qtbot, window, dataset, tmp_path):
    trained(qtbot, window)
    adapter = window.adapter.path
    copy = tmp_path / "elsewhere.safetensors"  # outside the run folder: only the open dataset could match
    shutil.copy(adapter, copy)
    dataset.write_text("text,label\nsomething else,ham\nentirely,spam\n")
    window.open_adapter(str(copy))
    qtbot.waitUntil(lambda: window.adapter.path == str(copy), timeout=30_000)
    view = window.results_tab.threshold_view
    show_view(qtbot, window, view)
    qtbot.waitUntil(lambda: "is needed to rebuild" in view.note.text(), timeout=30_000)
    assert not view.save_button.isEnabled() and not view.scores


def test_classifying_a_labelled_file_scores_it_as_eval_does(qtbot, window, dataset, tmp_path, dialogs):
    trained(qtbot, window)
    run_metrics = window.results_tab.metrics
    tab = window.classify_tab
    window.tabs.setCurrentWidget(tab)
    tab.classify_file(str(dataset), str(tmp_path / "out.csv"))  # the training file: its test rows
    qtbot.waitUntil(lambda: "Test accuracy" in tab.file_result.text(), timeout=60_000)
    assert f"{run_metrics.accuracy:.1%}" in tab.file_result.text() and "test split" in tab.file_result.text()
    assert window.tabs.currentWidget() is tab  # the person stays where they are

    unlabelled = tmp_path / "inbox.csv"
    unlabelled.write_text("text\nwin a prize now\nlunch at noon\n")
    qtbot.waitUntil(lambda: window.review._evaluate_job is None, timeout=10_000)
    tab.classify_file(str(unlabelled), str(tmp_path / "inbox_out.csv"))
    qtbot.waitUntil(lambda: "Not scored" in tab.file_result.text(), timeout=60_000)
    assert window.results_tab.metrics is not None and "Test accuracy" in window.results_tab.headline.text()
    assert not dialogs  # no label column is no error


def test_results_tables_sort_numbers_copy_as_tsv_and_export_csv(qtbot, window, tmp_path):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    trained(qtbot, window)
    table = window.results_tab.class_table
    table.sortByColumn(4, Qt.SortOrder.DescendingOrder)  # support, as numbers
    supports = [int(table.item(r, 4).text().replace(",", "")) for r in range(table.rowCount())]
    assert supports == sorted(supports, reverse=True)
    table.selectAll()
    qtbot.keyClick(table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    lines = QGuiApplication.clipboard().text().splitlines()
    assert len(lines) == table.rowCount() and all(len(line.split("\t")) == 5 for line in lines)
    out = tmp_path / "classes.csv"
    assert table.export_csv(str(out))
    header, *rows = out.read_text().splitlines()
    assert header == "class,precision,recall,F1,support"
    metrics = window.results_tab.metrics
    exported = {row.split(",")[0]: float(row.split(",")[3]) for row in rows}
    assert exported == dict(zip(metrics.label_names, metrics.f1))  # exact values, not the rounded text


def test_a_long_suspects_status_never_widens_the_window(qtbot, window):
    """Under X the window grew past the screen when the status line beside the buttons was long."""
    from workbench.core.label_errors import Suspect

    view = window.results_tab.suspects_view
    show_view(qtbot, window, view)
    qtbot.wait(50)
    before = window.minimumSizeHint().width()
    rows = [Suspect(f"message {i}", "ham", "spam", i / 1000, "train", False) for i in range(600)]
    view.set_suspects(rows)
    view.set_idle("a status that quotes a long file name " + "x" * 400)
    qtbot.wait(50)
    assert view.minimumSizeHint().width() < 1000 and window.minimumSizeHint().width() <= before


def test_long_label_names_never_widen_the_decision_views(qtbot, window):
    import torch

    long_name = "spam" * 150  # 600 characters, no space to wrap at
    before = window.minimumSizeHint().width()
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = [0, 1, 1, 0]
    for view in (window.results_tab.threshold_view, window.results_tab.calibration_view):
        show_view(qtbot, window, view)
    window.results_tab.threshold_view.set_scores(probs, labels, ("ham", long_name), None, "rows " + long_name)
    window.results_tab.calibration_view.set_scores((probs, labels), (probs, labels), None, "rows " + long_name)
    window.results_tab.threshold_view.clear("Could not read /data/" + long_name + ".csv")
    qtbot.wait(50)
    assert window.minimumSizeHint().width() <= before
