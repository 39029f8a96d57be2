"""What the window works on: the open file, the loaded models and the agent shown, behind the
engine's public API. No Qt here: every method runs on the engine worker's thread (see worker.py),
so the UI thread never waits on the model or the disk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from desktop.settings import Settings
from engine.agent import EventSink, MemGPTAgent, StepResult
from engine.agentfile import ImportReport
from engine.agents import AgentInfo, check_name, delete_agent, list_agents
from engine.context import Thresholds
from engine.errors import InvalidInput, ModelLoadError
from engine.llm.base import LLMClient
from engine.llm.factory import default_llm_client, is_remote_model, resolve_model_path
from engine.llm.llama import LlamaClient, available_cpus, read_gguf_metadata
from engine.llm.remote import RemoteClient
from engine.memory.archival import Passage
from engine.memory.core import Block, BlockEdit, BlockTemplate, CoreMemory, CoreMemoryError
from engine.memory.graph import Fact
from engine.memory.reembed import Progress as Reembedding
from engine.memory.reembed import reembed, stale_vectors
from engine.memory.search import Page
from engine.store.db import Store, default_db_path, open_store
from engine.store.embed import Embedder
from engine.store.migrations import EMBEDDING_DIM
from engine.transcript import TranscriptPage, transcript
from engine.types import ContextUsage, Message, Organised, Persona, Remembered
from models.manifest import MODELS

logger = logging.getLogger(__name__)

Progress = Callable[[str, int], None]  # what is happening, percent done
ClientFactory = Callable[[Settings], LLMClient]
EmbedderFactory = Callable[[Settings], Embedder]


@dataclass(frozen=True)
class _Temporary:
    """A temporary chat: its throwaway file and the agent it stands in for."""

    folder: Path
    store: Store
    kept: MemGPTAgent


class NotLoaded(InvalidInput):
    """Asked for the agent before the models and file loaded (a panel drawn at start)."""


@dataclass(frozen=True)
class ModelInfo:
    """What a GGUF file's header says, for the settings dialog."""

    path: Path
    name: str
    architecture: str
    size_bytes: int
    context_length: int | None
    embedding_length: int | None
    has_chat_template: bool


@dataclass(frozen=True)
class ServerInfo:
    """What a chat model server says about itself, for the settings dialog."""

    url: str
    model: str  # the served model's name
    server: str | None  # "llama-cpp-python", "llama-server", "vllm"; None: another (Ollama)
    context_length: int | None  # the context window the server reports; None: it does not say
    counted_by: str  # how prompt tokens are counted
    template_source: str  # where the chat template comes from


@dataclass(frozen=True)
class StepOutcome:
    """A finished step and the context as the next step will see it."""

    result: StepResult
    usage: ContextUsage


def model_info(model: str) -> ModelInfo:
    """Header facts of a model ("chat", "fast", "small", "embed" or a path); ModelLoadError if the file
    is missing or is not a GGUF file."""
    path = _model_file(model)
    meta = read_gguf_metadata(path)
    arch = str(meta.get("general.architecture", "?"))
    return ModelInfo(
        path=path,
        name=str(meta.get("general.name", path.stem)),
        architecture=arch,
        size_bytes=path.stat().st_size,
        context_length=_int_or_none(meta.get(f"{arch}.context_length")),
        embedding_length=_int_or_none(meta.get(f"{arch}.embedding_length")),
        has_chat_template=isinstance(meta.get("tokenizer.chat_template"), str),
    )


def _model_file(model: str) -> Path:
    if model in ("embed", "minilm"):
        from models.fetch import model_path

        return Path(model_path(model))
    path = resolve_model_path(model)
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder, not a model file. Choose a GGUF file.")
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}. Choose a GGUF file in Settings.")
    return path


def _threads(settings: Settings) -> int | None:
    """The thread count to run the models with: None lets them choose. More threads than cores
    (a settings file from a bigger machine) only makes ggml's spinning threads fight: capped."""
    return min(settings.n_threads, available_cpus()) if settings.n_threads else None


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int) else None


API_KEY_ENV = "MEMEX_API_KEY"  # a server's API key: never kept in settings.json
PROBE_TIMEOUT_S = 30.0  # a server probe holds the engine thread: at most this long a request


def _server_options(settings: Settings) -> dict[str, object]:
    """default_llm_client's options for the chat model server in `settings`."""
    return {
        "model_name": settings.server_model.strip() or None,
        "tokenizer": settings.server_tokenizer.strip() or None,
        "template_from": settings.server_template.strip() or None,
        "api_key": os.environ.get(API_KEY_ENV) or None,
    }


