"""Which stretches of the model's KV cache a new prompt can keep after a stretch in its middle
changed: the plan that LlamaClient carries out with llama.cpp's KV-cache edits.

A page-out takes the oldest messages out of the prompt and changes the summary before the ones
kept, so the new prompt is the old one less a stretch in the middle, with the summary's text
replaced:

    cached:  [instructions, tools, core | old summary | evicted messages | kept messages]
    new:     [instructions, tools, core | new summary | kept messages]

Prefix reuse keeps only the part before the summary, and the model reads the kept messages
again: with a full 4k window on two cores, 10-15 s of the 0.5B model and three times that of
the 1.5B, for text the cache already holds. llama.cpp can move cached tokens to new positions
(RoPE models: `llama_memory_seq_add`), as llama-server's `--cache-reuse` does, so that only the
changed stretch is read. The kept messages' cache then holds what the model read with the old
summary and the evicted messages before them, not the new summary: an approximation, the one
llama.cpp's context shift makes; measured in BENCHMARKS.md ("context shift").

A plan is a list of `Moved(new_start, old_start, length)` stretches, in order in both prompts;
the tokens before, between and after them are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ANCHOR = 16  # tokens: a stretch is found by its first this many
MIN_MOVED = 64  # tokens: a shorter match is read again (a coincidence in a summary, a name)
MAX_CANDIDATES = 8  # cached places an anchor is tried at (text that repeats itself)


@dataclass(frozen=True)
class Moved:
    """Cached tokens old_start..old_start+length that the new prompt has at new_start."""

    new_start: int
    old_start: int
    length: int

    @property
    def shift(self) -> int:
        return self.new_start - self.old_start


def plan_moves(cached: Sequence[int], tokens: Sequence[int], kept: int) -> list[Moved]:
    """The stretches of `cached` after its first `kept` tokens (the common prefix) that
    `tokens` has later on, each at least MIN_MOVED tokens, in order in both; [] if none."""
    index: dict[tuple[int, ...], list[int]] = {}
    for start in range(kept, len(cached) - ANCHOR + 1):
        index.setdefault(tuple(cached[start : start + ANCHOR]), []).append(start)
    moves: list[Moved] = []
    new, old_from = kept, kept
    while new + ANCHOR <= len(tokens):
        starts = [s for s in index.get(tuple(tokens[new : new + ANCHOR]), ()) if s >= old_from]
        match = _longest_match(cached, tokens, new, starts[:MAX_CANDIDATES])
        if match is None or match[1] < MIN_MOVED:
            new += 1
            continue
        old, length = match
        moves.append(Moved(new, old, length))
        new, old_from = new + length, old + length
    return moves


def _longest_match(
    cached: Sequence[int], tokens: Sequence[int], new: int, starts: list[int]
) -> tuple[int, int] | None:
    """(old start, length) of the longest run of `cached` that `tokens` has at `new`, among
    the cached `starts` its anchor is found at."""
    best: tuple[int, int] | None = None
    for old in starts:
        length = 0
        while (
            new + length < len(tokens)
            and old + length < len(cached)
            and tokens[new + length] == cached[old + length]
        ):
            length += 1
        if best is None or length > best[1]:
            best = (old, length)
    return best


def read_tokens(plan: list[Moved], kept: int, end: int) -> int:
    """The tokens of a prompt of `end` tokens that still have to be read with `plan`."""
    return end - kept - sum(m.length for m in plan)
