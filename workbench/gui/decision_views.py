"""The Results tab's decision views: where to cut (threshold) and how far to trust the probabilities
(calibration), drawn from the run's held-out rows as ``adapter_eval.score_held_out`` scores them.

All the numbers come from ``core/thresholds.py`` (the same functions ``workbench threshold`` and
``workbench calibrate`` print); these widgets only draw them and let a person move the cut. Saving
goes back through the controller (``controllers/review.py``), which writes the adapter on a worker.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..core.thresholds import (
    POSITIVE,
    apply_temperature,
    best_f1_threshold,
    fit_temperature,
    logits_of,
    metrics_at,
    negative_log_likelihood,
    precision_recall_curve,
    reliability,
    roc_curve,
)
from .escape import as_rich_text, escaped
from .plots import LegendRow, plot_widget

SLIDER_STEPS = 1000  # the slider moves the cut in steps of 0.001
CURVE_COLOR = (31, 119, 180)
CUT_COLOR = (214, 39, 40)
BEFORE_COLOR = (150, 150, 150)


def _text_label(text: str = "", rich: bool = True) -> QLabel:
    """A label for text that comes from files (label names, file names in errors): it wraps, and a
    long unbroken word never sets the window's width (it would push the window past the screen)."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def _plot(x_label: str, y_label: str) -> pg.PlotWidget:
    plot = plot_widget(x_label, y_label)
    item = plot.getPlotItem()
    item.setXRange(0, 1, padding=0.02)
    item.setYRange(0, 1, padding=0.02)
    item.setMouseEnabled(x=False, y=False)
    item.hideButtons()
    plot.setMinimumHeight(160)
    return plot


