"""Does the prompt layout let llama.cpp reuse its KV cache? A scripted 100-turn session.

The session runs the real agent (context builder, page-outs, summaries, tools, store) on the real
default model, with the replies scripted: each reply is fed to llama.cpp token by token as if
the model had generated it, so the KV cache holds exactly what it would after a real generation,
and the session is the same in every run. The same session runs twice: with prefix reuse, and
with the cache reset before every model call. Per turn it prints the prompt tokens llama.cpp
evaluated against the tokens new in that turn, in two senses:

- new (prefix): prompt tokens after the longest common prefix with the previous model call's
  prompt, summed over the turn's calls: what any prefix cache must evaluate. A page-out
  re-renders the system message, so it makes the whole prompt new, once.
- new (messages): tokens of the messages the turn added (user text, replies, tool results,
  notes): the conversation's growth, the floor without page-outs.

    python -m bench.context_cache [--turns 100] [--n-ctx 2048] [--no-reset] [--write]

--write puts the figures into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp

from bench.clients import PassedOn
from bench.report import write_section
from engine import MemGPTAgent, Persona, open_store
from engine.llm.base import Completion, TextSink
from engine.llm.llama import LlamaClient
from engine.llm.scripted import call, extractive_summary
from engine.store.embed import default_embedder
from engine.types import ChatMessage
from models.fetch import model_path


def markers(n_ctx: int) -> tuple[str, str]:
    """One BENCHMARKS.md section per window size."""
    return (
        f"<!-- context_cache n_ctx={n_ctx}:begin -->",
        f"<!-- context_cache n_ctx={n_ctx}:end -->",
    )


TOPICS = [
    ("my sister Marta", "She moved to Porto last spring and teaches chemistry."),
    ("the garden", "The tomatoes are finally turning red after weeks of rain."),
    ("my bike", "The rear brake squeaks whenever it is cold in the morning."),
    ("work", "We are migrating the billing service to a new database next month."),
    ("the trip to Kyoto", "We booked a small inn near the river for the first week of May."),
    ("my cat Miso", "She has started sleeping on the bookshelf above the radiator."),
    ("cooking", "I tried a lentil soup with smoked paprika and it was great."),
    ("running", "I ran ten kilometres on Sunday, my best time this year."),
    ("the book club", "This month we read a novel about a lighthouse keeper."),
    ("piano lessons", "The teacher wants me to practise scales for twenty minutes a day."),
]


@dataclass
class CallRecord:
    turn: int
    kind: str  # "step" or "summary"
    prompt_tokens: int
    evaluated: int
    new_prefix: int
    seconds: float


@dataclass
class ForcedReplyClient(PassedOn):
    """A real llama.cpp model whose replies are scripted: the prompt is evaluated with the same
    prefix reuse llama-cpp-python's generate() does, then the reply's tokens are evaluated as
    if sampled. Counting and rendering are the real client's."""

    inner: LlamaClient
    reset_each_call: bool = False
    replies: list[dict[str, Any]] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)
    turn: int = 0
    _previous_step_prompt: list[int] = field(default_factory=list)
    _turn_of: ForcedReplyClient | None = None  # a side client reads the turn from its owner

    def side_client(self) -> ForcedReplyClient:
        """Summaries in a second context, as with LlamaClient; recorded in the same list."""
        side = ForcedReplyClient(self.inner.side_client(), self.reset_each_call)
        side.records = self.records
        side._turn_of = self
        return side

    def complete(
        self,
        messages: list[ChatMessage],
        reply_schema: dict[str, Any] | None,
        max_tokens: int,
        on_text: TextSink | None = None,  # the reply is scripted: nothing to stream
    ) -> Completion:
        llama = self.inner._llama
        prompt = self.inner.prompt_tokens(messages)
        if reply_schema is None:
            kind, text = "summary", extractive_summary(messages)
        else:
            kind, text = "step", _json(self.replies.pop(0))
        reply = llama.tokenize(text.encode(), add_bos=False, special=False)[: max_tokens - 1]
        reply.append(llama.token_eos())
        started = time.perf_counter()
        if self.reset_each_call:
            llama.reset()
        # the longest cached prefix, at least one token read (as Llama.generate does)
        reused = self.inner._keep_cached(prompt[: len(prompt) - 1])
        llama.eval(prompt[reused:])
        llama.eval(reply)
        seconds = time.perf_counter() - started
        new_prefix = len(prompt)
        if kind == "step":
            new_prefix = len(prompt) - llama_cpp.Llama.longest_token_prefix(
                prompt, self._previous_step_prompt
            )
            self._previous_step_prompt = prompt
        turn = self._turn_of.turn if self._turn_of is not None else self.turn
        self.records.append(
            CallRecord(turn, kind, len(prompt), len(prompt) - reused, new_prefix, seconds)
        )
        return Completion(
            llama.detokenize(reply[:-1]).decode(errors="replace"), len(prompt), len(reply), "stop"
        )


def _json(reply: dict[str, Any]) -> str:
    return json.dumps(reply, ensure_ascii=False)


