"""The prompt cache kept across restarts: llama.cpp's KV cache for a prompt's prefix, in a file.

Within a run, llama.cpp reuses the prefix it evaluated last time, so a step reads only its new
tokens. A new process starts with an empty cache and must read the whole prompt first (about 30
seconds for a full 4k window on 2 cores). So the KV cache of the prompt's stable prefix (the
system message and the messages in view) is saved when the app closes and after an idle
page-out, and loaded when the agent is opened: if, and only if, the first prompt starts with
exactly the tokens it covers.

One file per saved prefix, in the user cache folder (beside the models, never in the memory
file: it is a cache, rebuilt by reading the prompt):

    <cache>/prompt-state/<model sha256[:16]>-<n_ctx>-<sha256 of the token ids[:16]>.kv

    b"MEMEXKV1", header length (4 bytes, little-endian), header (JSON), token ids (int32),
    llama.cpp's sequence state

The header names the model (its sha256), n_ctx, the llama.cpp build, the tokens' and the
state's sha256 and who saved it (an agent of a memory file, so that its newer save replaces the
older one). A file that fails any check (damaged, cut short, another model or build) is ignored
with a log line and deleted, never handed to llama.cpp. The folder is bounded in bytes; the
oldest files go first, and files unused for STALE_DAYS go.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

logger = logging.getLogger(__name__)

MAGIC = b"MEMEXKV1"
SUFFIX = ".kv"
MAX_BYTES = 1 << 30  # the folder holds at most this much (a full 8k window of the 1.5B: ~230 MB)
STALE_DAYS = 30  # a file not used for this long goes
PARTIAL_AGE_S = 3600  # a half-written file this old was left by a crash
ENV_DIR = "MEMEX_PROMPT_STATE_DIR"


def default_folder() -> Path:
    """$MEMEX_PROMPT_STATE_DIR, else the user cache folder's memex/prompt-state."""
    if override := os.environ.get(ENV_DIR):
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("memex")) / "prompt-state"


