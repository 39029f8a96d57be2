"""The engine's help for small models (engine.types.Assists), through the scripted client: the
same parsing, validation, dispatch and storage as the real model."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from engine import Assists, MemGPTAgent, Persona
from engine.context import ROLES
from engine.errors import GenerationError
from engine.llm.scripted import ScriptedClient, call
from engine.memory.page_in import PAGE_IN_PREFIX

PERSONA = Persona(name="Sam", description="A helpful assistant")
LONG_AGO = dt.datetime(2025, 3, 4, 10, 15, tzinfo=dt.UTC)


def make_agent(store, replies=(), **kw) -> tuple[MemGPTAgent, ScriptedClient]:
    client = ScriptedClient(replies)
    return MemGPTAgent(PERSONA, store, client, name="sam", **kw), client


def old_exchange(agent: MemGPTAgent, said: str, replied: str, when=LONG_AGO) -> None:
    """A user message and its reply from long ago, out of view (as after a page-out)."""
    ids = [
        agent.recall.add(agent.session_id, role, text, 10, created_at=when, in_context=False).id
        for role, text in (("user", said), ("assistant", replied))
    ]
    # summarised long ago, as a page-out leaves it: the summary does not hold the details
    agent.summaries.add("Earlier talk about a kiosk.", ids[0], ids[-1], "test")


def page_in_notes(agent: MemGPTAgent) -> list[str]:
    return [
        m.content
        for m in agent.recall.all()
        if m.role == "system" and m.content.startswith(PAGE_IN_PREFIX)
    ]


# -- page-in ----------------------------------------------------------------------------------
def test_page_in_shows_an_old_exchange_dated_with_its_reply_before_the_model_answers(store):
    agent, client = make_agent(store, [call("send_message", message="You chose Falcon.")])
    old_exchange(
        agent, "Which web framework should I use for the kiosk?", "I'd go with Falcon for it."
    )
    agent.archival.insert("The kiosk runs on a Raspberry Pi 5.", created_at=LONG_AGO)
    r = agent.step("What framework did you suggest for the kiosk?")
    assert r.message == "You chose Falcon." and r.tool_calls[0].name == "send_message"
    prompt = client.history[0]
    assert prompt[-2].role == "user" and prompt[-1].role == "system"
    note = prompt[-1].content
    assert note.startswith(PAGE_IN_PREFIX)
    assert "[4 March 2025, conversation] user: Which web framework" in note
    assert "/ you (assistant): I'd go with Falcon for it." in note  # the reply to it
    assert "[4 March 2025, archival] The kiosk runs on a Raspberry Pi 5." in note
    assert page_in_notes(agent) == [note]  # stored: the transcript shows what the model saw
    assert prompt[0] == client.history[0][0]  # the system message is not where it goes


def test_page_in_shows_the_day_a_relative_date_in_an_old_passage_meant(store):
    agent, client = make_agent(store, [call("send_message", message="On 3 March 2025.")])
    passage = agent.archival.insert("I went to the kiosk fair yesterday.", created_at=LONG_AGO)
    agent.step("When did I go to the kiosk fair?")
    note = client.history[0][-1].content
    assert "[4 March 2025, archival] I went to the kiosk fair yesterday (3 March 2025)." in note
    assert (
        agent.archival.get(passage).text == "I went to the kiosk fair yesterday."
    )  # stored as said


def test_page_in_skips_what_is_in_view_and_stays_quiet_on_an_empty_memory(store):
    agent, client = make_agent(
        store, [call("send_message", message="Hello!"), call("send_message", message="Tea.")]
    )
    agent.step("Hi, I like green tea.")
    assert page_in_notes(agent) == []  # nothing in memory: no note
    agent.step("What do I like to drink?")
    # the only match is in view already: the note shows no hit, only what the reading made
    (note,) = page_in_notes(agent)
    assert "beyond the conversation in view" in note and "green tea" not in note


def test_page_in_note_fits_its_token_budget_and_keeps_the_best_hits(store):
    agent, client = make_agent(store, [call("send_message", message="ok")])
    words = "lighthouse keeper wrote about the lamp and the storm " * 30
    agent.archival.insert_many([f"Log {i}: {words}" for i in range(10)])
    agent.step("What did the lighthouse keeper write about the storm?")
    (note,) = page_in_notes(agent)
    budget = agent.context.budget.page_in_tokens
    assert client.count_message_tokens(client.history[0][-1]) <= budget
    assert note.count("[") >= 2 and "archival" in note


def test_page_in_finds_graph_facts_about_names_in_the_message(store):
    agent, client = make_agent(store, [call("send_message", message="Lumen Labs.")])
    agent.graph.insert("Maya", "works_at", "Lumen Labs", "2024-09")
    agent.step("Where does Maya work these days?")
    (note,) = page_in_notes(agent)
    assert "[fact]" in note and "Lumen Labs" in note


def test_page_in_off_leaves_the_prompt_as_it_was(store):
    agent, client = make_agent(
        store, [call("send_message", message="ok")], assists=Assists().without("page_in")
    )
    old_exchange(agent, "Which framework for the kiosk?", "Falcon.")
    agent.step("What framework did you suggest for the kiosk?")
    assert page_in_notes(agent) == [] and client.history[0][-1].role == "user"


# -- replies ----------------------------------------------------------------------------------
def test_a_reply_repeating_an_earlier_one_in_view_goes_back_to_the_model(store):
    agent, client = make_agent(
        store,
        [
            call("send_message", message="I'm ready to help with the inventory API."),
            call("send_message", message="I'm ready to help with the inventory API."),
            call("send_message", message="You ship it on March 3."),
        ],
    )
    agent.step("Hi!")
    r = agent.step("When do we ship?")
    assert r.message == "You ship it on March 3."
    refused = client.history[2][-1]
    assert refused.role == "tool" and "you sent exactly this reply before" in refused.content


def test_a_reply_that_only_echoes_the_user_is_refused_and_an_echoed_opening_dropped(store):
    agent, client = make_agent(
        store,
        [
            call("send_message", message="Where do I work?"),
            call("send_message", message="Where do I work? You work at Kestrel."),
        ],
    )
    r = agent.step("Where do I work?")
    assert r.message == "You work at Kestrel."
    assert "only repeats the user's message" in client.history[1][-1].content


def test_a_reply_asking_the_users_question_back_is_refused(store):
    agent, client = make_agent(
        store,
        [
            call("send_message", message="What is the due date for my Tidewater grant?"),
            call("send_message", message="On December 18."),
        ],
    )
    r = agent.step("When is my Tidewater grant due now?")
    assert r.message == "On December 18."
    assert "only repeats the user's message" in client.history[1][-1].content


def test_a_reply_declining_a_request_for_help_goes_back_to_the_model(store):
    refusal = "I'm sorry, I can't assist with that."
    agenda = "1. Goals (10 min) 2. Scope (15 min) 3. Risks (10 min) 4. Next steps (10 min)"
    agent, client = make_agent(
        store,
        [call("send_message", message=refusal), call("send_message", message=agenda)],
    )
    r = agent.step("Can you help me draft a 45-minute kickoff meeting agenda?")
    assert r.message == agenda
    assert "asks for your help" in client.history[1][-1].content


def test_a_decline_is_sent_where_nothing_was_asked_for_or_the_check_is_off(store):
    refusal = "I'm sorry, I can't help with that."
    agent, _ = make_agent(store, [call("send_message", message=refusal)])
    assert agent.step("What did you recommend for my API last week?").message == refusal
    other = "Sorry, I cannot assist with agendas."
    agent, _ = make_agent(
        store,
        [call("send_message", message=other)],
        assists=Assists().without("help_requests"),
    )
    assert agent.step("Can you help me draft an agenda?").message == other


def test_a_reply_stating_the_users_fact_as_the_assistants_own_is_said_to_the_user(store):
    agent, client = make_agent(
        store,
        [call("send_message", message="Sure! I work at Acme Corp. Anything else, Alice?")],
    )
    agent.edit_core_memory("human", "Name: Alice\nWorks at Acme Corp")
    r = agent.step("Where do I work?")
    # one call: asked to write it again, a small model wrote the same sentence again
    assert r.message == "Sure! You work at Acme Corp. Anything else, Alice?" and r.steps == 1
    result = agent.recall.all()[-1]
    assert result.role == "tool" and "Message sent as 'Sure! You work at Acme" in result.content


def test_reply_refusals_are_bounded_then_the_reply_is_sent(store):
    echo = call("send_message", message="Where do I work these days?")
    agent, client = make_agent(store, [echo] * 3)
    r = agent.step("Where do I work these days?")
    assert r.message == "Where do I work these days?" and r.steps == 3
    refusals = [m.content.count("only repeats") for m in agent.recall.all() if m.role == "tool"]
    assert refusals == [1, 1, 0]


def test_reply_checks_off_send_what_the_model_wrote(store):
    agent, _ = make_agent(
        store,
        [call("send_message", message="I work at Acme Corp.")],
        assists=Assists().without("check_voice"),
    )
    agent.edit_core_memory("human", "Works at Acme Corp")
    assert agent.step("Where do I work?").message == "I work at Acme Corp."


def test_the_roles_prompt_is_in_the_instructions_only_when_on(store):
    agent, client = make_agent(store, [call("send_message", message="Hi")])
    agent.step("hello")
    assert ROLES.strip() in client.history[0][0].content
    other, other_client = make_agent(
        store, [call("send_message", message="Hi")], assists=Assists().without("roles_prompt")
    )
    assert ROLES.strip() not in other.context.system_prompt().message.content


# -- core edits -------------------------------------------------------------------------------
def test_appending_a_line_core_memory_holds_is_a_no_op_that_says_so(store):
    agent, client = make_agent(
        store,
        [
            call("core_memory_append", heartbeat=True, section="human", content="name: alice."),
            call("send_message", message="Hi again, Alice."),
        ],
    )
    agent.edit_core_memory("human", "Name: Alice")
    r = agent.step("I'm Alice, remember?")
    assert agent.core_memory["human"] == "Name: Alice"
    result = client.history[1][-1].content
    assert "Already in 'human'" in result and "Nothing changed" in result
    assert [(op.ok, op.changed) for op in r.memory_operations] == [(True, False)]
    assert len(agent.memory.history("human")) == 1  # the user's edit only


def test_appending_several_lines_keeps_only_the_new_ones(store):
    agent, _ = make_agent(
        store,
        [
            call(
                "core_memory_append",
                heartbeat=True,
                section="human",
                content="Name: Alice\nLikes tea",
            ),
            call("send_message", message="Noted."),
        ],
    )
    agent.edit_core_memory("human", "Name: Alice")
    agent.step("I like tea.")
    assert agent.core_memory["human"] == "Name: Alice\nLikes tea"


def test_a_replace_with_a_name_nobody_said_is_refused(store):
    agent, client = make_agent(
        store,
        [
            call(
                "core_memory_replace",
                heartbeat=True,
                section="human",
                old_content="Alice",
                new_content="Bob",
            ),
            call("send_message", message="Hello Alice."),
        ],
    )
    agent.edit_core_memory("human", "Name: Alice")
    r = agent.step("Hello there.")
    assert agent.core_memory["human"] == "Name: Alice"
    assert "'Bob' is in no message" in client.history[1][-1].content
    assert r.memory_operations[0].ok is False


def test_a_replace_with_a_name_the_user_said_goes_through(store):
    agent, _ = make_agent(
        store,
        [
            call(
                "core_memory_replace",
                heartbeat=True,
                section="human",
                old_content="Lives in Paris",
                new_content="Lives in Berlin",
            ),
            call("send_message", message="Berlin it is."),
        ],
    )
    agent.edit_core_memory("human", "Lives in Paris")
    agent.step("I moved to Berlin last week.")
    assert agent.core_memory["human"] == "Lives in Berlin"


def test_the_model_naming_itself_in_a_tool_call_is_no_evidence(store):
    agent, client = make_agent(
        store,
        [
            call("archival_memory_search", heartbeat=True, query="Zebulon"),
            call(
                "core_memory_replace",
                heartbeat=True,
                section="human",
                old_content="Alice",
                new_content="Zebulon",
            ),
            call("send_message", message="ok"),
        ],
    )
    agent.edit_core_memory("human", "Name: Alice")
    agent.step("hi")
    assert agent.core_memory["human"] == "Name: Alice"


def test_core_edit_checks_off_and_the_users_own_edits_are_never_checked(store):
    agent, _ = make_agent(
        store,
        [
            call(
                "core_memory_replace",
                heartbeat=True,
                section="human",
                old_content="Alice",
                new_content="Bob",
            ),
            call("send_message", message="ok"),
        ],
        assists=Assists.none(),
    )
    agent.edit_core_memory("human", "Name: Alice")
    agent.step("hi")
    assert agent.core_memory["human"] == "Name: Bob"
    assert agent.tools.core_memory_replace("human", "Bob", "Zed").startswith("Replaced")
    assert agent.core_memory["human"] == "Name: Zed"  # the user's edit, unchecked


def test_a_first_person_line_for_the_human_block_is_saved_said_of_the_user(store):
    agent, client = make_agent(
        store,
        [
            call(
                "core_memory_append",
                heartbeat=True,
                section="human",
                content="I work at Acme and I'm a Python developer\nPrefers dark mode",
            ),
            call("send_message", message="Noted: Acme."),
        ],
    )
    agent.step("I work at Acme and I'm a Python developer. Dark mode, please.")
    assert agent.core_memory["human"] == (
        "They work at Acme and they're a Python developer\nPrefers dark mode"
    )
    result = json.loads(client.history[1][-1].content)["message"]
    assert 'said of the user: "They work at Acme' in result


@pytest.mark.parametrize(
    ("asked", "content", "why", "quoted"),
    [
        (  # the question itself, saved as if it were a fact
            "What car do I drive these days?",
            "Has a car\nWhat car do I drive these days?",
            "is a question, not a fact",
            "What car do I drive",
        ),
        (  # a guess at the answer, never said
            "How much am I paying for the pottery course?",
            "They're paying $100 for the pottery course.",
            "only asks",
            "'100'",
        ),
    ],
)
def test_a_save_in_answer_to_a_question_is_refused_and_the_question_answered(
    store, asked, content, why, quoted
):
    agent, client = make_agent(
        store,
        [
            call("core_memory_append", heartbeat=True, section="human", content=content),
            call("send_message", message="I don't know."),
        ],
    )
    r = agent.step(asked)
    assert agent.core_memory["human"] == ""  # nothing of the call was saved
    result = json.loads(client.history[1][-1].content)
    assert result["status"] == "Failed" and why in result["message"] and quoted in result["message"]
    assert r.message == "I don't know."


def test_a_question_that_tells_something_in_its_own_words_is_saved_and_a_statement_too(store):
    agent, _ = make_agent(
        store,
        [
            call("core_memory_append", heartbeat=True, section="human", content="Sister: Ingrid"),
            call("send_message", message="I'll remember Ingrid."),
            call("core_memory_append", heartbeat=True, section="human", content="Lives in Porto"),
            call("send_message", message="Porto, then."),
        ],
    )
    agent.step("Can you remember that my sister is called Ingrid?")
    agent.step("I moved to Porto. Which city do I live in now?")  # tells, then asks
    assert agent.core_memory["human"] == "Sister: Ingrid\nLives in Porto"


def test_a_guess_saved_in_answer_to_a_question_is_kept_with_the_check_off(store):
    agent, _ = make_agent(
        store,
        [
            call("core_memory_append", heartbeat=True, section="human", content="Lives in Tampere"),
            call("send_message", message="Tampere."),
        ],
        assists=Assists().without("check_core_edits"),
    )
    agent.step("Which city do I live in now?")
    assert agent.core_memory["human"] == "Lives in Tampere"


def test_the_transcript_shows_a_page_in_as_one_line_with_the_note_on_demand(store):
    from engine.transcript import transcript

    agent, _ = make_agent(store, [call("send_message", message="Falcon.")])
    old_exchange(agent, "Which framework for the kiosk?", "Falcon, for the kiosk.")
    agent.step("What framework did you suggest for the kiosk?")
    entries = transcript(agent.recall, agent.summaries).entries
    (found,) = [e for e in entries if e.text.startswith("found in memory")]
    assert found.kind == "operation" and found.text.endswith("1 item")
    assert found.detail.startswith(PAGE_IN_PREFIX) and "Falcon" in found.detail
    # after the message it is for, before the reply
    texts = [e.text for e in entries[-3:]]
    assert texts == ["What framework did you suggest for the kiosk?", found.text, "Falcon."]


def test_a_reply_in_the_users_old_words_from_the_page_in_note_is_said_to_the_user(store):
    agent, client = make_agent(
        store, [call("send_message", message="I'm training for the Brennan Valley half marathon.")]
    )
    old_exchange(
        agent, "I'm training for the Brennan Valley half marathon.", "Great, I'd start slow."
    )
    r = agent.step("What race am I training for?")
    assert r.message == "You're training for the Brennan Valley half marathon."


def test_users_words_of_a_note_leave_out_the_assistants_replies():
    from engine.memory.page_in import Recalled, fit_note, users_words

    when = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    fitted = fit_note(
        [
            Recalled("conversation", when, "user: I have a cat. / you (assistant): I like cats."),
            Recalled("archival", when, "I finished the book today."),
        ],
        lambda text: True,
    )
    assert fitted is not None
    _, note = fitted
    assert users_words(note) == ["I have a cat.", "I finished the book today."]


# -- reading ----------------------------------------------------------------------------------
def reads(answer: str):
    """A scripted reader that answers `answer` and keeps the prompts it was given."""
    prompts: list[str] = []

    def reader(messages):
        prompts.append(messages[-1].content)
        return answer

    return reader, prompts


def test_a_question_is_read_against_its_hits_and_core_memory_and_the_note_gives_the_answer(
    store,
):
    reader, prompts = reads("Short answer: Falcon")
    client = ScriptedClient([call("send_message", message="Falcon.")], reader=reader)
    # the model answers with the note (the engine's own answer is tested below)
    assists = Assists().without("direct_answer")
    agent = MemGPTAgent(PERSONA, store, client, name="sam", assists=assists)
    agent.edit_core_memory("human", "Name: Dana")
    old_exchange(agent, "Which web framework for the kiosk?", "I'd go with Falcon for it.")
    agent.step("What framework did you suggest for the kiosk?")
    (prompt,) = prompts
    assert "Name: Dana" in prompt  # core memory
    assert "I am Sam" not in prompt  # not the persona: "my name" is the user's
    assert "Never invent memories" not in prompt  # nor the chat model's standing rules
    assert "[4 March 2025, conversation] user: Which web framework" in prompt  # the hits, dated
    assert prompt.endswith("Question: What framework did you suggest for the kiosk? Short answer:")
    (note,) = page_in_notes(agent)
    assert "the answer to the user's question is: Falcon." in note  # "Short answer:" dropped
    assert "I'd go with Falcon" in note  # the hits stay, for the model to check
    assert client.history[0][-1].content == note  # what the model answered with


def test_a_reading_that_finds_nothing_says_so_and_a_statement_is_not_read(store):
    reader, prompts = reads("not in memory")
    client = ScriptedClient(
        [call("send_message", message="I don't know."), call("send_message", message="Noted.")],
        reader=reader,
    )
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    old_exchange(agent, "Which web framework for the kiosk?", "I'd go with Falcon for it.")
    agent.step("What colour is the kiosk framework's logo?")
    assert len(prompts) == 1
    assert "memory does not answer the user's question" in page_in_notes(agent)[0]
    agent.step("The kiosk framework is Falcon, I decided.")  # asks nothing: no reading
    assert len(prompts) == 1
    assert "Answer the user's message as the assistant" in page_in_notes(agent)[1]


@pytest.mark.parametrize("how", ["off", "failed"])
def test_reading_off_or_a_failed_reading_leaves_the_note_of_hits_alone(store, how):
    def broken(messages):
        raise GenerationError("the model ran out of room")

    client = ScriptedClient([call("send_message", message="ok")], reader=broken)
    assists = Assists().without("reading") if how == "off" else Assists()
    agent = MemGPTAgent(PERSONA, store, client, name="sam", assists=assists)
    old_exchange(agent, "Which web framework for the kiosk?", "I'd go with Falcon for it.")
    result = agent.step("What framework did you suggest for the kiosk?")
    assert result.message == "ok"  # a failed reading is not the user's problem
    (note,) = page_in_notes(agent)
    assert "Answer the user's message as the assistant" in note
    assert "question is:" not in note and "do not answer" not in note


def test_the_reading_reads_every_hit_even_those_the_note_has_no_room_for(store):
    reader, prompts = reads("not in memory")
    client = ScriptedClient([call("send_message", message="I don't know.")], reader=reader)
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    for i in range(8):
        agent.archival.insert(f"Kiosk note {i}: " + "the kiosk screen is bright. " * 10)
    agent.step("What do the kiosk notes say?")
    (prompt,) = prompts
    (note,) = page_in_notes(agent)
    assert prompt.count("Kiosk note") == 8
    assert 0 < note.count("Kiosk note") < 8


# -- the engine's own answer -------------------------------------------------------------------
def test_a_question_whose_reading_found_the_answer_is_answered_with_it_and_no_model_call(store):
    reader, _ = reads("falcon, for the kiosk")
    client = ScriptedClient([], reader=reader)
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    old_exchange(agent, "Which web framework for the kiosk?", "I'd go with Falcon for it.")
    r = agent.step("What framework did you suggest for the kiosk?")
    assert r.message == "Falcon, for the kiosk."
    assert client.history == [] and r.steps == 0  # no model call
    assert [c.name for c in r.tool_calls] == ["send_message"]
    assert r.context_usage.prompt_tokens > 0  # what the next call would see, for the app's bar
    stored = [m for m in agent.recall.in_context() if m.role == "assistant"][-1]
    reply = json.loads(stored.content)  # stored as a reply, so later turns read it as one
    assert reply["arguments"]["message"] == "Falcon, for the kiosk."
    assert "page-in" in reply["thought"]
    # asked again, answered again: the same question read again has the same answer
    assert agent.step("What framework did you suggest for the kiosk?").message == r.message


def test_a_message_that_also_tells_something_is_answered_by_the_model(store):
    reader, prompts = reads("Falcon")
    client = ScriptedClient(
        [
            call("core_memory_append", section="human", content="Moved to Porto."),
            call("send_message", message="Falcon, and noted: Porto."),
        ],
        reader=reader,
    )
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    old_exchange(agent, "Which web framework for the kiosk?", "I'd go with Falcon for it.")
    r = agent.step("I moved to Porto. What framework did you suggest for the kiosk?")
    assert len(prompts) == 1 and len(client.history) == 2  # read, then the model's two calls
    assert r.message == "Falcon, and noted: Porto."
    assert "Moved to Porto." in agent.core_memory["human"]


def test_the_engines_answer_goes_through_the_check_of_voice(store):
    reader, _ = reads("I work at Acme Corp.")
    agent, client = make_agent(store)
    client._reader = reader
    agent.edit_core_memory("human", "They work at Acme Corp.")
    old_exchange(agent, "I work at Acme Corp, by the way.", "Noted!")
    assert agent.step("Where do I work?").message == "You work at Acme Corp."


@pytest.mark.parametrize(
    ("how", "answer"),
    [
        ("off", "Falcon"),
        ("not found", "not in memory"),
        # a reader that answers anyway, from what it knows or doing what was asked
        ("not memory's words", "Django, a Python web framework"),
    ],
)
def test_with_direct_answers_off_or_no_answer_from_memory_the_model_answers(store, how, answer):
    reader, _ = reads(answer)
    client = ScriptedClient([call("send_message", message="From the model.")], reader=reader)
    assists = Assists().without("direct_answer") if how == "off" else Assists()
    agent = MemGPTAgent(PERSONA, store, client, name="sam", assists=assists)
    old_exchange(agent, "Which web framework for the kiosk?", "I'd go with Falcon for it.")
    assert agent.step("What framework did you suggest?").message == "From the model."


def test_an_answer_not_in_memorys_words_is_not_given_to_the_model_as_the_answer(store):
    reader, _ = reads("Hotel Borealis")  # a hotel memory never named
    client = ScriptedClient([call("send_message", message="I don't know.")], reader=reader)
    agent = MemGPTAgent(PERSONA, store, client, name="sam")
    old_exchange(agent, "I fly to Reykjavik on January 9th.", "Have a good trip!")
    agent.step("Which hotel am I staying at in Reykjavik?")
    (note,) = page_in_notes(agent)
    assert "Hotel Borealis" not in note
    assert "memory does not answer the user's question" in note


def test_the_reading_reads_the_messages_in_view_too_and_the_note_leaves_them_out(store):
    reader, prompts = reads("Porto")
    agent, client = make_agent(store)
    client._reader = reader
    agent.edit_core_memory("human", "They live in Tampere.")  # stale: the move is only in view
    for role, text in [
        ("user", "I live in Tampere and take the tram every morning."),
        ("assistant", "Tampere is lovely."),
        ("user", "Big news: I moved to Porto last weekend!"),
        ("assistant", "Congratulations on the move!"),
    ]:
        agent.recall.add(agent.session_id, role, text, 10)  # type: ignore[arg-type]
    r = agent.step("Which city do I live in now?")
    (prompt,) = prompts
    assert "user: Big news: I moved to Porto last weekend" in prompt
    assert "They live in Tampere." in prompt  # core memory, which the records outdate
    assert prompt.count("Which city do I live in now?") == 1  # the question, not a record
    assert r.message == "Porto." and client.history == []
    # the model sees those messages already: the note gives the reading alone
    (note,) = page_in_notes(agent)
    assert "beyond the conversation in view" in note and "Big news" not in note
    assert "the answer to the user's question is: Porto." in note


def reading_agent(store, answer: str, reply: str):
    """An agent whose reader answers `answer` and whose model replies `reply`; its reader's
    prompts."""
    reader, prompts = reads(answer)
    agent, client = make_agent(store, [call("send_message", message=reply)])
    client._reader = reader
    return agent, client, prompts


def test_a_reading_that_finds_nothing_in_view_is_noted_so_the_model_does_not_invent(store):
    agent, client, _ = reading_agent(store, "not in memory", "I don't know.")
    agent.recall.add(agent.session_id, "user", "I fly to Reykjavik on January 9th.", 10)
    agent.step("Which hotel am I staying at in Reykjavik?")
    (note,) = page_in_notes(agent)
    assert "memory does not answer the user's question" in note
    assert "help as usual" in note  # a request for help is still helped
    assert client.history[0][-1].content == note


def test_page_in_leaves_out_the_models_own_memory_edits(store):
    agent, _, prompts = reading_agent(store, "Tampere", "Tampere.")
    old_exchange(agent, "I live in Tampere and take the tram.", "Tampere is lovely.")
    edit = {"tool": "core_memory_append", "arguments": {"label": "human", "content": "Tampere"}}
    agent.recall.add(
        agent.session_id,
        "assistant",
        json.dumps(edit),
        10,
        tool_call=edit,
        in_context=False,
        created_at=LONG_AGO,
    )
    agent.step("Which city do I live in?")
    (prompt,) = prompts
    assert prompt.count("I live in Tampere") == 1  # once, with its reply
    assert "core_memory_append" not in prompt


def test_a_request_memory_has_nothing_for_is_noted_as_one_to_help_with(store):
    agent, _, _ = reading_agent(store, "not in memory", "FastAPI suits it.")
    old_exchange(agent, "I'm starting a REST API for our kiosk.", "Sounds fun!")
    r = agent.step("Which Python library would you recommend for the kiosk?")
    (note,) = page_in_notes(agent)
    assert "it asks for help: help as the assistant" in note
    assert "don't know" not in note  # told it may not know, the model said it was not sure
    assert r.message == "FastAPI suits it."


def test_a_request_memory_has_nothing_for_and_no_hit_to_show_gets_no_note(store):
    agent, _, prompts = reading_agent(store, "not in memory", "FastAPI suits it.")
    agent.recall.add(agent.session_id, "user", "I'm starting a REST API for our inventory.", 10)
    agent.step("Which Python library would you recommend for it?")
    assert len(prompts) == 1 and page_in_notes(agent) == []
