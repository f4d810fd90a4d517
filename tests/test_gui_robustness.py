"""Bad input and faults in the window: each gets a clear message, nothing is lost, and the window
stays usable (Start works again once the cause is gone).

Dialogs are recorded, never shown (see ``dialogs`` in test_gui); each test asserts the text a
person would read. Faults that need a broken disk, a full GPU or no network are simulated with
monkeypatch at the lowest level the real code goes through (tests run as root, so a read-only
folder would not stop them).
"""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_checkpoint
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox
from test_gui import SPAM, dataset, dialogs, make_window, window, workbench_threads  # noqa: F401 (fixtures)

from workbench.core import fileio
from workbench.core.adapters import AdapterInfo, save_adapter
from workbench.core.config import LoRAConfig
from workbench.core.lora import build_lora_model
from workbench.core.model import load_model_config

LORA = LoRAConfig(rank=4, alpha=8)


def shown(dialogs, kind: str | None = None) -> list[str]:
    return [text for k, text in dialogs if kind is None or k == kind]


def make_adapter(path: Path, checkpoint: Path, labels=("ham", "spam"), base: str | None = None) -> Path:
    """A real adapter file for ``checkpoint`` (random LoRA and head: no training needed)."""
    model = build_lora_model(checkpoint, LORA, len(labels), seed=0)
    info = AdapterInfo(
        base_model=base or str(checkpoint),
        model_config=load_model_config(checkpoint),
        lora=LORA,
        label_names=tuple(labels),
        max_length=64,
    )
    return save_adapter(path, model, info)


def still_usable(qtbot, window, good: Path) -> None:
    """Open a good file again: the counts come back and Start is possible."""
    window.open_dataset(str(good))
    qtbot.waitUntil(
        lambda: window.dataset.table is not None and window.dataset.counts == {"ham": 30, "spam": 30}, timeout=10_000
    )
    assert window.problems() == [] and window.start_button.isEnabled()


# --- datasets ------------------------------------------------------------------------------------


def test_empty_file(qtbot, window, dialogs, dataset, tmp_path):
    window.lora_panel.rank.setValue(12)  # a setting the user made: it must survive
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    window.open_dataset(str(empty))
    qtbot.waitUntil(lambda: bool(shown(dialogs, "warning")), timeout=10_000)
    assert shown(dialogs) == [
        "Could not read the dataset: empty.csv is empty. "
        "Choose a CSV or TSV file with a text column and a label column."
    ]
    assert not window.start_button.isEnabled()
    assert "dataset could not be read: empty.csv is empty" in window.start_button.toolTip()
    assert "empty.csv is empty" in window.data_tab.caption.text()
    assert window.lora_panel.rank.value() == 12
    still_usable(qtbot, window, dataset)
    assert window.lora_panel.rank.value() == 12


