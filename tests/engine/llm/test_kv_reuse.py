"""Moving cached prompt tokens where a page-out changed the middle of the prompt
(engine.llm.kv_reuse plans it, LlamaClient._reuse_cache carries it out on the real model)."""

from __future__ import annotations

import threading

import llama_cpp

from engine.llm.kv_reuse import MIN_MOVED, Moved, plan_moves, read_tokens
from engine.types import ChatMessage


# -- the plan ---------------------------------------------------------------------------------
def test_a_stretch_taken_out_and_one_changed_before_the_rest_moves_the_rest() -> None:
    head, old_summary, evicted, kept = (
        list(range(100)),
        list(range(1000, 1040)),
        list(range(2000, 2300)),
        list(range(3000, 3500)),
    )
    new_summary = list(range(4000, 4090))
    cached = head + old_summary + evicted + kept + [7, 8, 9]  # and the reply after them
    tokens = head + new_summary + kept
    plan = plan_moves(cached, tokens, kept=100)
    assert plan == [Moved(new_start=190, old_start=440, length=500)]
    assert plan[0].shift == -250
    assert read_tokens(plan, 100, len(tokens)) == 90  # the new summary alone


def test_a_prompt_with_nothing_cached_after_its_prefix_moves_nothing() -> None:
    cached = list(range(400))
    tokens = list(range(200)) + list(range(5000, 5400))
    assert plan_moves(cached, tokens, kept=200) == []


def test_a_short_coincidence_is_read_not_moved() -> None:
    cached = list(range(100)) + list(range(1000, 1000 + MIN_MOVED - 1)) + list(range(6000, 6100))
    tokens = list(range(100)) + [9] * 20 + list(range(1000, 1000 + MIN_MOVED - 1)) + [5] * 50
    assert plan_moves(cached, tokens, kept=100) == []


def test_several_stretches_move_in_order() -> None:
    a, b, c = list(range(1000, 1100)), list(range(2000, 2200)), list(range(3000, 3150))
    cached = [1, 2, 3] + a + [50] * 30 + b + [60] * 10 + c
    tokens = [1, 2, 3] + [70] * 5 + a + b + [80] * 8 + c
    plan = plan_moves(cached, tokens, kept=3)
    assert [(m.new_start, m.old_start, m.length) for m in plan] == [
        (8, 3, 100),
        (108, 133, 200),
        (316, 343, 150),
    ]
    assert read_tokens(plan, 3, len(tokens)) == 13


# -- the real model ---------------------------------------------------------------------------
def _conversation(system: str, turns: range) -> list[ChatMessage]:
    messages = [ChatMessage("system", system)]
    for i in turns:
        messages.append(
            ChatMessage("user", f"Bed {i} got {3 * i} litres this week. " + "Some detail. " * 12)
        )
        messages.append(ChatMessage("assistant", f'{{"message": "Noted for bed {i}."}}'))
    return messages


OLD_SYSTEM = "You are Sam. Summary of earlier talk: the beans came up."
NEW_SYSTEM = "You are Sam. Summary of earlier talk: the beans came up; bed 0 to 5 were watered."


def _positions(client) -> tuple[int, int]:
    memory = llama_cpp.llama_get_memory(client._llama.ctx)
    return (
        llama_cpp.llama_memory_seq_pos_max(memory, 0),
        llama_cpp.llama_memory_seq_pos_max(memory, 1),
    )


def test_after_a_page_out_only_the_changed_stretch_is_read(chat_client) -> None:
    chat_client._llama.reset()
    before = _conversation(OLD_SYSTEM, range(12))
    chat_client.prefill(before)
    after = _conversation(NEW_SYSTEM, range(6, 12))  # turns 0-5 paged out, the summary new
    wanted = chat_client.stable_prefix(after)
    read = chat_client.prefill(after)
    # the changed summary (and the last token, read again): not the messages kept
    assert 0 < read < 40
    assert chat_client._llama.n_tokens == len(wanted)
    assert chat_client._llama.input_ids[: len(wanted)].tolist() == wanted
    assert _positions(chat_client) == (len(wanted) - 1, -1)  # one sequence, no gap
    asked = [*after, ChatMessage("user", "Which bed got 30 litres?")]
    completion = chat_client.complete(asked, None, 12)
    assert completion.completion_tokens > 0
    # the step reads its new message only
    assert chat_client.last_stats.prompt_eval_tokens == len(chat_client.prompt_tokens(asked)) - len(
        wanted
    )


def test_without_moving_the_kept_messages_are_read_again(chat_client) -> None:
    chat_client._llama.reset()
    chat_client.prefill(_conversation(OLD_SYSTEM, range(12)))
    after = _conversation(NEW_SYSTEM, range(6, 12))
    chat_client.move_cache = False
    try:
        read = chat_client.prefill(after)
    finally:
        chat_client.move_cache = True
    prefix = llama_cpp.Llama.longest_token_prefix(
        chat_client.stable_prefix(_conversation(OLD_SYSTEM, range(12))),
        chat_client.stable_prefix(after),
    )
    assert read == len(chat_client.stable_prefix(after)) - prefix > 300


def test_a_move_stopped_before_it_starts_leaves_the_cache_as_it_was(chat_client) -> None:
    chat_client._llama.reset()
    before = _conversation(OLD_SYSTEM, range(12))
    chat_client.prefill(before)
    after = _conversation(NEW_SYSTEM, range(6, 12))
    stopped = threading.Event()
    stopped.set()
    assert chat_client.prefill(after, stopped) == 0
    assert chat_client._llama.n_tokens == len(chat_client.stable_prefix(before))
    assert 0 < chat_client.prefill(after) < 40  # the next read moves it
    assert chat_client._llama.n_tokens == len(chat_client.stable_prefix(after))
