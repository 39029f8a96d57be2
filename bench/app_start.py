"""Start time of the built app (dist/memex, `make dist`) against the same app run from source
(`python -m desktop`), side by side, alternating, in clean environments.

    python -m bench.app_start [--bundle dist/memex] [--runs 3] [--write]

Three figures each way:
- `--version`: process start to exit (the interpreter and the app's imports);
- window: process start to the window's "ready" log line (models loaded, memory file open,
  agent on screen; offscreen Qt), then SIGTERM and the time to a clean exit;
- `--selftest`: its own PASS line (both models, one real step with the default chat model).
Every run gets a fresh HOME. The built app's first start hashes its ~580 MB of models once
(recorded in the user cache, later starts skip it); that first start is reported on its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- app_start:begin -->", "<!-- app_start:end -->"
READY = "INFO:memex:ready in "


@dataclass
class Way:
    """One way to start the app: the built binary, or Python on the source tree."""

    name: str
    command: list[str]
    env: dict[str, str]
    version_s: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    exit_s: list[float] = field(default_factory=list)
    selftest_s: list[float] = field(default_factory=list)


def built(bundle: Path) -> Way:
    return Way("built app", [str(bundle / "memex")], {"PATH": "/usr/bin:/bin"})


def from_source() -> Way:
    # the source run needs its venv's Python and the models dir the test run uses
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    if models := os.environ.get("MEMEX_MODELS_DIR"):
        env["MEMEX_MODELS_DIR"] = models
    return Way("from source", [sys.executable, "-m", "desktop"], env)


def fresh_env(way: Way, home: Path, **extra: str) -> dict[str, str]:
    return {**way.env, "HOME": str(home), **extra}


def time_version(way: Way, home: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [*way.command, "--version"],
        env=fresh_env(way, home),
        check=True,
        capture_output=True,
        cwd=home,
    )
    return time.perf_counter() - start


def time_window(way: Way, home: Path) -> tuple[float, float]:
    """Seconds to the ready line, and from SIGTERM to the process's exit."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [*way.command, "-v"],
        env=fresh_env(way, home, QT_QPA_PLATFORM="offscreen"),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if READY in line:
                ready = time.perf_counter() - start
                break
        else:
            raise RuntimeError(f"{way.name}: exited with {process.wait()} before it was ready")
        asked = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.stdout.read()
        if process.wait(timeout=60) != 0:
            raise RuntimeError(f"{way.name}: exit status {process.returncode} after SIGTERM")
        return ready, time.perf_counter() - asked
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def time_selftest(way: Way, home: Path) -> float:
    done = subprocess.run(
        [*way.command, "--selftest"],
        env=fresh_env(way, home),
        capture_output=True,
        text=True,
        cwd=home,
    )
    match = re.search(r"PASS in ([0-9.]+)s", done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"{way.name}: selftest failed: {done.stdout}{done.stderr}")
    return float(match.group(1))


def first_start(way: Way, scratch: Path) -> float:
    """The built app's very first window: no record yet that its models passed their check."""
    home = Path(tempfile.mkdtemp(dir=scratch))
    return time_window(way, home)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "dist" / "memex")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md's section")
    args = parser.parse_args()
    if not (args.bundle / "memex").is_file():
        raise SystemExit(f"no built app at {args.bundle}: run `make dist` first")
    bundle = args.bundle.resolve()  # the runs start in their own HOME
    ways = [built(bundle), from_source()]
    with tempfile.TemporaryDirectory(prefix="memex-bench-start-") as scratch:
        cold = first_start(ways[0], Path(scratch))
        for _ in range(args.runs):
            for way in ways:  # alternating, so drift in the machine hits both alike
                home = Path(tempfile.mkdtemp(dir=scratch))
                # a settled start: models checked (built app) and file cache warm
                time_window(way, home)
                way.version_s.append(time_version(way, home))
                ready, exit_s = time_window(way, home)
                way.ready_s.append(ready)
                way.exit_s.append(exit_s)
                way.selftest_s.append(time_selftest(way, home))
    section = report(ways, cold, bundle)
    print(section)
    if args.write:
        write_section(section, BEGIN, END)


def _size_mib(folder: Path) -> float:
    files = (p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return sum(p.stat().st_size for p in files) / 2**20


def report(ways: list[Way], cold: float, bundle: Path) -> str:
    app, source = ways
    med = statistics.median
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def row(label: str, a: list[float], b: list[float]) -> str:
        return f"| {label} | {med(a):.2f} s | {med(b):.2f} s | {med(a) / med(b):.2f}x |"

    return "\n".join(
        [
            BEGIN,
            "## App start: built app against source (`python -m bench.app_start --write`)",
            "",
            f"Run {when} on {platform.machine()}, {os.cpu_count()} cores; built app "
            f"{_size_mib(bundle):,.0f} MiB; medians of {len(app.ready_s)} alternating runs, "
            "fresh HOME each, offscreen Qt.",
            "",
            "| | built app | from source | built / source |",
            "|---|---|---|---|",
            row("`--version` (start to exit)", app.version_s, source.version_s),
            row("window ready (models, file, agent on screen)", app.ready_s, source.ready_s),
            row("SIGTERM to clean exit", app.exit_s, source.exit_s),
            row("`--selftest` (one real step)", app.selftest_s, source.selftest_s),
            "",
            f"- built app, very first window (models hashed once, ~580 MB): {cold:.2f} s",
            END,
        ]
    )


if __name__ == "__main__":
    main()
