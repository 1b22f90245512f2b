"""Words of a text as kern's search sees them: tokens, query terms and stopwords.

Below every layer that reads text: the database engines build full-text queries from these
terms (``kern.db.fulltext``), hybrid ranking and the hash embedder (``kern.search``) split text
the same way, so a word means the same thing to each of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kern.limits import MAX_QUERY_TERMS

__all__ = ["STOPWORDS", "WORD", "query_terms", "tokenize"]

# \w is Unicode-aware in Python: letters and digits of any script, plus "_". FTS5's unicode61
# tokenizer treats "_" as a separator, so it is split off here too, keeping both sides aligned.
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")

# Function words and question words: in an OR query they match most memories and only add
# noise to BM25. Kept short on purpose; content words ("work", "name", "year") are not here.
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves s t d ll m re ve don didn doesn isn wasn weren aren won wouldn shouldn couldn
    also get got ever might may must shall let us yes ok okay
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text`` (any script), apostrophe contractions kept whole."""
    return [m.group(0).replace("’", "'").lower() for m in WORD.finditer(text)]


def query_terms(
    text: str, *, stopwords: Iterable[str] = STOPWORDS, limit: int | None = MAX_QUERY_TERMS
) -> list[str]:
    """Distinct search terms of ``text`` in first-seen order, stopwords dropped, at most
    ``limit`` of them (``kern.limits.MAX_QUERY_TERMS``; ``None``: all).

    Possessives lose their ``'s`` ("Caroline's" → "caroline"). If every word is a stopword
    the words are kept, so "who am I?" still searches for something. Linear in the length of
    ``text`` (a set remembers the words seen), and it stops reading once ``limit`` terms are
    found: a 100,000-character message costs what its first terms cost.
    """
    stop = stopwords if isinstance(stopwords, frozenset | set) else frozenset(stopwords)
    seen: dict[str, None] = {}  # insertion-ordered set
    kept: list[str] = []
    for match in WORD.finditer(text):
        word = match.group(0).replace("’", "'").lower()
        base = word[:-2] if word.endswith("'s") else word
        for part in base.split("'"):
            if not part or part in seen:
                continue
            seen[part] = None
            if part not in stop:
                kept.append(part)
                if limit is not None and len(kept) >= limit:
                    return kept
    return kept or list(seen)[:limit]
