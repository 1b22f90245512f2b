"""What a user's export may hold: the rule ``import_user`` applies to every learning row.

An export is a file anyone can edit, so an import trusts none of it. A row is written only
where the app's own store would have written it for that user: its store is one of the
machine's stores, its kind one that store keeps, its content valid against the store's schema
for that kind (custom fields included), and its scope exactly the key the store computes for
the target user (and the row's session and agent). A crafted row cannot land in another
user's scope, in a namespace the store does not use, or hold content that later reads cannot
parse. The database layer (``kern.db.userdata``) knows nothing of stores, so the rule is
built here and handed to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kern.context import RunContext
from kern.db.userdata import ExportedLearning, RowCheck
from kern.learn.stores.base import LearningStore, Store
from kern.learn.stores.keyed import UserProfileStore

__all__ = ["import_check"]


def import_check(stores: Mapping[str, LearningStore]) -> RowCheck:
    """The row rule for an app with these stores (``LearningMachine.stores``)."""

    def check(user_id: str, row: ExportedLearning) -> str | None:
        store = stores.get(row.store)
        if store is None:
            return f"store {row.store!r} is not enabled in this app"
        if not isinstance(store, Store):
            return f"store {row.store!r} keeps its data its own way: kern cannot import its rows"
        return _check_row(store, user_id, row)

    return check


def _check_row(store: Store[Any], user_id: str, row: ExportedLearning) -> str | None:
    if row.kind not in store.kinds:
        return f"{row.store} keeps no rows of kind {row.kind!r} (kinds: {', '.join(store.kinds)})"
    ctx = RunContext(
        run_id="", session_id=row.session_id or "", user_id=user_id, agent_id=row.agent_id
    )
    expected = store.scope(ctx)
    if row.scope != expected:
        return f"its scope {row.scope!r} is not where {row.store} keeps {user_id!r}'s rows"
    if row.namespace != store.namespace:
        return f"its namespace {row.namespace!r} is not {row.store}'s ({store.namespace!r})"
    problem = _content_problem(store, row)
    return None if problem is None else f"its content does not fit the schema: {problem}"


def _content_problem(store: Store[Any], row: ExportedLearning) -> str | None:
    try:
        data = store.schema_for(row.kind).model_validate(row.content)
        if isinstance(store, UserProfileStore):
            # A profile row is one field: its name and value must fit the profile schema.
            field = getattr(data, "field", None)
            if field not in store.schema.model_fields:
                return f"the profile has no field {field!r}"
            store.updates.model_validate({field: getattr(data, "value", None)})
    except ValidationError as exc:
        return _first_error(exc)
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "content"
    return f"{where}: {error['msg']}"
