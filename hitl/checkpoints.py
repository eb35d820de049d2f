"""The forms operators fill in at a checkpoint, and the check of what they submit.

Prefect renders a RunInput's JSON schema as the resume form and its description as markdown
above it. The form enforces only the schema (choices, required fields); the rules that span
fields are enforced here, by the flow, because the UI does not apply pydantic validators
(measured: an approve with a changed value reached the flow unchanged). An inconsistent answer
is recorded nowhere: the flow suspends again with the problem stated in the description.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field, create_model

from hitl.ml.predictor import Alternative
from hitl.store.orm import NAME_LENGTH
from hitl.text import code_block, code_span, escape_markdown

Action = Literal["approve", "override", "reject", "escalate"]
ACTIONS: tuple[str, ...] = ("approve", "override", "reject", "escalate")
NO_REASON = "none"
COMMENT_MAX = 4000  # a comment is a why, stored with each review and in the audit chain: not a document
FREE_TEXT_FIELDS = ("reply_text", "parameters")  # edited in place; approve may carry edits


class Suggestion(BaseModel):
    """One AI value on the form: what it is, how sure, and the valid choices."""

    field: str
    label: str
    ai_value: str | None
    confidence: float | None = None
    threshold: float | None = None
    alternatives: list[Alternative] = Field(default_factory=list)
    choices: list[str] | None = None  # None: free text


class TicketView(BaseModel):
    id: int
    external_id: str
    source: str
    client: str
    client_tier: str
    subject: str
    body: str
    priority: str | None = None
    created_at: datetime
    sla_deadline: datetime | None = None


class CheckpointView(BaseModel):
    """Everything the operator needs on one screen to decide."""

    checkpoint: str
    ticket: TicketView
    suggestions: list[Suggestion]
    why_human: str
    details_title: str | None = None
    details: str | None = None  # dry-run plan or draft: shown literally
    reason_codes: list[str]
    approvals_needed: int = 1
    approved_by: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    # the checkpoint's deadline (the earliest of its waiting decisions): an answer after it is refused,
    # because the checkpoint has timed out and its ticket belongs to the escalation queue
    deadline: datetime | None = None


class Verdict(BaseModel):
    """A consistent answer, ready to record."""

    action: Action
    reviewer: str
    reason_code: str | None
    comment: str | None
    final_values: dict[str, str | None]
    changed: list[str]


def form_class(view: CheckpointView) -> type[RunInput]:
    """A RunInput subclass whose schema offers exactly the valid choices, prefilled with the AI's."""
    fields: dict[str, Any] = {"decision": (Literal[ACTIONS], "approve")}  # type: ignore[valid-type]
    for s in view.suggestions:
        if s.choices:
            choices = tuple(dict.fromkeys([*s.choices, *([s.ai_value] if s.ai_value else [])]))
            default = s.ai_value if s.ai_value in choices else choices[0]
            fields[s.field] = (Literal[choices], default)  # type: ignore[valid-type]
        else:
            fields[s.field] = (str, s.ai_value or "")
    codes = tuple(dict.fromkeys([NO_REASON, *view.reason_codes]))
    fields["reason_code"] = (Literal[codes], NO_REASON)  # type: ignore[valid-type]
    fields["comment"] = (str, Field(default="", max_length=COMMENT_MAX))
    fields["reviewer"] = (str, Field(min_length=1, max_length=NAME_LENGTH))
    name = f"{view.checkpoint.capitalize()}Review"
    model = create_model(name, __base__=RunInput, **fields)
    model._description = render_description(view)  # shown above the form in the UI
    return model


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render_description(view: CheckpointView) -> str:
    t = view.ticket
    lines = [
        f"### {view.checkpoint.capitalize()} of ticket {t.id} · client {code_span(t.client, 80)} "
        f"({escape_markdown(t.client_tier)})",
        "",
        f"**Why you are asked:** {escape_markdown(view.why_human)}",
    ]
    for problem in view.problems:
        lines += ["", f"> **Your previous answer was not recorded:** {escape_markdown(problem)}"]
    if view.approvals_needed > 1:
        done = ", ".join(code_span(name, 60) for name in view.approved_by) or "nobody yet"
        lines += [
            "",
            f"**Four-eyes:** {view.approvals_needed} different approvers needed; approved so far by {done}.",
        ]
    lines += ["", "| | AI suggestion | confidence | threshold | alternatives |", "|---|---|---|---|---|"]
    for s in view.suggestions:
        alternatives = ", ".join(f"{code_span(a.label, 40)} {a.probability:.2f}" for a in s.alternatives[1:3])
        value = code_span(s.ai_value, 80) if s.ai_value is not None else "(none)"
        lines.append(
            f"| {escape_markdown(s.label)} | {value} | {_pct(s.confidence)} | {_pct(s.threshold)} | "
            f"{alternatives or '-'} |"
        )
    if view.deadline is not None:
        by = _aware(view.deadline)
        lines += ["", f"**Answer by** {by:%Y-%m-%d %H:%M} UTC: later, the checkpoint times out."]
    deadline = f" · SLA deadline {t.sla_deadline:%Y-%m-%d %H:%M} UTC" if t.sla_deadline else ""
    lines += [
        "",
        f"**Ticket** {code_span(f'{t.source}/{t.external_id}', 80)} · priority "
        f"{escape_markdown(t.priority or 'unset')} · created {t.created_at:%Y-%m-%d %H:%M} UTC{deadline}",
        "",
        f"**Subject:** {code_span(t.subject, 200)}",
        "",
        "**Body:**",
        "",
        code_block(t.body, 1200),
    ]
    if view.details:
        lines += [
            "",
            f"**{escape_markdown(view.details_title or 'Details')}:**",
            "",
            code_block(view.details, 3000),
        ]
    lines += [
        "",
        "Choose **approve** to accept the suggestion, **override** with a corrected value and a reason code, "
        "**reject** with a reason code, or **escalate** to the escalation queue. Always fill in *reviewer*.",
    ]
    return "\n".join(lines)