def script(turns: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """(user text, scripted replies) per turn: chat, with memory edits, saves and searches."""
    session = []
    for turn in range(turns):
        subject, fact = TOPICS[turn % len(TOPICS)]
        user = f"About {subject}: {fact} (turn {turn})"
        answer = call(
            "send_message",
            thought="Reply briefly.",
            message=f"Thanks for telling me about {subject}. I will remember that. What else?",
        )
        if turn % 7 == 3:
            replies = [
                call(
                    "core_memory_append",
                    True,
                    thought="Keep this.",
                    section="human",
                    content=f"{subject}: {fact[:60]}",
                ),
                answer,
            ]
        elif turn % 11 == 5:
            replies = [
                call("archival_memory_insert", True, thought="Save details.", content=fact),
                answer,
            ]
        elif turn % 13 == 8:
            replies = [
                call("conversation_search", True, thought="Look back.", query=subject, limit=3),
                answer,
            ]
        else:
            replies = [answer]
        session.append((user, replies))
    return session


@dataclass(frozen=True)
class RunResult:
    records: list[CallRecord]
    new_messages: dict[int, int]  # turn -> tokens of the messages it added
    page_outs: int
    wall_s: float
    max_prompt: int


def run(llm: LlamaClient, turns: int, reset_each_call: bool) -> RunResult:
    client = ForcedReplyClient(llm, reset_each_call=reset_each_call)
    llm._llama.reset()
    llm.side_client()._llama.reset()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "bench.db", embedder=default_embedder())
        agent = MemGPTAgent(
            Persona("Sam", "A helpful assistant."), store, client, name="bench", reply_tokens=384
        )
        new_messages: dict[int, int] = {}
        page_outs = 0
        max_prompt = 0
        started = time.perf_counter()
        for turn, (user, replies) in enumerate(script(turns)):
            client.turn = turn
            client.replies = list(replies)
            last_id = max((m.id for m in agent.recall.all()), default=0)
            result = agent.step(user)
            page_outs += sum(n.startswith("Paged out") for n in result.notes)
            max_prompt = max([max_prompt, *(c.counted_prompt_tokens for c in result.model_calls)])
            added = [m for m in agent.recall.all() if m.id > last_id]
            new_messages[turn] = sum(m.token_count for m in added)
        wall = time.perf_counter() - started
        store.close()
    return RunResult(client.records, new_messages, page_outs, wall, max_prompt)


def report(cached: RunResult, reset: RunResult | None, turns: int, n_ctx: int) -> str:
    rows = []
    for turn in range(turns):
        calls = [r for r in cached.records if r.turn == turn]
        rows.append(
            f"| {turn} | {len(calls)} | {sum(r.prompt_tokens for r in calls if r.kind == 'step')} "
            f"| {sum(r.new_prefix for r in calls)} | {cached.new_messages[turn]} "
            f"| {sum(r.evaluated for r in calls)} "
            f"| {'page-out' if any(r.kind == 'summary' for r in calls) else ''} |"
        )
    evaluated = sum(r.evaluated for r in cached.records)
    new_prefix = sum(r.new_prefix for r in cached.records)
    new_messages = sum(cached.new_messages.values())
    summary_eval = sum(r.evaluated for r in cached.records if r.kind == "summary")
    begin, end = markers(n_ctx)
    if reset is None:
        reset_lines = [
            f"- prompt tokens evaluated, with prefix reuse: {evaluated} (no cache-reset run: "
            "--no-reset)"
        ]
    else:
        reset_eval = sum(r.evaluated for r in reset.records)
        reset_lines = [
            f"- prompt tokens evaluated, with prefix reuse: {evaluated}; with the cache reset "
            f"before every call: {reset_eval}"
        ]
    lines = [
        begin,
        f"## Prompt cache: a scripted {turns}-turn session at n_ctx {n_ctx} "
        f"(`python -m bench.context_cache --n-ctx {n_ctx}{' --no-reset' if reset is None else ''}"
        " --write`)",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, default chat model, n_ctx {n_ctx}, reply reserve 384, {turns} turns, scripted replies "
        "fed through the model token by token (see the module docstring).",
        "",
        f"- page-outs: {cached.page_outs}; largest prompt {cached.max_prompt} tokens "
        f"(window {n_ctx})",
        f"- model calls: {len(cached.records)} ({sum(r.kind == 'summary' for r in cached.records)}"
        " of them summary calls)",
        *reset_lines,
        f"- **evaluated / new (prefix): {evaluated / new_prefix:.2f}** (goal <= 1.3; "
        f"{new_prefix} new)",
        f"- evaluated / new (messages): {evaluated / new_messages:.2f} ({new_messages} tokens of "
        f"new messages; the excess is page-outs: their summary calls evaluated {summary_eval} "
        "tokens and each re-reads the kept messages once)",
        (
            f"- wall time: {cached.wall_s:.0f} s with prefix reuse"
            if reset is None
            else f"- **wall time: {cached.wall_s:.0f} s with prefix reuse, {reset.wall_s:.0f} s "
            f"with the cache reset before every call: {reset.wall_s / cached.wall_s:.1f}x**"
        ),
        "",
        "<details><summary>Per turn</summary>",
        "",
        "| turn | calls | step prompts | new (prefix) | new (messages) | evaluated | |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "</details>",
        end,
    ]
    return "\n".join(lines)


def write(section: str, n_ctx: int) -> None:
    write_section(section, *markers(n_ctx))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument(
        "--no-reset", action="store_true", help="skip the (slow) run with the cache reset"
    )
    args = parser.parse_args()
    llm = LlamaClient(model_path("chat"), n_ctx=args.n_ctx)
    cached = run(llm, args.turns, reset_each_call=False)
    reset = None if args.no_reset else run(llm, args.turns, reset_each_call=True)
    section = report(cached, reset, args.turns, args.n_ctx)
    print(section)
    if args.write:
        write(section, args.n_ctx)


if __name__ == "__main__":
    main()
