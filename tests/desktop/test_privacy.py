"""The app's own files (settings.json, window.json) are readable by the user only, and the app,
running a step, listens on no network port. Modes under the process's umask, or 022 where that
already hides new files from others (see tests/engine/test_privacy.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from desktop.settings import (
    Settings,
    WindowState,
    save_settings,
    save_settings_later,
    save_window_state_later,
    settings_path,
    window_state_path,
)
from tests.privacy import (
    linux_only,
    mode,
    posix_modes,
    run_probe,
    umask_that_shows_a_leak,  # noqa: F401 - the fixture, used below
)

pytestmark = pytest.mark.usefixtures("umask_that_shows_a_leak")


@posix_modes
def test_settings_json_is_private(config_dir: Path, tmp_path: Path) -> None:
    save_settings(Settings(db_path=str(tmp_path / "memex.db")))
    assert mode(settings_path()) == "0o600"
    settings_path().chmod(0o644)  # one written before Memex kept it private ...
    save_settings_later(Settings(db_path=str(tmp_path / "other.db"))).result()
    assert mode(settings_path()) == "0o600"  # ... is private from the next save on
    assert "other.db" in settings_path().read_text()


@posix_modes
def test_window_json_is_private(config_dir: Path) -> None:
    save_window_state_later(WindowState(b"geometry", b"docks")).result()
    assert mode(window_state_path()) == "0o600"
    # a .tmp an earlier crash left behind does not pass its mode on
    leftover = window_state_path().with_suffix(".json.tmp")
    leftover.write_text("{")
    leftover.chmod(0o644)
    save_window_state_later(WindowState(b"geometry 2", b"docks")).result()
    assert mode(window_state_path()) == "0o600" and not leftover.exists()


@linux_only
def test_the_app_running_a_step_listens_on_no_port(tmp_path: Path, embed_path: Path) -> None:
    """The window (offscreen) with the scripted model and the real embedder: after a step with
    memory effects, no listening socket; on close it saves window.json, privately."""
    config = tmp_path / "config"
    report = run_probe(
        "desktop", tmp_path / "memex.db", MEMEX_CONFIG_DIR=str(config), QT_QPA_PLATFORM="offscreen"
    )
    assert report["listening"] == []
    assert report["python_sockets"] == []
    assert [line.split()[0] for line in report["control"]] == ["tcp", "udp"]
    if os.name == "posix":
        assert report["window_json"] == "0o100600"
