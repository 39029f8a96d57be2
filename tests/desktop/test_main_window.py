"""The main window end to end with the scripted model: the same parse, dispatch and store path
as the real model, a real SQLite file and the real embedder."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QToolBar,
    QToolButton,
    QWidget,
)

from desktop.chat_view import Divider, ExpandableRow
from desktop.dialogs import NewAgentDialog
from desktop.main_window import ORGANISING, MainWindow
from desktop.session import EngineSession, llama_client
from desktop.theme import DARK, LIGHT
from engine.llm.scripted import ScriptedClient, call
from engine.summarizer import SUMMARY_SYSTEM
from engine.types import ReplyDelta

from .windows import TIMEOUT, bubbles, idle, rows, run, send_and_wait

SUMMARY_HEAD = SUMMARY_SYSTEM.split("{name}", 1)[0]


def test_send_streams_the_reply_into_a_bubble(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message="Hello Sam, nice to meet you.")])
    deltas = []
    window.worker.event.connect(
        lambda e: deltas.append(e.text) if isinstance(e, ReplyDelta) else None
    )
    send_and_wait(qtbot, window, "Hi, I'm Sam")
    assert [b.text for b in bubbles(window, "user")] == ["Hi, I'm Sam"]
    assert [b.text for b in bubbles(window, "assistant")] == ["Hello Sam, nice to meet you."]
    assert len(deltas) > 3 and "".join(deltas) == "Hello Sam, nice to meet you."
    assert window.input.toPlainText() == ""


def test_memory_operation_shows_inline_and_expands(qtbot, window, scripted):
    scripted.enqueue(
        [
            call("core_memory_append", heartbeat=True, section="human", content="Name: Sam"),
            call("send_message", message="Noted, Sam."),
        ]
    )
    send_and_wait(qtbot, window, "My name is Sam")
    (row,) = rows(window, "operation")
    assert row.summary.text() == "saved to core memory (human): Name: Sam"
    assert not row.expanded
    qtbot.mouseClick(row.toggle, Qt.MouseButton.LeftButton)
    assert row.expanded and "Appended to 'human'" in row.detail.text()
    editor = window.core_panel.findChild(QWidget, "core-editor-human")
    qtbot.waitUntil(lambda: editor.toPlainText() == "Name: Sam", timeout=TIMEOUT)


def test_failed_tool_call_is_shown_red_and_the_model_corrects_itself(qtbot, window, scripted):
    scripted.enqueue(
        [
            call("core_memory_append", section="nosuch", content="x"),
            call("send_message", message="Sorry, fixed."),
        ]
    )
    send_and_wait(qtbot, window, "remember x")
    (row,) = rows(window, "operation")
    assert not row.ok and "nosuch" in row.summary.text()
    assert bubbles(window, "assistant")[-1].text == "Sorry, fixed."


def test_context_bar_updates_after_every_step(qtbot, window, scripted):
    qtbot.waitUntil(lambda: window.context_panel.bar.usage is not None, timeout=TIMEOUT)
    before = window.context_panel.bar.usage
    scripted.enqueue([call("send_message", message="A reply of some length " * 5)])
    send_and_wait(qtbot, window, "a message of some length " * 20)
    after = window.context_panel.bar.usage
    assert after.sections["messages"] > before.sections["messages"]
    assert sum(after.sections.values()) == after.context_window
    assert f"{after.prompt_tokens:,} of {after.context_window:,}" in (
        window.context_panel.headline.text()
    )


def test_core_edit_and_undo_through_the_panel(qtbot, window):
    panel = window.core_panel
    editor = panel.findChild(QWidget, "core-editor-human")
    qtbot.waitUntil(lambda: editor is not None and editor.isEnabled(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.context_panel.bar.usage is not None, timeout=TIMEOUT)
    before = window.context_panel.bar.usage.sections["core_memory"]
    editor.setPlainText("Likes tea. Lives in Lyon.")
    qtbot.mouseClick(panel.findChild(QWidget, "core-save-human"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: window.context_panel.bar.usage.sections["core_memory"] > before, timeout=TIMEOUT
    )
    assert window.session.agent.core_memory["human"] == "Likes tea. Lives in Lyon."
    qtbot.mouseClick(panel.findChild(QWidget, "core-undo-human"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: editor.toPlainText() == "", timeout=TIMEOUT)
    qtbot.waitUntil(
        lambda: window.context_panel.bar.usage.sections["core_memory"] == before, timeout=TIMEOUT
    )
    assert window.session.agent.core_memory["human"] == ""


def test_stop_cancels_the_generation_and_keeps_the_message(qtbot, open_window, settings):
    slow = ScriptedClient(n_ctx=4096, piece_chars=2, piece_delay=0.02)
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 200), call("send_message", message="ok")])
    window.input.setPlainText("tell me a long story")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(bubbles(window, "assistant")), timeout=TIMEOUT)
    assert window.stop_button.isEnabled()
    qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.stepping, timeout=TIMEOUT)
    partial = bubbles(window, "assistant")[0]
    assert "stopped" in partial.header.text() and len(partial.text) < len("word " * 200)
    assert not window.stop_button.isEnabled()
    stored = [m.content for m in window.session.agent.recall.all() if m.role == "user"]
    assert stored == ["tell me a long story"]
    send_and_wait(qtbot, window, "short one please")
    assert bubbles(window, "assistant")[-1].text == "ok"


def test_message_sent_during_a_step_is_queued_then_answered(qtbot, open_window, settings):
    slow = ScriptedClient(n_ctx=4096, piece_chars=4, piece_delay=0.01)
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="first answer"), call("send_message", message="2")])
    window.send("first")
    window.send("second")
    assert "queued" in bubbles(window, "user")[1].header.text()
    qtbot.waitUntil(lambda: len(bubbles(window, "assistant")) == 2, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not window.stepping, timeout=TIMEOUT)
    assert [b.text for b in bubbles(window, "assistant")] == ["first answer", "2"]
    assert "queued" not in bubbles(window, "user")[1].header.text()


def test_agents_create_switch_rename_delete(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message="hi from memex")])
    send_and_wait(qtbot, window, "hello memex")
    window.create_agent("work")
    qtbot.waitUntil(lambda: window.agent_box.currentText() == "work", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not bubbles(window, "user"), timeout=TIMEOUT)
    assert [window.agent_box.itemText(i) for i in range(window.agent_box.count())] == [
        "memex",
        "work",
    ]
    scripted.enqueue([call("send_message", message="hi from work")])
    send_and_wait(qtbot, window, "hello work")
    window.switch_agent("memex")
    qtbot.waitUntil(
        lambda: [b.text for b in bubbles(window, "user")] == ["hello memex"], timeout=TIMEOUT
    )
    window.rename_agent("home")
    qtbot.waitUntil(lambda: window.agent_box.currentText() == "home", timeout=TIMEOUT)
    window.delete_agent("home")
    qtbot.waitUntil(lambda: window.agent_box.currentText() == "work", timeout=TIMEOUT)
    qtbot.waitUntil(
        lambda: [b.text for b in bubbles(window, "user")] == ["hello work"], timeout=TIMEOUT
    )
    assert window.agent_box.count() == 1


def test_everything_is_where_it_was_after_a_restart(qtbot, open_window, settings, saved, scripted):
    first = open_window(settings)
    scripted.enqueue(
        [
            call("core_memory_append", heartbeat=True, section="human", content="Has a cat"),
            call("send_message", message="Cats are great."),
        ]
    )
    send_and_wait(qtbot, first, "I have a cat")
    first.create_agent("second")
    qtbot.waitUntil(lambda: first.agent_box.currentText() == "second", timeout=TIMEOUT)
    first.switch_agent("memex")
    qtbot.waitUntil(lambda: bool(saved) and saved[-1].agent == "memex", timeout=TIMEOUT)
    first.close()
    again = open_window(saved[-1])
    qtbot.waitUntil(lambda: bool(bubbles(again, "assistant")), timeout=TIMEOUT)
    assert [b.text for b in bubbles(again, "user")] == ["I have a cat"]
    assert [b.text for b in bubbles(again, "assistant")] == ["Cats are great."]
    assert [r.summary.text() for r in rows(again, "operation")] == [
        "saved to core memory (human): Has a cat"
    ]
    assert again.agent_box.count() == 2
    assert again.input.history == ["I have a cat"]


def test_up_arrow_recalls_earlier_input(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message="a"), call("send_message", message="b")])
    send_and_wait(qtbot, window, "first line")
    send_and_wait(qtbot, window, "second line")
    qtbot.keyClick(window.input, Qt.Key.Key_Up)
    assert window.input.toPlainText() == "second line"
    qtbot.keyClick(window.input, Qt.Key.Key_Up)
    assert window.input.toPlainText() == "first line"
    qtbot.keyClick(window.input, Qt.Key.Key_Down)
    qtbot.keyClick(window.input, Qt.Key.Key_Down)
    assert window.input.toPlainText() == ""


def test_page_out_shows_a_divider_with_the_summary(qtbot, open_window, settings):
    small = ScriptedClient(n_ctx=2048)
    window = open_window(settings, small)
    for turn in range(30):
        small.enqueue([call("send_message", message=f"reply {turn} " + "ok " * 20)])
        send_and_wait(qtbot, window, f"message {turn} about topic{turn} " + "words " * 80)
        if any(isinstance(w, Divider) and w.kind == "pageout" for w in window.chat.entries()):
            break
    (divider,) = [w for w in window.chat.entries() if isinstance(w, Divider)]
    assert "left the context window" in divider.summary.text()
    assert "topic0" in divider.detail.text() or "message 0" in divider.detail.text()


def test_reflect_runs_a_heartbeat_turn_shown_as_the_assistants_own(qtbot, window, scripted):
    scripted.enqueue([call("archival_memory_insert", content="User likes tea")])
    window.reflect()
    qtbot.waitUntil(lambda: not window.stepping, timeout=TIMEOUT)
    kinds = [w.kind for w in window.chat.entries() if isinstance(w, ExpandableRow)]
    assert kinds == ["heartbeat", "operation"]
    assert "saved to archival memory: User likes tea" in rows(window, "operation")[0].summary.text()


def test_idle_timer_follows_the_setting(qtbot, open_window, settings):
    window = open_window(dataclasses.replace(settings, idle_minutes=7))
    assert window._idle.isActive() and window._idle.interval() == 7 * 60_000
    off = open_window(dataclasses.replace(settings, db_path=settings.db_path + "2", idle_minutes=0))
    assert not off._idle.isActive()
    default = open_window(dataclasses.replace(settings, db_path=settings.db_path + "3"))
    assert default._idle.interval() == 10 * 60_000  # on by default: a message pre-empts it


def test_missing_model_shows_a_dialog_not_a_crash(qtbot, embedder, settings, tmp_path):
    missing = dataclasses.replace(settings, chat_model=str(tmp_path / "gone.gguf"))
    window = MainWindow(
        missing,
        lambda s: EngineSession(s, embedder_factory=lambda _: embedder, close_models=False),
        save=lambda s: None,
    )
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.error_box is not None, timeout=TIMEOUT)
    box = window.error_box
    assert box.isVisible()
    assert "model file not found" in box.text() and "gone.gguf" in box.text()
    assert "Settings" in box.informativeText()
    assert not window.loaded and not window.send_button.isEnabled()
    window.send("hello?")  # refused visibly, the text kept
    assert window.input.toPlainText() == "hello?"
    assert "not sent" in window.status.text()
    window.close()


def test_escape_stops_a_step(qtbot, open_window, settings):
    slow = ScriptedClient(n_ctx=4096, piece_chars=2, piece_delay=0.02)
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 200)])
    window.send("go on and on")
    qtbot.waitUntil(lambda: bool(bubbles(window, "assistant")), timeout=TIMEOUT)
    qtbot.keyClick(window.input, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.stepping, timeout=TIMEOUT)
    assert "stopped" in bubbles(window, "assistant")[0].header.text()


def test_recall_hit_scrolls_the_chat_to_the_message(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message=f"reply {i}") for i in range(3)])
    for i in range(3):
        send_and_wait(qtbot, window, f"message number {i}")
    target = [m for m in window.session.agent.recall.all() if m.content == "message number 0"][0]
    window.recall_panel.message_activated.emit(target.id)
    assert "border" in bubbles(window, "user")[0].styleSheet()
    window.recall_panel.message_activated.emit(10_000)
    assert "older than the chat shows" in window.status.text()


def test_window_layout_is_restored(qtbot, open_window, settings, config_dir):
    first = open_window(settings)
    first.resize(700, 500)  # inside the offscreen screen (800 x 600)
    size = (first.width(), first.height())  # the layout's minimum height may win over 500
    assert size != (1200, 780)
    first.close()
    qtbot.waitUntil(lambda: (config_dir / "window.json").exists(), timeout=TIMEOUT)
    again = open_window(settings)
    assert (again.width(), again.height()) == size


def test_damaged_memory_file_shows_a_dialog(qtbot, open_window, settings, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    window = open_window(dataclasses.replace(settings, db_path=str(bad)))
    box = window.error_box
    assert box is not None and box.isVisible()
    assert "not a Memex database or is damaged" in box.text()
    assert bad.read_bytes() == b"this is not a database" * 100  # nothing was changed


def test_bad_new_settings_keep_the_previous_model(
    qtbot, scripted, embedder, settings, saved, tmp_path
):
    def session(s):
        return EngineSession(
            s,
            # the shipped key gets the scripted model; a path goes to the real loader
            client_factory=lambda st: scripted if st.chat_model == "chat" else llama_client(st),
            embedder_factory=lambda _: embedder,
            close_models=False,
        )

    window = MainWindow(settings, session, saved.append)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.loaded, timeout=TIMEOUT)
    good = window.settings
    bad = dataclasses.replace(good, chat_model=str(tmp_path / "missing.gguf"), n_ctx=2048)
    window.apply_settings(bad)
    qtbot.waitUntil(lambda: window.error_box is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.loaded, timeout=TIMEOUT)
    assert "missing.gguf" in window.error_box.text()
    # the app runs on: no "could not start", and nothing said of make or pip
    assert window.error_box.windowTitle() == "The new settings did not load"
    said = window.error_box.text() + window.error_box.informativeText()
    assert "make " not in said and "pip" not in said
    assert window.settings == good and bad not in saved
    assert "previous ones are in use" in window.status.text()
    scripted.enqueue([call("send_message", message="still here")])
    send_and_wait(qtbot, window, "are you there?")
    assert bubbles(window, "assistant")[-1].text == "still here"
    window.close()


def test_new_settings_reload_and_are_saved(qtbot, window, saved):
    qtbot.waitUntil(lambda: window.context_panel.bar.usage is not None, timeout=TIMEOUT)
    before = window.context_panel.bar.usage
    changed = dataclasses.replace(window.settings, warn_at=0.5, target_at=0.4)
    window.apply_settings(changed)
    qtbot.waitUntil(lambda: window.loaded and window.settings == changed, timeout=TIMEOUT)
    assert saved[-1] == changed
    qtbot.waitUntil(lambda: window.context_panel.bar.usage is not before, timeout=TIMEOUT)
    after = window.context_panel.bar.usage
    assert after.warn_at < before.warn_at and after.target_at < before.target_at


def test_idle_reflection_runs_once_per_idle_spell(qtbot, open_window, settings, scripted):
    window = open_window(dataclasses.replace(settings, idle_minutes=5))
    assert window._idle.isActive()
    scripted.enqueue([call("archival_memory_insert", content="a note")])
    window._idle.timeout.emit()  # as if 5 idle minutes passed
    qtbot.waitUntil(lambda: not window.stepping, timeout=TIMEOUT)
    assert not window._idle.isActive()  # no reflection after reflection while the user is away
    scripted.enqueue([call("send_message", message="welcome back")])
    send_and_wait(qtbot, window, "I'm back")
    assert window._idle.isActive() and window._idle.interval() == 5 * 60_000


def test_closing_with_unsaved_core_edits_asks_first(qtbot, window, monkeypatch):
    editor = window.core_panel.findChild(QWidget, "core-editor-human")
    qtbot.waitUntil(lambda: editor is not None and editor.isEnabled(), timeout=TIMEOUT)
    editor.setPlainText("not saved yet")
    asked = []
    monkeypatch.setattr(MainWindow, "ask_before_discarding", True)
    monkeypatch.setattr(
        "desktop.main_window.QMessageBox.question",
        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Cancel,
    )
    window.close()
    assert asked and "not saved" in asked[0]
    assert window.isVisible()  # Cancel keeps the window and the text
    assert editor.toPlainText() == "not saved yet"
    monkeypatch.setattr(MainWindow, "ask_before_discarding", False)  # let the fixture close it


def test_a_huge_message_shows_its_start_and_keeps_all(qtbot, window, scripted, monkeypatch):
    monkeypatch.setattr("desktop.chat_view.SHOWN_CHARS", 100)  # as 20,000 would, cheaper
    scripted.enqueue([call("send_message", message="got it")])
    huge = "x" * 1500
    send_and_wait(qtbot, window, huge)
    bubble = bubbles(window, "user")[0]
    assert bubble.text == huge
    assert bubble.body.text() == "x" * 100 + "\n… 1,400 more characters (all kept in memory)"


def test_export_then_import_asks_another_name_and_shows_the_copy(
    qtbot, window, scripted, tmp_path, monkeypatch
):
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    scripted.enqueue([call("send_message", message="Hello Sam.")])
    send_and_wait(qtbot, window, "Hi, I'm Sam")
    path = tmp_path / "agent.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    window._ask_export_agent()
    qtbot.waitUntil(lambda: "Exported" in window.status.text(), timeout=TIMEOUT)
    asked = []

    def answer(parent, title, label, *a, **k):
        asked.append(label)
        return "Sam's copy", True

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QInputDialog, "getText", answer)
    window._ask_import_agent()  # the name is taken: the window asks for another
    qtbot.waitUntil(lambda: window.agent_box.currentText() == "Sam's copy", timeout=TIMEOUT)
    assert len(asked) == 1 and "already an agent" in asked[0]
    assert [window.agent_box.itemText(i) for i in range(window.agent_box.count())] == [
        "memex",
        "Sam's copy",
    ]
    qtbot.waitUntil(lambda: len(bubbles(window, "user")) == 1, timeout=TIMEOUT)
    assert [b.text for b in bubbles(window, "assistant")] == ["Hello Sam."]


def test_a_long_import_shows_progress_and_cancel_imports_nothing(
    qtbot, window, scripted, tmp_path, monkeypatch
):
    import threading

    from engine.agentfile import _Pace, export_agent

    scripted.enqueue([call("send_message", message="Hello Sam.")])
    send_and_wait(qtbot, window, "Hi, I'm Sam")
    path = tmp_path / "agent.json"
    run(qtbot, window.worker, lambda s: export_agent(s.store, "memex", path))
    monkeypatch.setattr("engine.agentfile.IMPORT_BATCH", 1)
    cancelled = threading.Event()
    advance = _Pace.advance

    def held(pace, count):  # the first batch waits for the user's Cancel: no race
        advance(pace, count)
        cancelled.wait(TIMEOUT / 1000)

    monkeypatch.setattr(_Pace, "advance", held)
    window.import_agent(path, "Sam's copy")
    qtbot.waitUntil(lambda: "Importing agent.json: 1 of" in window.status.text(), timeout=TIMEOUT)
    assert window.job.isVisibleTo(window) and window.job.cancel.isVisibleTo(window)
    assert window.job.bar.value() > 0
    qtbot.mouseClick(window.job.cancel, Qt.MouseButton.LeftButton)
    cancelled.set()
    qtbot.waitUntil(lambda: "nothing was imported" in window.status.text(), timeout=TIMEOUT)
    assert not window.job.isVisibleTo(window)
    names = run(qtbot, window.worker, lambda s: [a.name for a in s.agents()])
    assert names == ["memex"]


def test_reflect_reviews_new_messages_first_and_shows_what_changed(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message="Nice to meet you, Dana.")])
    send_and_wait(qtbot, window, "I'm Dana, a nurse.")
    scripted.enqueue_review(
        {
            "core": [{"section": "human", "line": "Name: Dana. Nurse."}],
            "passages": [],
            "facts": [],
        }
    )
    scripted.enqueue([call("conversation_search", query="Dana")])  # the heartbeat's own turn
    phases: list[str] = []
    window.worker.event.connect(
        lambda e: phases.append(window.chat.working.phase) if window.chat.working else None
    )
    window.reflect()
    qtbot.waitUntil(lambda: not window.stepping, timeout=TIMEOUT)
    assert "reviewing memory: 0 of 3 messages read" in phases  # how far a long review is
    [review] = [r for r in rows(window, "operation") if "memory review" in r.summary.text()]
    assert review.summary.text() == "memory review of messages 1-3: 1 change"
    assert "saved to core memory (human): Name: Dana. Nurse." in review.detail.text()
    assert window.core_panel.editor("human") is not None
    qtbot.waitUntil(
        lambda: window.core_panel.editor("human").editor.toPlainText() == "Name: Dana. Nurse.",
        timeout=TIMEOUT,
    )


def test_vectors_of_another_embedder_are_made_again_after_loading(
    qtbot, open_window, settings, minilm, embedder, scripted
):
    """A file whose vectors all-MiniLM-L6-v2 made, opened with the default embedder: once
    loaded, the window has them made again in the background, and search by meaning finds
    them with the new model."""
    from engine import MemGPTAgent
    from engine.memory.reembed import stale_vectors
    from engine.store.db import open_store

    store = open_store(settings.db_path, embedder=minilm)
    agent = MemGPTAgent(None, store, ScriptedClient(), name=settings.agent or "memex")
    agent.archival.insert_many(
        [f"Note {i}: the boiler was serviced by Hallam Heating." for i in range(40)]
        + ["My sister Ingrid is a vet in Stavanger."]
    )
    store.close()
    window = open_window(settings)
    assert window.loaded
    qtbot.waitUntil(lambda: stale_vectors(window.session.store) == 0, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=TIMEOUT)
    assert window.status.text() == window._model_line()  # the indexing line is gone
    found = window.session.store.query("SELECT DISTINCT model FROM passage_vectors")
    assert found == [(embedder.name,)]


def test_indexing_for_another_embedder_shows_progress_and_can_be_paused(
    qtbot, open_window, settings, minilm, scripted, monkeypatch
):
    from engine import MemGPTAgent
    from engine.memory import reembed as reembedding
    from engine.memory.reembed import stale_vectors
    from engine.store.db import open_store

    store = open_store(settings.db_path, embedder=minilm)
    agent = MemGPTAgent(None, store, ScriptedClient(), name=settings.agent or "memex")
    agent.archival.insert_many([f"Note {i}: the boiler was serviced." for i in range(40)])
    store.close()
    monkeypatch.setattr(  # small batches: many of them, for Cancel to come between
        "desktop.session.reembed",
        lambda store, progress=None: reembedding.reembed(store, 4, progress),
    )
    window = open_window(settings)
    qtbot.waitUntil(lambda: window.job.name == "reindex", timeout=TIMEOUT)
    assert window.job.cancel.isVisibleTo(window) and "left" in window.status.text()
    qtbot.mouseClick(window.job.cancel, Qt.MouseButton.LeftButton)
    assert window.status.text() == "Indexing paused until Memex starts again"
    assert not window.job.isVisibleTo(window)
    qtbot.wait(300)
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=TIMEOUT)
    assert stale_vectors(window.session.store) > 0  # the rest waits for the next start


def test_the_working_row_shows_within_100_ms_and_names_each_phase(qtbot, open_window, settings):
    slow = ScriptedClient(n_ctx=4096, piece_chars=2, piece_delay=0.01)
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="Noted."), call("send_message", message="Tea.")])
    send_and_wait(qtbot, window, "I drink tea every morning")  # for the question to find
    phases: list[str] = []
    window.worker.event.connect(
        lambda e: phases.append(window.chat.working.phase) if window.chat.working else None
    )
    window.input.setPlainText("What do I drink?")
    started = time.perf_counter()
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    assert window.chat.working is not None
    # a widget added to a shown layout shows at the event loop's next turn
    qtbot.waitUntil(lambda: window.chat.working.isVisibleTo(window), timeout=100)
    assert time.perf_counter() - started < 0.1
    assert window.chat.entries()[-1] is window.chat.working  # in the reply's place
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert phases[:4] == [
        "searching memory",
        "reading what memory found",
        "reading the conversation",
        "writing",
    ]
    assert window.chat.working is None
    assert bubbles(window, "assistant")[-1].text == "Tea."


def test_dark_colours_and_back_to_the_systems(qtbot, window, saved):
    app = QApplication.instance()
    window.set_scheme("dark")
    try:
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert window.scheme_actions["dark"].isChecked()
        bubble = window.chat.bubble("assistant", "in the dark")
        assert DARK.assistant_bubble in bubble.styleSheet()
        qtbot.waitUntil(lambda: bool(saved) and saved[-1].scheme == "dark", timeout=TIMEOUT)
    finally:
        window.set_scheme("system")
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 150
    assert LIGHT.assistant_bubble in bubble.styleSheet()


def test_zoom_changes_the_chats_text_and_is_kept(qtbot, window, saved):
    before = window.chat.text_font.pointSizeF()
    window.commands["zoom_in"].trigger()
    window.commands["zoom_in"].trigger()
    assert window.settings.text_scale == 1.2
    assert abs(window.chat.text_font.pointSizeF() - before * 1.2) < 0.01
    assert window.input.font().pointSizeF() == window.chat.text_font.pointSizeF()
    window.commands["zoom_reset"].trigger()
    assert window.settings.text_scale == 1.0 and window.chat.text_font.pointSizeF() == before
    for _ in range(30):
        window.commands["zoom_out"].trigger()
    assert window.settings.text_scale == 0.7  # the smallest
    qtbot.waitUntil(lambda: bool(saved) and saved[-1].text_scale == 0.7, timeout=TIMEOUT)


def test_the_menu_bar_holds_every_action_with_its_shortcut(qtbot, window):
    in_menus = {
        action for menu in window.menuBar().findChildren(QMenu) for action in menu.actions()
    }
    toolbar = window.findChild(QToolBar, "toolbar")
    for action in toolbar.actions():
        if isinstance(toolbar.widgetForAction(action), QToolButton):
            assert action in in_menus, action.text()
    for key in ("new", "settings", "stop", "reflect", "zoom_in", "quit", "copy_reply"):
        assert window.commands[key] in in_menus and not window.commands[key].shortcut().isEmpty()
    assert set(window.scheme_actions.values()) <= in_menus
    panels = {a.text() for a in window.menus["View"].findChildren(QMenu)[-1].actions()}
    assert {"Core memory", "Recall", "Archival memory"} <= panels


def test_copy_last_reply(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message="Use `pip install x`.")])
    send_and_wait(qtbot, window, "how?")
    window.commands["copy_reply"].trigger()
    assert QGuiApplication.clipboard().text() == "Use `pip install x`."


def test_a_new_agent_is_who_its_name_and_words_say(qtbot, window):
    window.create_agent("Ada", "A patient Spanish tutor.")
    qtbot.waitUntil(lambda: window.chat.speaker == "Ada" and idle(window), timeout=TIMEOUT)
    persona = run(qtbot, window.worker, lambda s: s.agent.core_memory["persona"])
    assert persona.startswith("I am Ada. A patient Spanish tutor.")


def test_the_new_agent_dialog_needs_a_name(qtbot):
    dialog = NewAgentDialog()
    qtbot.addWidget(dialog)
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.name_edit, "  ")
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.name_edit, "Ada")
    assert dialog.ok_button.isEnabled() and dialog.name == "Ada" and dialog.description == ""


def test_a_passing_word_in_the_status_bar_gives_way(qtbot, window, monkeypatch):
    monkeypatch.setattr("desktop.main_window.STATUS_SECONDS", 0.05)
    model_line = window.status.text()
    window.say("Imported 'memex copy'")
    assert window.status.text() == "Imported 'memex copy'"
    qtbot.waitUntil(lambda: window.status.text() == model_line, timeout=TIMEOUT)


def test_the_status_bar_names_a_shipped_model_by_its_file(tmp_path):
    from desktop.session import model_label

    file = tmp_path / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert model_label(file) == "Qwen2.5-Coder-0.5B-Instruct Q4_K_M"  # not the GGUF's "AWQ"
    assert model_label(tmp_path / "my-own.Q8_0.gguf") == "my-own.Q8_0"


def test_file_dialogs_open_in_the_documents_folder_not_the_working_directory():
    from desktop.main_window import documents_dir

    assert documents_dir().is_dir() and documents_dir() != Path.cwd()


def test_an_empty_chat_welcomes_and_its_examples_fill_the_input(qtbot, window, scripted, settings):
    welcome = window.chat.welcome
    assert welcome is not None and settings.db_path in welcome.body.text()
    assert "core memory" in welcome.body.text() and len(welcome.examples) == 3
    qtbot.mouseClick(welcome.examples[0], Qt.MouseButton.LeftButton)
    assert window.input.toPlainText() == welcome.examples[0].text()
    scripted.enqueue([call("send_message", message="Hello Sam!")])
    send_and_wait(qtbot, window, window.input.toPlainText())
    assert window.chat.welcome is None and welcome not in window.chat.entries()


def test_a_chat_with_history_has_no_welcome(qtbot, open_window, settings, scripted):
    scripted.enqueue([call("send_message", message="Hi.")])
    first = open_window(settings)
    send_and_wait(qtbot, first, "hello")
    first.close()
    again = open_window(settings)
    assert again.chat.welcome is None and bubbles(again, "user")[0].text == "hello"


def test_a_message_stops_a_reflection_which_stays_above_it(qtbot, open_window, settings, slow):
    window = open_window(settings, slow)
    slow.enqueue(
        [call("send_message", message="While you were away I thought " + "more " * 100)]
        + [call("send_message", message="Hi! I'm here.")]
    )
    window.reflect()
    qtbot.waitUntil(lambda: bool(bubbles(window, "assistant")), timeout=TIMEOUT)
    started = time.perf_counter()
    window.send("hello?")
    qtbot.waitUntil(lambda: not window._reflecting, timeout=TIMEOUT)
    assert time.perf_counter() - started < 2  # stopped at its next token, not at its end
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    thought, answer = bubbles(window, "assistant")
    assert "stopped" in thought.header.text() and answer.text == "Hi! I'm here."
    entries = window.chat.entries()
    [asked] = bubbles(window, "user")
    assert entries.index(thought) < entries.index(asked) < entries.index(answer)
    stopped_note = next(r for r in rows(window, "note") if r.summary.text().startswith("Stopped"))
    assert entries.index(stopped_note) < entries.index(asked)  # the reflection's, above
    assert window._idle.isActive()  # it reflects again at the next idle spell


def test_every_control_has_a_name_a_screen_reader_can_say(qtbot, window):
    """Inputs, lists and icon-only buttons of ours (Qt's own inner parts aside) are named."""
    unnamed = []
    for widget in window.findChildren(QWidget):
        name = widget.objectName()
        if not name or name.startswith("qt_"):
            continue  # Qt's own parts (a table's corner, a toolbar's overflow button)
        inputs = (QLineEdit, QPlainTextEdit, QComboBox, QAbstractSpinBox, QAbstractItemView)
        silent_button = isinstance(widget, QAbstractButton) and not widget.text()
        if (isinstance(widget, inputs) or silent_button) and not widget.accessibleName():
            unnamed.append(name)
    assert unnamed == []


def test_the_core_panels_buttons_fit_its_dock_at_the_default_size(qtbot, window):
    window.resize(1280, 800)
    window.show()
    qtbot.waitUntil(lambda: window.core_panel.editor("human") is not None, timeout=TIMEOUT)
    qtbot.wait(50)
    scroll = window.core_panel.findChild(QScrollArea)
    viewport = scroll.viewport()
    editor = window.core_panel.editor("persona")
    for button in editor.findChildren(QPushButton):
        right = button.mapTo(viewport, button.rect().topRight()).x()
        assert right <= viewport.width(), button.text()
    assert not scroll.horizontalScrollBar().isVisible()


def test_regenerate_replaces_the_last_reply_and_recall_keeps_both(qtbot, window, scripted):
    scripted.enqueue(
        [call("send_message", message="Try pathlib."), call("send_message", message="Use open().")]
    )
    send_and_wait(qtbot, window, "How do I read a file?")
    window.commands["regenerate"].trigger()
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert [b.text for b in bubbles(window, "assistant")] == ["Use open()."]
    assert [b.text for b in bubbles(window, "user")] == ["How do I read a file?"]
    found = run(qtbot, window.worker, lambda s: s.recall_search("pathlib")[1])
    assert any(m.replaced and "Try pathlib." in m.content for m in found)  # kept, marked


def test_edit_last_sends_the_edit_in_place_of_the_message(qtbot, window, scripted):
    scripted.enqueue(
        [call("send_message", message="Paris."), call("send_message", message="Rome.")]
    )
    send_and_wait(qtbot, window, "Capital of France?")
    window.commands["edit_last"].trigger()
    assert window.input.toPlainText() == "Capital of France?"
    assert "editing" in bubbles(window, "user")[-1].header.text()
    window.input.setPlainText("Capital of Italy?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert [b.text for b in bubbles(window, "user")] == ["Capital of Italy?"]
    assert [b.text for b in bubbles(window, "assistant")] == ["Rome."]
    users = run(
        qtbot,
        window.worker,
        lambda s: [(m.content, m.replaced) for m in s.agent.recall.all() if m.role == "user"],
    )
    assert users == [("Capital of France?", True), ("Capital of Italy?", False)]


def test_an_edit_left_with_escape_changes_nothing(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message="Paris.")])
    send_and_wait(qtbot, window, "Capital of France?")
    window.commands["edit_last"].trigger()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert (
        window.input.toPlainText() == ""
        and "editing" not in bubbles(window, "user")[-1].header.text()
    )
    assert [b.text for b in bubbles(window, "assistant")] == ["Paris."]


