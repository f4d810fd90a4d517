"""Soak: 30 start/stop cycles in the window with the tiny model leave no thread behind and do not
grow the process's memory.

Each cycle is what an impatient person does: Start, wait for the first training step to reach the
window, Stop, wait for the run to end (its checkpoint and adapter written, the adapter loaded for
Classify). Cycles are kept minimal (no evaluations, a tiny dataset) so 30 of them fit in well under
a minute; run with ``-s`` to see the figures.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time

import psutil
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QThread
from test_gui import dataset, dialogs, make_window  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

CYCLES = 30
MAX_RSS_GROWTH = 0.10  # after the last cycle vs after the warm-up cycles
WARM_UP_CYCLES = 3  # first runs fill caches (fonts, plot items, allocator pools) once


def settle(qtbot, window) -> None:
    """Let ended jobs be deleted (deleteLater) and collect garbage, so memory reads are comparable."""
    qtbot.waitUntil(lambda: not window.pool.jobs(), timeout=10_000)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    _release_free_heap()


def _release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise), so RSS measures what is
    still alive rather than what the allocator happens to retain."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def test_thirty_start_stop_cycles(qtbot, tmp_path, tiny_checkpoint, dataset, dialogs):
    window = make_window(qtbot, tmp_path, tiny_checkpoint, dataset, epochs=1000, eval_every=1_000_000)
    settle(qtbot, window)
    process = psutil.Process()
    threads_before = threading.active_count()
    step_points = window.training_tab.loss_plot._series["step"][1]  # the per-step loss buffer
    qthreads: list[QThread] = []
    rss_after_first = 0
    started = time.perf_counter()

    for cycle in range(1, CYCLES + 1):
        window.start_training()
        assert window.is_training()
        qthreads += [job.thread for job in window.pool.jobs()]
        qtbot.waitUntil(lambda: step_points.n > 0, timeout=30_000)  # the first StepDone arrived
        window.stop_training()
        qtbot.waitUntil(lambda: not window.is_training(), timeout=10_000)
        qtbot.waitUntil(
            lambda cycle=cycle: window.adapter.path is not None and window.runs_tab.run_count() == cycle,
            timeout=30_000,
        )
        settle(qtbot, window)
        if cycle == WARM_UP_CYCLES:
            rss_after_first = process.memory_info().rss

    elapsed = time.perf_counter() - started
    rss_after_last = process.memory_info().rss
    threads_after = threading.active_count()
    growth = rss_after_last / rss_after_first - 1
    print(
        f"\nsoak: {CYCLES} start/stop cycles in {elapsed:.1f} s · Python threads before {threads_before}, "
        f"after {threads_after} · QThreads still running {sum(t.isRunning() for t in qthreads)} of {len(qthreads)} · "
        f"RSS after cycle {WARM_UP_CYCLES} {rss_after_first / 2**20:.1f} MiB, "
        f"after cycle {CYCLES} {rss_after_last / 2**20:.1f} MiB "
        f"({growth:+.1%})"
    )
    assert not dialogs, dialogs  # no cycle failed
    assert window.runs_tab.run_count() == CYCLES  # every run kept
    assert not window.pool.running()
    assert not any(t.isRunning() for t in qthreads)
    assert threads_after <= threads_before
    assert growth < MAX_RSS_GROWTH
