"""Desktop fixtures: Qt offscreen, a temp config folder, and an EngineSession on a fresh temp
database with the scripted model client (the real embedder, shared per test session)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from desktop.session import EngineSession  # noqa: E402
from desktop.settings import Settings  # noqa: E402
from engine.llm.scripted import ScriptedClient  # noqa: E402


@pytest.fixture(autouse=True)
def no_engine_thread_left() -> Iterator[None]:
    """Every window and worker a test opens is shut down by its end (a running QThread left to
    the interpreter's exit would abort the whole run)."""
    yield
    from desktop.worker import _running

    left = [w for w in _running if w.running]
    for worker in left:
        worker.shutdown()
    assert not left, "a test left an engine worker running (close its window)"


@pytest.fixture(autouse=True)
def no_close_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows closed by fixtures must not stop on the unsaved-edits question (a modal dialog
    would wait forever offscreen); test_main_window tests the question itself."""
    from desktop.main_window import MainWindow

    monkeypatch.setattr(MainWindow, "ask_before_discarding", False)


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings go to a temp folder, never the user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv("MEMEX_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db_path=str(tmp_path / "memex.db"))


@pytest.fixture
def scripted() -> ScriptedClient:
    """The model of the test: enqueue replies (engine.llm.scripted.call) before sending."""
    return ScriptedClient(n_ctx=4096)


@pytest.fixture
def make_session(
    settings: Settings, scripted: ScriptedClient, embedder
) -> Iterator[Callable[..., EngineSession]]:
    """EngineSession factory: the scripted client and the shared embedder, not closed after."""
    sessions: list[EngineSession] = []

    def make(s: Settings | None = None, client=None) -> EngineSession:
        session = EngineSession(
            s or settings,
            client_factory=lambda _: client or scripted,
            embedder_factory=lambda _: embedder,
            close_models=False,
        )
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def loaded_session(make_session) -> EngineSession:
    session = make_session()
    session.load(lambda text, percent: None)
    return session


@pytest.fixture
def worker(qtbot, loaded_session: EngineSession):
    from desktop.worker import EngineWorker

    w = EngineWorker(loaded_session)
    yield w
    w.shutdown()


@pytest.fixture
def saved() -> list[Settings]:
    """What the window saved, in order (settings are saved through this, not to disk)."""
    return []


@pytest.fixture
def open_window(qtbot, make_session, saved):
    """Open a MainWindow on the scripted model (or `client`) and wait until it loaded or
    failed; closed after the test."""
    from desktop.main_window import MainWindow

    windows: list[MainWindow] = []

    def open_(s: Settings, client=None) -> MainWindow:
        window = MainWindow(s, lambda st: make_session(st, client), saved.append)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.loaded or window.error_box is not None, timeout=20_000)
        windows.append(window)
        return window

    yield open_
    for window in windows:
        window.close()


@pytest.fixture
def window(open_window, settings):
    w = open_window(settings)
    assert w.loaded
    return w


@pytest.fixture
def slow() -> ScriptedClient:
    """A model that streams 2 characters every 10 ms: a reply of 1,000 characters takes ~5 s."""
    return ScriptedClient(n_ctx=4096, piece_chars=2, piece_delay=0.01)