def test_a_message_stops_the_memory_review_which_resumes_at_the_next_reflection(
    qtbot, open_window, settings, slow
):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="Noted.")])
    send_and_wait(qtbot, window, "I keep bees on my roof in Oslo.")
    # a review that takes seconds to write (2 characters every 10 ms)
    slow.enqueue_review({"core": [], "passages": ["The user keeps bees. " * 30], "facts": []})
    slow.enqueue([call("send_message", message="Hello again!")])
    window.reflect()
    qtbot.wait(300)  # the review is being written
    started = time.perf_counter()
    window.send("hello?")
    qtbot.waitUntil(lambda: not window._reflecting, timeout=TIMEOUT)
    assert time.perf_counter() - started < 2
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert bubbles(window, "assistant")[-1].text == "Hello again!"
    pending = run(qtbot, window.worker, lambda s: len(s.agent.consolidator.pending()))
    assert pending > 0  # nothing of the cut review was applied: it is still to do
    slow.enqueue_review({"core": [], "passages": ["The user keeps bees in Oslo."], "facts": []})
    slow.enqueue([call("send_message", message="I noted what you told me.")])
    window.reflect()
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    done = run(
        qtbot,
        window.worker,
        lambda s: (
            len(s.agent.consolidator.pending()),
            [p.text for p in s.agent.archival.recent(5)],
        ),
    )
    assert done == (0, ["The user keeps bees in Oslo."])
    assert window.error_box is None


