"""Adversarial tests of the main window: odd timings (close, stop, agent changes, settings while a
step runs or messages wait in the queue) and odd inputs (whitespace, huge, emoji, HTML-like text).

The rules checked: the UI thread never runs engine work; a message the user typed and a committed
message are never lost; one step at a time, later input queued visibly; errors are shown, never
raised out of a Qt slot (pytest-qt fails a test on that). Each bug this file found is fixed; its
test stays as a regression test with a `# Was a bug` comment.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import Qt as GuiQt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QWidget

from desktop.chat_view import MessageBubble
from desktop.context_bar import ContextPanel
from desktop.main_window import MainWindow
from engine.errors import GenerationError
from engine.llm.scripted import ScriptedClient, call
from engine.types import ContextUsage

from .windows import TIMEOUT, bubbles, idle, rows, run, send_and_wait


def user_messages_by_agent(qtbot, window: MainWindow) -> dict[str, list[str]]:
    def job(session) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {a.name: [] for a in session.agents()}
        for name, content in session.store.query(
            "SELECT a.name, m.content FROM messages m JOIN agents a ON a.id = m.agent_id"
            " WHERE m.role = 'user' ORDER BY m.id"
        ):
            found[name].append(content)
        return found

    return run(qtbot, window.worker, job)


def hold_worker(window: MainWindow) -> threading.Event:
    """Keep the engine thread busy until the returned event is set (released after 10 s at
    the latest, so a failing test cannot hang): jobs submitted meanwhile wait their turn."""
    gate, started = threading.Event(), threading.Event()

    def job(_session) -> None:
        started.set()
        gate.wait(10)

    window.worker.submit(job)
    assert started.wait(5)
    return gate


def stored_user_texts(make_session, settings) -> list[str]:
    """The user messages in the memory file, read by a fresh session (after the window closed)."""
    session = make_session(settings)
    session.load(lambda text, percent: None)
    return [m.content for m in session.agent.recall.all() if m.role == "user"]


def renders_as_rich_text(label) -> bool:
    fmt = label.textFormat()
    return fmt == Qt.TextFormat.RichText or (
        fmt == Qt.TextFormat.AutoText and GuiQt.mightBeRichText(label.text())
    )


# -- closing ----------------------------------------------------------------------------------


def test_close_during_a_slow_step_is_quick_and_keeps_the_message(
    qtbot, open_window, settings, slow, make_session
):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 50)])  # ~10 s to stream
    window.send("a long story please")
    qtbot.waitUntil(lambda: bool(bubbles(window, "assistant")), timeout=TIMEOUT)
    started = time.perf_counter()
    window.close()
    assert time.perf_counter() - started < 3
    qtbot.wait(50)  # the step's answer arrives after the close: drawn without an exception
    assert stored_user_texts(make_session, settings) == ["a long story please"]


# Was a bug at c694ab9 (fixed in the working tree): the queue of typed messages lives only in
# MainWindow._queue; closeEvent neither stores nor keeps them, so a message shown as "queued" is
# gone after a restart.
def test_close_with_a_queued_message_keeps_it(qtbot, open_window, settings, slow, make_session):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 50), call("send_message", message="ok")])
    window.send("first")
    qtbot.waitUntil(lambda: bool(bubbles(window, "assistant")), timeout=TIMEOUT)
    window.send("second, typed while the first was answered")
    assert "queued" in bubbles(window, "user")[1].header.text()
    window.close()
    qtbot.wait(50)
    assert "second, typed while the first was answered" in stored_user_texts(make_session, settings)


# Was a bug at c694ab9 (fixed in the working tree): EngineWorker.shutdown (worker.py) calls
def human_editor(qtbot, window: MainWindow):
    """The core panel's editor of the "human" block, once the panel has drawn it."""
    qtbot.waitUntil(lambda: window.core_panel.editor("human") is not None, timeout=TIMEOUT)
    return window.core_panel.editor("human")


def model_saves_a_cat(model: ScriptedClient, reply: str) -> None:
    """The next step: the model appends "Has a cat" to the human block, then says `reply`."""
    model.enqueue(
        [
            call("core_memory_append", heartbeat=True, section="human", content="Has a cat"),
            call("send_message", message=reply),
        ]
    )


