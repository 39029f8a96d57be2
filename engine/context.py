"""The one place that decides what is in the model's window and how many tokens each part takes.

Every prompt has the same layout, so that llama.cpp can reuse the prefix it evaluated last time:

    system message: instructions + tool descriptions + core memory + summary of paged-out messages
    the messages in context, oldest first (the newest is the one being answered)

The system message is rendered once and kept byte-identical until a page-out (or an edit the
user makes through the API). Meanwhile the model sees its own core-memory edits as the tool calls
and results among the messages, and the memory-pressure warning is a new message (placed before
the user's message it comes with), so a step only evaluates the tokens that are new since the
last one.

Budget (all in the model's own tokens, counted by rendering the real chat template):
- the prompt budget is the window (n_ctx) less the room reserved for the reply;
- above `warn` of it the model is warned once per fill to save what matters;
- above `flush` of it the oldest messages are paged out (they stay in recall) until the prompt is
  under `target`, and the model folds them into the recursive summary. The page-out re-renders
  the system message; the model's cache of the messages kept is moved up, not read again
  (engine.llm.kv_reuse), so it costs a read of the changed summary.

With idle work (MemGPTAgent idle_work, organise) the page-out is made between turns instead,
when the next turn would cross the flush line (page_out_ahead), and the new prompt is read into
the model's cache before the user sends; a step then pages out only when its prompt would not
fit the budget at all. The summary is then written after the prompt is read, and enters the
system message at the next page-out (summarise_pending; the one in view is kept in the file, so
a reopened agent renders the same prompt and its saved cache still matches).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import ContextOverflowError
from engine.llm.base import LLMClient, side_client_of
from engine.llm.grammar import render_tool_descriptions
from engine.memory.core import DEFAULT_BLOCK_LIMIT, CoreMemory
from engine.memory.page_in import PAGE_IN_PREFIX
from engine.memory.recall import RecallMemory
from engine.memory.summaries import Summary, SummaryLog
from engine.summarizer import Summarizer, SummaryError
from engine.types import ChatMessage, ContextUsage, Message, ToolSpec

logger = logging.getLogger(__name__)

SUMMARY_SHARE = 0.12  # the summary may take this share of the prompt budget ...
SUMMARY_TOKENS_MAX = 400  # ... but no more than this (a 0.5B model's summaries get worse)
MIN_MESSAGE_ROOM = 192  # tokens the messages must have at least, next to the system message
SUMMARY_HEADER_TOKENS = 60  # the summary's heading and the "not summarised yet" line
HEARTBEAT_PREFIX = "[heartbeat]"
REVIEW_PREFIX = "[memory review]"  # the note a consolidation leaves (engine.consolidate)
PRESSURE_PREFIX = "[memory pressure]"
HINT_PREFIX = "[for this turn]"  # a word to the model about one turn: not shown in the chat

PAGE_IN_SHARE = 0.15  # the page-in note may take this share of the prompt budget ...
PAGE_IN_TOKENS_MAX = 600  # ... but no more than this

# The examples are of a made-up user on a topic of their own: a 0.5B model copies an example's
# words into every turn ("A fact to keep.", and an example answer as the answer to anything)
# and, with no example at all, echoes the user. One example, of saving then replying.
INSTRUCTIONS = """\
You are {name}, an assistant with a long-term memory, running on the user's computer.
Each reply is ONE JSON tool call: {{"thought": ..., "tool": ..., "arguments": {{...}}, \
"request_heartbeat": true or false}}. The user sees only what you pass to send_message.
Most turns need only send_message. Answer a question with the answer itself, in a few \
words (a name, a date, a place), and add more only when asked. When the user's message \
tells something new about them that core memory lacks, save it first (core_memory_append to 'human', request_heartbeat true), then \
reply. Never save a question. When a fact changes (a move, a new job), replace the old line \
with core_memory_replace.
Memory: core memory (below) is always in view but small; its lines are oldest first, so \
where two disagree the later line holds. Recall memory holds every past message, also those \
out of view (conversation_search). Archival memory is unlimited \
(archival_memory_insert, archival_memory_search). A "{page_in}" note after the user's message \
lists what a search of your memory found for it: answer from it and from core memory, and when \
neither holds the answer, say you don't know rather than guess.
Examples with a made-up user. They write "My cat Miso hates the vet.":
{{"thought": "New: their cat's name. Save, then answer.", "tool": "core_memory_append", \
"arguments": {{"section": "human", "content": "Has a cat named Miso"}}, "request_heartbeat": true}}
then, after the tool returns:
{{"thought": "Saved. Reply to them.", "tool": "send_message", "arguments": {{"message": \
"Poor Miso! Many cats do. Does a carrier with a blanket help?"}}, "request_heartbeat": false}}
{roles}Today is {today}.

