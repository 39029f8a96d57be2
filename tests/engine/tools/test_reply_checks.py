"""The checks of what the model writes (engine.tools.reply_checks), on their own."""

from __future__ import annotations

from engine.tools.reply_checks import (
    asks_back,
    claims_users_facts,
    declines,
    first_person_lines,
    in_third_person,
    in_users_voice,
    introduced_names,
    lines_already_held,
    normalised,
    only_questions,
    question_lines,
    repeated_reply,
    swap_person,
    untold_words,
    without_echo,
)

HUMAN = "Name: Alice\nPython developer\nWorks at Acme Corp\nBuilding a REST API for inventory"
PERSONA = "I am Memex. A helpful assistant with a long memory."


def test_the_users_facts_in_the_first_person_are_caught():
    assert claims_users_facts("I work at Acme Corp.", HUMAN, PERSONA) == "I work at Acme Corp."
    assert claims_users_facts("Sure! My name is Alice.", HUMAN, PERSONA) == "My name is Alice."
    said = "I'm ready to start developing a dark mode and working at Acme Corp."
    assert claims_users_facts(said, HUMAN, PERSONA) == said


def test_speaking_of_the_user_or_of_itself_is_not_caught():
    assert claims_users_facts("You work at Acme Corp.", HUMAN, PERSONA) is None
    assert claims_users_facts("I know you work at Acme Corp.", HUMAN, PERSONA) is None
    assert claims_users_facts("I'm Memex, nice to meet you, Alice!", HUMAN, PERSONA) is None
    assert claims_users_facts("I am Memex, a helpful assistant.", HUMAN, PERSONA) is None
    assert claims_users_facts("I recommend FastAPI for the REST API.", HUMAN, PERSONA) is None
    assert claims_users_facts("I work at Acme Corp.", "", PERSONA) is None


def test_a_claimed_sentence_is_said_to_the_user_and_the_rest_left_as_written():
    reply = "Hello! My name is Alice. I work at Acme Corp. How can I help? Where do I work?"
    assert in_users_voice(reply, HUMAN, PERSONA) == (
        "Hello! Your name is Alice. You work at Acme Corp. How can I help? Where do I work?"
    )
    assert in_users_voice("I am Memex.", HUMAN, PERSONA) == "I am Memex."


def test_the_first_person_swapped_keeps_the_verbs_and_capitals_right():
    said = "Sure! I'm Alice and I was born in Oslo; my cat is mine. Am I late? I wasn't."
    assert swap_person(said, "you") == (
        "Sure! You're Alice and you were born in Oslo; your cat is yours. Are you late? "
        "You weren't."
    )
    assert swap_person("I am tired of me and myself", "they") == (
        "They are tired of them and themselves"
    )
    assert swap_person("I’ve moved", "you") == "You've moved"
    assert swap_person("Mine is the Imperial one", "they") == "Theirs is the Imperial one"
    assert in_third_person("I work at Acme\nPrefers dark mode\nMy sister is Ingrid") == (
        "They work at Acme\nPrefers dark mode\nTheir sister is Ingrid"
    )


def test_repeats_and_echoes_are_found_whatever_the_case_and_punctuation():
    assert normalised("Notes: we ship on March 3!") == normalised("notes we ship on March 3")
    assert normalised("on March 3") != normalised("on March 4")
    assert repeated_reply("hello there.", ["Hi", "Hello there!"]) == "Hello there!"
    assert repeated_reply("Hello there, Bob", ["Hello there!"]) is None
    asked = "Where do I work?"
    assert without_echo("Where do I work? You work at Kestrel.", asked) == "You work at Kestrel."
    assert without_echo("where do I work? You work there.", asked) == "You work there."
    assert without_echo("Where do I work?", asked) == "Where do I work?"  # refused instead
    assert without_echo("You work at Kestrel.", asked) == "You work at Kestrel."
    assert without_echo("first answer", "first") == "first answer"


def test_a_question_answered_with_the_same_question_is_found():
    asked = "When is my Tidewater grant proposal due now?"
    assert asks_back("What is the due date for my Tidewater grant proposal?", asked)
    assert not asks_back("Do you mean the seed library one?", asked)  # words of its own
    assert not asks_back("It is due on December 18. Anything else?", asked)  # it answers
    assert not asks_back("When is it due?", "My grant is due soon.")  # they did not ask


def test_core_lines_already_held_and_first_person_lines():
    assert lines_already_held("name: alice.\nLikes tea", "Name: Alice\nWorks at X") == (
        ["name: alice."],
        ["Likes tea"],
    )
    assert lines_already_held("", "Name: Alice") == ([], [])
    assert first_person_lines("I prefer dark mode\nWorks at X\nMy cat is Miso") == [
        "I prefer dark mode",
        "My cat is Miso",
    ]
    # the first person later in the line is the user's too (a 1.5B model saved this line)
    saved = "Project Marzipan is a billing rewrite. I'm the tech lead and Ola is the PM."
    assert first_person_lines(f"{saved}\nLikes Imagine Dragons") == [saved]
    assert in_third_person(saved) == (
        "Project Marzipan is a billing rewrite. They're the tech lead and Ola is the PM."
    )


def test_names_a_replace_puts_in():
    assert introduced_names("Name: Alice", "Name: Bob") == ["Bob"]
    assert introduced_names("Alice", "Bob") == ["Bob"]
    assert introduced_names("Lives in Paris", "Lives in Berlin") == ["Berlin"]
    assert introduced_names("Likes tea", "likes green tea") == []
    assert introduced_names("Name: Alice", "Name: Alice Smith") == ["Smith"]


def test_a_line_holding_a_question_is_one_whatever_follows_it():
    content = "Flying to Reykjavik on 9 January\nWhat should I pack? I run cold.\nLikes 3.5?x"
    assert question_lines(content) == ["What should I pack? I run cold."]
    assert question_lines("Asked about FastAPI vs Flask") == []


def test_a_message_of_questions_only_is_told_from_one_that_tells_too():
    assert only_questions("Which city do I live in now?")
    assert only_questions("Where do I work? And since when?")
    assert only_questions('Can you remember that my sister is "Ingrid?"')
    assert not only_questions("I moved to Porto. Which city do I live in now?")
    assert not only_questions("I moved to Porto!")
    assert not only_questions("")


def test_untold_words_are_the_numbers_and_uncommon_words_a_line_adds_to_the_message():
    asked = "How much am I paying for the pottery course?"
    assert untold_words("They’re paying $100 for the pottery course.", asked) == ["100"]
    assert untold_words("They live in Tampere.", "Which city do I live in now?") == ["Tampere"]
    assert untold_words("Sister: Ingrid", "Can you remember that my sister is Ingrid?") == []
    assert untold_words("Pays for the Pottery course", asked) == []  # stems and case aside


def test_a_reply_declining_to_help_is_told_apart():
    assert declines("I'm sorry, I can't assist with that. What else would you like to know?")
    assert declines("I’m unable to help with drafting agendas.")
    assert declines("I cannot help you there.")
    assert not declines("Sure, I can help! Here is a draft.")
    assert not declines("You can't go wrong with Flask.")
