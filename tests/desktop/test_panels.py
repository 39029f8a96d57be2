"""The memory panels on a real session (temp database, real embedder, scripted model): core edits
with undo and history, archival add/search/edit/delete, recall by words and by date."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import QLabel, QListWidget, QPlainTextEdit, QPushButton, QToolButton

from desktop.panels import WAITING_FOR_MODELS
from desktop.panels.archival import ArchivalPanel, parse_tags
from desktop.panels.core import CorePanel, change_summary
from desktop.panels.recall import RecallPanel
from engine.llm.scripted import call

from . import windows

WAIT_MS = 10_000


def run(qtbot, worker, job) -> Any:
    return windows.run(qtbot, worker, job, WAIT_MS)


def stored(qtbot, worker, label: str) -> str:
    return run(qtbot, worker, lambda s: {b.label: b.value for b in s.blocks()})[label]


def click(qtbot, button: QPushButton) -> None:
    assert button.isEnabled(), button.objectName()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


# -- core ------------------------------------------------------------------------------------


@pytest.fixture
def core(qtbot, worker) -> CorePanel:
    panel = CorePanel(worker)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.editor("human") is not None, timeout=WAIT_MS)
    return panel


def find(panel, kind, name: str):
    widget = panel.findChild(kind, name)
    assert widget is not None, name
    return widget


def test_core_panel_shows_every_block_with_its_size(qtbot, worker, core):
    blocks = run(qtbot, worker, lambda s: s.blocks())
    human = next(b for b in blocks if b.label == "human")
    assert [b.label for b in blocks] == ["persona", "human", "system"]
    for block in blocks:
        assert find(core, QPlainTextEdit, f"core-editor-{block.label}").toPlainText() == block.value
        size = find(core, QLabel, f"core-size-{block.label}")
        assert size.text() == f"{len(block.value)} / {block.limit} chars"
    assert "read-only" in find(core, QLabel, "core-title-system").text()
    assert "read-only" not in find(core, QLabel, "core-title-human").text()

    editor = find(core, QPlainTextEdit, "core-editor-human")
    save = find(core, QPushButton, "core-save-human")
    assert not save.isEnabled()  # nothing to save yet
    qtbot.keyClicks(editor, "Sam")
    assert find(core, QLabel, "core-size-human").text() == f"3 / {human.limit} chars"
    assert save.isEnabled()


def test_save_shows_in_history_and_undo_restores(qtbot, worker, core):
    editor = find(core, QPlainTextEdit, "core-editor-human")
    undo = find(core, QPushButton, "core-undo-human")
    assert not undo.isEnabled()  # nothing to undo yet
    editor.setPlainText("Name: Sam. Likes tea.")
    with qtbot.waitSignal(core.edited, timeout=WAIT_MS):
        click(qtbot, find(core, QPushButton, "core-save-human"))
    assert stored(qtbot, worker, "human") == "Name: Sam. Likes tea."
    assert not find(core, QPushButton, "core-save-human").isEnabled()

    find(core, QToolButton, "core-history-toggle-human").click()
    history = find(core, QListWidget, "core-history-human")
    qtbot.waitUntil(lambda: "you:" in history.item(0).text(), timeout=WAIT_MS)
    assert "you: added “Name: Sam. Likes tea.”" in history.item(0).text()
    assert undo.isEnabled()

    with qtbot.waitSignal(core.edited, timeout=WAIT_MS):
        click(qtbot, find(core, QPushButton, "core-undo-human"))
    assert editor.toPlainText() == ""
    assert stored(qtbot, worker, "human") == ""
    qtbot.waitUntil(lambda: "undo by you" in history.item(0).text(), timeout=WAIT_MS)
    undone = history.item(1)
    assert undone.font().strikeOut() and "(undone)" in undone.text()
    assert not undo.isEnabled()  # the one edit is undone: nothing left to undo
    redo = find(core, QPushButton, "core-redo-human")
    assert redo.isEnabled()
    with qtbot.waitSignal(core.edited, timeout=WAIT_MS):
        click(qtbot, redo)
    assert editor.toPlainText() == "Name: Sam. Likes tea." and not redo.isEnabled()
    assert stored(qtbot, worker, "human") == "Name: Sam. Likes tea." and undo.isEnabled()
    qtbot.waitUntil(lambda: "redo by you" in history.item(0).text(), timeout=WAIT_MS)


def test_over_limit_save_shows_the_error_and_keeps_the_text(qtbot, worker, core):
    limit = core.editor("human").block.limit
    editor = find(core, QPlainTextEdit, "core-editor-human")
    text = "x" * (limit + 1)
    editor.setPlainText(text)
    size = find(core, QLabel, "core-size-human")
    assert size.property("over") and "#c62828" in size.styleSheet()
    click(qtbot, find(core, QPushButton, "core-save-human"))
    error = find(core, QLabel, "core-error-human")
    qtbot.waitUntil(lambda: bool(error.property("error")), timeout=WAIT_MS)
    assert f"over its limit of {limit}" in error.text()
    assert editor.toPlainText() == text
    assert stored(qtbot, worker, "human") == ""


def test_refresh_keeps_unsaved_text_and_marks_a_stored_change(qtbot, worker, core):
    human = find(core, QPlainTextEdit, "core-editor-human")
    human.setPlainText("my draft")

    def model_edits(s) -> None:  # as the model's tools would, between two refreshes
        s.agent.memory.append("human", "Name: Sam", actor="tool:core_memory_append")
        s.agent.memory.append("persona", "Calm.", actor="tool:core_memory_append")

    run(qtbot, worker, model_edits)
    persona = find(core, QPlainTextEdit, "core-editor-persona")
    core.refresh()
    qtbot.waitUntil(lambda: persona.toPlainText().endswith("\nCalm."), timeout=WAIT_MS)
    assert human.toPlainText() == "my draft"  # the user's text survives the refresh
    assert not find(core, QLabel, "core-ondisk-human").isHidden()
    assert find(core, QLabel, "core-ondisk-persona").isHidden()
    assert core.has_unsaved()

    click(qtbot, find(core, QPushButton, "core-revert-human"))
    assert human.toPlainText() == "Name: Sam"
    assert find(core, QLabel, "core-ondisk-human").isHidden()
    assert not core.has_unsaved()


def test_change_summary_shows_only_what_changed():
    assert change_summary("", "Name: Sam") == "added “Name: Sam”"
    assert change_summary("Name: Sam\nLikes tea", "Name: Sam") == "removed “Likes tea”"
    assert change_summary("same", "same") == "no change"
    assert change_summary("likes tea a lot", "likes coffee a lot") == "“…tea…” → “…coffee…”"


# -- archival --------------------------------------------------------------------------------


def test_archival_add_search_edit_delete(qtbot, worker, monkeypatch):
    panel = ArchivalPanel(worker)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.count.text() == "No passages.", timeout=WAIT_MS)

    for count, (text, tags) in enumerate(
        [
            ("My dog Rex loves the beach", "pets, dog"),
            ("The quarterly report is due on Friday", "work"),
        ],
        start=1,
    ):
        click(qtbot, panel.new_button)
        panel.text.setPlainText(text)
        panel.tags.setText(tags)
        with qtbot.waitSignal(panel.edited, timeout=WAIT_MS):
            click(qtbot, panel.add_button)
        qtbot.waitUntil(lambda n=count: panel.results.rowCount() == n, timeout=WAIT_MS)
    assert panel.count.text() == "2 newest passages"
    assert "quarterly" in panel.results.item(0, 2).text()  # newest first, and selected
    assert panel.results.selectionModel().selectedRows()[0].row() == 0
    saved = run(qtbot, worker, lambda s: s.archival_search("", 50))
    assert [p.tags for p in saved] == [["work"], ["pets", "dog"]]

    panel.query.setText("Rex beach")
    qtbot.keyClick(panel.query, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "match" in panel.count.text(), timeout=WAIT_MS)
    assert "Rex" in panel.results.item(0, 2).text()
    assert panel.results.item(0, 1).text() == "pets, dog"

    panel.results.selectRow(0)
    assert panel.text.toPlainText() == "My dog Rex loves the beach"
    panel.text.setPlainText("My dog Rex loves the sea")
    panel.tags.setText("pets")
    with qtbot.waitSignal(panel.edited, timeout=WAIT_MS):
        click(qtbot, panel.save_button)
    rex = run(qtbot, worker, lambda s: s.archival_search("", 50))[1]
    assert (rex.text, rex.tags) == ("My dog Rex loves the sea", ["pets"])
    qtbot.waitUntil(lambda: panel.results.item(0, 2).text().endswith("sea"), timeout=WAIT_MS)

    monkeypatch.setattr(panel, "_confirm", lambda text: False)
    click(qtbot, panel.delete_button)  # declined: nothing happens
    assert panel.delete_button.isEnabled()
    monkeypatch.setattr(panel, "_confirm", lambda text: "Rex" in text)
    with qtbot.waitSignal(panel.edited, timeout=WAIT_MS):
        click(qtbot, panel.delete_button)
    left = run(qtbot, worker, lambda s: s.archival_search("", 50))
    assert [p.text for p in left] == ["The quarterly report is due on Friday"]
    assert panel.text.toPlainText() == ""


def test_archival_error_is_shown_and_the_text_kept(qtbot, worker):
    run(qtbot, worker, lambda s: s.archival_add("A passage to empty", []))
    panel = ArchivalPanel(worker)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.results.rowCount() == 1, timeout=WAIT_MS)
    panel.results.selectRow(0)
    panel.text.setPlainText("   ")
    panel.tags.setText("kept, tags")
    click(qtbot, panel.save_button)
    qtbot.waitUntil(lambda: bool(panel.status.property("error")), timeout=WAIT_MS)
    assert "delete it instead" in panel.status.text()
    assert (panel.text.toPlainText(), panel.tags.text()) == ("   ", "kept, tags")


def test_parse_tags():
    assert parse_tags(" pets, dog,,pets , ") == ["pets", "dog"]
    assert parse_tags("") == []


# -- recall ----------------------------------------------------------------------------------


def chat(qtbot, worker, scripted, user: str, reply: str) -> None:
    scripted.enqueue([call("send_message", message=reply)])
    run(qtbot, worker, lambda s: s.step(user, worker.emit_event))


def test_recall_search_and_date_range(qtbot, worker, scripted):
    chat(qtbot, worker, scripted, "my dog is called Rex", "Rex is a fine name for a dog!")
    panel = RecallPanel(worker)
    qtbot.addWidget(panel)

    panel.query.setText("Rex")
    click(qtbot, panel.findChild(QPushButton, "recall-search"))
    qtbot.waitUntil(lambda: panel.header.text() == "2 results", timeout=WAIT_MS)
    texts = [panel.results.item(i).text() for i in range(panel.results.count())]
    assert any("user: my dog is called Rex" in t for t in texts)
    assert any("assistant: Rex is a fine name for a dog!" in t for t in texts)
    assert not any('"tool"' in t for t in texts)  # the readable text, not the model's JSON

    today = QDate.currentDate()
    assert (panel.start.date(), panel.end.date()) == (today.addDays(-7), today)
    panel.end.setDate(today.addDays(-1))
    click(qtbot, panel.findChild(QPushButton, "recall-show"))
    qtbot.waitUntil(lambda: panel.header.text() == "0 results", timeout=WAIT_MS)
    assert panel.results.count() == 0

    panel.end.setDate(today)
    click(qtbot, panel.findChild(QPushButton, "recall-show"))
    qtbot.waitUntil(lambda: panel.header.text() == "2 results", timeout=WAIT_MS)
    first = panel.results.item(0)
    assert first.text().startswith(dt.datetime.now().strftime("%Y-%m-%d"))  # local time

    chat(qtbot, worker, scripted, "he is three years old", "Noted!")
    panel.refresh()  # the last query (the date range) again
    qtbot.waitUntil(lambda: panel.header.text() == "4 results", timeout=WAIT_MS)

    panel.start.setDate(today.addDays(1))
    click(qtbot, panel.findChild(QPushButton, "recall-show"))
    qtbot.waitUntil(lambda: bool(panel.header.property("error")), timeout=WAIT_MS)
    assert "before the start date" in panel.header.text()


def test_recall_double_click_names_the_message(qtbot, worker, scripted):
    chat(qtbot, worker, scripted, "remember the blue door", "I will remember the blue door.")
    user_id = run(qtbot, worker, lambda s: s.recall_search("blue door", 5))[1]
    panel = RecallPanel(worker)
    qtbot.addWidget(panel)
    panel.show()
    panel.show_dates()
    qtbot.waitUntil(lambda: panel.results.count() == 2, timeout=WAIT_MS)
    item = panel.results.item(0)  # oldest first: the user's message
    expected = int(item.data(Qt.ItemDataRole.UserRole))
    assert expected in {m.id for m in user_id}
    rect = panel.results.visualItemRect(item)
    viewport = panel.results.viewport()
    with qtbot.waitSignal(panel.message_activated, timeout=WAIT_MS) as signal:
        # a real double-click: QTest's double-click event alone lacks the press before it
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    assert signal.args == [expected]


def test_recall_empty_search_asks_for_words(qtbot, worker):
    panel = RecallPanel(worker)
    qtbot.addWidget(panel)
    panel.search()
    assert panel.header.property("error") and "Type some words" in panel.header.text()


# -- facts -----------------------------------------------------------------------------------


def test_facts_now_as_of_a_day_and_the_users_corrections(qtbot, worker, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from desktop.panels.facts import FactsPanel

    def remember(s):
        s.agent.graph.insert("Alice", "works_at", "Initech", "2025-01-01")
        s.agent.graph.insert("Alice", "works_at", "Acme", "2026-03-01")
        s.agent.graph.insert("Bob", "likes", "tea", exclusive=False)

    run(qtbot, worker, remember)
    panel = FactsPanel(worker)
    qtbot.addWidget(panel)
    panel.refresh()
    qtbot.waitUntil(lambda: panel.status.text() == "3 facts", timeout=WAIT_MS)

    def texts() -> list[str]:
        return [panel.list.item(i).text() for i in range(panel.list.count())]

    panel.query.setText("alice")
    click(qtbot, panel.findChild(QPushButton, "facts-search"))
    qtbot.waitUntil(lambda: panel.status.text() == "2 facts", timeout=WAIT_MS)
    assert texts() == [
        "Alice works_at Acme (since 2026-03-01)",
        "Alice works_at Initech (from 2025-01-01 until 2026-03-01)",
    ]
    panel.day.setDate(QDate(2025, 6, 1))
    panel.as_of.setChecked(True)
    qtbot.waitUntil(lambda: panel.status.text() == "1 fact", timeout=WAIT_MS)
    assert texts() == ["Alice works_at Initech (from 2025-01-01 until 2026-03-01)"]
    panel.list.setCurrentRow(0)
    assert not panel.end_button.isEnabled()  # it has ended already

    panel.as_of.setChecked(False)
    qtbot.waitUntil(lambda: panel.status.text() == "2 facts", timeout=WAIT_MS)
    panel.list.setCurrentRow(0)
    click(qtbot, panel.end_button)  # Alice left Acme
    qtbot.waitUntil(lambda: "until" in texts()[-1] and "Acme" in " ".join(texts()), timeout=WAIT_MS)
    assert run(qtbot, worker, lambda s: [f.current for f in s.agent.graph.search("Alice")]) == [
        False,
        False,
    ]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    panel.list.setCurrentRow(0)
    click(qtbot, panel.delete_button)
    qtbot.waitUntil(lambda: panel.status.text() == "1 fact", timeout=WAIT_MS)
    assert run(qtbot, worker, lambda s: s.agent.graph.count()) == 2


def test_a_new_section_shared_with_another_agent(qtbot, worker, core, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from engine import MemGPTAgent

    run(qtbot, worker, lambda s: MemGPTAgent(None, s.store, s.agent.llm, name="bob").name)
    answers = iter([("project", True), ("The shared project notes.", True)])
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: next(answers))
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("bob", True))
    click(qtbot, find(core, QPushButton, "core-add"))
    qtbot.waitUntil(lambda: core.editor("project") is not None, timeout=WAIT_MS)

    project = core.editor("project")
    click(qtbot, project.share_button)
    qtbot.waitUntil(lambda: "shared with bob" in project.title.text(), timeout=WAIT_MS)
    bob_sees = run(
        qtbot,
        worker,
        lambda s: MemGPTAgent(None, s.store, s.agent.llm, name="bob").core_memory.get("project"),
    )
    assert bob_sees == ""
    project.editor.setPlainText("Launch: May 1.")
    click(qtbot, project.save_button)
    qtbot.waitUntil(lambda: project.status.text() == "Saved.", timeout=WAIT_MS)
    bob_sees = run(
        qtbot,
        worker,
        lambda s: MemGPTAgent(None, s.store, s.agent.llm, name="bob").core_memory["project"],
    )
    assert bob_sees == "Launch: May 1."

    human = core.editor("human")  # bob has a 'human' of his own: refused, nothing replaced
    click(qtbot, human.share_button)
    qtbot.waitUntil(lambda: bool(human.status.property("error")), timeout=WAIT_MS)
    assert "bob: this agent already has its own 'human' section" in human.status.text()

    answers = iter([("two words", True), ("x", True)])
    click(qtbot, find(core, QPushButton, "core-add"))
    qtbot.waitUntil(lambda: bool(core.status.property("error")), timeout=WAIT_MS)
    assert "a section name is a word" in core.status.text()


def test_panels_drawn_before_the_models_load_wait_without_an_error(qtbot, make_session):
    from desktop.worker import EngineWorker

    worker = EngineWorker(make_session())  # never loaded, as at start while models load
    try:
        core = CorePanel(worker)
        qtbot.addWidget(core)
        qtbot.waitUntil(lambda: core.status.text() == WAITING_FOR_MODELS, timeout=WAIT_MS)
        assert core.status.property("error") is False
        assert "no model" not in core.status.text()
    finally:
        worker.shutdown()


def test_archival_buttons_stay_put_when_a_status_line_appears(qtbot, worker):
    panel = ArchivalPanel(worker)
    qtbot.addWidget(panel)
    panel.resize(420, 600)
    panel.show()
    qtbot.waitUntil(lambda: bool(panel.count.text()), timeout=WAIT_MS)
    panel.status.info("")
    qtbot.wait(50)
    before = panel.add_button.mapTo(panel, panel.add_button.rect().topLeft())
    text_before = panel.text.height()
    panel.status.info("Saved.")
    qtbot.wait(50)
    assert panel.add_button.mapTo(panel, panel.add_button.rect().topLeft()) == before
    assert panel.text.height() == text_before
