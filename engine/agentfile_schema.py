"""The Memex agent file, version 1, as typed models: what an import accepts.

A file is data from outside (hand-edited, from another machine, damaged): every value is checked
here, before anything reaches the database, against what the engine's own API would accept:
times are ISO 8601 and are stored as UTC, block labels are words, relations are normalised,
entity names are not empty, numbers are in range, a tool call is {"tool": str, "arguments":
{...}}. `AgentFileV1.model_validate(data)` raises pydantic's ValidationError naming the place.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from engine.memory.core import CoreMemoryError, check_label
from engine.memory.graph import MAX_NAME_CHARS, GraphError, clean_entity_name, clean_relation

FORMAT = "memex-agent"
FORMAT_VERSION = 1
MAX_CHARS = 10_000_000  # no text in an agent file is longer (a block's limit neither)


def _utc_stamp(value: str) -> str:
    """An ISO 8601 time as the store keeps it: UTC, microseconds (a time without a zone is
    UTC, as the store writes them)."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")
    except (ValueError, OverflowError):
        raise ValueError(
            f"{value!r} is not an ISO 8601 time like 2026-03-01T09:30:00+00:00"
        ) from None


def _label(value: str) -> str:
    try:
        return check_label(value)
    except CoreMemoryError as exc:
        raise ValueError(str(exc)) from None


def _relation(value: str) -> str:
    try:
        return clean_relation(value)
    except GraphError as exc:
        raise ValueError(str(exc)) from None


def _entity(value: str) -> str:
    try:
        return clean_entity_name(value)
    except GraphError as exc:
        raise ValueError(str(exc)) from None


def _tool_call(value: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value.get("tool"), str) or not isinstance(value.get("arguments"), dict):
        raise ValueError('a tool call is {"tool": name, "arguments": {...}}')
    return value


Stamp = Annotated[str, AfterValidator(_utc_stamp)]
Text = Annotated[str, Field(max_length=MAX_CHARS)]
Id = Annotated[int, Field(ge=0, le=2**62)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PersonaDoc(_Doc):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Text
    traits: list[Annotated[str, Field(max_length=200)]] = []


class AgentDoc(_Doc):
    name: Annotated[str, Field(max_length=200)]
    persona: PersonaDoc
    model_settings: dict[str, Any] = {}
    created_at: Stamp
    last_user_message_at: Stamp | None = None
    reviewed_through: Id = 0


class EditDoc(_Doc):
    before: Text
    after: Text
    actor: Annotated[str, Field(max_length=200)]
    agent: str | None = None
    created_at: Stamp
    undone: bool = False


class BlockDoc(_Doc):
    label: Annotated[str, AfterValidator(_label)]
    value: Text
    limit: Annotated[int, Field(ge=1, le=MAX_CHARS)]
    description: Text = ""
    read_only: bool = False
    created_at: Stamp | None = None
    updated_at: Stamp | None = None
    shared_with: list[str] = []
    history: list[EditDoc] = []


class SessionDoc(_Doc):
    id: Id
    started_at: Stamp


class MessageDoc(_Doc):
    id: Id
    session_id: Id | None = None
    role: Literal["system", "user", "assistant", "tool"]
    content: Text
    search_text: Text = ""
    tool_call: Annotated[dict[str, Any], AfterValidator(_tool_call)] | None = None
    tool_result: dict[str, Any] | None = None
    token_count: Annotated[int, Field(ge=0, le=10**9)]
    created_at: Stamp
    in_context: bool = False
    embedding: str | None = None


class SummaryDoc(_Doc):
    id: Id
    text: Text
    first_message_id: Id
    last_message_id: Id
    previous_id: Id | None = None
    model: str = ""
    created_at: Stamp


class PassageDoc(_Doc):
    id: Id
    text: Text
    tags: list[Annotated[str, Field(max_length=200)]] = []
    source: str = ""
    embedding_model: str | None = None
    created_at: Stamp
    embedding: str | None = None


class FactDoc(_Doc):
    id: Id
    subject: Annotated[str, Field(max_length=4 * MAX_NAME_CHARS), AfterValidator(_entity)]
    relation: Annotated[str, Field(max_length=200), AfterValidator(_relation)]
    object: Annotated[str, Field(max_length=4 * MAX_NAME_CHARS), AfterValidator(_entity)]
    exclusive: bool = True
    valid_from: Stamp
    valid_to: Stamp | None = None
    ended_by: Id | None = None
    source: str = ""
    created_at: Stamp | None = None


class AgentFileV1(_Doc):
    format: Literal["memex-agent"]
    version: StrictInt
    memex_version: str = ""
    exported_at: str = ""
    message_embedding_model: str | None = None
    agent: AgentDoc
    blocks: list[BlockDoc]
    sessions: list[SessionDoc] = []
    messages: list[MessageDoc] = []
    summaries: list[SummaryDoc] = []
    passages: list[PassageDoc] = []
    facts: list[FactDoc] = []
