"""The virtual context: memory-pressure warning, page-out, recursive summary, oversized messages.

Every test runs the real agent loop (parse, validate, dispatch, store) against the scripted
client, whose token counts are exact for its own tokenizer (about 4 characters a token, +4 a
message, +3 a prompt), so every size below is predictable.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re

import pytest

from engine import MemGPTAgent, Persona
from engine.agent import DEFAULT_MAX_STEPS, IDLE_MAX_CALLS, IDLE_MAX_SAVES, IDLE_SAVES_DONE
from engine.consolidate import REVIEW_SYSTEM
from engine.context import HEARTBEAT_PREFIX, PRESSURE_PREFIX
from engine.errors import ContextOverflowError, GenerationError
from engine.llm.scripted import ScriptedClient, call
from engine.memory.core import BlockTemplate
from engine.summarizer import SUMMARY_SYSTEM
from engine.types import Assists, ChatMessage

PERSONA = Persona(name="Sam", description="A helpful assistant", traits=["curious", "precise"])
SUMMARY_HEAD = SUMMARY_SYSTEM.split("{name}", 1)[0]  # how a summary prompt's system text starts
SUMMARY_SECTION = "\n\nSummary of the earlier conversation"
PENDING_RE = re.compile(r"Messages (\d+)-(\d+) are out of view and not summarised yet")
SECTION_RE = re.compile(
    r"\n\n(Summary of the earlier conversation|Messages \d+-\d+ are out of view)"
)
MARKER_RE = re.compile(r"\bqz[a-j]{3}\b")  # see marker(); summaries write them in capitals

WORDS = tuple(
    " ".join(
        [
            "garden river morning coffee letter window market winter summer bicycle mountain",
            "library painting kitchen harbour orchard lantern meadow station journey valley",
            "teacher sister brother village forest candle museum bridge island festival recipe",
            "chapter violin tractor pottery blanket kettle compass theatre cottage ferry glacier",
            "canyon pepper almond ribbon walked painted borrowed visited planted repaired",
            "remembered carried watched cooked quietly slowly often early late gently bright",
            "old small green warm quiet",
        ]
    ).split()
)


# -- helpers -----------------------------------------------------------------------------------
def make_agent(store, n_ctx=4096, reply_tokens=512, summarizer=None, **kw):
    # the window's own mechanics: no page-in notes or reply checks between the scripted calls
    # (tests/engine/memory/test_page_in.py checks the budget with them)
    kw.setdefault("assists", Assists.none())
    client = ScriptedClient(n_ctx=n_ctx, summarizer=summarizer or short_summary)
    agent = MemGPTAgent(PERSONA, store, client, name="sam", reply_tokens=reply_tokens, **kw)
    return agent, client


def short_summary(prompt: list[ChatMessage]) -> str:
    """A short summary naming the newest message it read (read from the summary prompt)."""
    found = MARKER_RE.findall(prompt[-1].content)
    return f"They talked; the newest topic was {found[-1].upper() if found else 'none'}."


def full_summary(prompt: list[ChatMessage]) -> str:
    """A summary as long as the summary prompt allows ("At most N words", N = 2/3 of the
    summary call's max_tokens), like a verbose model that writes up to its token limit."""
    words = int(re.search(r"At most (\d+) words", prompt[0].content).group(1))
    text = short_summary(prompt) + " " + prose(len(prompt[-1].content), words * 6)
    return text[: words * 6 - 8].rstrip()


def prose(seed: int, chars: int) -> str:
    """Real-word sentences, about `chars` long, the same for the same seed."""
    rng = random.Random(seed)
    sentences: list[str] = []
    while sum(len(s) + 1 for s in sentences) < chars:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def marker(i: int) -> str:
    """A word found in no other message (letters only, so full-text search reads it whole)."""
    return "qz" + "".join(chr(ord("a") + int(d)) for d in f"{i:03d}")


def chat(agent, client, i: int, chars: int = 800):
    client.enqueue([call("send_message", message=f"Reply {i}: noted, thank you.")])
    return agent.step(f"Message {i} {marker(i)}. " + prose(i, chars))


def system_tokens(agent, client) -> int:
    """The size of the system message the next build renders (without the overflow check)."""
    return client.count_tokens([ChatMessage("system", agent.context.render_system())])


def pad_system(agent, client, tokens: int) -> None:
    """Attach a core block "notes" that makes the system message `tokens` tokens long, so that
    the tests do not depend on the size of the engine's instructions."""
    chars = max(0, 4 * (tokens - system_tokens(agent, client)) - 40)
    agent.memory.attach(BlockTemplate("notes", prose(99, chars)[:chars], "Notes.", chars + 1000))
    for _ in range(3):  # a character more or less moves the count by at most one token
        chars += 4 * (tokens - system_tokens(agent, client))
        agent.memory.set("notes", prose(99, chars)[:chars])
        agent.context.refresh()
        if system_tokens(agent, client) == tokens:
            break
    assert abs(system_tokens(agent, client) - tokens) <= 1


REVIEW_HEAD = REVIEW_SYSTEM.split("{")[0]


def is_summary_prompt(prompt: list[ChatMessage]) -> bool:
    return prompt[0].content.startswith(SUMMARY_HEAD)


def agent_prompts(client) -> list[list[ChatMessage]]:
    """The prompts of the agent's own turns (not page-out summaries, not memory reviews)."""
    return [
        p
        for p in client.history
        if not is_summary_prompt(p) and not p[0].content.startswith(REVIEW_HEAD)
    ]


def summary_prompts(client) -> list[list[ChatMessage]]:
    return [p for p in client.history if is_summary_prompt(p)]


def warnings(agent) -> list:
    return [m for m in agent.recall.all() if m.content.startswith(PRESSURE_PREFIX)]


def paged_out(result) -> bool:
    return any(n.startswith("Paged out messages") for n in result.notes)


def summary_section_tokens(client, system_text: str) -> int:
    """Tokens the summary section adds to a system message (as the engine counts them)."""
    bare = SECTION_RE.split(system_text, 1)[0]
    return client.count_tokens([ChatMessage("system", system_text)]) - client.count_tokens(
        [ChatMessage("system", bare)]
    )


def lines_for(agent, client, prompt: list[ChatMessage]):
    """The warn / flush / target lines the engine applies to a prompt with this system message."""
    return agent.context.budget.lines(client.count_tokens([prompt[0]]))


def assert_within_budget(agent, result) -> None:
    budget = agent.context.budget.prompt_budget
    assert result.model_calls, "the step made no model call"
    for record in result.model_calls:
        assert record.counted_prompt_tokens == record.reported_prompt_tokens
        assert record.counted_prompt_tokens <= budget
    assert result.context_usage.prompt_tokens <= budget


def assert_page_outs_reach_target(agent, client) -> int:
    """Every prompt right after a page-out (its system message changed) is down to the target,
    give or take what the summary section takes over its reserved room. Returns how many."""
    budget = agent.context.budget
    prompts = agent_prompts(client)
    count = 0
    for before, after in zip(prompts, prompts[1:], strict=False):
        if before[0] == after[0]:
            continue
        count += 1
        over = max(0, summary_section_tokens(client, after[0].content) - budget.summary_tokens)
        target = lines_for(agent, client, after).target
        assert client.count_tokens(after) <= target + over + 1, (count, target, over)
    return count


# -- 1. the warning ----------------------------------------------------------------------------
def test_memory_pressure_warning_is_sent_once_per_fill(store) -> None:
    agent, client = make_agent(store)
    budget = agent.context.budget
    counts: list[int] = []  # warnings stored after each step
    page_outs: list[int] = []  # steps that paged out
    for i in range(40):
        calls_before = len(agent_prompts(client))
        r = chat(agent, client, i)
        assert_within_budget(agent, r)
        counts.append(len(warnings(agent)))
        if counts[-1] > (counts[-2] if i else 0):
            # the new warning comes right before this step's user message, which is the last
            # thing the model reads (a small model answered a warning read last); the system
            # message is the one of the prompt before (a prefix the model evaluated already)
            prompt = agent_prompts(client)[calls_before]
            assert prompt[-2].content.startswith(PRESSURE_PREFIX)
            assert prompt[-1].role == "user" and prompt[-1].content.startswith(f"Message {i} ")
            assert prompt[0] == agent_prompts(client)[calls_before - 1][0]
            before = client.count_tokens([*prompt[:-2], prompt[-1]])  # what the warning read
            lines = lines_for(agent, client, prompt)
            assert lines.warn < before <= lines.flush
            assert f"The context is {round(100 * before / budget.prompt_budget)}% full" in (
                prompt[-2].content
            )
        if paged_out(r):
            page_outs.append(i)
            if len(page_outs) == 2:
                break
    assert len(page_outs) == 2, counts
    first_warning = counts.index(1)
    second_warning = counts.index(2)
    # one warning for the first fill, repeated on no later step before the page-out ...
    assert first_warning + 2 <= page_outs[0]
    assert counts[first_warning : page_outs[0] + 1] == [1] * (page_outs[0] - first_warning + 1)
    # ... and exactly one more when the context fills again after it
    assert page_outs[0] + 2 <= second_warning < page_outs[1]
    assert counts[page_outs[0] : second_warning] == [1] * (second_warning - page_outs[0])
    assert counts[second_warning : page_outs[1] + 1] == [2] * (page_outs[1] - second_warning + 1)
    assert all(m.role == "system" for m in warnings(agent))


# -- 2. eviction -------------------------------------------------------------------------------
def test_page_out_cuts_at_turn_starts_and_loses_nothing(store) -> None:
    agent, client = make_agent(store, summarizer=full_summary)
    evicted_seen = 0
    for i in range(30):
        if i % 4 == 3:  # a heartbeat turn: its note also opens a turn
            client.enqueue([call("archival_memory_insert", content=f"Note {i}: " + prose(i, 300))])
            r = agent.heartbeat()
        else:  # a turn with a tool call and its result before the reply
            client.enqueue(
                [
                    call("conversation_search", heartbeat=True, query=prose(100 + i, 40)),
                    call("send_message", message=f"Reply {i}: " + prose(200 + i, 120)),
                ]
            )
            r = agent.step(f"Message {i} {marker(i)}. " + prose(i, 700))
        assert_within_budget(agent, r)
        if not paged_out(r):
            continue
        kept = agent.recall.in_context()
        first = kept[0]
        assert first.role == "user" or (
            first.role == "system" and first.content.startswith(HEARTBEAT_PREFIX)
        )
        for index, message in enumerate(kept):
            if message.role == "tool":
                assert index > 0 and kept[index - 1].role == "assistant"
                assert kept[index - 1].tool_call is not None
        everything = agent.recall.all()
        evicted = [m for m in everything if not m.in_context]
        assert evicted and max(m.id for m in evicted) < first.id  # the oldest go, none else
        assert [m.id for m in everything] == list(range(everything[0].id, everything[-1].id + 1))
        for m in evicted[evicted_seen:]:
            if m.role == "user":  # a paged-out message is still found by its words
                word = m.content.split()[2].rstrip(".")
                _, hits = agent.recall.search(word, limit=3)
                assert m.id in [h.id for h in hits]
        evicted_seen = len(evicted)
    assert evicted_seen > 0
    assert assert_page_outs_reach_target(agent, client) >= 2
    assert agent.recall.count() == len(agent.recall.all())


def test_page_out_inside_one_long_turn_never_splits_a_call_from_its_result(store) -> None:
    # one user message, then a chain of calls of varied sizes with small results, and small
    # calls with big results: no turn starts in the evicted range, so the cut falls inside the
    # turn, but never between a call and its result
    agent, client = make_agent(store, n_ctx=2048, reply_tokens=256, max_steps=16)
    agent.archival.insert_many(_lighthouse_passages(20))
    chain = []
    for n in range(15):
        if n % 3 == 2:
            chain.append(call("archival_memory_search", heartbeat=True, query=f"log {n}", limit=3))
        else:
            chain.append(
                call(
                    "archival_memory_insert",
                    heartbeat=True,
                    content=f"Log {n}. " + prose(n, 200 + n * 128 % 1000),
                )
            )
    client.enqueue([*chain, call("send_message", message="The keeper kept a long log.")])
    r = agent.step("Copy the whole lighthouse log to archival memory, page by page.")
    assert_within_budget(agent, r)
    assert r.message == "The keeper kept a long log." and r.steps == 16
    assert sum(n.startswith("Paged out messages") for n in r.notes) >= 3
    prompts = agent_prompts(client)
    assert sum(p[1].role == "assistant" for p in prompts) >= 3  # cut inside the turn
    for prompt in prompts:
        assert prompt[1].role != "tool"
        for before, message in zip(prompt, prompt[1:], strict=False):
            if message.role == "tool":
                assert before.role == "assistant" and before.content.startswith('{"thought"')
    assert [m.role for m in agent.recall.all()].count("tool") == 16


def test_page_out_reaches_the_target_after_the_models_core_edits(store) -> None:
    agent, client = make_agent(store, summarizer=full_summary)
    for i in range(15):
        client.enqueue(
            [
                call(
                    "core_memory_append",
                    heartbeat=True,
                    section="human",
                    content=f"Fact {i}: " + prose(500 + i, 150),
                ),
                call("send_message", message=f"Reply {i}: noted."),
            ]
        )
        r = agent.step(f"Message {i} {marker(i)}. " + prose(i, 500))
        if paged_out(r):
            break
    assert paged_out(r)
    # core memory grew by over 1,200 characters since the system message was last rendered
    assert len(agent.core_memory["human"]) > 1200
    assert assert_page_outs_reach_target(agent, client) == 1


# -- 3. the recursive summary ------------------------------------------------------------------
def test_second_summary_folds_the_first(store) -> None:
    seen: list[list[ChatMessage]] = []

    def summarise(prompt: list[ChatMessage]) -> str:
        seen.append(prompt)
        return f"Summary number {len(seen)}: " + short_summary(prompt)

    agent, client = make_agent(store, summarizer=summarise)
    page_outs = 0
    i = 0
    while page_outs < 2:
        page_outs += paged_out(chat(agent, client, i))
        i += 1
        assert i < 40
    first, second = agent.summaries.all()
    assert first.previous_id is None and second.previous_id == first.id
    assert second.first_message_id == first.first_message_id == 1
    assert second.last_message_id > first.last_message_id
    assert first.text.startswith("Summary number 1:") and second.text.startswith("Summary number 2")
    # the second summary call was given the first summary, the range it covers, and only the
    # messages paged out since
    request = seen[-1][-1].content
    assert first.text in request
    assert f"(messages {first.first_message_id}-{first.last_message_id})" in request
    users = [m for m in agent.recall.all() if m.role == "user" and not m.in_context]
    old = [MARKER_RE.search(m.content).group() for m in users if m.id <= first.last_message_id]
    new = [MARKER_RE.search(m.content).group() for m in users if m.id > first.last_message_id]
    assert old and new and MARKER_RE.findall(request) == new
    system = client.history[-1][0].content
    assert (
        f"(messages {second.first_message_id}-{second.last_message_id}, out of view" in system
        and second.text in system
        and first.text not in system
    )
    assert PENDING_RE.search(system) is None


# -- 4. a user message bigger than the window --------------------------------------------------
def test_oversized_user_message_is_kept_whole_shown_cut_and_archived_in_parts(store) -> None:
    agent, client = make_agent(store, n_ctx=1500, reply_tokens=200)
    text = prose(7, 19_800) + " Last of all, the zanzibarite crystal is in the blue box."
    assert 19_800 < len(text) < 20_200
    client.enqueue([call("send_message", message="That is a lot of text.")])
    r = agent.step(text)
    assert_within_budget(agent, r)
    message = next(m for m in agent.recall.all() if m.role == "user")
    assert message.content == text  # recall keeps it whole
    assert agent.archival.has_message_parts(message.id)
    assert not agent.archival.has_message_parts(message.id + 1)
    _, parts = agent.archival.search("zanzibarite", limit=3)
    assert parts and "zanzibarite" in parts[0].text
    assert parts[0].tags == [f"message-{message.id}"]
    assert parts[0].text.startswith(f"(message {message.id}, part ")
    seen = [m for m in client.history[0] if m.role == "user"]
    assert len(seen) == 1
    view = seen[0].content
    assert view.startswith(text[:100]) and "zanzibarite" not in view
    assert f"[... cut here: {len(text)} characters in all." in view
    assert f"message-{message.id}" in view and f"message {message.id} in recall" in view
    assert client.count_message_tokens(seen[0]) <= agent.context.view_limit()


# -- 5. a tool result bigger than the room left ------------------------------------------------
def _lighthouse_passages(count: int) -> list[str]:
    return [
        (f"Lighthouse log {i}: the keeper noted the lamp and the weather. " + prose(300 + i, 320))[
            :390
        ]
        for i in range(count)
    ]


def test_search_page_shrinks_to_fit_the_room_left(store) -> None:
    agent, client = make_agent(store)
    agent.archival.insert_many(_lighthouse_passages(30))
    client.enqueue(
        [
            call("archival_memory_search", heartbeat=True, query="lighthouse keeper log", limit=20),
            call("send_message", message="The keeper kept a log."),
        ]
    )
    r = agent.step("What did the lighthouse keeper write? " + prose(1, 3000))
    assert_within_budget(agent, r)
    tool_view = client.history[1][-1]
    assert tool_view.role == "tool" and "[... cut here" not in tool_view.content
    shown = json.loads(tool_view.content)["message"]
    header = shown.splitlines()[0]
    more = re.search(r"More: page=(\d+), limit=(\d+)\.", header)
    assert more is not None, header
    limit = int(more.group(2))
    assert 1 < limit < 20
    assert header.startswith(f"Showing 1-{limit} of ") and more.group(1) == "1"
    assert len([line for line in shown.splitlines() if line.startswith("[id ")]) == limit
    # the result fits the room the context had left (a full page of 20 would not have)
    assert client.count_message_tokens(tool_view) <= agent.context.view_limit()
    assert (
        client.count_tokens(client.history[1]) <= lines_for(agent, client, client.history[1]).flush
    )


def _one_hit_too_big(store):
    """A small window whose system message leaves a view limit of 100 tokens: one search hit
    of ~390 characters (~140 tokens with the result's header) does not fit it."""
    agent, client = make_agent(store, n_ctx=1500, reply_tokens=200)
    pad_system(agent, client, 1300 - 300)
    assert agent.context.view_limit() == 100
    agent.archival.insert_many(_lighthouse_passages(5))
    client.enqueue(
        [
            call("archival_memory_search", heartbeat=True, query="lighthouse keeper log", limit=20),
            call("send_message", message="The keeper kept a log."),
        ]
    )
    r = agent.step("What did the lighthouse keeper write?")
    assert_within_budget(agent, r)
    stored = [m for m in agent.recall.all() if m.role == "tool"][0]
    return agent, client, stored, client.history[1][-1]


def test_tool_result_too_big_even_as_one_hit_is_shown_cut(store) -> None:
    agent, client, stored, view = _one_hit_too_big(store)
    assert json.loads(stored.content)["message"].startswith("Showing 1-1 of 5 passages")
    assert "More: page=1, limit=1." in stored.content  # fitted down to a single hit ...
    assert stored.token_count > agent.context.view_limit()  # ... still too big to show whole
    assert view.role == "tool" and view.content.startswith(stored.content[:80])
    assert f"[... cut here: {len(stored.content)} characters in all." in view.content
    assert client.count_message_tokens(view) <= agent.context.view_limit()


def test_cut_tool_result_note_points_to_a_way_to_read_it(store) -> None:
    agent, _, stored, view = _one_hit_too_big(store)
    assert "[... cut here" in view.content
    if "conversation_search finds it" in view.content:
        cut_off = json.loads(stored.content)["message"][-120:]  # the part the model did not see
        assert cut_off not in view.content
        _, hits = agent.recall.search(cut_off, limit=20)
        assert stored.id in [h.id for h in hits]


# -- 6. the step limit -------------------------------------------------------------------------
def test_step_limit_stops_a_heartbeat_chain(store) -> None:
    agent, client = make_agent(store, max_steps=3)
    client.enqueue(
        [
            call("core_memory_append", heartbeat=True, section="human", content=f"Fact {i}")
            for i in range(5)
        ]
    )
    r = agent.step("Tell me everything you know.")
    assert r.stopped_by_step_limit is True and r.steps == 3 and r.message is None
    assert [c.name for c in r.tool_calls] == ["core_memory_append"] * 3
    assert agent.core_memory["human"] == "Fact 0\nFact 1\nFact 2"
    assert client.remaining == 2
    assert any("step limit" in n for n in r.notes)
    last = agent.recall.all()[-1]
    assert last.role == "system" and last.content.startswith("Step limit reached")
    assert "3 model calls" in last.content


def test_an_idle_turn_saves_a_few_things_then_ends(store) -> None:
    """The model's own turn cannot go on saving: IDLE_MAX_SAVES writes end it."""
    agent, client = make_agent(store)
    client.enqueue(
        [
            call("archival_memory_insert", heartbeat=True, content=f"Note {i} about the user")
            for i in range(6)
        ]
    )
    r = agent.heartbeat()
    assert r.steps == IDLE_MAX_SAVES and not r.stopped_by_step_limit
    assert agent.archival.count() == IDLE_MAX_SAVES and client.remaining == 6 - IDLE_MAX_SAVES
    assert agent.recall.all()[-1].content == IDLE_SAVES_DONE


def test_an_idle_turn_that_keeps_failing_stops_at_its_own_limit(store) -> None:
    agent, client = make_agent(store)  # a user turn may take DEFAULT_MAX_STEPS calls
    client.enqueue(["not a tool call"] * 8)
    r = agent.heartbeat()
    assert r.stopped_by_step_limit and r.steps == IDLE_MAX_CALLS < DEFAULT_MAX_STEPS
    assert client.remaining == 8 - IDLE_MAX_CALLS
    assert f"{IDLE_MAX_CALLS} model calls" in agent.recall.all()[-1].content


# -- 7. the heartbeat --------------------------------------------------------------------------
def test_heartbeat_note_tells_time_since_user_and_context_use(store) -> None:
    agent, client = make_agent(store)
    expected = agent.context_window()
    percent = round(100 * expected.prompt_tokens / expected.prompt_budget)
    client.enqueue([call("archival_memory_insert", content="The user likes quiet mornings.")])
    r = agent.heartbeat()
    note = agent.recall.all()[0]
    assert note.role == "system" and note.content.startswith(HEARTBEAT_PREFIX)
    assert "Last user message: never." in note.content
    assert f"Context: {expected.prompt_tokens} of {expected.prompt_budget} tokens" in note.content
    assert f"({percent}%, room to spare)" in note.content
    assert client.history[0][-1].content == note.content
    assert r.message is None and r.steps == 1 and not r.stopped_by_step_limit
    assert [c.name for c in r.tool_calls] == ["archival_memory_insert"]
    _, found = agent.archival.search("quiet mornings")
    assert [p.text for p in found] == ["The user likes quiet mornings."]

    chat(agent, client, 1, chars=100)
    client.enqueue([call("archival_memory_insert", content="Nothing new.")])
    agent.heartbeat()
    assert "Last user message: less than a minute ago." in agent.recall.all()[-3].content

    ago = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5, seconds=10)).isoformat()
    with store.atomic() as conn:
        conn.execute(
            "UPDATE agents SET last_user_message_at = ? WHERE id = ?", (ago, agent.agent_id)
        )
    client.enqueue([call("archival_memory_insert", content="Still nothing new.")])
    agent.heartbeat()
    assert "Last user message: 5 minutes ago." in agent.recall.all()[-3].content
    assert [m.role for m in agent.recall.all()].count("user") == 1


