"""A scripted model client for deterministic tests: returns given replies, records every prompt.

Its replies go through the same parsing, validation and dispatch as a real model's. Token counts
are an approximation (about 4 characters a token) since there is no tokenizer behind it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.errors import GenerationError, Interrupted
from engine.llm.base import Completion, TextSink
from engine.reading import NOT_FOUND, READING_SYSTEM
from engine.types import ChatMessage

MESSAGE_OVERHEAD = 4  # tokens a chat template adds around each message


class ScriptedClient:
    name = "scripted"

    def __init__(
        self,
        replies: Iterable[str | dict[str, Any]] = (),
        n_ctx: int = 4096,
        summarizer: Callable[[list[ChatMessage]], str] | None = None,
        piece_chars: int = 6,
        piece_delay: float = 0.0,
        reviews: Iterable[dict[str, Any]] = (),
        reader: Callable[[list[ChatMessage]], str] | None = None,
        summary_seconds: float = 0.0,
    ) -> None:
        """`summarizer` answers free-text calls (reply_schema None: the page-out summaries);
        the default keeps the previous summary and the first words of each new message.
        A streamed reply comes in pieces of `piece_chars` characters, `piece_delay` seconds
        apart (a slow model, for tests of streaming and the stop button). `reviews` answer the
        memory-review calls (engine.consolidate) in order; with none left a review finds
        nothing, so scripts of ordinary turns need not know about reviews. `reader` answers
        the reading calls (engine.reading); the default finds nothing ("not in memory"), so
        scripts need not know about those either. A summary takes `summary_seconds` (a slow
        model's page-out summary, for tests of idle work that yields): like LlamaClient, a call
        stops with Interrupted once the event given to interrupted_by() is set."""
        self._reviews: list[str] = [json.dumps(r) for r in reviews]
        self.piece_chars = piece_chars
        self.piece_delay = piece_delay
        self._replies: list[str] = []
        self._n_ctx = n_ctx
        self._summarizer = summarizer or extractive_summary
        self._reader = reader or (lambda messages: NOT_FOUND)
        self.summary_seconds = summary_seconds
        self._interrupt: threading.Event | None = None
        self.history: list[list[ChatMessage]] = []
        self.schemas: list[dict[str, Any] | None] = []  # each call's reply schema, by history
        self.readings: list[list[ChatMessage]] = []  # the reading calls, apart from history
        self.enqueue(replies)

    def enqueue(self, replies: Iterable[str | dict[str, Any]]) -> None:
        for reply in replies:
            self._replies.append(reply if isinstance(reply, str) else json.dumps(reply))

    def enqueue_review(self, review: dict[str, Any]) -> None:
        self._reviews.append(json.dumps(review))

    @property
    def context_window(self) -> int:
        return self._n_ctx

    @property
    def remaining(self) -> int:
        return len(self._replies)

    def count_message_tokens(self, message: ChatMessage) -> int:
        return MESSAGE_OVERHEAD + (len(message.content) + 3) // 4

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(self.count_message_tokens(m) for m in messages) + 3

    def complete(
        self,
        messages: list[ChatMessage],
        reply_schema: dict[str, Any] | None,
        max_tokens: int,
        on_text: TextSink | None = None,
    ) -> Completion:
        if self.count_tokens(messages) + max_tokens > self._n_ctx:
            raise GenerationError(
                f"the prompt ({self.count_tokens(messages)} tokens) plus max_tokens "
                f"({max_tokens}) exceeds the context window ({self._n_ctx} tokens)"
            )
        if messages[0].content == READING_SYSTEM:
            self.readings.append(list(messages))
            text = self._reader(messages)
            return Completion(text, self.count_tokens(messages), (len(text) + 3) // 4, "stop")
        self.history.append(list(messages))
        self.schemas.append(reply_schema)
        if reply_schema is None:
            self._take_time(self.summary_seconds)
            text = self._summarizer(messages)
            return Completion(text, self.count_tokens(messages), (len(text) + 3) // 4, "stop")
        if reply_schema.get("title") == "memory_review":
            empty = json.dumps({"core": [], "passages": [], "facts": []})
            text = self._reviews.pop(0) if self._reviews else empty
            text, finish = self._stream(text, on_text)
            return Completion(text, self.count_tokens(messages), (len(text) + 3) // 4, finish)
        if not self._replies:
            raise GenerationError("the scripted client has no more replies")
        text = self._replies.pop(0)
        text, finish = self._stream(text, on_text)
        return Completion(text, self.count_tokens(messages), (len(text) + 3) // 4, finish)

    @contextlib.contextmanager
    def interrupted_by(self, cancel: threading.Event | None) -> Iterator[None]:
        previous, self._interrupt = self._interrupt, cancel
        try:
            yield
        finally:
            self._interrupt = previous

    def _take_time(self, seconds: float) -> None:
        """Work for `seconds`, stopping (Interrupted) within 10 ms of the interrupt."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._interrupt is not None and self._interrupt.is_set():
                raise Interrupted("stopped while the model was working, as asked")
            time.sleep(0.01)

    def _stream(self, text: str, on_text: TextSink | None) -> tuple[str, str]:
        """Hand `text` to `on_text` piece by piece; what was sent when it says stop is the
        (cut) reply, as with a real model."""
        if on_text is None:
            return text, "stop"
        for start in range(0, len(text), self.piece_chars):
            if self.piece_delay:
                time.sleep(self.piece_delay)
            if on_text(text[start : start + self.piece_chars]) is False:
                return text[: start + self.piece_chars], "cancelled"
        return text, "stop"


def call(tool: str, heartbeat: bool = False, thought: str = "", **arguments: Any) -> dict[str, Any]:
    """A reply in the model's format, for scripts: call("send_message", message="hi")."""
    return {
        "thought": thought,
        "tool": tool,
        "arguments": arguments,
        "request_heartbeat": heartbeat,
    }


def extractive_summary(messages: list[ChatMessage]) -> str:
    """A summary without a model: the summary so far plus the first words of each new message
    (read from the summary request of engine.summarizer)."""
    request = messages[-1].content
    head, _, tail = request.partition("\n\nNEW MESSAGES:\n")
    previous = head.split(":\n", 1)[-1].strip()
    transcript = tail.split("\n\n", 1)[0].splitlines()
    # first words of each message, without the "User:" / "Sam:" speaker (a real summary has none)
    new = " ".join(" ".join(line.split(":", 1)[-1].split()[:8]) for line in transcript)
    return " ".join(p for p in (previous if previous != "(none yet)" else "", new) if p)