def server_info(settings: Settings) -> ServerInfo:
    """Ask the chat model server at settings.chat_model (a URL) what it serves, set up as the
    app would use it (the server options in `settings`); ModelLoadError says what is wrong."""
    url, options = settings.chat_model.strip(), _server_options(settings)
    try:  # the window the server reports (llama-server, vLLM)
        client = default_llm_client(url, n_ctx=None, timeout=PROBE_TIMEOUT_S, **options)
        reported: int | None = client.context_window
    except ModelLoadError as exc:
        if _io_failure(exc):
            raise  # no server answers (or a file is unreadable): asking again will not help
        # llama-cpp-python's server and Ollama do not say it: the app's size is used. Any other
        # failure fails again here, and that error is the answer.
        client = default_llm_client(url, n_ctx=settings.n_ctx, timeout=PROBE_TIMEOUT_S, **options)
        reported = None
    assert isinstance(client, RemoteClient)  # a URL always gives one
    tokenizer = settings.server_tokenizer.strip()
    if tokenizer:
        counted_by = f"the tokenizer {Path(tokenizer).expanduser()}"
    else:
        counted_by = f"the server's tokenize endpoint ({client.dialect})"
    return ServerInfo(
        url=client.base_url,
        model=client.model,
        server=client.dialect,
        context_length=reported,
        counted_by=counted_by,
        template_source=client.template_source,
    )


