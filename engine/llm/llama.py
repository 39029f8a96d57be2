"""LlamaClient: the LLMClient protocol on llama-cpp-python (a local GGUF chat model on the CPU).

How a prompt is built, so that `count_tokens` is exact:

1. The messages are rendered with the GGUF's own chat template (`tokenizer.chat_template`) through
   llama-cpp-python's `Jinja2ChatFormatter` (bos/eos token strings from the vocab,
   add_generation_prompt=True). If the template writes the BOS text itself and the vocab also
   adds BOS, the leading BOS text is dropped (llama-cpp-python would otherwise add a second one).
2. `Llama.create_completion` would tokenize a prompt string as
   `[BOS if vocab add_bos] + tokenize(prompt, add_bos=False, special=True) + [SEP/EOS if the vocab
   asks for it]`. `_prompt_tokens` makes exactly those ids (tested against llama-cpp-python's own
   tokenization), `count_tokens` is their length, and `complete` hands llama-cpp-python the ids
   themselves. The text between the template's special tokens is tokenized once and cached
   (`_PieceTokenizer`), so a count or a call tokenizes only the messages new since the last one.

Sampling: the grammar is checked on the token the unconstrained sampler chain draws, and applied
to the whole vocabulary only when that token is not allowed (`_GrammarCheckedSampler`, what
llama.cpp's own `common_sampler` does); llama-cpp-python's chain applies it to all 152k tokens at
every step, which halves decoding speed on 2 cores. `grammar_check_first=False` restores that.
The unconstrained draw itself runs the chain on the highest logits only (the same token as over
all of them; ~0.26 ms a token instead of ~0.94 ms here). `python -m bench.grammar_speed`.

Timing: the client splits its share of a step's `timings` (engine.timing) into llama.cpp's
prompt evaluation and decoding (its own perf counters), the chat template, tokenizing, the
reply's streaming and the rest of the call (sampling and llama-cpp-python's token loop).

llama.cpp's native log goes to the Python logger "engine.llm.llama_cpp" (see `route_native_log`)
instead of `verbose=False`, which would point the whole process's file descriptors 1 and 2 at
/dev/null while a model loads.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import mmap
import os
import re
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from engine import timing
from engine.errors import GenerationError, Interrupted, ModelLoadError, models_hint
from engine.llm.base import (
    PROBE_SYSTEM,
    PROBE_USER,
    Completion,
    PromptCounts,
    TextSink,
    added_tokens,
    check_fits,
    check_request,
)
from engine.llm.grammar import compile_grammar
from engine.llm.kv_reuse import Moved, plan_moves, read_tokens
from engine.llm.prompt_state import PromptStateCache, model_sha256
from engine.types import ChatMessage

__all__ = ["LlamaClient", "GenerationStats", "read_gguf_metadata", "route_native_log"]

logger = logging.getLogger(__name__)
native_logger = logging.getLogger("engine.llm.llama_cpp")

# Architectures that only embed text (no causal LM head): never a chat model.
EMBEDDING_ARCHITECTURES = frozenset(
    {
        "bert",
        "nomic-bert",
        "nomic-bert-moe",
        "jina-bert-v2",
        "jina-bert-v3",
        "modern-bert",
        "neo-bert",
        "t5encoder",
        "clip",
        "wavtokenizer-dec",
    }
)

# --------------------------------------------------------------------------------------------
# Native log -> Python logging

# enum ggml_log_level in the bundled ggml.h (llama_cpp._logger still uses an older numbering):
# NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous message).
# llama.cpp's INFO is a per-load dump of every metadata key, so it goes to DEBUG here.
_NATIVE_LEVELS = {
    0: logging.DEBUG,
    1: logging.DEBUG,
    2: logging.DEBUG,
    3: logging.WARNING,
    4: logging.ERROR,
}


# Warnings llama.cpp logs for every load of healthy files (the embedder's BERT GGUF; the default
# Qwen GGUF's vocab, which llama.cpp fixes itself): demoted to DEBUG.
_BENIGN_WARNINGS = (
    "special_eos_id is not in special_eog_ids",
    "was not control-type; this is probably a bug in the model",
    # a decode stopped by the abort callback (ggml's status 1 is GGML_STATUS_ABORTED, decode's
    # 2 is "aborted"): asked for, by LlamaClient.interrupted_by
    "failed with error 1",
    "compute status: 1",
    "failed to decode, ret = 2",
    "removing memory module entries for seq_id",
)


class _NativeLog:
    """Joins llama.cpp's partial log messages into lines and logs each line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partial: list[str] = []
        self._level = 2
        self.count = 0  # lines logged so far
        self._recent: deque[tuple[int, int, str]] = deque(maxlen=200)

    def __call__(self, level: int, text: bytes | None, user_data: Any) -> None:
        try:
            piece = text.decode("utf-8", "replace") if text else ""
            with self._lock:
                if level != 5:
                    if self._partial and level != self._level:
                        self._flush()
                    self._level = level
                self._partial.append(piece)
                if piece.endswith("\n"):
                    self._flush()
        except Exception:  # never let an exception cross into C
            pass

    def _flush(self) -> None:
        line = "".join(self._partial).rstrip("\n")
        self._partial = []
        if not line.strip():
            return
        self._recent.append((self.count, self._level, line))
        self.count += 1
        level = _NATIVE_LEVELS.get(self._level, logging.DEBUG)
        if any(benign in line for benign in _BENIGN_WARNINGS):
            level = logging.DEBUG
        native_logger.log(level, "%s", line)

    def problems_since(self, mark: int) -> list[str]:
        """Warning and error lines logged since `count` was `mark`."""
        with self._lock:
            if self._partial:
                self._flush()
            return [line for seq, level, line in self._recent if seq >= mark and level >= 3]


_native_log = _NativeLog()
_native_callback = llama_cpp.llama_log_callback(_native_log)  # module-level: keep it alive
_route_lock = threading.Lock()
_routed = False


def route_native_log() -> None:
    """Send llama.cpp/ggml's native log to the Python logger "engine.llm.llama_cpp".

    Replaces the callback llama_cpp._logger installs on import (which prints to stderr and maps
    levels with an out-of-date table). Idempotent.
    """
    global _routed
    with _route_lock:
        if not _routed:
            llama_cpp.llama_log_set(_native_callback, ctypes.c_void_p(0))
            _routed = True


# --------------------------------------------------------------------------------------------
# GGUF header (checked before llama.cpp loads anything)


