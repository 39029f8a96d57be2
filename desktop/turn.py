"""Draws one step into the chat as it happens: the reply streaming into its bubble, a line per
memory operation, page-out dividers, and the step's closing notes."""

from __future__ import annotations

import datetime as dt

from PySide6.QtWidgets import QWidget

from desktop.chat_view import ChatView, ExpandableRow, ForgetCard, MessageBubble
from engine.agent import StepResult
from engine.transcript import pageout_entry
from engine.types import (
    ForgetProposed,
    ModelCallStarted,
    PagedOut,
    Remembered,
    ReplyDelta,
    Reviewed,
    Reviewing,
    StepEvent,
    ToolDone,
    Working,
)

# Shown from the moment the user sends until the engine names its first phase (engine.types
# Working), and while the model reads its prompt (ModelCallStarted), before it writes.
PHASE_STARTING = "reading your message"
PHASE_PROMPT = "reading the conversation"
PHASE_REFLECTING = "reflecting"


class TurnRenderer:
    """The chat side of one running step (begin() starts the next one)."""

    def __init__(self, chat: ChatView) -> None:
        self.chat = chat
        self._bubbles: dict[int, MessageBubble] = {}  # model call index -> its reply bubble
        # A message the user sent while this step (a reflection) ran: the step's own entries
        # go above it, so nothing of the reflection reads as the answer to it.
        self._before: QWidget | None = None
        self._proposal: tuple[Remembered, ...] = ()  # shown after the reply that lists it

    def begin(self, phase: str = PHASE_STARTING) -> None:
        """A step starts: the working row shows at once, in the reply's place."""
        self._bubbles.clear()
        self._before = None
        self._proposal = ()
        self.chat.show_working(phase)

    def keep_above(self, entry: QWidget) -> None:
        """The rest of this step is drawn above `entry` (the first message sent during it)."""
        if self._before is None:
            self._before = entry

    def on_event(self, event: StepEvent) -> None:
        if isinstance(event, ForgetProposed):
            self._proposal = event.items
        elif isinstance(event, Working):
            self.chat.show_working(event.phase)
        elif isinstance(event, ModelCallStarted):
            self.chat.show_working(PHASE_PROMPT, event.prompt_seconds)
        elif isinstance(event, ReplyDelta):
            self.chat.end_working()  # the reply itself shows it is being written
            self._bubble(event.index).append(event.text)
        elif isinstance(event, ToolDone):
            self._tool_done(event)
        elif isinstance(event, Reviewing):
            # Stop (Esc) ends a long review; what it read so far is kept
            phase = f"reviewing memory: {event.done:,} of {event.total:,} messages read"
            self.chat.show_working(phase, share=event.done / max(1, event.total))
        elif isinstance(event, Reviewed):
            details = "\n".join(op.summary for op in event.operations)
            text = f"memory review of {event.summary()}"
            self._add(ExpandableRow("operation", text, details or "(no changes)"))
        elif isinstance(event, PagedOut):
            now = dt.datetime.now(dt.UTC)
            entry = pageout_entry(event.summary, now)
            self.chat.add_entry(entry, before=self._before)

    def abandon(self) -> None:
        """The step failed: nothing is working any more."""
        self.chat.end_working()

    def finish(self, result: StepResult) -> ForgetCard | None:
        """Draws the step's closing notes; the card of a request to forget, where it made one."""
        self.chat.end_working()
        card = None
        if self._proposal and not result.cancelled:
            card = ForgetCard(self._proposal)
            self._add(card)
        for note in result.notes:
            if not note.startswith("Paged out"):  # the divider already shows those
                self._add(ExpandableRow("note", note, ""))
        if result.cancelled:
            for bubble in self._bubbles.values():
                bubble.set_tag("stopped")
            self._add(ExpandableRow("note", "Stopped: the reply was not finished.", ""))
        return card

    def _add(self, widget: QWidget) -> None:
        self.chat.add(widget, before=self._before)

    def _bubble(self, index: int) -> MessageBubble:
        if index not in self._bubbles:
            self._bubbles[index] = self.chat.bubble("assistant", "", before=self._before)
        return self._bubbles[index]

    def _tool_done(self, event: ToolDone) -> None:
        call, result = event.call, event.result
        if call is not None and call.name == "send_message":
            self.chat.end_working()
            bubble = self._bubble(event.index)
            if result.ok:  # the stored message, whatever the stream showed, stored now
                bubble.set_text(str(call.arguments.get("message", bubble.text)))
                bubble.set_time(dt.datetime.now(dt.UTC))
            else:
                bubble.mark_failed("not sent: " + result.content)
            return
        if event.operation is not None:
            summary, ok = event.operation.summary, event.operation.ok
        elif call is None:
            summary, ok = "a reply the engine could not read (sent back to the model)", False
        else:
            summary, ok = f"{call.name}: {result.content.splitlines()[0][:100]}", result.ok
        self._add(ExpandableRow("operation", summary, result.content, ok))
