"""RemoteClient: the LLMClient protocol on an OpenAI-compatible server (llama.cpp's llama-server,
vLLM, Ollama, llama-cpp-python's server), over HTTP with the standard library.

Replies: POST {base_url}/chat/completions; streamed as server-sent events when `on_text` is given
(the connection is closed when it says stop: finish_reason "cancelled"). The reply schema is sent
in the form the server enforces (`schema_format`, chosen once):

- "json_schema": `response_format: {"type": "json_schema", "json_schema": {"name": "reply",
  "schema": ..., "strict": true}}`, the OpenAI form: llama-server, vLLM, Ollama (>= 0.5).
- "json_object": `response_format: {"type": "json_object", "schema": ...}`: llama-server and
  llama-cpp-python's server. Not for the latter with the reply schema: its Python converter
  (which drops what it does not know, and falls back to any JSON when it cannot convert) spells
  each maxLength out as nested rules, 800 KB a string field, and the server process died on
  it. vLLM and Ollama take the form as plain JSON mode and ignore the schema.
- "gbnf": `grammar: <GBNF>` from engine.llm.grammar (the exact grammar LlamaClient uses): the
  llama.cpp servers only. llama-cpp-python's server refuses "json_schema" (HTTP 500, only "text"
  and "json_object" are valid types), so this is what "auto" sends there.

"auto" (the default) sends "gbnf" to a server detected as llama-cpp-python's, otherwise
"json_schema", and falls back to "json_object" for good if the server refuses "json_schema".

Exact token counts: the messages are rendered locally with the model's chat template
(llama-cpp-python's `Jinja2ChatFormatter`, add_generation_prompt=True, as LlamaClient does; the
template from `chat_template`, `template_from` = a GGUF / tokenizer_config.json / .jinja file, the
tokenizer.json's sibling tokenizer_config.json, or llama-server's /props), and the prompt text is
tokenized as the server's chat path tokenizes it:

- by `tokenizer` = a Hugging Face tokenizer.json (the `tokenizers` package; its padding and
  truncation are switched off): len(encode(prompt, add_special_tokens=False)), plus one BOS token
  when `add_bos` (the server adds one: llama-server with a GGUF whose vocab adds BOS; the
  prompt's leading BOS text is then dropped, as llama-server does);
- or by the server's own tokenize endpoint, detected at construction: llama-cpp-python's
  POST /extras/tokenize (its chat path adds no BOS: the template writes any it needs),
  llama-server's POST /tokenize with add_special (it drops a leading BOS text, adds BOS),
  vLLM's POST /tokenize with add_special_tokens false. Ollama has no tokenize endpoint: give
  `tokenizer` (and note that Ollama renders its own Go template, not the Jinja one).

Counts are cached by prompt text. `complete` checks prompt + max_tokens against the context window
before sending, and reports the server's `usage` (the local counts where it gives none: streamed
replies on llama-cpp-python's server); a disagreement with the local count is logged once.

Errors: ModelLoadError at construction, GenerationError in a call; each says what to do. Every
request has a deadline (`connect_timeout` to connect, `timeout` for the whole request).
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from engine.errors import GenerationError, ModelLoadError
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
from engine.llm.grammar import schema_to_gbnf
from engine.types import ChatMessage

__all__ = ["RemoteClient", "SCHEMA_FORMATS", "is_remote_model"]

logger = logging.getLogger(__name__)

SCHEMA_FORMATS = ("auto", "json_schema", "json_object", "gbnf")


def is_remote_model(model: object) -> bool:
    """True for a model given as an http(s):// URL (a server, not a GGUF file)."""
    return isinstance(model, str) and model.lower().startswith(("http://", "https://"))


# --------------------------------------------------------------------------------------------
# HTTP


class _ServerError(Exception):
    """A failed request; the message is complete (what went wrong, what to do)."""


class _NotJson(_ServerError):
    pass


