"""Sentence embeddings from a BERT-family GGUF (nomic-embed-text-v1.5 by default) through
llama-cpp-python: documents and queries each with the prefix their model was trained with."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np

from engine import timing
from engine.errors import InvalidInput, ModelLoadError, models_hint
from engine.llm.llama import available_cpus, chat_model_generating, route_native_log
from engine.store.profiles import EmbeddingProfile, profile_for, stored_width

log = logging.getLogger(__name__)


# Tokens packed into one llama_encode call. Sequences in one batch attend over the whole batch
# (masked), so big packs cost more than they save: 64-128 measured fastest on CPU.
_PACK_TOKENS = 128
# Texts in one embed() call from which it uses every core (73 -> 140 sentences/s on 2 cores).
# Fewer texts (a search query, a message) use every core too while no chat model of the process
# generates (a search before or between its replies: nomic-embed's query 75 -> 40 ms on 2
# cores), and half of them beside one that does.
BATCH_TEXTS = 32


class Embedder:
    """A BERT-style GGUF embedding model: texts -> L2-normalised float32 vectors.

    Mean pooling over the model's 512-token window; longer texts are truncated (by tokens,
    keeping the trailing [SEP]). A Matryoshka model wider than the file's vectors gives its
    first `dim` dimensions, layer-normed first as it was trained (engine.store.profiles).
    `embed` is for texts stored to be found, `embed_query` for what a search looks for. One
    instance is safe to share between threads (calls serialise).
    """

    name: str
    dim: int
    profile: EmbeddingProfile

    def __init__(
        self, path: str | Path, name: str | None = None, n_threads: int | None = None
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._batch = None
        self._threads = n_threads or _default_threads()
        # A batch (an import, a pasted document) runs on every core: nothing else runs then.
        # So does any embedding while no chat model generates (BATCH_TEXTS). Given n_threads
        # is kept for batches too.
        self._batch_threads = n_threads or max(self._threads, available_cpus())
        self._llm = _load(self.path, self._threads)
        meta = self._llm.metadata
        self.name = name or meta.get("general.name") or self.path.stem
        self.profile = profile_for(self.name, meta.get("general.architecture", ""))
        self._width = self._llm.n_embd()
        self.dim = stored_width(self.profile, self._width) or self._width
        self._window = min(self._llm.n_ctx(), self._llm.n_batch)
        self._n_seq_max = max(1, int(self._llm.context_params.n_seq_max))
        vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._keeps_last = bool(
            llama_cpp.llama_vocab_get_add_eos(vocab) or llama_cpp.llama_vocab_get_add_sep(vocab)
        )
        self._batch = llama_cpp.llama_batch_init(self._window, 0, self._n_seq_max)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts`, stored to be found: float32 array of shape (len(texts), dim), each row
        of unit length."""
        if isinstance(texts, str):
            raise InvalidInput("embed() takes a list of strings; use embed_one() for one string")
        for text in texts:
            _require_text(text)
        return self._embed([self.profile.document_prefix + t for t in texts])

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text stored to be found: float32 vector of shape (dim,) and unit length."""
        return self.embed([text])[0]

    def embed_query(self, text: str) -> np.ndarray:
        """Embed what a search looks for: float32 vector of shape (dim,) and unit length."""
        _require_text(text)
        return self._embed([self.profile.query_prefix + text])[0]

    def _embed(self, texts: list[str]) -> np.ndarray:
        with timing.phase(timing.PHASE_EMBEDDING):  # model time in a step's timings
            token_lists = [self.tokenize(t) for t in texts]
            out = np.zeros((len(token_lists), self._width), dtype=np.float32)
            with self._lock:
                self._require_open()
                threads = self._threads_for(len(texts))
                llama_cpp.llama_set_n_threads(self._llm.ctx, threads, threads)
                for start, stop in self._packs(token_lists):
                    out[start:stop] = self._encode(token_lists[start:stop])
            if self.dim < self._width:
                out = _first_dims(out, self.dim)
            return _normalise(out)

    def _threads_for(self, texts: int) -> int:
        if texts >= BATCH_TEXTS or not chat_model_generating():
            return self._batch_threads
        return self._threads

    def tokenize(self, text: str) -> list[int]:
        """Token ids fed to the model ([CLS] ... [SEP]), truncated to the model's window."""
        _require_text(text)
        data = text.encode("utf-8", errors="replace")  # lone surrogates must not crash
        with self._lock:
            self._require_open()
            tokens = self._llm.tokenize(data, add_bos=True, special=False)
        if len(tokens) <= self._window:
            return tokens
        if self._keeps_last:
            return tokens[: self._window - 1] + tokens[-1:]
        return tokens[: self._window]

    def close(self) -> None:
        """Free the model (the instance is unusable afterwards)."""
        with self._lock:
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
                self._batch = None
                self._llm.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # half-built instance, or interpreter shutdown
            self.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self) -> None:
        if self._batch is None:
            raise ModelLoadError(f"embedder for {self.path} is closed")

    def _packs(self, token_lists: list[list[int]]) -> list[tuple[int, int]]:
        """Consecutive [start, stop) ranges of texts encoded together (a long text goes alone)."""
        packs: list[tuple[int, int]] = []
        start, used = 0, 0
        for i, tokens in enumerate(token_lists):
            if i > start and (used + len(tokens) > _PACK_TOKENS or i - start >= self._n_seq_max):
                packs.append((start, i))
                start, used = i, 0
            used += len(tokens)
        if start < len(token_lists):
            packs.append((start, len(token_lists)))
        return packs

    def _encode(self, token_lists: list[list[int]]) -> np.ndarray:
        """Run one batch (one sequence per text) and return the pooled rows."""
        batch = self._batch
        batch.n_tokens = 0
        for seq, tokens in enumerate(token_lists):
            for pos, token in enumerate(tokens):
                j = batch.n_tokens
                batch.token[j], batch.pos[j] = token, pos
                batch.n_seq_id[j], batch.seq_id[j][0], batch.logits[j] = 1, seq, True
                batch.n_tokens += 1
        rc = llama_cpp.llama_encode(self._llm.ctx, batch)
        if rc != 0:
            raise ModelLoadError(f"llama_encode failed ({rc}) with embedding model {self.path}")
        rows = np.empty((len(token_lists), self._width), dtype=np.float32)
        for seq in range(len(token_lists)):
            ptr = llama_cpp.llama_get_embeddings_seq(self._llm.ctx, seq)
            rows[seq] = np.ctypeslib.as_array(ptr, shape=(self._width,))
        return rows


