"""The Qt binding itself: PySide6 6.12.0 dropped a reference to True on every Signal.emit()
(and to None when a queued slot ran), so a long session crashed with "Fatal Python error:
bool_dealloc" (bench.ui_responsiveness hit it after a few real steps). The pinned version must
not leak or drop references on the paths the worker uses."""

from __future__ import annotations

import sys

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal

EMITS = 2000


class _Source(QObject):
    plain = Signal(int)
    result = Signal(int, object, object)


class _Sink(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def take(self, _id: int, _result: object, _error: object) -> None:
        self.count += 1


def test_emit_keeps_the_refcounts_of_true_and_none(qapp) -> None:
    source, sink = _Source(), _Sink()
    source.result.connect(sink.take, Qt.ConnectionType.QueuedConnection)
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(EMITS):
        source.plain.emit(1)
        source.result.emit(1, None, None)
    QCoreApplication.processEvents()
    assert sink.count == EMITS
    # other code may take or drop a handful of references meanwhile; a broken binding moves
    # them by about EMITS
    assert abs(sys.getrefcount(True) - true_before) < EMITS // 10
    assert abs(sys.getrefcount(None) - none_before) < EMITS // 10
