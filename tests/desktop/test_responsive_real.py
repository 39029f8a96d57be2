"""The window stays responsive while the real default model runs a step: inference and database
work run on the engine thread, and the UI thread's event loop keeps ticking."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer

from desktop.chat_view import MessageBubble
from desktop.main_window import MainWindow
from desktop.session import EngineSession
from engine.types import ReplyDelta

pytestmark = pytest.mark.slow

TICK_MS = 5
MAX_GAP_S = 0.100


@pytest.fixture
def real_window(qtbot, chat_client, embedder, settings):
    """The window on the real default chat model (the session's shared one)."""
    window = MainWindow(
        settings,
        lambda s: EngineSession(
            s,
            client_factory=lambda _: chat_client,
            embedder_factory=lambda _: embedder,
            close_models=False,
        ),
        save=lambda s: None,
    )
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.loaded and not window.worker.busy, timeout=60_000)
    yield window
    window.close()


def test_event_loop_never_stalls_during_a_real_step(qtbot, real_window):
    window = real_window
    deltas: list[float] = []
    window.worker.event.connect(
        lambda e: deltas.append(time.perf_counter()) if isinstance(e, ReplyDelta) else None
    )
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    window.send("Hi! My name is Dana and I live in Oslo. Please greet me.")
    qtbot.waitUntil(lambda: not window.stepping, timeout=600_000)
    timer.stop()

    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    step_seconds = ticks[-1] - ticks[0]
    assert step_seconds > 1.0, "the step was too short to say anything about responsiveness"
    assert max(gaps) < MAX_GAP_S, f"longest gap {max(gaps) * 1000:.0f} ms over {step_seconds:.1f} s"
    replies = [
        w for w in window.chat.entries() if isinstance(w, MessageBubble) and w.role == "assistant"
    ]
    assert replies and replies[-1].text.strip(), "the real model answered nothing"
    assert len(deltas) >= 2, "the reply did not stream"
    print(
        f"\nstep {step_seconds:.1f} s, {len(ticks)} ticks, longest gap {max(gaps) * 1000:.1f} ms,"
        f" {len(deltas)} streamed pieces"
    )


def test_stop_halts_the_real_model_mid_reply(qtbot, real_window):
    window = real_window
    first_piece: list[float] = []
    window.worker.event.connect(
        lambda e: (
            first_piece.append(time.perf_counter())
            if isinstance(e, ReplyDelta) and not first_piece
            else None
        )
    )
    window.send("Write a long poem about the sea, at least twenty lines.")
    qtbot.waitUntil(lambda: bool(first_piece), timeout=300_000)
    window.stop()
    stopped_at = time.perf_counter()
    qtbot.waitUntil(lambda: not window.stepping, timeout=60_000)
    assert time.perf_counter() - stopped_at < 2.0  # a token or two, not the rest of the reply
    stored = [(m.role, m.content) for m in window.session.agent.recall.all()]
    assert stored[0] == ("user", "Write a long poem about the sea, at least twenty lines.")
    assert stored[-1][0] == "system" and "stopped" in stored[-1][1]