def _require_text(text: object) -> None:
    if not isinstance(text, str):
        raise InvalidInput(f"cannot embed {type(text).__name__}: expected str")


def _default_threads() -> int:
    """Half the usable cores, at most 4: ggml's spinning threads collapse when oversubscribed
    (e.g. next to a chat model generating), and a 6-layer MiniLM gains little beyond that."""
    return max(1, min(4, available_cpus() // 2))


def _first_dims(rows: np.ndarray, dim: int) -> np.ndarray:
    """A Matryoshka model's rows cut to their first `dim` dimensions: layer norm (no learned
    scale) over the full width, then the cut, as the model was trained."""
    centred = rows - rows.mean(axis=1, keepdims=True)
    scaled = centred / np.sqrt((centred**2).mean(axis=1, keepdims=True) + 1e-5)
    return np.ascontiguousarray(scaled[:, :dim])


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _load(path: Path, n_threads: int) -> llama_cpp.Llama:
    """Open `path` as a mean-pooled embedding model, with llama.cpp's chatter sent to logging."""
    if not path.is_file():
        raise ModelLoadError(f"embedding model file {path} does not exist: {models_hint()}")
    route_native_log()
    printed = io.StringIO()  # Llama(verbose=True) print()s metadata to sys.stderr
    try:
        with contextlib.redirect_stderr(printed):
            llm = llama_cpp.Llama(
                model_path=str(path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=512,
                n_batch=512,
                n_ubatch=512,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=True,  # verbose=False would dup2() the whole process's stdout/stderr
            )
    except (ValueError, RuntimeError, OSError) as e:
        raise ModelLoadError(
            f"cannot load embedding model {path} ({e}); the file may be corrupt: "
            f"delete it and {models_hint()}"
        ) from e
    finally:
        log.debug("llama-cpp-python: %s", printed.getvalue().strip())
    _check_encoder(llm, path)
    return llm


def _check_encoder(llm: llama_cpp.Llama, path: Path) -> None:
    arch = llm.metadata.get("general.architecture", "?")
    if llm.metadata.get(f"{arch}.attention.causal") != "false":
        llm.close()
        raise ModelLoadError(
            f"{path} is a {arch} model, not a (non-causal) embedding model: {models_hint()}"
        )


def default_embedder() -> Embedder:
    """The default embedder (nomic-embed-text-v1.5), assembled from its packages on first use."""
    from models.fetch import model_path

    return Embedder(model_path("embed"))