def model_sha256(path: Path, folder: Path | None = None) -> str:
    """The sha256 of the model file at `path`: as its check recorded it (models.fetch), else as
    recorded here the first time it was hashed (while the file's size and times are unchanged),
    else hashed now (about a second a gigabyte) and recorded."""
    from models.fetch import recorded_sha256, sha256_file

    if (known := recorded_sha256(path)) is not None:
        return known
    st = path.stat()
    stamp = [str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    record = (
        (folder or default_folder())
        / "models"
        / (hashlib.sha256(str(stamp[0]).encode()).hexdigest()[:16] + ".json")
    )
    try:
        kept = json.loads(record.read_text())
        if kept.get("stamp") == stamp:
            return str(kept["sha256"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    digest = sha256_file(path)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_name(f".{record.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
        os.replace(partial, record)
    except OSError as exc:
        logger.info(
            "could not record the sha256 of %s (%s); it is hashed again next time", path, exc
        )
    return digest


def tokens_digest(tokens: list[int]) -> str:
    return hashlib.sha256(np.asarray(tokens, dtype="<i4").tobytes()).hexdigest()


@dataclass(frozen=True)
class SavedPrefix:
    """A saved state that the prompt starts with: its tokens and llama.cpp's state of them."""

    path: Path
    tokens: list[int]
    state: bytes


@dataclass(frozen=True)
class _Header:
    model_sha256: str
    n_ctx: int
    build: str
    n_tokens: int
    tokens_sha256: str
    state_sha256: str
    state_size: int
    owner: str


class PromptStateCache:
    """The saved prefixes of one model at one n_ctx (`build` is llama.cpp's: another build's
    state layout may differ), in `folder`, bounded by `max_bytes`."""

    def __init__(
        self,
        model_sha256: str,
        n_ctx: int,
        build: str,
        folder: Path | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.model_sha256 = model_sha256
        self.n_ctx = n_ctx
        self.build = build
        self.folder = folder if folder is not None else default_folder()
        self.max_bytes = max_bytes

    def _name(self, tokens: list[int]) -> str:
        return f"{self.model_sha256[:16]}-{self.n_ctx}-{tokens_digest(tokens)[:16]}{SUFFIX}"

    def _mine(self) -> list[Path]:
        """The files of this model and n_ctx."""
        try:
            return sorted(self.folder.glob(f"{self.model_sha256[:16]}-{self.n_ctx}-*{SUFFIX}"))
        except OSError:
            return []

    # -- saving --------------------------------------------------------------------------------
    def save(self, tokens: list[int], state: bytes, owner: str) -> Path | None:
        """Write the state of `tokens` (crash-safe: a temporary file, synced, then renamed over),
        drop `owner`'s older saves, and keep the folder within its bounds. None (logged) where
        the folder cannot be written: the cache is an optimisation, never an error to show."""
        header = _Header(
            self.model_sha256,
            self.n_ctx,
            self.build,
            len(tokens),
            tokens_digest(tokens),
            hashlib.sha256(state).hexdigest(),
            len(state),
            owner,
        )
        head = json.dumps(header.__dict__).encode()
        path = self.folder / self._name(tokens)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as f:
                f.write(MAGIC + struct.pack("<I", len(head)) + head)
                f.write(np.asarray(tokens, dtype="<i4").tobytes())
                f.write(state)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except OSError as exc:
            logger.warning("could not save the prompt cache to %s: %s", self.folder, exc)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            return None
        self._drop_older(owner, keep=path)
        self.prune()
        return path

    def _drop_older(self, owner: str, keep: Path) -> None:
        for path in self._mine():
            header = None if path == keep else self._header(path)
            if header is not None and header[0].owner == owner:
                _unlink(path)

    def prune(self) -> None:
        """Delete files unused for STALE_DAYS, crashes' half-written files, and then the oldest
        files until the folder holds at most max_bytes."""
        now = time.time()
        try:
            entries = [(p, p.stat()) for p in self.folder.iterdir() if p.is_file()]
        except OSError:
            return
        kept = []
        for path, st in entries:
            partial = path.name.endswith(".partial")
            if (partial and now - st.st_mtime > PARTIAL_AGE_S) or (
                path.suffix == SUFFIX and now - st.st_mtime > STALE_DAYS * 86400
            ):
                _unlink(path)
            elif path.suffix == SUFFIX:
                kept.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in kept)
        for _, size, path in sorted(kept):  # oldest first
            if total <= self.max_bytes:
                break
            _unlink(path)
            total -= size

    # -- loading -------------------------------------------------------------------------------
    def find(self, prompt: list[int]) -> SavedPrefix | None:
        """The longest saved prefix `prompt` starts with exactly, checked whole; None if none.
        A file that fails a check is deleted."""
        best: tuple[Path, _Header, list[int], int] | None = None
        for path in self._mine():
            read = self._header(path)
            if read is None:
                continue
            header, offset = read
            n = header.n_tokens
            if n > len(prompt) or (best is not None and n <= best[1].n_tokens):
                continue
            if tokens_digest(prompt[:n]) != header.tokens_sha256:
                continue  # another prompt's (another agent's, or from before a change)
            best = (path, header, prompt[:n], offset)
        if best is None:
            return None
        path, header, tokens, offset = best
        state = self._state(path, header, offset)
        if state is None:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used: the last to go when the folder is pruned
        return SavedPrefix(path, tokens, state)

    def _header(self, path: Path) -> tuple[_Header, int] | None:
        """The file's header and where its state begins; None (the file deleted, logged) if it
        is not a whole state of this model, n_ctx and llama.cpp build."""
        try:
            with open(path, "rb") as f:
                start = f.read(len(MAGIC) + 4)
                if len(start) < len(MAGIC) + 4 or not start.startswith(MAGIC):
                    self._reject(path, "not a Memex prompt-state file")
                    return None
                (length,) = struct.unpack("<I", start[len(MAGIC) :])
                if length > 1 << 16:
                    self._reject(path, "its header is damaged")
                    return None
                header = _Header(**json.loads(f.read(length)))
                size = path.stat().st_size
        except FileNotFoundError:
            return None  # pruned by another process meanwhile
        except (OSError, ValueError, TypeError) as exc:
            self._reject(path, f"it cannot be read ({exc})")
            return None
        if (header.model_sha256, header.n_ctx) != (self.model_sha256, self.n_ctx):
            self._reject(path, "it was saved for another model or window size")
            return None
        if header.build != self.build:
            self._reject(path, f"it was saved by another llama.cpp ({header.build})")
            return None
        offset = len(MAGIC) + 4 + length
        if size != offset + 4 * header.n_tokens + header.state_size:
            self._reject(path, "it is cut short or has bytes added")
            return None
        return header, offset

    def _state(self, path: Path, header: _Header, offset: int) -> bytes | None:
        try:
            with open(path, "rb") as f:
                f.seek(offset + 4 * header.n_tokens)
                state = f.read(header.state_size)
        except OSError as exc:
            self._reject(path, f"it cannot be read ({exc})")
            return None
        if hashlib.sha256(state).hexdigest() != header.state_sha256:
            self._reject(path, "its state fails its checksum")
            return None
        return state

    def _reject(self, path: Path, why: str) -> None:
        logger.warning("ignoring the saved prompt state %s: %s", path.name, why)
        _unlink(path)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("could not delete %s: %s", path, exc)
