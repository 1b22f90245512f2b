"""The curator's precision guard: texts that differ in a number, a date, a name or a
negation are never duplicates, however similar; paraphrases are left to similarity."""

from __future__ import annotations

import pytest

from kern.learn.distinct import features, may_be_duplicates

DIFFERENT_FACTS = [
    ("Alice has two kids.", "Alice has three kids."),
    ("Alice has 2 kids.", "Alice has 3 kids."),
    ("Alice's flight is on May 3.", "Alice's flight is on May 4."),
    ("Alice's flight is on May 3.", "Alice's flight is on June 3."),
    ("The standup moved to Monday.", "The standup moved to Tuesday."),
    ("Alice was born in 1990.", "Alice was born in 1991."),
    ("The budget is 3.5 million.", "The budget is 4.5 million."),
    ("Alice works at Netflix.", "Alice works at Spotify."),
    ("Alice likes tea.", "Bob likes tea."),
    ("Alice likes tea.", "Alice doesn't like tea."),
    ("Alice eats meat.", "Alice never eats meat."),
    ("Alice is vegetarian.", "Alice is not vegetarian."),
    ("The meeting is at 10:30.", "The meeting is at 11:30."),
    ("Alice came second in the race.", "Alice came third in the race."),
]

SAME_FACT = [
    ("Alice has two kids.", "Alice has 2 kids."),
    ("Alice has two kids.", "alice has two kids"),
    ("Alice's flight is on May 3.", "Alice's flight is on the 3rd of May."),
    ("Alice does not eat meat.", "Alice never eats meat."),
    ("Alice doesn't eat meat.", "Alice does not eat meat."),
    ("Paid 1,000 dollars.", "Paid 1000 dollars."),
    ("Alice loves hiking in the Alps.", "Alice likes hiking in the Alps."),
    ("The user may prefer tea.", "The user may prefer green tea."),  # "may" is not a month
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT_FACTS)
def test_texts_that_differ_in_a_number_date_name_or_negation_are_never_duplicates(
    a: str, b: str
) -> None:
    assert not may_be_duplicates(a, b)
    assert not may_be_duplicates(b, a)


@pytest.mark.parametrize(("a", "b"), SAME_FACT)
def test_paraphrases_of_one_fact_are_left_to_similarity(a: str, b: str) -> None:
    assert may_be_duplicates(a, b)


def test_features_name_what_a_fact_hinges_on() -> None:
    found = features("Alice's flight to Paris is on Friday, May 3rd, not the 4th.")
    assert found.numbers == {"3", "4"}
    assert found.dates == {"friday", "may"}
    assert found.names == {"alice", "paris"}
    assert found.negated