class _GGUFFormatError(Exception):
    pass


_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(
    path: str | os.PathLike[str], tokens: Collection[int] = ()
) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (scalars and strings; arrays as their length),
    plus the text of each token id in `tokens` as "tokenizer.ggml.tokens[ID]".

    Fast (reads only the header, skipping arrays such as the token list without decoding them).
    Raises ModelLoadError if the file is not a GGUF file or its header is cut short.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                if f.read(4) != b"GGUF":
                    raise ModelLoadError(_not_gguf(path))
                raise ModelLoadError(_truncated(path, "the file is only a few bytes long"))
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                if mm[:4] != b"GGUF":
                    raise ModelLoadError(_not_gguf(path))
                try:
                    return _parse_header(mm, frozenset(tokens))
                except struct.error:
                    detail = f"its header runs past the end of the file ({size} bytes)"
                    raise ModelLoadError(_truncated(path, detail)) from None
                except (_GGUFFormatError, UnicodeDecodeError) as exc:
                    raise ModelLoadError(_truncated(path, str(exc))) from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc}") from exc


def _parse_header(buf: mmap.mmap, tokens: frozenset[int] = frozenset()) -> dict[str, Any]:
    (version,) = struct.unpack_from("<I", buf, 4)
    if version not in (2, 3):
        raise _GGUFFormatError(f"unsupported GGUF version {version} (expected 2 or 3)")
    _n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
    off = 24
    end = len(buf)
    out: dict[str, Any] = {}

    def read_str(o: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", buf, o)
        o += 8
        if o + n > end:
            raise _GGUFFormatError("header ends inside a string")
        return buf[o : o + n].decode("utf-8"), o + n

    def skip_value(kind: int, o: int) -> tuple[Any, int]:
        if kind in _SCALAR_FORMATS:
            fmt = _SCALAR_FORMATS[kind]
            (v,) = struct.unpack_from(fmt, buf, o)
            return v, o + struct.calcsize(fmt)
        if kind == _STRING:
            return read_str(o)
        if kind == _ARRAY:
            sub, count = struct.unpack_from("<IQ", buf, o)
            o += 12
            if sub in _SCALAR_FORMATS:
                o += struct.calcsize(_SCALAR_FORMATS[sub]) * count
            elif sub == _STRING:
                for _ in range(count):
                    (n,) = struct.unpack_from("<Q", buf, o)
                    o += 8 + n
            else:
                for _ in range(count):
                    _, o = skip_value(sub, o)
            if o > end:
                raise _GGUFFormatError("header ends inside an array")
            return count, o
        raise _GGUFFormatError(f"unknown GGUF value type {kind}")

    def token_texts(o: int) -> None:
        """The texts of the wanted ids in the tokenizer.ggml.tokens array at `o`."""
        sub, count = struct.unpack_from("<IQ", buf, o)
        if sub != _STRING:
            raise _GGUFFormatError("tokenizer.ggml.tokens is not an array of strings")
        o += 12
        for index in range(min(count, max(tokens) + 1)):
            text, o = read_str(o)
            if index in tokens:
                out[f"tokenizer.ggml.tokens[{index}]"] = text

    for _ in range(n_kv):
        key, off = read_str(off)
        (kind,) = struct.unpack_from("<I", buf, off)
        if key == "tokenizer.ggml.tokens" and tokens and kind == _ARRAY:
            token_texts(off + 4)
        value, off = skip_value(kind, off + 4)
        out[key] = value
    return out


def _not_gguf(path: Path) -> str:
    return (
        f"{path} is not a GGUF model file (it does not start with 'GGUF'). Memex needs a chat "
        "model in GGUF format (llama.cpp); convert or download a .gguf file."
    )


def _truncated(path: Path, detail: str) -> str:
    return (
        f"{path} looks truncated or corrupt ({detail}). Download it again; if it is one of "
        f"the default models: {models_hint()}."
    )


# --------------------------------------------------------------------------------------------
# Grammar-first-check sampling


_RENDERS_KEPT = 32  # LlamaClient._render's cache of the newest prompts
# prefill reads this many tokens a decode: a stop drops at most one (~1 s of the 0.5B, 2 cores)
PREFILL_CHUNK = 128
PROMPT_STATE_MIN_TOKENS = 256  # a shorter prefix is read again in a few seconds: not saved
_SAMPLE_STRIDE = 64  # _GrammarCheckedSampler._top guesses its cut from every 64th logit
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
if _TOKEN_DATA.itemsize != ctypes.sizeof(llama_cpp.llama_token_data):  # the C struct changed
    raise ImportError("llama_token_data is not (int32 id, float logit, float p) in this llama.cpp")


class _GrammarCheckedSampler:
    """Samples like llama.cpp's own `common_sampler`: draw from the unconstrained chain first and
    keep the token if the grammar accepts it; only otherwise apply the grammar to the whole
    vocabulary and draw again.

    llama-cpp-python puts the grammar sampler in the chain before top-k, so the grammar is checked
    against every token of the vocabulary (152k for Qwen) at every step; on 2 CPU cores that
    halves decoding speed. The result is the same kind of constrained sampling: every token
    kept is one the grammar allows.

    The unconstrained draw does not hand the chain all 152k tokens either. The chain is
    penalties (which only lower the logits of the last `penalty_last_n` tokens), then top-k, and
    every sampler after top-k sees only the k tokens it keeps; so the chain picks the same
    token from any candidates that include the `top_k + penalty_last_n` highest logits (a
    token in the top k after the penalties is in the top k + P before them, P penalised tokens
    being the only ones that move, and only down). Those go to the chain (`_top`, ~50 us), not
    a 152k-entry copy of the logits that the chain's penalties and top-k walk through (~0.7 ms
    a token on one core here). `keep` is that count, or None for a chain it does not hold for
    (no top-k, greedy or mirostat sampling, a penalty that raises logits): then every draw is
    over the whole vocabulary.
    """

    def __init__(
        self,
        llama: llama_cpp.Llama,
        chain: Any,
        grammar: llama_cpp.LlamaGrammar,
        keep: int | None = None,
    ) -> None:
        self._chain = chain  # llama_cpp._internals.LlamaSampler, without the grammar
        self._grammar = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._grammar:
            raise ValueError("llama.cpp rejected the grammar")
        self._n_vocab = n_vocab = llama.n_vocab()
        self._keep = keep if keep is not None and 0 < keep < n_vocab // 4 else None
        self._data = np.zeros(n_vocab, dtype=_TOKEN_DATA)  # the candidates handed to llama.cpp
        self._ids, self._logits, self._p = self._data["id"], self._data["logit"], self._data["p"]
        self._all_ids = np.arange(n_vocab, dtype=np.intc)
        self._array = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=n_vocab,
            selected=-1,
            sorted=False,
        )
        self._array_ref = ctypes.byref(self._array)
        self._views: dict[int, np.ndarray] = {}  # logits buffer address -> array over it
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1
        )
        self.checked = 0
        self.resampled = 0
        self.full_draws = 0  # unconstrained draws over the whole vocabulary (no cut found)

    def _logits_at(self, ctx: Any, idx: int) -> np.ndarray:
        """llama.cpp's logits row, as an array over its buffer (made once per address: numpy's
        as_array builds a ctypes type each call, ~0.2 ms)."""
        address = ctypes.cast(llama_cpp.llama_get_logits_ith(ctx.ctx, idx), ctypes.c_void_p).value
        if not address:
            raise RuntimeError("llama.cpp returned no logits")
        view = self._views.get(address)
        if view is None:
            buffer = (ctypes.c_float * self._n_vocab).from_address(address)
            view = self._views[address] = np.frombuffer(buffer, dtype=np.float32)
        return view

    def _top(self, logits: np.ndarray) -> np.ndarray | None:
        """Ids of the `keep` highest logits (ties included), or None (no fast path, or no cut
        found: NaN logits). A cut is guessed from every 64th logit (its 9th highest: about the
        500th overall), checked to keep at least `keep` (else a deeper guess), and the few
        hundred kept are partitioned for the exact keep-th. About 50 us for 152k logits."""
        keep = self._keep
        if keep is None:
            return None
        sample = logits[::_SAMPLE_STRIDE]
        n = len(sample)
        for rank in (8, 32, 128):
            if rank >= n:
                break
            cut = np.partition(sample, n - 1 - rank)[n - 1 - rank]
            ids = np.flatnonzero(logits >= cut)
            if len(ids) >= keep:
                kept = logits[ids]
                kth = np.partition(kept, len(kept) - keep)[len(kept) - keep]
                return ids[kept >= kth]
        return None

    def _apply(self, sampler: Any, size: int) -> int:
        array = self._array
        array.size = size
        array.selected = -1
        array.sorted = False
        llama_cpp.llama_sampler_apply(sampler, self._array_ref)
        selected = array.selected
        if selected < 0 or selected >= array.size:
            raise RuntimeError("the sampler selected no token")
        return int(self._ids[selected])

    def _draw_all(self, logits: np.ndarray, constrained: bool) -> int:
        """A draw over the whole vocabulary (with the grammar first when `constrained`)."""
        self._ids[:] = self._all_ids
        self._logits[:] = logits
        self._p[:] = 0.0
        if constrained:
            self._array.size = self._n_vocab
            self._array.selected = -1
            self._array.sorted = False
            llama_cpp.llama_sampler_apply(self._grammar, self._array_ref)
        return self._apply(self._chain.sampler, self._n_vocab)

    def _draw(self, logits: np.ndarray) -> int:
        """The unconstrained chain's draw: over the top candidates where that is the same."""
        ids = self._top(logits)
        if ids is None:
            self.full_draws += 1
            return self._draw_all(logits, constrained=False)
        n = len(ids)
        self._ids[:n] = ids
        self._logits[:n] = logits[ids]
        self._p[:n] = 0.0
        return self._apply(self._chain.sampler, n)

    def _allowed(self, token: int) -> bool:
        self._one[0].id = token
        self._one[0].logit = 1.0
        self._one[0].p = 0.0
        self._one_array.size = 1
        self._one_array.selected = -1
        self._one_array.sorted = False
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._one_array))
        return self._one[0].logit != float("-inf")

    def sample(self, ctx: Any, idx: int = -1) -> int:
        logits = self._logits_at(ctx, idx)
        token = self._draw(logits)
        self.checked += 1
        if not self._allowed(token):
            self.resampled += 1
            token = self._draw_all(logits, constrained=True)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)
        return token

    def close(self) -> None:
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        self._chain.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _top_candidates_suffice(llama: llama_cpp.Llama, kwargs: dict[str, Any]) -> int | None:
    """How many of the highest logits the unconstrained chain `_init_sampler(**kwargs)` builds
    needs to pick what it would pick from all of them (see _GrammarCheckedSampler), or None."""
    top_k = kwargs.get("top_k", 40)
    lowers_only = (
        kwargs.get("repeat_penalty", 1.0) >= 1.0
        and kwargs.get("frequency_penalty", 0.0) >= 0.0
        and kwargs.get("presence_penalty", 0.0) >= 0.0
    )
    simple = (
        kwargs.get("temp", 0.8) > 0.0
        and kwargs.get("mirostat_mode", 0) == 0
        and kwargs.get("logits_processor") is None
    )
    if not (top_k > 0 and lowers_only and simple):
        return None
    return int(top_k) + max(0, int(llama.last_n_tokens_size))


