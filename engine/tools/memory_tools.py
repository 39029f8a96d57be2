"""The memory tools: validate a call's arguments, act on the memory tiers, return a result string."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from engine.memory.archival import ArchivalMemory
from engine.memory.core import CoreMemory, CoreMemoryError
from engine.memory.forget import Forgetting
from engine.memory.graph import GraphError, KnowledgeGraph
from engine.memory.recall import RecallMemory
from engine.memory.search import Page
from engine.tools.registry import (
    TOOL_ARGS,
    ArchivalMemoryInsertArgs,
    CoreMemoryAppendArgs,
    CoreMemoryReplaceArgs,
    DateSearchArgs,
    GraphInsertArgs,
    GraphSearchArgs,
    MemoryForgetArgs,
    SearchArgs,
    SendMessageArgs,
)
from engine.tools.reply_checks import (
    in_third_person,
    lines_already_held,
    question_lines,
    unheard_names,
)
from engine.types import MemoryOperation, ToolCall, ToolResult

HIT_CHARS = 400  # a search hit longer than this is shown cut, with its id to fetch more
FACTS_WITH_PASSAGES = 5  # current facts about the query's entities an archival search shows
FACTS_PER_SEARCH = 20
USER_SECTION = "human"  # the core block of facts about the user


class ToolFailure(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


def _clip(text: str, limit: int = HIT_CHARS) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def _parse_day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ToolFailure(f"{name} {value!r} is not a date like 2024-05-31") from None


def _not_text(arguments: dict[Any, Any]) -> str | None:
    """Where in `arguments` a string (key or value) is not Unicode text that can be stored
    (it holds a lone surrogate, e.g. from a \\ud800 escape), as a dotted path; None if none.
    pydantic lets such strings through where a field has no length limit (list items)."""
    stack: list[tuple[str, Any, int]] = [("arguments", arguments, 0)]
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return ascii(where)[1:-1]
        elif depth > 8:
            continue  # deeper than any tool's arguments: validation refuses it anyway
        elif isinstance(item, (list, tuple)):
            stack += [(f"{where}.{i}", v, depth + 1) for i, v in enumerate(item)]
        elif isinstance(item, dict):
            inner = "" if item is arguments else f"{where}."
            stack += [(f"{inner}{k}", v, depth + 1) for k, v in item.items()]
            stack += [(where, k, depth + 1) for k in item]
    return None


def _validation_message(name: str, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
    )
    return f"invalid arguments for {name}: {problems}"


class MemoryTool:
    """The tools of one agent. Every public method returns the result string the model reads."""

    def __init__(
        self,
        core: CoreMemory,
        recall: RecallMemory,
        archival: ArchivalMemory,
        graph: KnowledgeGraph,
        on_user_core_edit: Callable[[], None] | None = None,
        result_room: Callable[[], int] | None = None,
        count_result_tokens: Callable[[ToolResult], int] | None = None,
        check_core_edits: bool = True,
        forgetting: Forgetting | None = None,
    ) -> None:
        """`result_room` says how many tokens a result may take in the context now, and
        `count_result_tokens` measures one as the model will see it: searches then show fewer
        hits a page when a full page would not fit (without them, pages are as asked).

        `check_core_edits` (engine.types.Assists): the model's core appends of lines a block
        holds already change nothing, and its replaces that put in a name nobody ever said are
        refused (engine.tools.reply_checks). The user's own edits are never checked.

        `forgetting` finds what memory_forget shows the user (without it, the tool says it
        cannot be used here)."""
        self.core = core
        self.check_core_edits = check_core_edits
        self._result_room = result_room
        self._count_result_tokens = count_result_tokens
        # The model sees its own edits as calls in the conversation; a user's edit made through
        # this API must reach the system prompt instead, so the owner is told.
        self._on_user_core_edit = on_user_core_edit
        self.recall = recall
        self.archival = archival
        self.graph = graph
        self.forgetting = forgetting
        self.operations: list[MemoryOperation] = []
        self.sent_messages: list[str] = []
        self._actor = "user"  # who the running call acts for; set by dispatch
        self._impls: dict[str, Callable[[Any], str | ToolResult]] = {
            "send_message": self._send_message,
            "core_memory_append": self._core_memory_append,
            "core_memory_replace": self._core_memory_replace,
            "archival_memory_insert": self._archival_memory_insert,
            "archival_memory_search": self._archival_memory_search,
            "conversation_search": self._conversation_search,
            "conversation_search_date": self._conversation_search_date,
            "graph_insert": self._graph_insert,
            "graph_search": self._graph_search,
            "memory_forget": self._memory_forget,
        }

    # -- dispatch ----------------------------------------------------------------------------
    def dispatch(self, call: ToolCall, actor: str | None = None) -> ToolResult:
        """Validate and run one call; any failure becomes a tool error, never an exception."""
        model = TOOL_ARGS.get(call.name)
        if model is None:
            known = ", ".join(TOOL_ARGS)
            return ToolResult(
                call.name, False, f"unknown tool {_clip(call.name, 60)!r}; tools: {known}"
            )
        where = _not_text(call.arguments) if isinstance(call.arguments, dict) else None
        if where is not None:
            return self._failed(
                call.name,
                f"invalid arguments for {call.name}: {where}: not valid Unicode text (a lone "
                "surrogate); write the characters themselves",
            )
        try:
            args = model.model_validate(call.arguments)
            self._actor = actor or f"tool:{call.name}"
            done = self._impls[call.name](args)
        except ValidationError as exc:
            return self._failed(call.name, _validation_message(call.name, exc))
        except (ToolFailure, CoreMemoryError, GraphError) as exc:
            return self._failed(call.name, str(exc))
        return done if isinstance(done, ToolResult) else ToolResult(call.name, True, done)

    def _failed(self, name: str, message: str) -> ToolResult:
        if name != "send_message":
            self.operations.append(MemoryOperation(name, message, ok=False))
        return ToolResult(name, False, message)

    def _call(self, name: str, **arguments: Any) -> str:
        result = self.dispatch(ToolCall(name, arguments), actor="user")
        return result.content if result.ok else f"Error: {result.content}"

    # -- the public, typed API (agent.tools.X(...)) ------------------------------------------
    def send_message(self, message: str) -> str:
        return self._call("send_message", message=message)

    def core_memory_append(self, section: str, content: str) -> str:
        return self._call("core_memory_append", section=section, content=content)

    def core_memory_replace(self, section: str, old_content: str, new_content: str) -> str:
        return self._call(
            "core_memory_replace", section=section, old_content=old_content, new_content=new_content
        )

    def archival_memory_insert(self, content: str, tags: list[str] | None = None) -> str:
        return self._call("archival_memory_insert", content=content, tags=tags)

    def archival_memory_search(self, query: str, limit: int = 5, page: int = 0) -> str:
        return self._call("archival_memory_search", query=query, limit=limit, page=page)

    def conversation_search(self, query: str, limit: int = 5, page: int = 0) -> str:
        return self._call("conversation_search", query=query, limit=limit, page=page)

    def conversation_search_date(
        self, start_date: str, end_date: str, limit: int = 5, page: int = 0
    ) -> str:
        return self._call(
            "conversation_search_date",
            start_date=start_date,
            end_date=end_date,
            limit=limit,
            page=page,
        )

    def graph_insert(
        self,
        subject: str,
        relation: str,
        object: str,  # noqa: A002 - the tool's argument name
        valid_from: str | None = None,
        exclusive: bool = True,
    ) -> str:
        return self._call(
            "graph_insert",
            subject=subject,
            relation=relation,
            object=object,
            valid_from=valid_from,
            exclusive=exclusive,
        )

    def graph_search(self, entity: str, relation: str | None = None, at: str | None = None) -> str:
        return self._call("graph_search", entity=entity, relation=relation, at=at)

    # -- implementations ---------------------------------------------------------------------
    def memory_forget(self, query: str) -> str:
        return self._call("memory_forget", query=query)

    def _send_message(self, args: SendMessageArgs) -> str:
        if not args.message.strip():
            raise ToolFailure("message is empty: write something for the user")
        self.sent_messages.append(args.message)
        return "Message sent."

    def _core_memory_append(self, args: CoreMemoryAppendArgs) -> str:
        if not args.content.strip():
            raise ToolFailure("content is empty: nothing to append")
        content = args.content
        asked = question_lines(content) if self._checked() else []
        if asked:
            raise ToolFailure(
                f"{_clip(asked[0], 60)!r} is a question, not a fact: core memory keeps what is "
                "known, and a question is answered with send_message. Nothing changed."
            )
        voiced = ""
        if self._checked() and args.section == USER_SECTION:
            # read back later, "I work at Acme" in the 'human' block became the assistant's own
            # fact; asked to write it again, a small model saved nothing
            said_of_them = in_third_person(content)
            if said_of_them != content:
                content = said_of_them
                voiced = f" (said of the user: {_clip(content, 80)!r})"
        if self._checked():
            held, new = lines_already_held(content, self._block_value(args.section))
            if not new:
                self._note(
                    "core_memory_append",
                    f"already in core memory ({args.section}): {_clip(content, 80)}",
                    changed=False,
                )
                return (
                    f"Already in {args.section!r}: {_clip(' / '.join(held), 120)}. Nothing "
                    "changed. Next: reply to the user with send_message."
                )
            content = "\n".join(new)
        block = self.core.append(args.section, content, actor=self._actor)
        self._core_edited()
        self._note(
            "core_memory_append",
            f"saved to core memory ({args.section}): {_clip(content, 80)}",
        )
        return (
            f"Appended to {args.section!r}{voiced}; {len(block.value)}/{block.limit} chars used. "
            "Next: reply to the user with send_message."
        )

    def _core_memory_replace(self, args: CoreMemoryReplaceArgs) -> str:
        if self._checked():
            unheard = unheard_names(args.old_content, args.new_content, self._was_said)
            if unheard:
                names = ", ".join(repr(n) for n in unheard)
                raise ToolFailure(
                    f"{names} is in no message, passage or core memory: core memory keeps what "
                    "was said. Nothing changed. Use the user's own words."
                )
        block = self.core.replace(
            args.section, args.old_content, args.new_content, actor=self._actor
        )
        self._core_edited()
        what = "deleted from" if not args.new_content else "updated"
        self._note(
            "core_memory_replace",
            f"{what} core memory ({args.section}): {_clip(args.old_content, 60)}",
        )
        return f"Replaced in {args.section!r}; {len(block.value)}/{block.limit} chars used."

    def _archival_memory_insert(self, args: ArchivalMemoryInsertArgs) -> str:
        if not args.content.strip():
            raise ToolFailure("content is empty: nothing to save")
        passage_id = self.archival.insert(args.content, tags=args.tags, source=self._actor)
        self._note("archival_memory_insert", f"saved to archival memory: {_clip(args.content, 80)}")
        return (
            f"Saved to archival memory as passage {passage_id}. "
            "Next: reply to the user with send_message."
        )

    def _archival_memory_search(self, args: SearchArgs) -> str:
        ranked = self.archival.ranked(args.query)  # once: a smaller page re-pages, not re-ranks

        def show(limit: int, page_number: int) -> tuple[Page, str]:
            page, passages = self.archival.page_of(ranked, limit, page_number)
            lines = [page.header("passages")]
            for p in passages:
                tags = f" (tags: {', '.join(p.tags)})" if p.tags else ""
                lines.append(f"[id {p.id}, {p.created_at:%Y-%m-%d %H:%M}] {_clip(p.text)}{tags}")
            return page, "\n".join(lines)

        page, text = self._fitted_page("archival_memory_search", show, args.limit, args.page)
        facts = self.graph.about(args.query, FACTS_WITH_PASSAGES) if args.page == 0 else []
        if facts:  # what the graph knows now about the names in the query, on the first page
            text += "\nFacts now known:\n" + "\n".join(f"- {f.render()}" for f in facts)
        self._note(
            "archival_memory_search",
            f"searched archival for {args.query!r}: {page.total} results",
            changed=False,
        )
        return text

    def _conversation_search(self, args: SearchArgs) -> str:
        ranked = self.recall.ranked(args.query)
        page, text = self._message_page("conversation_search", ranked, args.limit, args.page)
        self._note(
            "conversation_search",
            f"searched conversation for {args.query!r}: {page.total} results",
            changed=False,
        )
        return text

    def _message_page(
        self, tool: str, ids: list[int], limit: int, page_number: int
    ) -> tuple[Page, str]:
        """One page of recall messages, as many a page as fit (see _fitted_page)."""

        def show(limit: int, page_number: int) -> tuple[Page, str]:
            page, messages = self.recall.page_of(ids, limit, page_number)
            return page, self._format_messages(page.header("messages"), messages)

        return self._fitted_page(tool, show, limit, page_number)

    def _fitted_page(
        self, tool: str, show: Callable[[int, int], tuple[Page, str]], limit: int, page_number: int
    ) -> tuple[Page, str]:
        """The page asked for, or, when it would not fit the context now, a smaller page that
        holds the same first result (the header tells the model how to page on)."""
        page, text = show(limit, page_number)
        if self._result_room is None or self._count_result_tokens is None:
            return page, text
        room = self._result_room()
        first = page_number * limit
        while limit > 1:
            tokens = self._count_result_tokens(ToolResult(tool, True, text))
            if tokens <= room:
                break
            limit = max(1, min(limit - 1, limit * room // tokens))
            page, text = show(limit, first // limit)
        return page, text

    def _conversation_search_date(self, args: DateSearchArgs) -> str:
        start = _parse_day(args.start_date, "start_date")
        end = _parse_day(args.end_date, "end_date")
        if end < start:
            raise ToolFailure(f"end_date {end} is before start_date {start}")
        after = (  # the end of end_date; 9999-12-31 has no next day
            dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
            if end < dt.date.max
            else dt.datetime.max.replace(tzinfo=dt.UTC)
        )
        dated = self.recall.dated(dt.datetime.combine(start, dt.time(), dt.UTC), after)
        page, text = self._message_page("conversation_search_date", dated, args.limit, args.page)
        self._note(
            "conversation_search_date",
            f"listed messages {start}..{end}: {page.total} results",
            changed=False,
        )
        return text

    def _graph_insert(self, args: GraphInsertArgs) -> str:
        done = self.graph.insert(
            args.subject,
            args.relation,
            args.object,
            args.valid_from,
            exclusive=args.exclusive,
            source=self._actor,
        )
        fact = done.fact.render()
        if done.duplicate:
            self._note("graph_insert", f"already known: {fact}", changed=False)
            return f"Already known: {fact}. Next: reply to the user with send_message."
        ended = "".join(f" It ends: {old.render()}." for old in done.closed)
        self._note("graph_insert", f"saved fact: {fact}{ended}")
        return (
            f"Saved fact {done.fact.id}: {fact}.{ended} Next: reply to the user with send_message."
        )

    def _graph_search(self, args: GraphSearchArgs) -> str:
        facts = self.graph.search(args.entity, args.relation, args.at)
        when = f" at {args.at}" if args.at else ""
        self._note(
            "graph_search",
            f"looked up {args.entity!r}{when}: {len(facts)} facts",
            changed=False,
        )
        if not facts:
            return f"No facts about {args.entity!r}{when}."
        shown = facts[:FACTS_PER_SEARCH]
        more = f" (first {len(shown)} of {len(facts)})" if len(facts) > len(shown) else ""
        lines = [f"{len(facts)} facts about {args.entity!r}{when}{more}:"]
        lines += [f"- {f.render()}" for f in shown]
        return "\n".join(lines)

    def _memory_forget(self, args: MemoryForgetArgs) -> ToolResult:
        """Finds what memory keeps about `query` and proposes it to the user, who chooses what
        goes (MemGPTAgent.forget): nothing is forgotten here. The model asked to forget by
        editing tried to replace text that was not there; the user sees the real lines."""
        if self.forgetting is None:
            raise ToolFailure("forgetting is not available here")
        found = tuple(self.forgetting.candidates(args.query))
        self._note(
            "memory_forget",
            f"looked for what to forget about {args.query!r}: {len(found)} found",
            changed=False,
        )
        if not found:
            text = (
                f"Memory keeps nothing about {args.query!r}: nothing to forget. Next: tell the "
                "user with send_message."
            )
            return ToolResult("memory_forget", True, text)
        listed = "\n".join(f"- {item.text}" for item in found)
        text = (
            f"Memory keeps this about {args.query!r}, now shown to the user, who chooses what "
            f"is forgotten (nothing is forgotten yet):\n{listed}\nNext: tell the user with "
            "send_message that they can choose what to forget."
        )
        return ToolResult("memory_forget", True, text, forget_proposal=found)

    @staticmethod
    def _format_messages(header: str, messages: list[Any]) -> str:
        lines = [header]
        for m in messages:
            lines.append(
                f"[id {m.id}, {m.created_at:%Y-%m-%d %H:%M}, {m.role}] {_clip(m.search_text or m.content)}"
            )
        return "\n".join(lines)

    def _checked(self) -> bool:
        """Whether this call's core edit is checked: the model's, when the check is on."""
        return self.check_core_edits and self._actor != "user"

    def _block_value(self, label: str) -> str:
        try:
            return self.core.block(label).value
        except KeyError:
            return ""  # core.append says the section is unknown

    def _was_said(self, word: str) -> bool:
        """Whether anyone ever wrote `word`: in a message, a passage or a core block."""
        if self.recall.holds_word(word) or self.archival.holds_word(word):
            return True
        pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        return any(pattern.search(value) for value in self.core.values())

    def _core_edited(self) -> None:
        if self._actor == "user" and self._on_user_core_edit is not None:
            self._on_user_core_edit()

    def _note(self, tool: str, summary: str, changed: bool = True) -> None:
        self.operations.append(MemoryOperation(tool, summary, changed=changed))
