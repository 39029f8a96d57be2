"""The terminal chat: errors reach the user as one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run_chat(*args: str, stdin: str = "/quit\n") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=os.environ.copy(),
    )


def test_corrupt_database_gets_a_message_not_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(os.urandom(4096))
    result = run_chat("--db", str(db))
    assert result.returncode == 1
    assert "not a Memex database" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_model_gets_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = run_chat("--db", str(tmp_path / "m.db"), "--model", str(tmp_path / "nope.gguf"))
    assert result.returncode == 1
    assert "nope.gguf" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_chat_with_the_small_model_runs_and_remembers_the_file(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    result = run_chat(
        "--db",
        str(db),
        "--model",
        "small",
        "--n-ctx",
        "2048",
        stdin="Hello there\n/memory\n/quit\n",
    )
    assert result.returncode == 0, result.stderr
    assert "memex> " in result.stdout and "<human" in result.stdout
    assert "Traceback" not in result.stderr
    assert db.exists()
