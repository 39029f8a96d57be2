"""Idle consolidation (the sleep-time pattern): review the messages since the last review and fold
what they tell into core memory, archival passages and graph facts, merging duplicates.

One review is one grammar-constrained model call per piece of conversation that fits the window:
the model lists lines for core sections, passages and facts (REVIEW_TITLE schema). The engine then
applies them through the same tool dispatch as the model's own calls (actor "consolidation", so
each core edit is in the block history like any other), after dropping what memory already holds:
a core line already in its section (same words, or the same meaning by embedding), a passage that
repeats one (the longer text is kept), a fact that already holds (engine.memory.graph). The mark of
what was reviewed (agents.reviewed_through) moves in the same transaction as the edits, so a
crash neither loses nor repeats a review.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import GenerationError
from engine.llm.base import LLMClient
from engine.memory.archival import PASSAGE_INDEX, ArchivalMemory
from engine.memory.core import CoreMemory
from engine.memory.forget import asks_to_forget
from engine.memory.graph import GraphError, KnowledgeGraph, parse_time
from engine.memory.recall import RecallMemory
from engine.store.db import Store
from engine.summarizer import transcript_line
from engine.tools.memory_tools import MemoryTool
from engine.types import ChatMessage, MemoryOperation, Message, ToolCall

logger = logging.getLogger(__name__)

REVIEW_TITLE = "memory_review"
REVIEW_REPLY_TOKENS = 600
REVIEW_LINE_CHARS = 8_000  # of one message; the piece is cut to the window anyway
SAME_PASSAGE_DISTANCE = 0.12  # cosine distance: a passage this close to one stored is a repeat
# ... and one this close that contains a stored passage's words is a fuller telling of it, which
# replaces it (closer alone is not enough: "a cat named Tom" and "a dog named Rex" are 0.29 apart)
SAME_TOPIC_DISTANCE = 0.3
MAX_KNOWN_FACTS = 20

REVIEW_SYSTEM = """\
You keep the long-term memory of {name}, an AI assistant. Read the new part of the conversation \
and write down what is worth remembering that memory does not hold yet:
- core: short lines about the user for a core memory section ("human"), in the third person.
- passages: details worth finding later (plans, stories, reasons), one topic each.
- facts: every (subject, relation, object) the conversation states, with the user's name as \
subject for facts about the user; relation in snake_case (works_at, works_as, lives_in, likes, \
sister_of); valid_from: the date it became true (YYYY-MM-DD) if said, else null; exclusive: false \
for relations that hold several objects at once (likes, knows).
Write nothing that memory already holds. Empty lists are fine. Today is {today}.
Example (its names are made up: never copy them). Conversation: "User: I'm Omar, a baker in \
Porto. I like chess." Review: {{"core": [{{"section": "human", "line": "Name: Omar. Baker in \
Porto. Likes chess."}}], "passages": [], "facts": [{{"subject": "Omar", "relation": \
"works_as", "object": "baker", "valid_from": null, "exclusive": true}}, {{"subject": "Omar", \
"relation": "lives_in", "object": "Porto", "valid_from": null, "exclusive": true}}, \
{{"subject": "Omar", "relation": "likes", "object": "chess", "valid_from": null, \
"exclusive": false}}]}}"""

REVIEW_REQUEST = """\
CORE MEMORY NOW:
{core}

FACTS KNOWN NOW:
{facts}

