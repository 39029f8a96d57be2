"""Answer quality: does the assistant answer from its memory? Real model, real memory file.

    python -m bench.memory_qa seed [--model chat] [--assists all] [--runs 3]
    python -m bench.memory_qa scenarios [--model chat] [--assists all] [--only NAME ...]
    python -m bench.memory_qa locomo PATH [--mode archival|recall] [--sample 150] [--seed 0]
    python -m bench.memory_qa reader PATH [--context gold|retrieved] [--sample 150] [--seed 0]
    python -m bench.memory_qa table [--models chat,fast] [--assists all,none,...]
                                    [--locomo PATH --sample N] [--cells FILE] [--write]

- seed: the README's example. Session 1 in one process, session 2 in a new process on the same
  file; five facts (name, the library it recommended, ship date, who owns auth, employer).
- scenarios: bench/memory_qa_scenarios.json, facts told across sessions, updates, facts only
  archival, recall or the graph holds, dates, and questions about what was never said; also
  "requests helped", the told messages that ask for help (a "?") not answered with a refusal.
- locomo: the LoCoMo dev set (CC BY-NC, read from PATH, never copied here). Each conversation's
  turns go into a memory file as archival passages "[date] Speaker: text" or as recall history;
  each sampled question (categories 1-4, stratified by category, seeded) is asked with
  agent.step() on a fresh copy of that file. Scored with LoCoMo's token F1 (lower case,
  punctuation and a/an/the removed, Porter-stemmed; a multi-hop answer part by part), with the
  share F1 >= 0.5, the share where the agent searched or page-in supplied an evidence turn, and
  the search's evidence recall@5/@10.
- reader: the chat model as a plain reader, no agent: for the same sampled LoCoMo questions, the
  evidence turns themselves (gold) or the search's best 8 passages (retrieved), dated as page-in
  dates them, then LoCoMo's own question prompt ("write an answer in the form of a short
  phrase"). What the model can answer at best when the right turns are in front of it: the
  ceiling the agent's F1 is measured against.
- table: every model x assists configuration above, each in its own process one after the
  other (real-model runs must run alone), side by side. Each measured cell is kept in --cells
  and reused by a later run while the engine and bench are unchanged (run_table).

`--assists` is "all", "none", or "all-NAME[-NAME...]" (all on but those): see engine.types.Assists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nltk.stem import PorterStemmer  # type: ignore[import-untyped]

from bench import corpus
from engine import MemGPTAgent, Persona
from engine.llm.llama import LlamaClient
from engine.memory.page_in import Recalled, latest_note
from engine.memory.recall import RecallMemory
from engine.memory.when import resolve_relative_dates
from engine.reading import Reading, asks
from engine.store.db import Store, open_store
from engine.store.embed import Embedder
from engine.tools.reply_checks import claims_users_facts
from engine.types import Assists, ChatMessage, Role
from models.fetch import model_path

SCENARIOS = Path(__file__).with_name("memory_qa_scenarios.json")
BEGIN, END = "<!-- memory_qa_table:begin -->", "<!-- memory_qa_table:end -->"
N_CTX = 4096
THREADS = 2
AGENT = "memex"
PERSONA = Persona("Memex", "A helpful assistant with a long memory.")
SEARCH_TOOLS = {
    "archival_memory_search",
    "conversation_search",
    "conversation_search_date",
    "graph_search",
}
DONT_KNOW = re.compile(
    r"\b(don'?t|do not|didn'?t|did not|haven'?t|have not|can'?t|cannot|couldn'?t|could not)\s+"
    r"(know|recall|remember|find|see|have|seem to have|tell)\b"
    r"|\bnot (sure|mentioned|told|aware|in my memory)\b|\bno (record|information|mention|idea|"
    r"details?|memory)\b|\bnever (told|mentioned|said)\b|\bunknown\b|\bnot (something )?you'?ve",
    re.IGNORECASE,
)
REFUSAL = re.compile(r"\b(can'?t|cannot|unable to|not able to) (assist|help)\b", re.IGNORECASE)


# -- models and agents ------------------------------------------------------------------------
def parse_assists(text: str) -> Assists:
    if text == "all":
        return Assists()
    if text == "none":
        return Assists.none()
    if text.startswith("all-"):
        return Assists().without(*text[4:].split("-"))
    raise SystemExit(f"--assists: 'all', 'none' or 'all-NAME[-NAME]', not {text!r}")


def load_llm(model: str) -> LlamaClient:
    return LlamaClient(model_path(model), n_ctx=N_CTX, n_threads=THREADS, seed=0)


def agent_on(store: Store, llm: LlamaClient, assists: Assists) -> MemGPTAgent:
    """The bench's agent on `store`: a new session each time it is made."""
    return MemGPTAgent(PERSONA, store, llm, name=AGENT, assists=assists)


