"""Core memory: labelled blocks always in the prompt, size-limited, every edit versioned with undo."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from engine.store.db import Store, now_iso

DEFAULT_BLOCK_LIMIT = 2000
# The blocks that hold the assistant's own make-up and rules, not what it knows of the user
NOT_ABOUT_THE_USER = frozenset({"persona", "system"})
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,39}")


class CoreMemoryError(ValueError):
    """An edit that cannot be applied; the message says why and what room is left."""


@dataclass(frozen=True)
class Block:
    id: int
    label: str
    value: str
    limit: int
    description: str
    read_only: bool
    shared_with: tuple[str, ...] = ()  # the other agents this block is attached to
    undoable: bool = False  # it has an edit undo() would revert
    redoable: bool = False  # it has an undo redo() would take back

    @property
    def shared(self) -> bool:
        return bool(self.shared_with)

    @property
    def room(self) -> int:
        return self.limit - len(self.value)


@dataclass(frozen=True)
class BlockEdit:
    id: int
    before: str
    after: str
    actor: str
    created_at: str
    undone: bool
    agent: str | None = None  # the agent whose edit it was (a shared block has several)


@dataclass(frozen=True)
class BlockTemplate:
    label: str
    value: str
    description: str
    limit: int = DEFAULT_BLOCK_LIMIT
    read_only: bool = False


# An edit as the user or the model made it (not an undo or a redo of one)
_MADE = "actor NOT LIKE 'undo%' AND actor NOT LIKE 'redo%'"
# An edit undo() reverts: made, and not undone yet.
_UNDOABLE = f"undone = 0 AND {_MADE}"
# An undo redo() takes back: not taken back yet, and no edit made since (a new edit ends the
# chance to redo, as in every editor).
_REDOABLE = (
    "actor LIKE 'undo%' AND undone = 0 AND id > (SELECT coalesce(max(m.id), 0)"
    " FROM block_history m WHERE m.block_id = block_history.block_id"
    " AND m.actor NOT LIKE 'undo%' AND m.actor NOT LIKE 'redo%')"
)


def _quoted(text: str, limit: int = 80) -> str:
    """Text an error quotes, cut short: the error goes back to the model, whose junk may be long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_label(label: str) -> str:
    """A block label as the prompt shows it (<label ...>): a short word."""
    if not _LABEL.fullmatch(label):
        raise CoreMemoryError(
            f"a section name is a word of letters, digits, _ or - (at most 40), not {_quoted(label)}"
        )
    return label


def create_block(store: Store, template: BlockTemplate) -> Block:
    """A block attached to no agent yet, to share: MemGPTAgent(shared_blocks=[block]) or
    agent.memory.share(block)."""
    check_label(template.label)
    now = now_iso()
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO blocks(label, value, char_limit, description, read_only, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                template.label,
                template.value,
                template.limit,
                template.description,
                int(template.read_only),
                now,
                now,
            ),
        )
        block_id = conn.last_insert_rowid()
    return Block(
        block_id,
        template.label,
        template.value,
        template.limit,
        template.description,
        template.read_only,
    )


