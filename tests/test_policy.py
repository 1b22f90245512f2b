"""The shared-namespace write policy, as a pure function: a user's turn adds to shared
knowledge but never changes, removes or approves what it may not."""

from __future__ import annotations

import pytest

from kern.db.base import Create, LearningRecord, SetStatus, Update
from kern.learn.policy import SharedWriteError, check_turn_writes, shared_as_proposals


def row(
    id: str, user: str, namespace: str | None = "global", status: str = "active"
) -> LearningRecord:
    scope = f"ns/{namespace}" if namespace not in (None, "user") else f"user/{user}"
    return LearningRecord(
        id=id,
        store="entity_memory",
        kind="fact",
        scope=scope,
        content={"entity": "Acme", "fact": "x"},
        text="x",
        user_id=user,
        namespace=namespace,
        status=status,  # type: ignore[arg-type]
    )


ALICE_FACT = row("a1", "alice")
BOB_FACT = row("b1", "bob")
BOB_PROPOSAL = row("b2", "bob", status="proposed")
BOB_PRIVATE = row("b3", "bob", namespace="user")
CURRENT = {r.id: r for r in (ALICE_FACT, BOB_FACT, BOB_PROPOSAL, BOB_PRIVATE)}


def update(id: str) -> Update:
    return Update(id, {"entity": "Acme", "fact": "y"}, "y", "h")


def test_a_turn_may_add_to_a_shared_namespace_and_change_its_own_items() -> None:
    check_turn_writes([Create(row("new", "bob"))], CURRENT, "bob")
    check_turn_writes([update("b1"), SetStatus("b1", "deleted", "delete")], CURRENT, "bob")


@pytest.mark.parametrize(
    "op",
    [update("a1"), SetStatus("a1", "deleted", "delete")],
    ids=["update", "delete"],
)
def test_a_turn_never_changes_or_removes_another_users_shared_item(op: object) -> None:
    with pytest.raises(SharedWriteError, match="another user wrote"):
        check_turn_writes([op], CURRENT, "bob")  # type: ignore[list-item]


def test_a_turn_never_approves_a_shared_proposal_not_even_its_own() -> None:
    approve = SetStatus("b2", "active", "approve", from_statuses=("proposed",))
    with pytest.raises(SharedWriteError, match="only an admin or the application"):
        check_turn_writes([approve], CURRENT, "bob")


def test_a_shared_item_records_the_user_whose_turn_wrote_it() -> None:
    with pytest.raises(SharedWriteError, match="records the user"):
        check_turn_writes([Create(row("new", "alice"))], CURRENT, "bob")


def test_private_rows_are_not_the_policys_business() -> None:
    check_turn_writes([update("b3")], CURRENT, "bob")


def test_the_propose_option_turns_shared_additions_into_proposals() -> None:
    ops = shared_as_proposals([Create(row("n1", "bob")), Create(row("n2", "bob", "user"))])
    assert [op.record.status for op in ops if isinstance(op, Create)] == ["proposed", "active"]


def test_a_turn_never_supersedes_or_closes_another_users_shared_item() -> None:
    from kern.db.base import Close, Supersede

    for op in (Supersede("a1", row("new", "bob")), Close("a1")):
        with pytest.raises(SharedWriteError, match="another user wrote"):
            check_turn_writes([op], CURRENT, "bob")
    check_turn_writes([Supersede("b1", row("new", "bob")), Close("b1")], CURRENT, "bob")