NEW CONVERSATION:
{transcript}"""


class _Cancelled(Exception):
    """The user stopped the review (the stop button during an idle turn)."""


class _CoreLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    section: str
    line: str = Field(max_length=300)


class _NewFact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(max_length=200)
    relation: str = Field(max_length=100)
    object: str = Field(max_length=200)
    valid_from: str | None = Field(default=None, max_length=32)
    exclusive: bool = True


class _Review(BaseModel):
    """One review as the model writes it (the grammar keeps it to review_schema)."""

    model_config = ConfigDict(extra="forbid")
    core: list[_CoreLine] = Field(max_length=5)
    passages: list[str] = Field(max_length=4)
    facts: list[_NewFact] = Field(max_length=8)


def review_schema(sections: list[str]) -> dict[str, Any]:
    """The JSON schema of one review; `sections` are the core sections it may add to."""
    text = {"type": "string", "minLength": 1}
    return {
        "title": REVIEW_TITLE,
        "type": "object",
        "properties": {
            "core": {
                "type": "array",
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "properties": {
                        "section": {"type": "string", "enum": sections},
                        "line": {**text, "maxLength": 300},
                    },
                    "required": ["section", "line"],
                    "additionalProperties": False,
                },
            },
            "passages": {"type": "array", "maxItems": 4, "items": {**text, "maxLength": 1000}},
            "facts": {
                "type": "array",
                "maxItems": 8,
                "items": {
                    "type": "object",
                    "properties": {
                        "subject": {**text, "maxLength": 200},
                        "relation": {**text, "maxLength": 100},
                        "object": {**text, "maxLength": 200},
                        "valid_from": {"type": ["string", "null"], "maxLength": 32},
                        "exclusive": {"type": "boolean"},
                    },
                    "required": ["subject", "relation", "object", "valid_from", "exclusive"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["core", "passages", "facts"],
        "additionalProperties": False,
    }


@dataclass
class ReviewResult:
    """What one consolidation did: the messages it read, and its changes to memory (also merged
    or skipped repeats, as operations that say so)."""

    first_message_id: int | None = None
    last_message_id: int | None = None
    operations: list[MemoryOperation] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def reviewed(self) -> bool:
        return self.last_message_id is not None


class Consolidator:
    """Reviews one agent's unreviewed messages with `llm` and applies what it finds."""

    def __init__(self, llm: LLMClient, agent_name: str, tools: MemoryTool) -> None:
        """`tools` are the agent's tools (and through them its memory tiers): every change a
        review makes goes through their dispatch, as the model's own calls do."""
        self.llm = llm
        self.agent_name = agent_name
        self.tools = tools
        self.core: CoreMemory = tools.core
        self.recall: RecallMemory = tools.recall
        self.archival: ArchivalMemory = tools.archival
        self.graph: KnowledgeGraph = tools.graph
        self.store: Store = tools.core.store
        self.agent_id = tools.core.agent_id

    # -- what is left to review --------------------------------------------------------------
    def reviewed_through(self) -> int:
        row = self.store.query_one(
            "SELECT reviewed_through FROM agents WHERE id = ?", (self.agent_id,)
        )
        return int(row[0]) if row else 0

    def pending(self) -> list[Message]:
        """Messages since the last review, when a user message is among them (a review of the
        assistant's own idle turns alone would learn nothing new)."""
        after = self.reviewed_through()
        rows = self.store.query(
            # an old version (a regenerated reply, an edited message) is not reviewed
            "SELECT id FROM messages WHERE agent_id = ? AND id > ? AND replaced = 0 ORDER BY id",
            (self.agent_id, after),
        )
        messages = [self.recall.get(r[0]) for r in rows]
        return messages if any(m.role == "user" for m in messages) else []

    def user_turns_pending(self) -> int:
        row = self.store.query_one(
            "SELECT count(*) FROM messages WHERE agent_id = ? AND id > ? AND role = 'user'",
            (self.agent_id, self.reviewed_through()),
        )
        return int(row[0]) if row else 0

    # -- the review --------------------------------------------------------------------------
    def run(
        self,
        cancel: threading.Event | None = None,
        on_piece: Callable[[int, int], None] | None = None,
    ) -> ReviewResult:
        """Review every pending message, a window-sized piece at a time. `cancel`, when set,
        stops the review after the piece being read (its model call is cut short and the
        piece stays unreviewed). `on_piece(done, total)` hears, before each piece, how many
        of the pending messages were read."""
        result = ReviewResult()
        messages = self.pending()
        total = len(messages)
        while messages and not (cancel is not None and cancel.is_set()):
            if on_piece is not None:
                on_piece(total - len(messages), total)
            lines = [
                (m, line)
                for m in _without_requests_to_forget(messages)
                if (line := transcript_line(m, self.agent_name, REVIEW_LINE_CHARS))
            ]
            count = self._fitting(lines) if lines else 0
            piece = lines[:count]
            last = piece[-1][0] if piece else messages[-1]
            try:
                review = (
                    self._ask(piece, cancel) if piece else _Review(core=[], passages=[], facts=[])
                )
            except _Cancelled:
                return result
            except GenerationError as exc:
                logger.warning("memory review failed: %s", exc)
                result.failures.append(
                    f"The memory review failed ({exc}); it is tried again later."
                )
                return result
            with self.store.atomic() as conn:
                result.operations += self._apply(review, piece, last.created_at)
                conn.execute(
                    "UPDATE agents SET reviewed_through = ? WHERE id = ?",
                    (last.id, self.agent_id),
                )
            result.first_message_id = result.first_message_id or messages[0].id
            result.last_message_id = last.id
            messages = [m for m in messages if m.id > last.id]
        return result

    def _ask(self, lines: list[tuple[Message, str]], cancel: threading.Event | None) -> _Review:
        prompt = self._prompt(lines)
        on_text = None if cancel is None else (lambda _piece: not cancel.is_set())
        completion = self.llm.complete(prompt, self._schema(), REVIEW_REPLY_TOKENS, on_text)
        if completion.finish_reason == "cancelled":
            raise _Cancelled
        try:
            return _Review.model_validate(json.loads(completion.text))
        except (ValueError, ValidationError) as exc:
            # Only a reply cut off by the token limit gets here (the grammar shapes the rest).
            raise GenerationError(f"the review could not be read: {str(exc)[:200]}") from exc

    def _schema(self) -> dict[str, Any]:
        sections = [b.label for b in self.core.blocks() if not b.read_only]
        return review_schema(sections or ["human"])

    def _prompt(self, lines: list[tuple[Message, str]]) -> list[ChatMessage]:
        transcript = "\n".join(f"[{m.created_at:%Y-%m-%d}] {line}" for m, line in lines)
        facts = self._known_facts(transcript)
        system = REVIEW_SYSTEM.format(
            name=self.agent_name, today=dt.datetime.now(dt.UTC).date().isoformat()
        )
        request = REVIEW_REQUEST.format(
            core=self.core.render(),
            facts="\n".join(f"- {f.render()}" for f in facts) or "(none)",
            transcript=transcript,
        )
        return [ChatMessage("system", system), ChatMessage("user", request)]

    def _known_facts(self, transcript: str) -> list[Any]:
        return self.graph.about(transcript[-2000:], MAX_KNOWN_FACTS)

    def _fits(self, lines: list[tuple[Message, str]]) -> bool:
        tokens = self.llm.count_tokens(self._prompt(lines))
        return tokens + REVIEW_REPLY_TOKENS <= self.llm.context_window

    def _fitting(self, lines: list[tuple[Message, str]]) -> int:
        """How many lines fit one call (binary search: a count renders the whole prompt); a
        first line too long for a call alone is cut until it fits."""
        message, line = lines[0]
        while not self._fits([(message, line)]) and len(line) > 200:
            line = line[: len(line) // 2]
            lines[0] = (message, line + " [...]")
        low, high = 1, len(lines)
        while low < high:
            middle = (low + high + 1) // 2
            if self._fits(lines[:middle]):
                low = middle
            else:
                high = middle - 1
        return low

    # -- applying ----------------------------------------------------------------------------
    def _apply(
        self, review: _Review, piece: list[tuple[Message, str]], said_at: dt.datetime
    ) -> list[MemoryOperation]:
        done: list[MemoryOperation] = []
        before = len(self.tools.operations)
        known = self.core.render()
        for item in review.core:
            if _names_stated(item.line, piece, known, done):
                self._add_core_line(item.section, item.line.strip(), done)
        for text in review.passages:
            if _names_stated(text, piece, known, done):
                self._add_passage(text.strip(), done)
        for fact in review.facts:
            triple = f"{fact.subject} {fact.relation} {fact.object}"
            if not _stated(fact.object, piece, known):
                # small models copy the prompt's example ("lives_in Porto"): what the
                # conversation never names is not stored
                done.append(_kept("graph_insert", f"not in the conversation, skipped: {triple}"))
                continue
            self._dispatch(
                "graph_insert",
                subject=fact.subject,
                relation=fact.relation,
                object=fact.object,
                valid_from=_valid_from(fact, piece, said_at),
                exclusive=fact.exclusive,
            )
        done += self.tools.operations[before:]
        del self.tools.operations[before:]
        return done

    def _dispatch(self, tool: str, **arguments: Any) -> bool:
        result = self.tools.dispatch(ToolCall(tool, arguments), actor="consolidation")
        return result.ok

    def _add_core_line(self, section: str, line: str, done: list[MemoryOperation]) -> None:
        if not line:
            return
        action, old = _line_action(self.core.get(section, ""), line)
        if action == "already":
            done.append(_kept("core_memory_append", f"already in {section}: {line}"))
            return
        if action == "replace" and self._dispatch(
            "core_memory_replace", section=section, old_content=old, new_content=line
        ):
            return
        if not self._dispatch("core_memory_append", section=section, content=line):
            # no room left in the section (or no such section): kept as a passage instead
            self._add_passage(line, done)

    def _add_passage(self, text: str, done: list[MemoryOperation]) -> None:
        if not text:
            return
        nearest = self._nearest_passage(text)
        if nearest is not None:
            twin, distance = nearest
            old = self.archival.get(twin)
            if _folded(old.text) in _folded(text):  # a fuller telling: it replaces the old
                if _folded(old.text) != _folded(text):
                    self.archival.update(twin, text, old.tags)
                    done.append(
                        MemoryOperation(
                            "archival_memory_insert", f"merged into passage {twin}: {text[:80]}"
                        )
                    )
                    return
                distance = 0.0
            if distance <= SAME_PASSAGE_DISTANCE:
                done.append(
                    _kept("archival_memory_insert", f"already in passage {twin}: {text[:80]}")
                )
                return
        self._dispatch("archival_memory_insert", content=text, tags=["review"])

    def _nearest_passage(self, text: str) -> tuple[int, float] | None:
        """The stored passage closest in meaning, if any is close enough to be the same topic."""
        vector = self.store.embedder.embed_one(text)
        nearest = PASSAGE_INDEX.vectors.nearest(self.store, self.agent_id, vector, 1)
        if nearest and nearest[0][1] <= SAME_TOPIC_DISTANCE:
            return nearest[0]
        return None


NEGATIONS = frozenset({"not", "no", "never", "nor", "none", "nobody", "nothing", "t"})


def _without_requests_to_forget(messages: list[Message]) -> list[Message]:
    """The messages a review reads: not a user's request to forget and the turn that answered
    it. Reading "Please forget that I have a sister" and the reply that listed what memory
    kept, a review saved the sister again, and the request itself into core memory."""
    kept: list[Message] = []
    turn: list[Message] = []
    skip = False
    for message in messages:
        if message.role == "user":
            kept += [] if skip else turn
            turn, skip = [], asks_to_forget(message.content) is not None
        elif (message.tool_call or {}).get("tool") == "memory_forget":
            skip = True  # the model took it for a request to forget (words asks_to_forget missed)
        turn.append(message)
    return kept + ([] if skip else turn)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())  # "isn't" gives isn, t: "t" counts as a "not"


