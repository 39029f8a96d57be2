"""The settings dialog: model headers read on the engine thread, checks on OK, the new Settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QLabel

from desktop.settings_dialog import SettingsDialog
from engine.llm.llama import available_cpus
from models.fetch import models_dir
from tests.desktop.windows import open_dialog, press_ok

WAIT_MS = 10_000


@pytest.fixture
def dialog(qtbot, worker, settings) -> SettingsDialog:
    return open_dialog(qtbot, worker, settings)


def settled(label) -> bool:
    return not label.text().startswith("Reading")


def test_shipped_models_show_their_headers(qtbot, dialog):
    chat, embed = dialog.chat.info, dialog.embed.info
    qtbot.waitUntil(lambda: settled(chat) and settled(embed), timeout=WAIT_MS)
    assert "qwen2" in chat.text() and "MB" in chat.text()
    assert "Warning" not in chat.text() and not chat.property("error")
    # nomic-embed-text-v1.5 is 768 wide; the file keeps its first 384 (Matryoshka-trained)
    assert "embedding length 768 (its first 384 kept)" in embed.text()
    assert "Warning" not in embed.text()


def test_wrong_kind_of_model_warns(qtbot, dialog):
    dialog.chat.combo.setCurrentText("embed")  # the embedding model has no chat template
    dialog.embed.combo.setCurrentText("chat")  # the chat model makes 1536-dim vectors
    qtbot.waitUntil(lambda: "chat template" in dialog.chat.info.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Warning" in dialog.embed.info.text(), timeout=WAIT_MS)
    assert "384" in dialog.embed.info.text()


def test_missing_or_broken_model_file_shows_the_error(qtbot, dialog, tmp_path: Path):
    info = dialog.chat.info
    dialog.chat.combo.setCurrentText(str(tmp_path / "missing.gguf"))
    qtbot.waitUntil(lambda: bool(info.property("error")), timeout=WAIT_MS)
    assert "model file not found" in info.text()

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all, just some bytes")
    dialog.chat.combo.setCurrentText(str(junk))
    qtbot.waitUntil(lambda: "junk.gguf" in info.text(), timeout=WAIT_MS)
    assert info.property("error") and "#c62828" in info.styleSheet()


def test_browse_picks_a_model_file(qtbot, dialog, monkeypatch):
    small = next(models_dir().glob("SmolLM2*.gguf"))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(small), ""))
    qtbot.mouseClick(dialog.findChild(object, "settings-chat-browse"), Qt.MouseButton.LeftButton)
    assert dialog.chat.value() == str(small)
    qtbot.waitUntil(lambda: "llama" in dialog.chat.info.text(), timeout=WAIT_MS)


def test_bad_thresholds_keep_the_dialog_open(qtbot, dialog, settings):
    dialog.target_at.setValue(80)  # above the 70 % warning line
    press_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.error.property("error") and "memory-pressure" in dialog.error.text()
    assert dialog.result_settings() == settings

    dialog.target_at.setValue(50)
    press_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.result_settings().target_at == 0.5


def test_ok_returns_the_new_settings(qtbot, dialog, settings, tmp_path: Path):
    dialog.chat.combo.setCurrentText("small")
    dialog.db_path.setText(str(tmp_path / "other.db"))
    dialog.n_ctx.setValue(8192)
    dialog.threads.setValue(1)  # at most the cores: see test_threads_offered_up_to_the_cores
    dialog.warn_at.setValue(75)
    dialog.flush_at.setValue(95)
    dialog.idle.setValue(10)
    press_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.result_settings() == dataclasses.replace(
        settings,
        chat_model="small",
        db_path=str(tmp_path / "other.db"),
        n_ctx=8192,
        n_threads=1,
        warn_at=0.75,
        flush_at=0.95,
        idle_minutes=10,
    )


def test_untouched_dialog_returns_the_same_settings(qtbot, dialog, settings):
    press_ok(qtbot, dialog)
    assert dialog.result_settings() == settings


def test_threads_offered_up_to_the_cores(dialog):
    """More threads than cores only slow ggml down (its threads spin): not offered."""
    assert dialog.threads.maximum() == available_cpus()
    dialog.threads.setValue(10_000)
    assert dialog.threads.value() == dialog.threads.maximum()


def test_a_typed_memory_file_is_kept_as_an_absolute_path(
    qtbot, dialog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The app may start from another folder next time: ~ and relative paths are resolved now."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    dialog.db_path.setText("~/notes.db")
    press_ok(qtbot, dialog)
    assert dialog.result_settings().db_path == str(tmp_path / "home" / "notes.db")


def test_ok_is_refused_for_a_model_its_own_check_marks_bad(qtbot, dialog, tmp_path: Path):
    dialog.chat.combo.setCurrentText("embed")  # an embedding model offered as the chat model
    qtbot.waitUntil(lambda: "chat template" in dialog.chat.info.text(), timeout=WAIT_MS)
    press_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert "The chat model will not do: it has no chat template" in dialog.error.text()
    dialog.chat.combo.setCurrentText(str(tmp_path / "missing.gguf"))
    qtbot.waitUntil(lambda: "not found" in dialog.chat.info.text(), timeout=WAIT_MS)
    press_ok(qtbot, dialog)
    assert dialog.isVisible() and "model file not found" in dialog.error.text()
    dialog.chat.combo.setCurrentText("chat")
    qtbot.waitUntil(lambda: "qwen2" in dialog.chat.info.text(), timeout=WAIT_MS)
    press_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_the_context_size_says_what_it_costs(dialog):
    cost = dialog.findChild(QLabel, "settings-n-ctx-cost")
    assert "MB" in cost.text() and "4,096" in cost.text()
