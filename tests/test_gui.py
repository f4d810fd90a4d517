"""The window driven as a user would, offscreen, with a tiny GPT-2 in the real checkpoint format.

Dialogs are replaced by recorders (a modal box would block the test); everything else is the
real thing: the worker thread, the core trainer, the adapter file, the classifier.
"""

from __future__ import annotations

import csv
import html
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QMessageBox

from workbench.gui.main_window import MainWindow

SPAM = ["win a cash prize now", "free prize claim your cash", "you won cash call now", "claim free win prize"]
HAM = ["see you at lunch", "are we still on for lunch", "running late see you soon", "call me after lunch ok"]


@pytest.fixture
def dataset(tmp_path) -> Path:
    """60 distinct messages in two classes that single words separate."""
    path = tmp_path / "messages.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "text"])
        for i in range(30):
            writer.writerow(["spam", f"{SPAM[i % 4]} {i}"])
            writer.writerow(["ham", f"{HAM[i % 4]} {i}"])
    return path


def as_shown(text: str) -> str:
    """What a person reads in a message box given ``text`` (gui/dialogs.py escapes every text and
    marks it as rich text: <qt>…</qt>, <br> for a new line)."""
    if text.startswith("<qt>") and text.endswith("</qt>"):
        text = html.unescape(text[4:-5].replace("<br>", "\n"))
    return text


@pytest.fixture
def dialogs(monkeypatch):
    """Record message boxes instead of showing them; questions are answered Yes."""
    calls: list[tuple[str, str]] = []

    def recorder(kind, answer=None):
        def show(_parent, title, text, *args, **kwargs):
            calls.append((kind, f"{title}: {as_shown(text)}"))
            return answer

        return staticmethod(show)

    monkeypatch.setattr(QMessageBox, "warning", recorder("warning"))
    monkeypatch.setattr(QMessageBox, "critical", recorder("critical"))
    monkeypatch.setattr(QMessageBox, "information", recorder("information"))
    monkeypatch.setattr(QMessageBox, "question", recorder("question", QMessageBox.StandardButton.Yes))
    return calls


def make_window(qtbot, tmp_path, tiny_checkpoint, dataset, **training) -> MainWindow:
    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    window.set_model_folder(str(tiny_checkpoint))
    window.open_dataset(str(dataset))
    qtbot.waitUntil(lambda: window.dataset.table is not None and bool(window.dataset.counts), timeout=10_000)
    window.model_panel.set_device("cpu")
    t = window.training_panel
    t.epochs.setValue(training.get("epochs", 2))
    t.batch_size.setValue(8)
    t.eval_every.setValue(training.get("eval_every", 2))
    t.eval_batches.setValue(1)
    t.lr.setText(training.get("lr", "3e-3"))
    window.lora_panel.rank.setValue(4)
    return window


@pytest.fixture
def window(qtbot, tmp_path, tiny_checkpoint, dataset, dialogs):
    w = make_window(qtbot, tmp_path, tiny_checkpoint, dataset)
    yield w
    w.pool.stop_all()
    assert w.pool.wait_all(10_000)


def workbench_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("workbench") and t.is_alive()]


def test_choosing_model_and_csv_fills_the_panels(window):
    assert window.problems() == []
    assert window.dataset.counts == {"ham": 30, "spam": 30}
    assert "ham 30" in window.data_panel.counts_label.text()
    assert window.start_button.isEnabled()
    assert "trainable" in window.lora_panel.summary.text()
    assert window.data_tab.model.rowCount() == 60


def test_bad_settings_disable_start_with_reasons(window):
    for box in window.lora_panel.targets.values():
        box.setChecked(False)
    assert not window.start_button.isEnabled()
    assert "target" in window.start_button.toolTip()
    assert window.lora_panel.targets_box.property("problems")  # marked next to the field
    window.lora_panel.targets["qkv"].setChecked(True)
    window.training_panel.lr.setText("fast")
    assert not window.start_button.isEnabled()
    assert "learning rate" in window.training_panel.lr.toolTip()
    window.training_panel.lr.setText("1e-3")
    assert window.start_button.isEnabled()


def test_trainable_count_updates_live(window):
    before = window.lora_panel.summary.text()
    window.lora_panel.rank.setValue(32)
    after = window.lora_panel.summary.text()
    assert before != after and "adapter" in after


