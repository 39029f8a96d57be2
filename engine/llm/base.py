"""The model-client protocol: what the agent loop needs from any model backend."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.errors import GenerationError
from engine.types import ChatMessage

# Messages a template can always render: the base against which one message's tokens are counted.
PROBE_SYSTEM = ChatMessage("system", "x")
PROBE_USER = ChatMessage("user", "x")

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


def added_tokens(count_tokens: Callable[[list[ChatMessage]], int], message: ChatMessage) -> int:
    """Tokens `message` adds to a prompt: counted after a fixed system message (templates such
    as Qwen's inject a default system prompt when the first message is not a system message,
    so the base always has one). For messages a template cannot render right after a system
    message (templates that insist on user/assistant alternation), the base is system + user."""
    try:
        base = [PROBE_SYSTEM]
        return count_tokens([*base, message]) - count_tokens(base)
    except GenerationError:
        base = [PROBE_SYSTEM, PROBE_USER]
        return count_tokens([*base, message]) - count_tokens(base)


class PromptCounts:
    """Token counts of the newest prompts by their text: the context builder counts the same
    prompt several times a step, and a count renders and tokenizes the whole prompt."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, prompt: str, count: Callable[[str], int]) -> int:
        with self._lock:
            cached = self._counts.get(prompt)
            if cached is not None:
                self._counts.move_to_end(prompt)
                return cached
        tokens = count(prompt)  # outside the lock: a remote count is a request
        with self._lock:
            self._counts[prompt] = tokens
            while len(self._counts) > self._size:
                self._counts.popitem(last=False)
        return tokens


def check_request(messages: list[ChatMessage], max_tokens: int) -> None:
    """What every client refuses before it renders anything."""
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not messages:
        raise ValueError("complete() needs at least one message")


def check_fits(n_prompt: int, max_tokens: int, n_ctx: int) -> None:
    if n_prompt + max_tokens > n_ctx:
        raise GenerationError(
            f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) exceeds the "
            f"context window ({n_ctx} tokens); the context builder must leave room"
        )


def prompt_seconds(llm: LLMClient, messages: list[ChatMessage]) -> float:
    """About how long `llm` will take to read `messages` before it writes (what is not in its
    prompt cache, at its measured speed); 0.0 where the client cannot tell (a server)."""
    estimate = getattr(llm, "prompt_seconds", None)
    return float(estimate(messages)) if callable(estimate) else 0.0


def interrupted_by(
    llm: LLMClient, cancel: threading.Event | None
) -> contextlib.AbstractContextManager[None]:
    """While in the block, the client's model calls stop (Interrupted) as soon as `cancel` is
    set, even while reading a prompt, where the client can (LlamaClient.interrupted_by); other
    clients finish the call they are in."""
    bind = getattr(llm, "interrupted_by", None)
    return bind(cancel) if callable(bind) and cancel is not None else contextlib.nullcontext()


def prefill(llm: LLMClient, messages: list[ChatMessage], cancel: threading.Event | None) -> int:
    """Read `messages` into the client's prompt cache ahead of the call that will send them
    with more after (LlamaClient.prefill); the tokens read (0 where a client cannot)."""
    read = getattr(llm, "prefill", None)
    return int(read(messages, cancel)) if callable(read) else 0


def side_client_of(llm: LLMClient) -> LLMClient:
    """The client's second context where it has one (LlamaClient.side_client), made on first
    use: page-out summaries and memory reviews then leave the conversation's prompt cache
    alone. Other clients serve side work themselves."""
    side = getattr(llm, "side_client", None)
    if not callable(side):
        return llm

    class _Lazy:
        def __getattr__(self, name: str) -> object:
            return getattr(side(), name)

    return _Lazy()  # type: ignore[return-value]