class _PieceTokenizer:
    """Tokenizes a rendered prompt piece by piece, each piece's tokens cached.

    With special tokens parsed, llama.cpp first splits the text at every special token and
    tokenizes the text between them on its own; so a prompt cut just before a special token
    (the chat template's `<|im_start|>`, `<|im_end|>`, ...) tokenizes as its pieces do, one
    after the other. A prompt is mostly the pieces of the last one (the system message, the
    messages in view): only the new messages are tokenized again, not the whole window at
    every count and call. `for_template` finds the template's control tokens and checks on
    sample prompts that cutting before them gives exactly llama.cpp's tokens; where it does
    not, prompts are tokenized whole.
    """

    def __init__(
        self, tokenize: Callable[[str], list[int]], markers: Sequence[str], size: int = 2048
    ) -> None:
        self._tokenize = tokenize
        self.markers = tuple(markers)
        self._split = (
            re.compile("(?=" + "|".join(re.escape(m) for m in self.markers) + ")").split
            if self.markers
            else None
        )
        self._size = size
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_template(
        cls, tokenize: Callable[[str], list[int]], samples: list[str], vocab: Any
    ) -> _PieceTokenizer:
        markers: dict[str, None] = {}
        for sample in samples:
            for token in tokenize(sample):
                attr = llama_cpp.llama_vocab_get_attr(vocab, token)
                if attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
                    text = llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
                    if text:
                        markers[text] = None
        pieces = cls(tokenize, list(markers))
        if not markers or any(pieces(s) != tokenize(s) for s in samples):
            logger.debug("tokenizing prompts whole: the template's pieces do not add up")
            return cls(tokenize, ())
        pieces._cache.clear()
        return pieces

    def __call__(self, text: str) -> list[int]:
        if self._split is None or len(text) < 64:
            return self._tokenize(text)
        tokens: list[int] = []
        cache = self._cache
        for piece in self._split(text):
            if not piece:
                continue
            with self._lock:
                cached = cache.get(piece)
                if cached is not None:
                    cache.move_to_end(piece)
            if cached is None:
                cached = tuple(self._tokenize(piece))
                with self._lock:
                    cache[piece] = cached
                    if len(cache) > self._size:
                        cache.popitem(last=False)
            tokens.extend(cached)
        return tokens


