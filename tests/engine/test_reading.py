"""engine.reading without a model: the prompt it builds and how its answer is read back."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.llm.scripted import ScriptedClient
from engine.memory.page_in import Recalled
from engine.reading import (
    ANSWER_CHARS,
    ANSWER_TOKENS,
    CORE_HEADING,
    SEVERAL_HINT,
    WHEN_HINT,
    Reading,
    asks,
    asks_for_help,
    asks_several,
    asks_when,
    clean_answer,
    grounded,
    question_parts,
    read_answer,
    reading_prompt,
)

DAY = dt.datetime(2025, 3, 4, 10, 15, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("Short answer: June 2023", "June 2023"),
        ('  "Kyle"\nQuestion: who else?', "Kyle"),  # a second line goes on by itself
        ("answer: a cozy restaurant", "a cozy restaurant"),
        ("[10 July 2023]", "10 July 2023"),  # a record's date stamp, copied
        ('Kyle, "Kyle", Kyle.', "Kyle"),  # a list that names one again and again
        ("Luna, Oliver", "Luna, Oliver"),
        ("$1,000,000", "$1,000,000"),  # a number's commas are no list
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


def test_the_prompt_holds_the_records_core_memory_and_ends_on_the_question():
    system, user = reading_prompt(
        "  What did we\nship? ", ["[3 March 2025, archival] Ship 3/3"], "Name: Dana"
    )
    assert system.role == "system" and user.role == "user"
    assert user.content.startswith("[3 March 2025, archival] Ship 3/3\n")  # records first
    assert f"{CORE_HEADING}\nName: Dana" in user.content
    assert WHEN_HINT not in user.content
    assert user.content.endswith("\n\nQuestion: What did we ship? Short answer:")


def test_an_empty_core_memory_is_left_out_and_a_question_of_when_gets_the_line_on_dates():
    _, user = reading_prompt("When do we ship?", ["[3 March 2025, archival] Ship 3/3"], " ")
    assert CORE_HEADING not in user.content
    assert f"write: not in memory{WHEN_HINT}\n\nQuestion: When do we ship?" in user.content


@pytest.mark.parametrize(
    ("question", "when"),
    [
        ("When did I move to Porto?", True),
        ("What date do I fly out to Reykjavik?", True),
        ("In which month's game did John score most?", True),
        ("How long ago did we meet?", True),
        ("Which city do I live in now?", False),
        ("What did you recommend when we talked about APIs?", False),
    ],
)
def test_a_question_of_when_is_told_apart(question, when):
    assert asks_when(question) is when


@pytest.mark.parametrize(
    ("question", "several"),
    [
        ("What books has Melanie read?", True),
        ("Which events has Jon taken part in?", True),
        ("What kinds of pets do I have?", True),
        ("What are my kids' names?", True),
        ("Who were at the party?", True),
        ("What does Jon's dance studio offer?", False),  # a verb, then a possessive
        ("What is my sister's address?", False),
        ("What type of class did I book?", False),  # "class" is one
        ("What news did he share?", False),
        ("Which city do I live in now?", False),
        ("When did I move to Porto?", False),
    ],
)
def test_a_question_for_several_things_is_told_apart(question, several):
    assert asks_several(question) is several


def test_a_question_for_several_things_asks_for_each_one():
    _, several = reading_prompt("What books have I read?", ["[3 March 2025, archival] Dune"], "")
    _, one = reading_prompt("What book did I read?", ["[3 March 2025, archival] Dune"], "")
    assert f"write: not in memory{SEVERAL_HINT}\n\nQuestion: What books" in several.content
    assert SEVERAL_HINT not in one.content


@pytest.mark.parametrize(
    ("answer", "memory", "is_grounded"),
    [
        ("7 May 2023", "[8 May 2023] I went to the group yesterday (7 May 2023).", True),
        ("Clayhaus, and Ottoline", "a class at Clayhaus; the instructor is Ottoline", True),
        ("Yes", "", True),  # invents nothing
        ("No, she would not", "", True),
        ("Paris", "user: I live in Porto.", False),  # what the reader knows, not memory
        (
            "Sure! Hi neighbour, could you move your bins off the shared path?",
            "user: my neighbour is Tom.",
            False,  # doing what was asked
        ),
        ("Django, a Python web framework", "Which web framework for the kiosk?", False),
    ],
)
def test_an_answer_is_grounded_when_most_of_its_words_are_memorys(answer, memory, is_grounded):
    assert grounded(answer, memory) is is_grounded


def test_a_reply_is_the_answer_as_a_sentence():
    assert Reading("7 May 2023").reply == "7 May 2023."
    assert Reading("is it Ingrid?").reply == "Is it Ingrid?"


def test_the_reading_reads_as_many_records_as_the_window_holds_best_first():
    prompts: list[str] = []

    def reader(messages):
        prompts.append(messages[-1].content)
        return "Falcon"

    client = ScriptedClient(n_ctx=512, reader=reader)
    hits = [
        Recalled("archival", DAY - dt.timedelta(days=i), f"({i}) " + "Falcon runs. " * 12)
        for i in range(20)
    ]
    reading = read_answer(client, "Which framework?", hits, "")
    assert reading == Reading("Falcon", grounded=True)
    (prompt,) = prompts
    assert "(0) " in prompt and "(19) " not in prompt  # the worst ones left out
    assert prompt.index("(0) ") < prompt.index("(1) ")  # shown best first
    assert client.count_tokens(client.readings[0]) + ANSWER_TOKENS <= 512


def test_a_relative_date_in_the_answer_becomes_the_date_its_record_meant():
    client = ScriptedClient(n_ctx=2048, reader=lambda messages: "last week")
    said = dt.datetime(2023, 10, 13, 9, 0, tzinfo=dt.UTC)
    hits = [Recalled("archival", said, "Tim: I was at the Harry Potter conference last week.")]
    reading = read_answer(client, "When was Tim at the conference?", hits, "")
    assert reading is not None and reading.answer == "the week before 13 October 2023"
    assert reading.grounded


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        (
            "Where do I work at the moment, and what's my role there?",
            ["Where do I work at the moment?", "what's my role there?"],
        ),
        (
            "What sport am I training in now, and with which club?",
            ["What sport am I training in now?", "with which club?"],
        ),
        ("On what date did I visit and book the venue?", None),  # one thing, two verbs
        ("What did Caroline and Melanie paint?", None),
    ],
)
def test_a_question_that_asks_two_things_is_told_apart(question, parts):
    assert question_parts(question) == (parts or [question])


def test_a_question_of_two_things_is_read_whole_then_its_later_part_alone():
    answers = {
        "Where do I work at the moment, and what's my role there?": "Brightwater Robotics",
        "what's my role there?": "platform engineer",
    }
    asked: list[str] = []

    def reader(messages):
        question = messages[-1].content.rpartition("Question: ")[2].removesuffix(" Short answer:")
        asked.append(question)
        return answers[question]

    client = ScriptedClient(reader=reader)
    hits = [
        Recalled("conversation", DAY, "user: I started at Brightwater Robotics this week."),
        Recalled("conversation", DAY, "user: I'm a platform engineer there now."),
    ]
    question = next(iter(answers))
    reading = read_answer(client, question, hits, "")
    assert asked == list(answers)
    assert reading == Reading("Brightwater Robotics; platform engineer", grounded=True)


@pytest.mark.parametrize(
    ("later", "shown"),
    [
        ("Brightwater Robotics", "Brightwater Robotics"),  # the whole reading gave it already
        ("not in memory", "Brightwater Robotics"),
        ("Kestrel Systems", "Brightwater Robotics"),  # not memory's words: left out
        ("brightwater robotics.", "Brightwater Robotics"),  # the same words
    ],
)
def test_a_later_part_adds_only_a_new_answer_from_memory(later, shown):
    def reader(messages):
        alone = messages[-1].content.endswith("Question: what's my role there? Short answer:")
        return later if alone else "Brightwater Robotics"

    hits = [Recalled("conversation", DAY, "user: I started at Brightwater Robotics.")]
    question = "Where do I work at the moment, and what's my role there?"
    reading = read_answer(ScriptedClient(reader=reader), question, hits, "")
    assert reading is not None and reading.answer == shown


@pytest.mark.parametrize(
    ("text", "helps"),
    [
        ("Which Python library would you recommend for it?", True),
        ("How do I descale a kettle with citric acid?", True),
        ("Any tips for the first-day drop-off?", True),
        ("What should I pack for a week in Iceland in January?", True),
        ("What's a quick weeknight dinner with chickpeas?", True),
        ("What library did you recommend back in our first chat?", False),  # the past: memory
        ("How do I like my coffee?", False),  # a preference, not a how-to
        ("Which hotel am I staying at in Reykjavik?", False),
        ("When did Caroline go to the LGBTQ support group?", False),
    ],
)
def test_a_request_for_help_is_told_from_a_question_about_memory(text, helps):
    assert asks_for_help(text) is helps
