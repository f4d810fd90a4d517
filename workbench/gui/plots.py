"""What the window's plots share: a legend row above the plot, never on the data.

pyqtgraph's own legend floats inside the view box, where it covers curves as soon as they run
through its corner (accuracy runs along the top, loss falls to the bottom) and, on a small window,
half of the plot. A line of text above the plot costs one row of height, wraps when the plot is
narrow, and covers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import pyqtgraph as pg
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

LINE_SWATCH = "━━"
MARKER_SWATCH = "●"


@dataclass(frozen=True)
class LegendEntry:
    name: str
    color: QColor
    marker: bool = False  # drawn as points (a dot), not as a line


class LegendRow(QLabel):
    """The plot's title and one coloured swatch and name per series, as a wrapping line of text."""

    def __init__(self, title: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._title = title
        self._entries: list[LegendEntry] = []
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._render()

    def set_entries(self, entries: list[LegendEntry]) -> None:
        self._entries = list(entries)
        self._render()

    def add(self, name: str, color, marker: bool = False) -> None:
        self._entries.append(LegendEntry(name, QColor(color) if not isinstance(color, QColor) else color, marker))
        self._render()

    def names(self) -> list[str]:
        return [entry.name for entry in self._entries]

    def _render(self) -> None:
        parts = [f"<b>{escape(self._title)}</b>"] if self._title else []
        for entry in self._entries:
            swatch = MARKER_SWATCH if entry.marker else LINE_SWATCH
            color = self._opaque(entry.color).name()
            # Non-breaking spaces keep an entry whole (swatch and name) when the row wraps.
            name = escape(entry.name).replace(" ", "&nbsp;")
            parts.append(f"<span style='color:{color}'>{swatch}</span>&nbsp;{name}")
        self.setText("&nbsp;&nbsp; ".join(parts))

    def _opaque(self, color: QColor) -> QColor:
        """A translucent series colour as it looks over the window's background (rich text draws
        colours opaque)."""
        if color.alpha() == 255:
            return color
        back, a = self.palette().window().color(), color.alphaF()
        return QColor.fromRgbF(
            color.redF() * a + back.redF() * (1 - a),
            color.greenF() * a + back.greenF() * (1 - a),
            color.blueF() * a + back.blueF() * (1 - a),
        )


def plot_widget(x_label: str, y_label: str, grid_x: bool = True) -> pg.PlotWidget:
    """A plot as every tab draws one: the system palette's background (light or dark), labelled
    axes, a faint grid."""
    plot = pg.PlotWidget()
    plot.setBackground(None)
    item = plot.getPlotItem()
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    item.showGrid(x=grid_x, y=True, alpha=0.2)
    return plot
