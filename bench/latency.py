"""What the user waits for: a scripted 100-turn session, before and after, and reopening.

The session runs the real agent (context builder, page-outs, summaries, tools, store) on a real
model with scripted replies, as bench.context_cache does: each prompt is evaluated by llama.cpp
with its cache reuse, and each reply is fed through the model as if generated, token by token
until its first visible character (so the time to first visible token is a real decode's), the
rest in one batch. Summaries are scripted the same way (the extractive summary, fed through the
side context).

Per user step it records the wall time and the time to the first visible character of the
reply, and whether the step paged out. Sessions (`--sessions`, engine settings compared):
- before: no idle work, and after a page-out the model reads the kept messages again (prefix
  reuse only: LlamaClient.move_cache off), as before this work;
- moved: no idle work, the cache moved after a page-out (engine.llm.kv_reuse);
- idle: idle work on, cache moved: after each step the agent's organise() runs on a thread
  for the user's think time (`--think`, 10 s) and is stopped when the next message is sent.

Then reopening a full window (the last session's file), three ways, each on a copy of it, each
`--reopen-repeats` times: cold (the model reads the whole prompt), from the prompt cache saved
at close (engine.llm.prompt_state), and warm (what a running app has: the prompt already read).
And the state file's size and load time.

    python -m bench.latency [--models chat,fast] [--n-ctx 4096,8192] [--turns 100] [--think 10]
                            [--sessions before,moved,idle] [--reopen-repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import PassedOn
from bench.context_cache import script
from bench.report import write_section
from engine import MemGPTAgent, Persona, open_store
from engine.errors import Interrupted
from engine.llm.base import Completion, TextSink
from engine.llm.llama import LlamaClient
from engine.llm.scripted import extractive_summary
from engine.reading import NOT_FOUND, READING_SYSTEM
from engine.store.embed import Embedder, default_embedder
from engine.types import ChatMessage, Organised, ReplyDelta, StepEvent
from models.fetch import model_path

BEGIN, END = "<!-- latency:begin -->", "<!-- latency:end -->"
PERSONA = Persona("Sam", "A helpful assistant.")
PROBE = "About the garden: the beans are up, and the first tomato is red. (reopened)"


@dataclass
class ForcedClient(PassedOn):
    """The real model with scripted replies (see the module docstring); prefill, stopping and
    the prompt cache are the real client's."""

    inner: LlamaClient
    replies: list[dict[str, Any]] = field(default_factory=list)
    seen_text: bool = False  # the step has shown the reply's first character

    def side_client(self) -> ForcedClient:
        return ForcedClient(self.inner.side_client())

    def interrupted_by(self, cancel: threading.Event | None) -> contextlib.AbstractContextManager:
        return self.inner.interrupted_by(cancel)

    def prefill(self, messages: list[ChatMessage], cancel: threading.Event | None = None) -> int:
        return self.inner.prefill(messages, cancel)

    def save_prompt_state(self, messages: list[ChatMessage], owner: str) -> int:
        return self.inner.save_prompt_state(messages, owner)

    def load_prompt_state(self, messages: list[ChatMessage]) -> int:
        return self.inner.load_prompt_state(messages)

    def complete(
        self,
        messages: list[ChatMessage],
        reply_schema: dict[str, Any] | None,
        max_tokens: int,
        on_text: TextSink | None = None,
    ) -> Completion:
        inner, llama = self.inner, self.inner._llama
        if messages[0].content == READING_SYSTEM:
            text = NOT_FOUND
        elif reply_schema is None:
            text = extractive_summary(messages)
        elif reply_schema.get("title") == "memory_review":
            text = json.dumps({"core": [], "passages": [], "facts": []})
        else:
            text = json.dumps(self.replies.pop(0), ensure_ascii=False)
        prompt = inner.prompt_tokens(messages)
        reply = llama.tokenize(text.encode(), add_bos=False, special=False)[: max_tokens - 1]
        reply.append(llama.token_eos())
        with inner._lock:
            try:
                # the longest cached prefix, at least one token read (as Llama.generate does)
                inner._reuse_cache(prompt[: len(prompt) - 1])
                llama.eval(prompt[llama.n_tokens :])
                self._decode(reply, on_text)
            except RuntimeError as exc:
                if inner._should_abort(None):  # stopped through interrupted_by, as asked
                    raise Interrupted("stopped") from exc
                raise
        return Completion(text, len(prompt), len(reply), "stop")

    def _decode(self, reply: list[int], on_text: TextSink | None) -> None:
        """Token by token (a real decode each) until the step has shown text, then the rest
        in one batch (what comes after the first visible character is not measured here)."""
        llama = self.inner._llama
        pending = b""
        for index, token in enumerate(reply):
            if on_text is None or self.seen_text:
                llama.eval(reply[index:])
                return
            llama.eval([token])
            pending += llama.detokenize([token])
            piece = pending.decode("utf-8", "ignore")
            if piece:
                pending = b""
                on_text(piece)


