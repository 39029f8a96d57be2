"""The prompt cache across restarts (engine.llm.prompt_state) and the model's idle-time parts:
reading ahead, stopping mid-prompt, saving and loading the KV cache of a prompt's prefix."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from engine import MemGPTAgent, Persona
from engine.errors import Interrupted
from engine.llm.prompt_state import PromptStateCache, model_sha256
from engine.types import Assists, ChatMessage

TOKENS = list(range(1000, 1600))
STATE = os.urandom(50_000)


def cache(folder: Path, **kw) -> PromptStateCache:
    return PromptStateCache(
        kw.pop("model", "ab" * 32), kw.pop("n_ctx", 4096), "0.3.x", folder, **kw
    )


# -- the files -------------------------------------------------------------------------------
def test_a_saved_prefix_is_found_only_by_a_prompt_that_starts_with_it(tmp_path: Path) -> None:
    saved = cache(tmp_path)
    assert saved.save(TOKENS, STATE, "a") is not None
    found = saved.find([*TOKENS, 7, 8, 9])
    assert found is not None and found.tokens == TOKENS and found.state == STATE
    assert saved.find(TOKENS[:-1]) is None  # shorter than the prefix
    assert saved.find([1, *TOKENS[1:], 5]) is None  # one token differs
    assert cache(tmp_path, n_ctx=8192).find([*TOKENS, 1]) is None  # another window
    assert cache(tmp_path, model="cd" * 32).find([*TOKENS, 1]) is None  # another model


@pytest.mark.parametrize("damage", ["flip", "cut", "append", "magic", "header"])
def test_a_damaged_file_is_ignored_with_a_log_line_and_deleted(
    tmp_path: Path, damage: str, caplog
) -> None:
    saved = cache(tmp_path)
    path = saved.save(TOKENS, STATE, "a")
    assert path is not None
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-100] ^= 0xFF
    elif damage == "cut":
        data = data[:-10]
    elif damage == "append":
        data += b"x"
    elif damage == "magic":
        data[:8] = b"GGUFxxxx"
    else:
        data[12:20] = b"{{{{{{{{"
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, "engine.llm.prompt_state"):
        assert saved.find([*TOKENS, 1]) is None
    assert "ignoring the saved prompt state" in caplog.text
    assert not path.exists()


def test_another_llama_cpp_builds_state_is_not_trusted(tmp_path: Path) -> None:
    cache(tmp_path).save(TOKENS, STATE, "a")
    newer = PromptStateCache("ab" * 32, 4096, "0.4.0", tmp_path)
    assert newer.find([*TOKENS, 1]) is None
    assert not list(tmp_path.glob("*.kv"))


def test_an_owners_newer_save_replaces_its_older_and_others_stay(tmp_path: Path) -> None:
    saved = cache(tmp_path)
    first = saved.save(TOKENS, STATE, "file#1")
    other = saved.save(TOKENS[:500], STATE, "file#2")
    newer = saved.save([*TOKENS, 1, 2], STATE, "file#1")
    assert first is not None and other is not None and newer is not None
    assert not first.exists() and other.exists() and newer.exists()


def test_the_folder_is_bounded_oldest_first_and_stale_files_go(tmp_path: Path) -> None:
    saved = cache(tmp_path, max_bytes=3 * len(STATE) + 20_000)
    paths = []
    for i in range(5):
        path = saved.save([i, *TOKENS], STATE, f"owner{i}")
        assert path is not None
        old = time.time() - 1000 + i  # oldest first
        os.utime(path, (old, old))
        paths.append(path)
    saved.prune()
    assert [p.exists() for p in paths] == [False, False, True, True, True]
    stale = time.time() - 40 * 86400
    os.utime(paths[2], (stale, stale))
    saved.prune()
    assert not paths[2].exists() and paths[3].exists()


def test_an_unwritable_folder_costs_only_the_cache(tmp_path: Path, caplog) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, "engine.llm.prompt_state"):
        assert cache(blocked / "sub").save(TOKENS, STATE, "a") is None
    assert "could not save the prompt cache" in caplog.text


def test_a_models_sha256_is_hashed_once_and_recorded(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + os.urandom(1000))
    import hashlib

    want = hashlib.sha256(model.read_bytes()).hexdigest()
    assert model_sha256(model, tmp_path / "state") == want
    assert list((tmp_path / "state" / "models").glob("*.json"))
    with model.open("r+b") as f:  # changed in place: hashed again
        f.write(b"GGUX")
    assert model_sha256(model, tmp_path / "state") == hashlib.sha256(model.read_bytes()).hexdigest()


# -- the real model --------------------------------------------------------------------------
def _conversation(turns: int = 6) -> list[ChatMessage]:
    messages = [ChatMessage("system", "You are Sam, a helpful assistant.")]
    for i in range(turns):
        messages.append(ChatMessage("user", f"Tell me about topic {i}. " + "Some detail. " * 30))
        messages.append(ChatMessage("assistant", f'{{"message": "Topic {i} is interesting."}}'))
    return messages


def test_reading_ahead_leaves_only_the_new_message_to_read(chat_client) -> None:
    chat_client._llama.reset()
    messages = _conversation()
    read = chat_client.prefill(messages)
    assert read == len(chat_client.stable_prefix(messages)) > 300
    assert chat_client.prefill(messages) == 0  # already read
    asked = [*messages, ChatMessage("user", "And topic 2?")]
    chat_client.complete(asked, None, 8)
    new = len(chat_client.prompt_tokens(asked)) - read
    assert chat_client.last_stats.prompt_eval_tokens == new


def test_reading_ahead_stops_soon_when_asked_and_keeps_what_it_read(chat_client) -> None:
    chat_client._llama.reset()
    messages = _conversation(12)
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()  # a chunk or more read by then (~1 s each)
    started = time.perf_counter()
    read = chat_client.prefill(messages, stop)
    assert time.perf_counter() - started < 3.5
    assert 0 < read < len(chat_client.stable_prefix(messages))
    assert chat_client._llama.n_tokens == read  # what it read stays in the cache


def test_a_model_call_stops_mid_prompt_when_interrupted(chat_client) -> None:
    chat_client._llama.reset()
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.perf_counter()
    with pytest.raises(Interrupted), chat_client.interrupted_by(stop):
        chat_client.complete(_conversation(12), None, 16)
    assert time.perf_counter() - started < 2.5
    chat_client.complete(_conversation(1), None, 4)  # and the client works on


def test_a_reopened_agent_starts_from_the_saved_cache(chat_client, store) -> None:
    agent = MemGPTAgent(
        Persona("Sam", "A helpful assistant."),
        store,
        chat_client,
        name="sam",
        assists=Assists.none(),  # the model answers below, no engine reply (the same prompt)
    )
    for i in range(4):
        agent.add_user_message(f"Note {i}: " + "my garden has tomatoes and beans. " * 12)
    chat_client._llama.reset()
    chat_client.prefill(agent.context.next_prompt())
    saved = agent.save_prompt_state()
    assert saved > 300
    chat_client._llama.reset()  # a new process: nothing in the cache
    reopened = MemGPTAgent(
        archival_store=store,
        llm_client=chat_client,
        name="sam",
        keep_prompt_cache=True,
        assists=Assists.none(),
    )
    assert reopened.restored_tokens == saved
    result = reopened.step("What grows in my garden?")
    assert result.model_calls
    stats = chat_client.last_stats
    assert stats is not None and stats.prompt_eval_tokens <= stats.prompt_tokens - saved
