"""Fixtures for engine.llm tests: a realistic tool set and ONE loaded chat model per session."""

from __future__ import annotations

import pytest

from engine.types import ToolSpec

CHAT_ENV = "MEMEX_TEST_CHAT_MODEL"
SMALL_ENV = "MEMEX_TEST_SMALL_MODEL"


def realistic_tools() -> list[ToolSpec]:
    return [
        ToolSpec(
            "send_message",
            "Send a message to the user. This is the only way the user sees anything.",
            {
                "type": "object",
                "properties": {
                    "message": {"type": "string", "description": "The text to show the user."}
                },
                "required": ["message"],
            },
        ),
        ToolSpec(
            "core_memory_append",
            "Append a fact to a core memory section (always in context).",
            {
                "type": "object",
                "properties": {
                    "section": {
                        "type": "string",
                        "description": "Which section: persona or human.",
                    },
                    "content": {"type": "string", "description": "The text to append."},
                },
                "required": ["section", "content"],
            },
        ),
        ToolSpec(
            "archival_memory_search",
            "Search long-term archival memory by meaning.",
            {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for."},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 50,
                        "default": 5,
                        "description": "Results per page.",
                    },
                    "page": {
                        "type": "integer",
                        "minimum": 0,
                        "default": 0,
                        "description": "Page of results, from 0.",
                    },
                },
                "required": ["query"],
            },
        ),
        ToolSpec(
            "archival_memory_insert",
            "Store a passage in long-term archival memory.",
            {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "description": "The passage to store."},
                    "tags": {
                        "anyOf": [
                            {"type": "array", "items": {"type": "string"}},
                            {"type": "null"},
                        ],
                        "default": None,
                        "description": "Optional tags.",
                    },
                },
                "required": ["content"],
            },
        ),
    ]


@pytest.fixture
def tools() -> list[ToolSpec]:
    return realistic_tools()
