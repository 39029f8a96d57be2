"""Archival and recall search: hybrid BM25 + vectors, pagination, dates."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from engine.memory.archival import PASSAGE_INDEX, ArchivalMemory
from engine.memory.recall import MESSAGE_INDEX, RecallMemory, embedded_text
from engine.memory.search import (
    NEIGHBOUR_SHARES,
    TEXT_SHARE,
    fts_query,
    fuse,
    paginate,
    with_context,
)


def _agent(store) -> int:
    with store.atomic() as conn:
        conn.execute("INSERT INTO agents(name, persona_json, created_at) VALUES ('a', '{}', 'x')")
        agent_id = conn.last_insert_rowid()
        conn.execute("INSERT INTO sessions(agent_id, started_at) VALUES (?, 'x')", (agent_id,))
    return agent_id


def test_fts_query_is_safe_for_any_text() -> None:
    assert fts_query('AND OR "NEAR(" *') == '"and" OR "or" OR "near"'
    assert fts_query("!!!") is None
    assert fuse([1, 2, 3], [3, 1])[:2] == [1, 3]


def test_an_entry_gains_shares_of_its_neighbours_and_of_the_best_of_its_text() -> None:
    near, far = NEIGHBOUR_SHARES
    scores = {1: 0.5, 2: 0.1, 3: 0.2, 4: 0.05, 7: 0.3}
    boosted = with_context(scores, [[1, 2, 3, 4], [7]])
    # 2: the better of 1 and 3 beside it, 4 two places away
    two = 0.1 + near * 0.5 + far * 0.05
    one = 0.5 + near * 0.1 + far * 0.2
    assert boosted[2] == pytest.approx(two + TEXT_SHARE * one)  # 1 is the best of the text
    assert boosted[1] == pytest.approx(one + TEXT_SHARE * one)
    assert boosted[4] == pytest.approx(0.05 + near * 0.2 + far * 0.1 + TEXT_SHARE * one)
    assert boosted[7] == pytest.approx(0.3 * (1 + TEXT_SHARE))  # a text of its own
    assert with_context(scores, [[1, 2, 3, 4]])[7] == 0.3  # in no text


def test_a_reply_that_repeats_no_word_of_the_question_is_lifted_by_its_text() -> None:
    """The turn that answers (a name, said two turns after the one that matched) shares no
    word with the question; the turns of its talk that do lift it above a stray match."""
    scores = {10: 0.18, 12: 0.02, 40: 0.05}  # 10 matched; 12, two turns on, barely; 40 alone
    ranked = sorted(with_context(scores, [[10, 12], [40]]).items(), key=lambda kv: -kv[1])
    assert [item for item, _ in ranked] == [10, 12, 40]
    assert sorted(scores, key=lambda k: -scores[k]) == [10, 40, 12]


def test_passages_are_one_text_only_in_one_source_and_hour(store) -> None:
    archive = ArchivalMemory(store, _agent(store))
    noon = dt.datetime(2023, 5, 8, 12, 0, tzinfo=dt.UTC)
    turns = archive.insert_many(
        ["Ann: did you keep a tortoise?", "Ben: yes, Sheldon, for years."],
        source="chat",
        created_at=[noon, noon + dt.timedelta(minutes=1)],
    )
    other_source = archive.insert("Ben: a note of his own.", source="notes", created_at=noon)
    days_later = archive.insert_many(
        ["Ann: and now?", "Ben: still."],
        source="chat",
        created_at=[noon + dt.timedelta(days=2), noon + dt.timedelta(days=2, minutes=1)],
    )
    texts = PASSAGE_INDEX.texts(store, [*turns, other_source, *days_later])
    assert sorted(texts) == sorted([turns, [other_source], days_later])
    assert PASSAGE_INDEX.texts(store, [turns[1], other_source]) == [[turns[1]], [other_source]]


def test_messages_are_one_text_only_in_one_session_and_hour(store) -> None:
    agent_id = _agent(store)
    recall = RecallMemory(store, agent_id)
    noon = dt.datetime(2023, 5, 8, 12, 0, tzinfo=dt.UTC)
    with store.atomic() as conn:
        conn.execute("INSERT INTO sessions(agent_id, started_at) VALUES (?, 'x')", (agent_id,))
        other_session = conn.last_insert_rowid()

    def said(session: int, role: str, minutes: float) -> int:
        when = noon + dt.timedelta(minutes=minutes)
        return recall.add(session, role, "words", 1, created_at=when, in_context=False).id

    first, reply = said(1, "user", 0), said(1, "assistant", 1)
    elsewhere = said(other_session, "user", 2)
    next_day = said(1, "user", 24 * 60)
    texts = MESSAGE_INDEX.texts(store, [first, reply, elsewhere, next_day])
    assert sorted(texts) == sorted([[first, reply], [elsewhere], [next_day]])


def test_a_message_is_embedded_after_the_day_it_was_said(store) -> None:
    agent_id = _agent(store)
    recall = RecallMemory(store, agent_id)
    when = dt.datetime(2023, 5, 8, 23, 30, tzinfo=dt.UTC)
    message = recall.add(1, "user", "The kiln fired well.", 3, created_at=when)
    for words in ("kiln", "May", "8 May 2023"):  # its words are indexed beside its day
        assert MESSAGE_INDEX.text_hits_for(store, agent_id, words) == [message.id]
    assert embedded_text(message.search_text, when) == "[8 May 2023] The kiln fired well."
    assert embedded_text("The kiln fired well.", "no time") == "The kiln fired well."
    (blob,) = store.query_one("SELECT embedding FROM message_vectors WHERE id = ?", (message.id,))
    wanted = store.embedder.embed_one("[8 May 2023] The kiln fired well.")
    assert np.allclose(np.frombuffer(blob, dtype=np.float32), wanted, atol=1e-5)


def test_page_header() -> None:
    page = paginate(list(range(37)), 5, 0)
    assert page.header("passages") == "Showing 1-5 of 37 passages, page 1/8. More: page=1, limit=5."
    assert (
        paginate(list(range(37)), 5, 7).header("passages")
        == "Showing 36-37 of 37 passages, page 8/8."
    )
    assert "past the end" in paginate([1], 5, 3).header("passages")


def test_archival_hybrid_finds_by_meaning_and_by_word(store) -> None:
    archive = ArchivalMemory(store, _agent(store))
    texts = [
        "Alice recommended the requests library for HTTP calls in Python.",
        "The weather in Lisbon was sunny all week.",
        "Bob's cat is called Pixel and hates baths.",
        "Quarterly taxes are due on the fifteenth.",
    ]
    ids = archive.insert_many(texts, tags=["note"])
    page, hits = archive.search("which package should I use for web requests", limit=2)
    assert hits[0].id == ids[0]
    page, hits = archive.search("Pixel", limit=5)
    assert hits[0].id == ids[2]
    assert hits[0].tags == ["note"]


def test_archival_pagination_covers_every_match(store) -> None:
    archive = ArchivalMemory(store, _agent(store))
    archive.insert_many([f"meeting note number {i} about the garden" for i in range(12)])
    seen: list[int] = []
    page_no = 0
    while True:
        page, hits = archive.search("garden meeting", limit=5, page=page_no)
        seen += [h.id for h in hits]
        if page_no + 1 >= page.pages:
            break
        page_no += 1
    assert page.total == 12 and len(set(seen)) == 12


def test_recall_search_and_dates(store) -> None:
    agent_id = _agent(store)
    recall = RecallMemory(store, agent_id)
    recall.add(1, "user", "My sister Jane lives in Porto.", 10)
    recall.add(
        1,
        "assistant",
        '{"tool": "send_message"}',
        5,
        tool_call={"tool": "send_message", "arguments": {"message": "Porto is lovely!"}},
    )
    recall.add(1, "tool", '{"status": "OK"}', 3)
    page, hits = recall.search("where does my sister live")
    assert hits[0].content.startswith("My sister Jane")
    page, hits = recall.search("lovely")
    assert hits[0].search_text == "Porto is lovely!"
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    page, hits = recall.search_date(today, today + dt.timedelta(days=1))
    assert page.total == 2  # user and assistant messages, not tool results
    page, hits = recall.search_date(today - dt.timedelta(days=9), today - dt.timedelta(days=8))
    assert page.total == 0


def test_archival_update_reindexes_text_tags_and_vector(store) -> None:
    from engine.memory.archival import ArchivalMemory

    archival = ArchivalMemory(store, agent_id=_agent(store))
    pid = archival.insert("The user's bicycle is red", tags=["bike"])
    other = archival.insert("Unrelated note about taxes")
    updated = archival.update(pid, "The user's canoe is green", ["boat"])
    assert (updated.text, updated.tags) == ("The user's canoe is green", ["boat"])
    assert store.query("SELECT rowid FROM passages_fts WHERE passages_fts MATCH 'bicycle'") == []
    assert archival.search("canoe")[1][0].id == pid
    assert archival.search("boat")[1][0].id == pid
    assert [p.id for p in archival.recent(10)] == [other, pid]
    assert store.query_one("SELECT count(*) FROM passage_vectors")[0] == 2


def test_common_words_are_left_out_of_bm25_when_rarer_ones_are_there(store, monkeypatch) -> None:
    import engine.memory.search as search

    monkeypatch.setattr(search, "TEXT_DOCUMENT_BUDGET", 20)
    agent_id = _agent(store)
    archive = ArchivalMemory(store, agent_id)
    filler = [f"the meeting number {i} was about the budget" for i in range(40)]
    archive.insert_many([*filler, "the zebra escaped from the zoo"])
    words, rankable = search.selective_words(store, "passages_fts", ["the", "zebra", "budget"])
    assert (words, rankable) == (["zebra"], True)  # "budget" (40) would pass the budget
    text_hits = archival_text_hits(store, agent_id, "the zebra budget")
    assert [archive.get(i).text for i in text_hits] == ["the zebra escaped from the zoo"]


def test_a_query_of_common_words_only_finds_the_newest_documents_holding_them(
    store, monkeypatch
) -> None:
    import engine.memory.search as search

    monkeypatch.setattr(search, "TEXT_DOCUMENT_BUDGET", 5)
    monkeypatch.setattr(search, "TEXT_HITS", 3)
    agent_id = _agent(store)
    archive = ArchivalMemory(store, agent_id)
    ids = archive.insert_many([f"the note {i}" for i in range(10)])
    assert search.selective_words(store, "passages_fts", ["the"]) == (["the"], False)
    assert archival_text_hits(store, agent_id, "the") == ids[::-1][:3]


def archival_text_hits(store, agent_id: int, query: str) -> list[int]:
    from engine.memory.archival import PASSAGE_INDEX

    return PASSAGE_INDEX.text_hits_for(store, agent_id, query)


@pytest.mark.parametrize("which", ["minilm", "embedder"])
def test_a_vector_neighbour_past_the_embedders_own_threshold_is_no_match(
    request, tmp_path, which
) -> None:
    """Each embedder spreads its distances its own way (engine.store.profiles): with either,
    the text that answers is a match by meaning and an unrelated one is not, though both are
    among the nearest (nomic-embed's unrelated texts lie nearer than MiniLM's threshold)."""
    from engine.store.db import open_store

    embedder = request.getfixturevalue(which)
    store = open_store(tmp_path / f"{which}.db", embedder=embedder)
    try:
        archive = ArchivalMemory(store, _agent(store))
        sister, boiler = archive.insert_many(
            [
                "My sister Ingrid works as a vet in Stavanger.",
                "Invoice 4471: the boiler pressure valve was replaced on the 3rd.",
            ]
        )
        query = embedder.embed_query("What does my sister do for work?")
        nearest = PASSAGE_INDEX.vectors.nearest(store, archive.agent_id, query, 10)
        assert [i for i, _ in nearest] == [sister, boiler]
        assert PASSAGE_INDEX.vector_hits_for(store, archive.agent_id, query) == [sister]
        limit = embedder.profile.max_distance
        assert nearest[0][1] <= limit < nearest[1][1]
    finally:
        store.close()