class _TextStream:
    """Hands the reply to a TextSink as it is generated, through llama-cpp-python's stopping
    criteria (called once a token, with the tokens evaluated so far): the reply and its usage
    figures stay those of a plain completion, and the sink can stop it. The criteria see each
    token once the next one is drawn, so `finish` sends the last piece."""

    def __init__(
        self, llama: llama_cpp.Llama, n_prompt: int, sink: TextSink, pieces: dict[int, bytes]
    ) -> None:
        self._llama = llama
        self._pieces = pieces  # shared by the client's streams: a token's bytes never change
        self._n_prompt = n_prompt
        self._sink = sink
        self._sent = ""
        self._bytes = b""  # the reply so far: the bytes of its first `_done` tokens
        self._done = 0
        self.stopped = False

    def criteria(self) -> llama_cpp.StoppingCriteriaList:
        return llama_cpp.StoppingCriteriaList([self._on_token])

    def _on_token(self, input_ids: Any, _logits: Any) -> bool:
        with timing.phase(timing.PHASE_STREAM):
            # only the new tokens: a token's bytes do not depend on the tokens around it
            # (detokenizing the whole reply at each token cost O(n^2) token_to_piece calls)
            new = [int(t) for t in input_ids[self._n_prompt + self._done :]]
            self._bytes += b"".join(map(self._piece, new))
            self._done += len(new)
            # "ignore" holds back a character whose bytes are not all generated yet
            self._send(self._bytes.decode("utf-8", "ignore"))
        return self.stopped

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._llama.detokenize([token])
        return piece

    def _send(self, text: str) -> None:
        if self.stopped or not text.startswith(self._sent) or len(text) == len(self._sent):
            return
        piece, self._sent = text[len(self._sent) :], text
        if self._sink(piece) is False:
            self.stopped = True

    def finish(self, final_text: str) -> None:
        with timing.phase(timing.PHASE_STREAM):
            self._send(final_text)


# llama.cpp's AMX kernels (built in when it is compiled on a CPU that has AMX, as pip's source
# build does) crash the first decode of a Q4_K_M model on some Sapphire Rapids machines
# (ggml-org/llama.cpp#20824, open; dspy's CI hit it too). They come in through the "extra buffer
# types" a model's weights are repacked into, so where llama.cpp reports AMX the weights load
# without them: the plain CPU kernels, a little slower on long prompts, and no crash.
_AMX = b"AMX_INT8 = 1"
_load_lock = threading.Lock()  # the default-params swap below is process-wide


def _repack_safe() -> bool:
    return _AMX not in llama_cpp.llama_print_system_info()


@contextlib.contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """During a load: model params with use_extra_bufts off (Llama() takes no such argument,
    and reads llama_model_default_params() inside its __init__)."""
    low_level = llama_cpp.llama_cpp
    original = low_level.llama_model_default_params

    def params() -> Any:
        made = original()
        made.use_extra_bufts = False
        return made

    with _load_lock:
        low_level.llama_model_default_params = params
        try:
            yield
        finally:
            low_level.llama_model_default_params = original


def amx_safe_load() -> contextlib.AbstractContextManager[None]:
    """Where llama.cpp has AMX kernels: model params without the extra buffer types while it
    is held (see above); elsewhere nothing."""
    return contextlib.nullcontext() if _repack_safe() else _without_extra_buffer_types()


class _Llama(llama_cpp.Llama):
    """llama_cpp.Llama with grammar-checked sampling (see _GrammarCheckedSampler)."""

    grammar_check_first = True
    top_candidates_first = True  # False: the unconstrained draw over the whole vocabulary
    last_sampler: _GrammarCheckedSampler | None = None

    @property
    def context_params(self) -> Any:
        return self._context_params

    @context_params.setter
    def context_params(self, params: Any) -> None:
        # set as Llama.__init__ makes them, before the context: a second sequence, sharing the
        # one KV cache (not n_ctx / 2 each), to read a changed stretch of a prompt in the
        # middle of it (LlamaClient._move_cached)
        params.n_seq_max = 2
        params.kv_unified = True
        self._context_params = params

    def _init_sampler(self, *args: Any, **kwargs: Any) -> Any:
        grammar = kwargs.pop("grammar", None)
        if grammar is None or args or not self.grammar_check_first:
            return super()._init_sampler(*args, grammar=grammar, **kwargs)
        chain = super()._init_sampler(grammar=None, **kwargs)
        keep = _top_candidates_suffice(self, kwargs) if self.top_candidates_first else None
        sampler = _GrammarCheckedSampler(self, chain, grammar, keep)
        self.last_sampler = sampler
        return sampler


# --------------------------------------------------------------------------------------------
# The client


PROMPT_RATE_MIN_TOKENS = 32  # a prompt read shorter than this says little of the speed


@dataclass(frozen=True)
class GenerationStats:
    """What llama.cpp measured for the last `complete` call."""

    prompt_tokens: int  # tokens in the prompt
    prompt_eval_tokens: int  # of which actually evaluated (the rest came from the KV cache)
    prompt_eval_s: float
    completion_tokens: int
    eval_s: float  # decoding time (sampling with the grammar included in wall_s only)
    wall_s: float
    grammar_resamples: int = 0  # tokens the unconstrained draw got wrong (grammar_check_first)

    @property
    def cached_prompt_tokens(self) -> int:
        return max(0, self.prompt_tokens - self.prompt_eval_tokens)