# QThread.quit() while jobs still wait in the thread's event queue: the loop exits after the
# running job and the waiting ones never run. A core-memory Save clicked while a step runs (queued
# behind it) and then closing the window loses the edit, though the panel said "Saving…".
def test_close_right_after_a_core_save_keeps_the_edit(
    qtbot, open_window, settings, slow, make_session
):
    window = open_window(settings, slow)
    editor = human_editor(qtbot, window)
    slow.enqueue([call("send_message", message="word " * 50)])
    window.send("a long story please")
    qtbot.waitUntil(lambda: bool(bubbles(window, "assistant")), timeout=TIMEOUT)
    editor.editor.setPlainText("Likes tea")
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    assert editor.status.text() == "Saving…"
    window.close()
    session = make_session(settings)
    session.load(lambda text, percent: None)
    assert {b.label: b.value for b in session.blocks()}["human"] == "Likes tea"


def test_close_before_the_step_job_starts_keeps_the_message(
    qtbot, open_window, settings, slow, make_session
):
    """Sent (not queued) but its step still waits behind another job when the window closes:
    the close does not wait for the whole reply, and the message is stored."""
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 50)])  # ~10 s if not stopped
    gate = hold_worker(window)
    window.send("typed just before closing")
    threading.Timer(0.2, gate.set).start()  # the earlier job ends while close() waits
    started = time.perf_counter()
    window.close()
    assert time.perf_counter() - started < 3
    assert stored_user_texts(make_session, settings) == ["typed just before closing"]


# -- stop -------------------------------------------------------------------------------------


def test_stop_when_nothing_runs_does_nothing(qtbot, window, scripted):
    window.stop()
    qtbot.keyClick(window.input, Qt.Key.Key_Escape)
    assert not window.stepping and window.status.text() != "Stopping…"
    scripted.enqueue([call("send_message", message="still fine")])
    send_and_wait(qtbot, window, "hello")
    assert bubbles(window, "assistant")[-1].text == "still fine"
    assert not rows(window, "note")  # the earlier Stop did not cut this step


# Was a bug at c694ab9 (fixed in the working tree): Stop pressed after send() but before the engine
# thread starts the step (it is still on an earlier job) is lost: MemGPTAgent._run clears the
# cancel flag when the step begins (engine/agent.py `self._cancel.clear()`), so the step runs to
# the end. A realistic trigger: a pasted 200k-character message spends ~16 s embedding its archival
# parts before _run starts; Stop pressed meanwhile is forgotten.
def test_stop_pressed_before_the_step_starts_stops_it(qtbot, open_window, settings, slow):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 100)])
    gate = hold_worker(window)
    window.send("go")
    assert window.stepping and window.stop_button.isEnabled()
    window.stop()
    gate.set()
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert rows(window, "note") and "Stopped" in rows(window, "note")[-1].summary.text()


# -- odd input --------------------------------------------------------------------------------


def test_whitespace_only_input_is_not_sent(qtbot, window):
    window.input.setPlainText("  \n\t  ")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
    assert not bubbles(window, "user") and not window.stepping
    assert window.input.toPlainText() == "  \n\t  "  # kept as typed


def test_emoji_and_non_bmp_text_round_trip(qtbot, open_window, settings, scripted):
    window = open_window(settings)
    text = "héllo 👋🏽 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🇫🇷 \u200d👨‍👩‍👧 中文"
    scripted.enqueue([call("send_message", message="réponse 🎉 𝄞")])
    send_and_wait(qtbot, window, text)
    assert bubbles(window, "user")[-1].text == text
    assert bubbles(window, "assistant")[-1].text == "réponse 🎉 𝄞"
    window.close()
    again = open_window(settings)
    qtbot.waitUntil(lambda: bool(bubbles(again, "assistant")), timeout=TIMEOUT)
    assert [b.text for b in bubbles(again, "user")] == [text]
    assert [b.text for b in bubbles(again, "assistant")] == ["réponse 🎉 𝄞"]


def test_huge_message_is_stored_and_answered(qtbot, open_window, settings):
    # 120k characters fit the view of a 128k-token window, so the engine does not spend ~16 s
    # embedding archival parts (what 200k characters cost here): the test is about the window.
    big = ScriptedClient(n_ctx=131072)
    window = open_window(settings, big)
    text = ("lorem ipsum dolor sit amet 👋 " * 5000)[:120_000]
    big.enqueue([call("send_message", message="that was long")])
    send_and_wait(qtbot, window, text)
    assert bubbles(window, "user")[-1].text == text
    assert bubbles(window, "assistant")[-1].text == "that was long"
    stored = run(qtbot, window.worker, lambda s: [m.content for m in s.agent.recall.all()])
    assert text in stored


