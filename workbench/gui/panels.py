"""The left column: one numbered group per decision, in the order a person makes them.

1 Data → 2 Model → 3 LoRA → 4 Training. Each panel turns its fields into the core's config
dataclasses and back (``apply``), and emits ``changed`` so the window can re-validate, recount the
trainable parameters and update the status bar at once. No panel does any slow work itself: it
asks the window (signals ending in ``_requested``), which runs it on a worker.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core import hub
from ..core.config import (
    ALL_TARGETS,
    MODEL_LABELS,
    SCHEDULES,
    DataConfig,
    LoRAConfig,
    ModelConfig,
    TrainConfig,
    parse_renames,
)
from ..core.data import SMS_SPAM
from ..core.device import available_devices
from ..core.errors import ConfigError, WorkbenchError
from ..core.memory import human_bytes
from ..core.model import load_model_config
from .escape import as_rich_text, escaped

LOCAL_FOLDER = "__local__"  # the "Local folder…" entry of the model list
TARGET_LABELS = {"qkv": "q/k/v", "attn_out": "attn out", "mlp_up": "MLP up", "mlp_down": "MLP down"}
MODEL_NAMES = {"gpt2": "GPT-2 small", "gpt2-medium": "GPT-2 medium", "gpt2-large": "GPT-2 large", "gpt2-xl": "GPT-2 XL"}
INVALID_STYLE = "border: 1px solid #d9534f; border-radius: 3px;"
COUNTS_SHOWN = 4  # classes named on the counts line; the tooltip lists more
COUNTS_TIP_LINES = 30


def mark_invalid(widget: QWidget, problems: list[str], tip: str = "") -> None:
    """Outline a field in red with the reasons as its tooltip, or restore it."""
    widget.setProperty("problems", problems)
    widget.setStyleSheet(INVALID_STYLE if problems else "")
    widget.setToolTip(as_rich_text("\n".join(problems)) if problems else tip)


class WheelGuard(QObject):
    """Spin boxes and lists take the mouse wheel only when they have the keyboard focus.

    Otherwise scrolling a column of settings edits whatever field passes under the pointer (and a
    notch over the model list picked "Local folder…", opening a dialog). The common Qt remedy: no
    focus from the wheel (``StrongFocus``), and an unfocused field ignores the wheel event, which
    Qt then offers to its parents, so the scroll area scrolls.
    """

    def guard(self, root: QWidget) -> None:
        """Guard every spin box and list inside ``root``."""
        for widget in root.findChildren(QAbstractSpinBox) + root.findChildren(QComboBox):
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()  # handled here, but not accepted: Qt passes it on to the parents
            return True
        return False


def human_count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def _spin(lo: int, hi: int, value: int, tip: str, special: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    spin.setToolTip(tip)
    spin.setProperty("default_tip", tip)
    if special:
        spin.setSpecialValueText(special)  # shown for the minimum, which means "not set"
    return spin


def _dspin(lo: float, hi: float, value: float, step: float, decimals: int, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(decimals)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    spin.setProperty("default_tip", tip)
    return spin


class DataPanel(QGroupBox):
    """1 Data: the built-in SMS collection or a CSV/TSV file, its columns, balance and split."""

    changed = Signal()
    open_file_requested = Signal()
    download_requested = Signal()
    columns_changed = Signal()  # the text/label choice changed: the class counts must follow

    def __init__(self, parent: QWidget | None = None):
        super().__init__("1  Data", parent)
        defaults = DataConfig()
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(8, 6, 8, 6)
        self._path: str = ""
        self.max_rows: int | None = None  # a sample of a very large file; None: all of it

        self.sms_radio = QRadioButton("SMS Spam Collection (built in)")
        self.sms_radio.setToolTip("5,574 text messages labelled ham/spam (UCI); downloaded once, about 200 KB")
        self.file_radio = QRadioButton("My file:")
        self.open_button = QPushButton("Open file…")
        self.open_button.setToolTip("A CSV or TSV file with a text column and a label column (Ctrl+O)")
        self.sms_status = QLabel()
        self.sms_status.setStyleSheet("color: palette(mid);")
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Fetch the SMS Spam Collection now (it is also fetched on Start)")
        group = QButtonGroup(self)
        group.addButton(self.sms_radio)
        group.addButton(self.file_radio)
        self.sms_radio.setChecked(True)

        sms_row = QHBoxLayout()
        sms_row.addWidget(self.sms_status, 1)
        sms_row.addWidget(self.download_button)
        file_row = QHBoxLayout()
        file_row.addWidget(self.file_radio)
        file_row.addWidget(self.open_button, 1)
        form.addRow(self.sms_radio)
        form.addRow(sms_row)
        form.addRow(file_row)

        self.file_label = QLabel("no file chosen")
        self.file_label.setTextFormat(Qt.TextFormat.PlainText)  # a file name is never markup
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_label.setWordWrap(True)
        form.addRow(self.file_label)

        self.text_column = QComboBox()
        self.text_column.setToolTip("The column holding the text to classify")
        self.label_column = QComboBox()
        self.label_column.setToolTip("The column holding the class of each text")
        for combo in (self.text_column, self.label_column):
            combo.addItem("auto", None)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        form.addRow("Text column", self.text_column)
        form.addRow("Label column", self.label_column)

        # Two lines, always: counts arriving (or a warning) must not push the fields below around.
        self.counts_label = QLabel("")
        self.counts_label.setFixedHeight(2 * self.counts_label.fontMetrics().lineSpacing() + 4)
        self.counts_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # long: cut, not wider
        form.addRow(self.counts_label)

        self.balance = QCheckBox("Balance classes (undersample to the smallest)")
        self.balance.setChecked(defaults.balance)
        self.balance.setToolTip("The book's recipe: keep as many ham as there are spam (747 + 747)")
        form.addRow(self.balance)

        split_row = QHBoxLayout()
        self.train_pct = _spin(5, 95, round(defaults.train_fraction * 100), "Percent of the examples used for training")
        self.val_pct = _spin(1, 90, round(defaults.val_fraction * 100), "Percent used for validation during training")
        self.test_label = QLabel()
        for spin in (self.train_pct, self.val_pct):
            spin.setSuffix(" %")
        split_row.addWidget(self.train_pct)
        split_row.addWidget(self.val_pct)
        split_row.addWidget(self.test_label)
        form.addRow("Train / val", split_row)

        self.max_length = _spin(
            0, 100_000, 0, "Tokens per text; longer texts are cut. 'model' uses the model's context (1024)", "model"
        )
        form.addRow("Max length", self.max_length)
        self.rename = QLineEdit()
        self.rename.setPlaceholderText("e.g. 0=ham, 1=spam")
        self.rename.setToolTip("Names for the file's labels: the adapter's classes are then called so")
        self.rename.setProperty("default_tip", self.rename.toolTip())
        form.addRow("Rename labels", self.rename)

        self.sms_radio.toggled.connect(self._source_toggled)
        self.open_button.clicked.connect(self.open_file_requested)
        self.download_button.clicked.connect(self.download_requested)
        self.text_column.currentIndexChanged.connect(self._columns_changed)
        self.label_column.currentIndexChanged.connect(self._columns_changed)
        self.rename.textChanged.connect(self._columns_changed)  # the classes counted follow the names
        for widget in (self.train_pct, self.val_pct, self.max_length):
            widget.valueChanged.connect(self._emit_changed)
        self.balance.toggled.connect(self._emit_changed)
        self._emit_changed()

    # --- reading and writing the fields ----------------------------------------------------------

    def source(self) -> str:
        return SMS_SPAM if self.sms_radio.isChecked() else self._path

    def data_config(self) -> DataConfig:
        """The data settings (the split follows TrainConfig.seed, the run's one seed)."""
        return DataConfig(
            source=self.source(),
            text_column=self.text_column.currentData(),
            label_column=self.label_column.currentData(),
            balance=self.balance.isChecked(),
            train_fraction=self.train_pct.value() / 100,
            val_fraction=self.val_pct.value() / 100,
            max_length=self.max_length.value() or None,
            max_rows=self.max_rows,
            rename_labels=self.renames()[0],
        )

    def renames(self) -> tuple[tuple[tuple[str, str], ...], str]:
        """The label renames typed, and why they cannot be read ("" when they can)."""
        try:
            return parse_renames(self.rename.text()), ""
        except ConfigError as exc:
            return (), str(exc)

    def apply(self, cfg: DataConfig) -> None:
        if cfg.source and cfg.source != SMS_SPAM:
            self.set_file(cfg.source)
        else:
            self.sms_radio.setChecked(True)
        self.balance.setChecked(cfg.balance)
        self.train_pct.setValue(round(cfg.train_fraction * 100))
        self.val_pct.setValue(round(cfg.val_fraction * 100))
        self.max_length.setValue(cfg.max_length or 0)
        self.max_rows = cfg.max_rows
        self.rename.setText(", ".join(f"{old}={new}" for old, new in cfg.rename_labels))
        self._wanted_columns = (cfg.text_column, cfg.label_column)
        self._select(self.text_column, cfg.text_column)
        self._select(self.label_column, cfg.label_column)

    def set_file(self, path: str, max_rows: int | None = None) -> None:
        """Use ``path``; ``max_rows`` reads only its first rows (a sample of a very large file)."""
        self._path = path
        self.max_rows = max_rows
        self.file_label.setText(Path(path).name if path else "no file chosen")
        self.file_label.setToolTip(as_rich_text(path))
        self.file_radio.setChecked(True)
        self._emit_changed()

    def set_columns(self, columns: list[str], text: str | None, label: str | None) -> None:
        """Fill the column pickers from a freshly read table; keep a remembered choice if present."""
        wanted = getattr(self, "_wanted_columns", (None, None))
        for combo, guess, remembered in ((self.text_column, text, wanted[0]), (self.label_column, label, wanted[1])):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(f"auto ({guess})" if guess else "auto", None)
            for name in columns:
                combo.addItem(name, name)
            self._select(combo, remembered if remembered in columns else None)
            combo.blockSignals(False)
        self._wanted_columns = (None, None)
        self._columns_changed()

    def clear_columns(self) -> None:
        """Only "auto" in both pickers: the columns of a file that is no longer there (or could not
        be read) must not be offered. A remembered choice waits for the next table read."""
        for combo in (self.text_column, self.label_column):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("auto", None)
            combo.blockSignals(False)
        self._columns_changed()

    def effective_columns(self, detected: tuple[str | None, str | None]) -> tuple[str | None, str | None]:
        return (self.text_column.currentData() or detected[0], self.label_column.currentData() or detected[1])

    def set_counts(self, counts: dict[str, int] | None, note: str = "", warning: bool = False) -> None:
        """Rows per class on the first line, balancing (or ``note``) on the second; a ``warning``
        takes the first line, in red, with the counts summed up below it."""
        counts = counts or {}
        rows = sum(counts.values())
        listed = "\n".join(f"{name}: {n:,}" for name, n in list(counts.items())[:COUNTS_TIP_LINES])
        self.counts_label.setToolTip(listed + ("\n…" if len(counts) > COUNTS_TIP_LINES else ""))
        if warning:
            summary = f"{len(counts):,} different values in {rows:,} rows" if counts else ""
            self._show_counts(f"<b style='color:#d9534f'>⚠ {escaped(note)}</b>", summary)
            return
        if not counts:
            self._show_counts(escaped(note), "")
            return
        shown = " · ".join(f"{escaped(name)} {n:,}" for name, n in list(counts.items())[:COUNTS_SHOWN])
        more = f" · … {len(counts):,} classes" if len(counts) > COUNTS_SHOWN else ""
        second = note
        if not second and self.balance.isChecked() and len(counts) > 1:
            second = f"balanced: {min(counts.values()):,} per class"
        self._show_counts(f"<b>{shown}{more}</b>", escaped(second))

    def _show_counts(self, first: str, second: str) -> None:
        self.counts_label.setText(f"{first}<br><span style='color:gray'>{second}</span>")

    def set_sms_status(self, downloaded: bool, busy: str = "") -> None:
        if busy:
            self.sms_status.setText(busy)
        else:
            self.sms_status.setText("downloaded ✓" if downloaded else "not downloaded yet (fetched on Start)")
        self.download_button.setVisible(not downloaded)
        self.download_button.setEnabled(not busy)

    @staticmethod
    def _select(combo: QComboBox, value: str | None) -> None:
        index = combo.findData(value) if value is not None else 0
        combo.setCurrentIndex(max(index, 0))

    def _source_toggled(self, _checked: bool) -> None:
        self._emit_changed()

    def _columns_changed(self) -> None:
        self.columns_changed.emit()
        self._emit_changed()

    def _emit_changed(self) -> None:
        self.test_label.setText(f"test {max(0, 100 - self.train_pct.value() - self.val_pct.value())} %")
        self.changed.emit()


PRECISION_CHOICES = (
    ("auto (the faster, measured here)", "auto"),
    ("fp32", "fp32"),
    ("bf16 (autocast)", "bf16"),
)


class ModelPanel(QGroupBox):
    """2 Model: the GPT-2 size (or a local folder), whether it is on disk, and the device."""

    changed = Signal()
    download_requested = Signal()
    cancel_download_requested = Signal()
    local_folder_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("2  Model", parent)
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(8, 6, 8, 6)
        self._configs: dict[str, ModelConfig | None] = {}
        self._downloading = False

        self.model_combo = QComboBox()
        for name, size in MODEL_LABELS.items():
            self.model_combo.addItem(f"{MODEL_NAMES[name]} ({size})", name)
        self.model_combo.addItem("Local folder…", LOCAL_FOLDER)
        self.model_combo.setToolTip("Bigger models classify better but train slower and need more memory")
        form.addRow("GPT-2", self.model_combo)

        self.info_label = QLabel()
        self.info_label.setWordWrap(True)
        form.addRow(self.info_label)
        buttons = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.folder_button = QPushButton("Choose a model folder…")
        self.folder_button.setToolTip(
            "Use a GPT-2 checkpoint on this computer: a folder with config.json and model.safetensors"
        )
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        self.download_progress = QProgressBar()
        self.download_progress.setVisible(False)
        self.download_progress.setTextVisible(True)
        form.addRow(self.download_progress)

        self.device_combo = QComboBox()
        self.device_combo.addItem("auto (best available)", "auto")
        for info in available_devices():
            self.device_combo.addItem(info.name, info.key)
        self.device_combo.setToolTip("Where training runs; auto picks an NVIDIA GPU, then Apple MPS, then the CPU")
        form.addRow("Device", self.device_combo)
        self.precision_combo = QComboBox()
        for label, key in PRECISION_CHOICES:
            self.precision_combo.addItem(label, key)
        self.precision_combo.setToolTip(
            "auto: bf16 where it ran faster than fp32 when measured on this device (once, then remembered)"
        )
        self.precision_note = QLabel()  # what auto chose here and why, once it has been measured
        self.precision_note.setWordWrap(True)
        self.precision_note.setTextFormat(Qt.TextFormat.PlainText)
        self.precision_note.setStyleSheet("color: palette(mid);")
        form.addRow("Precision", self.precision_combo)
        form.addRow(self.precision_note)

        self._last_index = 0
        self.model_combo.activated.connect(self._activated)
        self.model_combo.currentIndexChanged.connect(self._changed)
        self.device_combo.currentIndexChanged.connect(self._changed)
        self.precision_combo.currentIndexChanged.connect(self._changed)
        self.download_button.clicked.connect(self._download_clicked)
        self.folder_button.clicked.connect(self.local_folder_requested)
        self.refresh()

    def model(self) -> str:
        value = self.model_combo.currentData()
        return "" if value == LOCAL_FOLDER else value

    def device(self) -> str:
        return self.device_combo.currentData()

    def device_text(self) -> str:
        return self.device_combo.currentText()

    def precision(self) -> str:
        return self.precision_combo.currentData()

    def set_precision(self, key: str) -> None:
        self.precision_combo.setCurrentIndex(max(0, self.precision_combo.findData(key)))

    def set_model(self, model: str) -> None:
        """Select a size name or a local folder (added to the list once)."""
        index = self.model_combo.findData(model)
        if index < 0:
            index = self.model_combo.count() - 1  # just above "Local folder…"
            self.model_combo.insertItem(index, f"Folder: {Path(model).name}", model)
            self.model_combo.setItemData(index, model, Qt.ItemDataRole.ToolTipRole)
        self.model_combo.setCurrentIndex(index)
        self._last_index = index

    def set_device(self, key: str) -> None:
        index = self.device_combo.findData(key)
        if index < 0:
            index = self.device_combo.findData(key.split(":")[0]) if ":" not in key else -1
        self.device_combo.setCurrentIndex(max(index, 0))

    def model_config(self) -> ModelConfig | None:
        """The chosen model's architecture: known for the sizes, read (once) from a folder's config.json."""
        model = self.model()
        if not model:
            return None
        if model in MODEL_LABELS:
            return ModelConfig.for_size(model)
        if model not in self._configs:
            try:
                self._configs[model] = load_model_config(Path(model))  # a few hundred bytes of JSON
            except WorkbenchError:
                self._configs[model] = None
        return self._configs[model]

    def refresh(self) -> None:
        """Parameter count and whether the weights are on disk (cheap file checks only)."""
        model = self.model()
        config = self.model_config()
        params = f"{human_count(config.n_params)} params" if config else "unreadable config.json"
        if not model:
            self.info_label.setText("choose a folder")
            self.download_button.setVisible(False)
            return
        if model not in MODEL_LABELS:
            ok = hub.is_cached(model)
            self.info_label.setText(f"{params} · {'folder ✓' if ok else 'not a GPT-2 checkpoint folder'}")
            self.download_button.setVisible(False)
            return
        cached = hub.is_cached(model)
        offline = hub.offline_mode(None)
        if cached:
            self.info_label.setText(f"{params} · downloaded ✓ {human_bytes(hub.cached_size_bytes(model))}")
        elif config:
            size = human_bytes(config.n_params * 4)
            todo = "press Download, or choose a model folder"
            if offline:
                todo = "offline mode is on: choose a model folder"
            self.info_label.setText(f"{params} · not downloaded ({size}): {todo}")
        self.download_button.setVisible(not cached or self._downloading)
        self.download_button.setEnabled(self._downloading or not offline)
        self.download_button.setToolTip(
            "Offline mode is on (HF_HUB_OFFLINE is set), so nothing can be downloaded: choose a model folder"
            if offline
            else "Fetch the weights from the Hugging Face Hub now (Start also fetches them)"
        )

    def set_downloading(self, active: bool) -> None:
        self._downloading = active
        self.download_button.setText("Cancel" if active else "Download")
        self.download_progress.setVisible(active)
        self.model_combo.setEnabled(not active)
        if active:
            self.download_progress.setRange(0, 0)
            self.download_progress.setFormat("starting…")
        self.refresh()

    def set_download_progress(self, done: int, total: int | None, message: str) -> None:
        if total:
            self.download_progress.setRange(0, 1000)
            self.download_progress.setValue(int(1000 * done / total))
            self.download_progress.setFormat(f"{human_bytes(done)} / {human_bytes(total)}")
        else:
            self.download_progress.setRange(0, 0)
            self.download_progress.setFormat(human_bytes(done))
        self.download_progress.setToolTip(as_rich_text(message))

    def _download_clicked(self) -> None:
        if self._downloading:
            self.cancel_download_requested.emit()
        else:
            self.download_requested.emit()

    def _activated(self, index: int) -> None:
        if self.model_combo.itemData(index) == LOCAL_FOLDER:
            # Go back to the previous entry; the window selects the folder if the user picks one.
            self.model_combo.setCurrentIndex(self._last_index)
            self.local_folder_requested.emit()
        else:
            self._last_index = index

    def _changed(self) -> None:
        if self.model_combo.currentData() != LOCAL_FOLDER:
            self._last_index = self.model_combo.currentIndex()
        self.refresh()
        self.changed.emit()


class LoRAPanel(QGroupBox):
    """3 LoRA: rank, alpha, dropout, which layers, how many top blocks; live trainable count."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("3  LoRA", parent)
        d = LoRAConfig()
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(8, 6, 8, 6)
        row = QHBoxLayout()
        self.rank = _spin(1, 1024, d.rank, "r: the inner size of each adapter; more = more capacity and a bigger file")
        self.alpha = _dspin(0.0, 4096.0, d.alpha, 1.0, 1, "The update is scaled by alpha / rank (Hu et al. 2021)")
        row.addWidget(QLabel("rank"))
        row.addWidget(self.rank, 1)
        row.addWidget(QLabel("alpha"))
        row.addWidget(self.alpha, 1)
        form.addRow(row)
        self.dropout = _dspin(0.0, 0.99, d.dropout, 0.05, 2, "Dropout on the adapter's input; 0 turns it off")
        self.top_blocks = _spin(0, 100, 0, "Adapt only the last N transformer blocks; 'all' adapts every block", "all")
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("dropout"))
        row2.addWidget(self.dropout, 1)
        row2.addWidget(QLabel("top blocks"))
        row2.addWidget(self.top_blocks, 1)
        form.addRow(row2)

        self.targets_box = QWidget()
        grid = QGridLayout(self.targets_box)
        grid.setContentsMargins(0, 0, 0, 0)
        self.targets: dict[str, QCheckBox] = {}
        for i, name in enumerate(ALL_TARGETS):
            box = QCheckBox(TARGET_LABELS[name])
            box.setChecked(name in d.targets)
            box.toggled.connect(self._emit)
            grid.addWidget(box, i // 2, i % 2)
            self.targets[name] = box
        self.targets_box.setToolTip("The linear layers of each block that get adapters")
        form.addRow("Layers", self.targets_box)

        self.summary = QLabel()
        self.summary.setStyleSheet("font-weight: bold;")
        form.addRow(self.summary)

        for spin in (self.rank, self.top_blocks):
            spin.valueChanged.connect(self._emit)
        for spin in (self.alpha, self.dropout):
            spin.valueChanged.connect(self._emit)

    def lora_config(self) -> LoRAConfig:
        return LoRAConfig(
            rank=self.rank.value(),
            alpha=self.alpha.value(),
            dropout=round(self.dropout.value(), 4),
            targets=tuple(name for name, box in self.targets.items() if box.isChecked()),
            top_blocks=self.top_blocks.value() or None,
        )

    def apply(self, cfg: LoRAConfig) -> None:
        self.rank.setValue(cfg.rank)
        self.alpha.setValue(cfg.alpha)
        self.dropout.setValue(cfg.dropout)
        self.top_blocks.setValue(cfg.top_blocks or 0)
        for name, box in self.targets.items():
            box.setChecked(name in cfg.targets)

    def set_summary(self, trainable: int | None) -> None:
        if trainable is None:
            self.summary.setText("trainable parameters: ?")
            return
        size = human_bytes(trainable * 4)  # fp32 on disk
        self.summary.setText(f"{human_count(trainable)} trainable · adapter ≈ {size}")
        self.summary.setToolTip(
            f"{trainable:,} trainable parameters (LoRA A/B + classification head), fp32 in the file"
        )

    def _emit(self, *_args) -> None:
        self.changed.emit()


class TrainingPanel(QGroupBox):
    """4 Training: the optimiser schedule, with the book's defaults."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("4  Training", parent)
        d = TrainConfig()
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        self.epochs = _spin(1, 1000, d.epochs, "Passes over the training set")
        self.batch_size = _spin(1, 4096, d.batch_size, "Examples per step; lower it if memory runs out")
        self.grad_accum = _spin(
            1, 1024, d.grad_accum, "Batches summed per optimiser step (effective batch = batch × this)"
        )
        self.lr = QLineEdit(f"{d.lr:g}")
        self.lr.setToolTip("AdamW learning rate, e.g. 5e-5")
        self.lr.setProperty("default_tip", self.lr.toolTip())
        self.weight_decay = _dspin(0.0, 10.0, d.weight_decay, 0.01, 3, "AdamW decoupled weight decay")
        self.eval_every = _spin(1, 1_000_000, d.eval_every, "Optimiser steps between points on the curves")
        self.eval_batches = _spin(1, 10_000, d.eval_batches, "Batches of train and validation data per curve point")
        self.max_steps = _spin(
            0, 10_000_000, 0, "Stop after this many steps (for a quick try); 'none' runs every epoch", "none"
        )
        self.seed = _spin(0, 2**31 - 1, d.seed, "Fixes the split, the LoRA init and the batch order, so runs repeat")
        self.length_grouping = _spin(
            0,
            100_000,
            d.length_grouping,
            "Batches sorted by length within chunks of this many, so a batch pads to almost nothing "
            "(the order stays random); 0 pads batches of random lengths",
        )
        self.warmup_steps = _spin(
            0,
            10**9,
            d.warmup_steps,
            "Raise the learning rate from almost 0 over this many steps (0: start at full rate)",
        )
        self.schedule = QComboBox()
        for name in SCHEDULES:
            self.schedule.addItem(name, name)
        self.schedule.setToolTip(
            "The learning rate after warm-up: constant (the book's), or decayed to 0 by the last step"
        )
        self.schedule.setProperty("default_tip", self.schedule.toolTip())
        self.early_stopping = _spin(
            0,
            100_000,
            d.early_stopping,
            "Stop when the validation loss has not improved for this many epochs",
            "off",
        )
        self.keep_best = QCheckBox("keep best epoch")
        self.keep_best.setToolTip("Finish with the epoch of the lowest validation loss, not the last one")
        fields = [
            ("epochs", self.epochs),
            ("batch", self.batch_size),
            ("learning rate", self.lr),
            ("weight decay", self.weight_decay),
            ("eval every", self.eval_every),
            ("eval batches", self.eval_batches),
            ("grad accum", self.grad_accum),
            ("max steps", self.max_steps),
            ("seed", self.seed),
            ("length groups", self.length_grouping),
            ("warm-up steps", self.warmup_steps),
            ("schedule", self.schedule),
            ("early stop", self.early_stopping),
            ("", self.keep_best),
        ]
        for i, (label, widget) in enumerate(fields):
            row, col = divmod(i, 2)
            grid.addWidget(QLabel(label), row, col * 2)
            grid.addWidget(widget, row, col * 2 + 1)
            widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        for spin in (
            self.epochs,
            self.batch_size,
            self.grad_accum,
            self.eval_every,
            self.eval_batches,
            self.max_steps,
            self.seed,
            self.length_grouping,
            self.warmup_steps,
            self.early_stopping,
        ):
            spin.valueChanged.connect(self._emit)
        self.schedule.currentIndexChanged.connect(self._emit)
        self.keep_best.toggled.connect(self._emit)
        self.weight_decay.valueChanged.connect(self._emit)
        self.lr.textChanged.connect(self._emit)

    def learning_rate(self) -> float | None:
        try:
            value = float(self.lr.text().strip())
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    def values(self) -> dict:
        """The TrainConfig fields this panel owns (lr None when the text is not a number)."""
        return {
            "epochs": self.epochs.value(),
            "batch_size": self.batch_size.value(),
            "grad_accum": self.grad_accum.value(),
            "lr": self.learning_rate(),
            "weight_decay": self.weight_decay.value(),
            "eval_every": self.eval_every.value(),
            "eval_batches": self.eval_batches.value(),
            "max_steps": self.max_steps.value() or None,
            "seed": self.seed.value(),
            "length_grouping": self.length_grouping.value(),
            "warmup_steps": self.warmup_steps.value(),
            "schedule": self.schedule.currentData(),
            "early_stopping": self.early_stopping.value(),
            "keep_best": self.keep_best.isChecked(),
        }

    def apply(self, cfg: TrainConfig) -> None:
        self.epochs.setValue(cfg.epochs)
        self.batch_size.setValue(cfg.batch_size)
        self.grad_accum.setValue(cfg.grad_accum)
        self.lr.setText(f"{cfg.lr:g}")
        self.weight_decay.setValue(cfg.weight_decay)
        self.eval_every.setValue(cfg.eval_every)
        self.eval_batches.setValue(cfg.eval_batches)
        self.max_steps.setValue(cfg.max_steps or 0)
        self.seed.setValue(cfg.seed)
        self.length_grouping.setValue(cfg.length_grouping)
        self.warmup_steps.setValue(cfg.warmup_steps)
        self.schedule.setCurrentIndex(max(0, self.schedule.findData(cfg.schedule)))
        self.early_stopping.setValue(cfg.early_stopping)
        self.keep_best.setChecked(cfg.keep_best)

    def _emit(self, *_args) -> None:
        self.changed.emit()


class SettingsColumn(QWidget):
    """The four panels stacked (they scroll on a small screen); ``footer`` holds the problems list
    and Start/Stop, placed by the window below the scroll area so Start is always in view."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.data = DataPanel()
        self.model = ModelPanel()
        self.lora = LoRAPanel()
        self.training = TrainingPanel()
        for panel in (self.data, self.model, self.lora, self.training):
            layout.addWidget(panel)
        layout.addStretch(1)
        self.wheel_guard = WheelGuard(self)
        self.wheel_guard.guard(self)

        self.footer = QWidget()
        footer = QVBoxLayout(self.footer)
        footer.setContentsMargins(4, 2, 4, 4)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setVisible(False)
        footer.addWidget(self.problems)
        # "What will this run use?", next to the button that starts it (also in the status bar).
        self.memory = QLabel()
        self.memory.setWordWrap(True)
        footer.addWidget(self.memory)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("▶  Start training")
        self.start_button.setDefault(True)
        self.start_button.setMinimumHeight(34)
        self.stop_button = QPushButton("■  Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setMinimumHeight(34)
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.stop_button, 1)
        footer.addLayout(buttons)
