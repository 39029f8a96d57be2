"""The app's settings: which models (the chat model may be on a server), context size, threads,
memory-pressure lines, idle reflection.

Kept as JSON in the user's config folder (platformdirs), so they survive restarts. No Qt here. A
server's API key is never kept here: it comes from $MEMEX_API_KEY (see desktop.session).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from engine.agents import check_name
from engine.errors import InvalidInput
from engine.llm.remote import is_remote_model

logger = logging.getLogger(__name__)

MIN_CONTEXT = 1024
MAX_CONTEXT = 131072
MAX_IDLE_MINUTES = 24 * 60  # also keeps the idle timer within Qt's 32-bit milliseconds
SCHEMES = ("system", "light", "dark")
MIN_SCALE, MAX_SCALE = 0.7, 2.0


@dataclass(frozen=True)
class Settings:
    # "chat" (the default), "fast", "small" (the shipped models), a GGUF path, or the URL of an OpenAI-compatible
    # server (http://HOST:PORT/v1)
    chat_model: str = "chat"
    embed_model: str = "embed"  # "embed" (the shipped one) or a GGUF path
    db_path: str = ""  # "" = the default file (platformdirs' user data folder)
    n_ctx: int = 4096
    n_threads: int = 0  # 0 = every core
    warn_at: float = 0.7  # shares of the prompt budget, see engine.context.Thresholds
    flush_at: float = 0.9
    target_at: float = 0.6
    # reflect (heartbeat) after this many idle minutes; 0 = never. A message typed meanwhile
    # stops it (MainWindow.send), so it never keeps the user waiting.
    idle_minutes: int = 10
    agent: str = "memex"  # the agent shown at start
    scheme: str = "system"  # colours: "system" (follow it), "light" or "dark"
    text_scale: float = 1.0  # the chat's text size, times the system's (View > Zoom)
    # For a chat model on a server ("" = not set; unused for a local model):
    server_model: str = ""  # the served model's name ("": the server's only one)
    server_tokenizer: str = ""  # the model's tokenizer.json ("": the server's tokenize endpoint)
    server_template: str = ""  # chat template source: a GGUF, tokenizer_config.json or .jinja

    def checked(self) -> Settings:
        """These settings, or InvalidInput saying which value is wrong and why."""
        if not MIN_CONTEXT <= self.n_ctx <= MAX_CONTEXT:
            raise InvalidInput(f"context size must be {MIN_CONTEXT}-{MAX_CONTEXT} tokens")
        if self.n_threads < 0:
            raise InvalidInput("threads must be 0 (every core) or more")
        if not 0 < self.target_at < self.warn_at < self.flush_at <= 1:
            raise InvalidInput(
                "memory-pressure lines must satisfy 0 < page-out target < warning < page-out <= 1"
            )
        if not 0 <= self.idle_minutes <= MAX_IDLE_MINUTES:
            raise InvalidInput(f"idle minutes must be 0 (off) to {MAX_IDLE_MINUTES} (a day)")
        check_name(self.agent)
        if self.scheme not in SCHEMES:
            raise InvalidInput(f"colours must be one of {', '.join(SCHEMES)}")
        if not MIN_SCALE <= self.text_scale <= MAX_SCALE:
            raise InvalidInput(f"text size must be {MIN_SCALE}-{MAX_SCALE} times the system's")
        if not self.chat_model.strip() or not self.embed_model.strip():
            raise InvalidInput("choose a chat model and an embedding model")
        if is_remote_model(self.embed_model):
            raise InvalidInput(
                "the embedding model runs on this computer, not on a server: choose "
                '"embed" (the shipped one) or a GGUF file'
            )
        if is_remote_model(self.chat_model):
            _check_server_address(self.chat_model)
        return self


def _check_server_address(url: str) -> None:
    """InvalidInput unless `url` names a host (and a valid port, if any)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (ValueError for a port that is not a number 0-65535)
    except ValueError as exc:
        raise InvalidInput(f"the server address {url!r} is not a valid URL ({exc})") from None
    if not parts.hostname:
        raise InvalidInput(
            f"the server address {url!r} names no host: use http://HOST:PORT/v1, e.g. "
            "http://127.0.0.1:8080/v1"
        )


def config_dir() -> Path:
    """MEMEX_CONFIG_DIR if set (tests, portable installs), else the platform's config folder."""
    override = os.environ.get("MEMEX_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("memex"))


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings(path: Path | None = None) -> Settings:
    """The saved settings; defaults for a missing file, and for a damaged one (logged, the file
    kept beside as settings.json.bad so nothing the user set is lost silently)."""
    path = path or settings_path()
    if not path.exists():
        return Settings()
    try:
        # utf-8-sig: Windows Notepad saves a BOM in front of the JSON
        return _from_json(json.loads(path.read_text(encoding="utf-8-sig"))).checked()
    except (OSError, ValueError, RecursionError, InvalidInput) as exc:
        logger.warning("settings file %s is unreadable (%s); using defaults", path, exc)
        with contextlib.suppress(OSError):  # a read-only config folder: defaults all the same
            path.replace(path.with_suffix(".json.bad"))
        return Settings()


def _from_json(data: object) -> Settings:
    """Settings from a parsed settings.json; ValueError names the first value of a wrong type
    (a hand-edited file, or one from another program)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    defaults = Settings()
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        if f.name not in data:
            continue  # a setting added since the file was written: its default
        value, want = data[f.name], type(getattr(defaults, f.name))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            raise ValueError(f"{f.name} must be a {want.__name__}, not {value!r}")
        values[f.name] = value
    return Settings(**values)  # type: ignore[arg-type]


def save_settings(settings: Settings, path: Path | None = None) -> None:
    _write_atomically(path or settings_path(), json.dumps(dataclasses.asdict(settings), indent=2))


def _write_atomically(path: Path, text: str) -> None:
    """A crash mid-write leaves the old file, not half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".tmp")
    # readable by the user only (a .tmp an earlier crash left keeps its mode: set it again)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as f:
        os.chmod(partial, 0o600)
        f.write(text)
    partial.replace(path)


# One writer thread: saves run in order, off the UI thread (which must never wait on the disk).
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memex-settings")


def save_settings_later(settings: Settings, path: Path | None = None) -> Future[None]:
    """save_settings on the writer thread; a failure is logged (the app goes on)."""
    return _later(save_settings, settings, path)


def _later(write: Callable[..., None], *args: object) -> Future[None]:
    future = _writer.submit(write, *args)
    future.add_done_callback(_log_failure)
    return future


def _log_failure(future: Future[None]) -> None:
    if future.exception() is not None:
        logger.warning("settings not saved: %s", future.exception())


@dataclass(frozen=True)
class WindowState:
    """The window's geometry and dock layout, in Qt's own byte formats."""

    geometry: bytes
    docks: bytes


def window_state_path() -> Path:
    return config_dir() / "window.json"


def load_window_state() -> WindowState | None:
    try:
        data = json.loads(window_state_path().read_text(encoding="utf-8"))
        return WindowState(base64.b64decode(data["geometry"]), base64.b64decode(data["docks"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # no saved layout, or a damaged one: the default layout is fine


def save_window_state_later(state: WindowState) -> Future[None]:
    text = json.dumps(
        {
            "geometry": base64.b64encode(state.geometry).decode(),
            "docks": base64.b64encode(state.docks).decode(),
        }
    )
    return _later(_write_atomically, window_state_path(), text)
