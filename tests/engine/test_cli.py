"""The terminal chat: errors reach the user as one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run_memex(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=os.environ.copy(),
    )


def run_chat(*args: str, stdin: str = "/quit\n") -> subprocess.CompletedProcess[str]:
    return run_memex("chat", *args, stdin=stdin)


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


def test_export_and_import_from_the_terminal(tmp_path: Path) -> None:
    letta = ROOT / "tests" / "engine" / "data" / "letta_memgpt_agent.af"
    db, other = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    imported = run_memex("import", str(letta), "--db", db)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 'memgpt_agent'" in imported.stdout and "not brought over:" in imported.stdout
    again = run_memex("import", str(letta), "--db", db)
    assert again.returncode == 1 and "already an agent called 'memgpt_agent'" in again.stderr
    assert "Traceback" not in again.stderr
    path = str(tmp_path / "agent.json")
    exported = run_memex("export", "memgpt_agent", path, "--db", db)
    assert exported.returncode == 0 and "Exported 'memgpt_agent'" in exported.stdout
    moved = run_memex("import", path, "--db", other, "--name", "sarah's")
    assert moved.returncode == 0 and 'Imported "sarah\'s"' in moved.stdout
    missing = run_memex("export", "nobody", path + ".2", "--db", db)
    assert missing.returncode == 1 and "no agent called 'nobody'" in missing.stderr
    kept = run_memex("export", "memgpt_agent", path, "--db", db)  # the file exists
    assert kept.returncode == 1 and "add --force to replace it" in kept.stderr
    replaced = run_memex("export", "memgpt_agent", path, "--db", db, "--force")
    assert replaced.returncode == 0
    over_itself = run_memex("export", "memgpt_agent", db, "--db", db, "--force")
    assert over_itself.returncode == 1 and "memory file this Memex has open" in over_itself.stderr