def test_reply_with_html_is_shown_as_plain_text(qtbot, window, scripted):
    """A reply is rendered Markdown, but HTML in it is shown as the characters it is."""
    html = '<b>bold</b> <img src="x"> <a href="http://e.x">link</a> <script>x</script>'
    scripted.enqueue([call("send_message", message=html)])
    send_and_wait(qtbot, window, "<i>not italic</i>")
    assert not renders_as_rich_text(bubbles(window, "user")[-1].body)
    [label] = bubbles(window, "assistant")[-1].body.parts
    shown = QTextDocument()
    shown.setHtml(label.text())
    assert shown.toPlainText() == html
    assert "<img" not in label.text() and "<script" not in label.text()
    assert bubbles(window, "assistant")[-1].text == html
    assert bubbles(window, "user")[-1].text == "<i>not italic</i>"


# Was a bug at c694ab9 (fixed in the working tree): a message the engine refuses (InvalidInput,
# e.g. longer than MAX_USER_MESSAGE_CHARS) is marked "saved; no reply" although nothing was stored,
# and the text is gone from the input: MainWindow._step_failed marks every failure "saved" and
# never gives the text back.
def test_refused_message_is_not_claimed_saved_and_is_given_back(qtbot, window, monkeypatch):
    monkeypatch.setattr("engine.agent.MAX_USER_MESSAGE_CHARS", 50)
    text = "x" * 60
    window.input.setPlainText(text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: idle(window) and window.error_box is not None, timeout=TIMEOUT)
    assert "60 characters" in window.error_box.text()
    stored = run(qtbot, window.worker, lambda s: [m.content for m in s.agent.recall.all()])
    assert text not in stored
    assert "saved" not in bubbles(window, "user")[-1].header.text()
    assert window.input.toPlainText() == text


# -- errors from the model --------------------------------------------------------------------


def test_generation_error_is_shown_and_the_next_message_works(qtbot, window, scripted):
    assert scripted.remaining == 0  # the next model call raises GenerationError
    send_and_wait(qtbot, window, "anyone there?")
    box = window.error_box
    assert box is not None and box.isVisible() and "no more replies" in box.text()
    assert "no reply" in bubbles(window, "user")[-1].header.text()
    assert window.status.text() == "The step failed"
    assert window.send_button.isEnabled() and not window.stop_button.isEnabled()
    box.close()
    scripted.enqueue([call("send_message", message="back again")])
    send_and_wait(qtbot, window, "and now?")
    assert bubbles(window, "assistant")[-1].text == "back again"
    stored = user_messages_by_agent(qtbot, window)["memex"]
    assert stored == ["anyone there?", "and now?"]


class FailsOnBoom(ScriptedClient):
    """Raises GenerationError (a model failure) when the newest prompt message says "boom"."""

    def complete(self, messages, reply_schema, max_tokens, on_text=None):
        if reply_schema is not None and "boom" in messages[-1].content:
            raise GenerationError("the model crashed")
        return super().complete(messages, reply_schema, max_tokens, on_text)


def test_generation_error_mid_queue_still_runs_the_queued_message(qtbot, open_window, settings):
    model = FailsOnBoom(n_ctx=4096, piece_chars=2, piece_delay=0.01)
    window = open_window(settings, model)
    model.enqueue([call("send_message", message="x" * 40), call("send_message", message="3")])
    window.send("one")
    window.send("boom")
    window.send("three")
    assert ["queued" in b.header.text() for b in bubbles(window, "user")] == [False, True, True]
    qtbot.waitUntil(lambda: idle(window) and window.error_box is not None, timeout=TIMEOUT)
    assert "the model crashed" in window.error_box.text()
    assert "no reply" in bubbles(window, "user")[1].header.text()
    assert [b.text for b in bubbles(window, "assistant")] == ["x" * 40, "3"]
    assert user_messages_by_agent(qtbot, window)["memex"] == ["one", "boom", "three"]


# -- agents while a step runs or messages wait --------------------------------------------------


def test_switching_agent_during_a_step_is_refused_and_the_queue_stays(
    qtbot, open_window, settings, slow
):
    window = open_window(settings, slow)
    window.create_agent("work")
    qtbot.waitUntil(
        lambda: window.agent_box.currentText() == "work" and idle(window), timeout=TIMEOUT
    )
    window.switch_agent("memex")
    qtbot.waitUntil(
        lambda: window.agent_box.currentText() == "memex" and idle(window), timeout=TIMEOUT
    )
    slow.enqueue([call("send_message", message="word " * 5), call("send_message", message="2")])
    window.send("first")
    window.send("second")
    assert not window.agent_box.isEnabled()
    window.switch_agent("work")  # ignored while a step runs
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert window.agent_box.currentText() == "memex"
    assert user_messages_by_agent(qtbot, window) == {"memex": ["first", "second"], "work": []}


