"""Automatic page-in: what memory holds about a user message, found before the model answers.

A small model rarely thinks to search. So before it answers a user message, the engine runs the
same hybrid search its tools run, over the three tiers at once, and shows the best hits as a
note right after the message (placed before it, the note did worse: bench/memory_qa.py):

- recall: past messages that are out of view (what is in view the model reads already), each
  with the other half of its exchange (a question's reply, a reply's question), since the
  answer is often the reply to the message that matched;
- archival passages;
- graph facts that hold now about the names in the message.

Hits are dated (a relative date in one, "yesterday", is followed by the day it meant:
engine.memory.when), and marked with who said them, so "what did you recommend" finds the
assistant's own words. The note is a stored message, so the prompt cache keeps working (the
system message does not change) and the transcript shows what the model saw. How many tokens it
may take is the context's decision (engine.context.Budget.page_in_tokens).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from itertools import zip_longest
from typing import Literal

from engine.memory.archival import ArchivalMemory
from engine.memory.graph import KnowledgeGraph
from engine.memory.recall import RecallMemory
from engine.memory.when import day, resolve_relative_dates
from engine.types import Message

PAGE_IN_PREFIX = "[memory]"
# The best of the tiers, taken in turn; the note's token budget may drop the last ones (the
# reading, engine.reading, reads them all). On LoCoMo an evidence turn is among the search's
# best 8 for 79% of questions, its best 12 for 85%; but the 1.5B model reading 12 scored no
# better than reading 8 (F1 0.400 against 0.409, BENCHMARKS.md), 1.5 s slower.
HITS = 8
FACTS = 3
HIT_CHARS = 300  # one message or passage, cut past this
PAIR_CHARS = 200  # the other half of an exchange, cut past this

Source = Literal["conversation", "archival", "fact"]


@dataclass(frozen=True)
class Recalled:
    """One thing memory holds that bears on the message, as the note shows it."""

    source: Source
    when: dt.datetime | None
    text: str
    in_view: bool = False  # a message the model sees already: for the reading, not the note

    def render(self) -> str:
        if self.when is None:
            return f"[{self.source}] {self.text}"
        text = resolve_relative_dates(self.text, self.when)
        return f"[{day(self.when)}, {self.source}] {text}"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


USER = "user"
YOU = "you (assistant)"  # a small model reading "you: ..." lines took them for the user's words


def _speaker(message: Message) -> str:
    return USER if message.role == "user" else YOU


class PageIn:
    """Finds what the tiers of one agent hold about a message (see the module's docstring)."""

    def __init__(
        self, recall: RecallMemory, archival: ArchivalMemory, graph: KnowledgeGraph
    ) -> None:
        self.recall = recall
        self.archival = archival
        self.graph = graph

    def find(
        self, text: str, limit: int = HITS, in_view: bool = False, asked: int | None = None
    ) -> list[Recalled]:
        """The best `limit` hits for `text`, best first: the tiers' best in turn (a tier with
        few hits leaves its places to the other), then facts. Messages in view are among them
        only with `in_view` (for the reading); `asked` is the id of the message that asks."""
        conversation = self._conversation(text, limit, in_view, asked)
        passages = self._passages(text, limit)
        hits = [h for pair in zip_longest(conversation, passages) for h in pair if h is not None]
        hits = hits[:limit]
        hits += [Recalled("fact", None, f.render()) for f in self.graph.about(text, FACTS)]
        return hits

    def _conversation(
        self, text: str, limit: int, in_view: bool, asked: int | None
    ) -> list[Recalled]:
        hits: list[Recalled] = []
        shown: set[int] = set() if asked is None else {asked}
        for message_id in self.recall.ranked(text):
            if len(hits) == limit:
                break
            if message_id in shown:
                continue
            message = self.recall.get(message_id)
            if message.in_context and not in_view:
                continue  # the model reads it already
            if _memory_edit(message):
                continue  # what the model wrote into memory: the tiers show it, not as a reply
            other = self.recall.exchange_partner(message)
            if other is not None and other.id == asked:
                other = None  # the message that asks is no record of its own answer
            shown.update(m.id for m in (message, other) if m is not None)
            hits.append(
                Recalled(
                    "conversation",
                    message.created_at,
                    _exchange(message, other),
                    in_view=message.in_context,
                )
            )
        return hits

    def _passages(self, text: str, limit: int) -> list[Recalled]:
        ranked = self.archival.ranked(text)
        _, passages = self.archival.page_of(ranked, limit, 0)
        return [Recalled("archival", p.created_at, _clip(p.text, HIT_CHARS)) for p in passages]


def _memory_edit(message: Message) -> bool:
    """Whether `message` is one of the model's tool calls other than a reply to the user."""
    return message.tool_call is not None and message.tool_call.get("tool") != "send_message"


def _exchange(message: Message, other: Message | None) -> str:
    """The message that matched and the other half of its exchange, in the order said."""
    first, second = (message, other) if other is None or other.id > message.id else (other, message)
    text = f"{_speaker(first)}: {_clip(first.search_text or first.content, HIT_CHARS)}"
    if second is not None:
        text += f" / {_speaker(second)}: {_clip(second.search_text or second.content, PAIR_CHARS)}"
    return text


def latest_note(in_view: list[Message]) -> str:
    """The page-in note of the latest user message among `in_view` (oldest first), or ""."""
    asked = max((m.id for m in in_view if m.role == "user"), default=0)
    return next(
        (
            m.content
            for m in in_view
            if m.id > asked and m.role == "system" and m.content.startswith(PAGE_IN_PREFIX)
        ),
        "",
    )


def users_words(note: str) -> list[str]:
    """What a page-in note quotes of the user: the user's half of each exchange, and the
    passages (the user's notes, most often); not the assistant's own past replies."""
    words: list[str] = []
    for line in note.splitlines()[1:-1]:
        _, _, text = line.partition("] ")
        for part in text.split(" / "):
            if part.startswith(f"{YOU}:"):
                continue
            words.append(part.removeprefix(f"{USER}:").strip())
    return words


def fit_note(
    hits: list[Recalled],
    fits: Callable[[str], bool],
    reading: str | None = None,
    request: bool = False,
) -> tuple[list[Recalled], str] | None:
    """The note for as many of `hits` (best first) as `fits` allows, with the hits it shows;
    None if not even one fits. `reading` is what the reading call (engine.reading) answered
    from them for the user's question: "" where it found no answer, None where none was made.
    A reading is noted even with no hit to show: the model sees the records it read already
    (all in view), but not what the reading made of them. `request`: the message asks for
    help or advice (engine.reading.asks_for_help), so memory not answering it is no reason to
    say "I don't know"."""
    # ... but not a request's "nothing found": noted with no hit, "Which library would you
    # recommend?" had the model ask it back ("Which Python library would you recommend?")
    least = 0 if reading is not None and (reading or not request) else 1
    for count in range(len(hits), least - 1, -1):
        note = _note(hits[:count], reading, request)
        if fits(note):
            return hits[:count], note
    return None


def _note(hits: list[Recalled], reading: str | None, request: bool = False) -> str:
    if hits:
        lines = [
            f"{PAGE_IN_PREFIX} Found in your memory for the user's message (best match first; "
            "some may be unrelated):"
        ]
        lines += [f"{i}. {hit.render()}" for i, hit in enumerate(hits, 1)]
    else:
        lines = [
            f"{PAGE_IN_PREFIX} Memory holds nothing for the user's message beyond the "
            "conversation in view."
        ]
    if reading:
        lines.append(
            f"Read from memory, the answer to the user's question is: {reading}. "
            "Reply with just that answer, as the assistant."
        )
    elif reading is not None and request:
        # Told it may not know, the model answered "Which library would you recommend?" with
        # "I'm not sure which Python library would be best".
        lines.append(
            "Memory holds nothing that answers the user's message, and it asks for help: help "
            "as the assistant."
        )
    elif reading is not None:
        # Told only "otherwise say you don't know", the model declined requests for help as
        # well ("How do I find public chargers?" -> "I can't assist with that").
        lines.append(
            "Read with core memory, memory does not answer the user's question. If it asks for "
            "help or for what anyone may know, help as usual; if it asks about the user's own "
            "life or your past conversations, say you don't know."
        )
    else:
        lines.append(
            "Answer the user's message as the assistant, in a few words. Use these where they "
            "hold the answer (when two disagree, the later one holds); if neither they nor core "
            "memory do, say you don't know."
        )
    return "\n".join(lines)
