"""The Memory view: what Memex keeps about the user, and forgetting it from there (scripted
model, real file: each forgotten thing leaves its tier, and the audit says so)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from desktop.chat_view import ForgetCard
from engine.llm.scripted import call

from .windows import TIMEOUT, bubbles, idle, run, send_and_wait

SAVES = [
    call("core_memory_append", True, section="human", content="Has a sister, Anika."),
    call("graph_insert", True, subject="Anika", relation="lives_in", object="Graz"),
    call("archival_memory_insert", True, content="Anika plays the cello in an orchestra."),
    call("send_message", message="I will remember that."),
]


def opened(qtbot, window, scripted):
    scripted.enqueue(SAVES)
    send_and_wait(qtbot, window, "My sister Anika lives in Graz and plays the cello.")
    view = window.open_memory_view()
    assert view is not None
    qtbot.addWidget(view)
    view.confirm = False
    qtbot.waitUntil(lambda: len(view._items) == 3, timeout=TIMEOUT)
    return view


def test_the_view_lists_each_tier_with_where_it_came_from(qtbot, window, scripted):
    view = opened(qtbot, window, scripted)
    texts = [item.text for item in view._items.values()]
    assert texts[0] == "Has a sister, Anika." and texts[2].startswith("Anika plays the cello")
    assert texts[1].startswith("Anika lives_in Graz")
    view.select("Has a sister, Anika.")
    assert "by the assistant" in view.detail.text()
    assert "My sister Anika lives in Graz and plays the cello." in view.detail.text()
    assert view.forget_button.isEnabled() and view.with_message.isEnabled()


def test_forget_from_the_view_across_all_tiers_with_the_audit(qtbot, window, scripted):
    view = opened(qtbot, window, scripted)
    for text in list(i.text for i in view._items.values()):
        view.select(text)
        with qtbot.waitSignal(view.forgotten, timeout=TIMEOUT):
            qtbot.mouseClick(view.forget_button, Qt.MouseButton.LeftButton)
    assert view._items == {} and view.status.text() == "Forgotten."
    left = run(
        qtbot,
        window.worker,
        lambda s: (
            s.agent.core_memory["human"],
            s.agent.graph.all(),
            s.agent.archival.count(),
            [(r.tier, r.how) for r in s.agent.forgetting.log()],
        ),
    )
    assert left == (
        "",
        [],
        0,
        [("core", "memory view"), ("fact", "memory view"), ("passage", "memory view")],
    )
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)
    assert window.core_panel.editor("human").editor.toPlainText() == ""  # the panel followed


def test_the_message_it_came_from_can_go_too(qtbot, window, scripted):
    view = opened(qtbot, window, scripted)
    view.select("Has a sister, Anika.")
    view.with_message.setChecked(True)
    with qtbot.waitSignal(view.forgotten, timeout=TIMEOUT):
        qtbot.mouseClick(view.forget_button, Qt.MouseButton.LeftButton)
    said = run(qtbot, window.worker, lambda s: [m.content for m in s.agent.recall.all()])
    assert "My sister Anika lives in Graz and plays the cello." not in said
    assert not view.with_message.isChecked()


def forget_card(window) -> ForgetCard:
    cards = [w for w in window.chat.entries() if isinstance(w, ForgetCard)]
    assert len(cards) == 1
    return cards[0]


def test_forget_in_chat_shows_what_will_go_and_forgets_what_is_ticked(qtbot, window, scripted):
    scripted.enqueue(SAVES)
    send_and_wait(qtbot, window, "My sister Anika lives in Graz and plays the cello.")
    send_and_wait(qtbot, window, "Please forget that I have a sister")
    card = forget_card(window)
    entries = window.chat.entries()
    assert entries.index(bubbles(window, "assistant")[-1]) < entries.index(card)
    assert "Has a sister, Anika." in bubbles(window, "assistant")[-1].text
    assert card.boxes[0].text() == "Has a sister, Anika." and card.boxes[0].isChecked()
    assert not any(box.isChecked() for box in card.boxes[1:])  # only the best match
    qtbot.mouseClick(card.forget_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: card.result.isVisible(), timeout=TIMEOUT)
    assert card.result.text() == "Forgotten: 1 thing." and not card.forget_button.isEnabled()
    left = run(
        qtbot,
        window.worker,
        lambda s: (
            s.agent.core_memory["human"],
            [(r.tier, r.how) for r in s.agent.forgetting.log()],
        ),
    )
    assert left == ("", [("core", "chat")])


def test_the_models_own_memory_forget_call_shows_the_card_too(qtbot, window, scripted):
    scripted.enqueue(SAVES)
    send_and_wait(qtbot, window, "My sister Anika lives in Graz and plays the cello.")
    scripted.enqueue(
        [
            call("memory_forget", True, query="Anika"),
            call("send_message", message="Here is what I keep about Anika: choose what goes."),
        ]
    )
    send_and_wait(qtbot, window, "I'd rather you didn't keep anything about Anika.")
    card = forget_card(window)
    assert len(card.boxes) == 3 and card.boxes[0].isChecked()
    assert bubbles(window, "assistant")[-1].text.startswith("Here is what I keep about Anika")
    kept = run(qtbot, window.worker, lambda s: len(s.remembered()))
    assert kept == 3  # nothing goes before the user chooses


def test_forget_in_chat_can_take_the_users_messages_too(qtbot, window, scripted):
    scripted.enqueue(SAVES)
    send_and_wait(qtbot, window, "My sister Anika lives in Graz and plays the cello.")
    send_and_wait(qtbot, window, "Please forget that I have a sister")
    card = forget_card(window)
    card.with_messages.setChecked(True)
    qtbot.mouseClick(card.forget_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: card.result.isVisible(), timeout=TIMEOUT)
    assert [b.text for b in bubbles(window, "user")] == ["Please forget that I have a sister"]
    said = run(
        qtbot,
        window.worker,
        lambda s: (
            [m.content for m in s.agent.recall.all() if m.role == "user"],
            [(r.tier, r.how) for r in s.agent.forgetting.log()],
        ),
    )
    assert said == (["Please forget that I have a sister"], [("core", "chat"), ("message", "chat")])


def test_keeping_them_forgets_nothing(qtbot, window, scripted):
    scripted.enqueue(SAVES)
    send_and_wait(qtbot, window, "My sister Anika lives in Graz and plays the cello.")
    send_and_wait(qtbot, window, "Forget about Anika")
    card = forget_card(window)
    assert len(card.boxes) == 3
    qtbot.mouseClick(card.keep_button, Qt.MouseButton.LeftButton)
    assert card.result.text() == "Kept: nothing was forgotten."
    kept = run(qtbot, window.worker, lambda s: len(s.remembered()))
    assert kept == 3


def test_a_temporary_chat_stores_nothing_and_sees_no_memory(qtbot, window, scripted, settings):
    scripted.enqueue(SAVES)
    send_and_wait(qtbot, window, "My sister Anika lives in Graz and plays the cello.")
    window.commands["temporary"].trigger()
    qtbot.waitUntil(
        lambda: window.temporary_banner.isVisibleTo(window) and idle(window), timeout=TIMEOUT
    )
    assert window.commands["temporary"].isChecked() and not window.agent_box.isEnabled()
    assert bubbles(window, "user") == [] and window.chat.welcome is None
    assert not window._idle.isActive()  # nothing of it is reviewed
    seen = run(qtbot, window.worker, lambda s: (s.agent.core_memory["human"], len(s.remembered())))
    assert seen == ("", 0)  # none of the user's memory
    scripted.enqueue(
        [
            call("core_memory_append", True, section="human", content="Secret: surprise party."),
            call("send_message", message="My lips are sealed."),
        ]
    )
    send_and_wait(qtbot, window, "Just between us: I'm planning a surprise party.")
    temporary_file = run(qtbot, window.worker, lambda s: s._temporary.store.path)
    window.commands["temporary"].trigger()
    qtbot.waitUntil(
        lambda: not window.temporary_banner.isVisibleTo(window) and idle(window), timeout=TIMEOUT
    )
    said = run(qtbot, window.worker, lambda s: [m.content for m in s.agent.recall.all()])
    assert "Just between us: I'm planning a surprise party." not in said
    assert "My sister Anika lives in Graz and plays the cello." in said
    human = run(qtbot, window.worker, lambda s: s.agent.core_memory["human"])
    assert human == "Has a sister, Anika." and not temporary_file.exists()
    assert [b.text for b in bubbles(window, "user")][0].startswith("My sister Anika")
    assert window.agent_box.isEnabled() and window._idle.isActive()