Tools:
{tools}

Core memory:
{core}{summary}"""
ROLES = """\
Two people talk here: the user and you. Core memory 'human' holds the USER's facts, not yours: \
speak of them as the user's ("You work at ...", "Your name is ..."), never as "I". 'persona' \
is you. Answer in your own words; do not repeat an earlier reply.
"""


@dataclass(frozen=True)
class Thresholds:
    """Shares of the prompt budget: warn above `warn`, page out above `flush`, down to `target`."""

    warn: float = 0.7
    flush: float = 0.9
    target: float = 0.6

    def __post_init__(self) -> None:
        if not 0 < self.target < self.flush <= 1 or not 0 < self.warn <= self.flush:
            raise ValueError(
                f"thresholds must satisfy 0 < target < flush <= 1 and 0 < warn <= flush: {self}"
            )


@dataclass(frozen=True)
class Lines:
    """Token counts: warn above `warn`, page out above `flush`, down to `target`."""

    warn: int
    flush: int
    target: int


@dataclass(frozen=True)
class Budget:
    """The token numbers of one window."""

    context_window: int
    reply_reserve: int
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        if not 0 < self.reply_reserve <= self.context_window // 2:
            raise ValueError(
                f"the reply reserve ({self.reply_reserve} tokens) must be positive and at most "
                f"half the {self.context_window}-token window"
            )

    @property
    def prompt_budget(self) -> int:
        return self.context_window - self.reply_reserve

    def lines(self, system_tokens: int) -> Lines:
        """The warn / flush / target lines for a system message of `system_tokens`.

        They are shares of the prompt budget; but where the system message (with core memory
        and summary) already takes most of it, they are moved up to the same shares of the room
        left for messages, so that a page-out still frees a useful amount instead of paging out
        at every call."""
        budget, t = self.prompt_budget, self.thresholds
        room = max(0, budget - system_tokens)
        return Lines(
            warn=min(budget, max(int(budget * t.warn), system_tokens + int(room * t.warn))),
            flush=min(budget, max(int(budget * t.flush), system_tokens + int(room * t.flush))),
            target=min(budget, max(int(budget * t.target), system_tokens + int(room * t.target))),
        )

    @property
    def summary_tokens(self) -> int:
        return max(48, min(SUMMARY_TOKENS_MAX, int(self.prompt_budget * SUMMARY_SHARE)))

    @property
    def page_in_tokens(self) -> int:
        """The most tokens the page-in note (engine.memory.page_in) may take."""
        return max(64, min(PAGE_IN_TOKENS_MAX, int(self.prompt_budget * PAGE_IN_SHARE)))

    @property
    def block_chars(self) -> int:
        """The size of a new agent's persona and human blocks: about 12% of the budget each
        (in characters, ~4 a token), within [400, 2000] (MemGPT's 2,000 for 8k windows)."""
        return max(400, min(DEFAULT_BLOCK_LIMIT, int(self.prompt_budget * 0.12) * 4))

    @property
    def oversize_tokens(self) -> int:
        """A message bigger than this is shown cut (and a user's is chunked into archival)."""
        return self.prompt_budget // 4


@dataclass(frozen=True)
class SystemPrompt:
    """The rendered system message and the tokens of its parts."""

    message: ChatMessage
    tokens: int
    core_tokens: int
    summary_tokens: int


@dataclass(frozen=True)
class ContextWindow:
    """The prompt to send, the stored messages in it, and the token count of each section."""

    messages: list[ChatMessage]
    in_context: list[Message]
    usage: ContextUsage


class ContextBuilder:
    """Assembles system message + recent messages so that prompt + reply always fit n_ctx."""

    def __init__(
        self,
        llm: LLMClient,
        core: CoreMemory,
        recall: RecallMemory,
        summaries: SummaryLog,
        tools: list[ToolSpec],
        agent_name: str,
        budget: Budget,
        add_note: Callable[[str], None],
        has_archived_parts: Callable[[int], bool] = lambda message_id: False,
        roles_prompt: bool = True,
    ) -> None:
        self.llm = llm
        self.core = core
        self.recall = recall
        self.summaries = summaries
        self.agent_name = agent_name
        self.budget = budget
        self._summary_llm: LLMClient | None = None
        self.events: list[str] = []  # page-outs and summary failures, for the step's response
        self.page_outs: list[tuple[int, int, int]] = []  # (first id, last id, count) this turn
        self._add_note = add_note  # stores a system note as the newest message
        self._has_archived_parts = has_archived_parts
        self._roles = ROLES if roles_prompt else ""
        self._tool_text = render_tool_descriptions(tools)
        self._system: SystemPrompt | None = None
        self._core_version: tuple[int, int, str] = (0, 0, "")
        self._last_total = 0
        # True where idle work pages out between turns (MemGPTAgent idle_work, organise): it
        # pages out at the flush line, ahead of the next turn; a step itself then pages out
        # only when its prompt would not fit the budget at all, and only evicts (the summary
        # is idle work's), so that the user does not wait for memory housekeeping
        self.idle_work = False

    def _summarizer(self) -> Summarizer:
        """A summarizer sized to the room left now. Summaries run in a second context where the
        client has one (made at the first page-out), so they leave the conversation's KV cache
        alone (see LlamaClient.side_client)."""
        if self._summary_llm is None:
            self._summary_llm = side_client_of(self.llm)
        return Summarizer(self._summary_llm, self.agent_name, self._summary_room())

    @property
    def reply_tokens(self) -> int:
        return self.budget.reply_reserve

    # -- the window --------------------------------------------------------------------------
    def measure(self) -> ContextUsage:
        """The sizes of the prompt as it stands, changing nothing (no warning, no page-out)."""
        system = self.system_prompt()
        return self._usage(self._count(system, self.recall.in_context()))

    def warn_if_filling(self, incoming: str | None = None) -> bool:
        """The memory-pressure warning, once per fill, when the prompt (with the user message
        `incoming`, about to be stored) is past the warn line; True if it was sent. A user turn
        asks this before it stores the message, so the warning comes before it: placed after
        it, the last thing a small model read was "save anything important now", and it
        answered that instead of the user."""
        system = self.system_prompt()
        prompt = self._view(system, self.recall.in_context())
        if incoming is not None:
            # a message too big to show whole is shown cut (about 4 characters a token)
            prompt.append(ChatMessage("user", incoming[: 4 * self._view_limit(system)]))
        return self._warn_if_past(system, self.llm.count_tokens(prompt))

    def _warn_if_past(self, system: SystemPrompt, total: int) -> bool:
        """The warning, once per fill, when a prompt of `total` tokens is past the warn line
        (and not yet past the flush line, where a page-out comes instead)."""
        lines = self.budget.lines(system.tokens)
        if lines.warn < total <= lines.flush and not self._warned():
            self._warn(total)
            return True
        return False

    def build(self, warn: bool = True) -> ContextWindow:
        """The window for the next model call: pages out when the prompt has grown past the
        flush line, and warns before that unless `warn` is False (a user turn warns before its
        message: warn_if_filling)."""
        system = self.system_prompt()
        lines = self.budget.lines(system.tokens)
        kept = self.recall.in_context()
        total = self._count(system, kept)
        if warn and self._warn_if_past(system, total):
            kept = self.recall.in_context()
            total = self._count(system, kept)
        if total > (self.budget.prompt_budget if self.idle_work else lines.flush):
            self._page_out(kept)
            system = self.system_prompt()
            kept = self.recall.in_context()
            total = self._count(system, kept)
        if total > self.budget.prompt_budget:
            # Only when core memory or the summary grew past what the page-out allowed for: page
            # out more, unsummarised (the next page-out or step summarises it).
            kept = self._evict(system, kept, self.budget.prompt_budget)
        prompt = self._view(system, kept)
        total = self._last_total = self.llm.count_tokens(prompt)
        return ContextWindow(prompt, kept, self._usage(total))

    def refresh(self) -> None:
        """Re-render the system message (core memory and the latest summary in it) at the next
        build."""
        if self._held_summary() is not None:
            self._set_summary_in_view(None)
        self._system = None

    def view_limit(self) -> int:
        """The most tokens one message may show in the window; a bigger one is shown cut."""
        return self._view_limit(self.system_prompt())

    def result_room(self) -> int:
        """Tokens a tool result may take now: what is left in the budget after the last prompt
        and a reply, within [half the view limit, the view limit] (a result that size always
        fits: the next build pages out older messages if it must)."""
        limit = self.view_limit()
        left = self.budget.prompt_budget - self._last_total - self.budget.reply_reserve // 2
        return max(limit // 2, min(limit, left))

    def render_system(self, core_text: str | None = None, summary_text: str | None = None) -> str:
        return INSTRUCTIONS.format(
            name=self.agent_name,
            page_in=PAGE_IN_PREFIX,
            roles=self._roles,
            today=dt.datetime.now(dt.UTC).date().isoformat(),
            tools=self._tool_text,
            core=self.core.render() if core_text is None else core_text,
            summary=self._summary_section() if summary_text is None else summary_text,
        )

    def system_prompt(self) -> SystemPrompt:
        """The system message, rendered at most once between page-outs."""
        version = self.core.others_version()  # another agent may have edited a shared block
        if self._system is None or version != self._core_version:
            self._core_version = version
            self._system = self._render_system_prompt()
        return self._system

    # -- summaries ---------------------------------------------------------------------------
    def summarise_pending(self) -> bool:
        """Fold messages paged out but not yet summarised into the summary (after a failed
        summary call, this is the retry). False if the model failed again."""
        latest, pending = self._summary_state()
        if not pending:
            return True
        covered = (
            f" (messages {latest.first_message_id}-{latest.last_message_id})" if latest else ""
        )
        try:
            text = self._summarizer().fold(latest.text if latest else "", covered, pending)
        except SummaryError as exc:
            logger.warning(
                "summary of messages %d-%d failed: %s", pending[0].id, pending[-1].id, exc
            )
            self.events.append(
                f"The summary of messages {pending[0].id}-{pending[-1].id} failed ({exc}); "
                "they stay searchable in recall and are summarised at the next step."
            )
            return False
        first = latest.first_message_id if latest else pending[0].id
        with self.recall.store.atomic():
            if self.idle_work:
                # in view from the next page-out, which re-renders the system message anyway:
                # shown now, it would cost a re-read of the whole prompt after it
                self._hold_summary_in_view(latest)
            self.summaries.add(text or "Nothing of note.", first, pending[-1].id, self.llm.name)
        if not self.idle_work:
            self.refresh()
        return True

    # -- internals ---------------------------------------------------------------------------
    def _summary_room(self) -> int:
        """Tokens the summary may take: its share, less what a big core memory leaves no room
        for (a summary must never push the system message past the budget)."""
        system = self.system_prompt()
        rest = system.tokens - system.summary_tokens + SUMMARY_HEADER_TOKENS + MIN_MESSAGE_ROOM
        return max(16, min(self.budget.summary_tokens, self.budget.prompt_budget - rest))

    def _render_system_prompt(self) -> SystemPrompt:
        summary = self._summary_section()
        message = ChatMessage("system", self.render_system(summary_text=summary))
        tokens = self.llm.count_tokens([message])
        without_summary = self.llm.count_tokens(
            [ChatMessage("system", self.render_system(None, ""))]
        )
        bare = self.llm.count_tokens([ChatMessage("system", self.render_system("", ""))])
        system = SystemPrompt(message, tokens, without_summary - bare, tokens - without_summary)
        if tokens + MIN_MESSAGE_ROOM > self.budget.prompt_budget:
            raise ContextOverflowError(
                f"the system prompt takes {tokens} tokens (instructions and tools "
                f"{bare}, core memory {system.core_tokens}, summary {system.summary_tokens}); "
                f"with {MIN_MESSAGE_ROOM} for messages that is more than the "
                f"{self.budget.prompt_budget} the window leaves (n_ctx "
                f"{self.budget.context_window} - reply {self.budget.reply_reserve}): shorten "
                "core memory or use a larger context (--n-ctx)"
            )
        return system

    def _summary_state(self) -> tuple[Summary | None, list[Message]]:
        """The latest summary and the messages paged out since it was written."""
        latest = self.summaries.latest()
        return latest, self.recall.paged_out_after(latest.last_message_id if latest else 0)

    def _shown_state(self) -> tuple[Summary | None, list[Message]]:
        """The summary the system message shows and the messages paged out after it: the
        latest, unless idle work holds a newer one back until the next page-out."""
        held = self._held_summary()
        shown = self.summaries.get(held) if held else None
        if held is None or (held and shown is None):  # (a summary since deleted: the latest)
            return self._summary_state()
        return shown, self.recall.paged_out_after(shown.last_message_id if shown else 0)

    def _held_summary(self) -> int | None:
        """The id of the summary held in view (0: none), or None where the latest is shown."""
        row = self.recall.store.query_one(
            "SELECT summary_in_view FROM agents WHERE id = ?", (self.recall.agent_id,)
        )
        return None if row is None or row[0] is None else int(row[0])

    def _hold_summary_in_view(self, shown: Summary | None) -> None:
        """Keep `shown` in view while newer summaries are written (until the next refresh)."""
        if self._held_summary() is None:
            self._set_summary_in_view(shown.id if shown else 0)

    def _set_summary_in_view(self, summary_id: int | None) -> None:
        with self.recall.store.atomic() as conn:
            conn.execute(
                "UPDATE agents SET summary_in_view = ? WHERE id = ?",
                (summary_id, self.recall.agent_id),
            )

    def _summary_section(self) -> str:
        latest, pending = self._shown_state()
        parts = []
        if latest is not None:
            parts.append(
                f"Summary of the earlier conversation (messages {latest.first_message_id}-"
                f"{latest.last_message_id}, out of view; conversation_search finds them):\n"
                f"{latest.text}"
            )
        if pending:
            parts.append(
                f"Messages {pending[0].id}-{pending[-1].id} are out of view and not summarised "
                "yet; conversation_search finds them."
            )
        return "".join(f"\n\n{p}" for p in parts)

    def _count(self, system: SystemPrompt, kept: list[Message]) -> int:
        return self.llm.count_tokens(self._view(system, kept))

    def _view_limit(self, system: SystemPrompt) -> int:
        return min(self.budget.oversize_tokens, (self.budget.prompt_budget - system.tokens) // 3)

    def _view(self, system: SystemPrompt, kept: list[Message]) -> list[ChatMessage]:
        """The prompt: the system message and each message as the window shows it."""
        viewer = _Viewer(self.llm, self._view_limit(system), self._has_archived_parts)
        return [system.message, *viewer(kept)]

    def _warned(self) -> bool:
        row = self.recall.store.query_one(
            "SELECT pressure_warned FROM agents WHERE id = ?", (self.recall.agent_id,)
        )
        return bool(row and row[0])

    def _set_warned(self, warned: bool) -> None:
        with self.recall.store.atomic() as conn:
            conn.execute(
                "UPDATE agents SET pressure_warned = ? WHERE id = ?",
                (int(warned), self.recall.agent_id),
            )

    def _warn(self, total: int) -> None:
        percent = round(100 * total / self.budget.prompt_budget)
        with self.recall.store.atomic():
            self._add_note(
                f"{PRESSURE_PREFIX} The context is {percent}% full. Soon the oldest messages "
                "leave your view (they stay searchable, and a summary is kept). Save anything "
                "important to core memory or archival memory now."
            )
            self._set_warned(True)

    def _page_out(self, kept: list[Message]) -> None:
        """Evict the oldest messages to the target (leaving room for the summary to grow), then
        fold them into the summary, unless idle work writes it (`idle_work`).
        Eviction commits first: a failed summary loses nothing."""
        evicted = self._evict_to_target(kept)
        if evicted is not None:
            self.page_outs.append(evicted)
            first, last, count = evicted
            self.events.append(
                f"Paged out messages {first}-{last} ({count} messages); they stay searchable "
                "in recall."
            )
        if not self.idle_work:
            self.summarise_pending()

    def _evict_to_target(self, kept: list[Message], coming: int = 0) -> tuple[int, int, int] | None:
        """Evict the oldest messages down to the target line, less `coming` tokens still to
        come before the prompt is next sent; (first id, last id, count) of those evicted, None
        if none."""
        self.refresh()  # size against core memory as it is now, the model's edits included
        system = self.system_prompt()
        growth = max(0, self.budget.summary_tokens - system.summary_tokens)
        target = self.budget.lines(system.tokens + growth).target
        remaining = self._evict(system, kept, target - growth - coming)
        evicted = kept[: len(kept) - len(remaining)]
        self._set_warned(False)
        self.refresh()
        return (evicted[0].id, evicted[-1].id, len(evicted)) if evicted else None

    def page_out_ahead(self, next_turn_tokens: int) -> tuple[int, int, int] | None:
        """Idle work: page out now when a next turn of about `next_turn_tokens` would push the
        prompt past the flush line, so that the step does not (eviction only: the summary is
        summarise_pending's). (first id, last id, count) of the messages evicted, or None."""
        system = self.system_prompt()
        kept = self.recall.in_context()
        total = self._count(system, kept)
        if total + next_turn_tokens <= self.budget.lines(system.tokens).flush:
            return None
        # as deep as a step's own page-out would go, made with the next turn in: no deeper
        # (what stays in view is as before), and not shallower (twice the page-outs)
        return self._evict_to_target(kept, coming=next_turn_tokens)

    def next_prompt(self) -> list[ChatMessage]:
        """The prompt the next user turn starts with, as things stand (changing nothing):
        what idle time reads ahead, and the prompt cache saved and restored."""
        return self._view(self.system_prompt(), self.recall.in_context())

    def summary_pending(self) -> bool:
        """Whether messages are paged out but not yet in the summary."""
        return bool(self._summary_state()[1])

    def _evict(self, system: SystemPrompt, kept: list[Message], limit: int) -> list[Message]:
        """Evict the oldest units until the prompt fits `limit`, cutting at the start of a turn
        when one follows; the newest unit always stays. Returns the messages left."""
        evicted = self._to_evict(system, kept, limit)
        if not evicted:
            return kept
        self.recall.evict([m.id for m in evicted])
        return kept[len(evicted) :]

    def _to_evict(self, system: SystemPrompt, kept: list[Message], limit: int) -> list[Message]:
        """The oldest messages _evict would take out (none taken)."""
        units = _units(kept)
        if len(units) <= 1:
            return []

        def fits(start: int) -> bool:
            return self._count(system, _flatten(units[start:])) <= limit

        low, high = 0, len(units) - 1  # smallest start that fits (the newest unit always stays)
        while low < high:
            middle = (low + high) // 2
            if fits(middle):
                high = middle
            else:
                low = middle + 1
        start = next((i for i in range(low, len(units)) if _starts_turn(units[i][0])), low)
        while start < len(units) - 1 and units[start][0].content.startswith(PRESSURE_PREFIX):
            start += 1  # a warning about the fill that this page-out ends is stale
        return _flatten(units[:start])

    def _usage(self, total: int) -> ContextUsage:
        system = self.system_prompt()
        lines = self.budget.lines(system.tokens)
        window = self.budget.context_window
        return ContextUsage(
            prompt_tokens=total,
            context_window=window,
            sections={
                "system": system.tokens - system.core_tokens - system.summary_tokens,
                "core_memory": system.core_tokens,
                "summary": system.summary_tokens,
                "messages": total - system.tokens,
                "reply_reserve": self.budget.reply_reserve,
                "free": max(0, window - total - self.budget.reply_reserve),
            },
            prompt_budget=self.budget.prompt_budget,
            warn_at=lines.warn,
            flush_at=lines.flush,
            target_at=lines.target,
        )


@dataclass(frozen=True)
class _Viewer:
    """Shows messages as the model sees them: one bigger than `max_tokens` is cut, with a note on
    where the whole text is (always whole in recall; a user's in archival parts too)."""

    llm: LLMClient
    max_tokens: int
    has_archived_parts: Callable[[int], bool]

    def __call__(self, messages: list[Message]) -> list[ChatMessage]:
        return [self._view(m) for m in messages]

    def _view(self, message: Message) -> ChatMessage:
        if message.token_count <= self.max_tokens:
            return message.as_chat()
        where = f"message {message.id} in recall memory (conversation_search finds it)"
        if message.role == "tool":
            where = (
                f"kept in recall as message {message.id}; for less at a time, call the tool "
                "again with a smaller limit or the next page"
            )
        elif self.has_archived_parts(message.id):
            where += (
                f"; its text is also in archival memory in parts tagged message-{message.id} "
                "(archival_memory_search finds them)"
            )
        note = f"\n[... cut here: {len(message.content)} characters in all. The whole text is {where}.]"
        keep = self.max_tokens * 3  # characters; cut further below until it fits
        while True:
            view = ChatMessage(message.role, message.content[:keep] + note)
            if keep == 0 or self.llm.count_message_tokens(view) <= self.max_tokens:
                return view
            keep //= 2


def _units(messages: list[Message]) -> list[list[Message]]:
    """Messages grouped so a tool call is never split from its result."""
    units: list[list[Message]] = []
    for message in messages:
        if message.role == "tool" and units:
            units[-1].append(message)
        else:
            units.append([message])
    return units


def _flatten(units: list[list[Message]]) -> list[Message]:
    return [m for unit in units for m in unit]


def _starts_turn(message: Message) -> bool:
    """A user message, or the note that opens a heartbeat: a cut here reads naturally."""
    return message.role == "user" or (
        message.role == "system" and message.content.startswith(HEARTBEAT_PREFIX)
    )
