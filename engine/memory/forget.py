"""What Memex remembers about the user, in one list, and forgetting any of it for real.

The list (Forgetting.remembered): the lines of core memory (not the persona's), the graph's
facts that hold, and the archival passages the assistant or the memory review saved. Each
item says when it was saved, by whom, and the user's message it answered then (the user's
last message before it was saved: the one the step or review was reading).

Forgetting goes through each tier's own owner, so the indexes go with it:
- a core line: a versioned edit of its block (actor "forget:you"), which Undo can take back;
- a fact: deleted (it was not to be kept, so it is not merely ended);
- a passage: deleted with its words and vector;
- and, where asked, the message it came from: deleted from recall with its words and vector.
The assistant's copies of the words (the call that saved them, a search result or the listing
of a request to forget that showed them) say "[forgotten]" instead; the user's own messages
are theirs to delete.

The `forgotten` table (migration 7) is the audit: which tier, which row, how, when. It never
keeps the words: a log that did would keep what the user asked to forget.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import apsw
import numpy as np

from engine.memory.archival import ArchivalMemory, Passage
from engine.memory.core import NOT_ABOUT_THE_USER, BlockEdit, CoreMemory
from engine.memory.graph import Fact, KnowledgeGraph
from engine.memory.recall import RecallMemory
from engine.store.db import Store, now_iso
from engine.types import Message, Remembered

# How a request opens: "Please", "Can you", "Could you maybe", ...
_ASKING = (
    r"^\W*(?:(?:please|ok|okay|now)\W+)*(?:(?:can|could|would|will) you\W+)?"
    r"(?:(?:please|maybe|just|kindly|also)\W+)*"
)
# "Please forget that I have a sister", "Forget my old address", "can you forget about Bob?",
# "Stop remembering that I'm a nurse":
# a request to forget, not "don't forget ...", "did you forget ...?" or "I forgot ...".
_FORGET = re.compile(
    _ASKING + r"(?:forget|stop remembering)\b(?:\s+(?:about|that|what|all about))?\s*(?P<what>.*)$",
    re.IGNORECASE | re.DOTALL,
)
# "Erase what you know about Bob from your memory", "Could you wipe my sister from your notes?"
_ERASE = re.compile(
    _ASKING
    + r"(?:erase|delete|remove|wipe|drop)\s+(?P<what>.+?)\s+(?:from|out of)\s+(?:your\s+|my\s+)?"
    r"(?:memory|notes|records|mind)\W*$",
    re.IGNORECASE | re.DOTALL,
)
# A message that may ask to forget, in other words ("I'd rather you didn't keep anything about
# my sister", "could you maybe forget my address?"), not "before I forget, ...", "don't forget
# ...": the model is offered memory_forget, its core edits are refused, and a reply that says
# memory forgot is replaced by what memory keeps (MemGPTAgent).
_MAY_ASK = re.compile(
    r"(?:\b(?:you|please)\b[^.!?]{0,40}?|^\W*|[.!?]\s+)(?<!don't )(?<!do not )(?<!never )"
    r"(?<!not )(?<!won't )forget\b|\bstop remembering\b|\b(?:you|please)\b[^.!?]{0,20}?\b(?:do "
    r"not|don't|didn't|did not|not|no longer|never|stop) (?:need to |have to )?(?:keep|keeping|"
    r"store|storing|save|saving)\b|\b(?:erase|delete|remove|wipe|drop|clear)\b[^.!?]*\b(?:memory|"
    r"memories|notes|records|mind)\b",
    re.IGNORECASE,
)
# "I will remove this information from my memory", "I've deleted that from my records": what
# the 0.5B model answered such a message with, having called no tool that forgets.
_SAYS_FORGOTTEN = re.compile(
    r"\bI(?:'ll| will|'ve| have| am going to|'m going to)?\s+(?:now\s+)?(?:forget|forgotten|"
    r"remove|removed|delete|deleted|erase|erased|wipe|wiped|clear|cleared)\b[^.!?]*?\b(?:memory|"
    r"memories|records?|notes)\b|\bI(?:'ll| will)\s+(?:now\s+)?forget\b|\bI(?:'ll| will)?\s*"
    r"(?:won't|will not|no longer|not)\s+(?:keep|remember|store|save)\b",
    re.IGNORECASE,
)
# words of a request that say nothing of what to forget
_NOT_WHAT = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "i'm",
        "im",
        "me",
        "my",
        "mine",
        "you",
        "your",
        "it",
        "its",
        "that",
        "this",
        "these",
        "those",
        "about",
        "what",
        "all",
        "please",
        "have",
        "has",
        "had",
        "is",
        "are",
        "was",
        "were",
        "be",
        "do",
        "does",
        "did",
        "to",
        "of",
        "and",
        "or",
        "for",
        "with",
        "in",
        "on",
        "at",
        "now",
        "ever",
        "again",
        "anything",
        "everything",
        "something",
        "thing",
        "things",
        "said",
        "say",
        "told",
        "tell",
        "mentioned",
        "know",
        "knew",
        "remember",
        "remembered",
        "remembering",
        "keep",
        "rather",
        "stop",
        "erase",
        "delete",
        "remove",
        "wipe",
        "drop",
        "forget",
        "memory",
        "notes",
        "records",
        "don't",
        "didn't",
        "not",
        "no",
        "longer",
        "would",
        "could",
        "can",
        "i'd",
        "anymore",
    ]
)
MAX_CANDIDATES = 8
# Likeness (cosine of the embeddings) a remembered thing needs to be a candidate without a
# word in common with the request: this far above the median of all of them ("my job": "Works
# as a nurse" 0.56 among 0.41-0.48; "my old phone number": nothing above 0.49 among 0.41-0.46),
# and at least LIKENESS_FLOOR (with fewer than LIKENESS_SAMPLE items, no median: the floor).
LIKENESS_MARGIN = 0.06
LIKENESS_FLOOR = 0.5
LIKENESS_ALONE = 0.55
LIKENESS_SAMPLE = 3
FORGET_ACTOR = "forget:you"
FORGOTTEN_MARK = "[forgotten]"  # in the assistant's messages, for what the user had forgotten
SHOWN_PASSAGES = 500  # the newest; older ones are in the Archival panel's search
_SAVERS = {"consolidation": "memory review", "user": "you", "you": "you"}


@dataclass(frozen=True)
class ForgetRecord:
    """A line of the audit: something of `tier` (row `item_id`) was forgotten `how`, `at`."""

    tier: str
    item_id: int
    how: str
    at: dt.datetime


class Forgetting:
    """The Memory view's engine side, for one agent."""

    def __init__(
        self,
        store: Store,
        agent_id: int,
        core: CoreMemory,
        graph: KnowledgeGraph,
        archival: ArchivalMemory,
        recall: RecallMemory,
    ) -> None:
        self.store = store
        self.agent_id = agent_id
        self.core, self.graph, self.archival, self.recall = core, graph, archival, recall

    # -- the list ------------------------------------------------------------------------------
    def remembered(self) -> list[Remembered]:
        """Everything memory keeps about the user: core lines, facts that hold, then saved
        passages (newest SHOWN_PASSAGES)."""
        return [*self._core_lines(), *self._facts(), *self._passages()]

    def _core_lines(self) -> list[Remembered]:
        items = []
        for block in self.core.blocks():
            if block.label in NOT_ABOUT_THE_USER or block.read_only:
                continue
            history = self.core.history(block.label)  # read once for all the block's lines
            for line in _lines(block.value):
                at, actor = _line_saved(history, line)
                items.append(
                    Remembered(
                        "core", block.id, line, at, saver(actor), self._source(at), block.label
                    )
                )
        return items

    def _facts(self) -> list[Remembered]:
        facts = sorted((f for f in self.graph.all() if f.current), key=Fact.order)
        return [
            Remembered(
                "fact",
                f.id,
                f.render(),
                f.valid_from,
                saver(f.source),
                self._source(f.valid_from),
            )
            for f in facts
        ]

    def _passages(self) -> list[Remembered]:
        saved = [p for p in self.archival.recent(SHOWN_PASSAGES) if _saved_by_memory(p)]
        return [
            Remembered(
                "passage", p.id, p.text, p.created_at, saver(p.source), self._source(p.created_at)
            )
            for p in saved
        ]

    def _source(self, at: dt.datetime | None) -> Message | None:
        return None if at is None else self.recall.said_before(at)

    def candidates(self, what: str, limit: int = MAX_CANDIDATES) -> list[Remembered]:
        """What memory keeps that `what` names, best first: the items sharing the most of its
        words (a word and its plural alike), then those whose meaning stands out as close to
        it ("my job": "Works as a nurse at Mercy Hospital"); [] when none does."""
        wanted = _keywords(what)
        items = self.remembered()
        if not wanted or not items:
            return []
        likeness = self._likeness(what, items)
        if len(items) >= LIKENESS_SAMPLE:
            close = max(LIKENESS_FLOOR, float(np.median(likeness)) + LIKENESS_MARGIN)
        else:
            close = LIKENESS_ALONE
        scored = []
        for order, (item, like) in enumerate(zip(items, likeness, strict=True)):
            shared = len(wanted & _keywords(item.text))
            if shared or like >= close:
                scored.append((-shared, -like, order, item))
        return [item for *_, item in sorted(scored, key=lambda s: s[:3])][:limit]

    def _likeness(self, what: str, items: list[Remembered]) -> list[float]:
        """Each item's likeness in meaning to `what` (cosine): a passage by its stored vector,
        a core line or a fact embedded now (they are few; the embedder's vectors are of unit
        length)."""
        embedder = self.store.embedder
        query = embedder.embed_query(what)
        stored = self.archival.distances([i.item_id for i in items if i.tier == "passage"], query)
        missing = [i.text for i in items if i.tier != "passage" or i.item_id not in stored]
        made = iter(embedder.embed(missing) @ query if missing else [])
        return [
            1.0 - stored[i.item_id]
            if i.tier == "passage" and i.item_id in stored
            else float(next(made))
            for i in items
        ]

    # -- forgetting ----------------------------------------------------------------------------
    def forget(
        self, item: Remembered, with_message: bool = False, how: str = "memory view"
    ) -> None:
        """Forget `item` (see the module's words on each tier) and, with `with_message`, the
        user message it came from. KeyError when it is gone already (another edit took it).
        Memory's own copies of its words go too: the call that saved it, and a result or a
        listing that showed it, say FORGOTTEN_MARK instead (RecallMemory.redact)."""
        with self.store.atomic() as conn:
            if item.tier == "core":
                self._forget_line(item)
            elif item.tier == "fact":
                self.graph.delete(item.item_id)
            else:
                self.archival.delete(item.item_id)
            self.recall.redact(item.text, FORGOTTEN_MARK)
            self._log(conn, item.tier, item.item_id, how)
            if with_message and item.source is not None:
                try:
                    self.recall.delete(item.source.id)
                except KeyError:
                    pass  # gone already, with another thing the same message told
                else:
                    self._log(conn, "message", item.source.id, how)

    def _forget_line(self, item: Remembered) -> None:
        value = self.core[item.label]
        lines = value.split("\n")
        if item.text not in [line.strip() for line in lines]:
            raise KeyError(f"{item.label}: {item.text!r} is no longer there")
        index = [line.strip() for line in lines].index(item.text)
        self.core.set(item.label, "\n".join(lines[:index] + lines[index + 1 :]), FORGET_ACTOR)

    def _log(self, conn: apsw.Connection, tier: str, item_id: int, how: str) -> None:
        conn.execute(
            "INSERT INTO forgotten(agent_id, tier, item_id, how, at) VALUES (?, ?, ?, ?, ?)",
            (self.agent_id, tier, item_id, how, now_iso()),
        )

    def log(self) -> list[ForgetRecord]:
        """The audit, oldest first."""
        rows = self.store.query(
            "SELECT tier, item_id, how, at FROM forgotten WHERE agent_id = ? ORDER BY id",
            (self.agent_id,),
        )
        return [ForgetRecord(r[0], r[1], r[2], dt.datetime.fromisoformat(r[3])) for r in rows]


