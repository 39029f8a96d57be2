"""LlamaClient on the real default chat model (slow: minutes on 2 CPU cores)."""

from __future__ import annotations

import json

import pytest

from engine.errors import GenerationError
from engine.llm.base import Completion, prompt_seconds
from engine.llm.grammar import render_tool_descriptions, reply_format_instructions, reply_schema
from engine.llm.llama import chat_model_generating
from engine.llm.parse import parse_reply
from engine.types import ChatMessage as M

from .conftest import realistic_tools

pytestmark = pytest.mark.slow

TOOLS = realistic_tools()
TOOL_NAMES = {t.name for t in TOOLS}
SYSTEM = (
    "You are Memex, a friendly assistant with a long-term memory.\n"
    + reply_format_instructions()
    + "\n\nTools:\n"
    + render_tool_descriptions(TOOLS)
)
SYS = M("system", SYSTEM)
SEARCH_CALL = json.dumps(
    {
        "thought": "Look it up.",
        "tool": "archival_memory_search",
        "arguments": {"query": "favourite food"},
        "request_heartbeat": True,
    }
)
OK = json.dumps({"tool": "send_message", "status": "OK", "message": "None"})

CONVERSATIONS = {
    "greeting": [SYS, M("user", "Hi there!")],
    "remember": [SYS, M("user", "My name is Ada and I am allergic to peanuts. Remember that.")],
    "recall": [SYS, M("user", "What did I tell you last month about my favourite food?")],
    "heartbeat": [
        SYS,
        M("user", "What's my favourite food?"),
        M("assistant", SEARCH_CALL),
        M(
            "tool",
            json.dumps(
                {
                    "tool": "archival_memory_search",
                    "status": "OK",
                    "message": "1. Ada loves ramen (2024-05-02)",
                }
            ),
        ),
    ],
    "follow_up": [
        SYS,
        M("user", "hello"),
        M(
            "assistant",
            json.dumps(
                {
                    "thought": "greet",
                    "tool": "send_message",
                    "arguments": {"message": "Hello! How can I help?"},
                    "request_heartbeat": False,
                }
            ),
        ),
        M("tool", OK),
        M("user", "Please store this note: dentist on Friday at 3pm, tag it 'health'."),
    ],
    "system_mid": [
        SYS,
        M("user", "Tell me a fun fact."),
        M("system", "Memory pressure: the context is 80% full. Save anything important now."),
    ],
    "quotes_unicode": [SYS, M("user", 'Say exactly this: "naïve café — 日本語 \\ done" 😀')],
    "french": [SYS, M("user", "Bonjour ! Je m'appelle Chloé. Tu peux retenir mon prénom ?")],
    "long": [
        SYS,
        M(
            "user",
            "Here is my week. " + "I went running and then worked on my "
            "garden, planting tomatoes and basil. " * 12 + "Summarise it.",
        ),
    ],
    "persona": [SYS, M("user", "From now on, call yourself Max and be very concise.")],
}


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_constrained_replies_parse_and_counts_are_exact(chat_client, name) -> None:
    messages = CONVERSATIONS[name]
    expected_prompt = chat_client.count_tokens(messages)
    completion = chat_client.complete(messages, reply_schema(TOOLS), max_tokens=320)
    assert isinstance(completion, Completion)
    assert completion.prompt_tokens == expected_prompt
    assert completion.finish_reason == "stop", completion
    call = parse_reply(completion.text)
    assert call.name in TOOL_NAMES
    assert completion.completion_tokens > 0
    stats = chat_client.last_stats
    assert stats is not None and stats.prompt_tokens == expected_prompt


def test_count_message_tokens_adds_up(chat_client) -> None:
    messages = [
        SYS,
        M("user", "hello there"),
        M("assistant", SEARCH_CALL),
        M("tool", OK),
        M("user", "thanks"),
        M("system", "a note in the middle"),
        M("assistant", "{}"),
    ]
    total = chat_client.count_tokens(messages[:1]) + sum(
        chat_client.count_message_tokens(m) for m in messages[1:]
    )
    assert chat_client.count_tokens(messages) == total
    assert chat_client.count_message_tokens(M("user", "")) > 0


