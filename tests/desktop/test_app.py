"""The app's entry point (desktop.app, what the built binary runs): --db / --model for one run,
--selftest, and one Memex per memory file."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from desktop import app
from desktop import session as session_module
from desktop.settings import Settings, load_settings, load_window_state, save_settings
from engine.agent import MemGPTAgent
from engine.agents import list_agents
from engine.errors import ModelLoadError
from engine.llm.scripted import ScriptedClient
from engine.store.db import open_store

REPO = Path(__file__).resolve().parents[2]


def _app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "MEMEX_CONFIG_DIR": str(tmp_path / "config"),
        "QT_QPA_PLATFORM": "offscreen",
        **extra,
    }


def test_db_and_model_given_for_one_run_are_not_saved(config_dir: Path) -> None:
    saved = Settings(db_path="/home/me/memex.db", chat_model="chat", n_ctx=4096)
    overrides = {"db_path": "/tmp/other.db", "chat_model": "/tmp/model.gguf"}
    save = app._saver(saved, overrides)
    # the window saves what it runs with, a new context size included
    save(dataclasses.replace(saved, **overrides, n_ctx=2048)).result()
    kept = load_settings()
    assert (kept.db_path, kept.chat_model, kept.n_ctx) == ("/home/me/memex.db", "chat", 2048)
    # a model chosen in the window during that run is the user's choice: saved
    save(dataclasses.replace(saved, db_path="/tmp/other.db", chat_model="small")).result()
    assert load_settings().chat_model == "small"


def test_selftest_with_a_missing_model_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = app.main(["--selftest", "--model", str(tmp_path / "missing.gguf")])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert len(out) == 1 and out[0].startswith("memex selftest: FAIL at chat model after ")
    assert "missing.gguf" in out[0] and "Choose a GGUF file" in out[0]


def test_selftest_checks_what_ships_not_what_was_saved(
    tmp_path: Path, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The saved memory file and models are the user's: a selftest neither writes to that file
    nor fails because a model file they chose has moved."""
    mine = tmp_path / "mine.db"
    save_settings(Settings(db_path=str(mine), chat_model=str(tmp_path / "moved.gguf")))
    assert app.main(["--selftest", "--model", str(tmp_path / "given.gguf")]) == 1
    line = capsys.readouterr().out
    assert "given.gguf" in line and "moved.gguf" not in line
    assert not mine.exists()


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "desktop", "--version"], cwd=REPO, capture_output=True, text=True
    )
    from engine import __version__

    assert done.returncode == 0 and done.stdout.strip() == f"memex {__version__}"


def test_file_open_elsewhere_says_so_and_retry_opens_it_once_free(
    qtbot, open_window, settings: Settings
) -> None:
    held = open_store(settings.db_path)  # another Memex has the file
    try:
        window = open_window(settings)
        assert not window.loaded
        box = window.error_box
        assert box is not None and box.windowTitle() == "The memory file is in use"
        assert "open in another Memex" in box.text() and settings.db_path in box.text()
        retry = next(b for b in box.buttons() if b.text() == "Retry")
    finally:
        held.close()
    retry.click()
    qtbot.waitUntil(lambda: window.loaded, timeout=20_000)
    assert window.session.store is not None and str(window.session.store.path) == settings.db_path


def test_new_settings_on_the_same_file_keep_it_open(make_session, settings: Settings) -> None:
    """Reloading with new settings reuses the open file (a second open would wait for its own
    lock); a failed reload leaves it, and the previous embedder, in use."""
    session = make_session()
    session.load(lambda *_: None)
    store = session.store
    session.load(lambda *_: None, dataclasses.replace(settings, n_ctx=2048))
    assert session.store is store and session.settings.n_ctx == 2048

    def broken(_: Settings):
        raise OSError("no such model")

    embedder_before = store.embedder
    session._client_factory = broken
    with pytest.raises(OSError):
        session.load(lambda *_: None, dataclasses.replace(settings, n_ctx=1024))
    assert session.store is store and store.embedder is embedder_before
    assert session.settings.n_ctx == 2048
    session.agent.add_user_message("still writable")


