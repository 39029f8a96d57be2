"""Checks of what the model writes, before it reaches the user or core memory.

Small models fail in a few set ways, and each of these catches one; what they find goes back to
the model as a tool error, so it tries again (engine.agent bounds how often):

- a reply that repeats, word for word, an earlier reply still in view (a 0.5B model answers
  every new question with the last answer it gave), or that only says the user's message, or
  their question, back;
- a reply that states the user's facts as the assistant's own ("I work at Acme Corp." where
  core memory says the user works there): said to the user instead (swap_person);
- a core line appended that the block holds already;
- a replace that puts a name into core memory that no message, passage or block ever held (the
  model swapping the user's name for one it made up);
- a core line saved in answer to a message that only asks, holding words the message does not
  (the model saving its own guess at the answer, or an old fact again).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_WORD = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)
_TOKEN = re.compile(r"\w+(?:'\w+)*", re.UNICODE)  # words and numbers, for sameness
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SAYS_I = re.compile(r"\b(I|I'm|I’m|I've|I’ve|I'd|I’d|I'll|I’ll|[Mm]y|[Mm]e|[Mm]ine)\b")
_SECOND_PERSON = re.compile(r"\b(you|your|you're|you’re|yours|you've|you’ve)\b", re.I)
# words too common to tie a sentence to one fact of the user's
_COMMON = frozenset(
    [
        "a",
        "about",
        "after",
        "again",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "being",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "for",
        "from",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "like",
        "me",
        "more",
        "most",
        "my",
        "name",
        "named",
        "no",
        "not",
        "now",
        "of",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "user",
        "user's",
        "users",
        "human",
        "prefers",
        "prefer",
        "likes",
        "like",
        "works",
        "work",
        "working",
        "lives",
        "live",
        "living",
        "called",
        "is",
        "am",
    ]
)


def normalised(text: str) -> str:
    """Text compared for sameness: its words in lower case, punctuation and spacing aside."""
    return " ".join(_TOKEN.findall(text.lower().replace("’", "'")))


def _stem(word: str) -> str:
    """A crude stem, enough to match "works" with "work" and "moved" with "move"."""
    word = word.lower().replace("’", "'")
    for suffix in ("'s", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text) if w.lower() not in _COMMON and len(w) > 1}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


# -- replies ----------------------------------------------------------------------------------
def repeated_reply(reply: str, earlier: Iterable[str]) -> str | None:
    """The earlier reply `reply` repeats word for word (case and spacing aside), if any."""
    key = normalised(reply)
    return next((e for e in earlier if normalised(e) == key), None) if key else None


def without_echo(reply: str, asked: str) -> str:
    """`reply` less a copy of the user's message `asked` that opens it ("Where do I work? You
    work at ..." -> "You work at ..."); `reply` itself when it does not open so, or is only
    the copy (repeated_reply refuses that)."""
    words, echo = reply.split(), asked.split()
    if len(echo) < 4 or len(words) <= len(echo):
        return reply  # a word or three in common is no echo: "first" -> "first answer"
    if [w.lower() for w in words[: len(echo)]] != [w.lower() for w in echo]:
        return reply
    # cut in the original text after the echo's last word, keeping the rest's own spacing
    rest = reply
    for word in echo:
        rest = rest[rest.lower().index(word.lower()) + len(word) :]
    return rest.strip() or reply


def echoes(reply: str, asked: str) -> bool:
    """Whether `reply` only says the user's message `asked` back: every word of it, or all but
    one in ten, is the user's (a 0.5-1.5B model echoes what it was told)."""
    words = normalised(reply).split()
    theirs = set(normalised(asked).split())
    if len(words) < 4:
        return False  # "Yes, Flask." is an answer
    return sum(w in theirs for w in words) * 10 >= len(words) * 9


def asks_back(reply: str, asked: str) -> bool:
    """Whether `reply` answers the question `asked` with the same question: it only asks, and
    all its uncommon words but one in four are the user's ("When is my grant due now?" ->
    "What is the due date for my grant?"). A question back that brings its own words ("Do you
    mean the seed library one?") is not this."""
    if not only_questions(reply) or not only_questions(asked):
        return False
    words, theirs = _content_words(reply), _content_words(asked)
    return len(words) >= 2 and sum(w in theirs for w in words) * 4 >= len(words) * 3


