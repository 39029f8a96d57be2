"""A chat model on a server: the settings that name it, the dialog that asks the server (on the
engine thread), and a real step through llama-cpp-python's OpenAI-compatible server (slow)."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QDialog

import desktop.session as session_module
import desktop.settings_dialog as settings_dialog
from desktop.main_window import MainWindow
from desktop.session import EngineSession, ServerInfo, llama_client
from desktop.settings import Settings, load_settings, save_settings
from engine.errors import InvalidInput, ModelLoadError
from engine.types import ChatMessage
from tests.conftest import free_port
from tests.desktop.windows import bubbles, idle, open_dialog, press_ok

WAIT_MS = 10_000
REAL_MS = 300_000  # a real step on 2 CPU cores


SERVER = Settings(
    chat_model="http://127.0.0.1:8080/v1",
    server_model="qwen",
    server_tokenizer="/models/qwen/tokenizer.json",
    server_template="/models/qwen/tokenizer_config.json",
)


# -- settings ------------------------------------------------------------------------------------


def test_server_settings_round_trip_without_an_api_key(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMEX_API_KEY", "sk-secret")
    save_settings(SERVER)
    assert load_settings() == SERVER
    text = (config_dir / "settings.json").read_text()
    assert "sk-secret" not in text and "api_key" not in text


def test_an_old_settings_file_without_server_fields_loads(config_dir: Path) -> None:
    config_dir.mkdir()
    old = {"chat_model": "small", "embed_model": "embed", "db_path": "", "n_ctx": 2048}
    (config_dir / "settings.json").write_text(json.dumps(old))
    loaded = load_settings()
    assert loaded == Settings(chat_model="small", n_ctx=2048)
    assert (loaded.server_model, loaded.server_tokenizer, loaded.server_template) == ("", "", "")


@pytest.mark.parametrize("field", ["server_model", "server_tokenizer", "server_template"])
def test_a_server_field_of_the_wrong_type_gives_defaults(config_dir: Path, field: str) -> None:
    config_dir.mkdir()
    (config_dir / "settings.json").write_text(json.dumps({field: 5}))
    assert load_settings() == Settings()
    assert (config_dir / "settings.json.bad").exists()


def test_checked_takes_a_server_for_chat_but_not_for_embeddings() -> None:
    assert SERVER.checked() == SERVER
    with pytest.raises(InvalidInput, match="embedding model runs on this computer"):
        Settings(embed_model="http://127.0.0.1:8080/v1").checked()
    with pytest.raises(InvalidInput, match="names no host"):
        Settings(chat_model="http:///v1").checked()
    with pytest.raises(InvalidInput, match="not a valid URL"):
        Settings(chat_model="http://127.0.0.1:99999/v1").checked()


def test_llama_client_passes_the_server_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(session_module, "default_llm_client", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setenv("MEMEX_API_KEY", "sk-secret")
    llama_client(dataclasses.replace(SERVER, n_ctx=3072))
    assert calls == [
        (
            ("http://127.0.0.1:8080/v1",),
            {
                "n_ctx": 3072,  # the app's size: the server must have at least this
                "model_name": "qwen",
                "tokenizer": "/models/qwen/tokenizer.json",
                "template_from": "/models/qwen/tokenizer_config.json",
                "api_key": "sk-secret",
            },
        )
    ]


def test_llama_client_says_when_no_server_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelLoadError, match=f"no model server answers at {url}"):
        llama_client(Settings(chat_model=url))


# -- the dialog ----------------------------------------------------------------------------------


def test_server_options_show_only_for_a_url(qtbot, worker, settings) -> None:
    dlg = open_dialog(qtbot, worker, settings)
    assert dlg.chat.server.isHidden()
    dlg.chat.combo.setCurrentText(f"http://127.0.0.1:{free_port()}/v1")
    assert not dlg.chat.server.isHidden()
    assert "http://" in dlg.chat.combo.toolTip() and "MEMEX_API_KEY" in dlg.chat.combo.toolTip()
    dlg.chat.combo.setCurrentText("small")
    assert dlg.chat.server.isHidden()


def test_nothing_listening_shows_the_error_quickly(qtbot, worker, settings) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    dlg = open_dialog(qtbot, worker, dataclasses.replace(settings, chat_model=url))
    info = dlg.chat.info
    qtbot.waitUntil(lambda: bool(info.property("error")), timeout=WAIT_MS)
    assert time.monotonic() - started < 3
    assert f"no model server answers at {url}: start it or fix the address" in info.text()


def test_a_silent_server_does_not_freeze_the_dialog(
    qtbot, worker, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that takes the connection and never answers: the UI thread keeps ticking while
    the engine thread waits, and the dialog says so once the probe gives up."""
    monkeypatch.setattr(session_module, "PROBE_TIMEOUT_S", 1.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are taken (the backlog) but never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        dlg = open_dialog(qtbot, worker, dataclasses.replace(settings, chat_model=url))
        assert dlg.chat.info.text().startswith("Asking the model server")
        qtbot.waitUntil(lambda: bool(dlg.chat.info.property("error")), timeout=WAIT_MS)
        timer.stop()
    assert "did not finish answering within 1.5 s" in dlg.chat.info.text()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert ticks[-1] - ticks[0] > 1.0 and max(gaps) < 0.1


def test_a_stale_answer_is_dropped(qtbot, worker, settings) -> None:
    """An answer about a URL the user has since changed never overwrites the newer one."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    dlg = open_dialog(qtbot, worker, dataclasses.replace(settings, chat_model=dead))
    dlg.chat.combo.setCurrentText("small")
    dlg.chat.fetch_info()  # as the typing pause would
    qtbot.waitUntil(lambda: "llama" in dlg.chat.info.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not worker.busy, timeout=WAIT_MS)
    assert "no model server" not in dlg.chat.info.text()


def test_the_servers_window_is_checked_against_the_context_size(
    qtbot, worker, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the server said is shown again when Context size changes (no new question)."""
    asked: list[Settings] = []

    def fake_server_info(probe: Settings) -> ServerInfo:
        asked.append(probe)
        return ServerInfo(
            url=probe.chat_model,
            model="qwen2.5-0.5b",
            server="llama-server",
            context_length=4096,
            counted_by="the server's tokenize endpoint (llama-server)",
            template_source="http://127.0.0.1:8080/props",
        )

    monkeypatch.setattr(settings_dialog, "server_info", fake_server_info)
    url = "http://127.0.0.1:8080/v1"
    dlg = open_dialog(qtbot, worker, dataclasses.replace(settings, chat_model=url, n_ctx=2048))
    info = dlg.chat.info
    qtbot.waitUntil(lambda: "qwen2.5-0.5b" in info.text(), timeout=WAIT_MS)
    assert "llama-server" in info.text() and "context 4,096 tokens" in info.text()
    assert "Warning" not in info.text()
    dlg.n_ctx.setValue(8192)
    assert "Warning: Context size (8,192 tokens) is larger" in info.text()
    assert "set it to 4,096 or less" in info.text()
    dlg.n_ctx.setValue(4096)
    assert "Warning" not in info.text()
    assert len(asked) == 1 and asked[0].chat_model == url


def test_ok_returns_the_server_options(qtbot, worker, settings, tmp_path: Path) -> None:
    dlg = open_dialog(qtbot, worker, settings)
    url = f"http://127.0.0.1:{free_port()}/v1"
    dlg.chat.combo.setCurrentText(url)
    dlg.chat.served_model.setText("  qwen ")
    dlg.chat.tokenizer.setText(str(tmp_path / "tokenizer.json"))
    dlg.chat.template.setText(str(tmp_path / "model.gguf"))
    press_ok(qtbot, dlg)
    assert dlg.result() == QDialog.DialogCode.Accepted
    assert dlg.result_settings() == dataclasses.replace(
        settings,
        chat_model=url,
        server_model="qwen",
        server_tokenizer=str(tmp_path / "tokenizer.json"),
        server_template=str(tmp_path / "model.gguf"),
    )


def test_a_url_as_the_embedding_model_is_refused(qtbot, worker, settings) -> None:
    dlg = open_dialog(qtbot, worker, settings)
    dlg.embed.combo.setCurrentText("http://127.0.0.1:8080/v1")
    dlg.embed.fetch_info()
    assert dlg.embed.info.property("error") and "this computer" in dlg.embed.info.text()
    press_ok(qtbot, dlg)
    assert dlg.isVisible() and "embedding model runs on this computer" in dlg.error.text()


# -- a real server (slow) ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_server_from_the_dialog_to_a_reply(
    qtbot, worker, settings, embedder, llama_server: str, chat_model_path: Path, tmp_path: Path
) -> None:
    dlg = open_dialog(qtbot, worker, dataclasses.replace(settings, n_ctx=2048))
    dlg.chat.combo.setCurrentText(llama_server)
    dlg.chat.fetch_info()
    info = dlg.chat.info
    # llama-cpp-python's server has no /props: the template must come from a file
    qtbot.waitUntil(lambda: bool(info.property("error")), timeout=WAIT_MS)
    assert "no chat template" in info.text()
    dlg.chat.template.setText(str(chat_model_path))
    qtbot.waitUntil(lambda: "tokens counted by" in info.text(), timeout=30_000)
    assert chat_model_path.name in info.text() and not info.property("error")
    assert "does not report its context window" in info.text()
    assert "tokenize endpoint (llama-cpp-python)" in info.text()
    press_ok(qtbot, dlg)
    chosen = dlg.result_settings()
    assert (chosen.chat_model, chosen.server_template) == (llama_server, str(chat_model_path))

    client = llama_client(chosen)
    assert client.context_window == 2048
    assert 0 < client.count_tokens([ChatMessage("user", "Hello")]) < 40

    mine = dataclasses.replace(chosen, db_path=str(tmp_path / "remote.db"))  # the dialog's is open
    window = MainWindow(
        mine,
        lambda s: EngineSession(s, embedder_factory=lambda _: embedder, close_models=False),
        save=lambda s: None,
    )  # the session's own client factory: llama_client, so on the server
    qtbot.addWidget(window)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.loaded or window.error_box is not None, timeout=60_000)
        assert window.loaded, window.error_box and window.error_box.text()
        assert "context 2,048 tokens" in window.status.text()
        window.send("Hello!")  # one model call: a greeting needs no memory edit
        qtbot.waitUntil(lambda: idle(window), timeout=REAL_MS)
        replies = bubbles(window, "assistant")
        assert replies and replies[-1].text.strip()
    finally:
        window.close()