@dataclass
class Asked:
    """One question asked and what came of it."""

    question: str
    reply: str
    facts: int
    recalled: int
    searched: bool
    paged_in: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def ask(agent: MemGPTAgent, question: str) -> tuple[str, bool, bool, float, str]:
    """Reply, whether the agent searched, whether a page-in note came, seconds, the note."""
    started = time.perf_counter()
    result = agent.step(question)
    seconds = time.perf_counter() - started
    searched = any(c.name in SEARCH_TOOLS for c in result.tool_calls)
    note = latest_note(agent.recall.in_context())
    return result.message or "", searched, bool(note), seconds, note


# -- scoring ----------------------------------------------------------------------------------
def mentions(reply: str, alternatives: Iterable[str]) -> bool:
    """Whether `reply` holds one of `alternatives` (case aside, at word boundaries)."""
    for alternative in alternatives:
        pattern = rf"(?<!\w){re.escape(alternative)}(?!\w)"
        if re.search(pattern, reply, re.IGNORECASE):
            return True
    return False


def says_dont_know(reply: str) -> bool:
    return bool(DONT_KNOW.search(reply))


def refuses(reply: str) -> bool:
    """Whether `reply` declines: says it does not know, or that it cannot help. A reply to a
    request for help ("How do I descale a kettle?") that memory has nothing on should help."""
    return says_dont_know(reply) or bool(REFUSAL.search(reply)) or not reply.strip()


_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_STEMMER = PorterStemmer()
MULTI_HOP = 1  # LoCoMo's category 1: an answer of several parts, scored part by part


def normalize_answer(text: str) -> str:
    """LoCoMo's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = str(text).lower().replace(",", "")
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    """LoCoMo's token F1 of a reply against the gold answer, on Porter-stemmed words (as its
    task_eval/evaluation.py scores them)."""
    predicted = [_STEMMER.stem(w) for w in normalize_answer(prediction).split()]
    wanted = [_STEMMER.stem(w) for w in normalize_answer(gold).split()]
    common = Counter(predicted) & Counter(wanted)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def locomo_f1(prediction: str, gold: str, category: int) -> float:
    """LoCoMo's score of one answer: a multi-hop gold answer's comma-separated parts each take
    the best F1 of the reply's comma-separated parts, averaged; other categories, token_f1."""
    if category != MULTI_HOP:
        return token_f1(prediction, gold)
    parts = [p.strip() for p in prediction.split(",")]
    wanted = [g.strip() for g in gold.split(",")]
    return sum(max(token_f1(p, g) for p in parts) for g in wanted) / len(wanted)


# -- the seed scenario ------------------------------------------------------------------------
SEED_SESSIONS = [
    [
        "Hi! I'm Alice, I'm a Python developer.",
        "I'm starting a new REST API for our inventory service. Which Python library would you "
        "recommend for it?",
        "Great, I'll go with that. Also, I prefer dark mode and I work at Acme Corp.",
        "Notes from today's meeting: we ship the inventory API on March 3, Bob owns auth, and "
        "we store everything in PostgreSQL.",
    ],
    [
        "What's my name again?",
        "What library did you recommend back in our first chat about APIs?",
        "When do we ship the inventory API, and who owns auth?",
        "Where do I work?",
    ],
]
LIBRARIES = (
    "FastAPI",
    "Flask",
    "Django REST framework",
    "Django",
    "Falcon",
    "Starlette",
    "Sanic",
    "aiohttp",
    "Tornado",
    "Pyramid",
    "Bottle",
    "Connexion",
    "Litestar",
    "Quart",
    "Flask-RESTful",
    "Hug",
    "Eve",
)


def seed_session(db: Path, session: int, model: str, assists: Assists) -> list[dict[str, Any]]:
    """One session of the seed scenario in this process: its replies."""
    llm = load_llm(model)
    store = open_store(db)
    try:
        agent = agent_on(store, llm, assists)
        out = []
        for text in SEED_SESSIONS[session - 1]:
            reply, searched, paged_in, seconds, _ = ask(agent, text)
            out.append({"ask": text, "reply": reply, "searched": searched, "seconds": seconds})
        out.append({"core": agent.core_memory})
        return out
    finally:
        store.close()
        llm.close()


def run_seed(model: str, assists_name: str, runs: int) -> dict[str, Any]:
    """The seed scenario `runs` times, each session in a new process; facts recalled each run."""
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="memex-seed-") as tmp:
            db = Path(tmp) / "memex.db"
            first = _subprocess_session(db, 1, model, assists_name)
            second = _subprocess_session(db, 2, model, assists_name)
        results.append(score_seed(first, second))
    return {"runs": results, "recalled": [r["recalled"] for r in results], "facts": 5}


