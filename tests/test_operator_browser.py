"""The operator in a real browser: Debian's Chromium, driven by Playwright, finds a ticket waiting at
the triage checkpoint in the Prefect UI of the session's server, reads the ticket and the AI's
suggestion on the Resume form, overrides it, and the flow moves on with exactly that answer recorded
(review row and audit event). Invalid answers are refused and leave the run waiting, with nothing
recorded.

It drives the UI a browser lands on by default (Prefect 3.9 serves the "V2" UI at `/v2`). Screenshots
of every step go to var/test-artifacts/operator-browser/ (see docs/operators.md). Without
/usr/bin/chromium the tests are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Response, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import select

from hitl.audit import ticket_timeline
from hitl.models import TicketRecord
from hitl.store.orm import Decision, Review, Ticket

from .lifecycle_stack import flow_run, processes_of, wait_for
from .support import IN_CI, ROOT
from .test_lifecycle_flow import LENIENT, Stack, stack  # noqa: F401  (`stack`: the served lifecycle)

CHROMIUM = Path("/usr/bin/chromium")
NO_CHROMIUM = f"{CHROMIUM} not found (apt-get install chromium); `playwright install` is not used here"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "operator-browser"
UI_TIMEOUT = 60_000  # ms: a Vue/React SPA on 2 busy cores; the first page load alone takes ~5-10 s
VIEWPORT = {"width": 1280, "height": 1600}  # tall enough for the whole Resume dialog without scrolling

pytestmark = [
    # skipped before the session's Prefect server starts; under CI the `browser` fixture fails instead
    pytest.mark.skipif(not CHROMIUM.exists() and not IN_CI, reason=NO_CHROMIUM),
    pytest.mark.usefixtures("prefect_api"),
]


# ---------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"CI=true but {NO_CHROMIUM}: the operator's browser test must run in CI")
        pytest.skip(NO_CHROMIUM)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=UI_TIMEOUT
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # fresh: no saved UI preference, no cookies
    context.set_default_timeout(UI_TIMEOUT)
    context.set_default_navigation_timeout(UI_TIMEOUT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def settle_run_page(page: Page) -> None:
    """Let the run page finish loading its header and logs, so the screenshot shows them (cosmetic:
    the assertions never depend on it)."""
    with suppress(AssertionError):
        expect(page.get_by_text("Deployment", exact=True)).to_be_visible(timeout=20_000)
        expect(page.get_by_text("Suspending flow run", exact=False).first).to_be_visible(timeout=20_000)
    page.wait_for_timeout(1500)  # the timeline graph draws on a canvas, after the data arrives


def shoot(target: Page | Locator, name: str, height: int | None = None) -> None:
    """A PNG of the page (or of one element, e.g. the dialog); `height` keeps only the page's top."""
    path = str(ARTIFACTS / f"{name}.png")
    if height is not None and isinstance(target, Page):
        target.screenshot(path=path, clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
    else:
        target.screenshot(path=path)


@contextmanager
def step(page: Page, name: str, what: str) -> Iterator[None]:
    """One operator step; on failure, a screenshot of what the browser showed and a clear message."""
    try:
        yield
    except Exception as exc:
        path = ARTIFACTS / f"FAILED-{name}.png"
        with suppress(Exception):
            page.screenshot(path=str(path), full_page=True)
        raise AssertionError(
            f"operator step '{what}' failed at {page.url}: {exc}\n(screenshot: {path})"
        ) from exc


# ---------------------------------------------------------------- the operator's moves
def ui_base(api: str) -> str:
    return api.rstrip("/").removesuffix("/api")


def open_waiting_run(page: Page, api: str, run_name: str, shots: str | None) -> None:
    """From the UI's home page: Runs, filter the state names to Suspended, click the run's name."""
    with step(page, shots or "invalid-runs-list", "find the waiting run in the runs list"):
        page.goto(ui_base(api) + "/")
        page.get_by_role("link", name="Runs", exact=True).click()
        expect(page).to_have_url(re.compile(r"/runs\b"), timeout=UI_TIMEOUT)
        page.get_by_role("button", name="All run states").click()
        page.get_by_role("textbox", name="Search state names").fill("Suspended")
        page.get_by_role("menuitem", name="Suspended", exact=True).click()
        page.keyboard.press("Escape")
        expect(page).to_have_url(re.compile(r"[?&]state=Suspended\b"), timeout=UI_TIMEOUT)
        expect(page.get_by_role("link", name=run_name, exact=True)).to_be_visible(timeout=UI_TIMEOUT)
        # the filter is applied: the completed runs (checkpoint sweeps, earlier tickets) are gone
        expect(page.get_by_text("Completed", exact=True)).to_have_count(0, timeout=UI_TIMEOUT)
        if shots:
            shoot(page, shots)
    with step(page, "run-page", "open the waiting run's page"):
        page.get_by_role("link", name=run_name, exact=True).click()
        expect(page).to_have_url(re.compile(r"/runs/flow-run/"), timeout=UI_TIMEOUT)
        expect(page.get_by_text(run_name, exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
        expect(page.get_by_text("Suspended", exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
        settle_run_page(page)


def open_resume_form(page: Page, name: str) -> Locator:
    """The run page's menu (the kebab button at the top right) → Resume: the checkpoint's form."""
    with step(page, name, "open the Resume form"):
        page.get_by_role("button", name="Open menu").first.click()
        page.get_by_role("menuitem", name="Resume", exact=True).click()
        # by name: a select's popover is a role="dialog" too, and may linger in the page closed
        dialog = page.get_by_role("dialog", name="Resume Flow Run")
        expect(dialog.get_by_text("Resume Flow Run")).to_be_visible(timeout=UI_TIMEOUT)
        expect(dialog.get_by_role("button", name="Select Decision")).to_be_visible(timeout=UI_TIMEOUT)
        return dialog


def choose(page: Page, dialog: Locator, field: str, value: str) -> None:
    """Pick a value in one of the form's enum fields (a custom select, not a native <select>)."""
    button = dialog.get_by_role("button", name=f"Select {field}")
    button.click()
    page.get_by_role("option", name=value, exact=True).click()
    expect(button).to_have_text(value, timeout=UI_TIMEOUT)


def submit(page: Page, dialog: Locator) -> None:
    dialog.get_by_role("button", name="Resume", exact=True).click()


def _is_resume_call(response: Response) -> bool:
    return response.request.method == "POST" and bool(re.search(r"/flow_runs/[^/]+/resume$", response.url))


def submit_and_see_resumed(page: Page, dialog: Locator) -> None:
    """Submit a form the server must accept, and check the UI said so.

    Seen once in CI on a loaded machine: the dialog stayed open, no toast was left to read. Waiting
    for the resume request itself says which side failed: no request at all (the click was lost:
    clicked once more), a busy server (503: clicked once more), or the server's refusal, whose body
    goes into the failure message. The
    last field is left with Tab first, so the form's state holds what was typed."""
    page.keyboard.press("Tab")
    for attempt in (1, 2):
        try:
            with page.expect_response(_is_resume_call, timeout=UI_TIMEOUT // 2) as answer:
                submit(page, dialog)
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise AssertionError("clicking Resume twice sent no resume request") from None
            continue
        response = answer.value
        if response.status == 503 and attempt == 1:
            # Prefect's server says "Service Unavailable" when its own database is busy (seen once in
            # a clean-clone CI run): nothing was resumed, and an operator clicks Resume again.
            continue
        assert response.ok, f"the server refused the resume: HTTP {response.status} {response.text()[:500]}"
        break
    expect(page.get_by_text("Flow run resumed")).to_be_visible(timeout=UI_TIMEOUT)


# ---------------------------------------------------------------- the application's side
def waiting_ticket(lifecycle: Stack, subject: str, body: str) -> tuple[int, str, str, Decision]:
    """A ticket the triage model is unsure of (about 0.7 < 0.95): its run suspends for a human."""
    lifecycle.policy(triage={"threshold": 0.95, "audit_rate": 0.0}, escalation=LENIENT, reply=LENIENT)
    record = TicketRecord(
        external_id=f"OPB-{uuid.uuid4().hex[:6]}",
        client="Harbor Point Dental Group",
        subject=subject,
        body=body,
        priority="low",
    )
    # Prefect's sync helpers (run_deployment) turn into coroutines where an event loop runs, and
    # Playwright's sync API runs one in this thread: start the run from a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ticket_id, run_id = pool.submit(lifecycle.start, record).result(timeout=120)
    run = lifecycle.suspended(run_id)
    assert run["state"]["state_details"]["pause_key"].startswith("triage-"), run["state"]
    with lifecycle.db.session() as session:
        decision = session.execute(
            select(Decision).where(Decision.ticket_id == ticket_id, Decision.checkpoint == "triage")
        ).scalar_one()
        session.expunge(decision)
    assert decision.status == "waiting" and decision.route == "HUMAN", (decision.status, decision.route)
    assert decision.ai_value and decision.confidence is not None
    return ticket_id, run_id, run["name"], decision


def reviews_of(lifecycle: Stack, ticket_id: int) -> list[Review]:
    with lifecycle.db.session() as session:
        rows = list(session.execute(select(Review).where(Review.ticket_id == ticket_id)).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def events_of(lifecycle: Stack, ticket_id: int, kind: str) -> list[Any]:
    with lifecycle.db.session() as session:
        return [e for e in ticket_timeline(session, ticket_id) if e.kind == kind]


def pause_key(api: str, run_id: str) -> str | None:
    run = flow_run(api, run_id)
    if run["state_type"] != "PAUSED":
        return None
    return (run.get("state") or {}).get("state_details", {}).get("pause_key")


def check_form_shows_ticket(
    dialog: Locator, ticket_id: int, subject: str, body: str, decision: Decision
) -> None:
    expect(dialog.get_by_text(f"Triage of ticket {ticket_id}")).to_be_visible(timeout=UI_TIMEOUT)
    expect(dialog.get_by_text(subject, exact=True)).to_be_visible()
    expect(dialog.get_by_text(body, exact=True)).to_be_visible()
    suggestion = dialog.get_by_role("row").filter(has_text="category").first
    expect(suggestion).to_contain_text(str(decision.ai_value))
    expect(suggestion).to_contain_text(f"{decision.confidence:.2f}")
    expect(dialog.get_by_text(re.compile(r"confidence \d\.\d\d is below the threshold"))).to_be_visible()


SUBJECT = "Printer on floor 3 keeps jamming"
BODY = "The printer next to reception jams on every second page since Monday."


def test_operator_overrides_triage_in_the_browser(browser: Browser, stack: Stack, page: Page) -> None:  # noqa: F811
    subject = f"{SUBJECT} ({uuid.uuid4().hex[:4]})"
    ticket_id, run_id, run_name, decision = waiting_ticket(stack, subject, BODY)
    corrected = "mailbox" if decision.ai_value != "mailbox" else "printer"
    entered = {"reviewer": "alice.operator", "reason_code": "wrong_category", "comment": "shared mailbox"}

    open_waiting_run(page, stack.api, run_name, shots="01-runs-list")
    shoot(page, "02-run-page", height=1000)
    dialog = open_resume_form(page, "03-resume-form")
    with step(page, "03-resume-form", "read the ticket, the AI suggestion and its confidence on the form"):
        check_form_shows_ticket(dialog, ticket_id, subject, BODY, decision)
        shoot(dialog, "03-resume-form")
    with step(page, "04-filled-form", "choose override with a corrected value, a reason code, a reviewer"):
        choose(page, dialog, "Decision", "override")
        choose(page, dialog, "Category", corrected)
        choose(page, dialog, "Reason Code", entered["reason_code"])
        dialog.get_by_label("Comment").fill(entered["comment"])
        dialog.get_by_label("Reviewer", exact=True).fill(entered["reviewer"])
        shoot(dialog, "04-filled-form")
    with step(page, "05-after-submit", "submit the form and see the run resume"):
        submit_and_see_resumed(page, dialog)

    def moved_on() -> str | None:  # completed, or waiting at a later checkpoint: triage is behind it
        run = flow_run(stack.api, run_id)
        assert run["state_type"] not in ("FAILED", "CRASHED", "CANCELLED"), run["state"]
        if run["state_type"] == "COMPLETED":
            return "Completed"
        key = pause_key(stack.api, run_id) or ""
        return "Suspended" if run["state_name"] == "Suspended" and not key.startswith("triage-") else None

    shown = wait_for(moved_on, timeout=180, what=f"run {run_id} to get past triage after the UI resume")
    with step(page, "05-after-submit", f"see the run {shown} on its page"):
        page.reload()
        expect(page.get_by_text(shown, exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
        settle_run_page(page)
        shoot(page, "05-after-submit", height=1000)

    [review] = reviews_of(stack, ticket_id)
    assert (review.reviewer, review.action, review.final_value, review.reason_code, review.comment) == (
        entered["reviewer"],
        "override",
        corrected,
        entered["reason_code"],
        entered["comment"],
    )
    assert review.flow_run_id == run_id and review.decision_id == decision.id
    [event] = events_of(stack, ticket_id, "review.recorded")
    assert event.actor == entered["reviewer"]
    assert {k: event.data[k] for k in ("checkpoint", "action", "ai_value", "final_value", "reason_code")} == {
        "checkpoint": "triage",
        "action": "override",
        "ai_value": decision.ai_value,
        "final_value": corrected,
        "reason_code": entered["reason_code"],
    }
    assert event.data["comment"] == entered["comment"] and event.data["flow_run_id"] == run_id
    assert not events_of(stack, ticket_id, "review.refused")
    with stack.db.session() as session:
        triage = session.get(Decision, decision.id)
        assert triage is not None and triage.final_value == corrected
        assert triage.status in ("decided", "applied"), triage.status
        assert session.get(Ticket, ticket_id).assigned_queue == corrected  # type: ignore[union-attr]


def test_invalid_answers_in_the_browser_leave_the_run_waiting(
    browser: Browser,
    stack: Stack,  # noqa: F811
    page: Page,
) -> None:
    subject = f"{SUBJECT} ({uuid.uuid4().hex[:4]})"
    ticket_id, run_id, run_name, decision = waiting_ticket(stack, subject, BODY)
    first_key = pause_key(stack.api, run_id)
    corrected = "mailbox" if decision.ai_value != "mailbox" else "printer"

    open_waiting_run(page, stack.api, run_name, shots=None)
    dialog = open_resume_form(page, "invalid-01-missing-reviewer")

    # 1. No reviewer: the server checks the form's JSON schema and refuses; the flow never sees it.
    with step(page, "invalid-01-missing-reviewer", "submit without a reviewer and see it refused"):
        submit(page, dialog)
        expect(page.get_by_text("'reviewer' is a required property")).to_be_visible(timeout=UI_TIMEOUT)
        expect(dialog.get_by_role("button", name="Resume", exact=True)).to_be_visible()  # still open
        shoot(page, "invalid-01-missing-reviewer")
    assert pause_key(stack.api, run_id) == first_key, "a refused form must leave the run waiting as it was"

    # 2. Override with a corrected value but no reason code: valid for the schema, so the run resumes;
    #    the flow's own check refuses it, records nothing and asks again with the problem stated.
    with step(page, "invalid-02-no-reason-code", "submit an override without a reason code"):
        choose(page, dialog, "Decision", "override")
        choose(page, dialog, "Category", corrected)
        dialog.get_by_label("Reviewer", exact=True).fill("bob.operator")
        shoot(dialog, "invalid-02-no-reason-code")
        submit_and_see_resumed(page, dialog)

    def asked_again() -> bool:
        run = flow_run(stack.api, run_id)
        assert run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), run["state"]
        key = pause_key(stack.api, run_id)
        return run["state_name"] == "Suspended" and key is not None and key != first_key

    wait_for(asked_again, timeout=180, what=f"run {run_id} to suspend again after the refused answer")
    key = pause_key(stack.api, run_id) or ""
    assert key.startswith("triage-") and key.endswith("-1"), key

    with step(page, "invalid-03-asked-again", "reopen the form and read why the answer was not recorded"):
        page.reload()
        expect(page.get_by_text("Suspended", exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
        dialog = open_resume_form(page, "invalid-03-asked-again")
        expect(dialog.get_by_text("Your previous answer was not recorded")).to_be_visible(timeout=UI_TIMEOUT)
        expect(dialog.get_by_text("override needs a reason code")).to_be_visible()
        shoot(dialog, "invalid-03-asked-again")
        dialog.get_by_role("button", name="Cancel").click()

    assert reviews_of(stack, ticket_id) == [], "a refused answer must record no review"
    assert not events_of(stack, ticket_id, "review.recorded")
    [refused] = events_of(stack, ticket_id, "review.refused")
    assert refused.actor == "bob.operator" and "override needs a reason code" in refused.data["problems"]
    with stack.db.session() as session:
        triage = session.get(Decision, decision.id)
        assert triage is not None and triage.status == "waiting" and triage.final_value is None
    assert httpx.get(f"{stack.api}/flow_runs/{run_id}", timeout=10).json()["state_name"] == "Suspended"
    wait_for(lambda: not processes_of(run_id), timeout=60, what="the re-suspended run's process to exit")