# "I'm sorry, I can't assist with that.": the stock refusal, here to a request it could help with
_DECLINES = re.compile(
    r"\b(can['’]?t|cannot|am unable to|am not able to|won['’]t be able to)\s+(assist|help)\b",
    re.IGNORECASE,
)


def declines(reply: str) -> bool:
    """Whether `reply` declines to help ("I can't assist with that", "I'm unable to help")."""
    return bool(_DECLINES.search(reply.replace("I'm", "I am").replace("I’m", "I am")))


def users_own_sentences(messages: Iterable[str]) -> str:
    """The first-person sentences of the user's messages, a line each: what the user said of
    themselves, which the assistant must not say of itself."""
    return "\n".join(
        sentence for text in messages for sentence in sentences(text) if _SAYS_I.search(sentence)
    )


def claims_users_facts(reply: str, human_block: str, persona_block: str = "") -> str | None:
    """The first sentence of `reply` that states a line of the user's core facts (`human_block`)
    in the first person, as the assistant's own; None if none does (see claimed_sentences)."""
    return next(iter(claimed_sentences(reply, human_block, persona_block)), None)


def claimed_sentences(reply: str, human_block: str, persona_block: str = "") -> list[str]:
    """The sentences of `reply` that state a line of the user's core facts (`human_block`) in
    the first person, as the assistant's own.

    A sentence counts when it speaks of "I"/"my" and not of "you", and holds most of the
    distinctive words of one fact line, or most of its own are of one (two thirds), at least
    one of them not in the assistant's own persona (so "I am Memex" is never caught)."""
    own = _content_words(persona_block)
    facts = [_content_words(line) for line in human_block.splitlines()]
    facts = [f for f in facts if f]
    found = []
    for sentence in sentences(reply):
        if not _SAYS_I.search(sentence) or _SECOND_PERSON.search(sentence):
            continue
        if sentence.rstrip().endswith("?"):
            continue  # "Where do I work?" claims nothing
        words = _content_words(sentence)
        for fact in facts:
            shared = fact & words
            covers = min(len(fact), len(words))  # the fact's words, or all the sentence says
            if shared - own and len(shared) * 3 >= covers * 2:
                found.append(sentence)
                break
    return found


def in_users_voice(reply: str, human_block: str, persona_block: str = "") -> str:
    """`reply` with each sentence that claims the user's facts as the assistant's own said to
    the user instead ("I work at Acme Corp." -> "You work at Acme Corp."). Asked to write such
    a reply again, a 1.5B model wrote the same sentence again; the swap of person is exact."""
    for sentence in claimed_sentences(reply, human_block, persona_block):
        reply = reply.replace(sentence, swap_person(sentence, "you"), 1)
    return reply


# -- first person to second or third ----------------------------------------------------------
# "I" and its verb forms that change with it; everything else stays as written. Both "you" and
# "they" take the verb forms of "I" but for these, so the swap stays grammatical.
def _forms(subject: str, obj: str, possessive: str, owned: str, reflexive: str) -> dict[str, str]:
    return {
        "i am": f"{subject} are",
        "i was": f"{subject} were",
        "i wasn't": f"{subject} weren't",
        "i'm": f"{subject}'re",
        "i've": f"{subject}'ve",
        "i'd": f"{subject}'d",
        "i'll": f"{subject}'ll",
        "i": subject,
        "me": obj,
        "my": possessive,
        "mine": owned,
        "myself": reflexive,
        "am i": f"are {subject}",
        "was i": f"were {subject}",
    }


_PERSON_FORMS = {
    "you": _forms("you", "you", "your", "yours", "yourself"),
    "they": _forms("they", "them", "their", "theirs", "themselves"),
}
_FIRST_PERSON_FORM = re.compile(
    r"\b(?:am i|was i|i am|i was|i wasn['’]t|i['’](?:m|ve|d|ll)|i|me|my|mine|myself)\b",
    re.IGNORECASE,
)


