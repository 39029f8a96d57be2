"""The conversation as a person reads it: stored messages turned into chat entries.

The model's replies are JSON tool calls and every call has a tool message after it; a person wants
to see the messages to them, what each call did to memory in one line, the idle turns, and where
old messages left the window. A GUI or a terminal renders these entries; the same entries come
live from a step's events (see engine.types.StepEvent).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from engine.context import HEARTBEAT_PREFIX, HINT_PREFIX, REVIEW_PREFIX
from engine.memory.page_in import PAGE_IN_PREFIX
from engine.memory.recall import RecallMemory
from engine.memory.summaries import SummaryLog
from engine.types import Message

EntryKind = Literal["user", "assistant", "operation", "heartbeat", "note", "pageout"]


@dataclass(frozen=True)
class TranscriptEntry:
    kind: EntryKind
    text: str
    created_at: dt.datetime
    message_id: int | None = None
    detail: str = ""  # shown on demand: a tool's full result, a page-out's summary
    ok: bool = True


@dataclass(frozen=True)
class TranscriptPage:
    """A page of the transcript: its entries, the id of its first stored message (the
    `before_id` of the page before it) and whether older messages exist."""

    entries: list[TranscriptEntry]
    first_message_id: int | None
    has_earlier: bool


def transcript(
    recall: RecallMemory, summaries: SummaryLog, limit: int = 200, before_id: int | None = None
) -> TranscriptPage:
    """Entries for the newest `limit` stored messages (before `before_id`), oldest first, with
    a page-out entry where each summary was written."""
    messages = recall.recent(limit, before_id)
    while messages and messages[0].role == "tool":
        messages.pop(0)  # the result of a call on the page before: it goes with its call
    first = messages[0].id if messages else None
    has_earlier = first is not None and bool(recall.recent(1, first))
    return TranscriptPage(_entries(messages, summaries, before_id), first, has_earlier)


def _entries(
    messages: list[Message], summaries: SummaryLog, before_id: int | None
) -> list[TranscriptEntry]:
    entries = _message_entries(messages)
    if messages:
        start = messages[0].created_at
        end = messages[-1].created_at if before_id is not None else None
        entries += [
            pageout_entry(s.text, s.created_at)
            for s in summaries.all()
            if s.created_at >= start and (end is None or s.created_at <= end)
        ]
    # stable: a page-out written at the same instant as a message comes after it
    return sorted(entries, key=lambda e: e.created_at)


def pageout_entry(summary: str | None, at: dt.datetime) -> TranscriptEntry:
    """The divider of a page-out. It names no message numbers: those are rows of the file
    (tool results and notes among them), not what a person counts as messages."""
    text = (
        "Earlier messages left the context window; a summary stands for them, and they stay "
        "searchable."
    )
    return TranscriptEntry("pageout", text, at, detail=summary or "(summary pending)")


def _message_entries(messages: list[Message]) -> list[TranscriptEntry]:
    results = {m.id: m for m in messages if m.role == "tool"}
    entries: list[TranscriptEntry] = []
    for index, m in enumerate(messages):
        if m.replaced:
            continue  # an old version (regenerated or edited): in recall, not in the chat
        if m.role == "system" and m.content.startswith(HINT_PREFIX):
            continue  # a word to the model (engine.agent FORGET_OFFER), not to the user
        if m.role == "user":
            entries.append(TranscriptEntry("user", m.content, m.created_at, m.id))
        elif m.role == "system" and m.content.startswith(REVIEW_PREFIX):
            summary, _, changes = m.content[len(REVIEW_PREFIX) :].strip().partition(":\n")
            text = f"memory review of {summary}"
            entries.append(TranscriptEntry("operation", text, m.created_at, m.id, changes))
        elif m.role == "system" and m.content.startswith(PAGE_IN_PREFIX):
            found = sum(1 for line in m.content.splitlines() if line[:1].isdigit())
            text = f"found in memory for this message: {found} item{'s' if found != 1 else ''}"
            entries.append(TranscriptEntry("operation", text, m.created_at, m.id, m.content))
        elif m.role == "system":
            kind: EntryKind = "heartbeat" if m.content.startswith(HEARTBEAT_PREFIX) else "note"
            entries.append(TranscriptEntry(kind, m.content, m.created_at, m.id))
        elif m.role == "assistant":
            following = messages[index + 1] if index + 1 < len(messages) else None
            result = following if following is not None and following.id in results else None
            entries.append(_call_entry(m, result))
    return entries


def _call_entry(reply: Message, result: Message | None) -> TranscriptEntry:
    outcome = (result.tool_result if result is not None else None) or {}
    ok = outcome.get("status", "OK") == "OK"
    call = reply.tool_call
    if call is None:
        return TranscriptEntry(
            "operation", "a reply the engine could not read", reply.created_at, reply.id,
            detail=str(outcome.get("message", reply.content)), ok=False,
        )  # fmt: skip
    if call.get("tool") == "send_message" and ok:
        text = str(call.get("arguments", {}).get("message", ""))
        return TranscriptEntry("assistant", text, reply.created_at, reply.id)
    summary = outcome.get("operation") or f"{call.get('tool')}: {outcome.get('status', '?')}"
    detail = str(outcome.get("message", ""))
    return TranscriptEntry("operation", str(summary), reply.created_at, reply.id, detail, ok)