def test_rename_during_a_step_keeps_the_queue_with_the_agent(qtbot, open_window, settings, slow):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 5), call("send_message", message="2")])
    window.send("first")
    window.send("second")
    window.rename_agent("home")
    qtbot.waitUntil(
        lambda: idle(window) and window.agent_box.currentText() == "home", timeout=TIMEOUT
    )
    assert user_messages_by_agent(qtbot, window) == {"home": ["first", "second"]}
    assert [b.text for b in bubbles(window, "user")] == ["first", "second"]
    assert [b.text for b in bubbles(window, "assistant")] == ["word " * 5, "2"]


# Was a bug at c694ab9 (fixed in the working tree): create_agent / delete_agent (toolbar "New
# agent…", "Delete…") are not refused while a step runs, unlike switch_agent. Their job runs right
# after the step; MainWindow._end_step then starts the queued messages on whatever agent the
# session holds by then, so messages typed to "memex" are stored for "work" (or for the agent left
# after the delete). With three messages queued, _agent_shown -> ChatView.clear() also deletes the
# still-queued bubbles, and _start_step's bubble.set_tag() raises RuntimeError (deleted C++ object)
# inside a Qt slot.
@pytest.mark.parametrize("action", ["create", "delete"])
def test_agent_change_during_a_step_keeps_queued_messages_with_their_agent(
    qtbot, open_window, settings, slow, action
):
    window = open_window(settings, slow)
    if action == "delete":
        window.create_agent("other")
        qtbot.waitUntil(lambda: window.agent_box.currentText() == "other", timeout=TIMEOUT)
        window.switch_agent("memex")
        qtbot.waitUntil(
            lambda: window.agent_box.currentText() == "memex" and idle(window), timeout=TIMEOUT
        )
    slow.enqueue([call("send_message", message="word " * 5)])
    slow.enqueue([call("send_message", message=f"answer {i}") for i in range(2, 5)])
    window.send("m1")
    for i in range(2, 5):
        window.send(f"m{i}")
    if action == "create":
        window.create_agent("work")
    else:
        window.delete_agent("memex")
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    stored = user_messages_by_agent(qtbot, window)
    assert stored.get("memex") == ["m1", "m2", "m3", "m4"]  # typed to memex, stored for memex
    assert not stored.get("work") and not stored.get("other")


def test_delete_the_only_agent_leaves_a_fresh_one(qtbot, window, scripted):
    scripted.enqueue([call("send_message", message="hi")])
    send_and_wait(qtbot, window, "hello")
    window.delete_agent("memex")
    qtbot.waitUntil(lambda: idle(window) and not bubbles(window, "user"), timeout=TIMEOUT)
    assert window.agent_box.count() == 1 and window.agent_box.currentText() == "memex"
    assert user_messages_by_agent(qtbot, window) == {"memex": []}
    scripted.enqueue([call("send_message", message="new here")])
    send_and_wait(qtbot, window, "again")
    assert bubbles(window, "assistant")[-1].text == "new here"


@pytest.mark.parametrize(
    ("name", "error"),
    [("work", "already an agent called 'work'"), ("   ", "needs a name"), ("x" * 81, "at most")],
)
def test_rename_to_a_taken_or_bad_name_shows_an_error(qtbot, window, name, error):
    window.create_agent("work")
    qtbot.waitUntil(lambda: window.agent_box.currentText() == "work", timeout=TIMEOUT)
    window.switch_agent("memex")
    qtbot.waitUntil(
        lambda: window.agent_box.currentText() == "memex" and idle(window), timeout=TIMEOUT
    )
    window.rename_agent(name)
    qtbot.waitUntil(lambda: window.error_box is not None and idle(window), timeout=TIMEOUT)
    assert error in window.error_box.text()
    names = [window.agent_box.itemText(i) for i in range(window.agent_box.count())]
    assert names == ["memex", "work"] and window.agent_box.currentText() == "memex"


def test_create_an_existing_agent_shows_an_error(qtbot, window):
    window.create_agent(" memex ")
    qtbot.waitUntil(lambda: window.error_box is not None and idle(window), timeout=TIMEOUT)
    assert "already an agent called 'memex'" in window.error_box.text()
    assert window.agent_box.count() == 1