def test_file_with_one_class(qtbot, window, dialogs, dataset, tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("label,text\n" + "".join(f"spam,{SPAM[i % 4]} {i}\n" for i in range(20)), encoding="utf-8")
    window.open_dataset(str(one))
    qtbot.waitUntil(lambda: window.dataset.table is not None and window.dataset.counts == {"spam": 20}, timeout=10_000)
    message = "the label column has only one class; a classifier needs at least two"
    assert message in window.column.problems.text()  # shown under the settings, before any click
    assert message in window.start_button.toolTip() and not window.start_button.isEnabled()
    assert message in window.data_panel.label_column.toolTip()  # and on the field to change
    window.start_training()  # Ctrl+Enter while disabled: nothing starts
    assert not window.is_training() and dialogs == []
    still_usable(qtbot, window, dataset)


def test_binary_file_named_csv(qtbot, window, dialogs, dataset, tmp_path):
    binary = tmp_path / "photo.csv"
    binary.write_bytes(bytes(range(256)) * 64)
    window.open_dataset(str(binary))
    qtbot.waitUntil(lambda: bool(shown(dialogs, "warning")), timeout=10_000)
    assert shown(dialogs) == [
        "Could not read the dataset: photo.csv looks like a binary file, not CSV/TSV text. If it is a spreadsheet, "
        "export it as CSV (comma- or tab-separated text) first; if it is text, save it as UTF-8."
    ]
    assert not window.start_button.isEnabled()
    still_usable(qtbot, window, dataset)


def drop(window, path: Path) -> None:
    """What a drag from the file manager delivers to the window."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)


def test_file_that_does_not_exist(qtbot, window, dialogs, dataset, tmp_path):
    gone = tmp_path / "gone.csv"
    gone.write_text("label,text\nham,hi\nspam,win\n", encoding="utf-8")
    gone.unlink()  # dropped, then deleted before it was read
    drop(window, gone)
    qtbot.waitUntil(lambda: bool(shown(dialogs, "warning")), timeout=10_000)
    assert shown(dialogs) == [
        f"Could not read the dataset: Dataset file {gone} does not exist. Check the path, or choose another file."
    ]
    assert not window.start_button.isEnabled()
    assert f"dataset file {gone} does not exist" in window.start_button.toolTip()
    still_usable(qtbot, window, dataset)


def test_file_deleted_after_reading_is_caught_at_start(qtbot, window, dialogs, tmp_path, dataset):
    copy = tmp_path / "copy.csv"
    copy.write_bytes(dataset.read_bytes())
    window.open_dataset(str(copy))
    qtbot.waitUntil(
        lambda: window.dataset.table is not None and window.dataset.table.source == str(copy), timeout=10_000
    )
    copy.unlink()
    window.start_button.click()  # still enabled: nothing has looked at the disk since
    assert not window.is_training()
    assert f"dataset file {copy} does not exist" in window.column.problems.text()
    assert not window.start_button.isEnabled()
    still_usable(qtbot, window, dataset)


# --- adapters ------------------------------------------------------------------------------------


def test_truncated_adapter(qtbot, window, dialogs, tiny_checkpoint, tmp_path):
    good = make_adapter(tmp_path / "good.safetensors", tiny_checkpoint)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    window.open_adapter(str(cut))
    qtbot.waitUntil(lambda: bool(shown(dialogs, "critical")), timeout=10_000)
    assert shown(dialogs)[0].startswith(
        "Could not open the adapter: cut.safetensors is corrupt or truncated: not a readable safetensors file"
    )
    assert window.adapter.path is None and window.isVisible()
    window.open_adapter(str(good))  # still usable: a good adapter loads
    qtbot.waitUntil(lambda: window.adapter.path == str(good), timeout=30_000)


class _Sentinel:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (Path.touch, (self.marker,))


def test_pickle_adapter_is_refused_unopened(qtbot, window, dialogs, tmp_path):
    marker = tmp_path / "unpickled"
    evil = tmp_path / "adapter_model.pth"
    evil.write_bytes(pickle.dumps(_Sentinel(marker)))
    drop(window, evil)
    qtbot.waitUntil(lambda: bool(shown(dialogs, "critical")), timeout=10_000)
    assert shown(dialogs) == [
        "Could not open the adapter: adapter_model.pth looks like a PyTorch pickle. Pickles can run code when "
        "opened, so they are never loaded; use a .safetensors adapter."
    ]
    assert not marker.exists()  # never unpickled
    assert window.adapter.path is None


@pytest.fixture
def other_checkpoint(tmp_path) -> Path:
    return write_tiny_checkpoint(tmp_path / "narrow-gpt2", n_layer=1, n_embd=32, n_head=2)


def test_adapter_for_another_base_offers_to_switch(qtbot, window, dialogs, tiny_checkpoint, other_checkpoint, tmp_path):
    adapter = make_adapter(tmp_path / "made-for-tiny.safetensors", tiny_checkpoint)
    window.set_model_folder(str(other_checkpoint))
    window.open_adapter(str(adapter))
    qtbot.waitUntil(lambda: window.adapter.path == str(adapter), timeout=30_000)
    assert shown(dialogs, "question") == [
        f"Adapter made for another model: made-for-tiny.safetensors was trained on {tiny_checkpoint} "
        f"(2 layers, width 64), but {other_checkpoint} is selected.\n\nSwitch the model to {tiny_checkpoint}?"
    ]
    assert window.model_panel.model() == str(tiny_checkpoint)  # answered Yes: switched, then loaded


def test_adapter_for_another_base_declined_is_refused(
    qtbot, window, dialogs, tiny_checkpoint, other_checkpoint, tmp_path, monkeypatch
):
    adapter = make_adapter(tmp_path / "made-for-tiny.safetensors", tiny_checkpoint)
    monkeypatch.setattr(
        QMessageBox,
        "question",
        staticmethod(lambda *a, **k: (dialogs.append(("question", a[2])), QMessageBox.StandardButton.No)[1]),
    )
    window.set_model_folder(str(other_checkpoint))
    window.open_adapter(str(adapter))
    qtbot.waitUntil(lambda: bool(shown(dialogs, "critical")), timeout=30_000)
    assert shown(dialogs, "critical") == [
        f"Could not open the adapter: This adapter was made for {tiny_checkpoint} (2 layers, width 64), "
        f"not for {other_checkpoint} (1 layers, width 32)"
    ]
    assert window.model_panel.model() == str(other_checkpoint) and window.adapter.path is None


def test_adapter_whose_base_is_gone_is_refused_on_the_wrong_model(
    qtbot, window, dialogs, tiny_checkpoint, other_checkpoint, tmp_path
):
    adapter = make_adapter(tmp_path / "orphan.safetensors", tiny_checkpoint, base=str(tmp_path / "deleted-model"))
    window.set_model_folder(str(other_checkpoint))
    window.open_adapter(str(adapter))
    qtbot.waitUntil(lambda: bool(shown(dialogs, "critical")), timeout=30_000)
    assert shown(dialogs) == [
        f"Could not open the adapter: This adapter was made for {tmp_path / 'deleted-model'} (2 layers, width 64), "
        f"not for {other_checkpoint} (1 layers, width 32)"
    ]


def test_adapter_with_another_label_set_says_so(qtbot, window, dialogs, tiny_checkpoint, tmp_path):
    adapter = make_adapter(tmp_path / "topics.safetensors", tiny_checkpoint, labels=("sport", "politics", "tech"))
    window.open_adapter(str(adapter))
    qtbot.waitUntil(lambda: window.adapter.path == str(adapter), timeout=30_000)
    note = (
        "The labels of messages.csv (ham, spam) do not match the adapter's (sport, politics, tech): the adapter "
        "never learned ham, spam. Choose the dataset the adapter was trained for, or the right label column. "
        "Classify predicts the adapter's own labels (sport, politics, tech)."
    )
    assert note in window.classify_tab.adapter_label.text()
    assert window.statusBar().currentMessage() == note
    assert set(window.classify_tab.bars.bars) == {"sport", "politics", "tech"}  # it still classifies
    assert dialogs == []  # a note, not an error: nothing is wrong with the adapter


@pytest.mark.parametrize("fault", ["read-only folder", "disk full"])
def test_saving_the_adapter_where_it_cannot_be_written(
    qtbot, window, dialogs, tiny_checkpoint, tmp_path, monkeypatch, fault
):

    (tmp_path / "run").mkdir()
    run_adapter = make_adapter(tmp_path / "run" / "adapter.safetensors", tiny_checkpoint)
    window.open_adapter(str(run_adapter))
    qtbot.waitUntil(lambda: window.adapter.path == str(run_adapter), timeout=30_000)
    original = run_adapter.read_bytes()
    target = tmp_path / "out" / "mine.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"the user's earlier adapter")

    if fault == "read-only folder":

        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
        reason = "Permission denied"
    else:

        def disk_full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(fileio.os, "fsync", disk_full)
        reason = "No space left on device"

    window.save_adapter(str(target))
    qtbot.waitUntil(lambda: bool(shown(dialogs, "warning")), timeout=10_000)
    assert shown(dialogs) == [
        f"Could not save the adapter: Could not save {target}: {reason}. Any existing file there is unchanged. "
        f"The trained adapter is kept at {run_adapter}."
    ]
    assert run_adapter.read_bytes() == original  # the run's adapter is still there
    assert target.read_bytes() == b"the user's earlier adapter"
    assert sorted(p.name for p in target.parent.iterdir()) == ["mine.safetensors"]  # no temp files left
    monkeypatch.undo()
    window.save_adapter(str(target))  # the fault gone, saving works
    qtbot.waitUntil(lambda: target.read_bytes() == original, timeout=10_000)


# --- faults during training ----------------------------------------------------------------------


def test_out_of_memory_offers_a_retry_at_half_the_batch(qtbot, window, dialogs, monkeypatch):
    from workbench.core import training

    real_step, real_train = training.train_step, training.train
    configs, failures = [], []

    def step_that_runs_out(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(*args, **kwargs)

    def recording_train(cfg, **kwargs):
        configs.append(cfg)
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(training, "train_step", step_that_runs_out)
    monkeypatch.setattr(training, "train", recording_train)
    window.training_panel.max_steps.setValue(2)
    window.start_training()
    qtbot.waitUntil(lambda: len(configs) == 2 and not window.is_training(), timeout=60_000)
    assert shown(dialogs) == [
        "Out of memory: Out of memory with batch size 8. Try a smaller batch (e.g. 4 with gradient accumulation 2, "
        "the same effective batch), a smaller max length, a lower LoRA rank (now 4), or a smaller model.\n\n"
        "Retry with batch size 4 and gradient accumulation ×2 (2)? The effective batch stays the same."
    ]
    first, retry = configs
    assert (first.batch_size, first.grad_accum) == (8, 1)
    assert (retry.batch_size, retry.grad_accum) == (4, 2)
    assert retry.with_changes(batch_size=8, grad_accum=1) == first  # nothing else changed
    assert (window.training_panel.batch_size.value(), window.training_panel.grad_accum.value()) == (4, 2)
    assert window.results_tab.metrics is not None  # the retry trained to the end
    assert window.start_button.isEnabled()


def test_model_not_downloaded_while_offline(qtbot, window, dialogs, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    window.model_panel.set_model("gpt2")
    advice = "offline mode is on: choose a model folder"
    assert not window.start_button.isEnabled() and advice in window.start_button.toolTip()
    assert advice in window.column.problems.text()
    # Download would fail: it is off, and says why.
    assert not window.model_panel.download_button.isEnabled()
    assert "HF_HUB_OFFLINE" in window.model_panel.download_button.toolTip()


def test_model_not_downloaded_and_no_network(qtbot, window, dialogs, monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: connection refused
    window.model_panel.set_model("gpt2")
    window.start_button.click()
    qtbot.waitUntil(lambda: bool(shown(dialogs, "warning")) and not window.is_training(), timeout=30_000)
    (text,) = shown(dialogs)
    assert text.startswith(
        "Training failed: GPT-2 model 'gpt2' (openai-community/gpt2) is not downloaded yet, and the Hugging Face "
        "Hub could not be reached"
    )
    assert "Either run `workbench download gpt2` while online, or use a local folder" in text
    window.set_model_folder(str(tiny_checkpoint))  # the advice works: a local folder trains
    assert window.start_button.isEnabled()


def test_closing_mid_training_keeps_the_run_resumable(qtbot, window, dialogs, tmp_path, tiny_checkpoint, dataset):
    from workbench.core.runs import list_runs
    from workbench.gui.runs_tab import run_choices

    window.training_panel.epochs.setValue(500)
    window.start_training()
    qtbot.waitUntil(lambda: window.training_tab.loss_plot.points("step") > 0, timeout=30_000)
    assert window.close()
    assert shown(dialogs, "question") == [
        "Training is running: Stop the training and quit? The adapter trained so far is kept in the run folder."
    ]
    assert not window.pool.running() and workbench_threads() == []
    (run,) = list_runs()
    assert run.adapter_path.is_file() and run.resume_path.is_file()
    state = run_choices(run, run.events())
    assert state.summary == "stopped early" and state.can_resume

    again = make_window(qtbot, tmp_path, tiny_checkpoint, dataset)  # the next session lists it, resumable
    qtbot.waitUntil(lambda: again.runs_tab.run_count() == 1, timeout=10_000)  # read on a worker
    again.runs_tab.select_row(0)
    qtbot.waitUntil(again.runs_tab.resume_button.isEnabled, timeout=10_000)
    again.pool.stop_all()
    assert again.pool.wait_all(10_000)


@pytest.mark.parametrize("victim", ["the run's dataset", "the base weights"])
def test_saving_the_adapter_never_replaces_what_it_came_from(qtbot, window, dialogs, tiny_checkpoint, tmp_path, victim):
    """The window's Save adapter goes through the same output-vs-input check as the CLI."""
    from workbench.core.config import DataConfig, TrainConfig
    from workbench.core.runs import RunFolder

    data = tmp_path / "victim.csv"
    data.write_text("text,label\nwin cash,spam\nhi mum,ham\n")
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.save_config(TrainConfig(model=str(tiny_checkpoint), data=DataConfig(source=str(data))))
    adapter = make_adapter(run.path / "adapter.safetensors", tiny_checkpoint)
    window.open_adapter(str(adapter))
    qtbot.waitUntil(lambda: window.adapter.path == str(adapter), timeout=30_000)
    target = data if victim == "the run's dataset" else tiny_checkpoint / "model.safetensors"
    target = target.with_suffix(".safetensors") if victim == "the run's dataset" else target
    if victim == "the run's dataset":  # the window adds .safetensors: name the dataset so
        data.rename(target)
        run.save_config(TrainConfig(model=str(tiny_checkpoint), data=DataConfig(source=str(target))))
    before = target.read_bytes()
    window.save_adapter(str(target))
    qtbot.waitUntil(lambda: bool(shown(dialogs, "warning")), timeout=10_000)
    assert "same file as" in shown(dialogs, "warning")[0]
    assert target.read_bytes() == before