def test_qwen_template_renders_tool_and_mid_system_messages(chat_client) -> None:
    """Pins what the default model's template does with the roles the engine uses."""
    if "<tool_response>" not in chat_client.metadata.get("tokenizer.chat_template", ""):
        pytest.skip("not a Qwen2.5-style template")
    text = chat_client.render(
        [SYS, M("user", "u"), M("tool", "A"), M("tool", "B"), M("system", "S")]
    )
    assert text.endswith(
        "<|im_start|>user\nu<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nA\n</tool_response>\n"
        "<tool_response>\nB\n</tool_response><|im_end|>\n"
        "<|im_start|>system\nS<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # without a leading system message the template injects its own
    assert chat_client.render([M("user", "u")]).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud."
    )


def test_second_call_reuses_the_cached_prefix(chat_client) -> None:
    schema = reply_schema(TOOLS)
    first = [SYS, M("user", "Remember that my cat is called Miso.")]
    chat_client.complete(first, schema, max_tokens=8)
    second = [*first, M("assistant", SEARCH_CALL), M("tool", OK), M("user", "And my dog?")]
    chat_client.complete(second, schema, max_tokens=8)
    stats = chat_client.last_stats
    assert stats is not None
    assert stats.prompt_tokens == chat_client.count_tokens(second)
    assert stats.cached_prompt_tokens >= chat_client.count_tokens(first) - 1
    assert 0 < stats.prompt_eval_tokens < stats.prompt_tokens


def test_the_time_to_read_a_prompt_is_estimated_from_what_is_not_cached(chat_client) -> None:
    first = [SYS, M("user", "Remember that my cat is called Miso.")]
    chat_client.reset_cache()  # the whole prompt is read: a measurement of the speed
    chat_client.complete(first, reply_schema(TOOLS), max_tokens=8)
    stats = chat_client.last_stats
    assert stats is not None and stats.prompt_eval_tokens > 32
    rate = stats.prompt_eval_tokens / stats.prompt_eval_s  # measured by the call (smoothed)
    longer = [*first, M("assistant", SEARCH_CALL), M("tool", OK), M("user", "And my dog?")]
    new_tokens = chat_client.count_tokens(longer) - stats.prompt_tokens
    estimate = prompt_seconds(chat_client, longer)
    assert 0 < estimate < 3 * new_tokens / rate + 1  # the new part, not the whole prompt
    uncached = [M("system", "Be brief. " + SYS.content), *longer[1:]]  # differs from token 1
    assert estimate < prompt_seconds(chat_client, uncached)


def test_context_overflow_is_refused(chat_client) -> None:
    messages = [SYS, M("user", "hi")]
    n = chat_client.count_tokens(messages)
    with pytest.raises(GenerationError, match=rf"prompt \({n} tokens\).*context window \(4096"):
        chat_client.complete(messages, reply_schema(TOOLS), max_tokens=4096 - n + 1)
    huge = [SYS, M("user", "lorem ipsum " * 3000)]
    with pytest.raises(GenerationError, match="exceeds the context window"):
        chat_client.complete(huge, reply_schema(TOOLS), max_tokens=16)


def test_client_properties(chat_client, chat_model_path) -> None:
    assert chat_client.context_window == 4096
    assert chat_client.name
    assert chat_client.metadata["general.architecture"]
    assert chat_client.model_path == chat_model_path


def test_small_model_replies_parse(small_model_path, capfd) -> None:
    from engine.llm.llama import LlamaClient

    with LlamaClient(small_model_path, n_ctx=2048) as client:
        loaded_err = capfd.readouterr().err
        assert "llama_model_loader" not in loaded_err  # native log went to `logging`
        for name in ("greeting", "remember", "heartbeat"):
            messages = CONVERSATIONS[name]
            completion = client.complete(messages, reply_schema(TOOLS), max_tokens=320)
            assert completion.prompt_tokens == client.count_tokens(messages)
            assert completion.finish_reason == "stop", completion
            assert parse_reply(completion.text).name in TOOL_NAMES


def test_library_grammar_sampling_still_works(chat_client) -> None:
    """grammar_check_first=False: llama-cpp-python's own sampler chain (grammar over the whole
    vocabulary at every step) gives a reply that parses too."""
    messages = CONVERSATIONS["heartbeat"]
    chat_client._llama.grammar_check_first = False
    try:
        completion = chat_client.complete(messages, reply_schema(TOOLS), max_tokens=320)
    finally:
        chat_client._llama.grammar_check_first = True
    assert completion.finish_reason == "stop"
    assert parse_reply(completion.text).name in TOOL_NAMES
    assert chat_client.last_stats is not None
    assert chat_client.last_stats.grammar_resamples == 0


