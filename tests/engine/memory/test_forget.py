"""What memory keeps about the user, in one list, and forgetting it for real: scripted model,
real store (the words and vectors of what is forgotten go too)."""

from __future__ import annotations

import pytest

from engine import MemGPTAgent, Persona
from engine.llm.grammar import _reply_tool_names
from engine.llm.scripted import ScriptedClient, call
from engine.memory.forget import (
    FORGET_ACTOR,
    asks_to_forget,
    may_ask_to_forget,
    says_forgotten,
)
from engine.transcript import transcript
from engine.types import ForgetProposed, Remembered


@pytest.fixture
def agent(store) -> MemGPTAgent:
    """An agent that was told three things and saved them in three tiers."""
    client = ScriptedClient(
        [
            call("core_memory_append", True, section="human", content="Has a sister, Anika."),
            call("send_message", message="Noted."),
            call("archival_memory_insert", True, content="The user's sister Anika lives in Graz."),
            call("send_message", message="Saved."),
        ]
    )
    agent = MemGPTAgent(Persona("Memex", "A helpful assistant."), store, client, name="memex")
    agent.step("I have a sister, Anika.")
    agent.step("She lives in Graz.")
    agent.graph.insert("Anika", "lives_in", "Graz", source="tool:graph_memory_insert")
    return agent


def item(agent: MemGPTAgent, tier: str) -> Remembered:
    return next(i for i in agent.remembered() if i.tier == tier)


def test_one_list_holds_each_tier_with_its_source(agent: MemGPTAgent) -> None:
    items = agent.remembered()
    assert [(i.tier, i.text) for i in items] == [
        ("core", "Has a sister, Anika."),
        ("fact", items[1].text),
        ("passage", "The user's sister Anika lives in Graz."),
    ]
    assert items[1].text.startswith("Anika lives_in Graz (since ")
    core, _, passage = items
    assert core.label == "human" and core.saved_by == "the assistant"
    assert core.source is not None and core.source.content == "I have a sister, Anika."
    assert passage.source is not None and passage.source.content == "She lives in Graz."
    assert passage.saved_at is not None and core.saved_at is not None


def test_a_core_line_is_forgotten_by_an_edit_that_undo_can_take_back(agent) -> None:
    agent.memory.append("human", "Likes tea.", actor="user")
    agent.forget(item(agent, "core"))
    assert agent.core_memory["human"] == "Likes tea."
    last = agent.memory.history("human")[-1]
    assert last.actor == FORGET_ACTOR and "Anika" in last.before and "Anika" not in last.after
    agent.undo_core_memory("human")
    assert "Has a sister, Anika." in agent.core_memory["human"]


def test_a_fact_and_a_passage_go_with_their_index_rows(agent) -> None:
    passage = item(agent, "passage")
    agent.forget(item(agent, "fact"))
    agent.forget(passage)
    assert agent.graph.all() == []
    assert agent.archival.count() == 0
    assert agent.archival.search("Graz")[1] == []
    words = agent.store.query("SELECT count(*) FROM passages_fts WHERE passages_fts MATCH 'Graz'")
    vectors = agent.store.query(
        "SELECT count(*) FROM passage_vectors WHERE id = ?", (passage.item_id,)
    )
    assert words[0][0] == 0 and vectors[0][0] == 0
    assert [i.tier for i in agent.remembered()] == ["core"]


def test_the_message_it_came_from_can_go_too(agent) -> None:
    passage = item(agent, "passage")
    assert passage.source is not None
    agent.forget(passage, with_message=True)
    said = [m.content for m in agent.recall.all() if m.role == "user"]
    assert said == ["I have a sister, Anika."]
    assert "She lives in Graz." not in [m.content for m in agent.recall.search("Graz")[1]]
    words = agent.store.query(
        "SELECT count(*) FROM messages_fts WHERE rowid = ?", (passage.source.id,)
    )
    assert words[0][0] == 0
    left = agent.store.query(
        "SELECT count(*) FROM message_vectors WHERE id = ?", (passage.source.id,)
    )
    assert left[0][0] == 0