# -- 8. a failed summary -----------------------------------------------------------------------
@pytest.mark.parametrize("failure", ["error", "whitespace", "instructions"])
def test_failed_summary_loses_nothing_and_is_retried_next_step(store, failure) -> None:
    calls: list[list[ChatMessage]] = []

    def summarise(prompt: list[ChatMessage]) -> str:
        calls.append(prompt)
        if len(calls) == 1:
            if failure == "error":
                raise GenerationError("the model crashed")
            if failure == "instructions":  # as a 0.5B model wrote it, in place of a summary
                return (
                    "Keep the facts of the summary so far, and add what Sam promised or did. "
                    "Questions still open."
                )
            return " \n\t "
        return "The retried summary. " + short_summary(prompt)

    agent, client = make_agent(store, summarizer=summarise)
    i = 0
    while True:
        r = chat(agent, client, i)
        i += 1
        if paged_out(r):
            break
        assert i < 30
    assert r.message == f"Reply {i - 1}: noted, thank you." and not r.stopped_by_step_limit
    assert_within_budget(agent, r)
    failed = [n for n in r.notes if n.startswith("The summary of messages")]
    assert len(failed) == 1 and "failed" in failed[0] and "next step" in failed[0]
    assert agent.summaries.latest() is None
    everything = agent.recall.all()
    roles = [m.role for m in everything]
    assert roles.count("user") == roles.count("assistant") == roles.count("tool") == i
    evicted = [m for m in everything if not m.in_context]
    assert evicted and evicted[0].id == 1
    system = client.history[-1][0].content
    assert PENDING_RE.search(system).groups() == (str(evicted[0].id), str(evicted[-1].id))
    assert SUMMARY_SECTION not in system
    assert len(calls) == 1

    r = chat(agent, client, i)  # the next step retries first
    assert len(calls) == 2 and not any(n.startswith("The summary of") for n in r.notes)
    summary = agent.summaries.latest()
    assert summary is not None and summary.text.startswith("The retried summary.")
    assert (summary.first_message_id, summary.last_message_id) == (evicted[0].id, evicted[-1].id)
    system = client.history[-1][0].content
    assert f"(messages {evicted[0].id}-{evicted[-1].id}, out of view" in system
    assert PENDING_RE.search(system) is None