def _within(outer: list[str], inner: list[str]) -> bool:
    """Whether `inner` is a run of consecutive words of `outer`."""
    n = len(inner)
    return any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def _line_action(value: str, line: str) -> tuple[str, str | None]:
    """What a review's new core line does to a section: "already" (a line there says it, or
    says more), "replace" (it says more than a line there, or takes back a "not": the old line
    is replaced by it), or "append". By words, not by meaning: "Likes coffee" and "Dislikes
    coffee" are different lines (an embedding finds them 0.9 alike)."""
    new = _words(line)
    for old_line in value.splitlines():
        old = _words(old_line)
        if not old:
            continue
        if old == new:
            return "already", old_line
        if _within(new, old):
            return "replace", old_line  # "Lives in Paris" -> "Lives in Paris, Texas"
        if _within(old, new):
            extra = set(old) - set(new)
            # "Not allergic to peanuts" told "Allergic to peanuts": the newer line wins
            return ("replace", old_line) if extra & NEGATIONS else ("already", old_line)
    return "append", None


def _kept(tool: str, summary: str) -> MemoryOperation:
    """What a review left as it was (a repeat, or a fact the conversation never stated)."""
    return MemoryOperation(tool, summary, changed=False)


def _folded(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".")


_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'-]+")  # capitalised, not starting a sentence


