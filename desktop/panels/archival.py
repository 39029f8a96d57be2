"""The archival panel: search, read, add, edit and delete the agent's long-term passages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import StatusLabel, count_of, first_line, local_time, submit
from desktop.worker import EngineWorker, Job
from engine.memory.archival import Passage

LIMIT = 50  # passages a search shows


def parse_tags(text: str) -> list[str]:
    """Comma-separated tags, trimmed, empty ones and repeats dropped."""
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


class ArchivalPanel(QWidget):
    """A search box, the matching passages, and an editor for the selected one."""

    edited = Signal()  # a passage was added, changed or deleted

    def __init__(self, worker: EngineWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._query = ""  # the search the list shows
        self._passages: dict[int, Passage] = {}
        self._selected: int | None = None
        self._search_seq = 0  # answers to older searches are dropped
        self._pending = 0  # edits in flight
        self._build()
        self.refresh()

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setObjectName("archival-query")
        self.query.setAccessibleName("Search archival memory")
        self.query.setPlaceholderText("Search archival memory (empty: newest passages)")
        self.query.setClearButtonEnabled(True)
        self.query.returnPressed.connect(self.search)
        row.addWidget(self.query)
        row.addWidget(self._button("Search", "archival-search", self.search))
        layout.addLayout(row)
        self.count = StatusLabel(keep_room=True)
        self.count.setObjectName("archival-count")
        layout.addWidget(self.count)

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.results = QTableWidget(0, 3)
        self.results.setObjectName("archival-results")
        self.results.setAccessibleName("Passages found")
        self.results.setHorizontalHeaderLabels(["Date", "Tags", "Text"])
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.verticalHeader().hide()
        header = self.results.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.results.itemSelectionChanged.connect(self._selection_changed)
        splitter.addWidget(self.results)
        splitter.addWidget(self._build_editor())
        layout.addWidget(splitter)

    def _build_editor(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.text = QPlainTextEdit()
        self.text.setObjectName("archival-text")
        self.text.setAccessibleName("Passage text")
        self.text.setPlaceholderText("Passage text")
        self.text.textChanged.connect(self._update_buttons)
        layout.addWidget(self.text)
        self.tags = QLineEdit()
        self.tags.setObjectName("archival-tags")
        self.tags.setAccessibleName("Tags of the passage")
        self.tags.setPlaceholderText("tags, comma-separated")
        self.tags.textChanged.connect(self._update_buttons)
        layout.addWidget(self.tags)
        row = QHBoxLayout()
        self.new_button = self._button("New", "archival-new", self._new)
        self.new_button.setToolTip("Clear the editor to write a new passage")
        self.add_button = self._button("Add", "archival-add", self._add)
        self.add_button.setToolTip("Store the editor's text as a new passage")
        self.save_button = self._button("Save", "archival-save", self._save)
        self.delete_button = self._button("Delete", "archival-delete", self._delete)
        row.addWidget(self.new_button)
        row.addStretch()
        for button in (self.add_button, self.save_button, self.delete_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.status = StatusLabel(keep_room=True)
        self.status.setObjectName("archival-status")
        layout.addWidget(self.status)
        self._update_buttons()
        return box

    def _button(self, text: str, name: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    # -- searching ---------------------------------------------------------------------------
    def search(self) -> None:
        """Run the search box's query (empty: the newest passages)."""
        self._query = self.query.text().strip()
        self._run_search()

    def refresh(self) -> None:
        """Run the current search again, keeping the selected passage selected."""
        self._run_search()

    def _run_search(self) -> None:
        self._search_seq += 1
        seq, query = self._search_seq, self._query
        self.count.busy("Searching…")
        submit(
            self,
            self._worker,
            lambda session: session.archival_search(query, LIMIT),
            lambda passages: self._show_results(seq, query, passages),
            lambda exc: self._search_failed(seq, exc),
        )

    def _search_failed(self, seq: int, exc: BaseException) -> None:
        if seq == self._search_seq:
            self.count.failed(exc)

    def _show_results(self, seq: int, query: str, passages: list[Passage]) -> None:
        if seq != self._search_seq:
            return
        self._passages = {p.id: p for p in passages}
        if not passages:
            self.count.info("No passages." if not query else f"No passages match “{query}”.")
        elif not query:
            self.count.info(
                "1 passage" if len(passages) == 1 else f"{len(passages)} newest passages"
            )
        else:
            match = "matches" if len(passages) == 1 else "match"
            self.count.info(f"{count_of(len(passages), 'passage')} {match} “{query}”")
        self.results.blockSignals(True)  # refilling is not the user choosing a passage
        self.results.setRowCount(0)
        for passage in passages:
            self._append_row(passage)
        if self._selected not in self._passages:
            self._selected = None  # the editor keeps its text: Add can still store it
        else:
            self.results.selectRow(list(self._passages).index(self._selected))
        self.results.blockSignals(False)
        self._update_buttons()

    def _append_row(self, passage: Passage) -> None:
        row = self.results.rowCount()
        self.results.insertRow(row)
        cells = (local_time(passage.created_at), ", ".join(passage.tags), first_line(passage.text))
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, passage.id)
            item.setToolTip(passage.text if column == 2 else text)
            self.results.setItem(row, column, item)

    # -- the editor --------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        rows = self.results.selectionModel().selectedRows()
        if not rows:
            self._selected = None
        else:
            passage_id = self.results.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
            self._selected = passage_id
            passage = self._passages[passage_id]
            self.text.setPlainText(passage.text)
            self.tags.setText(", ".join(passage.tags))
            self.status.hide()
        self._update_buttons()

    def _editor_values(self) -> tuple[str, list[str]]:
        return self.text.toPlainText(), parse_tags(self.tags.text())

    def _update_buttons(self) -> None:
        idle = not self._pending
        text, tags = self._editor_values()
        selected = self._passages.get(self._selected) if self._selected is not None else None
        changed = selected is not None and (text, tags) != (selected.text, selected.tags)
        self.add_button.setEnabled(idle and bool(text.strip()))
        self.save_button.setEnabled(idle and changed)
        self.delete_button.setEnabled(idle and selected is not None)

    def _new(self) -> None:
        self.results.clearSelection()
        self._selected = None
        self.text.clear()
        self.tags.clear()
        self.status.hide()
        self.text.setFocus()

    def _add(self) -> None:
        text, tags = self._editor_values()
        self._edit(lambda session: session.archival_add(text, tags), "Adding…", self._added)

    def _added(self, passage: Passage) -> None:
        # show the newest passages, where the new one is on top and selected
        self.status.info(f"Added passage #{passage.id}.")
        self._selected = passage.id
        self.query.clear()
        self._query = ""
        self.refresh()

    def _save(self) -> None:
        if self._selected is None:
            return
        passage_id = self._selected
        text, tags = self._editor_values()
        self._edit(
            lambda session: session.archival_update(passage_id, text, tags),
            "Saving…",
            self._saved,
        )

    def _saved(self, passage: Passage) -> None:
        self.status.info("Saved.")
        self._passages[passage.id] = passage
        self.refresh()

    def _delete(self) -> None:
        passage = self._passages.get(self._selected) if self._selected is not None else None
        if passage is None or not self._confirm(
            f"Delete this passage for good?\n\n{first_line(passage.text, 200)}"
        ):
            return
        passage_id = passage.id
        self._edit(lambda session: session.archival_delete(passage_id), "Deleting…", self._deleted)

    def _deleted(self, _: None) -> None:
        self.status.info("Deleted.")
        self._selected = None
        self.text.clear()
        self.tags.clear()
        self.refresh()

    def _confirm(self, text: str) -> bool:
        """Ask before deleting (tests replace this)."""
        answer = QMessageBox.question(self, "Delete passage", text)
        return answer == QMessageBox.StandardButton.Yes

    def _edit(self, job: Job, busy: str, on_done: Callable[[Any], None]) -> None:
        """Run an add, save or delete; errors show under the editor, whose text stays."""
        self._pending += 1
        self.status.busy(busy)
        self._update_buttons()

        def done(result: Any) -> None:
            self._pending -= 1
            on_done(result)
            self._update_buttons()
            self.edited.emit()

        def failed(exc: BaseException) -> None:
            self._pending -= 1
            self.status.failed(exc)
            self._update_buttons()

        submit(self, self._worker, job, done, failed)
