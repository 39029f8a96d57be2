"""Session-wide fixtures: ONE loaded chat model and ONE embedder per test session; a fresh store per test."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import ModelNotMaterialised
from engine.store.db import Store, open_store
from engine.store.embed import Embedder
from models import fetch

CHAT_ENV = "MEMEX_TEST_CHAT_MODEL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--build-dist",
        action="store_true",
        help="run the tests marked dist: build the app with PyInstaller, test the binary",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked dist build the whole app (a minute or two and ~800 MB of disk): only with
    --build-dist (`make test-dist`, which .ci/run runs after `make test`)."""
    if config.getoption("--build-dist"):
        return
    skip = pytest.mark.skip(reason="builds the app with PyInstaller: run `make test-dist`")
    for item in items:
        if "dist" in item.keywords:
            item.add_marker(skip)


def model_unavailable(reason: str) -> None:
    """Skip locally when a model is missing; in CI (`make test` fetches them) it is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run every real-model test")
    pytest.skip(reason)


SMALL_ENV = "MEMEX_TEST_SMALL_MODEL"


def _model_file(key: str, env: str) -> Path | None:
    """The GGUF for a model key: $env if set, else models.fetch.model_path(key) if that works."""
    if os.environ.get(env):
        path = Path(os.environ[env])
        return path if path.is_file() else None
    try:
        from models.fetch import model_path
    except ImportError:
        return None
    try:
        path = Path(model_path(key))
    except Exception:  # not materialised yet, or no such key
        return None
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def chat_model_path() -> Path:
    """The chat model most real-model tests run: the fast one (Qwen2.5-Coder-0.5B), for speed;
    tests of what the default model does take default_client."""
    path = _model_file("fast", CHAT_ENV)
    if path is None:
        model_unavailable(f"fast chat model not available (set {CHAT_ENV} or materialise it)")
    return path


DEFAULT_ENV = "MEMEX_TEST_DEFAULT_MODEL"


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The default chat model ("chat": Qwen2.5-Coder-1.5B), as the app and the CLI load it."""
    path = _model_file("chat", DEFAULT_ENV)
    if path is None:
        model_unavailable(f"default chat model not available (set {DEFAULT_ENV} or materialise it)")
    return path


@pytest.fixture(scope="session")
def default_client(default_model_path):
    from engine.llm.llama import LlamaClient

    client = LlamaClient(default_model_path, n_ctx=4096, seed=0)
    yield client
    client.close()


@pytest.fixture(scope="session")
def small_model_path() -> Path:
    path = _model_file("small", SMALL_ENV)
    if path is None:
        model_unavailable(f"small model not available (set {SMALL_ENV} or materialise it)")
    return path


@pytest.fixture(scope="session")
def chat_client(chat_model_path):
    from engine.llm.llama import LlamaClient

    client = LlamaClient(chat_model_path, n_ctx=4096, seed=0)
    yield client
    client.close()


@pytest.fixture(scope="session")
def embed_path() -> Path:
    try:
        return fetch.model_path("embed")
    except ModelNotMaterialised as e:
        model_unavailable(str(e))


@pytest.fixture(scope="session")
def embedder(embed_path: Path) -> Embedder:
    e = Embedder(embed_path)
    yield e
    e.close()


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    try:
        return fetch.model_path("minilm")
    except ModelNotMaterialised as e:
        model_unavailable(str(e))


@pytest.fixture(scope="session")
def minilm(minilm_path: Path) -> Iterator[Embedder]:
    """all-MiniLM-L6-v2, the embedder before nomic-embed (a second real model, for changes of
    embedder)."""
    e = Embedder(minilm_path)
    yield e
    e.close()


@pytest.fixture(autouse=True)
def prompt_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own folder for saved prompt caches (engine.llm.prompt_state), never the
    user's cache folder; subprocesses the test starts inherit it."""
    folder = tmp_path / "prompt-state"
    monkeypatch.setenv("MEMEX_PROMPT_STATE_DIR", str(folder))
    return folder


@pytest.fixture
def store(tmp_path: Path, embedder: Embedder) -> Iterator[Store]:
    """A fresh database file per test, with the real sqlite-vec, FTS5 and embedder."""
    db = open_store(tmp_path / "memex.db", embedder=embedder)
    yield db
    db.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(chat_model_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the default chat model, on a free port of
    127.0.0.1, one per test session (the remote-backend tests of the engine and the app); its
    base URL."""
    pytest.importorskip("uvicorn", reason="needs llama-cpp-python[server] (the dev extras)")
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    command = [sys.executable, "-m", "engine.llm.server", "--model", str(chat_model_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"the server did not start ({process.returncode}):\n{tail}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/models", timeout=2).close()
                break
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)
