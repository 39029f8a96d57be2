"""Typed values that cross the engine's stage boundaries: persona, messages, tool calls, responses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Role = Literal["system", "user", "assistant", "tool"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Persona:
    """Who the agent is; rendered into the persona core-memory block on first creation."""

    name: str
    description: str
    traits: list[str] = field(default_factory=list)

    def render(self) -> str:
        text = f"I am {self.name}. {self.description.strip()}"
        if self.traits:
            text += "\nTraits: " + ", ".join(self.traits) + "."
        return text


@dataclass(frozen=True)
class Assists:
    """The engine's help for small models, each on by default; bench/memory_qa.py measures what
    each one buys by turning it off.

    - page_in: before the model answers a user message, the engine searches recall (what is out
      of view), archival memory and the graph for it and shows the best hits as a note after it;
    - check_core_edits: a core line already there is a no-op, a replace that puts in a
      name no message, passage or block ever held is refused, and so is a core line saved in
      answer to a message that only asks, with words that message does not hold;
    - refuse_repeats: a reply identical to an earlier one still in view is not sent;
    - check_voice: a reply that states the user's core facts as the assistant's own ("I work at
      Acme") is sent said to the user ("You work at Acme"), and a 'human' line written as
      "I ..." is saved said of them ("They work at Acme");
    - roles_prompt: the instructions say plainly whose facts the 'human' block holds;
    - reading: for a user message that asks something, a short separate model call reads
      page-in's hits (the messages in view among them) and core memory for the answer, and the
      note gives it (engine.reading);
    - direct_answer: for a message that only asks, and whose reading found the answer, that
      answer is the reply, sent by the engine with no model call (a small model told the answer
      mostly wrapped it in a sentence of its own, often around the wrong fact);
    - help_requests: a reply that declines a message asking for help ("I'm sorry, I can't
      assist with that." to "Can you help me draft an agenda?") is not sent.
    A refused reply goes back to the model as a tool error, at most MAX_REPLY_RETRIES a turn."""

    page_in: bool = True
    check_core_edits: bool = True
    refuse_repeats: bool = True
    check_voice: bool = True
    roles_prompt: bool = True
    reading: bool = True
    direct_answer: bool = True
    help_requests: bool = True

    NAMES: ClassVar[tuple[str, ...]] = (
        "page_in",
        "check_core_edits",
        "refuse_repeats",
        "check_voice",
        "roles_prompt",
        "reading",
        "direct_answer",
        "help_requests",
    )

    @classmethod
    def none(cls) -> Assists:
        return cls(**{name: False for name in cls.NAMES})

    def without(self, *names: str) -> Assists:
        unknown = set(names) - set(self.NAMES)
        if unknown:
            raise ValueError(f"unknown assists {sorted(unknown)}; known: {', '.join(self.NAMES)}")
        return dataclasses.replace(self, **{name: False for name in names})


@dataclass(frozen=True)
class ChatMessage:
    """One message as the model sees it: a role and its text (what the chat template renders)."""

    role: Role
    content: str


@dataclass(frozen=True)
class Message:
    """One stored message of recall memory."""

    id: int
    agent_id: int
    session_id: int
    role: Role
    content: str
    created_at: dt.datetime
    token_count: int
    in_context: bool
    tool_call: dict[str, Any] | None = None
    tool_result: dict[str, Any] | None = None
    search_text: str = ""
    replaced: bool = False  # an old version: its reply was regenerated, or it was edited

    def as_chat(self) -> ChatMessage:
        return ChatMessage(self.role, self.content)


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for, parsed from its reply (arguments not yet validated)."""

    name: str
    arguments: dict[str, Any]
    request_heartbeat: bool = False
    thought: str | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.thought:
            data["thought"] = self.thought
        data["tool"] = self.name
        data["arguments"] = self.arguments
        data["request_heartbeat"] = self.request_heartbeat
        return data


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned to the model; ok=False is a tool error the model can correct.
    `forget_proposal`: what memory_forget found, for the user to choose what is forgotten."""

    name: str
    ok: bool
    content: str
    forget_proposal: tuple[Remembered, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"tool": self.name, "status": "OK" if self.ok else "Failed", "message": self.content}


@dataclass(frozen=True)
class MemoryOperation:
    """A change or read of memory made during a step, for the user to see."""

    tool: str
    summary: str
    ok: bool = True
    changed: bool = True  # False: a search, or a repeat of what memory held already


@dataclass(frozen=True)
class ContextUsage:
    """Size of the prompt sent to the model, in the model's own tokens, and the lines it is
    measured against. `sections` add up to `context_window`: system, core_memory, summary,
    messages (the prompt), reply_reserve and free. The thresholds are token counts: the
    memory-pressure warning at `warn_at`, a page-out above `flush_at`, down to `target_at`;
    `prompt_budget` (the window less the reply reserve) is the hard ceiling of a prompt."""

    prompt_tokens: int
    context_window: int
    sections: dict[str, int] = field(default_factory=dict)
    prompt_budget: int = 0
    warn_at: int = 0
    flush_at: int = 0
    target_at: int = 0

    @property
    def fraction(self) -> float:
        return self.prompt_tokens / self.context_window if self.context_window else 0.0

    @property
    def pressure(self) -> Literal["ok", "warning", "flush"]:
        if self.flush_at and self.prompt_tokens > self.flush_at:
            return "flush"
        if self.warn_at and self.prompt_tokens > self.warn_at:
            return "warning"
        return "ok"


# The phases of a step (engine.timing), in the order a table of them reads.
PHASE_PROMPT_EVAL = "prompt_eval"  # llama.cpp: evaluating the prompt tokens not in the KV cache
PHASE_GENERATION = "generation"  # llama.cpp: decoding the reply's tokens
PHASE_MODEL = "model"  # the rest of the model call: sampling, grammar, the token loop
PHASE_EMBEDDING = "embedding"  # the embedding model (messages stored, search queries)
PHASE_CONTEXT = "context"  # building the window (the context builder's own work)
PHASE_TEMPLATE = "template"  # rendering messages with the model's chat template
PHASE_TOKENIZE = "tokenize"  # tokenizing rendered prompts (counting and the model call)
PHASE_STREAM = "stream"  # handing the reply on as it is generated (text, events)
PHASE_PARSE = "parse"  # reading the reply as a tool call
PHASE_DISPATCH = "dispatch"  # running the tool (its Python; its database work is "database")
PHASE_STORE = "store"  # storing messages (their Python; database and embedding apart)
PHASE_DATABASE = "database"  # SQLite statements, transactions and commits
PHASE_OTHER = "other"  # what no phase covers: the loop, events, bookkeeping


@dataclass(frozen=True)
class StepTimings:
    """Where one step's wall time went (engine.timing): seconds per phase, each phase's own
    time (a phase inside another counts only in the inner one), with "other" for what no phase
    covers, so the phases add up to `wall_s`. Model time is the phases of MODEL_PHASES (the
    chat model's prompt evaluation, decoding and sampling, and the embedding model); the rest
    is the engine's overhead."""

    wall_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    ORDER: ClassVar[tuple[str, ...]] = (
        PHASE_PROMPT_EVAL,
        PHASE_GENERATION,
        PHASE_MODEL,
        PHASE_EMBEDDING,
        PHASE_CONTEXT,
        PHASE_TEMPLATE,
        PHASE_TOKENIZE,
        PHASE_STREAM,
        PHASE_PARSE,
        PHASE_DISPATCH,
        PHASE_STORE,
        PHASE_DATABASE,
        PHASE_OTHER,
    )
    MODEL_PHASES: ClassVar[frozenset[str]] = frozenset(
        {PHASE_PROMPT_EVAL, PHASE_GENERATION, PHASE_MODEL, PHASE_EMBEDDING}
    )

    def seconds(self, name: str) -> float:
        return self.phases.get(name, 0.0)

    @property
    def model_s(self) -> float:
        """The models' time: prompt evaluation, generation (decoding, sampling), embedding."""
        return sum(s for name, s in self.phases.items() if name in self.MODEL_PHASES)

    @property
    def engine_s(self) -> float:
        """Everything but the models: the engine's overhead."""
        return max(0.0, self.wall_s - self.model_s)

    def rows(self) -> list[tuple[str, float]]:
        """(phase, seconds) for every phase, in ORDER ("other" last; phases of other names
        before it)."""
        known = [(name, self.phases.get(name, 0.0)) for name in self.ORDER[:-1]]
        extra = [(n, s) for n, s in self.phases.items() if n not in self.ORDER]
        return [*known, *extra, (PHASE_OTHER, self.phases.get(PHASE_OTHER, 0.0))]


@dataclass(frozen=True)
class AgentResponse:
    """The result of one `agent.step()`: the reply to the user and what happened on the way."""

    message: str | None
    tool_calls: list[ToolCall]
    memory_operations: list[MemoryOperation]
    context_usage: ContextUsage
    steps: int = 1
    stopped_by_step_limit: bool = False
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False  # the user stopped the step (agent.cancel()) before it finished
    timings: StepTimings = field(default_factory=StepTimings)  # where the step's time went


# -- what a step reports while it runs (agent.step(text, on_event=...)) -----------------------


@dataclass(frozen=True)
class Remembered:
    """One thing memory keeps about the user. `item_id`: the block's id (core), the fact's
    or the passage's; `text`: the line, the fact as read, or the passage."""

    tier: Literal["core", "fact", "passage"]
    item_id: int
    text: str
    saved_at: dt.datetime | None
    saved_by: str  # "the assistant", "memory review", "you"
    source: Message | None  # the user's message it answered, where one came before it
    label: str = ""  # the core block's label


@dataclass(frozen=True)
class ForgetProposed:
    """The user asked to forget something, and memory keeps these about it: the user is to
    choose which go (MemGPTAgent.forget); nothing is forgotten yet."""

    items: tuple[Remembered, ...]


@dataclass(frozen=True)
class Working:
    """What the step is doing now, for a user waiting on it: one of the PHASE_* words below.
    Sent as each phase begins (a model call's own start is ModelCallStarted)."""

    phase: str


PHASE_SEARCHING = "searching memory"
PHASE_READING_MEMORY = "reading what memory found"
PHASE_WRITING = "writing"  # the model's first token came: the prompt is read


@dataclass(frozen=True)
class ModelCallStarted:
    """The model starts its `index`-th call of the step (0-based); reading its prompt will take
    about `prompt_seconds` (0.0: not known; engine.llm.base.prompt_seconds)."""

    index: int
    prompt_seconds: float = 0.0


@dataclass(frozen=True)
class ReplyDelta:
    """More of the message to the user, as the model writes it (call `index` of the step)."""

    index: int
    text: str


@dataclass(frozen=True)
class ToolDone:
    """A reply of call `index` was read and run. `call` is None when it could not be read;
    `operation` is what it did to memory, in words, when it touched memory."""

    index: int
    call: ToolCall | None
    result: ToolResult
    operation: MemoryOperation | None = None


@dataclass(frozen=True)
class PagedOut:
    """Old messages left the context window; `summary` is the recursive summary that now
    stands for them (None when the summary call failed and waits for a retry)."""

    first_message_id: int
    last_message_id: int
    count: int
    summary: str | None


@dataclass(frozen=True)
class Reviewing:
    """The memory review reads a piece of what waits for it: `done` of the `total` messages
    were read before this piece (a long review's progress, for a user who may stop it)."""

    done: int
    total: int


@dataclass(frozen=True)
class Organised:
    """What idle memory work (MemGPTAgent.organise) did between two turns: the messages it
    paged out (with the summary that stands for them, when it was written), whether the summary
    was brought up to date, the prompt tokens read ahead into the model's cache, the tokens
    whose cache was saved for the next start, and whether it was stopped (the user sent
    something) before it was done."""

    page_out: PagedOut | None = None
    summarised: bool = False
    read_ahead: int = 0
    saved: int = 0
    stopped: bool = False


@dataclass(frozen=True)
class Reviewed:
    """The memory review (engine.consolidate) read messages `first_message_id`..
    `last_message_id` and changed memory so (repeats it merged are in `operations` too)."""

    first_message_id: int
    last_message_id: int
    operations: tuple[MemoryOperation, ...]

    @property
    def changes(self) -> list[MemoryOperation]:
        return [op for op in self.operations if op.ok and op.changed]

    def summary(self) -> str:
        """E.g. "messages 3-9: 2 changes"."""
        count = len(self.changes)
        what = f"{count} change{'s' if count != 1 else ''}" if count else "nothing new"
        return f"messages {self.first_message_id}-{self.last_message_id}: {what}"


StepEvent = (
    ForgetProposed
    | Working
    | ModelCallStarted
    | ReplyDelta
    | ToolDone
    | PagedOut
    | Reviewing
    | Reviewed
)


@dataclass(frozen=True)
class ToolSpec:
    """What the model reads about a tool: its name, description and JSON schema of arguments.

    `parameters` is a JSON-schema object (type=object, properties, required); it never includes
    `request_heartbeat`, which is a top-level field of every reply (see engine.llm.grammar).
    """

    name: str
    description: str
    parameters: dict[str, Any]