def test_the_audit_says_what_went_and_how_never_the_words(agent) -> None:
    agent.forget(item(agent, "passage"), with_message=True)
    agent.forget(item(agent, "fact"))
    log = agent.forgetting.log()
    assert [(r.tier, r.how) for r in log] == [
        ("passage", "memory view"),
        ("message", "memory view"),
        ("fact", "memory view"),
    ]
    rows = agent.store.query("SELECT * FROM forgotten")
    assert not any("Graz" in str(value) or "Anika" in str(value) for row in rows for value in row)


def test_something_already_gone_is_said_so(agent) -> None:
    passage = item(agent, "passage")
    agent.forget(passage)
    with pytest.raises(KeyError):
        agent.forget(passage)
    line = item(agent, "core")
    agent.memory.set("human", "", actor="user")
    with pytest.raises(KeyError):
        agent.forget(line)
    assert [r.tier for r in agent.forgetting.log()] == ["passage"]  # the failed ones: not logged


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Please forget that I have a sister", "I have a sister"),
        ("Forget my old address.", "my old address"),
        ("can you forget about Bob?", "Bob"),
        ("Okay, please forget what I said about the Saab", "I said about the Saab"),
        ("Don't forget my dentist appointment", None),  # a request to remember
        ("Did you forget my name?", None),
        ("I forgot my keys at work", None),
        ("forget it", None),  # names nothing to forget
        ("Erase what you know about Bob from your memory.", "what you know about Bob"),
        ("please delete my old address from memory", "my old address"),
        ("Delete the file from the disk", None),
        ("Remove it from your memory", None),
        ("Stop remembering that I'm a nurse, please.", "I'm a nurse"),
        ("Could you wipe my sister from your notes?", "my sister"),
        ("Could you maybe forget which city I live in?", "which city I live in"),
    ],
)
def test_a_request_to_forget_is_told_from_other_messages(text: str, what: str | None) -> None:
    assert asks_to_forget(text) == what


def test_asked_in_chat_the_user_is_shown_what_will_go_before_it_goes(agent) -> None:
    calls_before = len(agent.llm.history)
    events: list[object] = []
    result = agent.step("Please forget that I have a sister", on_event=events.append)
    assert len(agent.llm.history) == calls_before  # the engine's own reply: no model call
    proposal = result.forget_proposal
    assert [i.tier for i in proposal][:1] == ["core"] and "sister" in proposal[0].text
    assert ForgetProposed(proposal) in events
    assert result.message is not None and "Has a sister, Anika." in result.message
    assert agent.core_memory["human"] == "Has a sister, Anika."  # nothing gone yet
    agent.forget(proposal[0], how="chat")
    assert agent.core_memory["human"] == ""
    assert [(r.tier, r.how) for r in agent.forgetting.log()] == [("core", "chat")]


def test_a_request_to_forget_what_memory_does_not_hold_goes_to_the_model(agent) -> None:
    agent.llm.enqueue([call("send_message", message="I do not keep anything about that.")])
    result = agent.step("Please forget my old phone number")
    assert result.forget_proposal == ()
    assert result.message == "I do not keep anything about that."


def test_the_chat_request_goes_through_the_models_own_tool(agent) -> None:
    result = agent.step("Please forget that I have a sister")
    assert [c.name for c in result.tool_calls] == ["memory_forget", "send_message"]
    assert result.tool_calls[0].arguments == {"query": "I have a sister"}
    stored = [m for m in agent.recall.in_context() if m.role == "assistant"]
    assert stored[-2].tool_call is not None and stored[-2].tool_call["tool"] == "memory_forget"


