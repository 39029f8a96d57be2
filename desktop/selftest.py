"""`memex --selftest`: prove that this copy of Memex works here, with no display needed.

It opens a memory file (a fresh one in a temp folder unless --db names one), loads sqlite-vec and
both models the app would use, runs one real agent step, inserts an archival passage and finds
it again by meaning, and checks that Qt's headless platform plugin loads. It prints one line:
PASS or FAIL, with the time of each stage. Meant for the built app (build.spec): a missing
library or a damaged model file shows up here, with the stage it broke in.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from desktop.settings import Settings

if TYPE_CHECKING:
    from engine.store.db import Store

T = TypeVar("T")
logger = logging.getLogger(__name__)
SELFTEST_AGENT = re.compile(r"selftest-[0-9a-f]{8}")

GREETING = "Hello! My name is Ada and I live in Lisbon. Please remember that."
PASSAGE = "Selftest note: Ada's favourite tea is a smoky lapsang souchong from Fujian."
QUESTION = "Which tea does Ada like to drink?"


class SelftestFailure(Exception):
    """A check that ran but did not give what it should."""


@dataclasses.dataclass
class Stages:
    """The time each stage took, in the order they ran."""

    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    current: str = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.current = name
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start

    def summary(self) -> str:
        return ", ".join(f"{name} {s:.2f}s" for name, s in self.seconds.items())


def run_selftest(settings: Settings, db_path: str | None = None, out: TextIO | None = None) -> int:
    """Run every stage; print one PASS/FAIL line to `out` (stdout); 0 on PASS, 1 on FAIL."""
    out = out or sys.stdout
    stages = Stages()
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            _run_stages(stages, settings, db_path, stack)
    except Exception as exc:  # any failure is the answer, said in one line
        total = time.perf_counter() - start
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(
            f"memex selftest: FAIL at {stages.current} after {total:.1f}s: {reason} "
            f"({stages.summary() or 'no stage finished'})",
            file=out,
            flush=True,
        )
        return 1
    total = time.perf_counter() - start
    print(f"memex selftest: PASS in {total:.1f}s ({stages.summary()})", file=out, flush=True)
    return 0


def _run_stages(stages: Stages, settings: Settings, db_path: str | None, stack: ExitStack) -> None:
    from desktop.session import embedder_for, llama_client
    from engine.agent import MemGPTAgent
    from engine.agents import delete_agent, list_agents
    from engine.store.db import open_store

    if db_path is None:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="memex-selftest-"))
        db_path = str(Path(folder) / "selftest.db")
    with stages.stage("embedding model"):
        embedder = _closing(stack, embedder_for(settings))
    with stages.stage("chat model"):
        llm = _closing(stack, llama_client(settings))
    with stages.stage("memory file + sqlite-vec"):
        store = _closing(stack, open_store(db_path, embedder=embedder))
        _check(bool(store.query_one("SELECT vec_version()")), "sqlite-vec did not answer")
    with stages.stage("agent"):
        # On a real file (--db) the selftest's agent is deleted afterwards, and one left by a
        # selftest that was killed is deleted first.
        for left in list_agents(store):
            if SELFTEST_AGENT.fullmatch(left.name):
                delete_agent(store, left.name)
        name = f"selftest-{uuid.uuid4().hex[:8]}"
        agent = MemGPTAgent(archival_store=store, llm_client=llm, name=name)
        stack.callback(_delete_quietly, store, name)
    with stages.stage("agent step"):
        response = agent.step(GREETING)
        _check(bool(response.message and response.message.strip()), "the step gave no reply")
        usage = response.context_usage
        _check(
            0 < usage.prompt_tokens <= usage.prompt_budget,
            f"prompt of {usage.prompt_tokens} tokens outside the budget {usage.prompt_budget}",
        )
    with stages.stage("archival insert + search"):
        agent.tools.archival_memory_insert(PASSAGE)
        found = agent.tools.archival_memory_search(QUESTION, 3)
        _check("lapsang souchong" in found, f"the passage was not found: {found[:200]!r}")
    with stages.stage("qt offscreen"):
        _check_qt()


def _delete_quietly(store: Store, name: str) -> None:
    """Clean-up after a failure must not hide the failure."""
    from engine.agents import delete_agent

    try:
        delete_agent(store, name)
    except Exception:  # noqa: BLE001
        logger.warning("selftest: could not delete agent %s", name, exc_info=True)


def _closing(stack: ExitStack, thing: T) -> T:
    close: Callable[[], object] | None = getattr(thing, "close", None)
    if close is not None:
        stack.callback(close)
    return thing


def _check(ok: bool, failure: str) -> None:
    if not ok:
        raise SelftestFailure(failure)


def _check_qt() -> None:
    """Qt travels with the built app: load Widgets (what the window is made of) and the
    headless platform plugin, to prove both are there."""
    from desktop.app import _use_utf8_locale

    _use_utf8_locale()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["memex", "-platform", "offscreen"])
    _check(app.platformName() == "offscreen", f"Qt loaded platform {app.platformName()!r}")