class _StatusError(_ServerError):
    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def _arm(conn: http.client.HTTPConnection, deadline: float) -> None:
    """Bound the next socket operation by what is left of the request's time."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    if conn.sock is not None:
        conn.sock.settimeout(left)


class _Call:
    """One request in flight: its connection, response and deadline."""

    def __init__(
        self,
        owner: _Http,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        deadline: float,
        limit: float,
    ) -> None:
        self.http = owner
        self.conn = conn
        self.resp = resp
        self.deadline = deadline
        self.limit = limit

    def _guarded(self, read: Any) -> bytes:
        try:
            _arm(self.conn, self.deadline)
            return read()
        except TimeoutError as exc:
            raise _ServerError(self.http.timed_out(self.limit)) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _ServerError(self.http.broke(exc)) from exc

    def read_all(self) -> bytes:
        chunks = []
        while chunk := self._guarded(lambda: self.resp.read1(65536)):
            chunks.append(chunk)
        return b"".join(chunks)

    def readline(self) -> bytes:
        return self._guarded(self.resp.readline)

    def content_type(self) -> str:
        return self.resp.getheader("Content-Type", "") or ""

    def close(self) -> None:
        self.conn.close()  # mid-stream, this is what tells the server to stop generating


class _Http:
    """JSON requests to one server, each with a deadline (http.client: no proxies, no retries)."""

    def __init__(
        self, base_url: str, api_key: str | None, connect_timeout: float, timeout: float
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.connect_timeout = connect_timeout
        self.timeout = timeout

    def json(self, method: str, url: str, payload: Any = None, timeout: float | None = None) -> Any:
        call = self.open(method, url, payload, timeout)
        try:
            body = call.read_all()
        finally:
            call.close()
        return self.decode(url, body)

    def open(
        self, method: str, url: str, payload: Any = None, timeout: float | None = None
    ) -> _Call:
        """Send the request and read the status line (a _StatusError for >= 400)."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "", parts.port, timeout=min(self.connect_timeout, limit))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = None
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            conn.connect()
        except OSError as exc:  # refused, unknown host, connect timeout
            conn.close()
            raise _ServerError(self.unreachable(exc)) from exc
        try:
            _arm(conn, deadline)
            conn.request(method, target, body=body, headers=headers)
            call = _Call(self, conn, conn.getresponse(), deadline, limit)
        except TimeoutError as exc:
            conn.close()
            raise _ServerError(self.timed_out(limit)) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _ServerError(self.broke(exc)) from exc
        if call.resp.status >= 400:
            try:
                detail = _error_text(call.read_all())
            finally:
                call.close()
            status = call.resp.status
            raise _StatusError(self.status_message(status, target, detail), status, detail)
        return call

    def decode(self, url: str, body: bytes) -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            head = body[:200].decode("utf-8", "replace")
            raise _NotJson(
                f"the model server at {self.base_url} answered {urlsplit(url).path} with "
                f"something that is not JSON ({head!r}); is this address an OpenAI-compatible "
                "server (its URL usually ends in /v1)?"
            ) from None

    def unreachable(self, exc: BaseException) -> str:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
        return (
            f"no model server answers at {self.base_url}: start it or fix the address "
            f"({reason or type(exc).__name__})"
        )

    def timed_out(self, limit: float) -> str:
        return (
            f"the model server at {self.base_url} did not finish answering within {limit:g} s: "
            "check that it is running and not overloaded (a slower server needs a smaller model "
            "or a shorter context)"
        )

    def broke(self, exc: BaseException) -> str:
        return (
            f"the connection to the model server at {self.base_url} broke "
            f"({str(exc) or type(exc).__name__}): check the server's log and that it still runs"
        )

    def status_message(self, status: int, path: str, detail: str) -> str:
        hint = "see the server's log"
        if status in (401, 403):
            hint = "check the API key (api_key=)"
        elif status == 404:
            hint = "check the address: it usually ends in /v1, e.g. http://127.0.0.1:8080/v1"
        elif 400 <= status < 500:
            hint = "the server refused the request"
        return (
            f"the model server at {self.base_url} answered HTTP {status} to {path}: "
            f"{detail or '(no message)'} ({hint})"
        )


