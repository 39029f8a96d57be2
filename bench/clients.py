"""Model clients the benchmarks wrap around the real one."""

from __future__ import annotations

from engine.llm.llama import LlamaClient
from engine.types import ChatMessage


class PassedOn:
    """What a benchmark's client leaves to the real LlamaClient `inner`: its name, window and
    token counts (the subclass says what it does differently)."""

    inner: LlamaClient

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def context_window(self) -> int:
        return self.inner.context_window

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.inner.count_tokens(messages)

    def count_message_tokens(self, message: ChatMessage) -> int:
        return self.inner.count_message_tokens(message)
