"""The core-memory panel: every block of the agent shown, editable by the user, with undo and history."""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import WARNING_STYLE, StatusLabel, local_time, submit
from desktop.session import EngineSession
from desktop.worker import EngineWorker, Job
from engine.errors import InvalidInput
from engine.memory.core import Block, BlockEdit
from engine.memory.forget import saver

ERROR_COLOR = "#c62828"


def change_summary(before: str, after: str, width: int = 60) -> str:
    """An edit in words, showing only the part that changed ('…' where equal text is left
    out): "added “…”", "removed “…”", or "“…old…” → “…new…”"."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    lead = "…" if start else ""
    tail = "…" if end else ""

    def middle(text: str) -> str:
        part = text[start : len(text) - end].replace("\n", "⏎").strip("⏎")
        return part if len(part) <= width else part[: width - 1] + "…"

    old, new = middle(before), middle(after)
    if not old and not new:
        return "no change"
    if not old:
        return f"added “{new}”"
    if not new:
        return f"removed “{old}”"
    return f"“{lead}{old}{tail}” → “{lead}{new}{tail}”"


def actor_words(actor: str) -> str:
    """Who made an edit, in words: "you", "the assistant", "memory review" (engine.memory.
    forget.saver), "undo by you", "redo by you", "forgotten by you"."""
    for prefix, words in (
        ("undo:", "undo by "),
        ("redo:", "redo by "),
        ("forget:", "forgotten by "),
    ):
        if actor.startswith(prefix):
            return words + actor_words(actor[len(prefix) :])
    return saver(actor)


def _same_block(session: EngineSession, label: str, block_id: int) -> None:
    """Runs on the engine thread before an edit: the agent may have been switched since the
    editor was filled, and the user's text must not land in another agent's block."""
    if not any(b.id == block_id and b.label == label for b in session.blocks()):
        raise InvalidInput(
            f"section {label!r} now belongs to another agent; your text is kept — copy it, "
            "then reload the panel"
        )


class StoredTextChanged(InvalidInput):
    """The block changed (the model edited it) after the panel last showed it."""

    def __init__(self, block: Block) -> None:
        super().__init__(
            f"the model changed section {block.label!r} while you were editing; your text is "
            "kept. Save again to write it over the model's edit, or Revert to see it."
        )
        self.block = block


def _unchanged_since_seen(session: EngineSession, label: str, seen: str) -> None:
    """Runs on the engine thread before a save: a save queued behind a step must not silently
    overwrite what the model wrote in that step."""
    current = next(b for b in session.blocks() if b.label == label)
    if current.value != seen:
        raise StoredTextChanged(current)


class BlockEditor(QFrame):
    """One block: its text, size against its limit, Save / Revert / Undo and its history."""

    edited = Signal()

    def __init__(self, worker: EngineWorker, block: Block, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._block = block
        self._loaded = block.value  # the stored text the user's edits started from
        self._pending = 0  # edits in flight: refreshes must not touch the editor meanwhile
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._build()
        self.editor.setPlainText(block.value)
        self._update_state()

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        label = self._block.label
        layout = QVBoxLayout(self)
        self.title = QLabel(_title(self._block))
        self.title.setObjectName(f"core-title-{label}")
        layout.addWidget(self.title)
        if self._block.description:
            description = QLabel(self._block.description)
            description.setTextFormat(Qt.TextFormat.PlainText)
            description.setWordWrap(True)
            description.setStyleSheet("color: palette(mid);")
            layout.addWidget(description)

        self.editor = QPlainTextEdit()
        self.editor.setObjectName(f"core-editor-{label}")
        self.editor.setAccessibleName(f"Text of this section ({label})")
        self.editor.textChanged.connect(self._update_state)
        layout.addWidget(self.editor)

        row = QHBoxLayout()
        self.size_label = QLabel()
        self.size_label.setObjectName(f"core-size-{label}")
        row.addWidget(self.size_label)
        self.on_disk_label = QLabel("changed on disk since you started editing")
        self.on_disk_label.setObjectName(f"core-ondisk-{label}")
        self.on_disk_label.setStyleSheet(WARNING_STYLE)
        self.on_disk_label.setToolTip(
            "The stored text changed (the model or an undo edited it). Save writes your text "
            "over it; Revert shows the stored text."
        )
        self.on_disk_label.hide()
        row.addWidget(self.on_disk_label)
        row.addStretch()
        self.save_button = self._button("Save", f"core-save-{label}", self._save)
        self.revert_button = self._button("Revert", f"core-revert-{label}", self._revert)
        self.undo_button = self._button("Undo", f"core-undo-{label}", self._undo)
        self.undo_button.setToolTip("Revert the latest edit of this section, by the model or you")
        self.redo_button = self._button("Redo", f"core-redo-{label}", self._redo)
        self.redo_button.setToolTip("Take back the latest Undo (until a new edit is made)")
        self.share_button = self._button("Share…", f"core-share-{label}", self._ask_share)
        self.share_button.setToolTip(
            "Attach this section to another agent too: an edit by either is seen by both"
        )
        row.addWidget(self.share_button)  # beside the size: five buttons in a row overflow
        layout.addLayout(row)
        # the edit buttons on a line of their own: beside the size they pushed the panel wider
        # than its dock, behind a sideways scrollbar
        buttons = QHBoxLayout()
        buttons.addStretch()
        for button in (self.save_button, self.revert_button, self.undo_button, self.redo_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self.status = StatusLabel()
        self.status.setObjectName(f"core-error-{label}")
        self.status.hide()
        layout.addWidget(self.status)

        self.history_toggle = QToolButton()
        self.history_toggle.setObjectName(f"core-history-toggle-{label}")
        self.history_toggle.setText("History")
        self.history_toggle.setCheckable(True)
        self.history_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.history_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.history_toggle.toggled.connect(self._toggle_history)
        layout.addWidget(self.history_toggle)
        self.history = QListWidget()
        self.history.setObjectName(f"core-history-{label}")
        self.history.setAccessibleName(f"History of this section ({label})")
        self.history.setMaximumHeight(160)
        self.history.hide()
        layout.addWidget(self.history)

    def _button(self, text: str, name: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    # -- state -------------------------------------------------------------------------------
    @property
    def block(self) -> Block:
        return self._block

    def has_unsaved(self) -> bool:
        return self.editor.toPlainText() != self._loaded

    def set_stored(self, block: Block) -> None:
        """The engine's current block: shown unless the user has unsaved text, which is kept
        (with a "changed on disk" mark if the stored text moved under it)."""
        self._block = block
        self.title.setText(_title(block))
        if self._pending:
            return  # the edit's own answer brings the editor up to date
        if not self.has_unsaved():
            self._loaded = block.value
            if self.editor.toPlainText() != block.value:
                self.editor.setPlainText(block.value)
        elif self.editor.toPlainText() == block.value:
            self._loaded = block.value  # the user typed what is stored now: no conflict
        self._update_state()
        if self.history_toggle.isChecked():
            self._load_history()

    def _update_state(self) -> None:
        text = self.editor.toPlainText()
        limit = self._block.limit
        self.size_label.setText(f"{len(text)} / {limit} chars")
        over = len(text) > limit
        self.size_label.setStyleSheet(f"color: {ERROR_COLOR};" if over else "")
        self.size_label.setProperty("over", over)
        idle = not self._pending
        self.save_button.setEnabled(idle and text != self._block.value)
        self.revert_button.setEnabled(idle and self.has_unsaved())
        self.undo_button.setEnabled(idle and self._block.undoable)
        self.redo_button.setEnabled(idle and self._block.redoable)
        self.on_disk_label.setVisible(self.has_unsaved() and self._block.value != self._loaded)

    # -- actions -----------------------------------------------------------------------------
    def _save(self) -> None:
        label, block_id, text = self._block.label, self._block.id, self.editor.toPlainText()
        seen = self._block.value  # the stored text this panel last showed

        def job(session: EngineSession) -> Block:
            _same_block(session, label, block_id)
            _unchanged_since_seen(session, label, seen)
            return session.set_block(label, text)

        self._run(job, "Saving…", "Saved.", adopt=True)

    def _undo(self) -> None:
        label, block_id = self._block.label, self._block.id

        def job(session: EngineSession) -> Block:
            _same_block(session, label, block_id)
            return session.undo_block(label)

        self._run(job, "Undoing…", "Undone.", adopt=False)

    def _redo(self) -> None:
        label, block_id = self._block.label, self._block.id

        def job(session: EngineSession) -> Block:
            _same_block(session, label, block_id)
            return session.redo_block(label)

        self._run(job, "Redoing…", "Redone.", adopt=False)

    def _ask_share(self) -> None:
        """Pick another agent of the file (listed on the engine thread) and attach this block
        to it too."""
        submit(
            self,
            self._worker,
            lambda session: [a.name for a in session.agents() if a.name != session.agent.name],
            self._pick_agent_to_share_with,
            lambda exc: self.status.failed(exc),
        )

    def _pick_agent_to_share_with(self, names: list[str]) -> None:
        label = self._block.label
        others = [n for n in names if n not in self._block.shared_with]
        if not others:
            self.status.info("No other agent to share it with: create one first (New agent…).")
            return
        name, ok = QInputDialog.getItem(
            self, "Share section", f"Share {label!r} with which agent?", others, 0, False
        )
        if ok and name:
            self._run(
                lambda session: session.share_block(label, name),
                "Sharing…",
                f"Shared with {name}.",
                adopt=False,
            )

    def _revert(self) -> None:
        self._loaded = self._block.value
        self.editor.setPlainText(self._block.value)
        self.status.hide()

    def _run(self, job: Job, busy: str, done: str, adopt: bool) -> None:
        """Run an edit; `adopt`: the user's text became the stored text (a save), so what they
        type meanwhile counts as unsaved against it."""
        self._pending += 1
        self.status.busy(busy)
        self._update_state()

        def on_done(block: Block) -> None:
            self._pending -= 1
            self.status.info(done)
            if adopt:
                self._loaded = block.value
            self.set_stored(block)
            self.edited.emit()

        def on_error(exc: BaseException) -> None:
            self._pending -= 1
            self.status.failed(exc)  # the editor keeps whatever the user typed
            if isinstance(exc, StoredTextChanged):
                self.set_stored(exc.block)  # shows "changed on disk"; Save again writes over it
            self._update_state()

        submit(self, self._worker, job, on_done, on_error)

    # -- history -----------------------------------------------------------------------------
    def _toggle_history(self, shown: bool) -> None:
        self.history_toggle.setArrowType(
            Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        )
        self.history.setVisible(shown)
        if shown:
            self._load_history()

    def _load_history(self) -> None:
        label = self._block.label
        if not self.history.count():
            self.history.addItem("Loading…")
        submit(
            self,
            self._worker,
            lambda session: session.history(label),
            self._show_history,
            lambda exc: self.status.failed(exc),
        )

    def _show_history(self, edits: list[BlockEdit]) -> None:
        self.history.clear()
        if not edits:
            self.history.addItem("No edits yet.")
        for edit in reversed(edits):  # newest first
            self.history.addItem(_history_item(edit, self._block.shared))


def _title(block: Block) -> str:
    return (
        f"<b>{html.escape(block.label)}</b>"
        + (" <i>(read-only for the model)</i>" if block.read_only else "")
        + (
            f" <i>(shared with {html.escape(', '.join(block.shared_with))})</i>"
            if block.shared
            else ""
        )
    )


def _history_item(edit: BlockEdit, shared: bool) -> QListWidgetItem:
    # a shared block is edited by several agents: say whose edit each was
    who = actor_words(edit.actor)
    who = f"{edit.agent} ({who})" if shared and edit.agent else who
    text = f"{local_time(edit.created_at)}  {who}: {change_summary(edit.before, edit.after)}"
    item = QListWidgetItem(text + ("  (undone)" if edit.undone else ""))
    item.setToolTip(f"Before:\n{edit.before}\n\nAfter:\n{edit.after}")
    item.setData(Qt.ItemDataRole.UserRole, edit.id)
    if edit.undone:
        font = QFont(item.font())
        font.setStrikeOut(True)
        item.setFont(font)
        item.setForeground(QBrush(QColor("gray")))
    return item


class CorePanel(QWidget):
    """Every core block of the current agent, one BlockEditor each."""

    edited = Signal()  # a save or undo went through: the prompt changed

    def __init__(self, worker: EngineWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._editors: dict[int, BlockEditor] = {}  # by block id: labels repeat across agents
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.status = StatusLabel()
        self.status.setObjectName("core-status")
        top.addWidget(self.status, 1)
        add = QPushButton("New section…")
        add.setObjectName("core-add")
        add.setToolTip("A new core-memory section, e.g. a 'project' block to share with agents")
        add.clicked.connect(self._ask_new_section)
        top.addWidget(add)
        layout.addLayout(top)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._body = QWidget()
        self._blocks_layout = QVBoxLayout(self._body)
        self._blocks_layout.addStretch()
        scroll.setWidget(self._body)
        layout.addWidget(scroll)
        self.refresh()

    def refresh(self) -> None:
        """Reload the blocks; editors with unsaved text keep it."""
        if not self._editors:
            self.status.busy("Loading…")
        submit(
            self,
            self._worker,
            lambda session: session.blocks(),
            self._show_blocks,
            lambda exc: self.status.failed(exc),
        )

    def _ask_new_section(self) -> None:
        label, ok = QInputDialog.getText(
            self, "New section", "Name of the section (a word, e.g. project):"
        )
        if not ok or not label.strip():
            return
        description, ok = QInputDialog.getText(
            self, "New section", f"What {label.strip()!r} holds (the model reads this):"
        )
        if ok:
            self.status.busy("Adding…")
            submit(
                self,
                self._worker,
                lambda session: session.add_block(label, description),
                lambda _: self._section_added(),
                lambda exc: self.status.failed(exc),
            )

    def _section_added(self) -> None:
        self.edited.emit()
        self.refresh()

    def has_unsaved(self) -> bool:
        """Whether any block has text the user has not saved (worth asking before closing)."""
        return any(e.has_unsaved() for e in self._editors.values())

    def editor(self, label: str) -> BlockEditor | None:
        return next((e for e in self._editors.values() if e.block.label == label), None)

    def _show_blocks(self, blocks: list[Block]) -> None:
        self.status.hide()
        for block_id in set(self._editors) - {b.id for b in blocks}:
            editor = self._editors.pop(block_id)  # another agent's block, after a switch
            self._blocks_layout.removeWidget(editor)
            editor.deleteLater()
        for position, block in enumerate(blocks):
            editor = self._editors.get(block.id)
            if editor is None:
                editor = BlockEditor(self._worker, block, self._body)
                editor.edited.connect(self.edited)
                self._editors[block.id] = editor
            else:
                editor.set_stored(block)
            if self._blocks_layout.indexOf(editor) != position:
                self._blocks_layout.removeWidget(editor)
                self._blocks_layout.insertWidget(position, editor)
