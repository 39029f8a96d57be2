"""The knowledge graph: facts with time; a contradiction closes the old fact, never deletes it."""

from __future__ import annotations

import datetime as dt

import pytest

from engine import MemGPTAgent, Persona
from engine.llm.scripted import ScriptedClient
from engine.memory.graph import GraphError, KnowledgeGraph, clean_relation, parse_time


@pytest.fixture
def agent(store) -> MemGPTAgent:
    return MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name="sam")


@pytest.fixture
def graph(agent) -> KnowledgeGraph:
    return agent.graph


def objects(facts) -> list[str]:
    return [f.object for f in facts]


def test_a_new_employer_closes_the_old_fact_and_both_can_be_asked(graph) -> None:
    graph.insert("Alice", "works at", "Initech", "2025-09-01")
    done = graph.insert("alice", "works_at", "Acme", "2026-04-15")
    assert [f.object for f in done.closed] == ["Initech"]
    assert objects(graph.search("Alice", "works_at")) == ["Acme", "Initech"]  # now first
    now = graph.search("Alice", "works_at")[0]
    assert now.current and now.valid_from == dt.datetime(2026, 4, 15, tzinfo=dt.UTC)
    old = graph.search("Alice", "works_at")[1]
    assert old.valid_to == dt.datetime(2026, 4, 15, tzinfo=dt.UTC)
    assert objects(graph.search("Alice", "works_at", at="2026-03")) == ["Initech"]
    assert objects(graph.search("Alice", "works_at", at="2026-05-02")) == ["Acme"]
    # April held both: she changed jobs in it
    assert sorted(objects(graph.search("Alice", "works_at", at="2026-04"))) == ["Acme", "Initech"]
    assert graph.search("Alice", "works_at", at="2024") == []
    assert graph.count() == 2  # nothing deleted


def test_the_same_fact_again_is_not_piled_up(graph) -> None:
    first = graph.insert("Bob", "lives_in", "Paris", "2026-01-01")
    again = graph.insert("bob ", "Lives-In", "paris", "2026-02-01")
    assert again.duplicate and again.fact.id == first.fact.id
    earlier = graph.insert("Bob", "lives_in", "Paris", "2025-06-01")  # true since earlier
    assert earlier.duplicate and earlier.fact.id == first.fact.id
    assert graph.get(first.fact.id).valid_from == dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    assert graph.count() == 1


def test_a_fact_learnt_late_about_the_past_fits_between_the_others(graph) -> None:
    graph.insert("Alice", "works_at", "Acme", "2026-04-01")
    graph.insert("Alice", "works_at", "Initech", "2024-01-01")  # told later, happened earlier
    initech = graph.search("Alice", "works_at", at="2025")[0]
    assert initech.object == "Initech"
    assert initech.valid_to == dt.datetime(2026, 4, 1, tzinfo=dt.UTC)  # ends where Acme begins
    assert objects(graph.search("Alice", "works_at", at="2026-06")) == ["Acme"]
    graph.insert("Alice", "works_at", "Globex", "2025-01-01")  # between the two
    assert objects(graph.search("Alice", "works_at", at="2024-06")) == ["Initech"]
    assert objects(graph.search("Alice", "works_at", at="2025-06")) == ["Globex"]
    assert objects(graph.search("Alice", "works_at", at="2026-06")) == ["Acme"]


def test_non_exclusive_relations_hold_several_objects(graph) -> None:
    graph.insert("Ada", "likes", "tea", exclusive=False)
    graph.insert("Ada", "likes", "chess", exclusive=False)
    assert sorted(objects(graph.search("Ada", "likes"))) == ["chess", "tea"]
    assert all(f.current for f in graph.search("Ada"))


def test_a_correction_at_the_same_moment_replaces_what_never_held(graph) -> None:
    graph.insert("Ada", "born_in", "Lyon", "1990-05-02")
    graph.insert("Ada", "born_in", "Lille", "1990-05-02")
    assert objects(graph.search("Ada", "born_in")) == ["Lille"]
    assert graph.count() == 2  # the wrong one is still in the history, never shown as true