def test_the_model_may_call_memory_forget_and_the_user_still_chooses(agent) -> None:
    # words asks_to_forget does not take for a request: the model's own call shows the user
    agent.llm.enqueue(
        [
            call("memory_forget", True, query="sister"),
            call("send_message", message="Here is what I keep; choose what goes."),
        ]
    )
    events: list[object] = []
    result = agent.step(
        "I'd rather you didn't keep the bit about my sister.", on_event=events.append
    )
    # offered for this turn only: after the message, and in the grammar of its calls
    offered = [_reply_tool_names(schema or {}) for schema in agent.llm.schemas[-2:]]
    assert all("memory_forget" in names for names in offered)
    prompt = agent.llm.history[-2]
    asked = max(i for i, m in enumerate(prompt) if m.role == "user")
    assert any("memory_forget(query)" in m.content for m in prompt[asked + 1 :])
    assert "memory_forget" not in prompt[0].content  # not among the system prompt's tools
    proposal = result.forget_proposal
    assert proposal and "sister" in proposal[0].text.lower()
    assert ForgetProposed(proposal) in events
    assert agent.core_memory["human"] == "Has a sister, Anika."  # nothing gone until chosen
    assert agent.forgetting.log() == []
    assert [op.tool for op in result.memory_operations] == ["memory_forget"]
    assert agent.llm.remaining == 0  # the model's own calls, both
    assert not result.memory_operations[0].changed


def test_memory_forget_of_what_memory_does_not_hold_proposes_nothing(agent) -> None:
    text = agent.tools.memory_forget("my old phone number")
    assert text.startswith("Memory keeps nothing about 'my old phone number'")
    listed = agent.tools.memory_forget("Anika")
    assert "- Has a sister, Anika." in listed and "nothing is forgotten yet" in listed
    assert agent.core_memory["human"] == "Has a sister, Anika."


def test_the_assistants_copies_of_what_is_forgotten_go_too(agent) -> None:
    agent.step("Please forget that I have a sister")  # the engine lists the line
    agent.forget(item(agent, "core"), how="chat")
    agent.forget(item(agent, "passage"), how="chat")
    mine = [m for m in agent.recall.all() if m.role in ("assistant", "tool")]
    assert not any("Has a sister, Anika." in m.content for m in mine)
    assert not any("Anika lives in Graz" in (m.search_text or "") for m in mine)
    saved = next(m for m in mine if m.tool_call and m.tool_call["tool"] == "core_memory_append")
    assert saved.tool_call["arguments"]["content"] == "[forgotten]"
    assert "Has a sister" not in agent.tools.conversation_search("sister Anika")
    users = [m.content for m in agent.recall.all() if m.role == "user"]
    assert "I have a sister, Anika." in users  # the user's own words are theirs to delete


def test_a_reply_that_says_memory_forgot_when_nothing_was_shows_what_to_forget(agent) -> None:
    # the 0.5B model's answer to words asks_to_forget does not take for a request
    agent.llm.enqueue(
        [call("send_message", message="I will remove this information from my memory.")]
    )
    agent.memory.append("human", "Works as a nurse.", actor="user")  # voice would say "you"
    result = agent.step("I'd rather you didn't keep that I'm a nurse with a sister.")
    assert [c.name for c in result.tool_calls] == ["memory_forget", "send_message"]
    assert {i.text for i in result.forget_proposal} >= {"Has a sister, Anika.", "Works as a nurse."}
    assert result.message is not None and result.message.startswith("This is what I keep")
    said = [m.content for m in agent.recall.all() if m.role == "assistant"]
    assert not any("I will remove this information" in text for text in said)
    assert agent.core_memory["human"] == "Has a sister, Anika.\nWorks as a nurse."  # user's call


def test_nothing_kept_about_it_is_said_so(agent) -> None:
    agent.llm.enqueue([call("send_message", message="Done, I have erased it from my records.")])
    result = agent.step("I'd rather you didn't keep my phone number.")
    assert result.forget_proposal == ()
    assert result.message == "My memory keeps nothing about that, so there is nothing to forget."


@pytest.mark.parametrize(
    ("asked", "reply"),
    [
        ("What did I write in my notes?", "I have deleted nothing from my notes."),
        ("Stop remembering my old job.", "Sure, I understand."),  # no claim: the model's turn
        ("Did I forget my keys?", "You said you left them at work."),
    ],
)
def test_other_replies_go_as_written(agent, asked: str, reply: str) -> None:
    agent.llm.enqueue([call("send_message", message=reply)])
    result = agent.step(asked)
    assert result.message == reply and result.forget_proposal == ()


