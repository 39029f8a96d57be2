"""Reading memory for a question: a short, separate model call that answers the user's question
from what page-in found and from core memory, before the agent replies.

Why a separate call: a small model shown the right records in the middle of its chat prompt
(persona, tools, JSON replies, earlier turns) mostly does not answer from them. It replies to
the records as if it were in that conversation, or writes a long sentence around the wrong
fact. Asked the same question as a reading question (the records, then LoCoMo's own "write an
answer in the form of a short phrase"), the same model answers well: on 150 LoCoMo questions
Qwen2.5-Coder-1.5B scored F1 0.46 reading the search's best 8 passages, against 0.13 for the
agent with those passages in its page-in note (bench/memory_qa.py, `reader` and `locomo`); with
this reading's answer in the note, the agent scored 0.24.

So the engine asks the reading question itself. It reads all of page-in's hits, where the note
may have room for fewer, the messages in view among them. Its answer goes in the note; and
where the message only asks and the answer is made of memory's words (grounded), the engine
sends it as the reply itself (MemGPTAgent._direct_answer): told the answer, the model mostly
wrapped it in a sentence of its own (reply F1 0.24 against the reading's 0.39). The call runs
on the client's second context (engine.llm.base.side_client_of), so the conversation's prompt
cache is left alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from engine.errors import MemexError
from engine.llm.base import LLMClient
from engine.memory.page_in import Recalled
from engine.memory.when import dated_as_read
from engine.tools.reply_checks import untold_words
from engine.types import ChatMessage

logger = logging.getLogger(__name__)

# The reading's prompt is LoCoMo's own question prompt (its task_eval/gpt_utils.py), the way
# the plain reader of bench/memory_qa.py asks it, plus core memory, a way out for what memory
# does not hold, and its line on dates for a question of when. Each addition was measured on
# the 150-question sample (BENCHMARKS.md, fourth session): written as the engine first had it
# (its own wording, core memory first, rules on dated records and on "the later one holds"),
# the same 1.5B reader scored F1 0.42 on half of it, against 0.51 for this; the way out put
# after the line on dates made it give up on questions of when (15 in 75 "not in memory").
READING_SYSTEM = "You are a helpful assistant."
READING_REQUEST = """\
{records}
{core}
Based on the above context, write an answer in the form of a short phrase for the following \
question. Answer with exact words from the context whenever possible. If nothing above answers \
it, write: {not_found}{when}{several}

