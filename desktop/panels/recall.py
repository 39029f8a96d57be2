"""The recall panel: find past messages by words or by date; a result leads to it in the chat."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import StatusLabel, count_of, local_time, submit
from desktop.session import EngineSession
from desktop.worker import EngineWorker
from engine.memory.search import Page
from engine.types import Message

TEXT_LIMIT = 50  # messages a word search shows
DATE_LIMIT = 200  # messages a date range shows
DEFAULT_DAYS = 7
SHOWN_CHARS = 400  # of a message in the list; the tooltip has all of it

Query = Callable[[EngineSession], tuple[Page, list[Message]]]


def readable_text(message: Message) -> str:
    """What the user reads of a message: an assistant's words, not the JSON the model wrote."""
    if message.role == "assistant" and message.search_text:
        return message.search_text
    return message.content


class RecallPanel(QWidget):
    """Word search and date range over the agent's whole message history."""

    message_activated = Signal(int)  # a result's message id (double-click or Enter)

    def __init__(self, worker: EngineWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._last: tuple[str, Query] | None = None  # what the list shows: busy text and query
        self._seq = 0  # answers to older queries are dropped
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        words = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setObjectName("recall-query")
        self.query.setAccessibleName("Search recall")
        self.query.setPlaceholderText("Search past messages")
        self.query.setClearButtonEnabled(True)
        self.query.returnPressed.connect(self.search)
        words.addWidget(self.query)
        words.addWidget(self._button("Search", "recall-search", self.search))
        layout.addLayout(words)

        dates = QHBoxLayout()
        today = QDate.currentDate()
        self.start = self._date_edit("recall-from", today.addDays(-DEFAULT_DAYS))
        self.start.setAccessibleName("From date")
        self.end = self._date_edit("recall-to", today)
        self.end.setAccessibleName("To date")
        dates.addWidget(QLabel("From"))
        dates.addWidget(self.start)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.end)
        dates.addStretch()
        dates.addWidget(self._button("Show", "recall-show", self.show_dates))
        layout.addLayout(dates)

        self.header = StatusLabel()
        self.header.setObjectName("recall-header")
        self.header.hide()
        layout.addWidget(self.header)
        self.results = QListWidget()
        self.results.setObjectName("recall-results")
        self.results.setAccessibleName("Messages found")
        self.results.setWordWrap(True)
        self.results.setAlternatingRowColors(True)
        self.results.setToolTip("Double-click a message to find it in the chat")
        self.results.itemActivated.connect(self._activated)
        layout.addWidget(self.results)

    def _button(self, text: str, name: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    def _date_edit(self, name: str, date: QDate) -> QDateEdit:
        edit = QDateEdit(date)
        edit.setObjectName(name)
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd")
        return edit

    # -- queries -----------------------------------------------------------------------------
    def search(self) -> None:
        """Messages matching the search box's words, best first."""
        text = self.query.text().strip()
        if not text:
            self.header.error("Type some words to search for.")
            return
        self._run("Searching…", lambda session: session.recall_search(text, TEXT_LIMIT))

    def show_dates(self) -> None:
        """Messages between the two dates (local days, both included), oldest first."""
        start: dt.date = self.start.date().toPython()
        end: dt.date = self.end.date().toPython()
        self._run("Loading…", lambda session: session.recall_between(start, end, DATE_LIMIT))

    def refresh(self) -> None:
        """Run the last query again (new messages may match it now)."""
        if self._last is not None:
            self._run(*self._last)

    def _run(self, busy: str, query: Query) -> None:
        self._last = (busy, query)
        self._seq += 1
        seq = self._seq
        self.header.busy(busy)
        submit(
            self,
            self._worker,
            query,
            lambda answer: self._show(seq, *answer),
            lambda exc: self._failed(seq, exc),
        )

    def _failed(self, seq: int, exc: BaseException) -> None:
        if seq == self._seq:
            self.header.failed(exc)

    def _show(self, seq: int, page: Page, messages: list[Message]) -> None:
        if seq != self._seq:
            return
        if page.total > len(messages):
            self.header.info(f"{count_of(page.total, 'result')} (the first {len(messages)} shown)")
        else:
            self.header.info(count_of(page.total, "result"))
        self.results.clear()
        for message in messages:
            self.results.addItem(_item(message))

    def _activated(self, item: QListWidgetItem) -> None:
        self.message_activated.emit(int(item.data(Qt.ItemDataRole.UserRole)))


def _item(message: Message) -> QListWidgetItem:
    text = readable_text(message).strip()
    shown = text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"
    old = "  (an old version: regenerated or edited)" if message.replaced else ""
    item = QListWidgetItem(f"{local_time(message.created_at)}  {message.role}: {shown}{old}")
    item.setToolTip(text)
    item.setData(Qt.ItemDataRole.UserRole, message.id)
    return item