# Was a bug at c694ab9 (fixed in the working tree): names and engine messages go into widgets that
# guess the text format (Qt::AutoText): MessageBubble.header ("<speaker> · time", chat_view.py
# _update_header) and the error dialog (MainWindow.show_error's QMessageBox) render an agent called
# "<b>Bob</b>" as bold HTML, while the bubbles' bodies and the panels' StatusLabel are PlainText on
# purpose.
def test_agent_name_with_markup_is_shown_literally(qtbot, window, scripted):
    name = "<b>Bob</b>"
    window.create_agent(name)
    qtbot.waitUntil(
        lambda: window.agent_box.currentText() == name and idle(window), timeout=TIMEOUT
    )
    scripted.enqueue([call("send_message", message="hi")])
    send_and_wait(qtbot, window, "hello")
    header = bubbles(window, "assistant")[-1].header
    assert name in header.text()
    window.create_agent(name)
    qtbot.waitUntil(lambda: window.error_box is not None and idle(window), timeout=TIMEOUT)
    assert name in window.error_box.text()
    assert not renders_as_rich_text(header)
    assert window.error_box.textFormat() == Qt.TextFormat.PlainText or not GuiQt.mightBeRichText(
        window.error_box.text()
    )


# -- settings, reflect and panels while a step runs --------------------------------------------


def test_new_settings_during_a_step_with_a_queue(qtbot, open_window, settings, slow, saved):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 5), call("send_message", message="2")])
    window.send("first")
    window.send("second")
    changed = dataclasses.replace(window.settings, warn_at=0.5, target_at=0.4)
    window.apply_settings(changed)
    qtbot.waitUntil(lambda: idle(window) and window.settings == changed, timeout=TIMEOUT)
    assert saved[-1] == changed
    assert user_messages_by_agent(qtbot, window) == {"memex": ["first", "second"]}
    assert [b.text for b in bubbles(window, "assistant")] == ["word " * 5, "2"]
    assert window.send_button.isEnabled() and window.agent_box.isEnabled()


# Was a bug at c694ab9 (fixed in the working tree): MainWindow.load captures the Settings (with
# .agent, the agent name at that moment) when it is submitted, and EngineSession.load opens that
# agent by name, creating it when it does not exist (MemGPTAgent._load_or_create). A rename during
# a step followed by new settings: the rename runs first, then the reload makes a new, empty
# "memex" and shows it, so the user's chat seems gone (it is under "home") and a stray agent is
# left in the file.
def test_new_settings_after_a_rename_during_a_step_keep_the_renamed_agent(
    qtbot, open_window, settings, slow
):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 5)])
    window.send("first")
    window.rename_agent("home")
    changed = dataclasses.replace(window.settings, warn_at=0.5, target_at=0.4)
    window.apply_settings(changed)
    qtbot.waitUntil(lambda: idle(window) and window.settings.warn_at == 0.5, timeout=TIMEOUT)
    names = [window.agent_box.itemText(i) for i in range(window.agent_box.count())]
    assert names == ["home"] and window.agent_box.currentText() == "home"
    assert [b.text for b in bubbles(window, "user")] == ["first"]