def test_search_finds_entities_by_part_of_the_name_and_as_object(graph) -> None:
    graph.insert("Alice Smith", "works_at", "Acme Corp")
    graph.insert("Bob", "manages", "Alice Smith", exclusive=False)
    assert {f.relation for f in graph.search("alice")} == {"works_at", "manages"}
    assert objects(graph.search("Acme")) == ["Acme Corp"]
    assert graph.search("nobody at all") == []


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026", dt.datetime(2026, 1, 1), dt.datetime(2027, 1, 1)),
        ("2026-12", dt.datetime(2026, 12, 1), dt.datetime(2027, 1, 1)),
        ("2026-03-14", dt.datetime(2026, 3, 14), dt.datetime(2026, 3, 15)),
        ("2026-03-14T09:30", dt.datetime(2026, 3, 14, 9, 30), dt.datetime(2026, 3, 14, 9, 30)),
    ],
)
def test_times_name_periods(text, start, end) -> None:
    period = parse_time(text)
    assert (period.start, period.end) == (start.replace(tzinfo=dt.UTC), end.replace(tzinfo=dt.UTC))


@pytest.mark.parametrize("bad", ["March", "2026-13", "2026-02-30", "soon"])
def test_a_bad_time_is_a_clear_error(graph, bad) -> None:
    with pytest.raises(GraphError, match="is not a time like"):
        graph.insert("A", "r", "B", bad)


def test_empty_names_and_relations_are_refused(graph) -> None:
    with pytest.raises(GraphError, match="entity name is empty"):
        graph.insert(" ", "works_at", "Acme")
    with pytest.raises(GraphError, match="relation is empty"):
        clean_relation(" - ")


def test_the_tools_go_through_dispatch_and_archival_search_shows_facts(agent) -> None:
    out = agent.tools.graph_insert("Alice", "works_at", "Initech", "2025-01-01")
    assert out.startswith("Saved fact")
    out = agent.tools.graph_insert("Alice", "works_at", "Acme", "2026-04-01")
    assert "It ends: Alice works_at Initech (from 2025-01-01 until 2026-04-01)" in out
    assert "Already known" in agent.tools.graph_insert("Alice", "works_at", "Acme")
    found = agent.tools.graph_search("Alice", at="2026-03")
    assert "Initech" in found and "Acme" not in found
    assert "Error: valid_from 'last week' is not a time" in agent.tools.graph_insert(
        "Alice", "works_at", "X", "last week"
    )
    agent.tools.archival_memory_insert("Alice's team ships the billing service.")
    out = agent.tools.archival_memory_search("where does Alice work")
    assert "Facts now known:\n- Alice works_at Acme (since 2026-04-01)" in out
    assert "Initech" not in out  # only what holds now


def test_the_model_records_and_asks_facts_through_the_loop(store) -> None:
    llm = ScriptedClient(
        [
            {
                "tool": "graph_insert",
                "arguments": {"subject": "Alice", "relation": "works_at", "object": "Acme"},
                "request_heartbeat": False,
            },
            {
                "tool": "send_message",
                "arguments": {"message": "Noted."},
                "request_heartbeat": False,
            },
            {
                "tool": "graph_search",
                "arguments": {"entity": "Alice", "relation": None, "at": None},
                "request_heartbeat": True,
            },
            {"tool": "send_message", "arguments": {"message": "Acme."}, "request_heartbeat": False},
        ]
    )
    agent = MemGPTAgent(Persona("Sam", "helpful"), store, llm, name="sam")
    first = agent.step("Alice works at Acme now.")
    assert [op.tool for op in first.memory_operations] == ["graph_insert"]
    second = agent.step("Where does Alice work?")
    assert second.message == "Acme."
    seen = llm.history[-1][-1].content  # the tool result the model read before answering
    assert "Alice works_at Acme (since" in seen


def test_facts_are_per_agent_and_go_with_a_deleted_agent(store) -> None:
    from engine.agents import delete_agent

    one = MemGPTAgent(Persona("A", "a"), store, ScriptedClient(), name="one")
    two = MemGPTAgent(Persona("B", "b"), store, ScriptedClient(), name="two")
    one.graph.insert("Alice", "works_at", "Acme")
    assert two.graph.search("Alice") == []
    delete_agent(store, "one")
    assert store.query_one("SELECT count(*) FROM facts")[0] == 0
    assert store.query_one("SELECT count(*) FROM entities")[0] == 0
    assert store.query("SELECT rowid FROM entities_fts WHERE entities_fts MATCH 'alice'") == []


