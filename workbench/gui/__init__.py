"""The desktop window (PySide6 + pyqtgraph); the only package besides ``worker`` that imports Qt."""
