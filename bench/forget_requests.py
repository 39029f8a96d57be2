"""Requests to forget, put to the real model: is the user shown the right thing to forget, and
does the assistant ever say it forgot what memory still keeps?

    python -m bench.forget_requests [--model chat] [--assists all]

Each case is a fresh memory file with four core lines about the user (a sister, a job, a city,
a pet) and one request, in many wordings: the plain ones the engine answers itself
(engine.memory.forget.asks_to_forget) and others the model must handle. Nothing is forgotten
here: forgetting is the user's choice (MemGPTAgent.forget). Per case:

- shown: the line asked about is among what memory_forget put before the user;
- wrong first: what is shown first (ticked in the app) is not the line asked about;
- false claim: memory still keeps the line, and the reply says it forgot (says_forgotten);
- core edited: the model changed core memory itself (the failure this issue began with).

Also three messages that tell something with the word "forget" in them: nothing may be
shown, and their facts may be saved.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.memory_qa import PERSONA, load_llm, parse_assists
from engine import MemGPTAgent
from engine.memory.forget import says_forgotten
from engine.store.db import open_store
from engine.store.embed import Embedder
from models.fetch import model_path

LINES = {
    "sister": "Has a sister, Anika.",
    "job": "Works as a nurse at Mercy Hospital.",
    "city": "Lives in Tampere.",
    "pet": "Has a dog called Pickle.",
}
REQUESTS = [
    ("Please forget that I have a sister.", "sister"),
    ("Forget where I work.", "job"),
    ("Can you forget about my dog?", "pet"),
    ("Stop remembering that I live in Tampere.", "city"),
    ("Erase my job from your memory.", "job"),
    ("Could you wipe my sister from your notes?", "sister"),
    ("I'd rather you didn't keep anything about my sister.", "sister"),
    ("Please don't keep the name of my dog.", "pet"),
    ("Could you maybe forget which city I live in?", "city"),
    ("You don't need to store where I work any more.", "job"),
]
TELLING = [
    "Before I forget: my sister's birthday is on 12 May.",
    "Don't forget that I'm allergic to peanuts.",
    "I forgot my keys at Mercy Hospital today.",
]


@dataclass
class Outcome:
    text: str
    shown: bool
    wrong_first: bool
    false_claim: bool
    core_edited: bool
    seconds: float
    reply: str


def run_case(llm, embedder, assists, text: str, about: str | None) -> Outcome:  # noqa: ANN001
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "memex.db", embedder=embedder)
        try:
            agent = MemGPTAgent(PERSONA, store, llm, name="memex", assists=assists)
            for line in LINES.values():
                agent.memory.append("human", line, actor="user")
            before = agent.core_memory["human"]
            started = time.perf_counter()
            result = agent.step(text)
            seconds = time.perf_counter() - started
            shown = [item.text for item in result.forget_proposal]
            after = agent.core_memory["human"]
            wanted = LINES[about] if about else None
            reply = result.message or ""
            return Outcome(
                text,
                shown=wanted in shown if wanted else bool(shown),
                wrong_first=bool(shown) and shown[0] != wanted,
                false_claim=wanted is not None and wanted in after and says_forgotten(reply),
                core_edited=after != before and not (about is None and after.startswith(before)),
                seconds=seconds,
                reply=reply,
            )
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="chat")
    parser.add_argument("--assists", default="all")
    args = parser.parse_args()
    llm = load_llm(args.model)
    embedder = Embedder(model_path("embed"))
    assists = parse_assists(args.assists)
    requests = [run_case(llm, embedder, assists, t, about) for t, about in REQUESTS]
    telling = [run_case(llm, embedder, assists, t, None) for t in TELLING]
    print("| request | shown | first shown is another line | says it forgot | core edited | s |")
    print("|---|---|---|---|---|---|")
    for o in requests:
        print(
            f"| {o.text} | {'yes' if o.shown else 'no'} | {'yes' if o.wrong_first else ''} | "
            f"{'yes' if o.false_claim else ''} | {'yes' if o.core_edited else ''} | "
            f"{o.seconds:.1f} |"
        )
    n = len(requests)
    print(
        f"\nrequests: shown {sum(o.shown for o in requests)}/{n}, first shown another line "
        f"{sum(o.wrong_first for o in requests)}/{n}, says it forgot {sum(o.false_claim for o in requests)}/{n}, "
        f"core edited by the model {sum(o.core_edited for o in requests)}/{n}"
    )
    print(
        f"telling messages: something shown {sum(o.shown for o in telling)}/{len(telling)}, "
        f"core lines removed or changed {sum(o.core_edited for o in telling)}/{len(telling)}"
    )
    for o in requests + telling:
        print(f"  {o.text!r} -> {o.reply[:120]!r}")


if __name__ == "__main__":
    main()
