"""Bad memory and model files through the terminal chat (`python -m engine chat`, a real
subprocess): one line on stderr that says what to do, exit status 1, no traceback, and the
memory file as it was (sha256 of it and its -wal; no backup made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.store.test_bad_files import memex_file, newer_file, state
from tests.engine.test_cli import run_chat, run_memex

DAMAGED = "is not a Memex database or is damaged"
RESTORE = "restore it from a backup or open another file with --db PATH"


@pytest.fixture(scope="module")
def good_db(tmp_path_factory, embedder) -> Path:
    return memex_file(tmp_path_factory.mktemp("good") / "memex.db", embedder)


@pytest.fixture(scope="module")
def half_model(tmp_path_factory, chat_model_path: Path) -> Path:
    path = tmp_path_factory.mktemp("model") / "half.gguf"
    with chat_model_path.open("rb") as f:
        path.write_bytes(f.read(chat_model_path.stat().st_size // 2))
    return path


def _cut(good: Path, path: Path, embedder) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _junk(good: Path, path: Path, embedder) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _newer(good: Path, path: Path, embedder) -> None:
    newer_file(path, embedder)


def assert_clean_failure(result, *fragments: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("memex: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (_cut, (DAMAGED, RESTORE)),
        (_junk, (DAMAGED, RESTORE)),
        (_newer, ("written by a newer Memex", "Upgrade Memex to open it")),
    ],
    ids=["cut-in-half", "random-bytes", "newer-schema"],
)
def test_a_bad_memory_file_gets_a_message_and_is_left_alone(
    good_db: Path,
    tmp_path: Path,
    embedder,
    make: Callable[[Path, Path, object], None],
    fragments: tuple[str, ...],
) -> None:
    path = tmp_path / "memex.db"
    make(good_db, path, embedder)
    before = state(path)
    result = run_chat("--db", str(path))
    assert_clean_failure(result, str(path), *fragments)
    assert state(path) == before  # no backup beside it either


def test_export_from_a_cut_file_gets_the_same_message(good_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "memex.db"
    _cut(good_db, path, None)
    before = state(path)
    result = run_memex("export", "sam", str(tmp_path / "sam.json"), "--db", str(path))
    assert_clean_failure(result, DAMAGED, RESTORE)
    assert state(path) == before and not (tmp_path / "sam.json").exists()


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        ("half", ("truncated or corrupt", "again")),
        ("embedding", ("is not a chat model", "choose a chat (instruct) GGUF")),
    ],
)
def test_a_bad_chat_model_gets_a_message_and_the_memory_file_is_left_alone(
    good_db: Path,
    tmp_path: Path,
    half_model: Path,
    embed_path: Path,
    model: str,
    fragments: tuple[str, ...],
) -> None:
    path = tmp_path / "memex.db"
    shutil.copyfile(good_db, path)
    before = state(path)
    model_path = half_model if model == "half" else embed_path
    result = run_chat("--db", str(path), "--model", str(model_path))
    assert_clean_failure(result, str(model_path), *fragments)
    assert state(path) == before