# -- 9. a summary in pieces --------------------------------------------------------------------
def test_page_out_bigger_than_one_summary_call_is_folded_in_pieces(store) -> None:
    # Fill a big window, then resume the agent with a small one: its first build pages out
    # far more than one summary call of the small window can read.
    big = ScriptedClient(n_ctx=8192)
    agent = MemGPTAgent(PERSONA, store, big, name="sam")
    for i in range(14):
        chat(agent, big, i, chars=1000)
    assert agent.summaries.latest() is None and all(m.in_context for m in agent.recall.all())

    pieces: list[list[ChatMessage]] = []
    written: list[str] = []

    def summarise(prompt: list[ChatMessage]) -> str:  # keeps the summary so far, adds a line
        pieces.append(prompt)
        found = MARKER_RE.findall(prompt[-1].content) or ["none"]
        written.append(f"Piece {len(pieces)} covers {found[0].upper()} to {found[-1].upper()}.")
        return " ".join(written)

    small = ScriptedClient(n_ctx=2048, summarizer=summarise)
    agent = MemGPTAgent(PERSONA, store, small, name="sam", reply_tokens=256)
    r = chat(agent, small, 14, chars=200)
    assert paged_out(r) and not any(n.startswith("The summary of") for n in r.notes)
    assert_within_budget(agent, r)
    assert len(pieces) >= 2
    max_tokens = agent.context.budget.summary_tokens
    for prompt in pieces:
        assert small.count_tokens(prompt) + max_tokens <= small.context_window
    # each piece folds the summary the one before wrote
    for n, prompt in enumerate(pieces[1:], start=1):
        assert " ".join(written[:n]) in prompt[-1].content
    # every paged-out user message was read by exactly one piece, in order
    read = [m for p in pieces for m in MARKER_RE.findall(p[-1].content)]
    evicted = [m for m in agent.recall.all() if not m.in_context]
    assert read == [MARKER_RE.search(m.content).group() for m in evicted if m.role == "user"]
    assert read[0] == marker(0) and len(read) >= 10
    # the summary keeps the first piece and ends with the last
    summary = agent.summaries.latest()
    assert summary.text == " ".join(written)
    assert summary.text.startswith(f"Piece 1 covers {marker(0).upper()} to ")
    assert summary.text.endswith(f"to {read[-1].upper()}.")
    assert (summary.first_message_id, summary.last_message_id) == (1, evicted[-1].id)
    assert summary.text in small.history[-1][0].content