def _io_failure(exc: BaseException) -> bool:
    """Whether `exc` was caused by an OSError: the network (refused, unknown host, timed out,
    broken) or an unreadable file."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, OSError):
            return True
        cause = cause.__cause__
    return False


def llama_client(settings: Settings) -> LLMClient:
    """The chat model client: on the server when settings.chat_model is a URL (with the app's
    context size, which the server must have), else a GGUF file loaded here."""
    if is_remote_model(settings.chat_model):
        return default_llm_client(
            settings.chat_model.strip(), n_ctx=settings.n_ctx, **_server_options(settings)
        )
    path = _model_file(settings.chat_model)
    return LlamaClient(
        path, n_ctx=settings.n_ctx, n_threads=_threads(settings), name=model_label(path)
    )


def model_label(path: Path) -> str:
    """What the window calls a chat model: a shipped one by its name and quantisation
    ("Qwen2.5-Coder-1.5B-Instruct Q4_K_M"), another by its file name. (The GGUF's own
    general.name can be the name of the model it was made from: "... Instruct AWQ" for a
    Q4_K_M file.)"""
    for spec in MODELS.values():
        if spec.filename == path.name:
            quant = path.stem.rsplit("-", 1)[-1].rsplit(".", 1)[-1]
            return f"{spec.name} {quant.upper()}"
    return path.stem


def embedder_for(settings: Settings) -> Embedder:
    path = _model_file(settings.embed_model)
    embedder = Embedder(path, n_threads=_threads(settings))
    if embedder.dim != EMBEDDING_DIM:
        embedder.close()
        raise ModelLoadError(
            f"{path} makes {embedder.dim}-dimensional vectors; a Memex file stores "
            f"{EMBEDDING_DIM}-dimensional ones. Choose a model with {EMBEDDING_DIM} dimensions, "
            'or one whose first dimensions are an embedding too (the default "embed").'
        )
    return embedder


def _make_agent(
    store: Store,
    llm: LLMClient,
    settings: Settings,
    name: str,
    persona: Persona | None = None,
    keep_prompt_cache: bool = True,
) -> MemGPTAgent:
    """The app's agent: its page-outs and summaries happen while the user types (organise),
    and its prompt cache is kept across restarts (not a temporary chat's: `keep_prompt_cache`)."""
    return MemGPTAgent(
        persona=persona,
        archival_store=store,
        llm_client=llm,
        name=name,
        thresholds=Thresholds(settings.warn_at, settings.flush_at, settings.target_at),
        idle_work=True,
        keep_prompt_cache=keep_prompt_cache,
    )


def _same_file(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def _agent_to_open(store: Store, wanted: str) -> str:
    """`wanted` if the file has it; else the file's most recently used agent (another file
    opened shows its own conversation); a new file gets `wanted`."""
    agents = list_agents(store)
    if not agents or wanted in {a.name for a in agents}:
        return wanted
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    return max(agents, key=lambda a: (a.last_user_message_at or never, a.id)).name


class EngineSession:
    """One open Memex file with its models and the agent on screen."""

    def __init__(
        self,
        settings: Settings,
        client_factory: ClientFactory = llama_client,
        embedder_factory: EmbedderFactory = embedder_for,
        close_models: bool = True,
    ) -> None:
        """`close_models=False` leaves the models the factories return open at close() (tests
        share one loaded model between sessions)."""
        self.settings = settings
        self._close_models = close_models
        self._client_factory = client_factory
        self._embedder_factory = embedder_factory
        self.store: Store | None = None
        self.llm: LLMClient | None = None
        self.embedder: Embedder | None = None
        self._agent: MemGPTAgent | None = None
        self._reembedding: Reembedding | None = None  # where reembed_some stands
        self._temporary: _Temporary | None = None

    # -- loading -----------------------------------------------------------------------------
    def load(self, progress: Progress, settings: Settings | None = None) -> None:
        """Load the models, open the file and the agent (with `settings`, which then become
        this session's). ModelLoadError or StoreError say what to do; on failure whatever was
        open before stays open and in use."""
        settings = (settings or self.settings).checked()
        path = Path(settings.db_path).expanduser() if settings.db_path else default_db_path()
        if self._agent is not None and self.store is not None and _same_file(self.store.path, path):
            # a reload of the same file keeps the agent on screen (renamed or not)
            settings = dataclasses.replace(settings, agent=self._agent.name)
        opened: list[object] = []
        try:
            progress("Loading the embedding model…", 10)
            embedder = self._embedder_factory(settings)
            opened.append(embedder)
            progress("Loading the chat model…", 35)
            llm = self._client_factory(settings)
            opened.append(llm)
            progress("Opening the memory file…", 80)
            store = self._store_for(path, embedder)
            if store is not self.store:
                opened.append(store)
            progress("Opening the agent…", 90)
            settings = dataclasses.replace(settings, agent=_agent_to_open(store, settings.agent))
            agent = _make_agent(store, llm, settings, settings.agent)
        except BaseException:
            if self.store is not None and self.embedder is not None:
                self.store.use_embedder(self.embedder)  # the previous models stay in use
            self._close_parts(opened)
            raise
        if store is self.store:
            self.store = None  # kept open: close() below lets go of the old models only
        self.close()
        self.settings = settings
        self.store, self.llm, self.embedder, self._agent = store, llm, embedder, agent
        self._reembedding = None  # another file or embedder: start from the top
        progress("Ready", 100)

    def _store_for(self, path: Path, embedder: Embedder) -> Store:
        """The open store when `path` is the file already open (a second Store on it would wait
        for this one's lock), else the file at `path`, opened."""
        if self.store is not None and _same_file(self.store.path, path):
            self.store.use_embedder(embedder)
            return self.store
        return open_store(path, embedder=embedder)

    @property
    def loaded(self) -> bool:
        return self._agent is not None

    @property
    def agent(self) -> MemGPTAgent:
        if self._agent is None:
            raise NotLoaded("no model is loaded yet; choose models in Settings")
        return self._agent

    def _open(self, name: str, persona: Persona | None = None) -> MemGPTAgent:
        if self.store is None or self.llm is None:
            raise NotLoaded("no model is loaded yet; choose models in Settings")
        return _make_agent(self.store, self.llm, self.settings, name, persona)

    def _close_parts(self, parts: list[object]) -> None:
        for part in reversed(parts):
            if isinstance(part, Store) or self._close_models:
                close = getattr(part, "close", None)
                if callable(close):
                    close()

    def close(self) -> None:
        self.end_temporary()
        self._save_prompt_cache()
        self._agent = None
        self._close_parts([p for p in (self.embedder, self.llm, self.store) if p is not None])
        self.store = self.llm = self.embedder = None

    # -- a temporary chat ----------------------------------------------------------------------
    @property
    def temporary(self) -> bool:
        return self._temporary is not None

    def start_temporary(self) -> None:
        """A chat that is neither stored nor reviewed: a fresh agent of the same name and
        persona in a throwaway file, with none of the user's memory; end_temporary() deletes
        it and brings the agent back."""
        if self._temporary is not None:
            return
        kept = self.agent
        if self.llm is None or self.embedder is None:
            raise NotLoaded("no model is loaded yet; choose models in Settings")
        folder = Path(tempfile.mkdtemp(prefix="memex-temporary-"))
        try:
            store = open_store(folder / "temporary.db", embedder=self.embedder)
            agent = _make_agent(
                store, self.llm, self.settings, kept.name, kept.persona, keep_prompt_cache=False
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        agent.consolidate_every = 0  # nothing of it is reviewed into memory
        self._temporary = _Temporary(folder, store, kept)
        self._agent = agent

    def end_temporary(self) -> None:
        """Ends a temporary chat: its file is deleted, the agent it stood in for is back."""
        temporary, self._temporary = self._temporary, None
        if temporary is None:
            return
        self._agent = temporary.kept
        temporary.store.close()
        shutil.rmtree(temporary.folder, ignore_errors=True)

    # -- conversation ------------------------------------------------------------------------
    def step(
        self, text: str, on_event: EventSink, cancel: threading.Event | None = None
    ) -> StepOutcome:
        result = self.agent.step(text, on_event=on_event, cancel=cancel)
        return StepOutcome(result, self.agent.context_window())

    def regenerate(self, on_event: EventSink, cancel: threading.Event | None = None) -> StepOutcome:
        result = self.agent.regenerate(on_event=on_event, cancel=cancel)
        return StepOutcome(result, self.agent.context_window())

    def edit_last(
        self, text: str, on_event: EventSink, cancel: threading.Event | None = None
    ) -> StepOutcome:
        result = self.agent.edit_last(text, on_event=on_event, cancel=cancel)
        return StepOutcome(result, self.agent.context_window())

    def heartbeat(self, on_event: EventSink, cancel: threading.Event | None = None) -> StepOutcome:
        result = self.agent.heartbeat(on_event=on_event, cancel=cancel)
        return StepOutcome(result, self.agent.context_window())

    def organise(self, cancel: threading.Event) -> Organised:
        """Idle memory work between turns (MemGPTAgent.organise), stopped by `cancel`."""
        return self.agent.organise(cancel)

    def _save_prompt_cache(self) -> None:
        """Keep the model's prompt cache for the next start (not a temporary chat's)."""
        if self._agent is not None and self._temporary is None:
            self._agent.save_prompt_state()

    def keep_unanswered(self, texts: list[str]) -> None:
        """Store messages typed while a step ran that will not be sent now (the app closes):
        nothing typed is lost, and the next step answers them. (Agents cannot be switched
        while messages wait, so they are the current agent's.)"""
        for text in texts:
            try:
                self.agent.add_user_message(text)
            except InvalidInput as exc:  # one bad text must not cost the others
                logger.warning("a queued message could not be stored: %s", exc)

    def transcript(self, limit: int = 200, before_id: int | None = None) -> TranscriptPage:
        return transcript(self.agent.recall, self.agent.summaries, limit, before_id)

    def usage(self) -> ContextUsage:
        return self.agent.context_window()

    # -- agents ------------------------------------------------------------------------------
    def agents(self) -> list[AgentInfo]:
        return list_agents(self._store())

    def switch(self, name: str) -> None:
        if name not in {a.name for a in self.agents()}:
            raise InvalidInput(f"there is no agent called {name!r}")
        self._save_prompt_cache()
        self._agent = self._open(name)

    def create(self, name: str, persona: Persona | None = None) -> None:
        name = check_name(name)
        if name in {a.name for a in self.agents()}:
            raise InvalidInput(f"there is already an agent called {name!r}")
        self._agent = self._open(name, persona)

    def rename(self, new_name: str) -> str:
        self.agent.rename(new_name)
        return self.agent.name

    def delete(self, name: str) -> str:
        """Delete agent `name`; returns the agent shown now (a new default one if none is left)."""
        delete_agent(self._store(), name)
        if self._agent is not None and self._agent.name == name:
            left = self.agents()
            self._agent = self._open(left[0].name if left else "memex")
        return self.agent.name

    def export_agent(self, path: Path) -> Path:
        """Write the shown agent to an agent file (engine.agentfile)."""
        from engine.agentfile import export_agent

        export_agent(self._store(), self.agent.name, path)
        return path

    def import_agent(
        self,
        path: Path,
        name: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> list[ImportReport]:
        """Import the agent(s) of a Memex or Letta agent file and show the (first) one.
        AgentExists when the name is taken, ImportStopped once `stop` is set: then nothing is
        imported. `on_progress(done, total)` hears how far it is (engine.agentfile)."""
        from engine.agentfile import import_agent

        reports = import_agent(self._store(), path, name, on_progress, stop)
        self._agent = self._open(reports[0].name)
        return reports

    def reembed_some(self) -> int:
        """Embed again one batch of the texts whose vectors another embedding model made (a
        new default embedder, or another chosen in Settings); returns how many are left, 0 once
        a batch finds none (the window stops asking then)."""
        store = self._store()
        if not stale_vectors(store):
            # the usual case at every start: a count over the covering index, where reembed's
            # look-up for another model's rows would read every vector row to find none
            return 0
        done, self._reembedding = reembed(store, progress=self._reembedding)
        return stale_vectors(store) if done else 0

    def _store(self) -> Store:
        if self.store is None:
            raise InvalidInput("no memory file is open yet")
        return self.store

    # -- core memory -------------------------------------------------------------------------
    def blocks(self) -> list[Block]:
        return self.agent.memory.blocks()

    def history(self, label: str) -> list[BlockEdit]:
        return self.agent.memory.history(label)

    def set_block(self, label: str, value: str) -> Block:
        return self.agent.edit_core_memory(label, value)

    def add_block(self, label: str, description: str = "") -> Block:
        """A new, empty core section of the shown agent (the model sees it at the next step)."""
        block = self.agent.memory.attach(
            BlockTemplate(label.strip(), "", description.strip(), self.agent.budget.block_chars)
        )
        self.agent.context.refresh()
        return block

    def share_block(self, label: str, other: str) -> Block:
        """Attach the shown agent's block `label` to agent `other` as well (shared memory)."""
        block = self.agent.memory.block(label)
        row = self._store().query_one("SELECT id FROM agents WHERE name = ?", (other,))
        if row is None:
            raise InvalidInput(f"there is no agent called {other!r}")
        try:
            CoreMemory(self._store(), row[0]).share(block)
        except CoreMemoryError as exc:
            raise CoreMemoryError(f"{other}: {exc}") from None
        return self.agent.memory.block(label)

    def undo_block(self, label: str) -> Block:
        return self.agent.undo_core_memory(label)

    def redo_block(self, label: str) -> Block:
        return self.agent.redo_core_memory(label)

    # -- what memory keeps (the Memory view) ---------------------------------------------------
    def remembered(self) -> list[Remembered]:
        return self.agent.remembered()

    def forget_chosen(self, items: list[Remembered], with_messages: bool = False) -> int:
        """Forget what the user chose in the chat (a request to forget), and with
        `with_messages` the user's messages they came from; how many went (one gone meanwhile
        is skipped)."""
        gone = 0
        for item in items:
            try:
                self.agent.forget(item, with_messages, how="chat")
            except KeyError:
                continue
            gone += 1
        return gone

    def forget(self, item: Remembered, with_message: bool = False) -> list[Remembered]:
        """Forget `item` (and its message, if asked); what is remembered now."""
        self.agent.forget(item, with_message)
        return self.agent.remembered()

    # -- archival memory ---------------------------------------------------------------------
    def archival_search(self, query: str, limit: int = 50) -> list[Passage]:
        if not query.strip():
            return self.agent.archival.recent(limit)
        return self.agent.archival.search(query, limit)[1]

    def archival_add(self, text: str, tags: list[str]) -> Passage:
        if not text.strip():
            raise InvalidInput("the passage is empty")
        return self.agent.archival.get(self.agent.archival.insert(text, tags, source="user"))

    def archival_update(self, passage_id: int, text: str, tags: list[str]) -> Passage:
        if not text.strip():
            raise InvalidInput("the passage is empty; delete it instead")
        return self.agent.archival.update(passage_id, text, tags)

    def archival_delete(self, passage_id: int) -> None:
        self.agent.archival.delete(passage_id)

    # -- recall memory -----------------------------------------------------------------------
    def recall_search(self, query: str, limit: int = 50) -> tuple[Page, list[Message]]:
        return self.agent.recall.search(query, limit, old_versions=True)  # shown marked

    def recall_between(
        self, start: dt.date, end: dt.date, limit: int = 200
    ) -> tuple[Page, list[Message]]:
        """Messages from the start of `start` to the end of `end` (local days, as the user
        picked them)."""
        if end < start:
            raise InvalidInput(f"the end date {end} is before the start date {start}")
        local = dt.datetime.now().astimezone().tzinfo
        since = dt.datetime.combine(start, dt.time(), local)
        until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), local)
        ids = self.agent.recall.dated(
            since.astimezone(dt.UTC), until.astimezone(dt.UTC), old_versions=True
        )
        return self.agent.recall.page_of(ids, limit, 0)

    def facts(self, entity: str, at: dt.date | None = None) -> list[Fact]:
        """The graph's facts about `entity` (every fact when it is blank), now first; with
        `at`, those that held on that day."""
        graph = self.agent.graph
        if entity.strip():
            return graph.search(entity, at=at)
        facts = graph.all() if at is None else graph.held_on(at)
        return sorted(facts, key=Fact.order)

    def end_fact(self, fact_id: int) -> Fact:
        """The user says a fact no longer holds: it ends now and stays as history."""
        return self.agent.graph.end(fact_id)

    def delete_fact(self, fact_id: int) -> None:
        """The user says a fact was never true."""
        self.agent.graph.delete(fact_id)