def test_streamed_reply_is_the_reply_and_can_be_stopped(chat_client) -> None:
    messages = CONVERSATIONS[next(iter(CONVERSATIONS))]
    pieces: list[str] = []
    generating: list[bool] = []  # the embedder leaves the cores to the model meanwhile

    def sink(piece: str) -> bool:
        pieces.append(piece)
        generating.append(chat_model_generating())
        return True

    assert not chat_model_generating()
    full = chat_client.complete(messages, reply_schema(TOOLS), max_tokens=320, on_text=sink)
    assert len(pieces) > 5 and "".join(pieces) == full.text
    assert all(generating) and not chat_model_generating()
    assert full.prompt_tokens == chat_client.count_tokens(messages)  # usage as without a stream

    stopped: list[str] = []
    cut = chat_client.complete(
        messages,
        reply_schema(TOOLS),
        max_tokens=320,
        on_text=lambda p: stopped.append(p) or len(stopped) < 4,
    )
    assert cut.finish_reason == "cancelled"
    assert "".join(stopped) == cut.text and cut.completion_tokens <= 6


def _whole(client, messages) -> list[int]:
    """llama-cpp-python's own tokenization of the prompt string (what create_completion does
    with a str prompt)."""
    prompt = client.render(messages)
    body = client._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    return [*client._prefix_ids, *body, *client._suffix_ids]


def test_prompts_tokenized_by_pieces_are_llama_cpps_tokens(chat_client) -> None:
    """The piece cache (_PieceTokenizer) gives exactly the tokens of the whole prompt, also
    for text that holds a template's special tokens, and as prompts grow message by message."""
    assert "<|im_start|>" in chat_client._pieces.markers  # the default model: pieces in use
    tricky = [
        SYS,
        M("user", "literal <|im_start|>assistant\nand <|im_end|> inside, </s> too"),
        M("assistant", '{"thought": "x",  "tool":"send_message"}   '),
        M("tool", "\n\n  leading and trailing space  \n"),
        M("user", "  ".join(["naïve café 日本語 😀"] * 40)),
        M("system", ""),
    ]
    for messages in [*CONVERSATIONS.values(), tricky]:
        for end in range(1, len(messages) + 1):
            assert chat_client.prompt_tokens(messages[:end]) == _whole(chat_client, messages[:end])


def test_the_call_evaluates_the_prompt_llama_cpp_would_tokenize(chat_client) -> None:
    messages = CONVERSATIONS["follow_up"]
    completion = chat_client.complete(messages, reply_schema(TOOLS), max_tokens=8)
    assert completion.prompt_tokens == len(_whole(chat_client, messages))
    assert list(chat_client._llama._input_ids[: completion.prompt_tokens]) == _whole(
        chat_client, messages
    )


def test_top_candidates_draw_what_the_whole_vocabulary_draws(chat_client) -> None:
    """The grammar-checked sampler hands the chain only the highest logits (enough for its
    penalties and top-k): the replies are token for token those of a draw over all 152k."""
    schema = reply_schema(TOOLS)
    llama = chat_client._llama
    for name in ("greeting", "remember", "heartbeat", "quotes_unicode"):
        messages = CONVERSATIONS[name]
        # the same cache state for both: a first draw of a new prompt evaluates it in batches,
        # the draws after it reuse that cache, and on some CPUs the two round differently
        chat_client.complete(messages, schema, max_tokens=200)
        fast = chat_client.complete(messages, schema, max_tokens=200)
        sampler = llama.last_sampler
        assert sampler is not None and sampler._keep and sampler.full_draws == 0
        llama.top_candidates_first = False
        try:
            full = chat_client.complete(messages, schema, max_tokens=200)
        finally:
            llama.top_candidates_first = True
        assert llama.last_sampler is not None and llama.last_sampler._keep is None
        assert fast.text == full.text, name
        parse_reply(fast.text)


def test_weights_load_without_extra_buffer_types_where_amx_crashes() -> None:
    """The AMX guard: inside it llama.cpp's default model params say use_extra_bufts=False,
    and after it the library's own function is back."""
    import llama_cpp

    from engine.llm import llama as llama_module

    before = llama_cpp.llama_cpp.llama_model_default_params
    assert before().use_extra_bufts  # llama.cpp's default, which the AMX repack comes through
    with llama_module._without_extra_buffer_types():
        assert not llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts
    assert llama_cpp.llama_cpp.llama_model_default_params is before
    # where llama.cpp was built with AMX kernels, every load goes through the guard
    amx = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
    assert llama_module._repack_safe() is not amx
