"""LlamaClient: the LLMClient protocol on llama-cpp-python (a local GGUF chat model on the CPU).

How a prompt is built, so that `count_tokens` is exact:

1. The messages are rendered with the GGUF's own chat template (`tokenizer.chat_template`) through
   llama-cpp-python's `Jinja2ChatFormatter` (bos/eos token strings from the vocab,
   add_generation_prompt=True). If the template writes the BOS text itself and the vocab also
   adds BOS, the leading BOS text is dropped (llama-cpp-python would otherwise add a second one).
2. The prompt STRING goes to `Llama.create_completion`, which tokenizes it as
   `[BOS if vocab add_bos] + tokenize(prompt, add_bos=False, special=True) + [SEP/EOS if the vocab
   asks for it]`. `_prompt_tokens` mirrors exactly that, and `count_tokens` is its length; the
   `prompt_tokens` llama-cpp-python reports in `usage` is the same number (tested).

Sampling: the grammar is checked on the token the unconstrained sampler chain draws, and applied
to the whole vocabulary only when that token is not allowed (`_GrammarCheckedSampler`, what
llama.cpp's own `common_sampler` does); llama-cpp-python's chain applies it to all 152k tokens at
every step, which halves decoding speed on 2 cores. `grammar_check_first=False` restores that.

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
import struct
import threading
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from engine.errors import GenerationError, ModelLoadError, models_hint
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


class _GrammarCheckedSampler:
    """Samples like llama.cpp's own `common_sampler`: draw from the unconstrained chain first and
    keep the token if the grammar accepts it; only otherwise apply the grammar to the whole
    vocabulary and draw again.

    llama-cpp-python puts the grammar sampler in the chain before top-k, so the grammar is checked
    against every token of the vocabulary (152k for Qwen) at every step; on 2 CPU cores that
    halves decoding speed. The result is the same kind of constrained sampling: every token
    kept is one the grammar allows.
    """

    def __init__(self, llama: llama_cpp.Llama, chain: Any, grammar: llama_cpp.LlamaGrammar) -> None:
        from llama_cpp._internals import LlamaTokenDataArray

        self._chain = chain  # llama_cpp._internals.LlamaSampler, without the grammar
        self._grammar = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._grammar:
            raise ValueError("llama.cpp rejected the grammar")
        self._n_vocab = llama.n_vocab()
        self._candidates = LlamaTokenDataArray(n_vocab=self._n_vocab)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1
        )
        self.checked = 0
        self.resampled = 0

    def _draw(self, logits: Any, constrained: bool) -> int:
        cand = self._candidates
        cand.copy_logits(logits)
        cand.candidates.selected = -1
        ref = ctypes.byref(cand.candidates)
        if constrained:
            llama_cpp.llama_sampler_apply(self._grammar, ref)
        llama_cpp.llama_sampler_apply(self._chain.sampler, ref)
        selected = cand.candidates.selected
        if selected < 0 or selected >= cand.candidates.size:
            raise RuntimeError("the sampler selected no token")
        return int(cand.candidates.data[selected].id)

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
        ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        token = self._draw(logits, constrained=False)
        self.checked += 1
        if not self._allowed(token):
            self.resampled += 1
            token = self._draw(logits, constrained=True)
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


class _TextStream:
    """Hands the reply to a TextSink as it is generated, through llama-cpp-python's stopping
    criteria (called once a token, with the tokens evaluated so far): the reply and its usage
    figures stay those of a plain completion, and the sink can stop it. The criteria see each
    token once the next one is drawn, so `finish` sends the last piece."""

    def __init__(self, llama: llama_cpp.Llama, n_prompt: int, sink: TextSink) -> None:
        self._llama = llama
        self._n_prompt = n_prompt
        self._sink = sink
        self._sent = ""
        self.stopped = False

    def criteria(self) -> llama_cpp.StoppingCriteriaList:
        return llama_cpp.StoppingCriteriaList([self._on_token])

    def _on_token(self, input_ids: Any, _logits: Any) -> bool:
        generated = [int(t) for t in input_ids[self._n_prompt :]]
        # "ignore" holds back a character whose bytes are not all generated yet
        text = self._llama.detokenize(generated).decode("utf-8", "ignore")
        self._send(text)
        return self.stopped

    def _send(self, text: str) -> None:
        if self.stopped or not text.startswith(self._sent) or len(text) == len(self._sent):
            return
        piece, self._sent = text[len(self._sent) :], text
        if self._sink(piece) is False:
            self.stopped = True

    def finish(self, final_text: str) -> None:
        self._send(final_text)


class _Llama(llama_cpp.Llama):
    """llama_cpp.Llama with grammar-checked sampling (see _GrammarCheckedSampler)."""

    grammar_check_first = True
    last_sampler: _GrammarCheckedSampler | None = None

    def _init_sampler(self, *args: Any, **kwargs: Any) -> Any:
        grammar = kwargs.pop("grammar", None)
        if grammar is None or args or not self.grammar_check_first:
            return super()._init_sampler(*args, grammar=grammar, **kwargs)
        chain = super()._init_sampler(grammar=None, **kwargs)
        sampler = _GrammarCheckedSampler(self, chain, grammar)
        self.last_sampler = sampler
        return sampler


# --------------------------------------------------------------------------------------------
# The client


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
        }
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
        self._validated_grammars: set[str] = set()
        self.last_stats: GenerationStats | None = None

        mark = _native_log.count
        captured = io.StringIO()
        started = time.perf_counter()
        try:
            # verbose=True keeps llama-cpp-python from redirecting fds 1/2 to /dev/null during the
            # load; its own Python-level prints during __init__ are captured here and logged.
            with contextlib.redirect_stderr(captured):
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
            prompt = self._render(messages)
            n_prompt = len(self._prompt_tokens(prompt))
            check_fits(n_prompt, max_tokens, self.context_window)
            grammar = None if reply_schema is None else self._grammar(reply_schema)
            ctx = self._llama.ctx
            self._llama.last_sampler = None
            llama_cpp.llama_perf_context_reset(ctx)
            stream = None if on_text is None else _TextStream(self._llama, n_prompt, on_text)
            started = time.perf_counter()
            try:
                out = self._llama.create_completion(
                    prompt=prompt,
                    max_tokens=max_tokens,
                    stop=list(self._stop),
                    seed=self._seed,
                    grammar=grammar,
                    stopping_criteria=None if stream is None else stream.criteria(),
                    **self._sampling,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc
            wall = time.perf_counter() - started
            perf = llama_cpp.llama_perf_context(ctx)
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
        return completion

    # -- internals -------------------------------------------------------------------------

    def _render(self, messages: list[ChatMessage]) -> str:
        payload = [{"role": m.role, "content": m.content} for m in messages]
        try:
            prompt = self._formatter(messages=payload).prompt
        except Exception as exc:  # the template's raise_exception, jinja2 errors
            roles = ", ".join(m.role for m in messages)
            raise GenerationError(
                f"the model's chat template cannot render these messages (roles: {roles}): {exc}"
            ) from exc
        if self._prefix_ids and self._bos_text and prompt.startswith(self._bos_text):
            prompt = prompt[len(self._bos_text) :]  # llama-cpp-python adds the BOS token
        return prompt

    def _prompt_tokens(self, prompt: str) -> list[int]:
        body = (
            self._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if prompt
            else []
        )
        return [*self._prefix_ids, *body, *self._suffix_ids]

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


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
