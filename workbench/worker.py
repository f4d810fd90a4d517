"""The one bridge between the window and the core: run long work on a QThread, report by signals.

A ``Worker`` runs either a core iterator (``training.train(cfg, stop=...)`` yields events) or a
plain call that takes ``(progress, stop)`` (a download, loading a model, classifying a file) and
re-emits what it produces as ``event`` signals; every exception becomes ``failed``; ``finished``
comes last, always. Cancellation is cooperative: ``stop()`` sets a ``threading.Event`` that the core
checks between steps. A thread is never terminated (that would leave locks and files half-written).

The worker never touches a widget. ``Job`` and ``JobPool`` live on the GUI thread and route the
worker's signals to plain callbacks there, so a window never has to connect lambdas to signals
emitted from another thread (a lambda has no thread affinity; it would run on the worker's thread).
Pattern after superqt's ``_qthreading`` and napari's thread workers.

A training run can yield hundreds of small events a second (a StepDone per step, an Evaluated per
quick evaluation, Status per downloaded chunk). Delivered one signal each, every one costs the GUI
thread a queued call and a fresh grab of the GIL, which the training thread holds much of the time.
A worker made with ``coalesce=(StepDone, Evaluated, Status)`` instead puts events in a queue that
the GUI thread empties about 20 times a second (``COALESCE_INTERVAL_S``, a timer on the GUI side,
so an event is never held back by a slow step that follows it), and at once when an event of any
other type arrives (RunStarted, EpochEnded, TrainingFinished, …). Callbacks still see every event,
in order, on the GUI thread; only ``Job`` callbacks see them (the ``event`` signal stays silent).

While any job runs, Python's cycle collector runs on the GUI thread only (``GuiThreadCollection``).
Left automatic, it runs on whichever thread allocates past its threshold, and a worker building a
model allocates the most: a cycle that holds a widget, a dialog or a plot item is then destroyed on
the worker's thread, which Qt forbids, and which hung the test suite (the worker, holding the GIL,
waited in a Qt destructor for the GUI thread, which waited for the GIL in a pyqtgraph paint).
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from .core.events import Status
from .core.progress import Progress

PROGRESS_INTERVAL_S = 0.05  # progress callbacks are forwarded at most ~20 times a second
COALESCE_INTERVAL_S = 0.05  # coalesced events reach the GUI thread at most ~20 times a second
COLLECT_INTERVAL_MS = 250  # how often the GUI thread runs the collections that fell due meanwhile


@dataclass(frozen=True)
class Returned:
    """What a plain call returned; emitted once, as the last ``event`` before ``finished``."""

    value: Any


class Worker(QObject):
    """Runs one piece of long work on whatever thread it is moved to; see the module docstring."""

    event = Signal(object)  # a core event, a Status for progress, or Returned(value)
    failed = Signal(object)  # the exception (WorkbenchError: a message for a person)
    finished = Signal()  # always emitted, after everything else
    ready = Signal()  # coalescing workers only: take_events() has something that should not wait

    def __init__(
        self,
        work: Callable[[threading.Event], Any],
        *,
        iterate: bool,
        name: str = "work",
        coalesce: tuple[type, ...] = (),
    ):
        super().__init__()
        self._work = work
        self._iterate = iterate
        self.name = name
        self.coalesce = coalesce
        self.stop_event = threading.Event()
        self._last_progress = 0.0
        self._queue: deque[Any] = deque()  # coalescing workers: events the GUI has not taken yet
        self._queue_lock = threading.Lock()

    @classmethod
    def from_iterator(
        cls, make: Callable[[threading.Event], Iterable[Any]], name: str = "work", coalesce: tuple[type, ...] = ()
    ) -> Worker:
        """``make(stop)`` returns an iterator; each item it yields becomes an ``event``. Items of the
        ``coalesce`` types are handed over in batches instead (see the module docstring)."""
        return cls(make, iterate=True, name=name, coalesce=coalesce)

    @classmethod
    def from_call(cls, call: Callable[[Progress, threading.Event], Any], name: str = "work") -> Worker:
        """``call(progress, stop)``; its progress becomes Status events, its result ``Returned``."""
        worker = cls(lambda stop: None, iterate=False, name=name)
        worker._work = lambda stop: call(worker._progress, stop)
        return worker

    def stop(self) -> None:
        """Ask the work to end at its next check; safe from any thread."""
        self.stop_event.set()

    @Slot()
    def run(self) -> None:
        try:
            if self._iterate:
                iterator = iter(self._work(self.stop_event))
                try:
                    for item in iterator:
                        self._deliver(item)
                finally:
                    if self.coalesce:
                        self.ready.emit()  # whatever is queued goes before failed/finished
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
            else:
                self.event.emit(Returned(self._work(self.stop_event)))
        except Exception as exc:  # every failure reaches the GUI as a signal, never a dead thread
            self.failed.emit(exc)
        finally:
            self.finished.emit()
            # No moveToThread back to the GUI thread here: called from Python it holds the GIL while
            # it waits for Qt's locks, and a GUI thread holding one of those while calling into
            # Python (a disconnect, a virtual override) waits for the GIL: a deadlock caught in a
            # stack dump. A finished thread's objects are deleted safely from the GUI thread.
            _forget_dummy_thread()

    def _deliver(self, item: Any) -> None:
        if not self.coalesce:
            self.event.emit(item)
            return
        with self._queue_lock:
            self._queue.append(item)
        if not isinstance(item, self.coalesce):
            self.ready.emit()  # RunStarted, TrainingFinished…: not worth waiting for the next tick

    def take_events(self) -> list[Any]:
        """Everything queued so far, oldest first (coalescing workers; safe from any thread)."""
        with self._queue_lock:
            items = list(self._queue)
            self._queue.clear()
        return items

    def _progress(self, done: int, total: int | None = None, message: str = "") -> None:
        # Downloads report every 64 KB; the GUI needs a handful of updates per second.
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_INTERVAL_S and not (total and done >= total):
            return
        self._last_progress = now
        self.event.emit(Status(message, done, total))


def _forget_dummy_thread() -> None:
    """Drop the ``threading._DummyThread`` Python made for this QThread, as the thread ends.

    Python registers a "dummy" Thread for a foreign thread the first time code on it calls
    ``threading.current_thread()`` (``Thread.join`` does, so the core's helper threads trigger it)
    and never removes it, "since it is impossible to detect the termination of alien threads"
    (threading docs). A worker knows when its thread ends, so it removes its own entry; otherwise
    ``threading.enumerate()`` lists a finished worker until the OS reuses its thread id, and a
    thread-leak check cannot tell it from a live one. Uses CPython's registry, checked defensively.
    """
    active = getattr(threading, "_active", None)
    lock = getattr(threading, "_active_limbo_lock", None)
    dummy = getattr(threading, "_DummyThread", None)
    if active is None or lock is None or dummy is None:
        return
    ident = threading.get_ident()
    with lock:
        if isinstance(active.get(ident), dummy):
            del active[ident]


class GuiThreadCollection(QObject):
    """Runs Python's cycle collector on the GUI thread while worker threads exist.

    ``pin()`` turns automatic collection off (process-wide, counted, so two pools can pin at once)
    and starts a timer that does what the automatic collector would have done, by the same
    per-generation thresholds, but always here. ``unpin()`` restores automatic collection when the
    last pin goes (no worker thread is left to run it; ``start`` pins before a thread starts).
    The pattern of calibre and pyqtgraph's GarbageCollector, scoped to the time a worker can
    allocate, so a process without jobs collects as usual.
    """

    _pins = 0  # process-wide: automatic collection is off while this is above zero
    _was_enabled = True  # what to restore when the last pin goes

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pinned = False
        self._timer = QTimer(self)
        self._timer.setInterval(COLLECT_INTERVAL_MS)
        self._timer.timeout.connect(collect_what_is_due)

    def pin(self) -> None:
        if self._pinned:
            return
        self._pinned = True
        cls = GuiThreadCollection
        if cls._pins == 0:
            cls._was_enabled = gc.isenabled()
            gc.disable()
        cls._pins += 1
        self._timer.start()

    def unpin(self) -> None:
        if not self._pinned:
            return
        self._pinned = False
        self._timer.stop()
        cls = GuiThreadCollection
        cls._pins -= 1
        if cls._pins == 0:
            # Only what is due, as the automatic collector would: a full collection here would
            # stall the window after every keystroke's prediction (it takes ~0.5 s with torch loaded).
            collect_what_is_due()
            if cls._was_enabled:
                gc.enable()


@Slot()
def collect_what_is_due() -> None:
    """Collect the oldest generation whose count passed its threshold, as CPython's automatic
    collector decides (a younger generation is collected with it)."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    for generation in (2, 1, 0):
        if thresholds[generation] and counts[generation] > thresholds[generation]:
            gc.collect(generation)
            return


class Job(QObject):
    """One worker on its own QThread, with callbacks run on the thread that created the job."""

    ended = Signal(object)  # this job, once its thread has stopped

    def __init__(
        self,
        worker: Worker,
        *,
        on_event: Callable[[Any], None] | None = None,
        on_failed: Callable[[Any], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        parent: QObject | None = None,
        delivering: Callable[[], bool] = lambda: True,
    ):
        super().__init__(parent)
        self._delivering = delivering  # False once the pool closed: the callbacks' widgets may be gone
        self.worker = worker
        self.name = worker.name
        self._on_event, self._on_failed, self._on_finished = on_event, on_failed, on_finished
        self.thread = QThread()
        self.thread.setObjectName(f"workbench: {worker.name}")
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        # Bound methods of this GUI-thread object: Qt queues the calls onto the GUI thread.
        worker.event.connect(self._event)
        worker.failed.connect(self._failed)
        worker.finished.connect(self._finished)
        self._drain_timer: QTimer | None = None
        if worker.coalesce:
            worker.ready.connect(self._drain)
            self._drain_timer = QTimer(self)
            self._drain_timer.setInterval(round(COALESCE_INTERVAL_S * 1000))
            self._drain_timer.timeout.connect(self._drain)
        # Direct: quit must not wait for the GUI loop, which may itself be blocked in wait().
        worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.thread.finished.connect(self._thread_finished)

    def start(self) -> Job:
        if self._drain_timer is not None:
            self._drain_timer.start()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.worker.stop()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def wait(self, timeout_ms: int) -> bool:
        """Block until the thread ends (True) or the timeout passes (False)."""
        return self.thread.wait(timeout_ms)

    @Slot(object)
    def _event(self, item: Any) -> None:
        if self._on_event is not None and self._delivering():
            self._on_event(item)

    @Slot()
    def _drain(self) -> None:
        """Hand every queued event of a coalescing worker to the callback, in order."""
        for item in self.worker.take_events():
            self._event(item)

    @Slot(object)
    def _failed(self, error: Any) -> None:
        self._drain()  # the events before the failure come first
        if self._on_failed is not None and self._delivering():
            self._on_failed(error)

    @Slot()
    def _finished(self) -> None:
        self._drain()
        if self._drain_timer is not None:
            self._drain_timer.stop()
        if self._on_finished is not None and self._delivering():
            self._on_finished()

    @Slot()
    def _thread_finished(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.stop()
        self.ended.emit(self)


class JobPool(QObject):
    """Keeps every running job alive (Python must hold the QThread until it ends) and can stop
    and wait for them all, which is what closing the window needs."""

    idle = Signal()  # the last running job has ended

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._jobs: list[Job] = []
        self._closed = False
        self._collection = GuiThreadCollection(self)

    def start(
        self,
        worker: Worker,
        *,
        on_event: Callable[[Any], None] | None = None,
        on_failed: Callable[[Any], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> Job:
        job = Job(worker, on_event=on_event, on_failed=on_failed, on_finished=on_finished, delivering=self.is_open)
        if self._closed:
            return job  # never started: the window that asked is closing
        job.ended.connect(self._ended)
        self._jobs.append(job)
        self._collection.pin()  # before the thread exists: it must never run the collector
        return job.start()

    def is_open(self) -> bool:
        return not self._closed

    def close(self) -> None:
        """The window is closing: stop every job, start no new one (a timer may still fire), and
        call no callback any more, since the widgets they update are about to be deleted. Threads
        still end on their own; ``idle`` still says when the last one has."""
        self._closed = True
        self.stop_all()

    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def running(self) -> list[Job]:
        return [job for job in self._jobs if job.is_running()]

    def stop_all(self) -> None:
        for job in self._jobs:
            job.stop()

    def wait_all(self, timeout_ms: int) -> bool:
        """Wait for every job's thread, all within ``timeout_ms`` in total; True if all ended."""
        deadline = time.monotonic() + timeout_ms / 1000
        for job in list(self._jobs):
            left = max(0, int((deadline - time.monotonic()) * 1000))
            if not job.wait(left):
                return False
        # Every thread has ended: the GUI thread is the only one left (the ``ended`` signals that
        # would unpin are still queued, and a closing window may never run the loop again).
        self._collection.unpin()
        return True

    @Slot(object)
    def _ended(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        job.deleteLater()
        if not self._jobs:
            self._collection.unpin()
            self.idle.emit()
