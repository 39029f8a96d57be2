"""MemGPTAgent: the one loop. User text -> context -> model -> parse -> dispatch -> store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine import timing
from engine.consolidate import Consolidator, ReviewResult
from engine.context import (
    HEARTBEAT_PREFIX,
    HINT_PREFIX,
    REVIEW_PREFIX,
    Budget,
    ContextBuilder,
    Thresholds,
)
from engine.errors import Interrupted, InvalidInput, MemexError
from engine.llm.base import LLMClient, interrupted_by, prefill, prompt_seconds, side_client_of
from engine.llm.grammar import render_tool_descriptions, reply_schema
from engine.llm.parse import MessageStream, ReplyParseError, parse_reply
from engine.memory.archival import PASSAGE_INDEX, ArchivalMemory
from engine.memory.core import (
    DEFAULT_BLOCK_LIMIT,
    NOT_ABOUT_THE_USER,
    Block,
    BlockTemplate,
    CoreMemory,
)
from engine.memory.forget import Forgetting, asks_to_forget, may_ask_to_forget, says_forgotten
from engine.memory.graph import KnowledgeGraph
from engine.memory.page_in import (
    PageIn,
    Recalled,
    fit_note,
    latest_note,
    users_words,
)
from engine.memory.recall import MESSAGE_INDEX, RecallMemory
from engine.memory.summaries import SummaryLog
from engine.reading import Reading, asks, asks_for_help, read_answer
from engine.store.db import Store, now_iso
from engine.tools.memory_tools import MemoryTool
from engine.tools.registry import OFFERED_WHEN_ASKED, tool_specs
from engine.tools.reply_checks import (
    asks_back,
    declines,
    echoes,
    in_users_voice,
    only_questions,
    repeated_reply,
    untold_words,
    users_own_sentences,
    without_echo,
)
from engine.types import (
    PHASE_READING_MEMORY,
    PHASE_SEARCHING,
    PHASE_WRITING,
    AgentResponse,
    Assists,
    ChatMessage,
    ContextUsage,
    ForgetProposed,
    MemoryOperation,
    Message,
    ModelCallStarted,
    Organised,
    PagedOut,
    Persona,
    Remembered,
    ReplyDelta,
    Reviewed,
    Reviewing,
    Role,
    StepEvent,
    ToolCall,
    ToolDone,
    ToolResult,
    Working,
)

EventSink = Callable[[StepEvent], None]

logger = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 10
# An idle turn (heartbeat) is the model's own: it may save what matters, not go on and on. A
# 0.5B model given "Reflect now" looped on one save after another until stopped at ~600 s.
IDLE_MAX_CALLS = 4
# idle page-out: the next turn is taken to add what the middle one of the last RECENT_TURNS
# did, and at least MIN_TURN_TOKENS (a bigger one has the room between the flush line and the
# budget: see ContextBuilder.idle_work)
RECENT_TURNS = 10
MIN_TURN_TOKENS = 128
IDLE_MAX_SAVES = 3
IDLE_SAVES_DONE = "That is enough saving for this idle turn; the rest can wait."
DEFAULT_REPLY_TOKENS = 512
MAX_USER_MESSAGE_CHARS = 2_000_000
REPEATED_CALL = (
    "you already made exactly this call in this turn and it succeeded; do not repeat it. "
    "If you are done, answer the user with send_message."
)
VOICE_MESSAGES = 10  # the user's latest messages whose "I ..." sentences a reply must not claim
MAX_REPLY_RETRIES = 2  # replies refused a turn (repeats, echoes of the user's message)
REPEATED_REPLY = (
    "you sent exactly this reply before (message {id}), and the user's new message needs its "
    "own answer: answer it now, in new words."
)
ECHOED_MESSAGE = (
    "your reply only repeats the user's message, or asks their question back: answer it in "
    "your own words (from core memory and the memory found for it, or say you don't know)."
)
DECLINED_REQUEST = (
    "the user asks for your help, and it is yours to give: help with what they ask now (draft, "
    "list, explain or suggest, in a few sentences), as the assistant."
)
VOICED = (
    "Message sent as {sent!r}: the user's facts said to them ('you', 'your'), since they are "
    "the user's, not yours."
)
SAVED_ANSWER = (
    "the user's message only asks, so it tells nothing to save, and {words} is not in it: core "
    "memory keeps what the user tells. Nothing changed. Answer the question with send_message, "
    "from core memory and the memory found for it; if neither holds the answer, say you don't "
    "know."
)
# the thought stored with a reply the engine sent itself (_direct_answer): the model reads it
# in later turns as its own, so it says where the answer came from
DEFAULT_DESCRIPTION = "A helpful assistant with a long memory."  # a persona given no words
# Regenerating: the same prompt would give the same reply, so the model is told what is asked
REGENERATE_NOTE = f"{HINT_PREFIX} The user asked for another reply to their last message: answer it again, differently."
# The engine's reply to a request to forget, with what memory keeps about it
FORGET_ANSWER = (
    "This is what I keep about that:\n\n{listed}\n\nChoose what I should forget, and it will "
    "be gone from my memory."
)
NOTHING_TO_FORGET = "My memory keeps nothing about that, so there is nothing to forget."
EDIT_WHILE_FORGETTING = (
    "the user may be asking you to forget something: core memory is not edited for that. Call "
    "memory_forget with what they want forgotten (they choose what goes), or answer them."
)
# After a message that may ask to forget, in words asks_to_forget does not take for a request:
# the tool that does it, offered for this turn (registry.OFFERED_WHEN_ASKED)
FORGET_OFFER = (
    f"{HINT_PREFIX} If the user asks you to forget something, call this tool with what they want forgotten; "
    "nothing is forgotten otherwise:\n{tool}"
)
ANSWER_THOUGHT = "Answered from memory: the reading of what page-in found."
FORGET_THOUGHT = "The user asks me to forget something: I show them what memory keeps about it."
STOPPED_NOTE = "[stopped] The user stopped the assistant's reply before it was finished."
SYSTEM_BLOCK = (
    "Be truthful. Remember what matters to the user and use it. "
    "Never invent memories: search recall or archival memory when unsure."
)


# Core blocks the reading leaves out, for they are not memory of the user (NOT_ABOUT_THE_USER):
# the persona (asked "What's my name again?", the 1.5B reader answered with the assistant's own
# name from "I am Memex": BENCHMARKS.md, the seed) and the standing rules written for the model.
NOT_READ = NOT_ABOUT_THE_USER


@dataclass(frozen=True)
class ModelCall:
    """One model call in a step: the engine's token count against the one llama.cpp reported."""

    counted_prompt_tokens: int
    reported_prompt_tokens: int
    completion_tokens: int
    parsed: bool
    tool: str | None
    ok: bool


