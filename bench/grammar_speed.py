"""What the reply grammar costs in decoding speed, on the same model and prompt:

    python -m bench.grammar_speed [--runs 6] [--max-tokens 256] [--write]

The prompt is the agent's own (a MemGPTAgent's context builder on a temporary memory file, with
the real default chat model and embedder), after a user message that asks for a tool call of
100-200 tokens. Each run generates a reply to one prompt three ways, in an order that rotates
from run to run:

- unconstrained: no grammar (reply_schema None), the same max_tokens;
- stock grammar ("before"): llama-cpp-python's own sampler chain, which applies the grammar to
  every token of the vocabulary at every step (LlamaClient(grammar_check_first=False));
- grammar-checked, 152k-token draw: the engine's sampler, which checks the grammar on the token
  the unconstrained chain draws and applies it to the whole vocabulary only when that token is
  refused, with that draw over all 152k logits (as the engine did before issue 7);
- grammar-checked ("after"): the same, with the unconstrained draw over only the highest logits
  (engine.llm.llama._GrammarCheckedSampler, the default; the same token, see its docstring).

Speed is decoding tokens per second: generated tokens over the call's time less llama.cpp's
prompt evaluation, so sampling and the grammar count, and replies of different lengths compare.
The ratio is constrained / unconstrained in the same run (the median of the runs). Every
constrained reply is checked: json.loads, the agent's reply schema (keys in order, types,
lengths, the tool's arguments), the engine's reply parser and the tool's argument model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.report import write_section
from engine import MemGPTAgent, Persona
from engine.llm.grammar import REPLY_KEYS
from engine.llm.llama import LlamaClient, available_cpus
from engine.llm.parse import parse_reply
from engine.store.db import open_store
from engine.store.embed import default_embedder
from engine.tools.registry import TOOL_ARGS
from engine.types import ChatMessage
from models.fetch import model_path

BEGIN, END = "<!-- grammar_speed:begin -->", "<!-- grammar_speed:end -->"
N_CTX = 4096
GOAL = 0.90
UNCONSTRAINED = "unconstrained"
BEFORE = "stock grammar (before)"
WHOLE = "grammar-checked, 152k-token draw"
AFTER = "grammar-checked (after)"
MODES = (UNCONSTRAINED, BEFORE, WHOLE, AFTER)
PERSONA = Persona("Sam", "A helpful assistant with a long memory.")
PROMPTS = [
    "Please save this to your archival memory, word for word: My grandmother's apple cake: "
    "three apples, two eggs, a cup of flour, half a cup of sugar, a spoon of cinnamon, bake "
    "for forty minutes at 180 degrees and let it cool before slicing.",
    "Write me a short poem of four lines about the sea at night, and send it to me.",
    "I'm Dana, a nurse at Mercy Hospital in Lyon. I climb on weekends, I'm allergic to cats, "
    "and my sister Jo studies medicine. Remember all of that about me in your core memory.",
    "Explain in three sentences why the sky is blue, for a ten-year-old.",
    "Store this for later in archival memory: the office wifi is blue-otter-42, the printer "
    "is on the second floor next to the kitchen, and the door code is 4711.",
    "Tell me a short story, about five sentences, about a cat who learns to play the piano.",
]


# -- checking a reply ----------------------------------------------------------------------------
def check(value: Any, schema: dict[str, Any], where: str = "reply") -> None:
    """Raise ValueError where `value` breaks `schema` (the subset engine.llm.grammar supports)."""
    for key in ("oneOf", "anyOf"):
        if key in schema:
            errors = []
            for option in schema[key]:
                try:
                    check(value, option, where)
                except ValueError as exc:
                    errors.append(str(exc))
            matched = len(schema[key]) - len(errors)
            if matched == 0 or (key == "oneOf" and matched > 1):
                raise ValueError(f"{where}: {matched} of the {key} branches match: {errors[:3]}")
            return
    if "const" in schema:
        if value != schema["const"] or type(value) is not type(schema["const"]):
            raise ValueError(f"{where}: {value!r} is not {schema['const']!r}")
        return
    if "enum" in schema:
        if not any(value == v and type(value) is type(v) for v in schema["enum"]):
            raise ValueError(f"{where}: {value!r} is not one of {schema['enum']!r}")
        return
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    errors = []
    for kind in kinds:
        try:
            _check_type(value, kind, schema, where)
            return
        except ValueError as exc:
            errors.append(str(exc))
    raise ValueError("; ".join(errors))


def _check_type(value: Any, kind: str, schema: dict[str, Any], where: str) -> None:
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"{where}: not a string")
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            raise ValueError(f"{where}: length {len(value)} out of range")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}: not an integer")
        if "minimum" in schema and value < schema["minimum"]:
            raise ValueError(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ValueError(f"{where}: {value} > {schema['maximum']}")
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{where}: not a number")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: not a boolean")
    elif kind == "null":
        if value is not None:
            raise ValueError(f"{where}: not null")
    elif kind == "array":
        if not isinstance(value, list):
            raise ValueError(f"{where}: not an array")
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            raise ValueError(f"{where}: {len(value)} items out of range")
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]")
    elif kind == "object" or (kind is None and "properties" in schema):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: not an object")
        props = schema.get("properties", {})
        missing = [k for k in schema.get("required", []) if k not in value]
        extra = [k for k in value if k not in props]
        if missing or extra:
            raise ValueError(f"{where}: missing {missing}, unexpected {extra}")
        for key, item in value.items():
            check(item, props[key], f"{where}.{key}")
    else:
        raise ValueError(f"{where}: unsupported schema type {kind!r}")


def valid(text: str, schema: dict[str, Any]) -> str | None:
    """None if `text` is one valid reply; else what is wrong."""
    try:
        data = json.loads(text)
        check(data, schema)
        if list(data) != list(REPLY_KEYS):
            raise ValueError(f"keys {list(data)} are not in the order {list(REPLY_KEYS)}")
        call = parse_reply(text)
        TOOL_ARGS[call.name].model_validate(call.arguments)
    except Exception as exc:  # every way of being invalid is a finding
        return f"{type(exc).__name__}: {exc}"
    return None


# -- the runs ----------------------------------------------------------------------------------
def agent_prompts(llm: LlamaClient, folder: Path) -> tuple[list[list[ChatMessage]], dict]:
    """The window the agent builds for each prompt, and the reply schema the agent uses."""
    store = open_store(folder / "memex.db", embedder=default_embedder())
    windows, schema = [], None
    for i, text in enumerate(PROMPTS):
        agent = MemGPTAgent(PERSONA, store, llm, name=f"bench-{i}")
        agent.add_user_message(text)
        windows.append(agent.context.build().messages)
        schema = agent._reply_schema
    store.close()
    assert schema is not None
    return windows, schema


def generate(llm: LlamaClient, mode: str, messages: list[ChatMessage], schema: dict, n: int):
    llm._llama.grammar_check_first = mode != BEFORE
    llm._llama.top_candidates_first = mode != WHOLE
    completion = llm.complete(messages, None if mode == UNCONSTRAINED else schema, n)
    stats = llm.last_stats
    assert stats is not None
    decode_s = stats.wall_s - stats.prompt_eval_s
    return {
        "tokens": stats.completion_tokens,
        "tok_s": stats.completion_tokens / decode_s,
        "llama_tok_s": stats.completion_tokens / stats.eval_s if stats.eval_s else 0.0,
        # per token, the call's time outside llama_decode: sampling, grammar, the token loop
        "outside_ms": 1000 * (decode_s - stats.eval_s) / max(1, stats.completion_tokens),
        "resamples": stats.grammar_resamples,
        "finish": completion.finish_reason,
        "error": None if mode == UNCONSTRAINED else valid(completion.text, schema),
        "text": completion.text,
    }


def report(rows: list[dict[str, dict]], args: argparse.Namespace, threads: int) -> str:
    def med(mode: str, key: str) -> float:
        return statistics.median(r[mode][key] for r in rows)

    def ratio(mode: str) -> float:
        return statistics.median(r[mode]["tok_s"] / r[UNCONSTRAINED]["tok_s"] for r in rows)

    lines = [
        BEGIN,
        "## Grammar overhead: constrained decoding against unconstrained",
        "",
        f"`python -m bench.grammar_speed --runs {args.runs} --max-tokens {args.max_tokens}"
        f"{f' --threads {args.threads}' if args.threads else ''} --write`, {dt.date.today()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, {threads} model threads, default "
        f"chat model (Qwen2.5-Coder-0.5B Q4_K_M), n_ctx {N_CTX}; the agent's own prompt "
        f"({len(PROMPTS)} user messages asking for 100-200-token tool calls, one a run) and "
        "reply schema; the four ways alternate in each run. Tokens/s: generated tokens over "
        "the call's time less prompt evaluation (sampling and the grammar included); llama.cpp "
        "decode: over llama.cpp's own decoding time only; outside decoding: the rest of the "
        "call a token (sampling, the grammar, llama-cpp-python's loop).",
        "",
        "| sampling | tokens/s | / unconstrained | llama.cpp decode tokens/s | ms a token "
        "outside decoding | tokens (median) | grammar resamples | valid replies |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        resamples = sum(r[mode]["resamples"] for r in rows)
        tokens = sum(r[mode]["tokens"] for r in rows)
        checked = (
            "n/a (free text)"
            if mode == UNCONSTRAINED
            else f"{sum(r[mode]['error'] is None for r in rows)}/{len(rows)}"
        )
        lines.append(
            f"| {mode} | {med(mode, 'tok_s'):.1f} | "
            f"{'1.00' if mode == UNCONSTRAINED else f'{ratio(mode):.2f}'} | "
            f"{med(mode, 'llama_tok_s'):.1f} | {med(mode, 'outside_ms'):.2f} | "
            f"{med(mode, 'tokens'):.0f} | "
            f"{'-' if mode == UNCONSTRAINED else f'{resamples} of {tokens} tokens'} | {checked} |"
        )
    after, before = ratio(AFTER), ratio(BEFORE)
    errors = [r[m]["error"] for r in rows for m in MODES[1:] if r[m]["error"]]
    lines += [
        "",
        f"Grammar-checked / unconstrained: **{after:.2f}** (goal >= {GOAL:.2f}: "
        f"{'met' if after >= GOAL else 'MISSED'}); stock grammar / unconstrained: "
        f"**{before:.2f}**; grammar-checked with the 152k-token draw / unconstrained: "
        f"{ratio(WHOLE):.2f}; grammar-checked / stock: {after / before:.2f}x. Invalid constrained "
        f"replies: {len(errors)}{': ' + '; '.join(errors[:3]) if errors else ''}.",
        "",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--show", action="store_true", help="print every reply")
    parser.add_argument(
        "--threads", type=int, default=None, help="model threads (default: every core)"
    )
    parser.add_argument("--write", action="store_true", help="write the results to BENCHMARKS.md")
    args = parser.parse_args(argv)
    llm = LlamaClient(model_path("chat"), n_ctx=N_CTX, n_threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        windows, schema = agent_prompts(llm, Path(tmp))
    llm.complete(windows[0], schema, 8)  # warm-up: the grammar compiled, the weights paged in
    rows = []
    for run in range(args.runs):
        messages = windows[run % len(windows)]
        order = MODES[run % len(MODES) :] + MODES[: run % len(MODES)]
        row = {mode: generate(llm, mode, messages, schema, args.max_tokens) for mode in order}
        rows.append(row)
        print(
            f"run {run + 1}/{args.runs}: "
            + ", ".join(f"{m} {row[m]['tok_s']:.1f} tok/s ({row[m]['tokens']})" for m in MODES),
            file=sys.stderr,
        )
        if args.show:
            for mode in MODES:
                print(
                    f"  {mode}: {row[mode]['text']!r} {row[mode]['error'] or ''}", file=sys.stderr
                )
    llm._llama.grammar_check_first = llm._llama.top_candidates_first = True
    section = report(rows, args, args.threads or available_cpus())
    print(section)
    if args.write:
        write_section(section, BEGIN, END)
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