@dataclass
class StepRecord:
    turn: int
    wall_s: float
    first_text_s: float | None  # to the first visible character of the reply
    paged_out: bool


@dataclass
class SessionResult:
    steps: list[StepRecord]
    idle: list[Organised]
    stop_s: list[float]  # how long idle work took to stop when the user sent


@dataclass(frozen=True)
class Variant:
    """How a session runs: with idle work or not, and whether the model's cache is moved after
    a page-out (LlamaClient.move_cache) or only its prefix reused (before this work)."""

    label: str
    idle: bool
    move_cache: bool


VARIANTS = {
    "before": Variant("idle work off, prefix reuse only (before)", idle=False, move_cache=False),
    "moved": Variant("idle work off, cache moved", idle=False, move_cache=True),
    "idle": Variant("idle work on, cache moved", idle=True, move_cache=True),
}


def run_session(
    llm: LlamaClient, embedder: Embedder, db: Path, turns: int, variant: Variant, think: float
) -> SessionResult:
    llm._llama.reset()
    llm.move_cache = variant.move_cache
    idle = variant.idle
    client = ForcedClient(llm)
    store = open_store(db, embedder=embedder)
    agent = MemGPTAgent(PERSONA, store, client, name="bench", reply_tokens=384, idle_work=idle)
    steps: list[StepRecord] = []
    organised: list[Organised] = []
    stops: list[float] = []
    for turn, (user, replies) in enumerate(script(turns)):
        client.replies = [_unique(reply, turn) for reply in replies]
        client.seen_text = False
        started = time.perf_counter()
        on_event, first = _first_text(client, started)
        result = agent.step(user, on_event=on_event)
        wall = time.perf_counter() - started
        paged = any(n.startswith("Paged out") for n in result.notes)
        steps.append(StepRecord(turn, wall, first[0] if first else None, paged))
        print(
            f"  turn {turn}: {wall:.1f}s first text {first[0] if first else float('nan'):.1f}s"
            f"{' PAGE-OUT' if paged else ''}",
            flush=True,
        )
        if idle:
            done, stop_s = _think(agent, think)
            organised.append(done)
            stops.append(stop_s)
    store.close()
    llm.move_cache = True
    return SessionResult(steps, organised, stops)


def _unique(reply: dict[str, Any], turn: int) -> dict[str, Any]:
    """The script's reply with the turn in its message: the engine refuses a reply that
    repeats one in view (the script's repeat every ten turns)."""
    if reply["tool"] != "send_message":
        return reply
    message = f"{reply['arguments']['message']} (turn {turn})"
    return {**reply, "arguments": {**reply["arguments"], "message": message}}


def _first_text(
    client: ForcedClient, started: float
) -> tuple[Callable[[StepEvent], None], list[float]]:
    """A step's event sink that notes when the reply's first character shows (and tells the
    client, which then feeds the rest of the reply at once); the list it notes into."""
    first: list[float] = []

    def on_event(event: StepEvent) -> None:
        if isinstance(event, ReplyDelta) and not first:
            first.append(time.perf_counter() - started)
            client.seen_text = True

    return on_event, first


