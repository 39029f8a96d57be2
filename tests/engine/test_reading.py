"""engine.reading without a model: the prompt it builds and how its answer is read back."""

from __future__ import annotations

import pytest

from engine.reading import ANSWER_CHARS, asks, clean_answer, reading_prompt


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("Short answer: June 2023", "June 2023"),
        ('  "Kyle"\nQuestion: who else?', "Kyle"),  # a second line goes on by itself
        ("answer: a cozy restaurant", "a cozy restaurant"),
        ("Not in memory.", ""),
        ("The records say: not in memory", ""),
        ("", ""),
        ("x" * 500, "x" * (ANSWER_CHARS - 3) + "..."),
    ],
)
def test_the_answer_is_its_first_line_without_a_repeated_lead(said, shown):
    assert clean_answer(said) == shown


def test_a_message_asks_when_it_holds_a_question_mark():
    assert asks("Where do I work?") and asks("I moved. Do you know a good cafe in Berlin?")
    assert not asks("I moved to Berlin last week.")


def test_the_prompt_holds_core_memory_the_records_and_ends_on_the_question():
    system, user = reading_prompt("  When do we\nship? ", ["[3 March 2025, archival] Ship 3/3"], "")
    assert system.role == "system" and user.role == "user"
    assert "(nothing yet)" in user.content  # an empty core memory says so
    assert "[3 March 2025, archival] Ship 3/3" in user.content
    assert user.content.endswith("Question: When do we ship? Short answer:")