class LlamaClient:
    """A local GGUF chat model that answers with one grammar-constrained JSON reply.

    Not thread-safe for concurrent generation; `complete` serialises callers with a lock.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        repeat_penalty: float = 1.1,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        name: str | None = None,
        grammar_check_first: bool = True,
        move_cache: bool = True,
    ) -> None:
        route_native_log()
        path = Path(model_path).expanduser()
        if not path.exists():
            raise ModelLoadError(
                f"model file not found: {path}. Pass the path of a GGUF chat model (default "
                f"models: {models_hint()})."
            )
        if not path.is_file():
            raise ModelLoadError(f"{path} is a folder, not a file; pass the path of a .gguf file")
        header = read_gguf_metadata(path)
        arch = str(header.get("general.architecture", ""))
        if arch in EMBEDDING_ARCHITECTURES:
            raise ModelLoadError(
                f"{path} is not a chat model: its architecture is {arch!r} (an embedding "
                "model). Use it as the embedding model and choose a chat (instruct) GGUF here."
            )
        if not isinstance(header.get("tokenizer.chat_template"), str):
            raise ModelLoadError(
                f"{path} is not a chat model: the GGUF has no chat template "
                "(tokenizer.chat_template), so it is probably a base model. Use an instruct/chat "
                "GGUF."
            )

        if n_ctx <= 0:
            raise ModelLoadError(f"n_ctx must be positive, got {n_ctx}")
        if n_threads is None:
            n_threads = available_cpus()
        self.model_path = path
        self._side_settings = {
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            "seed": seed,
            "n_batch": min(n_batch, 128),  # llama-cpp-python keeps n_batch x n_vocab logits
            "n_gpu_layers": n_gpu_layers,
            "name": name,
            "move_cache": False,  # its prompts (readings, summaries) share little but prefixes
        }
        # where a page-out changed the prompt's middle, move the cached rest instead of reading
        # it again (_reuse_cache; False: prefix reuse alone, as llama-cpp-python does)
        self.move_cache = move_cache
        self._shiftable: bool | None = None
        self._side: LlamaClient | None = None
        self._seed = seed
        self._sampling = {
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "min_p": min_p,
            "repeat_penalty": repeat_penalty,
        }
        self._lock = threading.RLock()
        self._counts = PromptCounts()
        self._renders: OrderedDict[tuple[ChatMessage, ...], str] = OrderedDict()
        self._renders_lock = threading.Lock()
        self._pieces_of: dict[int, bytes] = {}  # token id -> its text's bytes (streaming)
        self._validated_grammars: set[str] = set()
        self.last_stats: GenerationStats | None = None
        self._prompt_rate: float | None = None  # prompt tokens a second, measured (smoothed)

        mark = _native_log.count
        captured = io.StringIO()
        started = time.perf_counter()
        try:
            # verbose=True keeps llama-cpp-python from redirecting fds 1/2 to /dev/null during the
            # load; its own Python-level prints during __init__ are captured here and logged.
            with contextlib.redirect_stderr(captured), amx_safe_load():
                self._llama = _Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_batch=min(n_batch, n_ctx),
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    n_gpu_layers=n_gpu_layers,
                    seed=seed,
                    verbose=True,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            detail = "; ".join(_native_log.problems_since(mark)[-3:]) or str(exc)
            raise ModelLoadError(
                f"llama.cpp could not load {path}: {detail}. The file may be truncated or "
                "corrupt (download/assemble it again), or made for a newer llama.cpp."
            ) from exc
        finally:
            if captured.getvalue():
                logger.debug("llama-cpp-python during load: %s", captured.getvalue()[:4000])
        self._llama.verbose = False  # no per-call prints to stderr from here on
        self._llama.grammar_check_first = grammar_check_first
        # llama.cpp asks this between the parts of each decode: set, the decode stops (in well
        # under a second), so idle work yields to the user even while it reads a long prompt
        self._interrupt: threading.Event | None = None
        self._abort = llama_cpp.ggml_abort_callback(self._should_abort)
        llama_cpp.llama_set_abort_callback(self._llama.ctx, self._abort, None)
        self._model_sha256: str | None = None  # hashed at the first save or load
        logger.info("loaded %s in %.1fs", path.name, time.perf_counter() - started)

        try:
            self._setup_template()
        except Exception:
            self.close()
            raise
        meta = dict(self._llama.metadata)
        self.metadata: dict[str, Any] = meta
        self.name: str = name or meta.get("general.name") or path.stem

    # -- setup -----------------------------------------------------------------------------

    def _setup_template(self) -> None:
        llama = self._llama
        model = llama._model  # same object llama-cpp-python's create_completion uses
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelLoadError(
                f"{self.model_path} is not a chat model: llama.cpp reports no chat template."
            )
        bos_id, eos_id = llama.token_bos(), llama.token_eos()
        self._bos_text = model.token_get_text(bos_id) if bos_id != -1 else ""
        eos_text = model.token_get_text(eos_id) if eos_id != -1 else ""
        try:
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=eos_text,
                bos_token=self._bos_text,
                add_generation_prompt=True,
            )
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            raise ModelLoadError(
                f"the chat template of {self.model_path} cannot be parsed ({exc}); use another "
                "GGUF of this model"
            ) from exc
        # Mirrors Llama._create_completion's bos/eos handling for a string prompt.
        cls_id, sep_id = model.token_cls(), model.token_sep()
        first = cls_id if cls_id != -1 else bos_id
        self._prefix_ids = [first] if model.add_bos_token() and first != -1 else []
        last = sep_id if sep_id != -1 else eos_id
        self._suffix_ids = [] if (not model.add_eos_token() and sep_id == -1) else [last]
        vocab = model.vocab
        eot_id = llama_cpp.llama_vocab_eot(vocab)
        stops = []
        for tok in (eos_id, eot_id):
            if tok != -1:
                text = model.token_get_text(tok)
                if text and text not in stops:
                    stops.append(text)
        self._stop = stops
        try:
            self._render([PROBE_SYSTEM, PROBE_USER])
        except GenerationError as exc:
            raise ModelLoadError(f"the chat template of {self.model_path} fails: {exc}") from exc
        self._pieces = _PieceTokenizer.for_template(self._tokenize_text, self._samples(), vocab)

    def _samples(self) -> list[str]:
        """Prompts rendered by the template, to find and check where tokenizing may split."""
        conversations = [
            [PROBE_SYSTEM, PROBE_USER],
            [
                ChatMessage("system", "You are Sam.\n\nTools:\nsend_message(message)  "),
                ChatMessage("user", " Hi!  I'm Ada, 42 years old; naïve café 日本語 😀\n\n"),
                ChatMessage("assistant", '{"thought": "Greet.", "tool": "send_message"}'),
                ChatMessage("tool", '{"tool": "send_message", "status": "OK"}'),
                ChatMessage("system", "[memory pressure] 71% full.\n"),
                ChatMessage("user", "\tand <b>bold</b> </s> [INST] \\n end."),
            ],
        ]
        samples = []
        for messages in conversations:
            with contextlib.suppress(GenerationError):  # a template may refuse some roles
                samples.append(self._render(messages))
        return samples

    # -- protocol --------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        return self._llama.n_ctx()

    def render(self, messages: list[ChatMessage]) -> str:
        """The prompt text `complete(messages, ...)` sends (for inspection and tests)."""
        return self._render(messages)

    def prompt_tokens(self, messages: list[ChatMessage]) -> list[int]:
        """The token ids `complete(messages, ...)` evaluates."""
        return self._prompt_tokens(self._render(messages))

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        if not messages:
            return 0  # nothing to render (templates such as Qwen's fail on an empty list)
        return self._counts.get(self._render(messages), lambda p: len(self._prompt_tokens(p)))

    def count_message_tokens(self, message: ChatMessage) -> int:
        return added_tokens(self.count_tokens, message)

    def complete(
        self,
        messages: list[ChatMessage],
        reply_schema: dict[str, Any] | None,
        max_tokens: int,
        on_text: TextSink | None = None,
    ) -> Completion:
        check_request(messages, max_tokens)
        with self._lock:
            # the token ids, as llama-cpp-python makes them from the prompt text (mostly from
            # the piece cache: the context builder has just counted this prompt)
            tokens = self._prompt_tokens(self._render(messages))
            n_prompt = len(tokens)
            check_fits(n_prompt, max_tokens, self.context_window)
            grammar = None if reply_schema is None else self._grammar(reply_schema)
            ctx = self._llama.ctx
            self._llama.last_sampler = None
            llama_cpp.llama_perf_context_reset(ctx)
            # what the cache holds of the prompt, moved where a page-out changed its middle;
            # at least the last token is read again (as Llama.generate does)
            self._reuse_cache(tokens[:-1])
            stream = (
                None
                if on_text is None
                else _TextStream(self._llama, n_prompt, on_text, self._pieces_of)
            )
            started = time.perf_counter()
            with timing.phase(timing.PHASE_MODEL), _generating():
                try:
                    out = self._llama.create_completion(
                        prompt=tokens,  # a token list: llama-cpp-python adds no BOS/EOS to it
                        max_tokens=max_tokens,
                        stop=list(self._stop),
                        seed=self._seed,
                        grammar=grammar,
                        stopping_criteria=None if stream is None else stream.criteria(),
                        **self._sampling,
                    )
                except (RuntimeError, ValueError, OSError) as exc:
                    self._raise_failed(exc)
                wall = time.perf_counter() - started
                perf = llama_cpp.llama_perf_context(ctx)
                # llama.cpp's own clocks: what is left of the phase is sampling and the loop
                timing.attribute(timing.PHASE_PROMPT_EVAL, perf.t_p_eval_ms / 1000.0)
                timing.attribute(timing.PHASE_GENERATION, perf.t_eval_ms / 1000.0)
            sampler = self._llama.last_sampler
        choice = out["choices"][0]  # type: ignore[index]
        usage = out["usage"]  # type: ignore[index]
        finish = choice.get("finish_reason")
        if stream is not None:
            finish = "cancelled" if stream.stopped else finish
            stream.finish(choice["text"])
        completion = Completion(
            text=choice["text"],
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            finish_reason=finish,
        )
        self.last_stats = GenerationStats(
            prompt_tokens=completion.prompt_tokens,
            prompt_eval_tokens=int(perf.n_p_eval),
            prompt_eval_s=perf.t_p_eval_ms / 1000.0,
            completion_tokens=completion.completion_tokens,
            eval_s=perf.t_eval_ms / 1000.0,
            wall_s=wall,
            grammar_resamples=sampler.resampled if sampler is not None else 0,
        )
        logger.debug("completion %s", self.last_stats)
        if perf.n_p_eval >= PROMPT_RATE_MIN_TOKENS and perf.t_p_eval_ms > 0:
            rate = perf.n_p_eval / (perf.t_p_eval_ms / 1000.0)
            # smoothed: one call slowed by another process does not swing the estimate
            old = self._prompt_rate
            self._prompt_rate = rate if old is None else 0.7 * old + 0.3 * rate
        return completion

    # -- internals -------------------------------------------------------------------------

    def _render(self, messages: list[ChatMessage]) -> str:
        """The prompt text; the newest renders are kept (a step renders the same window to
        count it, to count it again once built, and to send it)."""
        key = tuple(messages)
        with self._renders_lock:
            prompt = self._renders.get(key)
            if prompt is not None:
                self._renders.move_to_end(key)
                return prompt
        payload = [{"role": m.role, "content": m.content} for m in messages]
        try:
            with timing.phase(timing.PHASE_TEMPLATE):
                prompt = self._formatter(messages=payload).prompt
        except Exception as exc:  # the template's raise_exception, jinja2 errors
            roles = ", ".join(m.role for m in messages)
            raise GenerationError(
                f"the model's chat template cannot render these messages (roles: {roles}): {exc}"
            ) from exc
        if self._prefix_ids and self._bos_text and prompt.startswith(self._bos_text):
            prompt = prompt[len(self._bos_text) :]  # llama-cpp-python adds the BOS token
        with self._renders_lock:
            self._renders[key] = prompt
            if len(self._renders) > _RENDERS_KEPT:
                self._renders.popitem(last=False)
        return prompt

    def _prompt_tokens(self, prompt: str) -> list[int]:
        with timing.phase(timing.PHASE_TOKENIZE):
            return [*self._prefix_ids, *self._pieces(prompt), *self._suffix_ids]

    def _tokenize_text(self, text: str) -> list[int]:
        """llama-cpp-python's tokenization of prompt text (special tokens parsed, no BOS)."""
        if not text:
            return []
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _grammar(self, schema: dict[str, Any]) -> llama_cpp.LlamaGrammar:
        grammar = compile_grammar(schema)
        text = grammar._grammar
        if text not in self._validated_grammars:
            # llama-cpp-python adds whatever llama_sampler_init_grammar returns to the sampler
            # chain, NULL included; check here that llama.cpp's parser accepts the grammar.
            sampler = llama_cpp.llama_sampler_init_grammar(
                self._llama._model.vocab, text.encode("utf-8"), b"root"
            )
            if not sampler:
                raise ValueError(
                    "llama.cpp rejected the reply grammar (see the engine.llm.llama_cpp log); "
                    "this is a bug in engine.llm.grammar"
                )
            llama_cpp.llama_sampler_free(sampler)
            self._validated_grammars.add(text)
        return grammar

    def prompt_seconds(self, messages: list[ChatMessage]) -> float:
        """About how long the next complete(messages) reads its prompt: the tokens past what
        the KV cache holds, at the prompt speed measured so far (0.0 before a measurement)."""
        if self._prompt_rate is None or not messages:
            return 0.0
        with self._lock:
            tokens = self._prompt_tokens(self._render(messages))
            cached = self._llama.input_ids[: self._llama.n_tokens].tolist()
        shared = 0
        while shared < min(len(cached), len(tokens)) and cached[shared] == tokens[shared]:
            shared += 1
        return (len(tokens) - shared) / self._prompt_rate

    # -- stopping, reading ahead, the prompt cache across restarts -----------------------------

    def _should_abort(self, _data: Any) -> bool:
        interrupt = self._interrupt
        return interrupt is not None and interrupt.is_set()

    @contextlib.contextmanager
    def interrupted_by(self, cancel: threading.Event | None) -> Iterator[None]:
        """While in the block, a model call (complete, prefill) stops as soon as `cancel` is
        set, even in the middle of reading its prompt: complete raises Interrupted."""
        previous, self._interrupt = self._interrupt, cancel
        try:
            yield
        finally:
            self._interrupt = previous

    def _raise_failed(self, exc: BaseException) -> NoReturn:
        if self._should_abort(None):
            raise Interrupted("stopped while the model was working, as asked") from exc
        raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc

    def stable_prefix(self, messages: list[ChatMessage]) -> list[int]:
        """The tokens every prompt that continues `messages` starts with: their prompt without
        the generation prompt the template appends (the next prompt has another message
        there)."""
        tokens = self.prompt_tokens(messages)
        continued = self.prompt_tokens([*messages, PROBE_USER])
        return tokens[: llama_cpp.Llama.longest_token_prefix(tokens, continued)]

    def _keep_cached(self, tokens: list[int]) -> int:
        """Keep the longest prefix of `tokens` the KV cache holds and drop the rest (as
        llama-cpp-python's generate does); the tokens kept."""
        llama = self._llama
        cached = llama.input_ids[: llama.n_tokens].tolist()
        keep = llama_cpp.Llama.longest_token_prefix(cached, tokens)
        if keep < llama.n_tokens:
            llama._ctx.kv_cache_seq_rm(-1, keep, -1)
            llama.n_tokens = keep
        return keep

    def _reuse_cache(self, tokens: list[int]) -> tuple[int, int]:
        """Keep what the KV cache holds of `tokens`: its longest cached prefix and, where
        `tokens` lost or changed a stretch after it (a page-out), the cached stretches that
        follow, moved to their new places (engine.llm.kv_reuse), the tokens between them read
        now; the rest of the cache is dropped. Returns how many leading tokens of `tokens`
        the cache then holds (a failed or stopped edit falls back to the prefix), and how many
        of them it read."""
        if not self.move_cache or not self._can_shift():
            return self._keep_cached(tokens), 0
        llama = self._llama
        cached = llama.input_ids[: llama.n_tokens].tolist()
        kept = llama_cpp.Llama.longest_token_prefix(cached, tokens)
        plan = plan_moves(cached, tokens, kept) if kept < len(cached) else []
        if not plan:
            return self._keep_cached(tokens), 0
        end = plan[-1].new_start + plan[-1].length
        if self._should_abort(None):
            raise Interrupted("stopped")  # before any edit: the cache stays as it was
        try:
            self._move_cached(plan, kept, tokens)
            llama.input_ids[kept:end] = tokens[kept:end]
            # the last token read again: llama.cpp applies the moves at the next decode, and a
            # state saved before one would hold them unapplied
            llama._ctx.kv_cache_seq_rm(0, end - 1, -1)
            llama.n_tokens = end - 1
            llama.eval(tokens[end - 1 : end])
        except (RuntimeError, Interrupted) as exc:
            # what the edit left is not a prompt: keep the prefix alone, as prefix reuse would
            llama._ctx.kv_cache_seq_rm(-1, kept, -1)
            llama.n_tokens = kept
            if isinstance(exc, Interrupted) or self._should_abort(None):
                raise Interrupted("stopped") from exc
            logger.warning("moving the cached prompt failed (%s); it is read again", exc)
            return kept, 0
        return end, read_tokens(plan, kept, end) + 1

    def _can_shift(self) -> bool:
        """Whether llama.cpp can move this model's cached tokens (RoPE models can; not all)."""
        if self._shiftable is None:
            memory = llama_cpp.llama_get_memory(self._llama.ctx)
            self._shiftable = bool(llama_cpp.llama_memory_can_shift(memory))
        return self._shiftable

    def _move_cached(self, plan: list[Moved], kept: int, tokens: list[int]) -> None:
        """Carry out `plan` on sequence 0 of the KV cache: drop what no stretch keeps, move
        each stretch, then read each gap before a stretch in sequence 1 (llama.cpp reads a
        sequence's tokens only after its last one: sequence 1 holds just what comes before
        the gap) and give its cells to sequence 0."""
        mem = llama_cpp.llama_get_memory(self._llama.ctx)
        llama_cpp.llama_memory_seq_rm(mem, 1, -1, -1)
        edge = kept
        for move in plan:  # drop the cells no stretch keeps
            llama_cpp.llama_memory_seq_rm(mem, 0, edge, move.old_start)
            edge = move.old_start + move.length
        llama_cpp.llama_memory_seq_rm(mem, 0, edge, -1)
        # left moves in order, right ones from the last: no stretch lands where one still is
        left = [m for m in plan if m.shift < 0]
        right = [m for m in reversed(plan) if m.shift > 0]
        for move in [*left, *right]:
            llama_cpp.llama_memory_seq_add(
                mem, 0, move.old_start, move.old_start + move.length, move.shift
            )
        start = kept
        for move in plan:
            if move.new_start > start:
                self._read_gap(mem, tokens[start : move.new_start], start)
            start = move.new_start + move.length

    def _read_gap(self, mem: Any, gap: list[int], position: int) -> None:
        """Read `gap` at `position`, after all sequence 0 holds before it."""
        llama = self._llama
        llama_cpp.llama_memory_seq_cp(mem, 0, 1, 0, position)
        try:
            batch = llama._batch.batch
            for first in range(0, len(gap), llama.n_batch):
                if self._should_abort(None):
                    raise Interrupted("stopped")
                chunk = gap[first : first + llama.n_batch]
                batch.n_tokens = len(chunk)
                for i, token in enumerate(chunk):
                    batch.token[i] = token
                    batch.pos[i] = position + first + i
                    batch.seq_id[i][0] = 1
                    batch.n_seq_id[i] = 1
                    batch.logits[i] = False
                batch.logits[len(chunk) - 1] = True
                llama._ctx.decode(llama._batch)
            llama_cpp.llama_memory_seq_cp(mem, 1, 0, position, position + len(gap))
        finally:
            llama_cpp.llama_memory_seq_rm(mem, 1, -1, -1)

    def prefill(self, messages: list[ChatMessage], cancel: threading.Event | None = None) -> int:
        """Read the stable prefix of `messages` into the KV cache now (idle time), so that the
        next complete() on them plus a new message reads only the new message (what the cache
        holds of it is kept, moved where a page-out changed its middle). Stops when `cancel` is
        set, keeping what it read. Returns the tokens it read."""
        with self._lock, self.interrupted_by(cancel or self._interrupt):
            tokens = self.stable_prefix(messages)
            try:
                start, read = self._reuse_cache(tokens)
            except Interrupted:
                return 0  # stopped before or while it moved the cache (see _reuse_cache)
            for first in range(start, len(tokens), PREFILL_CHUNK):
                if self._should_abort(None):
                    break
                chunk = tokens[first : first + PREFILL_CHUNK]
                try:
                    self._llama.eval(chunk)
                except RuntimeError as exc:
                    if self._should_abort(None):
                        break  # the stopped chunk is dropped; the ones before stay read
                    raise GenerationError(f"llama.cpp failed while reading ahead: {exc}") from exc
                read += len(chunk)
            # llama.cpp books decode time at its next synchronize: done here, the reading is
            # booked to this call and not to the next complete()'s prompt figures
            llama_cpp.llama_synchronize(self._llama.ctx)
            return read

    def prompt_cache(self) -> PromptStateCache:
        """This model's and window's saved prefixes in the prompt-state folder as it is set now
        (engine.llm.prompt_state), the model named by its sha256 (hashed once, the first time,
        where no check recorded it)."""
        if self._model_sha256 is None:
            self._model_sha256 = model_sha256(self.model_path)
        return PromptStateCache(self._model_sha256, self.context_window, llama_cpp.__version__)

    def save_prompt_state(
        self, messages: list[ChatMessage], owner: str, cache: PromptStateCache | None = None
    ) -> int:
        """Save the KV cache of the part of `messages`' stable prefix it holds (reading
        nothing new: what it lacks is read at the next step), so that another process can
        start where this one is; the tokens saved (0: too few to be worth a file, or the
        folder could not be written). `owner`'s older saves are dropped."""
        with self._lock:
            tokens = self.stable_prefix(messages)
            keep = self._keep_cached(tokens)
            if keep < PROMPT_STATE_MIN_TOKENS:
                return 0
            ctx = self._llama.ctx
            size = llama_cpp.llama_state_seq_get_size(ctx, 0)
            buffer = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
            if not 0 < written <= size:
                logger.warning("llama.cpp gave no state to save (%d of %d bytes)", written, size)
                return 0
            state = ctypes.string_at(buffer, written)
        saved = (cache or self.prompt_cache()).save(tokens[:keep], state, owner)
        return keep if saved is not None else 0

    def load_prompt_state(
        self, messages: list[ChatMessage], cache: PromptStateCache | None = None
    ) -> int:
        """Load a saved KV cache that `messages`' stable prefix starts with exactly, if there is
        one; the tokens loaded (0: none, or it failed its checks and was deleted)."""
        with self._lock:
            saved = (cache or self.prompt_cache()).find(self.stable_prefix(messages))
            if saved is None:
                return 0
            ctx, llama = self._llama.ctx, self._llama
            state = (ctypes.c_uint8 * len(saved.state)).from_buffer_copy(saved.state)
            llama._ctx.kv_cache_seq_rm(-1, 0, -1)
            llama.n_tokens = 0
            if llama_cpp.llama_state_seq_set_data(ctx, state, len(saved.state), 0) == 0:
                logger.warning("llama.cpp refused the saved prompt state %s", saved.path.name)
                llama._ctx.kv_cache_seq_rm(-1, 0, -1)
                saved.path.unlink(missing_ok=True)
                return 0
            n = len(saved.tokens)
            llama.input_ids[:n] = saved.tokens
            llama.n_tokens = n
            return n

    def side_client(self) -> LlamaClient:
        """A second llama.cpp context on the same model file, for side work such as page-out
        summaries: its prompts then do not evict the conversation's prompt from this context's
        KV cache, so the next step re-reads only what changed. The weights are memory-mapped,
        so the pages are shared; the extra memory is its KV cache and buffers."""
        with self._lock:
            if self._side is None:
                self._side = LlamaClient(self.model_path, **self._side_settings)  # type: ignore[arg-type]
            return self._side

    def reset_cache(self) -> None:
        """Forget the evaluated prompt, so the next call reads its prompt from the start
        (for benchmarks that compare against prefix reuse)."""
        with self._lock:
            self._llama.reset()

    def close(self) -> None:
        side = getattr(self, "_side", None)
        if side is not None:
            side.close()
        llama = getattr(self, "_llama", None)
        if llama is not None:
            llama.close()

    def __enter__(self) -> LlamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LlamaClient({self.name!r}, n_ctx={self.context_window})"


# Chat completions running in this process: their threads hold every core while they last.
_GENERATIONS = 0
_GENERATIONS_LOCK = threading.Lock()


@contextlib.contextmanager
def _generating() -> Iterator[None]:
    global _GENERATIONS
    with _GENERATIONS_LOCK:
        _GENERATIONS += 1
    try:
        yield
    finally:
        with _GENERATIONS_LOCK:
            _GENERATIONS -= 1


def chat_model_generating() -> bool:
    """Whether a chat model of this process is generating now (see engine.store.embed: a
    search's query embedding takes every core only when none is, since ggml's spinning threads
    collapse when more of them than cores run)."""
    return _GENERATIONS > 0


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
