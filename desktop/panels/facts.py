"""The facts panel: the knowledge graph's facts about a name, now or on a day, with their
history; the user can end a fact that no longer holds or delete one that was never true."""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDateEdit,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import StatusLabel, count_of, submit
from desktop.worker import EngineWorker, Job
from engine.memory.graph import Fact

SHOWN = 500  # facts the list shows at most


class FactsPanel(QWidget):
    """Facts about a name (every fact when the field is blank), optionally as of a day."""

    edited = Signal()

    def __init__(self, worker: EngineWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._seq = 0  # answers to older searches are dropped
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setObjectName("facts-query")
        self.query.setAccessibleName("Name to look up")
        self.query.setPlaceholderText("A name, e.g. Alice (blank: every fact)")
        self.query.setClearButtonEnabled(True)
        self.query.returnPressed.connect(self.refresh)
        row.addWidget(self.query)
        search = QPushButton("Search")
        search.setObjectName("facts-search")
        search.clicked.connect(self.refresh)
        row.addWidget(search)
        layout.addLayout(row)

        when = QHBoxLayout()
        self.as_of = QCheckBox("As of")
        self.as_of.setObjectName("facts-as-of")
        self.as_of.toggled.connect(self._as_of_toggled)
        self.day = QDateEdit(QDate.currentDate())
        self.day.setObjectName("facts-day")
        self.day.setAccessibleName("Day the facts held on")
        self.day.setCalendarPopup(True)
        self.day.setDisplayFormat("yyyy-MM-dd")
        self.day.setEnabled(False)
        self.day.dateChanged.connect(lambda _: self.refresh())
        when.addWidget(self.as_of)
        when.addWidget(self.day)
        when.addStretch()
        layout.addLayout(when)

        self.status = StatusLabel()
        self.status.setObjectName("facts-status")
        layout.addWidget(self.status)
        self.list = QListWidget()
        self.list.setObjectName("facts-list")
        self.list.setAccessibleName("Facts")
        self.list.setWordWrap(True)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        layout.addWidget(self.list, 1)

        buttons = QHBoxLayout()
        self.end_button = QPushButton("No longer true")
        self.end_button.setObjectName("facts-end")
        self.end_button.setToolTip("End the fact now; it stays in the history")
        self.end_button.clicked.connect(self._end_selected)
        self.delete_button = QPushButton("Never true…")
        self.delete_button.setObjectName("facts-delete")
        self.delete_button.setToolTip("Delete the fact: it was wrong")
        self.delete_button.clicked.connect(self._delete_selected)
        buttons.addWidget(self.end_button)
        buttons.addWidget(self.delete_button)
        buttons.addStretch()
        layout.addLayout(buttons)
        self._update_buttons()

    # -- searching ---------------------------------------------------------------------------
    def refresh(self) -> None:
        self._seq += 1
        seq, entity, at = self._seq, self.query.text(), self._day()
        self.status.busy("Looking up…")
        submit(
            self,
            self._worker,
            lambda session: session.facts(entity, at),
            lambda facts: self._show(seq, facts),
            lambda exc: self._failed(seq, exc),
        )

    def _day(self) -> dt.date | None:
        return self.day.date().toPython() if self.as_of.isChecked() else None  # type: ignore[return-value]

    def _as_of_toggled(self, on: bool) -> None:
        self.day.setEnabled(on)
        self.refresh()

    def _show(self, seq: int, facts: list[Fact]) -> None:
        if seq != self._seq:
            return
        self.list.clear()
        for fact in facts[:SHOWN]:
            item = QListWidgetItem(fact.render())
            item.setData(Qt.ItemDataRole.UserRole, fact.id)
            item.setData(Qt.ItemDataRole.UserRole + 1, fact.current)
            if not fact.current:
                item.setForeground(self.palette().placeholderText())
            item.setToolTip(
                f"fact {fact.id}" + (f", saved by {fact.source}" if fact.source else "")
            )
            self.list.addItem(item)
        more = f" (first {SHOWN})" if len(facts) > SHOWN else ""
        self.status.info(f"{count_of(len(facts), 'fact')}{more}" if facts else "No facts.")
        self._update_buttons()

    def _failed(self, seq: int, exc: BaseException) -> None:
        if seq == self._seq:
            self.status.failed(exc)

    # -- the user's corrections --------------------------------------------------------------
    def _selected(self) -> tuple[int, bool] | None:
        item = self.list.currentItem()
        if item is None:
            return None
        return int(item.data(Qt.ItemDataRole.UserRole)), bool(
            item.data(Qt.ItemDataRole.UserRole + 1)
        )

    def _update_buttons(self) -> None:
        selected = self._selected()
        self.end_button.setEnabled(selected is not None and selected[1])
        self.delete_button.setEnabled(selected is not None)

    def _end_selected(self) -> None:
        selected = self._selected()
        if selected is not None:
            fact_id = selected[0]
            self._change(lambda session: session.end_fact(fact_id))

    def _delete_selected(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        answer = QMessageBox.question(
            self,
            "Delete fact",
            f"Delete “{self.list.currentItem().text()}”? Use this for a fact that was never "
            "true; for one that stopped being true, use “No longer true”.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            fact_id = selected[0]
            self._change(lambda session: session.delete_fact(fact_id))

    def _change(self, job: Job) -> None:
        self.status.busy("Saving…")
        submit(self, self._worker, job, lambda _: self._changed(), self._change_failed)

    def _changed(self) -> None:
        self.edited.emit()
        self.refresh()

    def _change_failed(self, exc: BaseException) -> None:
        self.status.failed(exc)