# Was a bug (fixed): new settings (here another memory file) are not refused while a step runs or messages
# wait, unlike agent changes (MainWindow._agents_free): the load job runs right after the step,
# then _end_step starts the queued message on the new file, so a message typed to the agent of
# memex.db is stored in other.db.
def test_other_memory_file_during_a_step_keeps_the_queued_message_in_its_file(
    qtbot, open_window, settings, slow, make_session
):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 5), call("send_message", message="2")])
    window.send("first")
    window.send("second")
    other = dataclasses.replace(settings, db_path=settings.db_path.replace("memex.db", "other.db"))
    window.apply_settings(other)
    qtbot.waitUntil(lambda: idle(window) and slow.remaining == 0, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert stored_user_texts(make_session, settings) == ["first", "second"]


# Was a bug (fixed): opening another memory file opens the agent of the
# current name there and *creates* it when that file has no such agent (EngineSession.load ->
# _make_agent -> MemGPTAgent._load_or_create): the user sees an empty "work" instead of the
# file's own agent and conversation, and a stray empty agent is added to that file.
def test_opening_another_memory_file_shows_its_own_agent(
    qtbot, open_window, settings, scripted, make_session
):
    other = dataclasses.replace(settings, db_path=settings.db_path.replace("memex.db", "other.db"))
    session = make_session(other)
    session.load(lambda text, percent: None)
    scripted.enqueue([call("send_message", message="hi from the other file")])
    session.step("hello other file", lambda e: None)
    session.close()
    window = open_window(settings)
    window.create_agent("work")
    qtbot.waitUntil(
        lambda: idle(window) and window.agent_box.currentText() == "work", timeout=TIMEOUT
    )
    window.apply_settings(dataclasses.replace(window.settings, db_path=other.db_path))
    qtbot.waitUntil(
        lambda: idle(window) and window.settings.db_path == other.db_path, timeout=TIMEOUT
    )
    names = [window.agent_box.itemText(i) for i in range(window.agent_box.count())]
    assert names == ["memex"]
    assert [b.text for b in bubbles(window, "user")] == ["hello other file"]


def test_reflect_during_a_step_is_ignored(qtbot, open_window, settings, slow):
    window = open_window(settings, slow)
    slow.enqueue([call("send_message", message="word " * 5)])
    window.send("hello")
    window.reflect()
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert not rows(window, "heartbeat") and slow.remaining == 0
    assert len(slow.history) == 1  # one model call: no heartbeat turn squeezed in


def test_user_core_edit_during_a_model_edit_of_the_same_block_is_kept(
    qtbot, open_window, settings, slow
):
    window = open_window(settings, slow)
    editor = human_editor(qtbot, window)
    model_saves_a_cat(slow, reply="word " * 5)
    window.send("I have a cat")
    editor.editor.setPlainText("Likes tea")  # typed while the model edits the same block
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: editor.on_disk_label.isVisibleTo(editor), timeout=TIMEOUT)
    assert editor.editor.toPlainText() == "Likes tea"  # the user's text is not replaced
    assert editor.block.value == "Has a cat"


# Was a bug at c694ab9 (BlockEditor._save checked only _same_block, so a Save queued behind a
# step silently overwrote the model's edit); fixed in the working tree by _unchanged_since_seen.
def test_core_save_queued_behind_a_model_edit_does_not_silently_overwrite_it(
    qtbot, open_window, settings, slow
):
    window = open_window(settings, slow)
    editor = human_editor(qtbot, window)
    model_saves_a_cat(slow, reply="ok")
    gate = hold_worker(window)
    window.send("I have a cat")
    editor.editor.setPlainText("Likes tea")
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    gate.set()
    qtbot.waitUntil(lambda: idle(window) and not editor._pending, timeout=TIMEOUT)
    stored = run(qtbot, window.worker, lambda s: {b.label: b.value for b in s.blocks()})["human"]
    conflict_shown = editor.status.property("error") or editor.on_disk_label.isVisibleTo(editor)
    assert "Has a cat" in stored or conflict_shown


def test_archival_add_during_a_step_lands_after_it(qtbot, open_window, settings, slow):
    window = open_window(settings, slow)
    panel = window.archival_panel
    slow.enqueue([call("send_message", message="word " * 5)])
    window.send("hello")
    panel.text.setPlainText("the user likes tea")
    panel.tags.setText("prefs, , prefs")
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    assert not panel.add_button.isEnabled()  # one edit at a time
    qtbot.waitUntil(lambda: idle(window) and panel.results.rowCount() == 1, timeout=TIMEOUT)
    assert panel.results.item(0, 1).text() == "prefs"
    assert "Added passage" in panel.status.text()


# Was a bug at c694ab9: ArchivalMemory.delete scoped the passages row to the agent but not the
# passages_fts / passage_vectors rows, so a Delete that ran on another agent (after "New agent…",
# allowed during a step) left memex's passage unsearchable and said "Deleted."; fixed in the
# working tree (KeyError when the passage is not the agent's). The Delete still runs on the
# wrong agent: see test_agent_change_during_a_step_keeps_queued_messages_with_their_agent.
def test_archival_delete_racing_an_agent_change_does_not_corrupt_the_passage(qtbot, window):
    passage = run(qtbot, window.worker, lambda s: s.archival_add("the user keeps bees", ["hobby"]))
    panel = window.archival_panel
    panel.refresh()
    qtbot.waitUntil(lambda: panel.results.rowCount() == 1, timeout=TIMEOUT)
    panel.results.selectRow(0)
    panel._confirm = lambda text: True
    window.create_agent("work")
    panel._delete()
    qtbot.waitUntil(
        lambda: idle(window) and window.agent_box.currentText() == "work", timeout=TIMEOUT
    )

    def memex_state(session):
        session.switch("memex")
        rows_ = session.agent.archival.recent(10)
        found = session.agent.archival.search("bees keeps", 10)[1]
        return [p.id for p in rows_], [p.id for p in found]

    listed, found = run(qtbot, window.worker, memex_state)
    assert (passage.id in listed) == (passage.id in found)  # gone, or still searchable
    assert passage.id not in listed or panel.status.text() != "Deleted."