def test_start_plots_points_and_stop_ends_quickly(qtbot, window):
    window.training_panel.epochs.setValue(500)  # far longer than the test: Stop must end it
    window.training_panel.eval_every.setValue(1)
    window.start_button.click()
    assert window.is_training() and not window.start_button.isEnabled()
    plots = window.training_tab
    qtbot.waitUntil(
        lambda: plots.loss_plot.points("step") > 0 and plots.accuracy_plot.points("val") > 0, timeout=30_000
    )
    started = time.perf_counter()
    window.stop_button.click()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=10_000)
    elapsed = time.perf_counter() - started
    print(f"\nstop took {elapsed * 1000:.0f} ms")
    assert elapsed < 5  # "within one step"; generous for a shared machine
    assert "Stopped" in plots.progress.format()
    # Still usable: settings editable, Start possible again.
    assert window.start_button.isEnabled() and window.lora_panel.isEnabled()
    window.lora_panel.rank.setValue(8)
    assert window.lora_panel.rank.value() == 8


def test_full_run_results_classify_save_and_reopen(qtbot, window, tmp_path, dialogs):
    window.start_training()
    qtbot.waitUntil(lambda: window.results_tab.metrics is not None, timeout=60_000)
    metrics = window.results_tab.metrics
    assert 0.0 <= metrics.accuracy <= 1.0
    matrix = window.results_tab.confusion.matrix()
    assert len(matrix) == 2 and sum(map(sum, matrix)) == sum(metrics.support) == 12
    assert window.results_tab.class_table.rowCount() == 2
    assert "Test accuracy" in window.results_tab.headline.text()

    # The trained adapter is loaded for classifying as you type.
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None, timeout=30_000)
    window.tabs.setCurrentWidget(window.classify_tab)
    window.classify_tab.input.setPlainText("win a cash prize now")
    qtbot.waitUntil(lambda: window.classify_tab.result_label.text().split(" ")[0] in ("ham", "spam"), timeout=10_000)
    bars = window.classify_tab.bars.bars
    assert set(bars) == {"ham", "spam"} and sum(b.value() for b in bars.values()) == pytest.approx(1000, abs=2)

    # Classify a whole file.
    out = tmp_path / "predicted.csv"
    window.classify_tab.classify_file(str(window.data_panel.source()), str(out))
    qtbot.waitUntil(lambda: not window.classify_tab.is_busy() and out.exists(), timeout=20_000)
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert "predicted" in header and "p_spam" in header

    # Save, then reopen the adapter.
    saved = tmp_path / "mine.safetensors"
    window.save_adapter(str(saved))
    qtbot.waitUntil(saved.exists, timeout=10_000)
    window.adapter.path = None
    window.open_adapter(str(saved))
    qtbot.waitUntil(lambda: window.adapter.path == str(saved), timeout=30_000)
    assert "mine.safetensors" in window.adapter_status.text()
    assert "labels: ham, spam" in window.classify_tab.adapter_label.text()

    # Export for PEFT.
    peft_dir = tmp_path / "peft"
    peft_dir.mkdir()
    window.export_peft(str(peft_dir))
    qtbot.waitUntil(lambda: (peft_dir / "adapter_config.json").exists(), timeout=20_000)

    # The run is listed under Runs, and reopening it restores the curves and the results.
    refreshed(qtbot, window.runs_tab)
    assert window.runs_tab.run_count() >= 1
    window.runs_tab.select_row(0)
    run = window.runs_tab.selected_run()
    window.results_tab.clear()
    window.show_run(run, run.events())
    assert window.results_tab.metrics is not None
    assert window.training_tab.accuracy_plot._series["val"][1].n > 0
    assert not [c for c in dialogs if c[0] in ("warning", "critical")], dialogs


def test_a_broken_adapter_gives_a_clear_message(qtbot, window, tmp_path, dialogs):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    window.open_adapter(str(bad))
    qtbot.waitUntil(lambda: any(kind == "critical" for kind, _ in dialogs), timeout=10_000)
    assert "bad.safetensors" in dialogs[-1][1]
    assert window.isVisible() and window.adapter.path is None


def test_closing_during_training_stops_cleanly(qtbot, window, dialogs):
    window.training_panel.epochs.setValue(500)
    window.start_training()
    qtbot.waitUntil(lambda: window.training_tab.loss_plot.points("step") > 0, timeout=30_000)
    threads = [job.thread for job in window.pool.jobs()]
    assert window.close()
    assert any(kind == "question" for kind, _ in dialogs)  # it asked first
    assert not window.isVisible()
    assert all(not t.isRunning() for t in threads)
    assert not window.pool.running()
    assert workbench_threads() == []