# -- 10. core memory and the window -----------------------------------------------------------
def _big_block(chars: int) -> BlockTemplate:
    text = prose(99, chars)[:chars]
    return BlockTemplate("notes", text, "Long notes.", limit=chars + 100)


def test_core_memory_too_big_for_the_window_names_the_sizes(store) -> None:
    agent, client = make_agent(store, n_ctx=2048, reply_tokens=256)
    pad_system(agent, client, 1792 - 100)  # fits the 1792-token budget, not with 192 more
    with pytest.raises(ContextOverflowError) as info:
        agent.step("hello")
    text = str(info.value)
    system = agent.context.render_system()
    tokens = client.count_tokens([ChatMessage("system", system)])
    core = tokens - client.count_tokens([ChatMessage("system", agent.context.render_system(""))])
    assert f"the system prompt takes {tokens} tokens" in text
    assert f"core memory {core}," in text and core > tokens // 2 and tokens + 192 > 1792
    assert "more than the 1792 the window leaves (n_ctx 2048 - reply 256)" in text
    assert client.history == []  # no model call was made


def test_large_core_memory_that_fits_keeps_every_prompt_in_budget(store) -> None:
    agent, client = make_agent(store, summarizer=full_summary)
    agent.memory.attach(_big_block(7600))
    agent.context.refresh()
    budget = agent.context.budget
    assert agent.context.system_prompt().core_tokens > 1900
    page_outs = 0
    for i in range(20):
        r = chat(agent, client, i, chars=500)
        assert_within_budget(agent, r)
        assert r.message == f"Reply {i}: noted, thank you."
        page_outs += paged_out(r)
    assert page_outs >= 3 and len(agent.summaries.all()) == page_outs
    assert all(client.count_tokens(p) <= budget.prompt_budget for p in agent_prompts(client))
    assert all(
        client.count_tokens(p) + budget.summary_tokens <= client.context_window
        for p in summary_prompts(client)
    )


