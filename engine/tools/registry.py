"""The tools the model may call: argument models, JSON schemas, descriptions, validation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.types import ToolSpec

MAX_TEXT = 100_000  # no single argument may be larger than this many characters


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SendMessageArgs(_Args):
    message: str = Field(description="The text to show the user.", max_length=MAX_TEXT)


class CoreMemoryAppendArgs(_Args):
    section: str = Field(description="Core memory section (block label), e.g. 'human'.")
    content: str = Field(description="Text to add on a new line.", max_length=MAX_TEXT)


class CoreMemoryReplaceArgs(_Args):
    section: str = Field(description="Core memory section (block label).")
    old_content: str = Field(description="Exact text to replace; must occur once.")
    new_content: str = Field(
        description="Replacement text; empty string deletes.", max_length=MAX_TEXT
    )


class ArchivalMemoryInsertArgs(_Args):
    content: str = Field(description="The passage to store for later.", max_length=MAX_TEXT)
    tags: list[str] | None = Field(default=None, description="Optional tags.", max_length=20)


class SearchArgs(_Args):
    query: str = Field(description="What to look for (words or a sentence).", max_length=2000)
    limit: int = Field(default=5, ge=1, le=20, description="Results per page.")
    page: int = Field(default=0, ge=0, le=1000, description="Page number, from 0.")


class DateSearchArgs(_Args):
    start_date: str = Field(description="First day, YYYY-MM-DD.", max_length=32)
    end_date: str = Field(description="Last day (included), YYYY-MM-DD.", max_length=32)
    limit: int = Field(default=5, ge=1, le=20, description="Results per page.")
    page: int = Field(default=0, ge=0, le=1000, description="Page number, from 0.")


class GraphInsertArgs(_Args):
    subject: str = Field(description="Who or what the fact is about, e.g. 'Alice'.", max_length=200)
    relation: str = Field(description="How they relate, e.g. 'works_at'.", max_length=100)
    object: str = Field(description="The other side, e.g. 'Acme'.", max_length=200)
    valid_from: str | None = Field(
        default=None,
        description="When it became true (YYYY-MM-DD, YYYY-MM or YYYY); null: now.",
        max_length=32,
    )
    exclusive: bool = Field(
        default=True,
        description="true: one object at a time (works_at, lives_in), so a new one ends the old "
        "fact; false: several at once (likes, knows). A relation keeps what its first fact said.",
    )


class GraphSearchArgs(_Args):
    entity: str = Field(description="The name to look up, e.g. 'Alice'.", max_length=200)
    relation: str | None = Field(
        default=None, description="Only this relation, e.g. 'works_at'.", max_length=100
    )
    at: str | None = Field(
        default=None,
        description="What held then (YYYY-MM-DD, YYYY-MM or YYYY); null: now and before.",
        max_length=32,
    )


class MemoryForgetArgs(_Args):
    query: str = Field(
        description="What the user asked you to forget, in their words.", max_length=2000
    )


TOOL_ARGS: dict[str, type[_Args]] = {
    "send_message": SendMessageArgs,
    "core_memory_append": CoreMemoryAppendArgs,
    "core_memory_replace": CoreMemoryReplaceArgs,
    "archival_memory_insert": ArchivalMemoryInsertArgs,
    "archival_memory_search": SearchArgs,
    "conversation_search": SearchArgs,
    "conversation_search_date": DateSearchArgs,
    "graph_insert": GraphInsertArgs,
    "graph_search": GraphSearchArgs,
    "memory_forget": MemoryForgetArgs,
}

TOOL_DESCRIPTIONS: dict[str, str] = {
    "send_message": "Send a message to the user and end your turn; the only way the user sees "
    "anything you say.",
    "core_memory_append": "Add a line to a core memory section: 'human' for key facts about the "
    "user, 'persona' for yourself.",
    "core_memory_replace": "Replace exact text in a core memory section; new_content '' deletes.",
    "archival_memory_insert": "Save a passage to archival memory (unlimited, searchable later).",
    "archival_memory_search": "Search archival memory by meaning and words. page counts from 0.",
    "conversation_search": "Search all past messages, also those out of view. page counts from 0.",
    "conversation_search_date": "List past messages from start_date to end_date (YYYY-MM-DD).",
    "graph_insert": "Record a fact (subject, relation, object) in the knowledge graph; a new "
    "object for a one-at-a-time relation ends the old fact, which stays as history.",
    "graph_search": "Facts about an entity: what holds now and what held before, or at a time.",
    "memory_forget": "When the user asks you to forget something: finds what memory keeps about "
    "it and shows it to the user, who chooses what is forgotten.",
}


# Tools offered only in a turn that may ask for them (MemGPTAgent.step): their line goes after
# the user's message, and the grammar allows them then. The system prompt's tool lines stay
# the same, so every other turn reads (and answers from) the prompt it read without them: with
# memory_forget among them, 15 of the seeded 150 LoCoMo answers changed (2 better, 5 worse).
OFFERED_WHEN_ASKED = frozenset(["memory_forget"])


def _strip_titles(node: Any) -> Any:
    """pydantic adds 'title' everywhere; the model does not need it."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def tool_specs() -> list[ToolSpec]:
    return [
        ToolSpec(name, TOOL_DESCRIPTIONS[name], _strip_titles(model.model_json_schema()))
        for name, model in TOOL_ARGS.items()
    ]
