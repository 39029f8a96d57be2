"""The model-client protocol: what the agent loop needs from any model backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.types import ChatMessage

# Called with each new piece of reply text as it is generated; returning False stops the
# generation (the stop button). The pieces concatenate to a prefix of Completion.text.
TextSink = Callable[[str], bool]


@dataclass(frozen=True)
class Completion:
    """The model's raw reply text and the token counts llama.cpp (or the client) reports."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "stop", "length", or "cancelled" (on_text said stop)


class LLMClient(Protocol):
    """A chat model that answers with one JSON object matching `reply_schema`.

    `reply_schema` is the JSON schema of one reply (built by engine.llm.grammar from the tools);
    a real client turns it into a grammar so the reply always parses. With None the reply is
    free text (the page-out summary is written so). `on_text`, when given, receives the reply
    as it is generated and can stop it (see TextSink).
    """

    name: str

    @property
    def context_window(self) -> int: ...

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Exact number of tokens of the prompt `complete(messages, ...)` would evaluate."""
        ...

    def count_message_tokens(self, message: ChatMessage) -> int:
        """Tokens one message adds to a prompt when rendered by the chat template."""
        ...

    def complete(
        self,
        messages: list[ChatMessage],
        reply_schema: dict[str, Any] | None,
        max_tokens: int,
        on_text: TextSink | None = None,
    ) -> Completion: ...