Question: {question} Short answer:"""
CORE_HEADING = "What the assistant keeps about the user:"
WHEN_HINT = " Use the dates of the records to answer with an approximate date."
# Asked "What books has she read?", a reader gives the first book it finds; the user wants each.
# On the dev set's 109 questions for several things (asks_several), the 1.5B reader told so
# scored F1 0.366 against 0.303 (34 answers better, 9 worse; BENCHMARKS.md, 2026-12-07).
SEVERAL_HINT = (
    " The question asks for several things: name each one the context mentions, separated by "
    "commas."
)
# A question of when: "When did I ...", "What date ...", "Which year ...", "How long ago ..."
_WHEN = re.compile(
    r"^\W*(when|(what|which) time|how long ago)\b|\b(what|which) (date|day|week|month|year)\b",
    re.IGNORECASE,
)
# A question for several things: "What books ...", "Which events ...", "What kinds of pets ...",
# "What are ...": a wh-word, at most one word more (not a verb: "What does Jon's ..."), then a
# plural noun; or "what/who/which are|were".
_AUXILIARY = r"(?:is|are|was|were|do|does|did|has|have|had|can|could|will|would|should|might|may)"
_SEVERAL = re.compile(
    r"^\W*(?:what|which)\s+(?:(?:kinds?|types?|sorts?)\s+of\s+)?"
    r"(?:(?!" + _AUXILIARY + r"\b)[a-z-]+\s+)?"
    r"(?!" + _AUXILIARY + r"\b|this\b|his\b|its\b|news\b|series\b|species\b)"
    r"[a-z]+(?<![sui])s\b(?!')"
    r"|^\W*(?:what|who|which)\s+(?:are|were)\b",
    re.IGNORECASE,
)
# Where a question asks two things ("Where do I work now, and what's my role there?"), the
# reader mostly answers the first only; each later part is read again on its own.
_PARTS = re.compile(
    r",?\s+and\s+(?=(?:(?:with|for|at|in|from|to|on|by)\s+)?"
    r"(?:who|whom|whose|what|which|where|when|how|why)\b)",
    re.IGNORECASE,
)
# A message that asks for help, advice or a recommendation ("Which library would you
# recommend?", "How do I descale a kettle?", "Any tips for ...?"): where memory does not answer
# it, the model is to help, not to say it does not know. A question of the past ("What did you
# recommend?") or of a preference ("How do I like my coffee?") asks memory.
_REQUEST = re.compile(
    r"\b(can|could|would|will) you\b|\b(should|shall) (i|we)\b|\bhow (do|can|could|should) "
    r"(i|we)\b|\b(any|some) (tips|ideas|advice|suggestions)\b|\bhelp me\b|"
    r"\bwhat(?:'s| is| are)? (?:a |an |some )?(good|quick|easy|nice|best)\b",
    re.IGNORECASE,
)
_PAST = re.compile(
    r"\b(did|have|had) (you|i|we)\b|\byou (recommended|suggested|said)\b"
    r"|\bhow do (i|we) (like|prefer|take|feel)\b",  # a preference, not a how-to
    re.IGNORECASE,
)
NOT_FOUND = "not in memory"
ANSWER_TOKENS = 32  # a short phrase; a reader that goes on is cut here
ANSWER_CHARS = 200
_YES_NO = " yes no "
# "Short answer:" is the prompt's last words; models sometimes write them again
_LEAD = re.compile(r"^\s*(short answer|answer)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Reading:
    """What the reading call answered: `answer` is the short phrase, or "" when the records do
    not hold the answer (`found` False); `grounded`, whether it is made of their words."""

    answer: str
    grounded: bool = True  # see grounded()

    @property
    def found(self) -> bool:
        return bool(self.answer)

    @property
    def from_memory(self) -> str:
        """The answer where it is made of memory's words, "" otherwise: a reader that answered
        from elsewhere found nothing in memory."""
        return self.answer if self.grounded else ""

    @property
    def reply(self) -> str:
        """The answer as a reply to the user: a sentence's capital and stop ("7 May 2023.")."""
        text = self.answer[:1].upper() + self.answer[1:]
        return text if text[-1:] in ".!?…" else text + "."


def asks(text: str) -> bool:
    """Whether a user message asks something: it holds a question mark. (Whether it asks about
    memory is the reading's to find: "not in memory" when the records do not answer it.)"""
    return "?" in text


def asks_for_help(text: str) -> bool:
    """Whether `text` asks for help, advice or a suggestion rather than about what was said."""
    return bool(_REQUEST.search(text)) and not _PAST.search(text)


def asks_when(question: str) -> bool:
    """Whether `question` asks when something happened or happens."""
    return bool(_WHEN.search(question))


def asks_several(question: str) -> bool:
    """Whether `question` asks for several things ("What books has she read?"), not one."""
    return bool(_SEVERAL.search(question))


def question_parts(question: str) -> list[str]:
    """The things `question` asks, each a question of its own: two where it joins two
    wh-questions with "and" ("..., and who teaches my class?"), else the question alone."""
    parts = [part.strip(" ,") for part in _PARTS.split(question) if part.strip(" ,")]
    if len(parts) < 2:
        return [question]
    return [part if part.endswith("?") else part + "?" for part in parts]


def reading_prompt(question: str, records: list[str], core: str) -> list[ChatMessage]:
    """The reading question: the records (best first), then `core` (what core memory keeps
    about the user, "" for nothing), then LoCoMo's question prompt."""
    request = READING_REQUEST.format(
        records="\n".join(records) or "(no records)",
        core=f"\n{CORE_HEADING}\n{core.strip()}\n" if core.strip() else "",
        not_found=NOT_FOUND,
        when=WHEN_HINT if asks_when(question) else "",
        several=SEVERAL_HINT if asks_several(question) else "",
        question=" ".join(question.split()),
    )
    return [ChatMessage("system", READING_SYSTEM), ChatMessage("user", request)]


