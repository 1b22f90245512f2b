"""When two texts say the same thing, and when similar texts are still two facts.

``distinct`` keeps a recalled block from saying a thing twice (the same words, or nearly).

Embeddings place "Alice has two kids." and "Alice has three kids." almost on top of each other
(cosine ≥ 0.92 with all-MiniLM-L6-v2), and so are "… flight is on May 3." and "… May 4.".
Merging either pair deletes a true fact. ``may_be_duplicates`` says *no* whenever the texts
differ in what makes a fact a fact — a number (digits or words, ordinals too), a date word
(month, weekday), a name (a capitalised word that is not a common sentence opener), or a
negation — whatever their similarity. It never says two texts *are* duplicates: similarity
decides that, this only vetoes. Pure: strings in, a bool out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Features", "distinct", "features", "may_be_duplicates", "overlap", "words"]

T = TypeVar("T")
_WORD = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    """The lower-cased words of ``text``: what near-duplicate checks compare."""
    return frozenset(w.lower() for w in _WORD.findall(text))


def overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """The share of words two texts have in common (Jaccard); 0 when either has none."""
    return len(a & b) / len(a | b) if a and b else 0.0


def distinct(rows: Iterable[T], text: Callable[[T], str], *, threshold: float = 0.9) -> list[T]:
    """``rows`` without repeats: the same row twice, or near-identical text (the same words,
    or at least ``threshold`` of them in common), keeping the first of each group: the
    recalled block never says a thing twice. A past row never hides a current one."""
    kept: list[tuple[T, frozenset[str]]] = []
    for row in rows:
        mine = words(text(row))
        if any(
            row is other
            or ((mine == seen or overlap(mine, seen) >= threshold) and _same_time(row, other))
            for other, seen in kept
        ):
            continue
        kept.append((row, mine))
    return [r for r, _ in kept]


def _same_time(a: Any, b: Any) -> bool:
    return (a.status, a.valid_to, a.expires_at) == (b.status, b.valid_to, b.expires_at)


_NUMBER_WORDS = {
    word: value
    for value, words in enumerate(
        [
            "zero none",
            "one first",
            "two twice second",
            "three thrice third",
            "four fourth",
            "five fifth",
            "six sixth",
            "seven seventh",
            "eight eighth",
            "nine ninth",
            "ten tenth",
            "eleven eleventh",
            "twelve twelfth dozen",
            "thirteen thirteenth",
            "fourteen fourteenth",
            "fifteen fifteenth",
            "sixteen sixteenth",
            "seventeen seventeenth",
            "eighteen eighteenth",
            "nineteen nineteenth",
            "twenty twentieth",
        ]
    )
    for word in words.split()
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80}
_NUMBER_WORDS |= {"ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6}
_NUMBER_WORDS.pop("none")  # "none" is a negation, below

_MONTHS = "january february march april may june july august september october november december"
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday"
_DATE_WORDS = {
    name[:length]: name for name in (_MONTHS + " " + _WEEKDAYS).split() for length in (3, len(name))
} | {"sept": "september", "tues": "tuesday", "thur": "thursday", "thurs": "thursday"}
_DATE_WORDS |= {"today": "today", "tomorrow": "tomorrow", "yesterday": "yesterday"}
# Date words that are also common words ("you may", "sat down"): dates only when capitalised.
_AMBIGUOUS_DATES = frozenset({"may", "march", "mar", "sat", "sun", "wed", "jan", "dec", "thu"})

_NEGATION_TEXT = (
    "not no never none nobody nothing nowhere neither nor without cannot cant won't can't "
    "don't doesn't didn't isn't aren't wasn't weren't hasn't haven't hadn't shouldn't "
    "wouldn't couldn't mustn't dont doesnt didnt isnt arent wasnt werent"
)
_NEGATIONS = frozenset(_NEGATION_TEXT.split())

# Capitalised words that open sentences without naming anything.
_OPENER_TEXT = (
    "a an the i i'm i've i'd i'll he she it we you they his her its our your their my me us "
    "this that these those there here what when where who why how which if then so and but or "
    "user users assistant also after before during while since until as at by for from in "
    "into of on to with about all any each every some most many few both either "
    "is are was were be been has have had do does did will would can could should may might "
    "must shall yes ok okay please thanks note"
)
_OPENERS = frozenset(_OPENER_TEXT.split())

_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*(?:st|nd|rd|th)?|[^\W\d_]+(?:['’][^\W\d_]+)?")
_MONTH_DAY = re.compile(r"^\d+(?:st|nd|rd|th)$")


@dataclass(frozen=True, slots=True)
class Features:
    """What two texts must share to be the same fact."""

    numbers: frozenset[str]
    dates: frozenset[str]
    names: frozenset[str]
    negated: bool
    #: Every word, lower-cased: a name written in lower case in the other text still matches.
    words: frozenset[str] = frozenset()


def features(text: str) -> Features:
    numbers: set[str] = set()
    dates: set[str] = set()
    names: set[str] = set()
    words: set[str] = set()
    negated = False
    for token in _TOKEN.findall(text.replace("’", "'")):
        lower = token.lower()
        words.add(lower.removesuffix("'s"))
        if token[0].isdigit():
            digits = lower[:-2] if _MONTH_DAY.match(lower) else lower
            numbers.add(_number(digits))
            continue
        base = lower.removesuffix("'s")
        if lower in _NEGATIONS or lower.endswith("n't"):
            negated = True
        elif base in _NUMBER_WORDS:
            numbers.add(str(_NUMBER_WORDS[base]))
        elif base in _DATE_WORDS and (token[0].isupper() or base not in _AMBIGUOUS_DATES):
            dates.add(_DATE_WORDS[base])
        elif token[0].isupper() and base not in _OPENERS:
            names.add(base)
    return Features(
        frozenset(numbers), frozenset(dates), frozenset(names), negated, frozenset(words)
    )


def may_be_duplicates(a: str, b: str) -> bool:
    """``False`` when ``a`` and ``b`` differ in a number, a date, a name or a negation: then
    they state different facts, however similar. ``True`` leaves the call to similarity."""
    first, second = features(a), features(b)
    return (
        first.numbers == second.numbers
        and first.dates <= second.dates | second.words  # "March" / "march": one month
        and second.dates <= first.dates | first.words
        and first.negated == second.negated
        and first.names <= second.words
        and second.names <= first.words
    )


def _number(digits: str) -> str:
    """ "1,000" and "1000" are one number; "3.5" and "10:30" keep their parts."""
    plain = digits.replace(",", "")
    try:
        return str(float(plain)) if "." in plain else str(int(plain))
    except ValueError:
        return digits