@dataclass(frozen=True)
class StepResult(AgentResponse):
    model_calls: tuple[ModelCall, ...] = ()
    # asked to forget something: what memory keeps about it, for the user to choose from
    # (MemGPTAgent.forget); nothing is forgotten until then
    forget_proposal: tuple[Remembered, ...] = ()


def default_blocks(persona: Persona, limit: int = DEFAULT_BLOCK_LIMIT) -> list[BlockTemplate]:
    """The blocks of a new agent; `limit` is the size (characters) of persona and human."""
    persona_text = persona.render()
    return [
        BlockTemplate(
            "persona",
            persona_text,
            "Who you are and how you behave.",
            max(limit, len(persona_text)),
        ),
        BlockTemplate("human", "", "What you know about the user.", limit),
        BlockTemplate("system", SYSTEM_BLOCK, "Standing rules.", read_only=True),
    ]


def _clean_text(text: str | bytes) -> str:
    """User text as stored: bytes must be UTF-8, str must be encodable (no lone surrogates)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"the message is not valid UTF-8 text ({exc}); nothing was stored"
            ) from None
    if not isinstance(text, str):
        raise InvalidInput(f"a message must be text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the message holds characters that are not valid Unicode text") from None
    if not text.strip():
        raise InvalidInput("the message is empty; type something to send")
    if len(text) > MAX_USER_MESSAGE_CHARS:
        raise InvalidInput(
            f"the message has {len(text)} characters; the most is {MAX_USER_MESSAGE_CHARS}"
        )
    return text


class MemGPTAgent:
    """An agent with core, recall and archival memory, resumable by name from the store."""

    def __init__(
        self,
        persona: Persona | None = None,
        archival_store: Store | None = None,
        llm_client: LLMClient | None = None,
        name: str = "memex",
        max_steps: int = DEFAULT_MAX_STEPS,
        reply_tokens: int = DEFAULT_REPLY_TOKENS,
        thresholds: Thresholds | None = None,
        shared_blocks: Sequence[Block | int] = (),
        consolidate_every: int = 0,
        assists: Assists | None = None,
        idle_work: bool = False,
        keep_prompt_cache: bool = False,
    ) -> None:
        """`thresholds` are the memory-pressure lines as shares of the prompt budget (warn at
        70%, page out above 90% down to 60% by default); see engine.context.

        `shared_blocks` are core-memory blocks of this file (engine.memory.core.create_block,
        or another agent's `agent.memory.block(label)`) to attach to this agent as well: an
        edit by any agent they are attached to is in the others' next prompt. A new agent takes
        a shared block in place of its own default block of the same label; an existing agent
        with its own block under that label refuses it (CoreMemoryError), nothing replaced.

        Idle consolidation (engine.consolidate) reviews the messages since the last review on
        every heartbeat(), and after a step once `consolidate_every` user turns (0: never)
        wait for review.

        `assists` are the engine's help for small models (engine.types.Assists: page-in before
        each answer, checked core edits and replies), all on by default.

        `idle_work`: the caller runs organise() while the user reads and types (the app and the
        terminal chat do), so page-outs and their summaries happen there and a step pages out
        only what its own messages pushed past the line (and leaves the summary to idle time).

        `keep_prompt_cache`: the model's prompt cache is kept across restarts where the client
        can (engine.llm.prompt_state): loaded now if the prompt starts with a saved prefix,
        saved by save_prompt_state() (the app calls it on closing) and after idle page-outs."""
        if archival_store is None:
            from engine.store.db import open_store

            archival_store = open_store()
        if llm_client is None:
            from engine.llm.factory import default_llm_client

            llm_client = default_llm_client()
        self.store = archival_store
        self.llm = llm_client
        self.name = name
        self.max_steps = max_steps
        self.consolidate_every = consolidate_every
        self.assists = assists or Assists()
        self._cancel = threading.Event()
        self._on_event: EventSink | None = None
        self._turn_calls: list[ToolCall] = []
        self._done_calls: list[ToolCall] = []
        self._proposal: tuple[Remembered, ...] = ()  # what memory_forget showed the user
        self._call_limit = max_steps  # this turn's: IDLE_MAX_CALLS for an idle one
        self._refused_replies = 0
        self._answering: Message | None = None  # the user message this turn answers
        self.budget = Budget(self.llm.context_window, reply_tokens, thresholds or Thresholds())
        with self.store.atomic():
            self.agent_id, self.persona = self._load_or_create(name, persona, shared_blocks)
            self.memory = CoreMemory(self.store, self.agent_id)
            for block in shared_blocks:
                self.memory.share(block)
        self.session_id = self._new_session()
        self.recall = RecallMemory(self.store, self.agent_id)
        self.archival = ArchivalMemory(self.store, self.agent_id)
        # the vector search's bits load now, beside the user's typing, not at the first search
        for index in (MESSAGE_INDEX, PASSAGE_INDEX):
            index.vectors.warm_in_background(self.store, self.agent_id)
        self.graph = KnowledgeGraph(self.store, self.agent_id)
        self.summaries = SummaryLog(self.store, self.agent_id)
        every = tool_specs()
        specs = [s for s in every if s.name not in OFFERED_WHEN_ASKED]
        self._forget_spec = next(s for s in every if s.name == "memory_forget")
        self._reply_schema = reply_schema(specs)
        self._forget_schema = reply_schema(every)  # a turn whose message may ask to forget
        # When the model loops, or on the last allowed call, only a reply to the user is allowed.
        self._reply_only_schema = reply_schema([s for s in specs if s.name == "send_message"])
        self.context = ContextBuilder(
            self.llm,
            self.memory,
            self.recall,
            self.summaries,
            specs,
            self.persona.name,
            self.budget,
            add_note=lambda text: self._add("system", text),
            has_archived_parts=self.archival.has_message_parts,
            roles_prompt=self.assists.roles_prompt,
        )
        self.page_in = PageIn(self.recall, self.archival, self.graph)
        self.forgetting = Forgetting(
            self.store, self.agent_id, self.memory, self.graph, self.archival, self.recall
        )
        self.tools = MemoryTool(
            self.memory,
            self.recall,
            self.archival,
            self.graph,
            on_user_core_edit=self.context.refresh,
            result_room=self.context.result_room,
            count_result_tokens=self._count_result_tokens,
            check_core_edits=self.assists.check_core_edits,
            forgetting=self.forgetting,
        )
        self.side_llm = side_client_of(self.llm)  # made at its first use
        self.consolidator = Consolidator(self.side_llm, self.persona.name, self.tools)
        self.idle_work = idle_work
        self.context.idle_work = idle_work
        self.keep_prompt_cache = keep_prompt_cache
        self.restored_tokens = self._restore_prompt_cache() if keep_prompt_cache else 0

    # -- public API --------------------------------------------------------------------------
    @property
    def core_memory(self) -> dict[str, str]:
        return dict(self.memory)

    def step(
        self,
        text: str | bytes,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> StepResult:
        """One user turn: store the message, then let the model act until it is done.

        `on_event` hears what happens while the step runs (StepEvent: each model call, the reply
        as it is written, each tool run, page-outs); it is called on the step's thread.
        `cancel`, when set (from any thread, even before the step starts), stops the step:
        see cancel(). The result's `timings` say where the step's time went (engine.timing)."""
        with timing.measure() as timer:
            text = _clean_text(text)
            with timing.phase(timing.PHASE_CONTEXT):
                self.context.warn_if_filling(text)  # before the message: see warn_if_filling
            message = self._store_user_message(text)
            what = asks_to_forget(text)
            if what is not None and self.forgetting.candidates(what):
                # A plain request to forget: the engine answers it, no model call (asked to
                # forget, the small model tried to replace text that was not there, a tool
                # error); the tool stays the model's for the requests these words miss.
                result = self._run(True, on_event, cancel, answering=message, forget=what)
                return dataclasses.replace(result, timings=timer.finish())
            if may_ask_to_forget(text):  # in other words: the model may call memory_forget
                self._add(
                    "system",
                    FORGET_OFFER.format(tool=render_tool_descriptions([self._forget_spec])),
                )
            reading = self._page_in(message, on_event) if self.assists.page_in else None
            result = self._run(
                require_reply=True,
                on_event=on_event,
                cancel=cancel,
                answering=message,
                answer=self._direct_answer(text, reading),
            )
            due = self.consolidate_every and (
                self.consolidator.user_turns_pending() >= self.consolidate_every
            )
            if due and not result.cancelled:
                result = _with_review(result, self.consolidate(cancel, on_event))
            return dataclasses.replace(result, timings=timer.finish())

    def regenerate(
        self, on_event: EventSink | None = None, cancel: threading.Event | None = None
    ) -> StepResult:
        """Another reply to the user's last message: the reply and all the step did after the
        message become an old version (kept in recall, marked, out of view), and the model
        answers again, told the user wanted another answer (the same prompt would give the same
        reply). InvalidInput when there is no message to answer."""
        asked = self._last_question("regenerate")
        with timing.measure() as timer:
            self.recall.replace_from(asked.id + 1)  # out of view: the next build leaves them
            if self.assists.page_in:
                self._page_in(asked, on_event)
            self._add("system", REGENERATE_NOTE)
            result = self._run(True, on_event, cancel, answering=asked)
            return dataclasses.replace(result, timings=timer.finish())

    def edit_last(
        self,
        text: str | bytes,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> StepResult:
        """The user's last message, edited and sent again: it and everything after it become an
        old version (kept in recall, marked, out of view), and `text` is answered as a new
        message. InvalidInput when there is no message to edit (or `text` cannot be stored)."""
        asked = self._last_question("edit")
        text = _clean_text(text)  # refused before the old version is touched
        self.recall.replace_from(asked.id)
        return self.step(text, on_event, cancel)

    def _last_question(self, what: str) -> Message:
        asked = self.recall.last_user_message()
        if asked is None:
            raise InvalidInput(f"there is no message of yours to {what} yet")
        return asked

    def add_user_message(self, text: str | bytes) -> Message:
        """Store a user message without running the model (the next step answers it), e.g. a
        message typed while a step ran, kept when the app closes. InvalidInput if it cannot be
        stored as given; then nothing is stored."""
        return self._store_user_message(_clean_text(text))

    def _store_user_message(self, text: str) -> Message:
        """add_user_message for text _clean_text has passed."""
        with self.store.atomic() as conn:
            message = self._add("user", text)
            conn.execute(
                "UPDATE agents SET last_user_message_at = ? WHERE id = ?",
                (now_iso(), self.agent_id),
            )
        if message.token_count > self.context.view_limit():
            # Too big to show whole: the window shows it cut, archival holds it in parts.
            self.archival.insert_message_parts(message.id, text)
        return message

    def _page_in(self, message: Message, on_event: EventSink | None = None) -> Reading | None:
        """Stores the note of what memory holds about `message` (engine.memory.page_in) after
        it, so the model reads it before answering; nothing when memory holds nothing for it.
        For a question, the hits are read for its answer (engine.reading) and the note says
        what the reading found; returns that reading (None where none was made). `on_event`
        hears each phase as it begins (Working)."""
        reads = self._reads(message)
        if on_event is not None:
            on_event(Working(PHASE_SEARCHING))
        with timing.phase(timing.PHASE_CONTEXT):
            # The reading (engine.reading) has a window of its own: it reads all the hits, where
            # the note may have room for fewer, and the messages in view too (a small model
            # answering in the chat took "I live in Tampere" from core memory over "I moved to
            # Porto" in view).
            hits = self.page_in.find(message.content, in_view=reads, asked=message.id)
            limit = self.context.budget.page_in_tokens

            def fits(text: str) -> bool:
                return self.llm.count_message_tokens(ChatMessage("system", text)) <= limit

        if reads and hits and on_event is not None:
            on_event(Working(PHASE_READING_MEMORY))
        reading = self._read(message, hits) if reads and hits else None
        with timing.phase(timing.PHASE_CONTEXT):
            unseen = [hit for hit in hits if not hit.in_view]
            # an answer not in memory's words is no answer: a note telling the model "the
            # answer is: Hotel Reykjavik", a hotel never named, had it reply just that
            found = None if reading is None else reading.from_memory
            fitted = fit_note(unseen, fits, found, asks_for_help(message.content))
        if fitted is not None:
            self._add("system", fitted[1])
        return reading

    def _reads(self, message: Message) -> bool:
        return self.assists.reading and asks(message.content)

    def _read(self, message: Message, hits: list[Recalled]) -> Reading | None:
        """The reading of `hits` and core memory for a user message that asks something (see
        _reads); None where the call failed."""
        about_user = "\n".join(
            b.value.strip() for b in self.memory.blocks() if b.label not in NOT_READ
        )
        return read_answer(self.side_llm, message.content, hits, about_user)

    def _direct_answer(self, text: str, reading: Reading | None) -> str | None:
        """The reply the engine sends itself, with no model call: the reading's answer, for a
        message that only asks and whose reading found it in memory's own words (None
        otherwise; see Assists)."""
        if not self.assists.direct_answer or reading is None or not reading.from_memory:
            return None
        return reading.reply if only_questions(text) else None

    def heartbeat(
        self, on_event: EventSink | None = None, cancel: threading.Event | None = None
    ) -> StepResult:
        """A turn with no user message (the app sends one when the user is idle): first the
        memory review of the messages since the last one (see consolidate), then a turn in
        which the model may act on its own."""
        with timing.measure() as timer:
            review = self.consolidate(cancel, on_event)
            if cancel is not None and cancel.is_set():
                self.tools.operations.clear()
                self.tools.sent_messages.clear()
                self._turn_calls = []
                self._proposal = ()
                result = self._response([], self.context.measure(), stopped=False, cancelled=True)
            else:
                self._add("system", self._heartbeat_note())
                result = self._run(require_reply=False, on_event=on_event, cancel=cancel)
            result = _with_review(result, review)
            return dataclasses.replace(result, timings=timer.finish())

    def consolidate(
        self, cancel: threading.Event | None = None, on_event: EventSink | None = None
    ) -> ReviewResult:
        """Review the messages since the last review and fold what they tell into core memory,
        archival passages and graph facts, merging repeats (engine.consolidate). Nothing to
        review: no model call. Its edits are in the block history as actor "consolidation"."""

        def on_piece(done: int, total: int) -> None:
            if on_event is not None:
                on_event(Reviewing(done, total))

        result = self.consolidator.run(cancel, on_piece)
        if not result.reviewed:
            return result
        event = Reviewed(
            result.first_message_id,  # type: ignore[arg-type]
            result.last_message_id,  # type: ignore[arg-type]
            tuple(result.operations),
        )
        if event.changes:  # the model and the transcript learn what changed, a line each
            self._add(
                "system",
                f"{REVIEW_PREFIX} {event.summary()}:\n"
                + "\n".join(f"- {op.summary}" for op in event.changes),
            )
            self.context.refresh()
        if on_event is not None:
            on_event(event)
        return result

    def organise(self, cancel: threading.Event | None = None) -> Organised:
        """Memory work for the time the user reads and types (the app runs it after each
        reply, and sets `cancel` when they send something): a page-out when the next turn would
        need one, the next prompt read into the model's cache, so that the next step reads only
        its new message, then the summary of what was paged out (shown from the next page-out
        on). Stopped, it ends within a fraction of a second, keeping what it did: the eviction
        commits first (as a step's page-out does), what was read stays read, and a summary not
        written is written at the next idle spell."""
        cancel = cancel or threading.Event()
        evicted, summarised, read, saved = None, False, 0, 0
        try:
            if not cancel.is_set():
                evicted = self.context.page_out_ahead(self._next_turn_tokens())
            # the prompt first: the summary is written in the second context and enters the
            # system message at the next page-out (ContextBuilder.summarise_pending), so only
            # a re-read left unfinished can reach the user's next step
            if not cancel.is_set():
                read = prefill(self.llm, self.context.next_prompt(), cancel)
            if evicted is not None and self.keep_prompt_cache and not cancel.is_set():
                saved = self.save_prompt_state()  # a crash now does not cost the re-read
            if not cancel.is_set() and self.context.summary_pending():
                with interrupted_by(self.side_llm, cancel):
                    summarised = self.context.summarise_pending()
        except Interrupted:
            pass  # what was done stays; the rest waits
        page_out = None if evicted is None else self._paged_out(*evicted)
        return Organised(page_out, summarised, read, saved, cancel.is_set())

    def _paged_out(self, first: int, last: int, count: int) -> PagedOut:
        """The event of a page-out, with the summary that stands for it where one does."""
        latest = self.summaries.latest()
        covers = latest is not None and latest.last_message_id >= last
        return PagedOut(first, last, count, latest.text if covers else None)

    def save_prompt_state(self) -> int:
        """Save the model's prompt cache of the prompt as it stands, for the next start
        (engine.llm.prompt_state; the app calls it on closing); the tokens saved (0 where the
        client keeps no cache, or there was too little to save)."""
        save = getattr(self.llm, "save_prompt_state", None)
        if not callable(save):
            return 0
        try:
            return int(save(self.context.next_prompt(), self._cache_owner()))
        except (MemexError, OSError) as exc:  # a cache: it costs the next start its speed only
            logger.warning("the prompt cache was not saved: %s", exc)
            return 0

    def _restore_prompt_cache(self) -> int:
        """Load the saved prompt cache the prompt starts with, if any; the tokens loaded."""
        load = getattr(self.llm, "load_prompt_state", None)
        if not callable(load):
            return 0
        try:
            return int(load(self.context.next_prompt()))
        except (MemexError, OSError) as exc:  # a cache: the first step reads the prompt instead
            logger.warning("the saved prompt cache was not loaded: %s", exc)
            return 0

    def _cache_owner(self) -> str:
        """Who a saved prompt cache is of: this agent of this file (its newer save replaces
        the older)."""
        return f"{self.store.path.resolve()}#{self.agent_id}"

    def _next_turn_tokens(self) -> int:
        """About how many tokens the next user turn adds to the prompt: what the last few turns
        in view added (message, page-in note, calls and results), the middle one."""
        sizes = _turn_sizes(self.recall.in_context())[-RECENT_TURNS:]
        return max(MIN_TURN_TOKENS, int(statistics.median(sizes)) if sizes else 0)

    def cancel(self) -> None:
        """Stop the running step (from any thread): the reply being generated is dropped, what
        the step already committed stays, and the step returns with `cancelled=True`."""
        self._cancel.set()  # the running step's event (each step gets its own)

    def remembered(self) -> list[Remembered]:
        """What memory keeps about the user, in one list (engine.memory.forget)."""
        return self.forgetting.remembered()

    def forget(
        self, item: Remembered, with_message: bool = False, how: str = "memory view"
    ) -> None:
        """Forget `item` for real, and with `with_message` the user message it came from
        (engine.memory.forget); `how` the user asked ("memory view", "chat"), for the log.
        The prompt is measured again."""
        self.forgetting.forget(item, with_message, how)
        self.context.refresh()

    def edit_core_memory(self, label: str, value: str) -> Block:
        """The user's own edit of a core block (read-only blocks too), versioned like the
        model's; the next prompt shows it. CoreMemoryError says why an edit cannot be made."""
        block = self.memory.set(label, value, actor="user")
        self.context.refresh()
        return block

    def undo_core_memory(self, label: str) -> Block:
        """Revert the latest edit of a core block, whoever made it."""
        block = self.memory.undo(label, actor="user")
        self.context.refresh()
        return block

    def redo_core_memory(self, label: str) -> Block:
        """Take back the latest undo of a core block (none once an edit was made since)."""
        block = self.memory.redo(label, actor="user")
        self.context.refresh()
        return block

    def rename(self, new_name: str) -> None:
        """Give this agent another name in the store (names are unique in a file)."""
        from engine.agents import rename_agent

        self.name = rename_agent(self.store, self.name, new_name)

    def context_window(self) -> ContextUsage:
        """Token counts of the prompt the next model call would see, per section."""
        return self.context.measure()

    # -- the loop ----------------------------------------------------------------------------
    def _run(
        self,
        require_reply: bool,
        on_event: EventSink | None,
        cancel: threading.Event | None,
        answering: Message | None = None,
        answer: str | None = None,
        forget: str | None = None,
    ) -> StepResult:
        """The model's turn; `answering` is the user message it answers (None for a heartbeat),
        `answer` the reply the engine sends itself before any model call (_direct_answer), and
        `forget` what a request to forget names, answered by the engine (_show_what_to_forget)."""
        self._cancel = cancel or threading.Event()
        self._on_event = on_event
        self._answering = answering
        try:
            return self._loop(require_reply, answer, forget)
        finally:
            self._on_event = None

    def _loop(
        self, require_reply: bool, answer: str | None = None, forget: str | None = None
    ) -> StepResult:
        self.context.events.clear()  # what a failed earlier turn left is not this turn's news
        self.context.page_outs.clear()
        if not self.idle_work:  # else organise() writes it, while the user types
            self.context.summarise_pending()  # the retry, when the last page-out's summary failed
        self.tools.operations.clear()
        self.tools.sent_messages.clear()
        self._turn_calls = []
        self._refused_replies = 0
        self._done_calls = []  # this turn's calls that succeeded
        self._proposal = ()
        records: list[ModelCall] = []
        usage = ContextUsage(0, self.llm.context_window)
        self._call_limit = self.max_steps if require_reply else min(self.max_steps, IDLE_MAX_CALLS)
        first = 0
        if forget is not None and not self._cancel.is_set():
            call, result = self._show_what_to_forget(forget, 0)
            self._record(call, result)
            if call is not None and result.ok:
                return self._response(records, self.context.measure(), stopped=False)
            first = 1  # not sent: the model answers, as its own call
        elif answer is not None and not self._cancel.is_set():
            if self._send_answer(answer):
                return self._response(records, self.context.measure(), stopped=False)
            first = 1  # not sent: the model answers, as its own call
        for index in range(first, self._call_limit):
            if self._cancel.is_set():  # stopped before this call began
                return self._stopped(records, usage)
            with timing.phase(timing.PHASE_CONTEXT):
                # a user turn was warned before its message (step); a heartbeat is warned here
                window = self.context.build(warn=not require_reply)
                self._report_page_outs()
            usage = window.usage
            schema = self._schema_for(index, require_reply)
            if self._on_event is not None:  # the estimate costs a render: only when heard
                self._emit(ModelCallStarted(index, prompt_seconds(self.llm, window.messages)))
            try:  # Stop stops the call even while it reads its prompt
                with timing.phase(timing.PHASE_MODEL), interrupted_by(self.llm, self._cancel):
                    completion = self.llm.complete(
                        window.messages,
                        schema,
                        self.context.reply_tokens,
                        on_text=self._streamer(index),
                    )
            except Interrupted:
                return self._stopped(records, usage)
            if completion.finish_reason == "cancelled" or self._cancel.is_set():
                return self._stopped(records, usage)  # the cut reply is dropped
            call, result = self._act(completion.text, index)
            records.append(
                ModelCall(
                    usage.prompt_tokens,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                    call is not None,
                    call.name if call else None,
                    result.ok,
                )
            )
            self._record(call, result)
            if not self._wants_another_turn(call, result, require_reply):
                return self._response(records, usage, stopped=False)
        self._add("system", f"Step limit reached: stopped after {self._call_limit} model calls.")
        return self._response(records, usage, stopped=True)

    def _record(self, call: ToolCall | None, result: ToolResult) -> None:
        """A call of this turn, read and run (the refusal of repeats and loops look at them)."""
        if call is not None:
            self._turn_calls.append(call)
            if result.ok:
                self._done_calls.append(call)

    def _send_answer(self, answer: str) -> bool:
        """Sends `answer` as the reply (_engine_act); whether it went out."""
        message = ToolCall("send_message", {"message": answer})
        call, result = self._engine_act(message, ANSWER_THOUGHT)
        return call is not None and result.ok

    def _engine_act(self, call: ToolCall, thought: str) -> tuple[ToolCall | None, ToolResult]:
        """Runs a call the engine makes itself, stored as the model's reply with `thought`
        (the model reads it in later turns as its own), through the same parsing, checks of
        voice and dispatch as a model's reply (not the refusal of repeats: the same question
        read again has the same answer)."""
        done, result = self._act(_engine_reply(call, thought), 0, refuse=False)
        self._record(done, result)
        return done, result

    def _stopped(self, records: list[ModelCall], usage: ContextUsage) -> StepResult:
        self._add("system", STOPPED_NOTE)  # so the model knows its last answer was cut off
        return self._response(records, usage, stopped=False, cancelled=True)

    def _act(
        self, reply_text: str, index: int, refuse: bool = True, voice: bool = True
    ) -> tuple[ToolCall | None, ToolResult]:
        """Parse, dispatch and store one reply and its result in one transaction; `refuse`
        False skips the refusals of a repeated call or reply (for the engine's own answer),
        `voice` False the check of voice (for the engine's listing of what memory keeps,
        which names the user's facts as memory holds them)."""
        try:
            with timing.phase(timing.PHASE_PARSE):
                call: ToolCall | None = parse_reply(reply_text)
        except ReplyParseError as exc:
            call = None
            result = ToolResult("reply", False, str(exc))
        # a reply is checked against the messages in view, read once for all its checks
        in_view = (
            self.recall.in_context() if call is not None and call.name == "send_message" else []
        )
        if call is not None and self.assists.refuse_repeats and refuse:
            call = self._without_echo(call, in_view)
        if call is not None and refuse and self._says_forgotten_falsely(call):
            assert self._answering is not None  # _says_forgotten_falsely looked at it
            return self._show_what_to_forget(self._answering.content, index)
        done_before = len(self.tools.operations)
        with self.store.atomic():
            if call is not None and refuse and self._repeats_last_call(call):
                result = ToolResult(call.name, False, REPEATED_CALL)
            elif (
                call is not None
                and refuse
                and (refusal := self._refusal(call, in_view)) is not None
            ):
                result = ToolResult(call.name, False, refusal)
            elif call is not None:
                voiced = False  # checked after the refusals, which judge what the model wrote
                if self.assists.check_voice and voice:
                    before, call = call, self._in_users_voice(call, in_view)
                    voiced = call is not before
                with timing.phase(timing.PHASE_DISPATCH):
                    result = self.tools.dispatch(call)
                if voiced and result.ok:
                    # the model reads its own reply as it wrote it: the result says what went out
                    result = ToolResult(
                        call.name, True, VOICED.format(sent=call.arguments["message"])
                    )
            operation = next(iter(self.tools.operations[done_before:]), None)
            # a lone surrogate (a server's JSON can carry \ud800) cannot be stored as UTF-8:
            # kept as its escape; parse_reply has refused such a reply already
            stored = reply_text.encode("utf-8", "backslashreplace").decode("utf-8")
            self._add("assistant", stored, tool_call=call.as_json() if call else None)
            self._add(
                "tool",
                json.dumps(result.as_json(), ensure_ascii=False),
                tool_result=_stored_result(result, operation),
            )
        if result.forget_proposal:  # shown to the user, who chooses what goes
            self._proposal = result.forget_proposal
            self._emit(ForgetProposed(result.forget_proposal))
        self._emit(ToolDone(index, call, result, operation))
        return call, result

    def _says_forgotten_falsely(self, call: ToolCall) -> bool:
        """Whether a reply tells the user memory forgot something, to a message that may ask
        that, when nothing was forgotten: asked "Stop remembering that I'm a nurse", the 0.5B
        model answered "I will remove this information from my memory" and removed nothing."""
        text = call.arguments.get("message") if isinstance(call.arguments, dict) else None
        return (
            call.name == "send_message"
            and isinstance(text, str)
            and self._answering is not None
            and not any(c.name == "memory_forget" for c in self._turn_calls)
            and may_ask_to_forget(self._answering.content)
            and says_forgotten(text)
        )

    def _show_what_to_forget(self, query: str, index: int) -> tuple[ToolCall | None, ToolResult]:
        """The engine's answer to a request to forget (what a plain one names, or the whole
        message where the model's reply said memory forgot when nothing was): memory_forget on
        `query` (the model's own tool, which shows the user what memory keeps about it), then
        the reply that asks them to choose (or says memory keeps nothing of it), sent as it is,
        not put in the user's voice; the reply's call and result."""
        _, result = self._engine_act(ToolCall("memory_forget", {"query": query}), FORGET_THOUGHT)
        listed = "\n".join(f"- {item.text}" for item in result.forget_proposal)
        answer = FORGET_ANSWER.format(listed=listed) if listed else NOTHING_TO_FORGET
        reply = _engine_reply(ToolCall("send_message", {"message": answer}), FORGET_THOUGHT)
        return self._act(reply, index, refuse=False, voice=False)

    # -- events ------------------------------------------------------------------------------
    def _emit(self, event: StepEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _streamer(self, index: int) -> Callable[[str], bool]:
        """The TextSink of one model call: passes the message text on, and says stop once
        cancel() was called."""
        stream = MessageStream()
        started = False

        def on_text(piece: str) -> bool:
            nonlocal started
            if not started:  # the prompt is read: the model writes (its thought, then the reply)
                started = True
                self._emit(Working(PHASE_WRITING))
            added = stream.feed(piece)
            if added:
                self._emit(ReplyDelta(index, added))
            return not self._cancel.is_set()

        return on_text

    def _report_page_outs(self) -> None:
        if not self.context.page_outs:
            return  # the usual case: no summary to read
        for first, last, count in self.context.page_outs:
            self._emit(self._paged_out(first, last, count))
        self.context.page_outs.clear()

    def _schema_for(self, index: int, require_reply: bool) -> dict[str, object]:
        if not require_reply or self.tools.sent_messages:
            return self._reply_schema
        looping = len(self._turn_calls) >= 2 and self._turn_calls[-1] == self._turn_calls[-2]
        if looping or index == self._call_limit - 1:
            return self._reply_only_schema
        asked = self._answering
        if asked is not None and may_ask_to_forget(asked.content):
            return self._forget_schema
        return self._reply_schema

    def _refusal(self, call: ToolCall, in_view: list[Message]) -> str | None:
        """Why `call` is refused (a reply to write again, a save not to make), or None."""
        return (
            self._refused_reply(call, in_view)
            or self._refused_save(call)
            or self._refused_while_forgetting(call)
        )

    def _refused_while_forgetting(self, call: ToolCall) -> str | None:
        """Why a core edit in answer to a message that may ask to forget is not made, or None:
        asked "I'd rather you didn't keep anything about my sister", the 0.5B model appended
        "Doesn't have a sister" to core memory. Forgetting is memory_forget's, and the user's
        to choose."""
        if call.name not in ("core_memory_append", "core_memory_replace"):
            return None
        asked = self._answering
        if asked is None or not may_ask_to_forget(asked.content):
            return None
        return EDIT_WHILE_FORGETTING

    def _refused_reply(self, call: ToolCall, in_view: list[Message]) -> str | None:
        """Why a reply to the user must be written again (a repeat of an earlier reply in view,
        or a copy of the user's message), or None to send it. At most
        MAX_REPLY_RETRIES a turn: after that a reply is sent as it is."""
        if call.name != "send_message" or self._refused_replies >= MAX_REPLY_RETRIES:
            return None
        text = call.arguments.get("message") if isinstance(call.arguments, dict) else None
        if not isinstance(text, str) or not text.strip():
            return None  # the tool says what is wrong with it
        reason = None
        if self.assists.refuse_repeats:
            earlier = _replies(in_view)
            asked = _latest_user_message(in_view)
            repeated = repeated_reply(text, [t for _, t in earlier])
            if asked is not None and (
                echoes(text, asked.content) or asks_back(text, asked.content)
            ):
                reason = ECHOED_MESSAGE
            if reason is None and repeated is not None:
                message_id = next(i for i, t in earlier if t == repeated)
                reason = REPEATED_REPLY.format(id=message_id)
        if reason is None and self.assists.help_requests:
            reason = self._declined_request(text)
        if reason is not None:
            self._refused_replies += 1
        return reason

    def _declined_request(self, reply: str) -> str | None:
        """Why a reply that declines the user's request for help is written again, or None.
        A 1.5B model answered "Can you help me draft a kickoff agenda?" with "I'm sorry, I
        can't assist with that.", and then every later message with the same words."""
        asked = self._answering
        if asked is None or not asks_for_help(asked.content) or not declines(reply):
            return None
        return DECLINED_REQUEST

    def _refused_save(self, call: ToolCall) -> str | None:
        """Why a core append in answer to a message that only asks is not saved, or None.
        Such a message tells nothing new, and what a small model saved then was its own guess
        at the answer ("They're paying $100 for the course", never said) or an old fact again
        ("They live in Tampere" after the move to Porto), which later questions were answered
        with. A line in the message's own words ("can you remember my sister is Ingrid?") is
        saved."""
        if not self.assists.check_core_edits or call.name != "core_memory_append":
            return None
        asked = self._answering
        content = call.arguments.get("content") if isinstance(call.arguments, dict) else None
        if asked is None or not isinstance(content, str) or not only_questions(asked.content):
            return None
        untold = untold_words(content, asked.content)
        if not untold:
            return None
        return SAVED_ANSWER.format(words=", ".join(repr(w) for w in untold[:3]))

    def _in_users_voice(self, call: ToolCall, in_view: list[Message]) -> ToolCall:
        """A reply that states the user's facts (those core memory holds and what the user said
        of themselves in view) as the assistant's own, sent with those sentences said to the
        user ("I work at Acme Corp." -> "You work at Acme Corp.")."""
        text = call.arguments.get("message") if call.name == "send_message" else None
        if not isinstance(text, str):
            return call
        core = self.core_memory
        said = [m.content for m in in_view if m.role == "user"]
        said += users_words(latest_note(in_view))
        users = core.get("human", "") + "\n" + users_own_sentences(said[-VOICE_MESSAGES:])
        voiced = in_users_voice(text, users, core.get("persona", ""))
        if voiced == text:
            return call
        return dataclasses.replace(call, arguments={**call.arguments, "message": voiced})

    def _without_echo(self, call: ToolCall, in_view: list[Message]) -> ToolCall:
        """A reply that opens with a copy of the user's message, sent without it (small models
        echo the question before answering it)."""
        text = call.arguments.get("message") if call.name == "send_message" else None
        asked = _latest_user_message(in_view)
        if not isinstance(text, str) or asked is None:
            return call
        kept = without_echo(text, asked.content)
        if kept == text:
            return call
        return dataclasses.replace(call, arguments={**call.arguments, "message": kept})

    def _repeats_last_call(self, call: ToolCall) -> bool:
        """Same arguments as this turn's last successful call of the same tool: small models
        loop so. (A failed call may be tried again: its error may have been transient.)"""
        previous = [c for c in self._done_calls if c.name == call.name]
        return bool(previous) and previous[-1].arguments == call.arguments

    def _wants_another_turn(
        self, call: ToolCall | None, result: ToolResult, require_reply: bool
    ) -> bool:
        if call is None or not result.ok:
            return True  # a failure forces a heartbeat so the model can correct itself
        if call.name == "send_message":
            return False  # replying to the user ends the turn (small models loop otherwise)
        if not require_reply and self._saves_this_turn() >= IDLE_MAX_SAVES:
            self._add("system", IDLE_SAVES_DONE)
            return False
        if call.request_heartbeat:
            return True
        if require_reply and not self.tools.sent_messages:
            self._add("system", "You have not answered the user yet: call send_message.")
            return True
        return False

    def _saves_this_turn(self) -> int:
        """The memory writes of this turn that went through and changed something."""
        return sum(1 for op in self.tools.operations if op.ok and op.changed)

    def _response(
        self, records: list[ModelCall], usage: ContextUsage, stopped: bool, cancelled: bool = False
    ) -> StepResult:
        notes = list(self.context.events)
        if stopped:
            notes.append(
                f"Stopped after {self._call_limit} model calls (the step limit) before the "
                "assistant finished."
            )
        message = "\n\n".join(self.tools.sent_messages) or None
        return StepResult(
            message=message,
            tool_calls=list(self._turn_calls),
            memory_operations=list(self.tools.operations),
            context_usage=usage,
            steps=len(records),
            stopped_by_step_limit=stopped,
            notes=notes,
            cancelled=cancelled,
            model_calls=tuple(records),
            forget_proposal=self._proposal,
        )

    # -- storage -----------------------------------------------------------------------------
    def _add(self, role: Role, content: str, **extra: object) -> Message:
        with timing.phase(timing.PHASE_STORE):
            tokens = self.llm.count_message_tokens(ChatMessage(role, content))
            return self.recall.add(self.session_id, role, content, tokens, **extra)  # type: ignore[arg-type]

    def _count_result_tokens(self, result: ToolResult) -> int:
        """Tokens a tool result takes in the window, stored as _act stores it."""
        content = json.dumps(result.as_json(), ensure_ascii=False)
        return self.llm.count_message_tokens(ChatMessage("tool", content))

    def _heartbeat_note(self) -> str:
        row = self.store.query_one(
            "SELECT last_user_message_at FROM agents WHERE id = ?", (self.agent_id,)
        )
        since = "never"
        if row and row[0]:
            since = _ago(dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(row[0]))
        usage = self.context.measure()
        pressure = {
            "ok": "room to spare",
            "warning": "filling up: save what matters now",
            "flush": "full: the oldest messages are paged out next",
        }[usage.pressure]
        latest = self.summaries.latest()
        summary = (
            f" The summary covers messages {latest.first_message_id}-{latest.last_message_id}."
            if latest
            else ""
        )
        return (
            f"{HEARTBEAT_PREFIX} No user message: this turn is yours. Last user message: {since}. "
            f"Context: {usage.prompt_tokens} of {usage.prompt_budget} tokens "
            f"({round(100 * usage.prompt_tokens / usage.prompt_budget)}%, {pressure}).{summary} "
            "Review recent messages and save anything important to core or archival memory. "
            "Call send_message only if you have something worth telling the user."
        )

    def _load_or_create(
        self, name: str, persona: Persona | None, shared_blocks: Sequence[Block | int]
    ) -> tuple[int, Persona]:
        row = self.store.query_one("SELECT id, persona_json FROM agents WHERE name = ?", (name,))
        if row is not None:
            return row[0], Persona(**json.loads(row[1]))
        persona = persona or Persona(name="Memex", description=DEFAULT_DESCRIPTION)
        with self.store.atomic() as conn:
            conn.execute(
                "INSERT INTO agents(name, persona_json, model_settings_json, created_at)"
                " VALUES (?, ?, ?, ?)",
                (name, json.dumps(persona.__dict__), json.dumps(self._model_settings()), now_iso()),
            )
            agent_id = conn.last_insert_rowid()
            core = CoreMemory(self.store, agent_id)
            shared_labels = {self._label_of(b) for b in shared_blocks}
            for template in default_blocks(persona, self.budget.block_chars):
                if template.label not in shared_labels:
                    core.attach(template)
        return agent_id, persona

    def _label_of(self, block: Block | int) -> str | None:
        if isinstance(block, Block):
            return block.label
        row = self.store.query_one("SELECT label FROM blocks WHERE id = ?", (block,))
        return row[0] if row else None

    def _model_settings(self) -> dict[str, object]:
        return {
            "model": self.llm.name,
            "context_window": self.llm.context_window,
            "max_steps": self.max_steps,
        }

    def _new_session(self) -> int:
        with self.store.atomic() as conn:
            conn.execute(
                "INSERT INTO sessions(agent_id, started_at) VALUES (?, ?)",
                (self.agent_id, now_iso()),
            )
            return conn.last_insert_rowid()

    def __repr__(self) -> str:
        return f"MemGPTAgent(name={self.name!r}, store={self.store!r}, llm={self.llm.name!r})"


def _turn_sizes(in_view: list[Message]) -> list[int]:
    """The tokens of each user turn in view (its message and all that followed it)."""
    sizes: list[int] = []
    for message in in_view:
        if message.role == "user" or not sizes:
            sizes.append(0)
        sizes[-1] += message.token_count
    return sizes if in_view and in_view[0].role == "user" else sizes[1:]


def _latest_user_message(in_view: list[Message]) -> Message | None:
    return next((m for m in reversed(in_view) if m.role == "user"), None)


def _replies(in_view: list[Message]) -> list[tuple[int, str]]:
    """(message id, text) of the replies to the user among `in_view`."""
    replies = []
    for message in in_view:
        call = message.tool_call
        if message.role == "assistant" and call and call.get("tool") == "send_message":
            text = (call.get("arguments") or {}).get("message")
            if isinstance(text, str):
                replies.append((message.id, text))
    return replies


def _engine_reply(call: ToolCall, thought: str) -> str:
    """A call the engine makes itself, written as the model writes its replies."""
    reply = {
        "thought": thought,
        "tool": call.name,
        "arguments": call.arguments,
        "request_heartbeat": call.name != "send_message",
    }
    return json.dumps(reply, ensure_ascii=False)


def _with_review(result: StepResult, review: ReviewResult) -> StepResult:
    """A step's result with the review's memory operations (first) and notes added."""
    if not review.operations and not review.failures:
        return result
    return dataclasses.replace(
        result,
        memory_operations=[*review.operations, *result.memory_operations],
        notes=[*result.notes, *review.failures],
    )


def _stored_result(result: ToolResult, operation: MemoryOperation | None) -> dict[str, object]:
    """The tool result as recall keeps it: what the model read, and (not shown to the model)
    what the call did to memory in words, so a transcript can show it again."""
    data: dict[str, object] = result.as_json()
    if operation is not None:
        data["operation"] = operation.summary
    return data


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes} minutes ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} hours ago"
    return f"{minutes // (24 * 60)} days ago"
