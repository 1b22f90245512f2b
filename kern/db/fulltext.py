"""Turn a natural-language query into safe full-text search expressions.

The user's words never become SQL: the store binds the returned string as a parameter. The
string itself is still a small query language (FTS5 ``MATCH``, Postgres ``tsquery``), so every
term is quoted here and keywords such as ``NEAR``, ``AND``, ``-`` or ``*`` typed by a user are
searched as plain words. A query with no searchable word yields ``None``: the caller returns
no full-text hits instead of matching everything. ``kern.search`` re-exports both builders.
"""

from __future__ import annotations

from collections.abc import Sequence

from kern._text import WORD, query_terms
from kern.errors import InvalidArgumentError

__all__ = ["fts5_match", "tsquery"]


def _searchable(terms: Sequence[str]) -> list[str]:
    # Ready-made terms with no letter or digit would match nothing; drop them so that "no
    # searchable word" is always ``None``, never an expression that cannot match.
    return [t for t in terms if WORD.search(t)]


def _quote(term: str) -> str:
    # An FTS5 string is delimited by double quotes; a quote inside is written twice.
    return '"' + term.replace('"', '""') + '"'


def fts5_match(
    text: str | Sequence[str],
    *,
    operator: str = "OR",
    prefix: bool = False,
) -> str | None:
    """An FTS5 ``MATCH`` expression for ``text`` (a query or ready-made terms), or ``None``.

    Terms are quoted strings joined by ``OR`` (rank by BM25, any term may match) or ``AND``.
    ``prefix`` appends ``*`` so "paint" also finds "painting" under a non-stemming tokenizer.
    """
    if operator not in ("OR", "AND"):
        raise InvalidArgumentError(f"operator must be 'OR' or 'AND', got {operator!r}")
    terms = query_terms(text) if isinstance(text, str) else _searchable(text)
    if not terms:
        return None
    star = "*" if prefix else ""
    return f" {operator} ".join(_quote(t) + star for t in terms)


def tsquery(text: str | Sequence[str], *, operator: str = "|") -> str | None:
    """A Postgres ``to_tsquery`` argument for ``text``: quoted lexemes joined by ``|`` or ``&``.

    Bind it as a parameter (``to_tsquery('english', :q)``); quoting keeps user input from
    being read as tsquery operators.
    """
    if operator not in ("|", "&"):
        raise InvalidArgumentError(f"operator must be '|' or '&', got {operator!r}")
    terms = query_terms(text) if isinstance(text, str) else _searchable(text)
    if not terms:
        return None
    # Inside a tsquery a quote is doubled and a backslash escapes; words from tokenize() hold
    # neither, ready-made terms may.
    quoted = ("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms)
    return f" {operator} ".join(quoted)
