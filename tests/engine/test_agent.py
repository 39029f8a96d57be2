"""The agent loop with the scripted client: same parsing, validation, dispatch and storage as real."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import MemGPTAgent, Persona
from engine.agent import REPEATED_CALL
from engine.errors import GenerationError, InvalidInput
from engine.llm.scripted import ScriptedClient, call
from engine.transcript import transcript

PERSONA = Persona(name="Sam", description="A helpful assistant", traits=["curious", "precise"])


def make_agent(store, replies=(), **kw) -> tuple[MemGPTAgent, ScriptedClient]:
    client = ScriptedClient(replies)
    return MemGPTAgent(PERSONA, store, client, name="sam", **kw), client


def test_step_saves_memory_then_replies(store) -> None:
    agent, client = make_agent(
        store,
        [
            call(
                "core_memory_append",
                heartbeat=True,
                section="human",
                content="Name: Alice; Python dev",
            ),
            call("send_message", message="Hi Alice!"),
        ],
    )
    r = agent.step("Hi! I'm Alice, I'm a Python developer.")
    assert r.message == "Hi Alice!"
    assert [c.name for c in r.tool_calls] == ["core_memory_append", "send_message"]
    assert r.memory_operations[0].summary.startswith("saved to core memory (human)")
    assert agent.core_memory["human"] == "Name: Alice; Python dev"
    assert r.steps == 2 and not r.stopped_by_step_limit
    # the second call saw the first call's tool result
    assert "Appended to 'human'" in client.history[1][-1].content
    assert r.context_usage.prompt_tokens <= r.context_usage.context_window
    assert (
        sum(v for k, v in r.context_usage.sections.items() if k not in ("free", "reply_reserve"))
        == r.context_usage.prompt_tokens
    )


def test_bad_reply_and_bad_call_go_back_to_the_model(store) -> None:
    agent, client = make_agent(
        store,
        [
            "this is not json",
            call("core_memory_replace", section="human", old_content="nothing", new_content="x"),
            call("send_message", message="sorry"),
        ],
    )
    r = agent.step("hello")
    assert r.message == "sorry" and r.steps == 3
    assert (
        "not valid JSON" in client.history[1][-1].content or "JSON" in client.history[1][-1].content
    )
    assert "text not found" in client.history[2][-1].content
    assert r.memory_operations[-1].ok is False


def test_step_limit_stops_a_runaway_chain(store) -> None:
    replies = [call("archival_memory_search", heartbeat=True, query=f"q{i}") for i in range(3)]
    agent, client = make_agent(store, replies, max_steps=3)
    r = agent.step("search forever")
    assert r.stopped_by_step_limit and r.steps == 3 and r.message is None
    assert "step limit" in r.notes[0]
    assert client.remaining == 0


def test_a_repeated_call_is_refused_and_then_only_a_reply_is_allowed(store) -> None:
    same = call("core_memory_append", heartbeat=True, section="human", content="likes tea")
    agent, client = make_agent(store, [same, same, call("send_message", message="ok")])
    r = agent.step("I like tea")
    assert agent.core_memory["human"] == "likes tea"
    assert REPEATED_CALL in client.history[2][-1].content
    assert r.message == "ok"


def test_memory_edit_without_reply_is_nudged_to_reply(store) -> None:
    agent, client = make_agent(
        store,
        [
            call("core_memory_append", section="human", content="likes tea"),
            call("send_message", message="noted"),
        ],
    )
    r = agent.step("I like tea")
    assert r.message == "noted"
    assert "not answered the user" in client.history[1][-1].content


def test_heartbeat_runs_without_a_user_message(store) -> None:
    agent, client = make_agent(store, [call("archival_memory_insert", content="User likes tea")])
    r = agent.heartbeat()
    assert r.message is None and r.steps == 1
    assert "[heartbeat]" in client.history[0][-1].content
    assert agent.archival.count() == 1


def test_crash_in_the_model_loses_no_committed_message(store) -> None:
    agent, _ = make_agent(store, [])  # no replies: the model call fails
    with pytest.raises(GenerationError):
        agent.step("remember: the boat is blue")
    assert [m.content for m in agent.recall.all()] == ["remember: the boat is blue"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        (b"\xff\xfe bad", "not valid UTF-8"),
        ("bad \udcff", "not valid Unicode"),
    ],
)
def test_bad_input_gets_a_clear_error_and_stores_nothing(store, text, error) -> None:
    agent, _ = make_agent(store, [])
    with pytest.raises(InvalidInput, match=error):
        agent.step(text)
    assert agent.recall.count() == 0


@pytest.mark.parametrize(
    "text", ["nul\x00byte inside", "x" * 1_000_000, "ünïcödé 😀 文字", b"utf-8 bytes \xc3\xa9"]
)
def test_odd_input_is_stored_as_given(store, text) -> None:
    agent, client = make_agent(store, [call("send_message", message="got it")])
    r = agent.step(text)
    assert r.message == "got it"
    expected = text.decode() if isinstance(text, bytes) else text
    assert agent.recall.all()[0].content == expected
    seen = client.history[0][1].content  # the model sees the message, cut if too big
    assert seen == expected or ("[... cut here" in seen and seen[:100] == expected[:100])
    assert r.context_usage.prompt_tokens <= r.context_usage.context_window


def test_context_never_exceeds_the_window_and_evicts_whole_calls(store) -> None:
    client = ScriptedClient(n_ctx=1500, summarizer=lambda prompt: "They talked about topics.")
    agent = MemGPTAgent(PERSONA, store, client, name="sam", reply_tokens=200)
    for i in range(30):
        client.enqueue(
            [
                call("archival_memory_search", heartbeat=True, query=f"topic {i}"),
                call("send_message", message=f"answer {i} " + "words " * 20),
            ]
        )
        r = agent.step(f"question {i} " + "filler " * 30)
        assert r.context_usage.prompt_tokens + 200 <= 1500
    in_context = agent.recall.in_context()
    assert in_context[0].role != "tool"  # a tool result never loses its call
    conversation = [m for m in agent.recall.all() if m.role != "system"]
    assert len(conversation) == 30 * 5  # nothing lost: paged-out messages stay in recall
    assert agent.summaries.latest() is not None
    page, hits = agent.recall.search("question 0")
    assert any(h.content.startswith("question 0 ") for h in hits)


def test_resume_in_a_new_process_finds_everything(tmp_path: Path, embedder) -> None:
    db = tmp_path / "persist.db"
    script = textwrap.dedent(f"""
        import json, sys
        from engine import MemGPTAgent, Persona, open_store
        from engine.llm.scripted import ScriptedClient, call
        from engine.store.embed import default_embedder
        store = open_store({str(db)!r}, embedder=default_embedder())
        client = ScriptedClient()
        agent = MemGPTAgent(Persona("Sam", "helpful"), store, client, name="sam")
        if sys.argv[1] == "write":
            agent.tools.core_memory_append("human", "Name: Alice")
            for i in range(50):
                client.enqueue([call("send_message", message=f"reply {{i}}")])
                agent.step(f"message number {{i}}")
            agent.archival.insert_many([f"passage {{i}} about topic {{i % 17}}" for i in range(1000)])
        else:
            out = dict(core=agent.core_memory,
                       messages=sum(m.role != "system" for m in agent.recall.all()),
                       user=[m.content for m in agent.recall.all() if m.role == "user"][:3],
                       passages=agent.archival.count(),
                       search=agent.tools.archival_memory_search("passage 999", limit=3),
                       recall=agent.tools.conversation_search("message number 42", limit=3))
            print(json.dumps(out))
    """)

    def run(mode):
        return subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parents[2],
        )

    run("write")
    found = json.loads(run("read").stdout.strip().splitlines()[-1])
    assert found["core"]["human"] == "Name: Alice"
    assert found["messages"] == 50 * 3  # user, assistant call, tool result (+ system notes)
    assert found["user"] == ["message number 0", "message number 1", "message number 2"]
    assert found["passages"] == 1000
    assert "passage 999 about topic" in found["search"]
    assert "message number 42" in found["recall"]


def test_prompt_prefix_is_stable_across_model_edits_but_user_edits_show(store) -> None:
    agent, client = make_agent(
        store,
        [
            call("core_memory_append", heartbeat=True, section="human", content="likes tea"),
            call("send_message", message="noted"),
            call("send_message", message="hello again"),
            call("send_message", message="and again"),
        ],
    )
    agent.step("I like tea")
    agent.step("hi")
    # the model's own edit is in the conversation; the system prompt stays byte-identical
    assert client.history[0][0] == client.history[2][0]
    assert "likes tea" not in client.history[2][0].content
    agent.tools.core_memory_append("human", "Name: Alice")  # the user's edit
    agent.step("hi again")
    assert (
        "Name: Alice" in client.history[3][0].content
        and "likes tea" in client.history[3][0].content
    )


# -- another reply, an edited message ---------------------------------------------------------
def test_regenerate_answers_again_and_keeps_the_old_reply_marked(store) -> None:
    agent, client = make_agent(
        store,
        [
            call("send_message", message="Try pathlib."),
            call("send_message", message="Or open() with a with-block."),
        ],
    )
    agent.step("How do I read a file?")
    result = agent.regenerate()
    assert result.message == "Or open() with a with-block."
    assert "another reply" in client.history[-1][-1].content  # told what is asked
    seen = [m.content for m in agent.recall.in_context()]
    assert not any("Try pathlib." in c for c in seen)
    old = [m for m in agent.recall.all() if m.replaced]
    assert any("Try pathlib." in m.content for m in old)  # kept in recall, marked
    entries = transcript(agent.recall, agent.summaries).entries
    assert [e.text for e in entries if e.kind in ("user", "assistant")] == [
        "How do I read a file?",
        "Or open() with a with-block.",
    ]
    assert [m.content for m in agent.recall.all() if m.role == "user"] == ["How do I read a file?"]


def test_edit_last_sends_the_new_text_and_keeps_the_old_one_marked(store) -> None:
    agent, _ = make_agent(
        store,
        [call("send_message", message="Paris."), call("send_message", message="Rome.")],
    )
    agent.step("What is the capital of France?")
    result = agent.edit_last("What is the capital of Italy?")
    assert result.message == "Rome."
    users = [(m.content, m.replaced) for m in agent.recall.all() if m.role == "user"]
    assert users == [
        ("What is the capital of France?", True),
        ("What is the capital of Italy?", False),
    ]
    assert [m.content for m in agent.recall.in_context() if m.role == "user"] == [
        "What is the capital of Italy?"
    ]


def test_nothing_to_regenerate_or_edit_is_said(store) -> None:
    agent, _ = make_agent(store)
    with pytest.raises(InvalidInput, match="no message of yours to regenerate"):
        agent.regenerate()
    with pytest.raises(InvalidInput, match="no message of yours to edit"):
        agent.edit_last("hello")