def is_valid_text(value: Any) -> bool:
    """False for text (or text inside lists and dicts) that cannot be encoded as UTF-8, or that holds
    a NUL character, which PostgreSQL's text columns refuse (ingestion quarantines it too)."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(is_valid_text(k) and is_valid_text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(is_valid_text(v) for v in value)
    return True


def same_person(a: str, b: str) -> bool:
    """Reviewer names as typed: "Alice" and "alice " are one person for four-eyes."""
    return a.strip().casefold() == b.strip().casefold()


def distinct_people(names: Iterable[str]) -> int:
    return len({n.strip().casefold() for n in names})


def check_review(
    view: CheckpointView, submitted: dict[str, Any], now: datetime | None = None
) -> Verdict | list[str]:
    """The verdict, or the problems that stop it from being recorded (each says what to do)."""
    now = now or datetime.now(UTC)
    if view.deadline is not None and now > _aware(view.deadline):
        return [
            f"this checkpoint timed out at {_aware(view.deadline):%Y-%m-%d %H:%M} UTC, before the answer "
            "arrived; it acts on nothing and the ticket goes to the escalation queue"
        ]
    broken = sorted(k for k, v in submitted.items() if not is_valid_text(v))
    if broken:  # no database stores lone surrogates (nor PostgreSQL a NUL): refuse, do not crash
        return [f"{', '.join(map(str, broken))}: not valid text (a broken or NUL character); type it again"]
    problems: list[str] = []
    action = submitted.get("decision")
    reviewer = str(submitted.get("reviewer") or "").strip()
    reason = submitted.get("reason_code") or NO_REASON
    if action not in ACTIONS:
        problems.append(f"decision must be one of {', '.join(ACTIONS)}")
    if not reviewer:
        problems.append("fill in reviewer: every decision records who made it")
    elif len(reviewer) > NAME_LENGTH:
        problems.append(f"reviewer is {len(reviewer)} characters: at most {NAME_LENGTH}")
    elif any(same_person(reviewer, name) for name in view.approved_by):
        problems.append(f"{reviewer} has already approved this; a second, different approver is required")
    if len(str(submitted.get("comment") or "")) > COMMENT_MAX:
        problems.append(f"comment is longer than {COMMENT_MAX} characters: say why in short")
    if reason != NO_REASON and reason not in view.reason_codes:
        problems.append(f"reason code {reason!r} is not one of {', '.join(view.reason_codes)}")
    final: dict[str, str | None] = {}
    changed: list[str] = []
    for s in view.suggestions:
        value = submitted.get(s.field, s.ai_value)
        value = None if value is None else str(value)
        if s.choices and value is not None and value not in s.choices:
            problems.append(f"{s.label} must be one of the listed choices, not {value!r}")
        if s.field == "parameters" and value:
            try:
                if not isinstance(json.loads(value), dict):
                    raise ValueError
            except ValueError:
                problems.append('parameters must be a JSON object, e.g. {"username": "jdoe"}')
        final[s.field] = value
        if (value or "") != (s.ai_value or ""):
            changed.append(s.field)
    structural = [f for f in changed if f not in FREE_TEXT_FIELDS]
    if action == "approve" and structural:
        problems.append(
            f"you changed {', '.join(structural)} but chose approve: choose override (with a reason code) "
            "or put the AI's value back"
        )
    if action == "override" and not changed:
        problems.append("override needs a corrected value that differs from the AI's suggestion")
    if action in ("override", "reject") and reason == NO_REASON:
        problems.append(f"{action} needs a reason code")
    if problems:
        return problems
    return Verdict(
        action=action,  # type: ignore[arg-type]
        reviewer=reviewer,
        reason_code=None if reason == NO_REASON else reason,
        comment=(str(submitted.get("comment") or "").strip() or None),
        final_values=final,
        changed=changed,
    )


def _aware(moment: datetime) -> datetime:
    """Stored deadlines are UTC; SQLite hands them back without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