@pytest.mark.slow
def test_the_real_model_never_says_it_forgot_what_is_still_kept(store, chat_client) -> None:
    agent = MemGPTAgent(Persona("Memex", "A helpful assistant."), store, chat_client, name="m")
    agent.memory.append("human", "Has a sister, Anika.", actor="user")
    agent.memory.append("human", "Works as a nurse.", actor="user")
    result = agent.step("I'd rather you didn't keep anything about my sister.")
    kept = agent.core_memory["human"]
    assert result.message is not None
    if "Anika" in kept:  # nothing forgotten: the reply must not say otherwise
        assert not says_forgotten(result.message), result.message
    if result.forget_proposal:  # shown to choose from: what was asked about is among them
        assert "Has a sister, Anika." in [i.text for i in result.forget_proposal]
    assert "Works as a nurse." in kept


def test_memory_forget_is_offered_only_when_a_message_may_ask_to_forget(agent) -> None:
    agent.llm.enqueue([call("send_message", message="Graz is lovely.")])
    agent.step("Tell me about Graz.")
    assert "memory_forget" not in _reply_tool_names(agent.llm.schemas[-1] or {})
    assert "memory_forget" not in agent.llm.history[-1][0].content  # nor in the tool lines
    entries = transcript(agent.recall, agent.summaries).entries
    agent.llm.enqueue([call("send_message", message="Understood.")])
    agent.step("I'd rather you didn't keep anything about my job.")
    after = transcript(agent.recall, agent.summaries).entries
    assert [e.kind for e in after[len(entries) :]] == ["user", "assistant"]  # the offer: unseen


def test_core_is_not_edited_in_answer_to_a_request_to_forget(agent) -> None:
    # the 0.5B model's answer: "Doesn't have a sister" appended, "I won't keep anything" said
    agent.llm.enqueue(
        [
            call("core_memory_append", True, section="human", content="Doesn't have a sister"),
            call("send_message", message="I understand. I won't keep anything about your sister."),
        ]
    )
    result = agent.step("I'd rather you didn't keep anything about my sister.")
    assert agent.core_memory["human"] == "Has a sister, Anika."
    # the append refused with a tool error; the reply that says memory forgot, not sent
    assert [c.name for c in result.tool_calls] == [
        "core_memory_append",
        "memory_forget",
        "send_message",
    ]
    assert result.forget_proposal and result.message is not None
    assert result.message.startswith("This is what I keep about that")


@pytest.mark.parametrize(
    ("text", "may_ask"),
    [
        ("I'd rather you didn't keep anything about my sister.", True),
        ("Could you maybe forget my address?", True),
        ("Ok. Forget about Bob.", True),
        ("Please stop saving my messages", True),
        ("You don't need to store where I work any more.", True),
        ("Could you wipe my sister from your notes?", True),
        # a user telling something, whose saves must not be refused
        ("Random thought before I forget: for Dad's 70th I'm getting him a typewriter", False),
        ("Please don't forget my birthday is May 3", False),
        ("I don't keep a car in the city", False),
        ("I never save receipts", False),
        ("I forgot my keys", False),
        ("How did she remove the stain?", False),
    ],
)
def test_a_message_that_may_ask_to_forget_is_told_from_one_that_tells(
    text: str, may_ask: bool
) -> None:
    assert may_ask_to_forget(text) is may_ask


def test_candidates_are_found_by_meaning_too(agent) -> None:
    agent.memory.append("human", "Works as a nurse at Mercy Hospital.", actor="user")
    agent.memory.append("human", "Lives in Tampere.", actor="user")
    assert [i.text for i in agent.forgetting.candidates("my job")][:1] == [
        "Works as a nurse at Mercy Hospital."
    ]
    assert [i.text for i in agent.forgetting.candidates("which city I live in")][:1] == [
        "Lives in Tampere."
    ]
    assert agent.forgetting.candidates("my old phone number") == []