def swap_person(text: str, to: str) -> str:
    """`text` with the first person ("I", "my", "I'm", ...) turned into `to` ("you" or
    "they"), the verbs that change with it ("am", "was") changed too, a capital kept where it
    starts a sentence."""
    forms = _PERSON_FORMS[to]

    def swap(match: re.Match[str]) -> str:
        said = match.group(0)
        key = said.lower().replace("’", "'")
        new = forms[key]
        starts = match.start() == 0 or text[: match.start()].rstrip()[-1:] in {".", "!", "?", '"'}
        # "I" is a capital anywhere; "you"/"they" are one only where a sentence starts (or
        # where the word swapped had one of its own: "My" in a title)
        capital = starts or (said[0].isupper() and not key.startswith("i"))
        return new[0].upper() + new[1:] if capital else new

    return _FIRST_PERSON_FORM.sub(swap, text)


# -- core memory ------------------------------------------------------------------------------
def first_person_lines(content: str) -> list[str]:
    """Lines of `content` that speak in the first person ("I ...", "My ...", or later in the
    line: "Project Marzipan is a billing rewrite. I'm the tech lead."): in the 'human' block
    they read later as the assistant's own facts (the model then says "I work at Acme")."""
    return [line for line in content.splitlines() if _SAYS_I.search(line)]


def in_third_person(content: str) -> str:
    """`content` for the 'human' block: each line written as "I ..." / "My ..." said of the
    user instead ("I work at Acme" -> "They work at Acme"); other lines as they are."""
    mine = set(first_person_lines(content))
    return "\n".join(
        swap_person(line, "they") if line in mine else line for line in content.splitlines()
    )


_QUESTION = re.compile(r"\?(\s|$)")  # a sentence of the line ends with a question mark


def question_lines(content: str) -> list[str]:
    """Lines of `content` that are questions: a small model saves the user's question ("What
    car do I drive?") as if it were a fact, and the saved question then answers nothing."""
    return [line for line in content.splitlines() if _QUESTION.search(line)]


def lines_already_held(content: str, block_value: str) -> tuple[list[str], list[str]]:
    """`content`'s lines split into those the block holds already (as a line, case, spacing and
    end punctuation aside) and the new ones, each in order."""
    held_lines = {normalised(line) for line in block_value.splitlines() if line.strip()}
    held: list[str] = []
    new: list[str] = []
    for line in content.splitlines():
        if not line.strip():
            continue
        (held if normalised(line) in held_lines else new).append(line)
    return held, new


def only_questions(text: str) -> bool:
    """Whether every sentence of `text` is a question: such a message tells nothing to save."""
    said = sentences(text)
    return bool(said) and all(s.rstrip("\"'’” )").endswith("?") for s in said)


def untold_words(content: str, message: str) -> list[str]:
    """The numbers and uncommon words of `content` that `message` lacks (stemmed, case aside),
    in order: what a core line saved in answer to that message adds to it."""
    told = {_told_key(t) for t in _TOKEN.findall(message.replace("’", "'"))}
    found: list[str] = []
    for token in _TOKEN.findall(content.replace("’", "'")):
        base = token.lower().split("'")[0]
        if base in _COMMON or (len(base) <= 2 and not base.isdigit()):
            continue
        if _stem(base) not in told and token not in found:
            found.append(token)
    return found


def _told_key(token: str) -> str:
    return _stem(token.lower().split("'")[0])


def introduced_names(old: str, new: str) -> list[str]:
    """Capitalised words in `new` that `old` lacks and that are not common words: the names a
    replace puts in ("Name: Alice" -> "Name: Bob" puts in "Bob"). A capitalised plain word that
    starts a sentence is among them too; was_said finds it in what was said, as it should."""
    before = {w.lower() for w in _WORD.findall(old)}
    found: list[str] = []
    for word in _WORD.findall(new):
        lower = word.lower()
        if word[0].isupper() and lower not in before and lower not in _COMMON and word not in found:
            found.append(word)
    return found


def unheard_names(old: str, new: str, was_said: Callable[[str], bool]) -> list[str]:
    """The names `new` puts in (see introduced_names) that `was_said` never heard."""
    return [name for name in introduced_names(old, new) if not was_said(name)]
