"""The terminal chat: `python -m engine chat` (or `memex chat`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from engine.errors import MemexError
from engine.llm.remote import is_remote_model
from engine.store.db import default_db_path

logger = logging.getLogger(__name__)

HELP = """Commands: /memory (core memory), /search TEXT (archival), /recall TEXT (conversation),
/context (token budget), /heartbeat (let the assistant think on its own), /quit"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memex", description="Memex: an assistant that remembers")
    sub = parser.add_subparsers(dest="command")
    chat = sub.add_parser("chat", help="chat in the terminal")
    chat.add_argument("--db", default=None, help=f"database file (default {default_db_path()})")
    chat.add_argument(
        "--model",
        default="chat",
        help="'chat', 'small', a path to a GGUF file, or the URL of an OpenAI-compatible server "
        "(llama-server, vLLM, Ollama, llama-cpp-python's server), e.g. http://127.0.0.1:8080/v1",
    )
    chat.add_argument("--agent", default="memex", help="agent name (resumes it if it exists)")
    chat.add_argument(
        "--n-ctx",
        type=int,
        default=None,
        help="context window in tokens (default 4096; for a server: what it reports, and "
        "required where it reports none)",
    )
    server = chat.add_argument_group("with a server URL as --model")
    server.add_argument(
        "--served-model", help="the model's name on the server (default: its only one)"
    )
    server.add_argument(
        "--tokenizer",
        help="the model's tokenizer.json (default: the server's tokenize endpoint; Ollama has none)",
    )
    server.add_argument(
        "--chat-template",
        metavar="PATH",
        help="where the chat template is: the model's GGUF file, its tokenizer_config.json or a "
        ".jinja file (default: beside --tokenizer, or from llama-server)",
    )
    server.add_argument(
        "--api-key", default=None, help="sent as a Bearer token (default: $MEMEX_API_KEY)"
    )
    chat.add_argument("-v", "--verbose", action="store_true", help="log engine details")
    export = sub.add_parser("export", help="write an agent to an agent file (JSON)")
    export.add_argument("agent", help="the agent's name")
    export.add_argument("path", help="the file to write")
    export.add_argument("--force", action="store_true", help="replace the file if it exists")
    export.add_argument("--db", default=None, help=f"database file (default {default_db_path()})")
    imp = sub.add_parser("import", help="read a Memex agent file or a Letta .af into the database")
    imp.add_argument("path", help="the agent file")
    imp.add_argument("--name", default=None, help="store it under this name (default: its own)")
    imp.add_argument("--db", default=None, help=f"database file (default {default_db_path()})")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("export", "import"):
        try:
            return _transfer(args)
        except MemexError as exc:
            print(f"memex: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # an import is one transaction: none of it was kept
            print("\nmemex: stopped; nothing was imported" * (args.command == "import"))
            return 130
    if args.command != "chat":
        parser.print_help()
        return 0 if args.command is None else 2
    remote_flags = [args.served_model, args.tokenizer, args.chat_template, args.api_key]
    if any(flag is not None for flag in remote_flags) and not is_remote_model(args.model):
        parser.error(
            "--served-model, --tokenizer, --chat-template and --api-key need a server URL as --model"
        )
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:  # llama.cpp's load-time warnings are noise in a chat
        logging.getLogger("engine.llm.llama_cpp").setLevel(logging.ERROR)
    try:
        return _chat(args)
    except MemexError as exc:
        print(f"memex: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
        return 130


def _chat(args: argparse.Namespace) -> int:
    from engine import MemGPTAgent, default_llm_client, open_store

    store = open_store(args.db)
    print(f"Memex: memory file {store.path}; loading model {args.model} ...", flush=True)
    agent = MemGPTAgent(
        archival_store=store,
        llm_client=_llm_client(args, default_llm_client),
        name=args.agent,
        idle_work=True,  # page-outs and summaries while the user types (_IdleWork)
        keep_prompt_cache=True,
    )
    _bring_vectors_over(store)
    print(f"Agent {agent.name!r} ready. {HELP}")
    idle = _IdleWork(agent)
    try:
        while True:
            idle.start()
            try:
                line = input("you> ")
            except EOFError:
                print()
                return 0
            finally:
                idle.stop()
            if line.strip() in ("/quit", "/exit"):
                return 0
            try:
                _handle(agent, line)
            except MemexError as exc:
                print(f"[error] {exc}")
    finally:
        idle.stop()
        agent.save_prompt_state()  # for the next start


class _IdleWork:
    """The agent's idle memory work (MemGPTAgent.organise) on a thread while the user types;
    stopped (within a fraction of a second) when they send, before the step runs."""

    def __init__(self, agent: Any) -> None:
        self._agent = agent
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

    def start(self) -> None:
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memex-idle", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._agent.organise(self._cancel)
        except MemexError as exc:  # idle work is housekeeping: the next step does what it must
            logger.warning("idle memory work failed: %s", exc)

    def stop(self) -> None:
        if self._thread is not None:
            self._cancel.set()
            self._thread.join()
            self._thread = None


def _import_progress() -> Any:
    """Where the terminal shows it, how far an import is (its texts are embedded: a big file
    takes minutes; Ctrl-C stops it, and nothing is imported then)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r  importing: {done:,} of {total:,}", end=end, file=sys.stderr, flush=True)

    return show


def _bring_vectors_over(store: Any) -> None:
    """Vectors another embedding model made are made again before the chat (Ctrl-C stops it;
    each batch is kept, and the next start goes on from there)."""
    from engine.memory.reembed import reembed_all, stale_vectors

    if not stale_vectors(store):
        return
    print(f"Memex: indexing your memory for {store.embedder.name} (once) ...", flush=True)
    reembed_all(store, lambda done, total: print(f"\r  {done}/{total}", end="", flush=True))
    print()


def _llm_client(args: argparse.Namespace, factory: Any) -> Any:
    if not is_remote_model(args.model):
        return factory(args.model, n_ctx=args.n_ctx)
    options = {
        "model_name": args.served_model,
        "tokenizer": args.tokenizer,
        "template_from": args.chat_template,
        "api_key": args.api_key or os.environ.get("MEMEX_API_KEY") or None,
    }
    return factory(args.model, n_ctx=args.n_ctx, **options)


def _transfer(args: argparse.Namespace) -> int:
    """`memex export AGENT PATH` and `memex import PATH [--name NAME]`."""
    from engine.agentfile import export_agent, import_agent
    from engine.errors import InvalidInput
    from engine.store.db import open_store

    store = open_store(args.db)
    try:
        if args.command == "export":
            if Path(args.path).expanduser().exists() and not args.force:
                raise InvalidInput(f"{args.path} exists; add --force to replace it")
            document = export_agent(store, args.agent, args.path)
            print(
                f"Exported {args.agent!r} to {args.path}: {len(document['messages'])} messages, "
                f"{len(document['passages'])} passages, {len(document['facts'])} facts"
            )
            return 0
        for report in import_agent(store, args.path, args.name, _import_progress()):
            print(
                f"Imported {report.name!r} into {store.path}: {report.messages} messages, "
                f"{report.blocks} blocks, {report.passages} passages, {report.facts} facts"
            )
            for note in report.notes:
                print(f"  not brought over: {note}")
        return 0
    finally:
        store.close()


def _handle(agent: object, line: str) -> None:
    from engine.agent import MemGPTAgent

    assert isinstance(agent, MemGPTAgent)
    command, _, rest = line.strip().partition(" ")
    if command == "/memory":
        print(agent.memory.render())
    elif command == "/search":
        print(agent.tools.archival_memory_search(rest or " ", limit=5))
    elif command == "/recall":
        print(agent.tools.conversation_search(rest or " ", limit=5))
    elif command == "/context":
        usage = agent.context_window()
        sections = ", ".join(f"{name} {tokens}" for name, tokens in usage.sections.items())
        print(
            f"{usage.prompt_tokens}/{usage.context_window} tokens ({usage.pressure}): {sections}; "
            f"warn above {usage.warn_at}, page out above {usage.flush_at} down to "
            f"{usage.target_at}"
        )
        latest = agent.summaries.latest()
        if latest is not None:
            print(
                f"summary of messages {latest.first_message_id}-{latest.last_message_id}: "
                f"{latest.text}"
            )
    elif command == "/heartbeat":
        _show(agent.heartbeat())
    elif command.startswith("/"):
        print(HELP)
    else:
        _show(agent.step(line))


def _show(response: object) -> None:
    for op in response.memory_operations:  # type: ignore[attr-defined]
        print(f"  [{'memory' if op.ok else 'memory error'}] {op.summary}")
    for note in response.notes:  # type: ignore[attr-defined]
        print(f"  [note] {note}")
    print(f"memex> {response.message or '(no reply)'}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