def _names_stated(
    text: str, piece: list[tuple[Message, str]], known: str, done: list[MemoryOperation]
) -> bool:
    """Whether the names in a review's line (capitalised words inside a sentence) are in the
    conversation or core memory; a line naming what neither holds is skipped."""
    missing = [n for n in _NAME.findall(text.strip()) if not _stated(n, piece, known)]
    if missing:
        done.append(_kept("archival_memory_insert", f"not in the conversation, skipped: {text}"))
    return not missing


def _stated(name: str, piece: list[tuple[Message, str]], known: str) -> bool:
    """Whether every word of `name` is in the conversation read (or in core memory)."""
    words = set(_words(name))
    said = set(_words(" ".join(line for _, line in piece) + " " + known))
    return bool(words) and words <= said


def _valid_from(fact: _NewFact, piece: list[tuple[Message, str]], said_at: dt.datetime) -> str:
    """The model's date when it is one; else when the conversation said it: the time of the
    latest message that names the object (or the subject), else of the piece's last one."""
    if fact.valid_from:
        try:
            parse_time(fact.valid_from)
            return fact.valid_from
        except GraphError:
            pass  # "last spring" and the like
    for name in (fact.object, fact.subject):
        words = _words(name)
        for message, line in reversed(piece):
            if words and _within(_words(line), words):
                return message.created_at.isoformat()
    return said_at.isoformat()
