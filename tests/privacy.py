"""Helpers of the privacy tests (tests/engine/test_privacy.py, tests/desktop/test_privacy.py):
file modes under a umask that would show a leak, and the network probe in a process of its own."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

posix_modes = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")


def mode(path: Path) -> str:
    """The permission bits of `path`, as "0o600"."""
    return oct(stat.S_IMODE(os.stat(path).st_mode))


@pytest.fixture
def umask_that_shows_a_leak() -> Iterator[None]:
    """The process's own umask; where that already hides new files from others (077), 022,
    the usual one, so that a file left to the umask shows as 0644."""
    current = os.umask(0o022)
    os.umask(current)
    if current & 0o044 == 0o044:
        os.umask(0o022)
    try:
        yield
    finally:
        os.umask(current)


def run_probe(what: str, db_path: Path, **env: str) -> dict[str, object]:
    """tests/net_probe.py (`what`: engine or desktop) in a process of its own: this one may
    hold other tests' sockets. Its report."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.net_probe", what, str(db_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