def test_memory_work_runs_while_the_user_types_and_stops_when_they_send(
    qtbot, open_window, settings
):
    # a page-out's summary takes 30 s: a message sent meanwhile is answered at once, and the
    # summary is written at the next idle spell
    model = ScriptedClient(n_ctx=2048, summary_seconds=30)
    window = open_window(settings, model)

    def summarising() -> bool:
        summaries = [p for p in model.history if p[0].content.startswith(SUMMARY_HEAD)]
        return bool(summaries) and window.worker.idle_work_running

    def send(text: str) -> None:  # and wait for the step, not for the idle work after it
        window.input.setPlainText(text)
        qtbot.keyClick(window.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: window.stepping, timeout=TIMEOUT)
        qtbot.waitUntil(lambda: not window.stepping, timeout=TIMEOUT)

    for turn in range(30):
        model.enqueue([call("send_message", message=f"reply {turn} " + "ok " * 20)])
        send(f"message {turn} about topic{turn} " + "words " * 80)
        qtbot.wait(200)
        if summarising():
            break
    assert summarising(), "no page-out in 30 turns"
    assert window.organising.isVisible() and window.organising.text() == ORGANISING
    assert window.input.isEnabled()
    model.enqueue([call("send_message", message="answered at once")])
    started = time.monotonic()
    send("are you there?")
    assert time.monotonic() - started < 5
    assert bubbles(window, "assistant")[-1].text == "answered at once"
    assert any(isinstance(w, Divider) and w.kind == "pageout" for w in window.chat.entries())
    assert not any(n.startswith("Paged out") for n in window.session.agent.context.events)
