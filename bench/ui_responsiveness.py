"""UI responsiveness: how long the window's event loop goes without a tick while the real model
answers, with the engine on its worker thread (the app) against the same step run on the UI
thread (what the worker exists to avoid).

    python -m bench.ui_responsiveness [--steps 4] [--write]

A 5 ms QTimer on the UI thread records when the event loop runs. The app's steps go through
MainWindow (desktop.worker); the baseline calls the same EngineSession.step on the UI thread.
Offscreen Qt, the default chat model at n_ctx 4096, a temporary memory file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MEMEX_CONFIG_DIR", tempfile.mkdtemp(prefix="memex-bench-config-"))

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from bench.report import write_section  # noqa: E402
from desktop.main_window import MainWindow  # noqa: E402
from desktop.settings import Settings  # noqa: E402

TICK_MS = 5
BEGIN, END = "<!-- ui_responsiveness:begin -->", "<!-- ui_responsiveness:end -->"
PROMPTS = (
    "Hi! I'm Dana, I live in Oslo and I keep bees.",
    "My sister Ingrid visits next week; she is allergic to bee stings.",
    "What should I remember to do before Ingrid arrives?",
    "Please remind me what you know about me.",
    "Thanks! Also, my favourite tea is rooibos.",
    "Which tea do I like?",
)


@dataclass(frozen=True)
class Run:
    seconds: float
    gaps_ms: list[float]

    @property
    def longest(self) -> float:
        return max(self.gaps_ms)


class Ticker:
    """Records the event loop's ticks; gaps between them are the UI's stalls."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def measure(self, app: QApplication, run, done) -> Run:  # noqa: ANN001
        self.ticks = [time.perf_counter()]
        self.timer.start()
        started = time.perf_counter()
        run()
        while not done():
            app.processEvents()
            time.sleep(0.001)
        for _ in range(3):  # the first ticks after the step close the last gap
            app.processEvents()
            time.sleep(TICK_MS / 1000)
        self.timer.stop()
        gaps = [1000 * (b - a) for a, b in zip(self.ticks, self.ticks[1:], strict=False)]
        return Run(time.perf_counter() - started, gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="steps through the worker")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    app = QApplication([])
    scratch = Path(tempfile.mkdtemp(prefix="memex-bench-"))
    window = MainWindow(Settings(db_path=str(scratch / "memex.db")), save=lambda s: None)
    window.show()
    while not window.loaded or window.worker.busy:
        app.processEvents()
        time.sleep(0.01)
    ticker = Ticker()
    worker_runs = []
    for text in PROMPTS[: args.steps]:
        worker_runs.append(
            ticker.measure(app, lambda t=text: window.send(t), lambda: not window.stepping)
        )
    baseline_prompt = PROMPTS[args.steps % len(PROMPTS)]
    blocking = ticker.measure(
        app, lambda: window.session.step(baseline_prompt, lambda e: None), lambda: True
    )
    section = report(worker_runs, blocking)
    print(section)
    if args.write:
        write_section(section, BEGIN, END)
    window.close()


def report(worker_runs: list[Run], blocking: Run) -> str:
    gaps = sorted(g for r in worker_runs for g in r.gaps_ms)
    p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]
    longest = max(r.longest for r in worker_runs)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    step_seconds = ", ".join(f"{r.seconds:.1f}" for r in worker_runs)
    return "\n".join(
        [
            BEGIN,
            "## UI responsiveness during real steps (`python -m bench.ui_responsiveness --write`)",
            "",
            f"Run {when} on {platform.machine()}, {os.cpu_count()} cores, default chat model, "
            f"n_ctx 4096, offscreen Qt, a {TICK_MS} ms timer on the UI thread.",
            "",
            f"- engine on the worker thread (the app): {len(worker_runs)} steps of "
            f"{step_seconds} s; {len(gaps)} ticks; gap between ticks median "
            f"{statistics.median(gaps):.1f} ms, p99 {p99:.1f} ms, **longest {longest:.1f} ms** "
            "(goal < 100 ms)",
            f"- the same kind of step on the UI thread: {blocking.seconds:.1f} s, "
            f"**longest gap {blocking.longest:.0f} ms**",
            f"- **longest stall, UI thread / worker: {blocking.longest / longest:.0f}x**",
            END,
        ]
    )


if __name__ == "__main__":
    main()
