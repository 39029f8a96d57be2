"""Relative dates in remembered text, resolved against the day the text was said.

"I went to the support group yesterday", said on 8 May 2023 and read a month later, means 7
May 2023; a small model reading it beside its date rarely does that sum, so asked "when did
she go?" it answers with the day it was said. When memory shows a remembered message or passage
(engine.memory.page_in), each relative date in it is followed by the date it meant:
"yesterday (7 May 2023)", "last Saturday (6 May 2023)", "last week (the week before 8 May
2023)". The stored text is never changed.
"""

from __future__ import annotations

import datetime as dt
import re

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_COUNT = r"(\d+|" + "|".join(NUMBERS) + r")"
_WEEKDAY = "(" + "|".join(WEEKDAYS) + ")"
_EXPRESSION = re.compile(
    r"\b(?:"
    r"(?P<before_yesterday>the day before yesterday)"
    r"|(?P<yesterday>yesterday|last night)"
    r"|(?P<tomorrow>tomorrow)"
    r"|(?P<last_weekday>last " + _WEEKDAY + r")"
    r"|(?P<next_weekday>next " + _WEEKDAY + r")"
    r"|(?P<last_span>last (?:week(?:end)?|month|year))"
    r"|(?P<next_span>next (?:week(?:end)?|month|year))"
    r"|(?P<ago>" + _COUNT + r" (?:day|week|month|year)s? ago)"
    r")\b(?! \()",  # not again where a date in brackets follows already
    re.IGNORECASE,
)


def day(when: dt.date) -> str:
    """ "8 May 2023": the way people write a date."""
    return f"{when.day} {when:%B %Y}"


def _month(when: dt.date, months: int) -> str:
    index = when.year * 12 + when.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1).strftime("%B %Y")


def _weekday_near(said: dt.date, name: str, forward: bool) -> dt.date:
    """The nearest `name`day strictly before (or after) `said`."""
    target = WEEKDAYS.index(name.lower())
    step = 1 if forward else -1
    when = said + dt.timedelta(days=step)
    while when.weekday() != target:
        when += dt.timedelta(days=step)
    return when


def _span(said: dt.date, words: str) -> str:
    direction, unit = words.lower().split()
    sign = 1 if direction == "next" else -1
    if unit == "month":
        return _month(said, sign)
    if unit == "year":
        return str(said.year + sign)
    return f"the {unit} {'after' if sign > 0 else 'before'} {day(said)}"


def _ago(said: dt.date, words: str) -> str:
    count_word, unit, _ = words.lower().split()
    count = NUMBERS.get(count_word) or int(count_word)
    unit = unit.rstrip("s")
    if unit == "day":
        return day(said - dt.timedelta(days=count))
    if unit == "week":
        return f"about {day(said - dt.timedelta(weeks=count))}"
    if unit == "month":
        return _month(said, -count)
    return str(said.year - count)


def _meaning(match: re.Match[str], said: dt.date) -> str:
    kind = match.lastgroup
    text = match.group(0)
    if kind == "before_yesterday":
        return day(said - dt.timedelta(days=2))
    if kind == "yesterday":
        return day(said - dt.timedelta(days=1))
    if kind == "tomorrow":
        return day(said + dt.timedelta(days=1))
    if kind in ("last_weekday", "next_weekday"):
        return day(_weekday_near(said, text.split()[1], forward=kind == "next_weekday"))
    if kind in ("last_span", "next_span"):
        return _span(said, text)
    return _ago(said, text)


def resolve_relative_dates(text: str, said: dt.datetime | dt.date) -> str:
    """`text` with each relative date followed by the date it meant, said on `said`."""
    said_day = said.date() if isinstance(said, dt.datetime) else said
    return _EXPRESSION.sub(lambda m: f"{m.group(0)} ({_meaning(m, said_day)})", text)


def dated_as_read(answer: str, records: str) -> str:
    """`answer` with each relative date it copied from `records` (rendered by
    resolve_relative_dates) replaced by the date it meant there: read months later, "last week"
    from a record of 13 October 2023 is "the week before 13 October 2023", not last week. A
    phrase the records resolve to two different dates is left as it is."""

    def meant(match: re.Match[str]) -> str:
        phrase = re.escape(match.group(0))
        found = {m.group(1) for m in re.finditer(phrase + r" \(([^()]+)\)", records, re.I)}
        return found.pop() if len(found) == 1 else match.group(0)

    return _EXPRESSION.sub(meant, answer)
