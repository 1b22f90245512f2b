"""The web UI in a real browser (headless Debian chromium through Playwright), against
``create_app`` served by uvicorn: browse a seeded user's memories and an item's history,
approve a proposal and see it recalled (formatted, with its store and reason) in the next chat
turn; delete with a confirmation and restore; edit profile fields by their labels; sessions
with a count and a preview; the jobs view with a failed job retried. One screenshot per page
goes to ``test-artifacts/ui/`` (gitignored; the path is printed, see it with ``pytest -s``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kern._sync import wait_for_background
from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.models.testing import FunctionModel
from tests.test_server_support import ADMIN, ALICE, TOKENS, answer, failed_job, machine, seed

CHROMIUM = Path(os.environ.get("KERN_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = '<img src=x onerror="window.__pwned = 1">'

if not CHROMIUM.exists():
    pytest.skip(
        f"!!! BROWSER TESTS NOT RUN: no chromium at {CHROMIUM}. Install it with "
        "`apt-get install -y chromium` (make test does this) or set KERN_TEST_CHROMIUM !!!",
        allow_module_level=True,
    )
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
uvicorn = pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Agent]]:
    """The app on a free port, served by uvicorn in a thread."""
    from kern.server import create_app

    db = SqliteDb(db_file=str(tmp_path / "ui.db"))
    agent = Agent(model=FunctionModel(answer), db=db, learning=machine())
    port = free_port()
    config = uvicorn.Config(
        create_app(agent, tokens=TOKENS), host="127.0.0.1", port=port, log_level="warning"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", agent
    uv.should_exit = True
    thread.join(10)
    wait_for_background()
    db.close()


@pytest.fixture
def page(server: tuple[str, Agent]) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
        yield page
        context.close()
        browser.close()
        assert errors == [], errors


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(base + "/")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")


def test_browse_approve_and_chat(server: tuple[str, Agent], page: Any) -> None:
    base, agent = server
    ids = seed(agent, "alice")
    seed(agent, "bob")
    lm = agent.get_learning_machine()
    assert lm is not None
    lm.user_memory.add(f"alice pasted {XSS}", user_id="alice")

    sign_in(page, base, ALICE)
    assert page.text_content("[data-testid=whoami]") == "signed in as alice"

    # Memories of the seeded user; the HTML in one of them is shown as text, never run.
    page.click("[data-testid=tab-memories]")
    view = page.locator("[data-testid=view]")
    texts = view.locator(".item-text")
    texts.get_by_text("alice loves hiking in the Alps").wait_for()
    texts.get_by_text(f"alice pasted {XSS}").wait_for()
    assert page.locator("#view img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert view.get_by_text("bob").count() == 0
    page.screenshot(path=str(ARTIFACTS / "01-memories.png"), full_page=True)

    # An item's history.
    memory = page.locator(f"[data-testid=item][data-id='{ids['memory']}']")
    memory.get_by_role("button", name="History").click()
    history = page.locator("[data-testid=history-event]")
    history.first.wait_for()
    assert [history.nth(i).locator("strong").text_content() for i in range(2)] == [
        "update",
        "create",
    ]
    page.screenshot(path=str(ARTIFACTS / "02-item-history.png"), full_page=True)

    # Entities (facts, events, relations) and the typed profile with its custom field.
    page.click("[data-testid=tab-entities]")
    texts.get_by_text("alice — works_at — Acme-alice").wait_for()
    assert texts.get_by_text("Acme-alice — moved to Tucson").count() == 1
    page.screenshot(path=str(ARTIFACTS / "03-entities.png"), full_page=True)
    page.click("[data-testid=tab-learnings]")
    texts.get_by_text("Ask alice about dietary needs first").wait_for()
    page.screenshot(path=str(ARTIFACTS / "03b-learnings.png"), full_page=True)
    page.click("[data-testid=tab-decisions]")
    texts.get_by_text("Suggest risotto to alice").wait_for()
    page.screenshot(path=str(ARTIFACTS / "03c-decisions.png"), full_page=True)
    page.click("[data-testid=tab-profile]")
    profile = page.locator("[data-testid=profile]")
    profile.get_by_text("pro", exact=True).wait_for()  # the custom schema field
    page.screenshot(path=str(ARTIFACTS / "04-profile.png"), full_page=True)

    # Before approval, the proposal is not recalled.
    chat(page, "What should I cook tonight?")
    assert "vegetarian" not in page.text_content("[data-testid=recalled]")

    # Approve the pending proposal…
    page.click("[data-testid=tab-proposals]")
    proposals = page.locator("[data-testid=proposals] [data-testid=item]")
    proposals.locator(".item-text").get_by_text("alice is vegetarian").wait_for()
    proposals.get_by_role("button", name="Approve").click()
    page.get_by_text("Approved: alice is vegetarian").wait_for()
    page.locator("[data-testid=proposals]").get_by_text("No pending proposals.").wait_for()
    page.screenshot(path=str(ARTIFACTS / "05-proposal-approved.png"), full_page=True)

    # …and the next chat turn recalls it, and shows what it recalled.
    reply = chat(page, "What should I cook tonight?")
    assert reply == "You are vegetarian, so: a mushroom risotto."
    # The recall panel lists each learning with its store and why, not the raw prompt.
    recalled = page.locator("[data-testid=recalled-item]")
    vegetarian = recalled.filter(has_text="alice is vegetarian")
    assert vegetarian.locator(".badge").text_content() == "Memories"
    # The question shares no word with it: recalled as a recent memory, and said so.
    assert vegetarian.locator(".meta").text_content() == "one of the most recent (no search match)"
    name = recalled.filter(has_text="Name: Alice")
    assert name.locator(".badge").text_content() == "Profile"
    assert name.locator(".meta").text_content() == "profile field: always included"
    panel = str(page.text_content("[data-testid=recalled]"))
    assert "{" not in panel and ids["memory"] not in panel  # no JSON, no ids
    assert f"alice pasted {XSS}" in panel and page.locator("#recalled img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "06-chat-recalled.png"), full_page=True)

    # Search.
    page.fill("[data-testid=search-input]", "Alps hiking")
    page.press("[data-testid=search-input]", "Enter")
    results = page.locator("[data-testid=search-results] .item-text")
    results.get_by_text("alice loves hiking in the Alps").wait_for()
    page.screenshot(path=str(ARTIFACTS / "07-search.png"), full_page=True)


def test_an_admin_picks_users(server: tuple[str, Agent], page: Any) -> None:
    base, agent = server
    seed(agent, "alice")
    seed(agent, "bob")
    sign_in(page, base, ADMIN)
    assert page.text_content("[data-testid=whoami]") == "admin"
    # The picker fills in after sign-in: wait for it (expect retries until it holds).
    playwright.expect(page.locator("[data-testid=user-select] option")).to_have_text(
        ["alice", "bob"]
    )
    page.select_option("[data-testid=user-select]", "bob")
    page.locator("[data-testid=view] .item-text").get_by_text(
        "bob loves hiking in the Alps"
    ).wait_for()
    page.click("[data-testid=tab-sessions]")
    session = page.locator("[data-testid=session][data-id=bob-s1]")
    assert session.locator("[data-testid=session-preview]").text_content() == "Hello there"
    assert session.locator("[data-testid=message-count]").text_content() == "4 messages"
    page.screenshot(path=str(ARTIFACTS / "08-admin-sessions.png"), full_page=True)
    # A refused token never reaches the app.
    page.click("#logout")
    page.fill("#token", "not-a-real-token-000000")
    page.click("#login button[type=submit]")
    page.get_by_text("That token was refused.").wait_for()
    assert page.locator("#app").is_hidden()


def test_delete_asks_first_and_a_deleted_item_is_restored(
    server: tuple[str, Agent], page: Any
) -> None:
    base, agent = server
    ids = seed(agent, "alice")
    sign_in(page, base, ALICE)
    page.click("[data-testid=tab-memories]")
    memory = page.locator(f"[data-testid=item][data-id='{ids['memory']}']")
    memory.get_by_role("button", name="Delete").click()
    # Nothing is deleted on one click: the item asks, and Cancel keeps it.
    memory.get_by_text("Delete this item?").wait_for()
    page.screenshot(path=str(ARTIFACTS / "10-delete-confirm.png"), full_page=True)
    memory.get_by_role("button", name="Cancel").click()
    memory.get_by_role("button", name="Delete").wait_for()
    assert agent_memories(agent) == ["alice loves hiking in the Alps"]

    memory.get_by_role("button", name="Delete").click()
    memory.get_by_role("button", name="Yes, delete").click()
    page.get_by_text("Deleted: alice loves hiking in the Alps").wait_for()
    memory.wait_for(state="detached")
    assert agent_memories(agent) == []

    # Deleted items are listed with Restore; restoring brings the item back, in its history.
    page.select_option("[data-testid=status-filter]", "deleted")
    deleted = page.locator(f"[data-testid=item][data-id='{ids['memory']}']")
    deleted.get_by_role("button", name="Restore").wait_for()
    page.screenshot(path=str(ARTIFACTS / "11-deleted-items.png"), full_page=True)
    deleted.get_by_role("button", name="Restore").click()
    page.get_by_text("Restored: alice loves hiking in the Alps").wait_for()
    assert agent_memories(agent) == ["alice loves hiking in the Alps"]
    page.select_option("[data-testid=status-filter]", "active")
    restored = page.locator(f"[data-testid=item][data-id='{ids['memory']}']")
    restored.get_by_role("button", name="History").click()
    history = page.locator("[data-testid=history-event] strong")
    playwright.expect(history.first).to_have_text("restore")
    assert history.nth(1).text_content() == "delete"
    page.screenshot(path=str(ARTIFACTS / "12-restored-history.png"), full_page=True)


def test_profile_fields_show_labels_and_are_edited(server: tuple[str, Agent], page: Any) -> None:
    base, agent = server
    seed(agent, "alice")
    sign_in(page, base, ALICE)
    page.click("[data-testid=tab-profile]")
    style = page.locator("[data-testid=profile-field][data-field=communication_style]")
    assert style.locator("th").text_content() == (
        "Communication styleHow the user wants answers: length, tone, format"
    )
    assert page.locator("[data-testid=profile]").get_by_text("communication_style").count() == 0
    style.get_by_role("button", name="Set").click()
    style.get_by_role("textbox", name="Communication style").fill("short answers, no emoji")
    page.screenshot(path=str(ARTIFACTS / "13-profile-edit.png"), full_page=True)
    style.get_by_role("button", name="Save").click()
    page.get_by_text("Saved: Communication style").wait_for()
    playwright.expect(page.locator("[data-field=communication_style] td.value")).to_have_text(
        "short answers, no emoji"
    )
    # A custom field with fixed choices is edited with a choice list.
    plan = page.locator("[data-testid=profile-field][data-field=plan]")
    assert plan.locator("th").text_content() == "PlanBilling plan"
    plan.get_by_role("button", name="Edit").click()
    plan.get_by_role("combobox", name="Plan").select_option(label="enterprise")
    plan.get_by_role("button", name="Save").click()
    page.get_by_text("Saved: Plan").wait_for()
    playwright.expect(page.locator("[data-field=plan] td.value")).to_have_text("enterprise")
    lm = agent.get_learning_machine()
    assert lm is not None
    profile = lm.user_profile.get(user_id="alice")
    assert (profile.communication_style, profile.plan) == ("short answers, no emoji", "enterprise")
    page.screenshot(path=str(ARTIFACTS / "14-profile.png"), full_page=True)


def test_the_jobs_view_shows_a_failed_job_and_retries_it(
    server: tuple[str, Agent], page: Any
) -> None:
    base, agent = server
    seed(agent, "alice")
    job = failed_job(agent, "alice", "ModelHTTPError: HTTP 500\n" + "Traceback line\n" * 100)
    sign_in(page, base, ALICE)
    # The tab says a job failed before the view is opened.
    badge = page.locator("[data-testid=tab-jobs] [data-testid=failed-jobs]")
    playwright.expect(badge).to_have_text("1 failed")
    page.click("[data-testid=tab-jobs]")
    card = page.locator(f"[data-testid=job][data-id='{job.id}']")
    error = card.locator("[data-testid=job-error]")
    error.wait_for()
    assert str(error.text_content()).startswith("Failed: ModelHTTPError: HTTP 500 Traceback")
    assert len(str(error.text_content())) < 260  # shortened: the list stays readable
    assert card.locator("[data-testid=job-status]").text_content() == "failed"
    page.screenshot(path=str(ARTIFACTS / "15-jobs-failed.png"), full_page=True)
    card.get_by_role("button", name="Retry").click()
    page.get_by_text("Queued again: the job for “alice says hi”").wait_for()
    # The view looks again while the job is pending or running; it ends done.
    playwright.expect(card).to_have_attribute("data-status", "done")
    assert card.get_by_role("button", name="Retry").count() == 0
    playwright.expect(badge).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "16-jobs-retried.png"), full_page=True)


def agent_memories(agent: Agent) -> list[str]:
    lm = agent.get_learning_machine()
    assert lm is not None
    return [m.content for m in lm.user_memory.list(user_id="alice") if "Alps" in m.content]


def chat(page: Any, message: str) -> str:
    answers = page.locator("[data-testid=answer][data-done=true]")
    done = answers.count()
    page.fill("[data-testid=chat-input]", message)
    page.click("[data-testid=chat-send]")
    answers.nth(done).wait_for()
    return str(answers.nth(done).text_content())