def test_a_fact_dated_in_the_future_does_not_hold_yet(agent, graph) -> None:
    graph.insert("Alice", "works_at", "Acme", "2020-01-01")
    graph.insert("Alice", "works_at", "Beta", "2099-01-01")  # a plan
    facts = graph.search("Alice")
    assert [(f.object, f.current, f.upcoming) for f in facts] == [
        ("Acme", True, False),
        ("Beta", False, True),
    ]
    assert facts[0].render() == "Alice works_at Acme (from 2020-01-01 until 2099-01-01)"
    assert facts[1].render() == "Alice works_at Beta (from 2099-01-01)"
    out = agent.tools.archival_memory_search("where does Alice work")
    assert "Facts now known:\n- Alice works_at Acme" in out and "Beta" not in out


@pytest.mark.parametrize(
    "when", ["9999-12-31", "0001-01-01T00:00+05:00", "9999-12-31T23:00-05:00", "10000"]
)
def test_times_at_the_ends_of_the_calendar_are_tool_errors(agent, when) -> None:
    out = agent.tools.graph_insert("Alice", "works_at", "Acme", when)
    assert out.startswith("Error: valid_from") and agent.graph.count() == 0
    assert agent.tools.graph_search("Alice", at=when).startswith("Error: at")


def test_a_far_date_from_the_model_is_a_tool_error_not_a_lost_turn(store) -> None:
    llm = ScriptedClient(
        [
            {
                "tool": "graph_insert",
                "arguments": {
                    "subject": "A",
                    "relation": "r",
                    "object": "B",
                    "valid_from": "9999-12-31",
                    "exclusive": True,
                },
                "request_heartbeat": False,
            },
            {"tool": "send_message", "arguments": {"message": "ok"}, "request_heartbeat": False},
        ]
    )
    agent = MemGPTAgent(Persona("Sam", "helpful"), store, llm, name="sam")
    result = agent.step("remember that")
    assert result.message == "ok" and not result.memory_operations[0].ok


def test_one_name_in_any_unicode_spelling(graph) -> None:
    graph.insert("Zo\u00eb", "lives_in", "Paris")  # composed
    graph.insert("Zoe\u0308", "lives_in", "Rome")  # decomposed: the same name
    assert [(f.object, f.current) for f in graph.search("ZO\u00cb")] == [
        ("Rome", True),
        ("Paris", False),
    ]


def test_a_relation_keeps_the_kind_its_first_fact_gave_it(graph) -> None:
    graph.insert("Ada", "likes", "tea", exclusive=False)
    graph.insert("Ada", "likes", "chess")  # the model forgot exclusive=false: tea stays
    assert sorted(f.object for f in graph.search("Ada") if f.current) == ["chess", "tea"]
    graph.insert("Alice", "works_at", "Acme", "2026-01-01")
    graph.insert("Alice", "works_at", "Beta", "2026-05-01", exclusive=False)
    assert [f.object for f in graph.search("Alice", at="2026-06")] == ["Beta"]


def test_a_shared_like_told_with_an_earlier_date_starts_earlier(graph) -> None:
    graph.insert("Ada", "likes", "tea", "2026-03-01", exclusive=False)
    again = graph.insert("Ada", "likes", "tea", "2025-01-01", exclusive=False)
    assert again.duplicate and graph.count() == 1
    assert [f.object for f in graph.search("Ada", at="2025-06")] == ["tea"]


def test_facts_about_a_message_name_its_entities_first_then_those_they_link_to(graph) -> None:
    graph.insert("Pickle", "is_a", "Hermann's tortoise", "2025-04-01")
    graph.insert("Pickle", "treated_by", "Dr. Amsel Korhonen", "2025-06-10")
    graph.insert("Dr. Amsel Korhonen", "works_at", "Brackenridge Exotic Pets", "2025")
    graph.insert("Brackenridge Exotic Pets", "located_in", "Ashby Vale", "2025")  # two hops
    graph.insert("Mortimer", "is_a", "ferret", "2025")  # unlinked
    about = graph.about("Who's the vet for my tortoise Pickle, and which practice is that?")
    assert [(f.subject, f.object) for f in about] == [
        ("Pickle", "Hermann's tortoise"),
        ("Pickle", "Dr. Amsel Korhonen"),
        ("Dr. Amsel Korhonen", "Brackenridge Exotic Pets"),
    ]
    # the entities named come first: a hop only fills the room they leave
    assert objects(graph.about("Pickle", limit=2)) == ["Hermann's tortoise", "Dr. Amsel Korhonen"]
