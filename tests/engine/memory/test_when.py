"""Relative dates in remembered text, resolved against the day it was said."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.memory.when import dated_as_read, resolve_relative_dates

MONDAY = dt.datetime(2023, 5, 8, 13, 56, tzinfo=dt.UTC)  # 8 May 2023 was a Monday


@pytest.mark.parametrize(
    ("said", "meant"),
    [
        ("I went to the group yesterday.", "yesterday (7 May 2023)"),
        ("We talked last night.", "last night (7 May 2023)"),
        ("It was the day before yesterday.", "the day before yesterday (6 May 2023)"),
        ("See you tomorrow!", "tomorrow (9 May 2023)"),
        ("I ran last Saturday.", "last Saturday (6 May 2023)"),
        ("We leave next friday.", "next friday (12 May 2023)"),
        ("We camped last weekend.", "last weekend (the weekend before 8 May 2023)"),
        ("I started last week.", "last week (the week before 8 May 2023)"),
        ("It opens next month.", "next month (June 2023)"),
        ("I moved last year.", "last year (2022)"),
        ("I adopted her 3 days ago.", "3 days ago (5 May 2023)"),
        ("I quit two weeks ago.", "two weeks ago (about 24 April 2023)"),
        ("We met five years ago.", "five years ago (2018)"),
        ("I painted it a month ago.", "a month ago (April 2023)"),
    ],
)
def test_a_relative_date_is_followed_by_the_day_it_meant(said, meant):
    assert meant in resolve_relative_dates(said, MONDAY)


def test_last_monday_said_on_a_monday_is_the_week_before_and_january_wraps_to_december():
    assert "last Monday (1 May 2023)" in resolve_relative_dates("last Monday", MONDAY)
    new_year = dt.date(2024, 1, 2)
    assert resolve_relative_dates("last month", new_year) == "last month (December 2023)"


def test_text_without_relative_dates_or_with_them_resolved_already_is_unchanged():
    plain = "On 3 May we met; the week was long, and last of all came Friday."
    assert resolve_relative_dates(plain, MONDAY) == plain
    once = resolve_relative_dates("I left yesterday.", MONDAY)
    assert resolve_relative_dates(once, MONDAY) == once


def test_a_relative_date_read_from_a_record_becomes_the_date_it_meant():
    records = "[13 October 2023, archival] Tim: I was at the conference last week (the week before 13 October 2023)."
    assert (
        dated_as_read("The conference was last week.", records)
        == "The conference was the week before 13 October 2023."
    )
    assert dated_as_read("Last week", records) == "the week before 13 October 2023"


def test_a_relative_date_the_records_do_not_settle_is_left_alone():
    two = "[1 May 2023] yesterday (30 April 2023)\n[9 May 2023] yesterday (8 May 2023)"
    assert dated_as_read("yesterday", two) == "yesterday"
    assert dated_as_read("yesterday", "[1 May 2023] nothing relative") == "yesterday"
    # copied with its date already: left as it is
    once = "[1 May 2023] yesterday (30 April 2023)"
    assert dated_as_read("yesterday (30 April 2023)", once) == "yesterday (30 April 2023)"
