"""The worker bridge: events in order, every failure reported, cooperative stop, clean thread end."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from PySide6.QtCore import QThread

from workbench.core.errors import Cancelled
from workbench.core.events import Status
from workbench.worker import Job, JobPool, Returned, Worker


class Collector:
    def __init__(self):
        self.events, self.errors, self.finished = [], [], 0
        self.threads = set()

    def event(self, item):
        self.events.append(item)
        self.threads.add(QThread.currentThread())

    def failed(self, error):
        self.errors.append(error)

    def done(self):
        self.finished += 1


def run_job(qtbot, worker: Worker, pool: JobPool | None = None) -> tuple[Collector, Job]:
    pool = pool or JobPool()
    seen = Collector()
    job = pool.start(worker, on_event=seen.event, on_failed=seen.failed, on_finished=seen.done)
    qtbot.waitUntil(lambda: seen.finished == 1, timeout=5000)
    assert job.wait(5000)
    return seen, job


def test_iterator_events_arrive_in_order_on_the_gui_thread(qtbot):
    seen, job = run_job(qtbot, Worker.from_iterator(lambda stop: iter(range(5))))
    assert seen.events == [0, 1, 2, 3, 4]
    assert seen.errors == []
    assert seen.threads == {QThread.currentThread()}  # callbacks run on the GUI thread
    assert not job.is_running()


def test_call_reports_progress_then_its_result(qtbot):
    def work(progress, stop):
        for i in range(3):
            progress(i + 1, 3, "counting")
        return "done"

    seen, _ = run_job(qtbot, Worker.from_call(work))
    assert isinstance(seen.events[-1], Returned) and seen.events[-1].value == "done"
    statuses = [e for e in seen.events if isinstance(e, Status)]
    assert statuses and statuses[-1] == Status("counting", 3, 3)  # the final update is never dropped


@pytest.mark.parametrize("iterate", [True, False])
def test_every_exception_becomes_failed_then_finished(qtbot, iterate):
    def boom(*_args):
        raise ValueError("broken")

    def gen(stop):
        yield 1
        boom()

    worker = Worker.from_iterator(gen) if iterate else Worker.from_call(boom)
    seen, _ = run_job(qtbot, worker)
    assert len(seen.errors) == 1 and isinstance(seen.errors[0], ValueError)
    assert seen.finished == 1


def test_stop_is_cooperative(qtbot):
    started = threading.Event()

    def endless(stop):
        i = 0
        while not stop.is_set():
            started.set()
            yield i
            i += 1
            stop.wait(0.001)
        yield "stopped"

    pool = JobPool()
    seen = Collector()
    job = pool.start(Worker.from_iterator(endless), on_event=seen.event, on_failed=seen.failed, on_finished=seen.done)
    assert started.wait(5)
    job.stop()
    qtbot.waitUntil(lambda: seen.finished == 1, timeout=5000)
    assert seen.events[-1] == "stopped"
    assert pool.wait_all(5000)
    qtbot.waitUntil(lambda: not pool.jobs(), timeout=2000)  # the pool lets go of ended jobs


def test_cancelled_call_reports_cancelled(qtbot):
    def work(progress, stop):
        stop.wait(5)
        raise Cancelled("stopped")

    pool = JobPool()
    seen = Collector()
    job = pool.start(Worker.from_call(work), on_failed=seen.failed, on_finished=seen.done)
    pool.stop_all()
    qtbot.waitUntil(lambda: seen.finished == 1, timeout=5000)
    assert isinstance(seen.errors[0], Cancelled)
    assert job.wait(5000)


def test_wait_all_is_bounded(qtbot):
    release = threading.Event()
    pool = JobPool()
    pool.start(Worker.from_call(lambda progress, stop: release.wait(10)))
    assert pool.wait_all(50) is False  # still running: the wait gives up instead of hanging
    release.set()
    assert pool.wait_all(5000) is True


# --- coalescing: many small events reach the GUI thread in a few batches -------------------------


def count_batches(worker: Worker) -> list[int]:
    """Sizes of the non-empty batches the GUI thread takes from a coalescing worker."""
    sizes: list[int] = []
    take = worker.take_events

    def counting():
        items = take()
        if items:
            sizes.append(len(items))
        return items

    worker.take_events = counting
    return sizes


def test_coalesced_events_arrive_all_in_order_in_few_deliveries(qtbot):
    def gen(stop):
        yield "started"
        yield from range(5000)  # a burst far faster than the GUI's 20 deliveries a second
        yield "finished"

    worker = Worker.from_iterator(gen, coalesce=(int,))
    sizes = count_batches(worker)
    seen, _ = run_job(qtbot, worker)
    assert seen.events == ["started", *range(5000), "finished"]
    assert seen.threads == {QThread.currentThread()}
    assert sum(sizes) == 5002 and len(sizes) <= 10, sizes


def test_a_coalesced_event_is_not_held_back_by_a_slow_step(qtbot):
    """An event waiting in the queue is taken by the GUI's timer even while the worker is busy."""
    arrived: list[float] = []
    release = threading.Event()

    def gen(stop):
        yield 1
        yield 2  # within the coalescing interval of the first: queued, no wake-up
        release.wait(5)  # a long step
        yield 3

    pool = JobPool()
    start = time.monotonic()
    pool.start(
        Worker.from_iterator(gen, coalesce=(int,)), on_event=lambda item: arrived.append(time.monotonic() - start)
    )
    qtbot.waitUntil(lambda: len(arrived) == 2, timeout=2000)  # both, while the worker still waits
    release.set()
    assert pool.wait_all(5000)
    assert arrived[1] < 1.0


