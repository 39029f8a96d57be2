"""The terminal chat: `python -m engine chat` (or `memex chat`)."""

from __future__ import annotations

import argparse
import logging
import sys

from engine.errors import MemexError
from engine.store.db import default_db_path

HELP = """Commands: /memory (core memory), /search TEXT (archival), /recall TEXT (conversation),
/context (token budget), /heartbeat (let the assistant think on its own), /quit"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memex", description="Memex: an assistant that remembers")
    sub = parser.add_subparsers(dest="command")
    chat = sub.add_parser("chat", help="chat in the terminal")
    chat.add_argument("--db", default=None, help=f"database file (default {default_db_path()})")
    chat.add_argument("--model", default="chat", help="'chat', 'small' or a path to a GGUF file")
    chat.add_argument("--agent", default="memex", help="agent name (resumes it if it exists)")
    chat.add_argument("--n-ctx", type=int, default=4096, help="context window in tokens")
    chat.add_argument("-v", "--verbose", action="store_true", help="log engine details")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "chat":
        build_parser().print_help()
        return 0 if args.command is None else 2
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
        llm_client=default_llm_client(args.model, n_ctx=args.n_ctx),
        name=args.agent,
    )
    print(f"Agent {agent.name!r} ready. {HELP}")
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            return 0
        if line.strip() in ("/quit", "/exit"):
            return 0
        try:
            _handle(agent, line)
        except MemexError as exc:
            print(f"[error] {exc}")


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
