"""Page-out summaries: the model folds paged-out messages into the running (recursive) summary.

The summary call is a separate, free-text model call with its own short prompt. When the
messages to fold do not fit one call next to the previous summary and the reply, they are
folded in pieces, each piece into the summary the last one produced.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from engine.errors import GenerationError, Interrupted, MemexError
from engine.llm.base import LLMClient
from engine.types import ChatMessage, Message

logger = logging.getLogger(__name__)

LINE_CHARS = 1_200  # a longer message is shown cut in the transcript; recall keeps it whole

SUMMARY_SYSTEM = """\
You keep the running summary of a long conversation between a user and {name}, an AI \
assistant. Old messages leave {name}'s view; your summary is what {name} keeps of them.
Write the new summary: keep the facts of the summary so far, and add what the new messages \
tell: facts about the user (name, family, places, work, dates, likes, plans), what {name} \
promised or did, questions still open. Short plain sentences, no greetings, no quotes. \
At most {words} words. Write only the summary text."""

SUMMARY_REQUEST = """\
SUMMARY SO FAR{covered}:
{previous}

NEW MESSAGES:
{transcript}

Now write the new summary."""

# Small models echo parts of the request: cut the reply where an echo starts.
_ECHO = re.compile(
    r"^(SUMMARY SO FAR|NEW MESSAGES|Now write the new summary)|^(User|\[\d+\]):", re.M
)


# a reply this much made of the instructions' own word runs is the instructions written back
INSTRUCTION_ECHO_SHARE = 0.5


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def writes_instructions_back(text: str, instructions: str) -> bool:
    """Whether `text` is mostly the `instructions` said again: a 0.5B model wrote "keep the
    facts of the summary so far, and add what sam promised or did. questions still open." as
    the summary, which then replaced the one that held the user's facts."""
    own = _trigrams(text)
    return bool(own) and len(own & _trigrams(instructions)) >= INSTRUCTION_ECHO_SHARE * len(own)


class SummaryError(MemexError):
    """The model could not write a summary; the messages stay paged out and are retried."""


@dataclass(frozen=True)
class Summarizer:
    """Writes summaries with `llm`, each at most `max_tokens` long."""

    llm: LLMClient
    agent_name: str
    max_tokens: int

    def fold(self, previous: str, covered: str, messages: list[Message]) -> str:
        """The summary of `previous` (covering `covered`, e.g. "messages 1-80") and `messages`."""
        lines = [(m.id, line) for m in messages if (line := transcript_line(m, self.agent_name))]
        summary = previous
        while lines:
            count = self._fitting_lines(summary, covered, lines)
            piece, lines = lines[:count], lines[count:]
            summary = self._write(summary, covered, piece)
            covered = f" (messages up to {piece[-1][0]})"  # for the next piece
        return summary

    def _prompt(
        self, previous: str, covered: str, lines: list[tuple[int, str]]
    ) -> list[ChatMessage]:
        words = max(30, self.max_tokens * 2 // 3)
        request = SUMMARY_REQUEST.format(
            covered=covered,
            previous=previous or "(none yet)",
            transcript="\n".join(line for _, line in lines),
        )
        return [
            ChatMessage("system", SUMMARY_SYSTEM.format(name=self.agent_name, words=words)),
            ChatMessage("user", request),
        ]

    def _fits(self, messages: list[ChatMessage]) -> bool:
        return self.llm.count_tokens(messages) + self.max_tokens <= self.llm.context_window

    def _fitting_lines(self, previous: str, covered: str, lines: list[tuple[int, str]]) -> int:
        """How many of `lines` fit one call (at least one: a line too long is cut to fit)."""
        low, high = 1, len(lines)
        if not self._fits(self._prompt(previous, covered, lines[:1])):
            lines[0] = (lines[0][0], self._cut_to_fit(previous, covered, lines[0]))
        while low < high:  # binary search: counting renders and tokenizes the whole prompt
            middle = (low + high + 1) // 2
            if self._fits(self._prompt(previous, covered, lines[:middle])):
                low = middle
            else:
                high = middle - 1
        return low

    def _cut_to_fit(self, previous: str, covered: str, line: tuple[int, str]) -> str:
        text = line[1]
        while len(text) > 40:
            text = text[: len(text) // 2]
            if self._fits(self._prompt(previous, covered, [(line[0], text + " [...]")])):
                return text + " [...]"
        raise SummaryError(
            f"the previous summary and the summary prompt alone do not fit the "
            f"{self.llm.context_window}-token window"
        )

    def _write(self, previous: str, covered: str, lines: list[tuple[int, str]]) -> str:
        prompt = self._prompt(previous, covered, lines)
        try:
            completion = self.llm.complete(prompt, None, self.max_tokens)
        except Interrupted:
            raise  # stopped as asked (idle work yielding to the user): not a failure
        except GenerationError as exc:
            raise SummaryError(f"the summary call failed: {exc}") from exc
        text = completion.text
        echo = _ECHO.search(text)
        if echo is not None:
            text = text[: echo.start()]
        text = " ".join(text.split())
        if completion.finish_reason == "length" or echo is not None:
            text = _whole_sentences(text)
        if not text:
            raise SummaryError("the model wrote an empty summary")
        if writes_instructions_back(text, prompt[0].content):
            # kept, it would replace the summary so far and lose what that held
            raise SummaryError("the model wrote the summary's instructions back")
        return text


def transcript_line(message: Message, agent_name: str, limit: int = LINE_CHARS) -> str | None:
    """How a paged-out message reads in the summary prompt (None: not worth summarising);
    cut after `limit` characters."""
    if message.role == "user":
        text = message.content
        speaker = "User"
    elif message.role == "assistant" and message.tool_call is not None:
        call = message.tool_call
        arguments = call.get("arguments") or {}
        if call.get("tool") == "send_message":
            speaker, text = agent_name, str(arguments.get("message", ""))
        else:
            values = "; ".join(str(v) for v in arguments.values() if v)
            speaker, text = f"{agent_name} ({call.get('tool')})", values
    else:
        return None  # tool results, notes and unparsable replies carry no new facts
    text = " ".join(text.split())
    if not text:
        return None
    if len(text) > limit:
        text = text[:limit] + f" [... {len(text) - limit} more characters]"
    return f"{speaker}: {text}"


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _whole_sentences(text: str) -> str:
    """Drop a sentence cut off by the token limit."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]] if ends else text