def _think(agent: MemGPTAgent, think: float) -> tuple[Organised, float]:
    """Idle work for the user's think time; stopped when they send. (A user who sends after
    `think` seconds: when the work ends sooner, nothing happens in the rest of the time, so
    the benchmark goes on at once.)"""
    cancel = threading.Event()
    box: list[Organised] = []
    worker = threading.Thread(target=lambda: box.append(agent.organise(cancel)))
    worker.start()
    worker.join(think)
    sent = time.perf_counter()
    cancel.set()
    worker.join()
    stop_s = time.perf_counter() - sent if not box or box[0].stopped else 0.0
    if box and box[0].page_out is not None:
        print(f"  idle page-out {box[0]}", flush=True)
    return box[0], stop_s


@dataclass
class Reopen:
    cold_s: float
    cold_first_s: float
    restored_s: float
    restored_first_s: float
    warm_s: float
    warm_first_s: float
    prompt_tokens: int
    restored_tokens: int
    load_s: float
    state_bytes: int
    save_s: float


def reopen(
    llm: LlamaClient, embedder: Embedder, db: Path, folder: Path, repeats: int
) -> list[Reopen]:
    """The first step on a reopened full window, `repeats` times each way."""
    return [reopen_once(llm, embedder, db, folder / f"try{n}") for n in range(repeats)]


def reopen_once(llm: LlamaClient, embedder: Embedder, db: Path, folder: Path) -> Reopen:
    """The first step on a reopened full window: cold, from the saved cache, and warm."""
    folder.mkdir(parents=True)
    os.environ["MEMEX_PROMPT_STATE_DIR"] = str(folder / "state")
    results: dict[str, tuple[float, float]] = {}
    figures: dict[str, float] = {}
    for how in ("save", "cold", "restored", "warm"):
        copy = folder / f"{how}.db"
        shutil.copy(db, copy)
        llm._llama.reset()
        client = ForcedClient(llm)
        store = open_store(copy, embedder=embedder)
        started = time.perf_counter()
        agent = MemGPTAgent(
            PERSONA,
            store,
            client,
            name="bench",
            reply_tokens=384,
            keep_prompt_cache=how == "restored",
        )
        if how == "restored":
            figures["load_s"] = time.perf_counter() - started
            figures["restored_tokens"] = agent.restored_tokens
        if how in ("save", "warm"):
            llm.prefill(agent.context.next_prompt())
        if how == "save":
            started = time.perf_counter()
            figures["saved"] = agent.save_prompt_state()
            figures["save_s"] = time.perf_counter() - started
            figures["prompt_tokens"] = len(llm.stable_prefix(agent.context.next_prompt()))
            store.close()
            continue
        client.replies = [
            {
                "thought": "Reply.",
                "tool": "send_message",
                "arguments": {"message": "Good news about the tomatoes!"},
                "request_heartbeat": False,
            }
        ]
        started = time.perf_counter()
        on_event, first = _first_text(client, started)
        agent.step(PROBE, on_event=on_event)
        results[how] = (time.perf_counter() - started, first[0] if first else float("nan"))
        store.close()
    files = list((folder / "state").glob("*.kv"))
    return Reopen(
        *results["cold"],
        *results["restored"],
        *results["warm"],
        prompt_tokens=int(figures["prompt_tokens"]),
        restored_tokens=int(figures["restored_tokens"]),
        load_s=figures["load_s"],
        state_bytes=sum(f.stat().st_size for f in files),
        save_s=figures["save_s"],
    )


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class Config:
    model: str
    n_ctx: int
    sessions: list[tuple[Variant, SessionResult]]
    reopened: list[Reopen]