def test_gui_stays_responsive_while_training(qtbot, window):
    window.training_panel.epochs.setValue(500)
    window.training_panel.eval_every.setValue(1)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    window.start_training()
    qtbot.waitUntil(lambda: window.training_tab.loss_plot.points("step") > 0, timeout=30_000)
    last[0] = time.perf_counter()
    timer.start()
    qtbot.waitUntil(lambda: len(gaps) >= 200 and window.training_tab.loss_plot.points("step") > 20, timeout=30_000)
    timer.stop()
    window.stop_training()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=10_000)
    worst = max(gaps) * 1000
    print(
        f"\nmax event-loop gap during training: {worst:.1f} ms over {len(gaps)} ticks "
        f"(median {sorted(gaps)[len(gaps) // 2] * 1000:.1f} ms)"
    )
    assert worst < 500  # the target is < 100 ms; the bound is loose because CI machines are noisy


def test_settings_are_remembered(qtbot, tmp_path, tiny_checkpoint, dataset, dialogs):
    first = make_window(qtbot, tmp_path, tiny_checkpoint, dataset)
    first.lora_panel.rank.setValue(12)
    first.training_panel.epochs.setValue(7)
    first.close()
    second = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    assert second.lora_panel.rank.value() == 12
    assert second.training_panel.epochs.value() == 7
    assert second.model_panel.model() == str(tiny_checkpoint)
    assert second.data_panel.source() == str(dataset)
    qtbot.waitUntil(lambda: second.dataset.table is not None, timeout=10_000)
    second.pool.stop_all()
    assert second.pool.wait_all(5000)


def test_dropping_files_routes_by_type(qtbot, window, dataset, tmp_path):
    other = tmp_path / "other.tsv"
    other.write_text(
        "text\tlabel\n" + "".join(f"hello {i}\t{'a' if i % 2 else 'b'}\n" for i in range(10)), encoding="utf-8"
    )
    window.open_path(str(other))
    qtbot.waitUntil(
        lambda: window.dataset.table is not None and window.dataset.table.source == str(other), timeout=10_000
    )
    assert window.dataset.counts == {"a": 5, "b": 5}


def test_worker_and_core_layers_import_no_widgets():
    import sys

    import workbench.worker

    assert "PySide6.QtWidgets" not in {name for name in sys.modules if name.startswith("workbench.core")}
    assert not hasattr(workbench.worker, "QApplication")


def test_menus_and_about(window, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "about", staticmethod(lambda _parent, title, text: shown.append(text)))
    window._about()
    assert shown and "PyTorch" in shown[0] and "Qt" in shown[0]
    assert window.start_action.shortcut().toString() == "Ctrl+Return"
    assert window.save_adapter_action.shortcut().toString() == "Ctrl+S"
    assert window.open_dataset_action.shortcut().toString() == "Ctrl+O"
    assert not window.save_adapter_action.isEnabled()  # nothing trained or opened yet
    assert not window.export_peft_action.isEnabled()
    assert not window.windowIcon().isNull()


def test_model_download_shows_progress(qtbot, window, monkeypatch, tiny_checkpoint):
    from workbench.core import hub

    seen = []

    def fake_resolve(model, progress=None, stop=None):
        for done in range(0, 101, 20):
            progress(done * 1000, 100_000, f"Downloading model.safetensors of {model}")
            time.sleep(0.06)  # slower than the worker's 20-per-second progress throttle
        return tiny_checkpoint

    monkeypatch.setattr(hub, "resolve_checkpoint", fake_resolve)
    window.model_panel.set_model("gpt2")
    window.model_panel.download_progress.valueChanged.connect(seen.append)
    window.model_panel.download_button.click()
    assert window.model_panel.download_progress.isVisibleTo(window)
    qtbot.waitUntil(lambda: window.model.download_job is None, timeout=10_000)
    assert seen and max(seen) == 1000
    assert not window.model_panel.download_progress.isVisibleTo(window)


def test_out_of_memory_offers_a_smaller_batch(qtbot, window, monkeypatch, dialogs):
    from workbench.core import training
    from workbench.core.events import TrainingFailed

    configs = []

    def fake_train(cfg, stop=None, resume=None):
        configs.append(cfg)
        if len(configs) == 1:
            yield TrainingFailed("Out of memory with batch size 8.", kind="oom", retry_batch_size=4)

    monkeypatch.setattr(training, "train", fake_train)
    window.start_training()
    qtbot.waitUntil(lambda: len(configs) == 2 and not window.is_training(), timeout=10_000)
    assert any(kind == "question" and "batch size 4" in text for kind, text in dialogs)
    assert (configs[1].batch_size, configs[1].grad_accum) == (4, 2)


# --- Runs: compare, re-run, resume, extend -------------------------------------------------------


