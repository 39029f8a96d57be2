"""The one place that decides what is in the model's window and how many tokens each part takes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.errors import ContextOverflowError
from engine.llm.base import LLMClient
from engine.llm.grammar import render_tool_descriptions
from engine.memory.core import CoreMemory
from engine.memory.recall import RecallMemory
from engine.types import ChatMessage, ContextUsage, Message, ToolSpec

EVICT_TARGET = 0.6  # after a page-out the prompt fills at most this share of the room

INSTRUCTIONS = """\
You are {name}, a conversational agent with a long-term memory, running on the user's computer.
Every reply you write is ONE JSON tool call: {{"thought": ..., "tool": ..., "arguments": ..., \
"request_heartbeat": ...}}.
The user only sees what you pass to send_message. Keep thoughts short.
Memory:
- Core memory (below) is always in view but small. Save key facts about the user in section \
'human' and about yourself in 'persona' with core_memory_append / core_memory_replace.
- Recall memory holds every past message: search it with conversation_search or \
conversation_search_date.
- Archival memory is unlimited: save details with archival_memory_insert, find them with \
archival_memory_search.
Set request_heartbeat to true when you want another turn after a tool returns (for example to \
reply after saving to memory or searching); false when you are done.
Example (Alice is not the real user): the user writes "I'm Alice." You reply
{{"thought": "New fact about the user: save it.", "tool": "core_memory_append", "arguments": {{"section": "human", "content": "Name: Alice"}}, "request_heartbeat": true}}
and after the tool returns:
{{"thought": "Now answer.", "tool": "send_message", "arguments": {{"message": "Nice to meet you, Alice!"}}, "request_heartbeat": false}}
Speak as yourself ({name}) to the user; never repeat the user's words as your own.
Today is {today}.

Tools:
{tools}

Core memory:
{core}"""


@dataclass(frozen=True)
class ContextWindow:
    """The prompt to send, the stored messages in it, and the token count of each section."""

    messages: list[ChatMessage]
    in_context: list[Message]
    usage: ContextUsage


class ContextBuilder:
    """Assembles system prompt + recent messages so that prompt + reply always fit n_ctx."""

    def __init__(
        self,
        llm: LLMClient,
        core: CoreMemory,
        recall: RecallMemory,
        tools: list[ToolSpec],
        agent_name: str,
        reply_tokens: int,
    ) -> None:
        self.llm = llm
        self.core = core
        self.recall = recall
        self.agent_name = agent_name
        self.reply_tokens = reply_tokens
        self._tool_text = render_tool_descriptions(tools)
        self._system: ChatMessage | None = None
        self._system_tokens = 0
        self._core_tokens = 0

    def system_prompt(self, core_text: str | None = None) -> str:
        return INSTRUCTIONS.format(
            name=self.agent_name,
            today=dt.datetime.now(dt.UTC).date().isoformat(),
            tools=self._tool_text,
            core=self.core.render() if core_text is None else core_text,
        )

    def refresh(self) -> None:
        """Re-render the system prompt (and core memory in it) at the next build."""
        self._system = None

    def build(self) -> ContextWindow:
        """The window for the next model call, evicting old messages when it would overflow.

        The system prompt, with core memory, is rendered once and kept until messages are
        evicted: llama.cpp reuses the cached prefix, so a step only evaluates its new tokens.
        Core-memory edits reach the model meanwhile as the tool calls and results in the
        messages. Eviction frees down to EVICT_TARGET of the room at once, so the re-read it
        causes happens once per page-out, not on every step.
        """
        budget = self.llm.context_window - self.reply_tokens
        system = self._system_prompt(budget)
        kept = self.recall.in_context()
        view = _Viewer(max_tokens=(budget - self._system_tokens) // 3)
        total = self.llm.count_tokens([system, *view(kept)])
        if total > budget:
            kept = self._evict(system, kept, view, int(budget * EVICT_TARGET))
            self.refresh()  # the prefix is re-read anyway: show core memory as it is now
            system = self._system_prompt(budget)
            kept = self._evict(system, kept, view, budget)  # in case core memory grew
            total = self.llm.count_tokens([system, *view(kept)])
        return ContextWindow([system, *view(kept)], kept, self._usage(total))

    def _evict(
        self, system: ChatMessage, kept: list[Message], view: _Viewer, limit: int
    ) -> list[Message]:
        """Evict the oldest messages (a call with its result) until the prompt fits `limit`."""
        while kept and self.llm.count_tokens([system, *view(kept)]) > limit:
            dropped = _oldest_unit(kept)
            self.recall.evict([m.id for m in dropped])
            kept = kept[len(dropped) :]
        return kept

    def _system_prompt(self, budget: int) -> ChatMessage:
        if self._system is None:
            system = ChatMessage("system", self.system_prompt())
            tokens = self.llm.count_tokens([system])
            if tokens >= budget:
                raise ContextOverflowError(
                    f"the system prompt and core memory take {tokens} tokens, more than the "
                    f"{budget} the window leaves (n_ctx {self.llm.context_window} - reply "
                    f"{self.reply_tokens}); shorten core memory or use a larger context"
                )
            empty_core = ChatMessage("system", self.system_prompt(""))
            self._system, self._system_tokens = system, tokens
            self._core_tokens = tokens - self.llm.count_tokens([empty_core])
        return self._system

    def _usage(self, total: int) -> ContextUsage:
        window = self.llm.context_window
        return ContextUsage(
            prompt_tokens=total,
            context_window=window,
            sections={
                "system": self._system_tokens - self._core_tokens,
                "core_memory": self._core_tokens,
                "messages": total - self._system_tokens,
                "reply_reserve": self.reply_tokens,
                "free": max(0, window - total - self.reply_tokens),
            },
        )


@dataclass(frozen=True)
class _Viewer:
    """Shows messages as the model sees them: one too big for a third of the room is cut, with a
    note on where the whole text is (it stays whole in recall memory)."""

    max_tokens: int

    def __call__(self, messages: list[Message]) -> list[ChatMessage]:
        return [self._view(m) for m in messages]

    def _view(self, message: Message) -> ChatMessage:
        if message.token_count <= self.max_tokens:
            return message.as_chat()
        keep = max(200, self.max_tokens * 2)  # characters: a safe under-estimate of tokens
        note = (
            f"\n[... message {message.id} cut here for space: {len(message.content)} characters "
            "in all, kept whole in recall memory; use conversation_search to find the rest]"
        )
        return ChatMessage(message.role, message.content[:keep] + note)


def _oldest_unit(messages: list[Message]) -> list[Message]:
    """The oldest message, with the tool result that answers it (a call is never split)."""
    unit = [messages[0]]
    for message in messages[1:]:
        if message.role != "tool":
            break
        unit.append(message)
    return unit