@pytest.mark.slow
def test_selftest_passes_with_the_default_models(tmp_path: Path, embedder) -> None:
    """The real chat and embedding models, one real step: what `memex --selftest` checks in the
    built app, run from source. On the user's own file (--db) it leaves their agents as they
    were, and removes an agent a killed selftest left behind."""
    db = tmp_path / "mine.db"
    with open_store(db, embedder=embedder) as store:
        for name in ("memex", "selftest-0badc0de"):
            MemGPTAgent(archival_store=store, llm_client=ScriptedClient(), name=name)
        assert sorted(a.name for a in list_agents(store)) == ["memex", "selftest-0badc0de"]
    done = subprocess.run(
        [sys.executable, "-m", "desktop", "--selftest", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=_app_env(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("memex selftest: PASS in ")
    assert "agent step" in line and "archival insert + search" in line
    with open_store(db, embedder=embedder) as store:
        assert [a.name for a in list_agents(store)] == ["memex"]


# -- settings files written by hand or by something else ----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        "null",
        '"memex"',
        '{"chat_model": 5}',
        '{"n_ctx": "big"}',
        '{"n_ctx": true}',
        '{"db_path": 7}',
        "{not json",
        "[" * 100_000 + "]" * 100_000,  # deeper than the JSON parser recurses
        '{"idle_minutes": 1000000000}',  # past Qt's 32-bit timer
        '{"agent": "  "}',
    ],
    ids=lambda text: text[:24],
)
def test_a_damaged_settings_file_gives_defaults_and_is_kept_aside(
    config_dir: Path, text: str
) -> None:
    config_dir.mkdir()
    (config_dir / "settings.json").write_text(text)
    assert load_settings() == Settings()
    assert (config_dir / "settings.json.bad").read_text() == text


def test_settings_numbers_written_as_integers_still_load(config_dir: Path) -> None:
    config_dir.mkdir()
    (config_dir / "settings.json").write_text('{"flush_at": 1, "n_ctx": 2048, "future": 3}')
    assert load_settings() == Settings(flush_at=1.0, n_ctx=2048)


def test_more_threads_than_cores_are_capped() -> None:
    cores = len(os.sched_getaffinity(0))
    assert session_module._threads(Settings(n_threads=999)) == cores
    assert session_module._threads(Settings(n_threads=1)) == 1
    assert session_module._threads(Settings(n_threads=0)) is None


def test_sigterm_closes_the_app_while_an_error_dialog_shows(tmp_path: Path) -> None:
    """A dialog left open must not keep the process alive after the window closed."""
    window = subprocess.Popen(
        [sys.executable, "-m", "desktop", "-v", "--model", str(tmp_path / "missing.gguf")]
        + ["--db", str(tmp_path / "memex.db")],
        cwd=REPO,
        env=_app_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert window.stdout is not None
    try:
        for line in window.stdout:
            if "Memex could not load its models" in line:
                break
        else:
            pytest.fail(f"exited with {window.wait()} before the error dialog")
        window.send_signal(signal.SIGTERM)
        assert window.wait(timeout=30) == 0
        assert "INFO:memex:closed" in window.stdout.read()
    finally:
        if window.poll() is None:
            window.kill()
            window.wait()


BROKEN_LIBRARIES = {
    # libllama.so gone: llama_cpp's import fails
    "llama": "sys.modules['llama_cpp'] = None",
    # libllama.so there but a library it needs gone: llama_cpp raises RuntimeError
    "ggml": "sys.meta_path.insert(0, Boom('llama_cpp'))",
    # Qt's widgets gone: found only when the window is made
    "qt widgets": "sys.modules['PySide6.QtWidgets'] = None",
}
BOOM = """
class Boom:
    def __init__(self, name):
        self.name = name
    def find_spec(self, name, path=None, target=None):
        if name == self.name:
            raise RuntimeError("Failed to load shared library 'libllama.so'")
"""


@pytest.mark.parametrize("poison", BROKEN_LIBRARIES.values(), ids=BROKEN_LIBRARIES.keys())
def test_a_missing_library_is_one_clear_line(tmp_path: Path, poison: str) -> None:
    """As when a copy of the app lost a library: no traceback, what broke and what to do."""
    script = (
        f"import sys, runpy\n{BOOM}\n{poison}\nrunpy.run_module('desktop', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "--db", str(tmp_path / "memex.db")],
        cwd=REPO,
        env=_app_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("memex: a part of Memex could not be loaded (")
    assert "make clean" in done.stderr and "Traceback" not in done.stderr


def test_a_folder_given_as_the_model_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a folder, not a model file"):
        session_module.llama_client(Settings(chat_model=str(tmp_path)))


def test_a_settings_file_with_a_bom_loads(config_dir: Path) -> None:
    """Windows Notepad writes a byte-order mark in front of the JSON."""
    config_dir.mkdir()
    (config_dir / "settings.json").write_bytes(b"\xef\xbb\xbf" + b'{"n_ctx": 2048}')
    assert load_settings().n_ctx == 2048


def test_a_damaged_window_layout_gives_the_default_one(config_dir: Path) -> None:
    config_dir.mkdir()
    (config_dir / "window.json").write_text("[" * 100_000 + "]" * 100_000)
    assert load_window_state() is None


def test_a_memory_file_under_home_is_found_there(
    make_session, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    session = make_session(dataclasses.replace(settings, db_path="~/notes.db"))
    session.load(lambda *_: None)
    assert (tmp_path / "home" / "notes.db").is_file()
    assert not (tmp_path / "~").exists()