def _error_text(body: bytes) -> str:
    """The error message in an error response (OpenAI, FastAPI and plain-text forms)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:500]
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return (error if isinstance(error, str) else json.dumps(error))[:500]
    return text[:500]


# --------------------------------------------------------------------------------------------
# Tokenizers: how the server's chat path turns the prompt text into tokens


class _Tokenizer(Protocol):
    adds_bos: bool  # the server adds a BOS token itself (drop a leading BOS text)

    def prompt_tokens(self, text: str) -> int: ...

    def text_tokens(self, text: str) -> int: ...


class _JsonTokenizer:
    """A Hugging Face tokenizer.json, padding and truncation off."""

    def __init__(self, path: Path, add_bos: bool) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise ModelLoadError(
                f"cannot read the tokenizer {path}: {exc}. Pass the tokenizer.json of the "
                "model the server runs."
            ) from exc
        self._tok.no_padding()  # a tokenizer.json may pad every encoding to a fixed length
        self._tok.no_truncation()  # ... or cut it (all-MiniLM's: 128 and 128)
        self.adds_bos = add_bos

    def text_tokens(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0

    def prompt_tokens(self, text: str) -> int:
        return int(self.adds_bos) + self.text_tokens(text)


class _ServerTokenizer:
    """The server's tokenize endpoint, in its dialect."""

    def __init__(self, http: _Http, root: str, dialect: str, model: str) -> None:
        self._http = http
        self._root = root
        self._dialect = dialect
        self._model = model
        self._specials = 0  # tokens /extras/tokenize adds (it always adds the vocab's specials)
        if dialect == "llama-cpp-python":
            self._specials = self._count("")
        self.adds_bos = dialect == "llama-server" and self._count("", add_special=True) > 0

    def _count(self, text: str, add_special: bool = False) -> int:
        if self._dialect == "llama-cpp-python":
            out = self._http.json("POST", f"{self._root}/extras/tokenize", {"input": text})
        elif self._dialect == "llama-server":
            payload = {"content": text, "add_special": add_special, "parse_special": True}
            out = self._http.json("POST", f"{self._root}/tokenize", payload)
        else:  # vllm
            payload = {"model": self._model, "prompt": text, "add_special_tokens": add_special}
            out = self._http.json("POST", f"{self._root}/tokenize", payload)
        tokens = out.get("tokens") if isinstance(out, dict) else None
        if not isinstance(tokens, list):
            raise _ServerError(
                f"the model server at {self._root} answered its tokenize endpoint without a "
                f"token list ({str(out)[:200]!r}); pass tokenizer= (the model's tokenizer.json)"
            )
        return len(tokens)

    def text_tokens(self, text: str) -> int:
        return self._count(text) - self._specials if text else 0

    def prompt_tokens(self, text: str) -> int:
        # llama-cpp-python: tokenize(prompt, add_bos=False, special=True) (its Jinja handler
        # says the template added the specials); llama-server: add_special=true; vLLM: false.
        return self._count(text, add_special=self._dialect == "llama-server") - self._specials


def _detect_dialect(http: _Http, root: str, model: str) -> str | None:
    """Which server this is, by the tokenize endpoint it has (None: none known, e.g. Ollama)."""
    probes = (
        ("llama-cpp-python", f"{root}/extras/tokenize", {"input": ""}),
        ("llama-server", f"{root}/tokenize", {"content": "", "add_special": True}),
        ("vllm", f"{root}/tokenize", {"model": model, "prompt": "", "add_special_tokens": False}),
    )
    for dialect, url, payload in probes:
        try:
            out = http.json("POST", url, payload, timeout=min(http.timeout, 30.0))
        except (_StatusError, _NotJson):
            continue
        if not isinstance(out, dict) or not isinstance(out.get("tokens"), list):
            continue
        if dialect == "llama-server" and "max_model_len" in out:
            continue  # vLLM answers this too when it accepts extra fields
        return dialect
    return None


# --------------------------------------------------------------------------------------------
# Chat templates


@dataclass(frozen=True)
class _Template:
    """A chat template and the BOS/EOS texts it may use."""

    text: str
    bos: str | None
    eos: str | None
    source: str