def test_recall_date_range_with_end_before_start_shows_an_error(qtbot, window):
    panel = window.recall_panel
    panel.end.setDate(panel.start.date().addDays(-3))
    qtbot.mouseClick(panel.findChild(QWidget, "recall-show"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.header.property("error"), timeout=TIMEOUT)
    assert "before the start date" in panel.header.text()


# -- the context bar --------------------------------------------------------------------------


# Was a bug at c694ab9 (fixed in the working tree): ContextPanel.show_usage divides by
# usage.context_window for each section's share (context_bar.py `100 * tokens / window`):
# ZeroDivisionError for a zero window, which the bar itself (StackedBar.paintEvent) guards against.
def test_context_panel_with_a_zero_window(qtbot):
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.show_usage(ContextUsage(0, 0))
    panel.show()
    qtbot.waitExposed(panel)


def test_context_panel_with_odd_usage(qtbot):
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.show()
    over = ContextUsage(5000, 4096, {"messages": 5000}, 3500, 2000, 3000, 1500)  # over the window
    panel.show_usage(over)
    panel.bar.repaint()
    assert "full" in panel.headline.text() and "122%" in panel.headline.text()
    panel.show_usage(ContextUsage(0, 4096))  # no sections, no lines
    panel.bar.repaint()
    assert panel.values["free"].text().startswith("0 tokens")


# -- history paging ---------------------------------------------------------------------------


@pytest.fixture
def long_history(make_session, settings) -> ScriptedClient:
    """212 stored messages: 40 turns with a core edit (5 messages each), then 4 plain turns.
    The newest 200 start at message 13, the tool result of the core edit in message 12."""
    client = ScriptedClient(n_ctx=65536)
    session = make_session(client=client)
    session.load(lambda text, percent: None)
    for i in range(40):
        client.enqueue(
            [
                call("core_memory_append", heartbeat=True, section="human", content=f"f{i}"),
                call("send_message", message=f"reply {i}"),
            ]
        )
        session.step(f"user {i}", lambda e: None)
    for i in range(4):
        client.enqueue([call("send_message", message=f"plain {i}")])
        session.step(f"plain user {i}", lambda e: None)
    session.close()
    return client


def describe(widget: QWidget) -> tuple[str, str]:
    if isinstance(widget, MessageBubble):
        return widget.role, widget.text
    return widget.kind, widget.summary.text()


def shown_ids(window: MainWindow) -> list[int]:
    return [w.property("message_id") for w in window.chat.entries() if w.property("message_id")]


# Was a bug at c694ab9 (fixed in the working tree): the "Load earlier messages" button is shown
# only when a page has >= HISTORY_PAGE *entries* (main_window.py _show_history / _prepend:
# `len(entries) >= HISTORY_PAGE`), but a page is HISTORY_PAGE *messages*, and tool results make no
# entry: with 212 messages the first page has ~120 entries, so the button never appears and older
# messages cannot be reached.
def test_load_earlier_button_shows_when_older_messages_exist(
    qtbot, open_window, settings, long_history
):
    window = open_window(settings, ScriptedClient(n_ctx=65536))
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert shown_ids(window)[0] > 1  # older messages exist...
    assert not window.chat.earlier.isHidden()  # ...so the button is offered


# Was a bug (fixed): MainWindow._show_earlier_button takes the next page's
# before_id from TranscriptPage.first_message_id, the page's first *stored* message. Here that
# is message 13, the tool result of the core_memory_append call in message 12, so the earlier
# page ends with the call but not its result, and engine/transcript.py _call_entry (which looks
# for the result only inside the page) draws "core_memory_append: ?" instead of "saved to core
# memory (human): f2". (At c694ab9 _oldest_id was the first *entry's* id, never a tool result.)
def test_load_earlier_pages_match_the_whole_transcript(qtbot, open_window, settings, long_history):
    window = open_window(settings, ScriptedClient(n_ctx=65536))
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    # the first page starts at a tool result whose call is on the earlier page
    window.chat.load_earlier.emit()  # the button is hidden (see above): ask as it would
    qtbot.waitUntil(lambda: idle(window) and shown_ids(window)[0] == 1, timeout=TIMEOUT)
    whole = run(qtbot, window.worker, lambda s: s.transcript(10_000))
    whole = getattr(whole, "entries", whole)  # a TranscriptPage, or (at c694ab9) a list
    assert shown_ids(window) == [e.message_id for e in whole if e.message_id]
    assert [describe(w) for w in window.chat.entries()] == [
        describe(window.chat.widget_for(e)) for e in whole
    ]


def test_load_earlier_keeps_order_across_pages(qtbot, open_window, settings, long_history):
    window = open_window(settings, ScriptedClient(n_ctx=65536))
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    first_page = shown_ids(window)
    window.chat.load_earlier.emit()
    qtbot.waitUntil(lambda: idle(window) and shown_ids(window)[0] == 1, timeout=TIMEOUT)
    ids = shown_ids(window)
    assert ids == sorted(set(ids)) and ids[-len(first_page) :] == first_page
    assert window.chat.earlier.isHidden()  # nothing older


# Was a bug at c694ab9 (fixed in the working tree): _load_earlier reads self._oldest_id when
# clicked; a second click before the first page arrives (e.g. while a step runs, the job waits
# behind it) asks for the same page again and _prepend draws it twice.
def test_load_earlier_clicked_twice_draws_each_message_once(
    qtbot, open_window, settings, long_history
):
    window = open_window(settings, ScriptedClient(n_ctx=65536))
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    window.chat.load_earlier.emit()
    window.chat.load_earlier.emit()
    qtbot.waitUntil(lambda: idle(window) and shown_ids(window)[0] == 1, timeout=TIMEOUT)
    ids = shown_ids(window)
    assert len(ids) == len(set(ids))


# -- rule 1: the UI thread never runs engine work --------------------------------------------


def test_the_ui_thread_never_touches_the_store_or_the_model(
    qtbot, open_window, settings, slow, monkeypatch
):
    """Every store query, embedding and model call, over a tour of the window's features,
    runs on the engine thread (the test's own look-ups go through the worker too)."""
    from engine.store.db import Store
    from engine.store.embed import Embedder

    on_ui: list[str] = []

    def watch(cls, name: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            if threading.current_thread() is threading.main_thread():
                on_ui.append(f"{cls.__name__}.{name}")
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for cls, names in (
        (Store, ("query", "query_one", "atomic")),
        (Embedder, ("embed", "tokenize")),
        (ScriptedClient, ("complete", "count_tokens", "count_message_tokens")),
    ):
        for name in names:
            watch(cls, name)

    window = open_window(settings, slow)
    slow.enqueue(
        [
            call("core_memory_append", heartbeat=True, section="human", content="Has a cat"),
            call("send_message", message="word " * 5),
            call("send_message", message="second"),
            call("archival_memory_insert", content="likes tea"),
            call("send_message", message="in work"),
        ]
    )
    window.send("first")
    window.send("queued")
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    window.reflect()
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    editor = window.core_panel.editor("human")
    editor.editor.setPlainText("Likes tea")
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    window.archival_panel.text.setPlainText("a passage")
    qtbot.mouseClick(window.archival_panel.add_button, Qt.MouseButton.LeftButton)
    window.recall_panel.query.setText("cat")
    window.recall_panel.search()
    window.recall_panel.show_dates()
    window.chat.load_earlier.emit()
    window.create_agent("work")
    qtbot.waitUntil(
        lambda: idle(window) and window.agent_box.currentText() == "work", timeout=TIMEOUT
    )
    send_and_wait(qtbot, window, "hello work")
    window.rename_agent("job")
    qtbot.waitUntil(
        lambda: idle(window) and window.agent_box.currentText() == "job", timeout=TIMEOUT
    )
    window.switch_agent("memex")
    qtbot.waitUntil(
        lambda: idle(window) and window.agent_box.currentText() == "memex", timeout=TIMEOUT
    )
    window.apply_settings(dataclasses.replace(window.settings, warn_at=0.5, target_at=0.4))
    qtbot.waitUntil(lambda: idle(window) and window.settings.warn_at == 0.5, timeout=TIMEOUT)
    window.delete_agent("job")
    qtbot.waitUntil(lambda: idle(window) and window.agent_box.count() == 1, timeout=TIMEOUT)
    assert window.error_box is None
    assert on_ui == []