def fake_run(cfg, points: list[tuple[int, float, float]], finished: bool = True):
    """A run folder with a recorded history (no training): (examples seen, val loss, val accuracy)."""
    from workbench.core.events import Evaluated, RunStarted, TrainingFinished
    from workbench.core.runs import RunFolder

    run = RunFolder.create(cfg)
    run.record(
        RunStarted(
            str(run.path),
            "CPU",
            "fp32",
            ("ham", "spam"),
            40,
            6,
            12,
            0,
            64,
            cfg.epochs,
            5,
            5 * cfg.epochs,
            1000,
            100_000,
        )
    )
    for i, (seen, loss, acc) in enumerate(points, start=1):
        run.record(Evaluated(i, 1, seen, loss, loss, acc, acc))
    if finished:
        run.record(TrainingFinished(False, len(points), points[-1][0], 1.0, str(run.path), str(run.adapter_path)))
    return run


def refreshed(qtbot, tab) -> None:
    """Read the run table again and wait for it (it is read on a worker)."""
    with qtbot.waitSignal(tab.rows_loaded, timeout=10_000):
        tab.refresh()


def select_runs(window, *runs) -> None:
    tab = window.runs_tab
    tab.select_runs([run.path for run in runs])
    assert {r.path for r in tab.selected_runs()} == {run.path for run in runs}


def test_runs_overlay_two_runs_with_a_legend(qtbot, window):
    from workbench.core.config import TrainConfig

    first = fake_run(TrainConfig(), [(8, 0.7, 0.5), (16, 0.5, 0.7), (24, 0.3, 0.9)])
    second = fake_run(TrainConfig(lr=1e-3), [(8, 0.69, 0.55), (16, 0.6, 0.6)])
    refreshed(qtbot, window.runs_tab)
    select_runs(window, first, second)
    assert window.runs_tab.compare_button.isEnabled()
    assert "(2)" in window.runs_tab.compare_button.text()
    window.runs_tab.compare_button.click()
    comparison = window.runs_tab.comparison
    qtbot.waitUntil(lambda: len(comparison.curves("loss")) == 2, timeout=10_000)
    loss, accuracy = comparison.curves("loss"), comparison.curves("accuracy")
    # The legend names each run by its folder, less the date they share: "14:38:31 gpt2_sms-spam_2".
    one, two = (f"{run.path.name[11:19].replace('-', ':')} {run.path.name[20:]}" for run in (first, second))
    assert set(loss) == set(accuracy) == {one, two}
    assert loss[one][1] == 3 and loss[two][1] == 2
    assert loss[one][0] != loss[two][0]  # distinct colours
    assert loss[one][0] == accuracy[one][0]  # one colour per run
    assert sorted(comparison.legend.names()) == sorted(loss)
    assert first.path.name in comparison.caption.toolTip()  # the full folder names


def test_rerun_puts_a_runs_settings_back(qtbot, window):
    from workbench.core.config import LoRAConfig

    cfg = window.build_config()[0].with_changes(lora=LoRAConfig(rank=6, alpha=12.0), epochs=9, batch_size=5)
    run = fake_run(cfg, [(8, 0.7, 0.5)])
    refreshed(qtbot, window.runs_tab)
    select_runs(window, run)
    window.runs_tab.rerun_button.click()
    assert window.lora_panel.rank.value() == 6 and window.lora_panel.alpha.value() == 12.0
    assert window.training_panel.epochs.value() == 9 and window.training_panel.batch_size.value() == 5


def run_events(window) -> list:
    from workbench.core.runs import list_runs

    return list_runs()[0].events()


def test_resume_a_stopped_run_continues_its_curves(qtbot, window):
    from workbench.core.events import Evaluated, RunStarted, TrainingFinished
    from workbench.core.runs import list_runs

    window.training_panel.epochs.setValue(3)
    window.training_panel.eval_every.setValue(1)
    window.start_training()
    # Stop after the first epoch's checkpoint: the run is then resumable.
    qtbot.waitUntil(lambda: "Epoch 1 done" in window.training_tab.log_text(), timeout=30_000)
    window.stop_training()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=10_000)
    before = run_events(window)
    assert isinstance(before[-1], TrainingFinished) and before[-1].stopped
    seen_before = [e.examples_seen for e in before if isinstance(e, Evaluated) and not e.full]

    tab = window.runs_tab
    refreshed(qtbot, tab)
    tab.select_row(0)
    qtbot.waitUntil(tab.resume_button.isEnabled, timeout=10_000)
    assert not tab.extend_button.isEnabled()  # stopped, not finished
    assert "resumed" in tab.details.text()
    tab.resume_button.click()
    assert window.is_training()
    # The recorded curve is back before the first new step arrives.
    assert window.training_tab.loss_plot._series["val"][1].n >= len(seen_before)
    qtbot.waitUntil(lambda: not window.is_training(), timeout=60_000)
    assert window.results_tab.metrics is not None  # it finished this time, with test results

    after = run_events(window)
    resumed = [e for e in after if isinstance(e, RunStarted)][-1]
    assert resumed.start_step == before[-1].step > 0
    seen_after = [e.examples_seen for e in after if isinstance(e, Evaluated) and not e.full]
    assert seen_after[: len(seen_before)] == seen_before
    assert seen_after == sorted(seen_after)  # the curve continues, not restarts
    assert isinstance(after[-1], TrainingFinished) and not after[-1].stopped
    assert len(list_runs()) == 1  # the same folder, no new run