def test_coalesced_events_come_before_the_failure(qtbot):
    def gen(stop):
        yield from range(3)
        raise ValueError("broken")

    order = []
    pool = JobPool()
    done = []
    pool.start(
        Worker.from_iterator(gen, coalesce=(int,)),
        on_event=order.append,
        on_failed=lambda error: order.append(type(error).__name__),
        on_finished=lambda: done.append(1),
    )
    qtbot.waitUntil(lambda: done == [1], timeout=5000)
    assert order == [0, 1, 2, "ValueError"]
    assert pool.wait_all(5000)


def test_a_finished_worker_leaves_no_thread_behind(qtbot):
    """Thread.join (and anything else calling threading.current_thread()) on a QThread makes
    Python register a dummy thread; the worker removes it as its thread ends."""
    before = threading.active_count()

    def work(progress, stop):
        helper = threading.Thread(target=lambda: None)
        helper.start()
        helper.join()  # calls threading.current_thread() on the QThread
        return threading.current_thread().name

    seen, _ = run_job(qtbot, Worker.from_call(work))
    assert seen.events[-1].value.startswith("Dummy")
    assert threading.active_count() == before


def test_a_cycle_left_by_the_gui_is_collected_on_the_gui_thread_while_a_worker_allocates(qtbot):
    """The collector runs where the allocation happens; a worker building a model allocates the
    most, so without pinning, a cycle holding a Qt object would be destroyed on the worker thread."""
    finalized_on: list[int] = []
    automatic_in_worker: list[bool] = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            finalized_on.append(threading.get_ident())

    held = [Cycle()]
    released = threading.Event()

    def release_the_cycle(_item):  # on the GUI thread, once the worker runs
        held.clear()
        released.set()

    def allocate(stop):
        automatic_in_worker.append(gc.isenabled())
        yield "running"
        released.wait(5)
        kept, deadline = [], time.monotonic() + 10
        while not finalized_on and not stop.is_set() and time.monotonic() < deadline:
            kept.extend([] for _ in range(1000))  # net new containers: what triggers a collection
            time.sleep(0.001)

    assert gc.isenabled()
    pool = JobPool()
    job = pool.start(Worker.from_iterator(allocate), on_event=release_the_cycle)
    qtbot.waitUntil(lambda: bool(finalized_on), timeout=10_000)
    assert finalized_on == [threading.get_ident()]  # the GUI thread, never the worker's
    assert automatic_in_worker == [False]
    job.stop()
    assert pool.wait_all(5000)
    assert gc.isenabled()  # automatic collection is back once no worker runs


def test_collection_is_restored_only_when_the_last_pool_is_idle(qtbot):
    first, second = JobPool(), JobPool()
    release = threading.Event()
    first.start(Worker.from_call(lambda progress, stop: release.wait(5)))
    second.start(Worker.from_call(lambda progress, stop: None))
    assert second.wait_all(5000)
    assert not gc.isenabled()  # the first pool's worker still runs
    release.set()
    assert first.wait_all(5000)
    assert gc.isenabled()


def test_a_closed_pool_starts_nothing_and_calls_no_callback(qtbot):
    """After the window closed its pool, a job's late events must not reach widgets being deleted,
    and a timer that fires later cannot start new work."""
    pool = JobPool()
    seen = Collector()
    release = threading.Event()

    def work(progress, stop):
        release.wait(5)
        return "late"

    pool.start(Worker.from_call(work), on_event=seen.event, on_failed=seen.failed, on_finished=seen.done)
    pool.close()
    release.set()
    assert pool.wait_all(5000)
    qtbot.wait(100)  # let queued signals arrive
    assert seen.events == [] and seen.errors == [] and seen.finished == 0

    late = Collector()
    job = pool.start(Worker.from_iterator(lambda stop: iter([1])), on_event=late.event, on_finished=late.done)
    qtbot.wait(100)
    assert not job.is_running() and late.events == [] and late.finished == 0 and pool.jobs() == []
