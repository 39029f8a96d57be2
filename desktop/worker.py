"""The engine worker: one QThread that runs every engine call (model and disk), one at a time.

The UI thread submits jobs (callables taking the EngineSession) and gets their results or errors
back as queued signals, in its own thread, in the order they were submitted (the pattern of
Anki's task manager). Step events (the reply as it is written, tool runs, page-outs) come back
the same way while a step runs. A step is stopped through the threading.Event its job was given
(see MainWindow.stop): the one thing shared across threads besides the queued signals.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from desktop.session import EngineSession

logger = logging.getLogger(__name__)

Job = Callable[[EngineSession], Any]
OnDone = Callable[[Any], None]
OnError = Callable[[BaseException], None]


@dataclass(frozen=True)
class _Task:
    id: int
    job: Job
    on_done: OnDone | None
    on_error: OnError | None


class _Runner(QObject):
    """Lives on the worker thread; runs tasks as their signal arrives."""

    finished = Signal(int, object, object)  # task id, result, error

    def __init__(self, session: EngineSession) -> None:
        super().__init__()
        self.session = session

    @Slot(object)
    def run(self, task: _Task) -> None:
        try:
            result = task.job(self.session)
        except Exception as exc:  # every failure goes back to the UI as an error to show
            logger.debug("engine job failed", exc_info=True)
            self.finished.emit(task.id, None, exc)
            return
        self.finished.emit(task.id, result, None)


def _quit_engine_thread(_session: EngineSession) -> None:
    """The last job: the thread's event loop ends once the jobs before it ran."""
    QThread.currentThread().quit()


_running: weakref.WeakSet[EngineWorker] = weakref.WeakSet()


@atexit.register
def _stop_running_workers() -> None:
    """A QThread destroyed while running aborts the process; a worker whose window was never
    closed (sys.exit, a test that forgot) is shut down at exit instead."""
    for worker in list(_running):
        logger.warning("an engine worker was still running at exit; shutting it down")
        worker.shutdown()


class EngineWorker(QObject):
    """The UI thread's handle on the engine thread."""

    event = Signal(object)  # a StepEvent (engine.types), delivered on the UI thread
    progress = Signal(str, int)  # loading: what is happening, percent
    busy_changed = Signal(bool)
    failed = Signal(object)  # an error of a job submitted without on_error
    _submit = Signal(object)

    def __init__(self, session: EngineSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._thread = QThread()
        self._thread.setObjectName("memex-engine")
        self._runner = _Runner(session)
        self._runner.moveToThread(self._thread)
        self._submit.connect(self._runner.run, Qt.ConnectionType.QueuedConnection)
        self._runner.finished.connect(self._finish, Qt.ConnectionType.QueuedConnection)
        self._tasks: dict[int, _Task] = {}
        self._yielding: dict[int, threading.Event] = {}  # idle jobs' stop flags, by task id
        self._ids = itertools.count(1)
        self._thread.start()
        _running.add(self)

    # -- from the UI thread --------------------------------------------------------------
    def submit(
        self, job: Job, on_done: OnDone | None = None, on_error: OnError | None = None
    ) -> int:
        """Run `job(session)` on the engine thread; `on_done(result)` or `on_error(exc)` run
        on the UI thread afterwards."""
        self.stop_idle_work()  # what the user asked for comes before housekeeping
        task = _Task(next(self._ids), job, on_done, on_error)
        self._tasks[task.id] = task
        if len(self._tasks) == 1:
            self.busy_changed.emit(True)
        self._submit.emit(task)
        return task.id

    def submit_idle(
        self,
        job: Callable[[EngineSession, threading.Event], Any],
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
    ) -> int:
        """Run idle work, `job(session, stop)`, that yields: any job submitted after it (or
        stop_idle_work) sets `stop`, and the job is to end soon after, keeping what it did."""
        stop = threading.Event()
        task_id = self.submit(lambda s: job(s, stop), on_done, on_error)
        self._yielding[task_id] = stop
        return task_id

    def stop_idle_work(self) -> None:
        for stop in self._yielding.values():
            stop.set()

    @property
    def idle_work_running(self) -> bool:
        return bool(self._yielding)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def emit_event(self, event: object) -> None:
        """For jobs: hand a step event to the UI thread (a queued signal; safe from any thread)."""
        self.event.emit(event)

    def emit_progress(self, text: str, percent: int) -> None:
        self.progress.emit(text, percent)

    def shutdown(self) -> None:
        """Let the thread finish every job submitted so far (saves queued behind a step are
        not lost), then close the file. The caller stops a running step first; a job that
        cannot be stopped (a model load) is waited for, since a QThread destroyed while
        running aborts the process. Idle work is stopped."""
        self.stop_idle_work()
        self._submit.emit(_Task(next(self._ids), _quit_engine_thread, None, None))
        while not self._thread.wait(10_000):
            logger.warning("closing: waiting for the engine thread to finish its job")
        _running.discard(self)
        self.session.close()

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    # -- back on the UI thread -----------------------------------------------------------
    @Slot(int, object, object)
    def _finish(self, task_id: int, result: object, error: object) -> None:
        task = self._tasks.pop(task_id, None)
        self._yielding.pop(task_id, None)
        if task is None:
            return  # the shutdown job: nothing waits for it
        if not self._tasks:
            self.busy_changed.emit(False)
        if error is None:
            if task.on_done is not None:
                task.on_done(result)
        elif task.on_error is not None:
            task.on_error(error)  # type: ignore[arg-type]
        else:
            self.failed.emit(error)