def _template_from(path: Path, need_text: bool = True) -> _Template:
    """From a GGUF (its metadata and vocab), a tokenizer_config.json, or a template text file;
    with need_text False only the BOS/EOS texts are wanted (the template text may be "")."""
    if not path.is_file():
        raise ModelLoadError(f"chat template source not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return _gguf_template(path, need_text)
    if path.suffix.lower() == ".json":
        return _config_template(path, need_text)
    try:
        return _Template(path.read_text(encoding="utf-8"), None, None, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read the chat template {path}: {exc}") from exc


def _gguf_template(path: Path, need_text: bool = True) -> _Template:
    from engine.llm.llama import read_gguf_metadata

    meta = read_gguf_metadata(path)
    text = meta.get("tokenizer.chat_template")
    if not isinstance(text, str):
        text = ""
    if need_text and not text:
        raise ModelLoadError(
            f"{path} has no chat template (tokenizer.chat_template): use the GGUF of the chat "
            "model the server runs"
        )
    ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos")}
    wanted = {k: i for k, i in ids.items() if isinstance(i, int) and i >= 0}
    if wanted:  # a second pass over the header, reading just these two token texts
        meta = read_gguf_metadata(path, tokens=wanted.values())
    texts = {k: meta.get(f"tokenizer.ggml.tokens[{i}]") for k, i in wanted.items()}
    return _Template(text, texts.get("bos"), texts.get("eos"), str(path))


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _config_template(path: Path, need_text: bool = True) -> _Template:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} is not a tokenizer_config.json (not a JSON object)")
    text = config.get("chat_template")
    if isinstance(text, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in text if isinstance(t, dict)}
        text = named.get("default")
    jinja = path.parent / "chat_template.jinja"  # the newer Hugging Face layout
    if (not isinstance(text, str) or not text) and jinja.is_file():
        text = jinja.read_text(encoding="utf-8")
    if not isinstance(text, str) or not text:
        text = ""
        if need_text:
            raise ModelLoadError(
                f"{path} has no chat_template: pass chat_template= (the template text) or "
                "template_from= (the model's GGUF file)"
            )
    bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
    return _Template(text, bos, eos, str(path))


def _uses(template: str, name: str) -> bool:
    import jinja2
    from jinja2 import meta

    try:
        return name in meta.find_undeclared_variables(jinja2.Environment().parse(template))
    except jinja2.TemplateError:
        return False  # Jinja2ChatFormatter reports the syntax error


# --------------------------------------------------------------------------------------------
# The client

# OpenAI's "tool" message needs a tool_call_id (llama-cpp-python's server refuses one without);
# Memex's tool results answer replies written as JSON text, not `tool_calls`, so every one carries
# this constant id: 9 alphanumerics, what Mistral's templates insist on, and the same in every
# prompt so that counts stay cached. It is rendered locally exactly as it is sent.
TOOL_CALL_ID = "memextool"


def _check_address(base_url: str) -> None:
    """A server address: http(s)://HOST[:PORT][/PATH], with no query or fragment."""
    usage = "use http://HOST:PORT/v1"
    if not is_remote_model(base_url):
        raise ModelLoadError(f"not a server address: {base_url!r} ({usage})")
    parts = urlsplit(base_url.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ModelLoadError(f"the port in {base_url!r} is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ModelLoadError(f"{base_url!r} names no host ({usage})")
    if parts.query or parts.fragment:
        raise ModelLoadError(f"{base_url!r} has a query or fragment; {usage}")


def _wire(messages: list[ChatMessage]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        entry = {"role": m.role, "content": m.content}
        if m.role == "tool":
            entry["tool_call_id"] = TOOL_CALL_ID
        out.append(entry)
    return out


class RemoteClient:
    """A chat model behind an OpenAI-compatible HTTP server (see the module doc).

    `base_url` is the API root, e.g. http://127.0.0.1:8080/v1. `n_ctx` is the server's context
    window; where omitted it is read from the server (llama-server's /props, vLLM's
    max_model_len); llama-cpp-python's server and Ollama do not say it, so it must be given.
    `model` names the served model (default: the only one /models lists).
    """

    def __init__(
        self,
        base_url: str,
        n_ctx: int | None = None,
        model: str | None = None,
        *,
        api_key: str | None = None,
        tokenizer: str | Path | None = None,
        add_bos: bool = False,
        chat_template: str | None = None,
        template_from: str | Path | None = None,
        temperature: float = 0.2,
        top_p: float = 0.95,
        seed: int | None = 0,
        connect_timeout: float = 5.0,
        timeout: float = 600.0,
        schema_format: str = "auto",
        name: str | None = None,
    ) -> None:
        _check_address(base_url)
        if schema_format not in SCHEMA_FORMATS:
            raise ModelLoadError(f"schema_format must be one of {SCHEMA_FORMATS}")
        if n_ctx is not None and n_ctx <= 0:
            raise ModelLoadError(f"n_ctx must be positive, got {n_ctx}")
        if connect_timeout <= 0 or timeout <= 0:
            raise ModelLoadError("connect_timeout and timeout must be positive")
        self.base_url = base_url.strip().rstrip("/")
        self._root = (
            self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        )
        self._http = _Http(self.base_url, api_key, connect_timeout, timeout)
        self._sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p}
        if seed is not None:
            self._sampling["seed"] = seed
        self._lock = threading.Lock()
        self._counts = PromptCounts()
        self._gbnf_cache: dict[str, str] = {}
        self._mismatch_logged = False
        try:
            models = self._http.json("GET", f"{self.base_url}/models", timeout=min(timeout, 30.0))
            self.model = model or self._only_model(models)
            self.dialect = _detect_dialect(self._http, self._root, self.model)
            props = self._props() if self.dialect == "llama-server" else {}
            self._n_ctx = self._context_window(n_ctx, models, props)
            self._tokenizer = self._make_tokenizer(tokenizer, add_bos)
            template = self._find_template(chat_template, template_from, tokenizer, props)
            self._setup_formatter(template)
            self._tokenizer.prompt_tokens(self.render([PROBE_SYSTEM, PROBE_USER]))
        except _ServerError as exc:
            raise ModelLoadError(str(exc)) from exc
        except GenerationError as exc:
            raise ModelLoadError(f"the chat template fails: {exc}") from exc
        if schema_format == "auto":
            schema_format = "gbnf" if self.dialect == "llama-cpp-python" else "json_schema"
            self._auto_fallback = True
        else:
            self._auto_fallback = False
        self.schema_format = schema_format
        self.name: str = name or Path(self.model).name or self.model

    # -- setup -----------------------------------------------------------------------------

    def _only_model(self, models: Any) -> str:
        data = models.get("data") if isinstance(models, dict) else None
        ids = [m.get("id") for m in data or [] if isinstance(m, dict) and m.get("id")]
        if len(ids) == 1:
            return str(ids[0])
        if not ids:
            raise _ServerError(
                f"the model server at {self.base_url} lists no model at /models: pass model="
            )
        raise _ServerError(
            f"the model server at {self.base_url} serves several models ({', '.join(ids)}): "
            "pass model= to choose one"
        )

    def _props(self) -> dict[str, Any]:
        try:
            out = self._http.json("GET", f"{self._root}/props", timeout=30.0)
        except _StatusError:
            return {}
        return out if isinstance(out, dict) else {}

    def _context_window(self, n_ctx: int | None, models: Any, props: dict[str, Any]) -> int:
        reported = None
        settings = props.get("default_generation_settings")
        if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
            reported = settings["n_ctx"]  # llama-server: the context of one slot
        elif isinstance(props.get("n_ctx"), int):
            reported = props["n_ctx"]
        for entry in models.get("data", []) if isinstance(models, dict) else []:
            if (
                isinstance(entry, dict)
                and entry.get("id") == self.model
                and isinstance(entry.get("max_model_len"), int)
            ):
                reported = entry["max_model_len"]  # vLLM
        if n_ctx is None:
            if reported is None:
                raise _ServerError(
                    f"the model server at {self.base_url} does not report its context window "
                    "(llama-cpp-python's server and Ollama do not): pass n_ctx, the context size "
                    "the server was started with (--n_ctx, num_ctx)"
                )
            return reported
        if reported is not None and n_ctx > reported:
            raise _ServerError(
                f"n_ctx {n_ctx} is larger than the context window of the model server at "
                f"{self.base_url} ({reported} tokens): pass n_ctx={reported} or less"
            )
        return n_ctx

    def _make_tokenizer(self, tokenizer: str | Path | None, add_bos: bool) -> _Tokenizer:
        if tokenizer is not None:
            path = Path(tokenizer).expanduser()
            if not path.is_file():
                raise ModelLoadError(f"tokenizer file not found: {path} (pass a tokenizer.json)")
            return _JsonTokenizer(path, add_bos)
        if self.dialect is None:
            raise _ServerError(
                f"the model server at {self.base_url} has no tokenize endpoint that Memex knows "
                "(llama-server, vLLM and llama-cpp-python's server have one; Ollama has none), "
                "so token counts cannot be exact: pass tokenizer= (the model's tokenizer.json)"
            )
        return _ServerTokenizer(self._http, self._root, self.dialect, self.model)

    def _find_template(
        self,
        chat_template: str | None,
        template_from: str | Path | None,
        tokenizer: str | Path | None,
        props: dict[str, Any],
    ) -> _Template:
        """The template text (chat_template, else from a file or the server) and the BOS/EOS
        texts (from template_from, the tokenizer's tokenizer_config.json, or the server)."""
        need_text = chat_template is None
        sibling = (
            Path(tokenizer).expanduser().parent / "tokenizer_config.json" if tokenizer else None
        )
        found = None
        if template_from is not None:
            found = _template_from(Path(template_from).expanduser(), need_text)
        elif sibling is not None and sibling.is_file():
            found = _config_template(sibling, need_text)
        elif isinstance(props.get("chat_template"), str):
            found = _Template(
                props["chat_template"],
                _token_text(props.get("bos_token")),
                _token_text(props.get("eos_token")),
                f"{self._root}/props",
            )
        if chat_template is not None:
            bos, eos = (found.bos, found.eos) if found else (None, None)
            found = _Template(chat_template, bos, eos, "chat_template")
        if found is None:
            raise ModelLoadError(
                f"no chat template for the model at {self.base_url}: pass chat_template= (the "
                "template text) or template_from= (the model's GGUF file, its "
                "tokenizer_config.json or a .jinja file), so token counts are exact"
            )
        for name, value in (("bos_token", found.bos), ("eos_token", found.eos)):
            if value is None and _uses(found.text, name):
                raise ModelLoadError(
                    f"the chat template uses {name} but its text is unknown: pass "
                    "template_from= (the model's GGUF file or tokenizer_config.json)"
                )
        return found

    def _setup_formatter(self, template: _Template) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # late: the CLI starts fast

        self._bos_text = template.bos or ""
        try:
            self._formatter = Jinja2ChatFormatter(
                template=template.text,
                eos_token=template.eos or "",
                bos_token=self._bos_text,
                add_generation_prompt=True,
            )
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            raise ModelLoadError(
                f"the chat template from {template.source} cannot be parsed ({exc})"
            ) from exc
        self.template_source = template.source

    # -- protocol --------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        return self._n_ctx

    def render(self, messages: list[ChatMessage]) -> str:
        """The prompt text the server evaluates for `messages` (as this client counts it)."""
        try:
            prompt = self._formatter(messages=_wire(messages)).prompt
        except Exception as exc:  # the template's raise_exception, jinja2 errors
            roles = ", ".join(m.role for m in messages)
            raise GenerationError(
                f"the model's chat template cannot render these messages (roles: {roles}): {exc}"
            ) from exc
        if self._tokenizer.adds_bos and self._bos_text and prompt.startswith(self._bos_text):
            prompt = prompt[len(self._bos_text) :]  # the server adds the BOS token itself
        return prompt

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        if not messages:
            return 0
        try:
            return self._counts.get(self.render(messages), self._tokenizer.prompt_tokens)
        except _ServerError as exc:
            raise GenerationError(str(exc)) from exc

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
        n_prompt = self.count_tokens(messages)
        check_fits(n_prompt, max_tokens, self._n_ctx)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _wire(messages),
            "max_tokens": max_tokens,
            "stream": on_text is not None,
            **self._sampling,
        }
        if on_text is not None:
            body["stream_options"] = {"include_usage": True}
        try:
            text, finish, usage = self._request(body, reply_schema, on_text)
            prompt_tokens = usage.get("prompt_tokens")
            completion_tokens = usage.get("completion_tokens")
            if not isinstance(completion_tokens, int):
                completion_tokens = self._tokenizer.text_tokens(text)
        except _ServerError as exc:
            raise GenerationError(str(exc)) from exc
        if not isinstance(prompt_tokens, int):
            prompt_tokens = n_prompt
        elif prompt_tokens != n_prompt and not self._mismatch_logged:
            self._mismatch_logged = True
            logger.warning(
                "the server evaluated %d prompt tokens where %d were counted (template %s): "
                "token budgets may be off",
                prompt_tokens,
                n_prompt,
                self.template_source,
            )
        return Completion(text, prompt_tokens, completion_tokens, finish)

    # -- requests --------------------------------------------------------------------------

    def _request(
        self, body: dict[str, Any], schema: dict[str, Any] | None, on_text: TextSink | None
    ) -> tuple[str, str | None, dict[str, Any]]:
        while True:
            fmt = self.schema_format
            payload = dict(body)
            if schema is not None:
                payload.update(self._constraint(schema, fmt))
            try:
                call = self._http.open("POST", f"{self.base_url}/chat/completions", payload)
            except _StatusError as exc:
                if schema is not None and self._refused_format(exc, fmt):
                    logger.info("%s refuses json_schema; using json_object", self.base_url)
                    self.schema_format = "json_object"
                    continue
                raise
            try:
                if on_text is not None and "text/event-stream" in call.content_type():
                    return self._read_stream(call, on_text)
                answer = self._http.decode("/chat/completions", call.read_all())
                text, finish, usage = self._parse_answer(answer)
                if on_text is not None and text and on_text(text) is False:
                    finish = "cancelled"  # a server that does not stream: one piece
                return text, finish, usage
            finally:
                call.close()

    def _refused_format(self, exc: _StatusError, fmt: str) -> bool:
        """The server refused the "json_schema" response_format (llama-cpp-python: HTTP 500
        "Input should be 'text' or 'json_object'"): switch to "json_object" for good."""
        if not self._auto_fallback or fmt != "json_schema" or exc.status not in (400, 422, 500):
            return False
        detail = exc.detail.lower()
        return "response_format" in detail or "json_schema" in detail

    def _constraint(self, schema: dict[str, Any], fmt: str) -> dict[str, Any]:
        if fmt == "gbnf":
            key = json.dumps(schema, sort_keys=True)
            gbnf = self._gbnf_cache.get(key)
            if gbnf is None:
                gbnf = self._gbnf_cache[key] = schema_to_gbnf(schema)  # ValueError: loud
            return {"grammar": gbnf}
        if fmt == "json_object":
            return {"response_format": {"type": "json_object", "schema": schema}}
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": True},
            }
        }

    def _parse_answer(self, answer: Any) -> tuple[str, str | None, dict[str, Any]]:
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise _ServerError(
                f"the model server at {self.base_url} answered without a chat completion "
                f"({json.dumps(answer)[:200]}); is it an OpenAI-compatible server?"
            ) from None
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        return str(text), choice.get("finish_reason"), usage

    def _read_stream(
        self, call: _Call, on_text: TextSink
    ) -> tuple[str, str | None, dict[str, Any]]:
        pieces: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        for event in self._events(call):
            if "error" in event:
                raise _ServerError(
                    f"the model server at {self.base_url} failed while generating: "
                    f"{_error_text(json.dumps(event).encode())}"
                )
            if isinstance(event.get("usage"), dict):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                if not isinstance(choice, dict):
                    continue  # a null or odd choice carries no text
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                piece = delta.get("content") if isinstance(delta.get("content"), str) else None
                if piece:
                    pieces.append(piece)
                    if on_text(piece) is False:
                        return "".join(pieces), "cancelled", {}  # closing the connection stops it
                finish = choice.get("finish_reason") or finish
        if finish is None:
            # a stream cut off (the server died, a proxy closed it): the reply is not whole
            raise _ServerError(
                f"the model server at {self.base_url} ended the reply before it was finished "
                "(no finish_reason): check the server's log"
            )
        return "".join(pieces), finish, usage

    def _events(self, call: _Call) -> Iterator[dict[str, Any]]:
        """The JSON events of a server-sent-event stream, until [DONE] or the end."""
        data: list[str] = []
        while True:
            raw = call.readline()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if raw and line and not line.startswith(":"):
                field, _, value = line.partition(":")
                if field == "data":
                    data.append(value[1:] if value.startswith(" ") else value)
                continue
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    return
                try:
                    event = json.loads(payload)
                except json.JSONDecodeError:
                    raise _ServerError(
                        f"the model server at {self.base_url} streamed an event that is not "
                        f"JSON ({payload[:200]!r})"
                    ) from None
                if isinstance(event, dict):
                    yield event
            if not raw:
                return

    def close(self) -> None:
        """Nothing to release (one connection per request); for symmetry with LlamaClient."""

    def __repr__(self) -> str:
        return f"RemoteClient({self.base_url!r}, model={self.model!r}, n_ctx={self._n_ctx})"