def _subprocess_session(db: Path, session: int, model: str, assists: str) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "bench.memory_qa", "_seed-session", str(db), str(session)]
    command += ["--model", model, "--assists", assists]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"seed session {session} failed:\n{done.stderr[-3000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def score_seed(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> dict[str, Any]:
    recommended = [lib for lib in LIBRARIES if mentions(first[1]["reply"], [lib])]
    name, library, ship, work = (turn["reply"] for turn in second[:4])
    human = "Works at Acme Corp"
    facts = {
        "name Alice": mentions(name, ["Alice"]),
        f"library {'/'.join(recommended) or '(none named in session 1)'}": bool(recommended)
        and mentions(library, recommended),
        "ships March 3": mentions(ship, ["March 3", "3 March", "March 3rd", "3rd of March"]),
        "Bob owns auth": mentions(ship, ["Bob"]),
        # the user's employer, in the user's voice: "I work at Acme" is the fact misplaced
        "works at Acme": mentions(work, ["Acme"]) and claims_users_facts(work, human) is None,
    }
    return {
        "recalled": sum(facts.values()),
        "facts": facts,
        "session_1": first,
        "session_2": second,
    }


# -- the scenarios file -----------------------------------------------------------------------
def _date(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def preload(agent: MemGPTAgent, data: dict[str, Any]) -> None:
    """Memory from long ago, put in directly: history out of view, dated passages, facts."""
    history = [
        agent.recall.add(
            agent.session_id,
            message["role"],
            message["text"],
            agent.llm.count_message_tokens(ChatMessage(message["role"], message["text"])),
            created_at=_date(message["date"]),
            in_context=False,
        )
        for message in data.get("history", [])
    ]
    if history:
        summarised_long_ago(agent, history[0].id, history[-1].id)
    passages = data.get("archival", [])
    if passages:
        agent.archival.insert_many(
            [p["text"] for p in passages],
            source="bench",
            created_at=[_date(p["date"]) for p in passages],
        )
    for fact in data.get("facts", []):
        agent.graph.insert(
            fact["subject"], fact["relation"], fact["object"], fact.get("valid_from")
        )


def summarised_long_ago(agent: MemGPTAgent, first_id: int, last_id: int) -> None:
    """Old history as a page-out leaves it: out of view and summarised. The summary says only
    that it exists, so a fact found is found by search, not read from the summary."""
    agent.summaries.add(
        "Earlier conversations with the user; their messages are in recall memory.",
        first_id,
        last_id,
        "bench",
    )


def run_scenarios(model: str, assists: Assists, only: list[str]) -> dict[str, Any]:
    scenarios = json.loads(SCENARIOS.read_text())["scenarios"]
    if only:
        scenarios = [s for s in scenarios if s["name"] in only]
    llm = load_llm(model)
    embedder = Embedder(model_path("embed"))
    out: list[dict[str, Any]] = []
    try:
        for scenario in scenarios:
            out.append(_run_scenario(scenario, llm, embedder, assists))
            done = out[-1]
            print(
                f"  {scenario['name']}: {done['recalled']}/{done['facts']}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        embedder.close()
        llm.close()
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for scenario, result in zip(scenarios, out, strict=True):
        for kind in scenario["covers"]:
            by_kind[kind][0] += result["recalled"]
            by_kind[kind][1] += result["facts"]
    recalled = sum(r["recalled"] for r in out)
    facts = sum(r["facts"] for r in out)
    return {
        "recalled": recalled,
        "facts": facts,
        "share": recalled / facts if facts else 0.0,
        "by_kind": {k: v for k, v in sorted(by_kind.items())},
        "searched": sum(q["searched"] for r in out for q in r["questions"]),
        "paged_in": sum(q["paged_in"] for r in out for q in r["questions"]),
        "questions": sum(len(r["questions"]) for r in out),
        "helped": sum(bool(t["helped"]) for r in out for t in r["told"]),
        "requests": sum(t["helped"] is not None for r in out for t in r["told"]),
        "seconds": sum(r["seconds"] for r in out),
        "scenarios": out,
    }


def _run_scenario(
    scenario: dict[str, Any], llm: LlamaClient, embedder: Embedder, assists: Assists
) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memex-qa-") as tmp:
        store = open_store(Path(tmp) / "memex.db", embedder=embedder)
        try:
            preload(agent_on(store, llm, assists), scenario.get("preload", {}))
            told = []
            for session in scenario["sessions"]:
                agent = agent_on(store, llm, assists)
                for text in session:
                    reply = ask(agent, text)[0]
                    # a told message that asks is a request for help, not about memory
                    helped = not refuses(reply) if asks(text) else None
                    told.append({"say": text, "reply": reply, "helped": helped})
            agent = agent_on(store, llm, assists)
            asked = []
            for question in scenario["questions"]:
                reply, searched, paged_in, seconds, note = ask(agent, question["ask"])
                if question.get("unknown"):
                    facts, recalled = 1, int(says_dont_know(reply))
                else:
                    facts = len(question["expect"])
                    recalled = sum(mentions(reply, alts) for alts in question["expect"])
                asked.append(
                    Asked(
                        question["ask"], reply, facts, recalled, searched, paged_in, seconds
                    ).__dict__
                )
            core = agent.core_memory
        finally:
            store.close()
    return {
        "name": scenario["name"],
        "facts": sum(q["facts"] for q in asked),
        "recalled": sum(q["recalled"] for q in asked),
        "told": told,
        "questions": asked,
        "core_human": core.get("human", ""),
        "seconds": time.perf_counter() - started,
    }


# -- LoCoMo -----------------------------------------------------------------------------------
def locomo_date(text: str) -> dt.datetime:
    """LoCoMo's "1:56 pm on 8 May, 2023" as a UTC time."""
    return dt.datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Turn:
    dia_id: str
    speaker: str
    text: str
    when: dt.datetime

    @property
    def passage(self) -> str:
        return f"[{self.when.day} {self.when:%B %Y}] {self.speaker}: {self.text}"


def locomo_turns(sample: dict[str, Any]) -> list[Turn]:
    conversation = sample["conversation"]
    sessions = sorted(
        (int(k.split("_")[1]) for k in conversation if re.fullmatch(r"session_\d+", k)),
    )
    turns = []
    for number in sessions:
        when = locomo_date(conversation[f"session_{number}_date_time"])
        for i, turn in enumerate(conversation[f"session_{number}"]):
            text = turn["text"]
            if turn.get("blip_caption"):
                text += f" [shares a photo: {turn['blip_caption']}]"
            # a minute apart, so the turns keep their order by time
            turns.append(
                Turn(turn["dia_id"], turn["speaker"], text, when + dt.timedelta(minutes=i))
            )
    return turns


def sample_questions(data: list[dict[str, Any]], size: int, seed: int) -> list[tuple[int, dict]]:
    """A fixed, seeded sample of `size` questions of categories 1-4, stratified by category
    (in proportion to the set) and spread over all conversations."""
    pool: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for index, sample in enumerate(data):
        for qa in sample["qa"]:
            if qa.get("category") in (1, 2, 3, 4) and "answer" in qa:
                pool[qa["category"]].append((index, qa))
    total = sum(len(v) for v in pool.values())
    rng = random.Random(seed)
    chosen: list[tuple[int, dict]] = []
    for category in sorted(pool):
        items = pool[category]
        want = min(len(items), round(size * len(items) / total)) if size < total else len(items)
        by_conversation: dict[int, list[tuple[int, dict]]] = defaultdict(list)
        for item in items:
            by_conversation[item[0]].append(item)
        for group in by_conversation.values():
            rng.shuffle(group)
        # round-robin over the conversations, so each gets its share
        order = sorted(by_conversation)
        picked: list[tuple[int, dict]] = []
        while len(picked) < want:
            for conversation in order:
                if by_conversation[conversation] and len(picked) < want:
                    picked.append(by_conversation[conversation].pop())
        chosen += picked
    return chosen


def turns_into_recall(
    recall: RecallMemory,
    session_id: int,
    turns: list[Turn],
    user: str,
    tokens: Callable[[Role, str], int],
) -> dict[int, str]:
    """A conversation's turns as past messages out of view, each dated, "Speaker: text": the
    `user` speaker's as the user's, the other's as the assistant's; message id -> dia_id."""
    ids: dict[int, str] = {}
    for turn in turns:
        role: Role = "user" if turn.speaker == user else "assistant"
        text = f"{turn.speaker}: {turn.text}"
        message = recall.add(
            session_id, role, text, tokens(role, text), created_at=turn.when, in_context=False
        )
        ids[message.id] = turn.dia_id
    return ids


def build_locomo_file(
    path: Path,
    turns: list[Turn],
    mode: str,
    speakers: tuple[str, str],
    embedder: Embedder,
    llm: LlamaClient,
) -> dict[int, str]:
    """A memory file holding one conversation's turns; returns row id -> dia_id."""
    store = open_store(path, embedder=embedder)
    ids: dict[int, str] = {}
    try:
        agent = agent_on(store, llm, Assists.none())
        if mode == "archival":
            rows = agent.archival.insert_many(
                [t.passage for t in turns], source="locomo", created_at=[t.when for t in turns]
            )
            ids = dict(zip(rows, (t.dia_id for t in turns), strict=True))
        else:

            def tokens(role: Role, text: str) -> int:
                return llm.count_message_tokens(ChatMessage(role, text))

            ids = turns_into_recall(agent.recall, agent.session_id, turns, speakers[0], tokens)
            if ids:
                summarised_long_ago(agent, min(ids), max(ids))
    finally:
        store.close()
    return ids


def built_locomo_file(
    tmp: Path,
    index: int,
    turns: list[Turn],
    mode: str,
    speakers: tuple[str, str],
    embedder: Embedder,
    llm: LlamaClient,
) -> tuple[Path, dict[int, str]]:
    """build_locomo_file, kept in the benchmark cache (bench/corpus.py) by conversation, mode
    and embedder: building one embeds its ~600 turns (over a minute here), which runs of a
    few questions would otherwise spend most of their time on."""
    key = f"locomo-{index}-{mode}-{len(turns)}-{embedder.path.stem}"
    cached = corpus.cache_dir() / f"{key}.db"
    ids_file = cached.with_suffix(".ids.json")
    if not ids_file.exists():
        for stale in cached.parent.glob(cached.name + "*"):
            stale.unlink()
        ids = build_locomo_file(cached, turns, mode, speakers, embedder, llm)
        ids_file.write_text(json.dumps(ids))
    template = tmp / f"conversation-{index}.db"
    shutil.copyfile(cached, template)
    return template, {int(k): v for k, v in json.loads(ids_file.read_text()).items()}


def locomo_setup(
    path: Path, size: int, seed: int, model: str
) -> tuple[list[dict[str, Any]], list[tuple[int, dict]], LlamaClient, Embedder]:
    """The dev set at `path`, its seeded sample of `size` questions, the chat model, the
    embedder."""
    data = json.loads(path.read_text())
    chosen = sample_questions(data, size, seed)
    return data, chosen, load_llm(model), Embedder(model_path("embed"))


def run_locomo(
    path: Path, mode: str, size: int, seed: int, model: str, assists: Assists
) -> dict[str, Any]:
    data, chosen, llm, embedder = locomo_setup(path, size, seed, model)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="memex-locomo-") as tmp:
            for index in sorted({i for i, _ in chosen}):
                sample = data[index]
                turns = locomo_turns(sample)
                by_dia = {t.dia_id: t for t in turns}
                speakers = (
                    sample["conversation"]["speaker_a"],
                    sample["conversation"]["speaker_b"],
                )
                template, ids = built_locomo_file(
                    Path(tmp), index, turns, mode, speakers, embedder, llm
                )
                for _, qa in (c for c in chosen if c[0] == index):
                    rows.append(
                        _ask_locomo(
                            template, Path(tmp), qa, mode, ids, by_dia, embedder, llm, assists
                        )
                    )
                    print(
                        f"  [{len(rows)}/{len(chosen)}] cat {qa['category']} "
                        f"F1 {rows[-1]['f1']:.2f} {rows[-1]['seconds']:.1f}s",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        embedder.close()
        llm.close()
    return {"mode": mode, "sample": len(rows), "seed": seed, **summarise_locomo(rows), "rows": rows}


def _ask_locomo(
    template: Path,
    tmp: Path,
    qa: dict[str, Any],
    mode: str,
    ids: dict[int, str],
    by_dia: dict[str, Turn],
    embedder: Embedder,
    llm: LlamaClient,
    assists: Assists,
) -> dict[str, Any]:
    copy = tmp / "question.db"
    for suffix in ("-wal", "-shm"):
        Path(str(copy) + suffix).unlink(missing_ok=True)
    shutil.copyfile(template, copy)
    store = open_store(copy, embedder=embedder)
    try:
        agent = agent_on(store, llm, assists)
        tier = agent.archival if mode == "archival" else agent.recall
        ranked = [ids.get(i) for i in tier.ranked(qa["question"])[:10]]
        evidence = set(qa.get("evidence", []))
        # what page-in finds for the question, as the engine's step finds it: the reading
        # (engine.reading) reads all of it, where the note may have room for fewer
        read = "\n".join(h.render() for h in agent.page_in.find(qa["question"], in_view=True))
        reply, searched, paged_in, seconds, note = ask(agent, qa["question"])
    finally:
        store.close()
    gold = gold_answer(qa)
    # as page-in shows a turn: a relative date in it followed by the day it meant
    shown = [
        resolve_relative_dates(by_dia[e].text, by_dia[e].when)[:60] for e in evidence if e in by_dia
    ]
    return {
        "category": qa["category"],
        "question": qa["question"],
        "answer": gold,
        "reply": reply,
        "reading": reading_of(note),
        # the engine's own answer (Assists.direct_answer): the reading sent as the reply
        "direct": bool(reading_of(note)) and reply == Reading(reading_of(note)).reply,
        "f1": locomo_f1(reply, gold, qa["category"]),
        "reading_f1": locomo_f1(reading_of(note), gold, qa["category"]),
        "searched": searched,
        "paged_in_evidence": any(" ".join(s.split()) in note for s in shown),
        "read_evidence": any(" ".join(s.split()) in read for s in shown),
        "r5": bool(evidence & set(ranked[:5])),
        "r10": bool(evidence & set(ranked[:10])),
        "seconds": seconds,
    }


def gold_answer(qa: dict[str, Any]) -> str:
    """The answer a reply is scored against: an open-domain answer's first alternative."""
    gold = str(qa["answer"])
    return gold.split(";")[0] if qa["category"] == 3 else gold


def reading_of(note: str) -> str:
    """The answer a page-in note gives from its reading (engine.reading), or ""."""
    found = re.search(r"the answer to the user's question is: (.*)\. Reply with", note)
    return found.group(1) if found else ""


def summarise_locomo(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(group: list[dict[str, Any]]) -> dict[str, float]:
        n = len(group) or 1
        return {
            "n": len(group),
            "f1": sum(r["f1"] for r in group) / n,
            "f1_ge_05": sum(r["f1"] >= 0.5 for r in group) / n,
            # the reading's answer (engine.reading) scored as if it were the reply
            "reading_f1": sum(r.get("reading_f1", 0.0) for r in group) / n,
            "direct": sum(r.get("direct", False) for r in group) / n,
            "searched": sum(r["searched"] for r in group) / n,
            "evidence_in_view": sum(r["searched"] or r["paged_in_evidence"] for r in group) / n,
            "paged_in_evidence": sum(r["paged_in_evidence"] for r in group) / n,
            # the evidence among what page-in found and its reading read
            "read_evidence": sum(r.get("read_evidence", False) for r in group) / n,
            "r5": sum(r["r5"] for r in group) / n,
            "r10": sum(r["r10"] for r in group) / n,
            "seconds": sum(r["seconds"] for r in group) / n,
        }

    categories = sorted({r["category"] for r in rows})
    return {
        "all": stats(rows),
        "by_category": {c: stats([r for r in rows if r["category"] == c]) for c in categories},
    }


# -- the reader ceiling ----------------------------------------------------------------------
READER_HITS = 8
# LoCoMo's own question prompt (task_eval/gpt_utils.py), the temporal line included
QA_PROMPT = (
    "Based on the above context, write an answer in the form of a short phrase for the "
    "following question. Answer with exact words from the context whenever possible."
)
TEMPORAL_HINT = " Use the dates of the conversations to answer with an approximate date."


def reader_prompt(records: list[Recalled], question: str, category: int) -> list[ChatMessage]:
    context = "\n".join(r.render() for r in records)
    hint = TEMPORAL_HINT if category == 2 else ""
    text = f"{context}\n\n{QA_PROMPT}{hint}\n\nQuestion: {question} Short answer:"
    return [
        ChatMessage("system", "You are a helpful assistant."),
        ChatMessage("user", text),
    ]


def run_reader(path: Path, context: str, size: int, seed: int, model: str) -> dict[str, Any]:
    data, chosen, llm, embedder = locomo_setup(path, size, seed, model)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="memex-reader-") as tmp:
            for index in sorted({i for i, _ in chosen}):
                turns = locomo_turns(data[index])
                by_dia = {t.dia_id: t for t in turns}
                store = None
                if context == "retrieved":
                    db, _ = built_locomo_file(
                        Path(tmp), index, turns, "archival", ("", ""), embedder, llm
                    )
                    store = open_store(db, embedder=embedder)
                try:
                    for _, qa in (c for c in chosen if c[0] == index):
                        rows.append(_read_one(qa, by_dia, store, llm))
                        print(
                            f"  [{len(rows)}/{len(chosen)}] cat {qa['category']} "
                            f"F1 {rows[-1]['f1']:.2f} {rows[-1]['seconds']:.1f}s "
                            f"{rows[-1]['reply'][:60]!r} / {rows[-1]['answer'][:40]!r}",
                            file=sys.stderr,
                            flush=True,
                        )
                finally:
                    if store is not None:
                        store.close()
    finally:
        embedder.close()
        llm.close()
    return {
        "context": context,
        "sample": len(rows),
        "seed": seed,
        **summarise_locomo(rows),
        "rows": rows,
    }


def _read_one(
    qa: dict[str, Any], by_dia: dict[str, Turn], store: Store | None, llm: LlamaClient
) -> dict[str, Any]:
    evidence = [e for e in qa.get("evidence", []) if e in by_dia]
    if store is None:
        turns = sorted((by_dia[e] for e in evidence), key=lambda t: t.when)
        records = [Recalled("archival", t.when, f"{t.speaker}: {t.text}") for t in turns]
    else:
        agent = agent_on(store, llm, Assists.none())
        ranked = agent.archival.ranked(qa["question"])
        _, passages = agent.archival.page_of(ranked, READER_HITS, 0)
        # the passage's own "[date] " prefix is dropped: Recalled dates it the same way
        records = [Recalled("archival", p.created_at, p.text.partition("] ")[2]) for p in passages]
    started = time.perf_counter()
    reply = llm.complete(reader_prompt(records, qa["question"], qa["category"]), None, 32).text
    seconds = time.perf_counter() - started
    gold = gold_answer(qa)
    reply = reply.strip()
    return {
        "category": qa["category"],
        "question": qa["question"],
        "answer": gold,
        "reply": reply,
        "f1": locomo_f1(reply, gold, qa["category"]),
        "searched": False,
        "paged_in_evidence": bool(evidence) and store is None,
        "r5": False,
        "r10": False,
        "seconds": seconds,
    }


# -- the side-by-side table -------------------------------------------------------------------
def measured_version() -> str:
    """What a table cell was measured on: the git trees of the engine, the models' manifest and
    this bench, with "+dirty" where any of them has uncommitted changes (never reused)."""
    paths = ["engine", "models", "bench/memory_qa.py", "bench/memory_qa_scenarios.json"]
    root = Path(__file__).resolve().parent.parent
    trees = subprocess.run(
        ["git", "rev-parse", *(f"HEAD:{p}" for p in paths)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if trees.returncode != 0:
        return "unknown+dirty"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", *paths],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    version = "-".join(line[:8] for line in trees.stdout.split())
    return version + ("+dirty" if dirty else "")


def cell_command(args: argparse.Namespace, model: str, assists: str, what: str) -> list[str]:
    command = [sys.executable, "-m", "bench.memory_qa", what, "--model", model]
    command += ["--assists", assists, "--json"]
    if what == "seed":
        command += ["--runs", str(args.runs)]
    if what == "locomo":
        command += [str(args.locomo), "--sample", str(args.sample), "--mode", args.mode]
    return command


def cell_key(args: argparse.Namespace, model: str, assists: str, what: str) -> str:
    """A cell is one part for one configuration, with the settings that change its figures."""
    settings = {"seed": f"runs={args.runs}", "scenarios": ""}.get(
        what, f"sample={args.sample} mode={args.mode}"
    )
    return f"{model} {assists} {what} {settings}".strip()


def load_cells(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SystemExit(
            f"--cells {path}: cannot read it ({e}); move it away to start afresh"
        ) from None


def run_table(args: argparse.Namespace) -> None:
    """Each cell in its own process, one after the other. A cell is saved to --cells as soon as
    it is measured, and a later run reuses it if the engine and bench are unchanged, so a table
    of hours can be measured over several sittings and survives a stop halfway."""
    version = measured_version()
    cells = load_cells(args.cells)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for model in args.models.split(","):
        for assists in args.assists.split(","):
            entry: dict[str, Any] = {}
            for what in args.parts.split(","):
                key = cell_key(args, model, assists, what)
                kept = cells.get(key)
                if kept and kept["version"] == version and not version.endswith("+dirty"):
                    print(f"== {key}: kept from {kept['date']}", file=sys.stderr, flush=True)
                    entry[what] = kept["result"]
                    continue
                print(f"== {key}", file=sys.stderr, flush=True)
                command = cell_command(args, model, assists, what)
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{command} failed:\n{done.stderr[-3000:]}")
                entry[what] = json.loads(done.stdout.strip().splitlines()[-1])
                entry[what]["wall_s"] = time.perf_counter() - started
                cells[key] = {
                    "version": version,
                    "date": dt.datetime.now().isoformat(timespec="minutes"),
                    "result": entry[what],
                }
                args.cells.write_text(json.dumps(cells, indent=1))
            results[(model, assists)] = entry
    section = render_table(args, results, version)
    print(section)
    print(f"(every reply: {args.cells})", file=sys.stderr)
    if args.write:
        from bench.report import write_section

        write_section(section, BEGIN, END)


def render_table(
    args: argparse.Namespace, results: dict[tuple[str, str], dict[str, Any]], version: str
) -> str:
    lines = [
        BEGIN,
        "### Every model x option (`python -m bench.memory_qa table`)",
        "",
        f"`python -m bench.memory_qa table --models {args.models} --assists {args.assists} "
        f"--parts {args.parts}"
        + (
            f" --locomo ../shared/eval/locomo-dev.json --sample {args.sample} --mode {args.mode}"
            if "locomo" in args.parts
            else ""
        )
        + f" --write`, {dt.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{THREADS} model threads, n_ctx {N_CTX}, engine and bench trees {version}. One run, "
        "one configuration at a time, each alone on the machine.",
        "",
    ]
    header = "| model | assists |"
    rule = "|---|---|"
    if "seed" in args.parts:
        header += " seed (facts of 5, per run) |"
        rule += "---|"
    if "scenarios" in args.parts:
        header += " scenarios (facts) | requests helped | searched / paged in | s |"
        rule += "---|---|---|---|"
    if "locomo" in args.parts:
        header += " LoCoMo F1 | F1>=0.5 | searched or evidence paged in | R@5 | R@10 | s/question |"
        rule += "---|---|---|---|---|---|"
    lines += [header, rule]
    for (model, assists), entry in results.items():
        row = f"| {model} | {assists} |"
        if "seed" in entry:
            row += f" {', '.join(str(r) for r in entry['seed']['recalled'])} |"
        if "scenarios" in entry:
            s = entry["scenarios"]
            row += (
                f" {s['recalled']}/{s['facts']} ({100 * s['share']:.0f}%) | "
                f"{s['helped']}/{s['requests']} | "
                f"{s['searched']}/{s['questions']} / {s['paged_in']}/{s['questions']} | "
                f"{s['seconds']:.0f} |"
            )
        if "locomo" in entry:
            a = entry["locomo"]["all"]
            row += (
                f" {a['f1']:.3f} | {a['f1_ge_05']:.2f} | {a['evidence_in_view']:.2f} | "
                f"{a['r5']:.2f} | {a['r10']:.2f} | {a['seconds']:.1f} |"
            )
        lines.append(row)
    if "locomo" in args.parts:
        lines += ["", "LoCoMo by category (F1 / searched or paged in / R@10):", ""]
        lines += ["| model | assists | " + " | ".join(f"cat {c}" for c in (1, 2, 3, 4)) + " |"]
        lines += ["|---|---|---|---|---|---|"]
        for (model, assists), entry in results.items():
            if "locomo" not in entry:
                continue
            cells = []
            for c in ("1", "2", "3", "4"):
                cat = entry["locomo"]["by_category"].get(c) or entry["locomo"]["by_category"].get(
                    int(c)
                )
                cells.append(
                    f"{cat['f1']:.2f} / {cat['evidence_in_view']:.2f} / {cat['r10']:.2f} (n {cat['n']})"
                    if cat
                    else "-"
                )
            lines.append(f"| {model} | {assists} | " + " | ".join(cells) + " |")
    if "scenarios" in args.parts:
        lines += ["", "Scenarios by kind (facts recalled / asked):", ""]
        kinds = sorted(
            {k for e in results.values() if "scenarios" in e for k in e["scenarios"]["by_kind"]}
        )
        lines += ["| model | assists | " + " | ".join(kinds) + " |"]
        lines += ["|---|---|" + "---|" * len(kinds)]
        for (model, assists), entry in results.items():
            if "scenarios" in entry:
                by = entry["scenarios"]["by_kind"]
                cells = [f"{by[k][0]}/{by[k][1]}" if k in by else "-" for k in kinds]
                lines.append(f"| {model} | {assists} | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model", default="chat", help='"chat" (the default, 1.5B), "fast" (0.5B), "small"'
        )
        p.add_argument("--assists", default="all")
        p.add_argument("--json", action="store_true", help="print one JSON line (for table)")

    seed = sub.add_parser("seed")
    common(seed)
    seed.add_argument("--runs", type=int, default=3)
    session = sub.add_parser("_seed-session")
    session.add_argument("db", type=Path)
    session.add_argument("session", type=int)
    common(session)
    scenarios = sub.add_parser("scenarios")
    common(scenarios)
    scenarios.add_argument("--only", nargs="*", default=[])

    def dev_set(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("path", type=Path)
        p.add_argument("--sample", type=int, default=150)
        p.add_argument("--seed", type=int, default=0)

    locomo = sub.add_parser("locomo")
    dev_set(locomo)
    locomo.add_argument("--mode", choices=("archival", "recall"), default="archival")
    reader = sub.add_parser("reader")
    dev_set(reader)
    reader.add_argument("--context", choices=("gold", "retrieved"), default="gold")
    table = sub.add_parser("table")
    table.add_argument("--models", default="chat,fast")
    table.add_argument("--assists", default="all,none")
    table.add_argument("--parts", default="seed,scenarios")
    table.add_argument("--runs", type=int, default=3)
    table.add_argument("--locomo", type=Path)
    table.add_argument("--sample", type=int, default=150)
    table.add_argument("--mode", choices=("archival", "recall"), default="archival")
    table.add_argument("--write", action="store_true")
    table.add_argument(
        "--cells",
        type=Path,
        default=Path(tempfile.gettempdir()) / "memex-memory-qa-cells.json",
        help="where measured cells are kept and reused from (every reply is in them)",
    )
    args = parser.parse_args(argv)

    if args.what == "table":
        if "locomo" in args.parts and args.locomo is None:
            parser.error("--parts locomo needs --locomo PATH")
        run_table(args)
        return
    if args.what == "_seed-session":
        print(
            json.dumps(seed_session(args.db, args.session, args.model, parse_assists(args.assists)))
        )
        return
    assists = parse_assists(args.assists)
    if args.what == "seed":
        parse_assists(args.assists)  # a bad name fails here, not in the child
        result = run_seed(args.model, args.assists, args.runs)
    elif args.what == "scenarios":
        result = run_scenarios(args.model, assists, args.only)
    elif args.what == "reader":
        result = run_reader(args.path, args.context, args.sample, args.seed, args.model)
    else:
        result = run_locomo(args.path, args.mode, args.sample, args.seed, args.model, assists)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