def _session_row(label: str, result: SessionResult) -> str:
    walls = [s.wall_s for s in result.steps]
    firsts = [s.first_text_s for s in result.steps if s.first_text_s is not None]
    median, p95 = statistics.median(walls), _p(walls, 0.95)
    in_steps = sum(s.paged_out for s in result.steps)
    idle = sum(o.page_out is not None for o in result.idle)
    stop = f"{max(result.stop_s):.2f}" if result.stop_s else "-"
    return (
        f"| {label} | {median:.1f} | {p95:.1f} | {max(walls):.1f} | **{p95 / median:.2f}** "
        f"| {statistics.median(firsts):.1f} | {_p(firsts, 0.95):.1f} | {max(firsts):.1f} "
        f"| {in_steps} | {idle} | {stop} |"
    )


def report(configs: list[Config], turns: int, think: float, command: str) -> str:
    lines = [
        BEGIN,
        f"## What the user waits for: {turns} turns, before and after (`{command}`)",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, one process, nothing else running. Scripted replies fed "
        "through the real model (module docstring); reply reserve 384; the user sends "
        f"{think:g} s after each reply. Times in seconds; *first text* is the time to the "
        "reply's first visible character.",
        "",
        "| model, n_ctx, idle work | step p50 | p95 | max | p95/p50 | first text p50 | p95 "
        "| max | page-outs in steps | idle page-outs | longest stop |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        for variant, result in c.sessions:
            lines.append(_session_row(f"{c.model}, {c.n_ctx}, {variant.label}", result))
    lines += [
        "",
        "Reopening a full window (the first step after the app starts, each on a copy of the "
        "file the session left):",
        "",
        "| model, n_ctx | prompt tokens | cold step | from saved cache | warm step | "
        "saved / warm | cold / warm | state file | load | save |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        for r in c.reopened:
            lines.append(
                f"| {c.model}, {c.n_ctx} | {r.prompt_tokens} | {r.cold_s:.1f} "
                f"(first text {r.cold_first_s:.1f}) | {r.restored_s:.1f} "
                f"({r.restored_first_s:.1f}; {r.restored_tokens} tokens loaded) "
                f"| {r.warm_s:.1f} ({r.warm_first_s:.1f}) "
                f"| **{r.restored_s / r.warm_s:.2f}** | {r.cold_s / r.warm_s:.1f} "
                f"| {r.state_bytes / 1e6:.0f} MB | {r.load_s:.2f} s | {r.save_s:.2f} s |"
            )
    lines.append(END)
    return "\n".join(lines)


def run_config(
    key: str,
    n_ctx: int,
    embedder: Embedder,
    turns: int,
    think: float,
    variants: list[Variant],
    repeats: int,
) -> Config:
    llm = LlamaClient(model_path(key), n_ctx=n_ctx)
    sessions = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n, variant in enumerate(variants):
            print(f"{key} n_ctx {n_ctx}: {variant.label}", flush=True)
            db = folder / f"session{n}.db"
            sessions.append((variant, run_session(llm, embedder, db, turns, variant, think)))
        print(f"{key} n_ctx {n_ctx}: reopening", flush=True)
        reopened = reopen(llm, embedder, folder / f"session{len(variants) - 1}.db", folder, repeats)
    llm.close()
    return Config(f"{key} ({llm.name})", n_ctx, sessions, reopened)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="chat,fast")
    parser.add_argument("--n-ctx", default="4096,8192")
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--think", type=float, default=10.0)
    parser.add_argument(
        "--sessions",
        default="before,idle",
        help=f"comma-separated, of {', '.join(VARIANTS)}; the last one's file is reopened",
    )
    parser.add_argument("--reopen-repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    variants = [VARIANTS[name] for name in args.sessions.split(",")]
    embedder = default_embedder()
    configs = []
    for key in args.models.split(","):
        for n_ctx in (int(n) for n in args.n_ctx.split(",")):
            configs.append(
                run_config(
                    key, n_ctx, embedder, args.turns, args.think, variants, args.reopen_repeats
                )
            )
            command = " ".join(["python -m bench.latency", *sys.argv[1:]])
            section = report(configs, args.turns, args.think, command)
            print(section, flush=True)
            if args.write:
                write_section(section, BEGIN, END)


if __name__ == "__main__":
    main()
