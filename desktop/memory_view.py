"""What Memex knows: one list of what memory keeps about the user (core lines, facts that
hold, notes the assistant saved), each with when it was saved, by whom and the message it came
from, and a Forget button that forgets it for real (engine.memory.forget)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import StatusLabel, count_of, local_time, submit
from desktop.worker import EngineWorker
from engine.types import Remembered

GROUPS = (
    ("core", "Always in view (core memory)"),
    ("fact", "Facts that hold (knowledge graph)"),
    ("passage", "Notes it saved (archival memory)"),
)
QUOTED_CHARS = 160


class MemoryView(QDialog):
    """The Memory view (Memory > What Memex knows…)."""

    forgotten = Signal()  # something was forgotten: the panels and the prompt changed

    def __init__(self, worker: EngineWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("What Memex knows")
        self.setObjectName("memory-view")
        self.resize(760, 560)
        self._worker = worker
        self._items: dict[int, Remembered] = {}  # id() of a tree row -> its item
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Everything Memex keeps about you, besides the conversation itself (every message "
            "stays searchable in Recall). Select a line to see where it came from; Forget "
            "removes it from memory for good."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.tree = QTreeWidget()
        self.tree.setObjectName("memory-list")
        self.tree.setAccessibleName("What Memex keeps about you")
        self.tree.setHeaderLabels(["What it keeps", "Saved"])
        self.tree.setColumnWidth(0, 520)
        self.tree.setWordWrap(True)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        layout.addWidget(self.tree, 1)
        self.detail = QLabel()
        self.detail.setObjectName("memory-detail")
        self.detail.setTextFormat(Qt.TextFormat.PlainText)
        self.detail.setWordWrap(True)
        self.detail.setMinimumHeight(3 * self.detail.fontMetrics().lineSpacing())
        layout.addWidget(self.detail)
        row = QHBoxLayout()
        self.with_message = QCheckBox("Also delete the message it came from")
        self.with_message.setObjectName("memory-with-message")
        self.with_message.setEnabled(False)
        row.addWidget(self.with_message, 1)
        self.forget_button = QPushButton("Forget…")
        self.forget_button.setObjectName("memory-forget")
        self.forget_button.setEnabled(False)
        self.forget_button.clicked.connect(self._ask_forget)
        row.addWidget(self.forget_button)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        row.addWidget(close)
        layout.addLayout(row)
        self.status = StatusLabel(keep_room=True)
        self.status.setObjectName("memory-status")
        layout.addWidget(self.status)
        self.confirm = True  # ask before forgetting (tests: off)
        self.refresh()

    # -- the list --------------------------------------------------------------------------
    def refresh(self) -> None:
        self.status.busy("Reading memory…")
        submit(self, self._worker, lambda s: s.remembered(), self._show, self.status.failed)

    def _show(self, items: list[Remembered]) -> None:
        self.tree.clear()
        self._items.clear()
        for tier, title in GROUPS:
            mine = [i for i in items if i.tier == tier]
            group = QTreeWidgetItem([f"{title}: {len(mine)}", ""])
            group.setFlags(group.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            self.tree.addTopLevelItem(group)
            for item in mine:
                row = QTreeWidgetItem([item.text, _saved(item)])
                row.setToolTip(0, item.text)
                group.addChild(row)
                self._items[id(row)] = item
            group.setExpanded(True)
        self.status.info(
            f"{count_of(len(items), 'thing')} kept about you" if items else "Nothing kept yet."
        )
        self._selection_changed()

    def selected(self) -> Remembered | None:
        rows = self.tree.selectedItems()
        return self._items.get(id(rows[0])) if rows else None

    def select(self, text: str) -> None:
        """Selects the row of `text` (tests, and after a search)."""
        for row_id, item in self._items.items():
            if item.text == text:
                row = next(r for r in self._rows() if id(r) == row_id)
                self.tree.setCurrentItem(row)
                return
        raise KeyError(text)

    def _rows(self) -> list[QTreeWidgetItem]:
        rows = []
        for i in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(i)
            for j in range(group.childCount() if group is not None else 0):
                row = group.child(j) if group is not None else None
                if row is not None:
                    rows.append(row)
        return rows

    def _selection_changed(self) -> None:
        item = self.selected()
        self.forget_button.setEnabled(item is not None)
        self.with_message.setEnabled(item is not None and item.source is not None)
        if item is None:
            self.detail.setText("")
            return
        came_from = (
            f"From your message of {local_time(item.source.created_at)}: "
            f"“{_quoted(item.source.content)}”"
            if item.source is not None
            else "Not from a message of yours (there before the conversation began)."
        )
        self.detail.setText(f"{_saved(item)}. {came_from}")

    # -- forgetting ------------------------------------------------------------------------
    def _ask_forget(self) -> None:
        item = self.selected()
        if item is None:
            return
        with_message = self.with_message.isChecked() and item.source is not None
        if self.confirm and not self._confirmed(item, with_message):
            return
        self.forget(item, with_message)

    def _confirmed(self, item: Remembered, with_message: bool) -> bool:
        what = f"“{_quoted(item.text)}”"
        if with_message and item.source is not None:
            what += f"\n\nand your message “{_quoted(item.source.content)}”"
        after = (
            "The line leaves core memory by an edit you can undo in the Core memory panel."
            if item.tier == "core"
            else "This cannot be undone."
        )
        answer = QMessageBox.question(self, "Forget", f"Forget {what}?\n\n{after}")
        return answer == QMessageBox.StandardButton.Yes

    def forget(self, item: Remembered, with_message: bool = False) -> None:
        self.status.busy("Forgetting…")
        self.forget_button.setEnabled(False)
        submit(
            self,
            self._worker,
            lambda s: s.forget(item, with_message),
            self._forgot,
            self._failed,
        )

    def _forgot(self, items: list[Remembered]) -> None:
        self._show(items)
        self.status.info("Forgotten.")
        self.with_message.setChecked(False)
        self.forgotten.emit()

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, KeyError):  # another edit took it meanwhile
            self.status.info("It was no longer there; the list is up to date now.")
            self.refresh()
            return
        self.status.failed(exc)
        self._selection_changed()


def _saved(item: Remembered) -> str:
    when = local_time(item.saved_at) if item.saved_at is not None else "from the start"
    return f"saved {when}" + (f" by {item.saved_by}" if item.saved_by else "")


def _quoted(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 1] + "…"
