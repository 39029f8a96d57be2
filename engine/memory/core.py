"""Core memory: labelled blocks always in the prompt, size-limited, every edit versioned with undo."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from engine.store.db import Store, now_iso

DEFAULT_BLOCK_LIMIT = 2000


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


@dataclass(frozen=True)
class BlockTemplate:
    label: str
    value: str
    description: str
    limit: int = DEFAULT_BLOCK_LIMIT
    read_only: bool = False


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
            "SELECT b.id, ab.label, b.value, b.char_limit, b.description, b.read_only"
            " FROM agent_blocks ab JOIN blocks b ON b.id = ab.block_id"
            " WHERE ab.agent_id = ? ORDER BY ab.position",
            (self.agent_id,),
        )
        return [Block(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def block(self, label: str) -> Block:
        for block in self.blocks():
            if block.label == label:
                return block
        known = ", ".join(self) or "none"
        raise KeyError(f"no core memory section {label!r} (sections: {known})")

    def render(self) -> str:
        """The blocks as the model sees them, with each block's size against its limit."""
        parts = []
        for b in self.blocks():
            flag = ", read-only" if b.read_only else ""
            parts.append(
                f'<{b.label} chars="{len(b.value)}/{b.limit}"{flag}>\n{b.value}\n</{b.label}>'
            )
        return "\n".join(parts)

    def history(self, label: str) -> list[BlockEdit]:
        block = self.block(label)
        rows = self.store.query(
            "SELECT id, before, after, actor, created_at, undone FROM block_history"
            " WHERE block_id = ? ORDER BY id",
            (block.id,),
        )
        return [BlockEdit(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    # -- editing -----------------------------------------------------------------------------
    def attach(self, template: BlockTemplate) -> Block:
        """Create a block and attach it to this agent."""
        now = now_iso()
        with self.store.atomic() as conn:
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
            self.attach_existing(conn.last_insert_rowid(), template.label)
        return self.block(template.label)

    def attach_existing(self, block_id: int, label: str) -> None:
        """Attach a block that already exists (e.g. one shared with another agent)."""
        with self.store.atomic() as conn:
            position = conn.execute(
                "SELECT coalesce(max(position), -1) + 1 FROM agent_blocks WHERE agent_id = ?",
                (self.agent_id,),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO agent_blocks(agent_id, block_id, label, position) VALUES (?, ?, ?, ?)",
                (self.agent_id, block_id, label, position),
            )

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
            raise CoreMemoryError(f"text not found in section {label!r}: {old!r}")
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
            "SELECT id, before, after FROM block_history WHERE block_id = ? AND undone = 0"
            " AND actor NOT LIKE 'undo%' ORDER BY id DESC LIMIT 1",
            (block.id,),
        )
        if row is None:
            raise CoreMemoryError(f"nothing to undo in section {label!r}")
        with self.store.atomic() as conn:
            conn.execute("UPDATE block_history SET undone = 1 WHERE id = ?", (row[0],))
            return self._write(block, row[1], f"undo:{actor}")

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
                "INSERT INTO block_history(block_id, before, after, actor, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (block.id, block.value, value, actor, now_iso()),
            )
        return self.block(block.label)