def _titled(legend: LegendRow, plot: pg.PlotWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(legend)
    layout.addWidget(plot, 1)
    return box


class ThresholdView(QWidget):
    """Precision-recall and ROC curves of the positive class (the adapter's second label) and a
    slider for the cut; the figures under it follow the slider live."""

    save_requested = Signal(object)  # the threshold to save in the adapter (float), or None: argmax

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.names: tuple[str, ...] = ()
        self.saved: float | None = None

        self.note = _text_label("Open the Threshold view after training, or load an adapter, to see its curves.")
        self.pr_legend, self.roc_legend = LegendRow("Precision–recall"), LegendRow("ROC")
        self.pr_plot = _plot("recall", "precision")
        self.roc_plot = _plot("false positive rate", "true positive rate")
        self.pr_curve = self.pr_plot.plot([], [], pen=pg.mkPen(CURVE_COLOR, width=2))
        self.roc_curve = self.roc_plot.plot([], [], pen=pg.mkPen(CURVE_COLOR, width=2))
        self.roc_plot.plot([0, 1], [0, 1], pen=pg.mkPen(BEFORE_COLOR, style=Qt.PenStyle.DashLine))
        marker = {"symbol": "o", "symbolSize": 10, "symbolBrush": CUT_COLOR, "pen": None}
        self.pr_cut = self.pr_plot.plot([], [], **marker)
        self.roc_cut = self.roc_plot.plot([], [], **marker)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 1.0)
        self.spin.setDecimals(3)
        self.spin.setSingleStep(0.01)
        self.cut_label = QLabel("threshold")
        self.cut_label.setTextFormat(Qt.TextFormat.PlainText)
        self.best_button = QPushButton("Best F1")
        self.best_button.setToolTip("Move the cut to the one with the highest F1 on these rows")
        self.argmax_button = QPushButton("0.5 (argmax)")
        self.save_button = QPushButton("Save in adapter")
        self.save_button.setToolTip("Classify, the Classify tab and eval then decide with this cut")
        self.clear_button = QPushButton("Remove saved")
        self.clear_button.setToolTip("Decide by argmax again")
        self.figures = _text_label()

        plots = QHBoxLayout()
        plots.addWidget(_titled(self.pr_legend, self.pr_plot), 1)
        plots.addWidget(_titled(self.roc_legend, self.roc_plot), 1)
        cut = QHBoxLayout()
        cut.addWidget(self.cut_label)
        cut.addWidget(self.slider, 1)
        cut.addWidget(self.spin)
        buttons = QHBoxLayout()
        for button in (self.best_button, self.argmax_button, self.save_button, self.clear_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addLayout(plots, 1)
        layout.addLayout(cut)
        layout.addWidget(self.figures)
        layout.addLayout(buttons)

        self.slider.valueChanged.connect(lambda v: self.set_threshold(v / SLIDER_STEPS))
        self.spin.valueChanged.connect(self.set_threshold)
        self.best_button.clicked.connect(lambda: self.set_threshold(best_f1_threshold(self.scores, self.labels)))
        self.argmax_button.clicked.connect(lambda: self.set_threshold(0.5))
        self.save_button.clicked.connect(lambda: self.save_requested.emit(self.threshold()))
        self.clear_button.clicked.connect(lambda: self.save_requested.emit(None))
        self._set_usable(False)

    def _set_usable(self, usable: bool) -> None:
        for widget in (self.slider, self.spin, self.best_button, self.argmax_button, self.save_button):
            widget.setEnabled(usable)
        self.clear_button.setEnabled(usable and self.saved is not None)

    def clear(self, message: str) -> None:
        self.scores, self.labels = [], []
        self.note.setText(escaped(message))  # an error may quote a file name
        for curve in (self.pr_curve, self.roc_curve, self.pr_cut, self.roc_cut):
            curve.setData([], [])
        self.figures.setText("")
        self._set_usable(False)

    def set_scores(
        self, probabilities: torch.Tensor, labels: list[int], names: tuple[str, ...], saved: float | None, where: str
    ) -> None:
        """Show the curves of ``probabilities`` (N, 2) against ``labels``; the cut starts at the
        adapter's saved threshold, else 0.5."""
        if len(names) != 2:
            self.clear(f"Thresholds apply to two-class adapters; this one has {len(names)} classes.")
            return
        if len(set(labels)) < 2:
            self.clear("The held-out rows hold one class only, so there is no curve to draw.")
            return
        self.scores, self.labels, self.names, self.saved = (
            probabilities[:, POSITIVE].tolist(),
            list(labels),
            names,
            saved,
        )
        pr, roc = precision_recall_curve(self.scores, self.labels), roc_curve(self.scores, self.labels)
        self.pr_curve.setData(pr.recall, pr.precision)
        self.roc_curve.setData(roc.false_positive_rate, roc.true_positive_rate)
        self.pr_legend.set_entries([])
        self.pr_legend.add(f"average precision {pr.average_precision:.3f}", pg.mkColor(CURVE_COLOR))
        self.pr_legend.add("the cut", pg.mkColor(CUT_COLOR), marker=True)
        self.roc_legend.set_entries([])
        self.roc_legend.add(f"AUC {roc.auc:.3f}", pg.mkColor(CURVE_COLOR))
        self.roc_legend.add("chance", pg.mkColor(BEFORE_COLOR))
        self.roc_legend.add("the cut", pg.mkColor(CUT_COLOR), marker=True)
        positive = escaped(names[POSITIVE])
        self.note.setText(
            f"<b>{positive}</b> when p({positive}) ≥ the threshold, on {len(labels):,} {escaped(where)}. "
            f"Lower it to miss less {positive}; raise it for fewer false alarms."
        )
        self.cut_label.setText(f"p({_short(names[POSITIVE])}) ≥")
        self.cut_label.setToolTip(as_rich_text(names[POSITIVE]))
        self._set_usable(True)
        self.set_threshold(0.5 if saved is None else saved, force=True)

    def threshold(self) -> float:
        return round(self.spin.value(), 3)

    def set_saved(self, saved: float | None) -> None:
        """The adapter file now holds ``saved`` (None: argmax); the cut stays where it is."""
        self.saved = saved
        self._show_figures(self.threshold())

    def set_threshold(self, value: float, force: bool = False) -> None:
        value = min(1.0, max(0.0, round(float(value), 3)))
        if not force and value == self.threshold() and self.slider.value() == round(value * SLIDER_STEPS):
            return
        for widget, v in ((self.slider, round(value * SLIDER_STEPS)), (self.spin, value)):
            widget.blockSignals(True)
            widget.setValue(v)
            widget.blockSignals(False)
        self._show_figures(value)

    def _show_figures(self, value: float) -> None:
        if not self.scores:
            return
        m = metrics_at(self.scores, self.labels, value)
        (tn, fp), (fn, tp) = m.confusion
        positives, negatives = tp + fn, tn + fp
        fpr = fp / negatives if negatives else 0.0
        self.pr_cut.setData([m.recall], [m.precision] if tp + fp else [1.0])
        self.roc_cut.setData([fpr], [m.recall])
        neg, pos = (escaped(n) for n in self.names)
        saved = "argmax (0.5)" if self.saved is None else f"{self.saved:.3f}"
        self.figures.setText(
            f"precision <b>{m.precision:.3f}</b> · recall <b>{m.recall:.3f}</b> · F1 <b>{m.f1:.3f}</b> · "
            f"accuracy <b>{m.accuracy:.1%}</b><br>"
            f"{fp:,} of {negatives:,} {neg} flagged as {pos} (false alarms) · "
            f"{fn:,} of {positives:,} {pos} missed · saved in the adapter: {saved}"
        )
        self.clear_button.setEnabled(self.saved is not None)


class CalibrationView(QWidget):
    """A reliability diagram of the test rows and the expected calibration error, before and after
    a temperature fitted on the validation rows (Guo et al. 2017; thresholds.py)."""

    save_requested = Signal(object)  # the temperature to save (float), or None: remove it

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.val: tuple[torch.Tensor, list[int]] | None = None
        self.test: tuple[torch.Tensor, list[int]] | None = None
        self.saved: float | None = None
        self.fitted: float | None = None

        self.note = _text_label("Calibration appears here for an adapter whose held-out rows can be rebuilt.")
        self.legend = LegendRow("Reliability (test rows)")
        self.plot = _plot("confidence (top probability)", "accuracy")
        self.plot.plot([0, 1], [0, 1], pen=pg.mkPen(BEFORE_COLOR, style=Qt.PenStyle.DashLine))
        dots = {"symbol": "o", "symbolSize": 7, "symbolPen": None}
        before, after = pg.mkPen(BEFORE_COLOR, width=2), pg.mkPen(CURVE_COLOR, width=2)
        self.before_curve = self.plot.plot([], [], pen=before, symbolBrush=BEFORE_COLOR, **dots)
        self.after_curve = self.plot.plot([], [], pen=after, symbolBrush=CURVE_COLOR, **dots)
        self.figures = _text_label(rich=False)
        self.fit_button = QPushButton("Fit temperature")
        self.fit_button.setToolTip("Fit one temperature on the run's validation rows (Guo et al. 2017)")
        self.save_button = QPushButton("Save in adapter")
        self.save_button.setToolTip("Classify, the Classify tab and eval then use the calibrated probabilities")
        self.remove_button = QPushButton("Remove saved")
        self.remove_button.setToolTip("Use the model's own probabilities again")
        buttons = QHBoxLayout()
        for button in (self.fit_button, self.save_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(_titled(self.legend, self.plot), 1)
        layout.addWidget(self.figures)
        layout.addLayout(buttons)
        self.fit_button.clicked.connect(self.fit)
        self.save_button.clicked.connect(lambda: self.save_requested.emit(self.fitted))
        self.remove_button.clicked.connect(lambda: self.save_requested.emit(None))
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.fit_button.setEnabled(self.val is not None and len(self.val[1]) > 0)
        self.save_button.setEnabled(self.fitted is not None and self.fitted != self.saved)
        self.remove_button.setEnabled(self.saved is not None)

    def clear(self, message: str) -> None:
        self.val = self.test = None
        self.fitted = None
        self.note.setText(escaped(message))  # an error may quote a file name
        self.before_curve.setData([], [])
        self.after_curve.setData([], [])
        self.figures.setText("")
        self._update_buttons()

    def set_scores(self, val, test, saved: float | None, where: str) -> None:
        """``val`` and ``test``: (probabilities without temperature, labels). A saved temperature is
        shown as the "after" curve until a new one is fitted."""
        self.val, self.test, self.saved, self.fitted = val, test, saved, saved
        self.note.setText(
            f"How often the model is right when it says it is this sure, on {len(test[1]):,} {escaped(where)}; "
            "the dashed diagonal is perfect calibration. A temperature rescales every probability and "
            "changes no argmax decision."
        )
        self._show()

    def set_saved(self, saved: float | None) -> None:
        """The adapter file now holds ``saved`` (None: no temperature); a fit made here is kept."""
        self.saved = saved
        if saved is not None:
            self.fitted = saved
        self._show()

    def fit(self) -> None:
        if self.val is None:
            return
        self.fitted = fit_temperature(logits_of(self.val[0]), self.val[1])
        self._show()

    def _show(self) -> None:
        if self.test is None:
            return
        probs, labels = self.test
        before = reliability(probs, labels)
        self._draw(self.before_curve, before)
        self.legend.set_entries([])
        self.legend.add(f"model as trained: ECE {before.ece:.4f}", pg.mkColor(BEFORE_COLOR), marker=True)
        lines = [f"expected calibration error on the test rows: {before.ece:.4f} as trained"]
        if self.fitted is not None:
            after = reliability(apply_temperature(probs, self.fitted), labels)
            self._draw(self.after_curve, after)
            self.legend.add(f"temperature {self.fitted:.3f}: ECE {after.ece:.4f}", pg.mkColor(CURVE_COLOR), marker=True)
            logits = logits_of(probs)
            nll_before = negative_log_likelihood(logits, labels)
            nll_after = negative_log_likelihood(logits, labels, self.fitted)
            which = "saved in the adapter" if self.fitted == self.saved else "fitted on the validation rows"
            lines.append(
                f"temperature {self.fitted:.3f} ({which}): ECE {after.ece:.4f}; "
                f"test NLL {nll_before:.4f} → {nll_after:.4f}"
            )
        else:
            self.after_curve.setData([], [])
        self.figures.setText("\n".join(lines))
        self._update_buttons()

    @staticmethod
    def _draw(curve, diagram) -> None:
        keep = [i for i, n in enumerate(diagram.counts) if n]
        x = np.array(diagram.confidence)[keep]
        y = np.array(diagram.accuracy)[keep]
        curve.setData(x, y)


def _short(name: str, limit: int = 16) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