def clean_answer(text: str) -> str:
    """The reading's answer as the note shows it: its first line, without a repeated
    "Short answer:", cut to ANSWER_CHARS; "" where it says the records do not hold it."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    answer = _LEAD.sub("", lines[0]).strip().strip('"').strip() if lines else ""
    if answer.startswith("[") and answer.endswith("]"):
        answer = answer[1:-1].strip()  # a record's date stamp copied whole: "[16 June 2023]"
    if not answer or NOT_FOUND in answer.lower():
        return ""
    answer = _without_repeats(answer)
    return answer if len(answer) <= ANSWER_CHARS else answer[: ANSWER_CHARS - 3].rstrip() + "..."


def _without_repeats(answer: str) -> str:
    """`answer` with each item of its comma-separated list said once: asked for several
    things, a small reader sometimes names one again and again ("Kyle, Kyle, Kyle")."""
    items = re.split(r",(?!\d)", answer)  # not the commas of "1,000,000"
    kept: dict[str, str] = {}
    for item in items:
        kept.setdefault(re.sub(r"[^\w\s]", "", item).lower().strip(), item)
    if len(kept) == len(items):
        return answer
    return ",".join(kept.values()).strip()


def grounded(answer: str, memory: str) -> bool:
    """Whether `answer` is made of what `memory` holds: more than half its numbers and uncommon
    words are in it. A reader asked something memory cannot answer sometimes answers anyway,
    from what it knows ("Paris") or by doing what was asked ("Sure! Here is a polite note:
    ..."); those words are not memory's."""
    words = untold_words(answer, _YES_NO)  # "yes" and "no" invent nothing
    return not words or len(untold_words(answer, memory + _YES_NO)) * 2 < len(words)


def read_answer(llm: LLMClient, question: str, hits: list[Recalled], core: str) -> Reading | None:
    """The reading of `hits` (best first, as shown: shown oldest first, a 1.5B reader copied
    the first record's date as the answer more often and scored lower, BENCHMARKS.md) and
    `core` for `question`, as many of the best hits as the model's window holds; None when the
    model call failed (the page-in note then shows the hits alone, as without reading).

    A question that asks two things (question_parts) is read whole, then each later part on
    its own: an answer to a part the whole reading did not give is added to it ("Brightwater
    Robotics; platform engineer"). On the scenarios' twelve such questions the reader gave
    both parts for 20 of 24 facts read whole, 23 this way, 22 reading each part alone (a
    later part's "he" or "there" lost what it points to)."""
    records = [hit.render() for hit in hits]
    memory = "\n".join([core, *records])
    answers: list[str] = []
    for index, asked in enumerate([question, *question_parts(question)[1:]]):
        answer = _read_one(llm, asked, records, core)
        if answer is None:
            if index == 0:
                return None
            continue
        answer = dated_as_read(answer, memory)  # "last week" read from an old record
        said = set(_words("; ".join(answers)))
        new = answer and not set(_words(answer)) <= said
        if new and (index == 0 or grounded(answer, memory)):
            answers.append(answer)
    answer = "; ".join(answers)
    return Reading(answer, grounded(answer, memory))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _read_one(llm: LLMClient, question: str, records: list[str], core: str) -> str | None:
    """The reader's answer to `question` ("" for not found); None when the call failed."""
    prompt = reading_prompt(question, records, core)
    while len(records) > 1 and llm.count_tokens(prompt) + ANSWER_TOKENS > llm.context_window:
        records = records[:-1]
        prompt = reading_prompt(question, records, core)
    try:
        completion = llm.complete(prompt, None, ANSWER_TOKENS)
    except MemexError as exc:
        logger.warning("reading memory for a question failed: %s", exc)
        return None
    return clean_answer(completion.text)