class CoreMemory(Mapping[str, str]):
    """The core-memory blocks attached to one agent; reads as a mapping of label to text."""

    def __init__(self, store: Store, agent_id: int) -> None:
        self.store = store
        self.agent_id = agent_id

    # -- Mapping -----------------------------------------------------------------------------
    def __getitem__(self, label: str) -> str:
        return self.block(label).value

    def __iter__(self) -> Iterator[str]:
        return iter([b.label for b in self.blocks()])

    def __len__(self) -> int:
        return len(self.blocks())

    # -- reading -----------------------------------------------------------------------------
    def blocks(self) -> list[Block]:
        rows = self.store.query(
            "SELECT b.id, ab.label, b.value, b.char_limit, b.description, b.read_only,"
            " (SELECT group_concat(a.name, char(31)) FROM agent_blocks other"
            "  JOIN agents a ON a.id = other.agent_id"
            "  WHERE other.block_id = b.id AND other.agent_id != ab.agent_id),"
            f" EXISTS (SELECT 1 FROM block_history h WHERE h.block_id = b.id AND {_UNDOABLE}),"
            " EXISTS (SELECT 1 FROM block_history WHERE block_history.block_id = b.id"
            f" AND {_REDOABLE})"
            " FROM agent_blocks ab JOIN blocks b ON b.id = ab.block_id"
            " WHERE ab.agent_id = ? ORDER BY ab.position",
            (self.agent_id,),
        )
        return [
            Block(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                bool(r[5]),
                tuple(sorted(r[6].split("\x1f"))) if r[6] else (),
                bool(r[7]),
                bool(r[8]),
            )
            for r in rows
        ]

    def others_version(self) -> tuple[int, int, str]:
        """Changes when a block is attached or detached, when another agent edits a block this
        one shares, or when the agents it is shared with change (one is deleted or renamed):
        the context builder re-renders the prompt then. This agent's own edits leave it alone
        (the model sees those as calls; the prompt prefix stays cached)."""
        row = self.store.query_one(
            "SELECT (SELECT count(*) FROM agent_blocks WHERE agent_id = ?),"
            " (SELECT coalesce(max(h.id), 0) FROM agent_blocks ab"
            "  JOIN block_history h ON h.block_id = ab.block_id"
            "  WHERE ab.agent_id = ? AND h.agent_id IS NOT ?),"
            " (SELECT coalesce(group_concat(other.block_id || ':' || a.name, ','), '')"
            "  FROM agent_blocks mine JOIN agent_blocks other ON other.block_id = mine.block_id"
            "  JOIN agents a ON a.id = other.agent_id"
            "  WHERE mine.agent_id = ? AND other.agent_id != ?)",
            (self.agent_id,) * 5,
        )
        return (int(row[0]), int(row[1]), str(row[2])) if row else (0, 0, "")

    def block(self, label: str) -> Block:
        for block in self.blocks():
            if block.label == label:
                return block
        known = ", ".join(self) or "none"
        raise KeyError(f"no core memory section {_quoted(label)} (sections: {known})")

    def render(self) -> str:
        """The blocks as the model sees them, with each block's size against its limit."""
        parts = []
        for b in self.blocks():
            flag = ", read-only" if b.read_only else ""
            if b.shared:
                flag += f", shared with {', '.join(b.shared_with)}"

            parts.append(
                f'<{b.label} chars="{len(b.value)}/{b.limit}"{flag}>\n{b.value}\n</{b.label}>'
            )
        return "\n".join(parts)

    def history(self, label: str) -> list[BlockEdit]:
        block = self.block(label)
        rows = self.store.query(
            "SELECT h.id, h.before, h.after, h.actor, h.created_at, h.undone, a.name"
            " FROM block_history h LEFT JOIN agents a ON a.id = h.agent_id"
            " WHERE h.block_id = ? ORDER BY h.id",
            (block.id,),
        )
        return [BlockEdit(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]

    # -- editing -----------------------------------------------------------------------------
    def attach(self, template: BlockTemplate) -> Block:
        """Create a block and attach it to this agent."""
        check_label(template.label)
        if template.label in self:
            raise CoreMemoryError(f"there is already a section {template.label!r}")
        with self.store.atomic():
            block = create_block(self.store, template)
            self.attach_existing(block.id, template.label)
        return self.block(template.label)

    def attach_existing(self, block_id: int, label: str) -> None:
        """Attach a block that already exists (e.g. one shared with another agent)."""
        with self.store.atomic() as conn:
            if conn.execute("SELECT 1 FROM blocks WHERE id = ?", (block_id,)).fetchone() is None:
                raise CoreMemoryError(f"there is no block {block_id} in this file")
            position = conn.execute(
                "SELECT coalesce(max(position), -1) + 1 FROM agent_blocks WHERE agent_id = ?",
                (self.agent_id,),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO agent_blocks(agent_id, block_id, label, position) VALUES (?, ?, ?, ?)",
                (self.agent_id, block_id, label, position),
            )

    def share(self, block: Block | int, label: str | None = None) -> Block:
        """Attach another agent's block (by Block or id) to this agent too, under `label`
        (its own label by default). Sharing it again is a no-op; a different block already
        under that label is refused rather than replaced."""
        block_id = block if isinstance(block, int) else block.id
        with self.store.atomic() as conn:
            row = conn.execute("SELECT label FROM blocks WHERE id = ?", (block_id,)).fetchone()
            if row is None:
                raise CoreMemoryError(f"there is no block {block_id} in this file")
            label = check_label(label or row[0])
            mine = conn.execute(
                "SELECT block_id FROM agent_blocks WHERE agent_id = ? AND label = ?",
                (self.agent_id, label),
            ).fetchone()
            if mine is None:
                self.attach_existing(block_id, label)
            elif mine[0] != block_id:
                raise CoreMemoryError(
                    f"this agent already has its own {label!r} section; share the block under "
                    "another label, or remove this agent's own first"
                )
        return self.block(label)

    def append(self, label: str, content: str, actor: str) -> Block:
        block = self._editable(label, actor)
        separator = "\n" if block.value else ""
        return self._write(block, block.value + separator + content, actor)

    def replace(self, label: str, old: str, new: str, actor: str) -> Block:
        """Replace the one occurrence of `old` with `new` ("" deletes it)."""
        block = self._editable(label, actor)
        if not old:
            raise CoreMemoryError("old_content is empty: give the exact text to replace")
        count = block.value.count(old)
        if count == 0:
            raise CoreMemoryError(f"text not found in section {label!r}: {_quoted(old)}")
        if count > 1:
            raise CoreMemoryError(
                f"text occurs {count} times in section {label!r}; give a longer, unique old_content"
            )
        return self._write(block, block.value.replace(old, new, 1), actor)

    def set(self, label: str, value: str, actor: str = "user") -> Block:
        """Overwrite a block (the user's own edits; read-only blocks included)."""
        return self._write(self._block_or_error(label), value, actor)

    def undo(self, label: str, actor: str = "user") -> Block:
        """Revert the latest edit of a block that is not undone yet."""
        block = self._block_or_error(label)
        row = self.store.query_one(
            f"SELECT id, before, after FROM block_history WHERE block_id = ? AND {_UNDOABLE}"
            " ORDER BY id DESC LIMIT 1",
            (block.id,),
        )
        if row is None:
            raise CoreMemoryError(f"nothing to undo in section {label!r}")
        with self.store.atomic() as conn:
            conn.execute("UPDATE block_history SET undone = 1 WHERE id = ?", (row[0],))
            return self._write(block, row[1], f"undo:{actor}")

    def redo(self, label: str, actor: str = "user") -> Block:
        """Take back the latest undo of a block, if no edit was made since; the edit it undid
        can be undone again."""
        block = self._block_or_error(label)
        undo = self.store.query_one(
            f"SELECT id, before FROM block_history WHERE block_id = ? AND {_REDOABLE}"
            " ORDER BY id DESC LIMIT 1",
            (block.id,),
        )
        if undo is None:
            raise CoreMemoryError(f"nothing to redo in section {label!r}")
        with self.store.atomic() as conn:
            conn.execute("UPDATE block_history SET undone = 1 WHERE id = ?", (undo[0],))
            conn.execute(
                "UPDATE block_history SET undone = 0 WHERE id = (SELECT id FROM block_history"
                f" WHERE block_id = ? AND undone = 1 AND {_MADE} AND id < ? AND after = ?"
                " ORDER BY id DESC LIMIT 1)",
                (block.id, undo[0], undo[1]),
            )
            return self._write(block, undo[1], f"redo:{actor}")

    def _block_or_error(self, label: str) -> Block:
        try:
            return self.block(label)
        except KeyError as exc:
            raise CoreMemoryError(exc.args[0]) from None

    def _editable(self, label: str, actor: str) -> Block:
        block = self._block_or_error(label)
        if block.read_only and actor != "user":
            raise CoreMemoryError(f"section {label!r} is read-only")
        return block

    def _write(self, block: Block, value: str, actor: str) -> Block:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CoreMemoryError(
                f"the text for section {block.label!r} holds characters that are not valid "
                "Unicode text (a lone surrogate); nothing was changed"
            ) from None
        if len(value) > block.limit:
            raise CoreMemoryError(
                f"section {block.label!r} would hold {len(value)} characters, over its limit of "
                f"{block.limit}; {block.room} characters are free. Shorten the text or move "
                "details to archival memory."
            )
        with self.store.atomic() as conn:
            conn.execute(
                "UPDATE blocks SET value = ?, updated_at = ? WHERE id = ?",
                (value, now_iso(), block.id),
            )
            conn.execute(
                "INSERT INTO block_history(block_id, before, after, actor, created_at, agent_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (block.id, block.value, value, actor, now_iso(), self.agent_id),
            )
        return self.block(block.label)