def test_core_memory_that_fits_at_start_still_fits_after_a_page_out(store) -> None:
    agent, client = make_agent(store, summarizer=full_summary)
    budget = agent.context.budget
    pad_system(agent, client, budget.prompt_budget - 192 - 250)
    tokens = system_tokens(agent, client)  # fits with the 192 tokens left for messages ...
    assert tokens + 192 <= budget.prompt_budget
    assert tokens + budget.summary_tokens + 192 > budget.prompt_budget  # ... not with a summary
    try:
        chat(agent, client, 0, chars=300)
    except ContextOverflowError:
        return  # refusing at the first step is fine: the user learns it at once
    for i in range(1, 8):
        chat(agent, client, i, chars=300)  # must not fail later, once a summary exists


# -- 11. context_window() ----------------------------------------------------------------------
def test_context_window_sections_add_up(store) -> None:
    agent, client = make_agent(store)
    pressures = []
    summary_sizes = []
    for i in range(30):
        usage = agent.context_window()
        sections = usage.sections
        assert set(sections) == {
            "system",
            "core_memory",
            "summary",
            "messages",
            "reply_reserve",
            "free",
        }
        assert sum(sections.values()) == usage.context_window == 4096
        first_four = ("system", "core_memory", "summary", "messages")
        assert sum(sections[k] for k in first_four) == usage.prompt_tokens
        assert sections["reply_reserve"] == 512 and usage.prompt_budget == 3584
        assert sections["core_memory"] > 50 and sections["messages"] >= 0
        pressures.append(usage.pressure)
        summary_sizes.append(sections["summary"])
        if agent.summaries.latest() is None:
            assert sections["summary"] == 0
        else:
            assert sections["summary"] == summary_section_tokens(
                client, agent.context.system_prompt().message.content
            )
            assert sections["summary"] > 0
            break
        r = chat(agent, client, i)
        assert r.context_usage.pressure in ("ok", "warning")
    assert summary_sizes[0] == 0 and summary_sizes[-1] > 0
    assert pressures[0] == "ok" and "warning" in pressures
    first_warning = pressures.index("warning")
    assert all(p == "ok" for p in pressures[:first_warning])
    assert pressures[-1] == "ok"  # after the page-out