def _line_saved(history: list[BlockEdit], line: str) -> tuple[dt.datetime | None, str]:
    """When and by whom `line` came into its block: the latest edit of `history` that added it."""
    for edit in reversed(history):
        if line in _lines(edit.after) and line not in _lines(edit.before):
            return dt.datetime.fromisoformat(edit.created_at), edit.actor
    return None, ""  # there from the start (a template's text)


def asks_to_forget(text: str) -> str | None:
    """What a user message asks memory to forget ("that I have a sister"), or None when it
    does not ask that."""
    match = _FORGET.match(text.strip()) or _ERASE.match(text.strip())
    if match is None:
        return None
    what = re.sub(r"[\s,]*\bplease$", "", match.group("what").strip(" .!?"), flags=re.I)
    return what if _keywords(what) else None


def may_ask_to_forget(text: str) -> bool:
    """Whether a user message may ask memory to forget something, in any words."""
    return _MAY_ASK.search(text) is not None


def says_forgotten(reply: str) -> bool:
    """Whether a reply tells the user that memory forgot (or will forget) something."""
    return _SAYS_FORGOTTEN.search(reply) is not None


def _keywords(text: str) -> set[str]:
    words = re.findall(r"[\w']+", text.lower())
    return {_singular(w) for w in words if w not in _NOT_WHAT and len(w) > 1}


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def saver(actor: str) -> str:
    """Who saved something, in words: "the assistant" (its tool calls), "memory review", "you"."""
    if actor.startswith("tool:"):
        return "the assistant"
    return _SAVERS.get(actor, actor or "")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _saved_by_memory(passage: Passage) -> bool:
    """A passage the assistant or the review saved, not a part of a long message the engine
    filed (source "message:ID"), nor a document imported whole."""
    return passage.source.startswith("tool:") or passage.source == "consolidation"