def test_train_more_epochs_extends_a_finished_run(qtbot, window):
    from workbench.core.events import RunStarted, TrainingFinished
    from workbench.core.runs import list_runs

    window.training_panel.epochs.setValue(1)
    window.start_training()
    qtbot.waitUntil(lambda: not window.is_training() and window.results_tab.metrics is not None, timeout=60_000)
    first = run_events(window)[-1]
    assert isinstance(first, TrainingFinished) and not first.stopped

    tab = window.runs_tab
    qtbot.waitUntil(lambda: tab.run_count() == 1, timeout=10_000)
    tab.select_row(0)
    qtbot.waitUntil(tab.extend_button.isEnabled, timeout=10_000)
    assert not tab.resume_button.isEnabled()
    tab.more_epochs.setValue(2)
    tab.extend_button.click()
    qtbot.waitUntil(lambda: not window.is_training(), timeout=60_000)
    events = run_events(window)
    last = events[-1]
    assert isinstance(last, TrainingFinished) and not last.stopped
    assert last.step == 3 * first.step and last.examples_seen == 3 * first.examples_seen
    assert [e.epochs for e in events if isinstance(e, RunStarted)] == [1, 3]
    assert list_runs()[0].config().epochs == 3
    assert len(list_runs()) == 1
    # The adapter it had after one epoch is kept beside the new one, and the details say so.
    assert (list_runs()[0].path / "adapter-epoch1.safetensors").is_file()
    refreshed(qtbot, tab)
    tab.select_row(0)
    assert "adapter-epoch1.safetensors" in tab.details.text()


# --- the memory estimate -------------------------------------------------------------------------


def test_memory_estimate_is_shown_against_the_device(window, monkeypatch):
    from workbench.core.memory import DeviceMemory
    from workbench.gui.controllers import config

    label = window.column.memory
    assert label.text().startswith("est. ") and "free RAM" in label.text()
    assert window.memory_status.text() == label.text()  # status bar too
    assert "activations" in label.toolTip() and "AdamW" in label.toolTip()
    assert window.config.memory_estimate.seq_len < 64  # from the longest text, not the model's 256 positions
    assert "⚠" not in label.text()

    monkeypatch.setattr(config, "device_memory", lambda device: DeviceMemory(1_000_000, "GPU memory"))
    window.training_panel.batch_size.setValue(16)  # any change re-estimates
    assert label.text().startswith("⚠") and "lower the batch size" in label.text()
    assert "#d9534f" in label.styleSheet() and "#d9534f" in window.memory_status.styleSheet()
    before = window.config.memory_estimate.activations
    window.training_panel.batch_size.setValue(32)
    assert window.config.memory_estimate.activations == 2 * before


def test_a_very_large_file_offers_a_sample_that_training_uses(window, qtbot, dataset, dialogs, monkeypatch):
    from workbench.gui.controllers import dataset as dataset_controller

    monkeypatch.setattr(dataset_controller, "LARGE_FILE_BYTES", 100)  # the 60-row test file counts as large
    monkeypatch.setattr(dataset_controller, "SAMPLE_ROWS", 40)
    window.open_dataset(str(dataset))
    assert any(kind == "question" and "first 40 rows" in text for kind, text in dialogs)
    qtbot.waitUntil(lambda: window.dataset.table is not None and len(window.dataset.table.frame) == 40, timeout=10_000)
    cfg, _ = window.build_config()
    assert cfg.data.max_rows == 40


def test_controllers_hold_no_widgets_of_their_own(window):
    """The window lays out every widget; a controller only drives them (plain QObjects)."""
    from PySide6.QtCore import QObject
    from PySide6.QtWidgets import QWidget

    controllers = (window.dataset, window.model, window.config, window.run, window.adapter)
    for controller in controllers:
        assert isinstance(controller, QObject) and not isinstance(controller, QWidget)
        assert controller.findChildren(QWidget) == []