# -- 12. the cache-friendly prefix -------------------------------------------------------------
def test_system_message_is_stable_between_page_outs(store) -> None:
    agent, client = make_agent(store)
    page_out_steps = []
    for i in range(30):
        client.enqueue(
            [
                call("core_memory_append", heartbeat=True, section="human", content=f"Fact {i}."),
                call("send_message", message=f"Reply {i}: noted."),
            ]
        )
        r = agent.step(f"Message {i} {marker(i)}. " + prose(i, 800))
        assert_within_budget(agent, r)
        if paged_out(r):
            page_out_steps.append(i)
            if len(page_out_steps) == 2:
                break
    assert len(page_out_steps) == 2
    prompts = agent_prompts(client)
    systems = [p[0] for p in prompts]
    changes = [n for n in range(1, len(systems)) if systems[n] != systems[n - 1]]
    assert len(changes) == 2  # one re-render per page-out, never for the model's own edits
    a, b = changes
    assert len({s.content for s in systems[:a]}) == 1
    assert len({s.content for s in systems[a:b]}) == 1 and b - a >= 4
    assert "Fact 0." not in systems[0].content and SUMMARY_SECTION not in systems[0].content
    assert SUMMARY_SECTION in systems[a].content and "Fact 0." in systems[a].content
    first, second = agent.summaries.all()
    assert first.text in systems[a].content and second.text in systems[b].content
    assert first.text not in systems[b].content
    # the model still sees its edits: as calls in the conversation
    assert any('"content": "Fact 1."' in m.content for m in prompts[a - 1])


def test_a_summary_is_told_from_its_instructions_written_back() -> None:
    from engine.summarizer import writes_instructions_back

    instructions = SUMMARY_SYSTEM.format(name="Sam", words=100)
    echo = "keep the facts of the summary so far, and add what sam promised or did. questions"
    assert writes_instructions_back(echo + " still open.", instructions)
    summary = (
        "The user is Priya, a marine biologist in Lisbon; her daughter Ana turns six in May. "
        "Sam promised to keep the facts of the summary so far."  # a few of its words are fine
    )
    assert not writes_instructions_back(summary, instructions)
    assert not writes_instructions_back("", instructions)
