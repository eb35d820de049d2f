"""The threshold-review approval form: its description (the changes, escaped), and the check of
an analyst's answer (approve all, approve some, reject) before anything is applied.

Kept apart from `apply`, which writes policy versions: the form is what a human reads and types
into, and it is checked field by field so a bad answer re-opens the form with the problem shown.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hitl.analysis.apply import DECISIONS, ApprovalDecision, fmt, window_text
from hitl.analysis.models import PolicyChange, ReviewResult
from hitl.store.orm import name_problem
from hitl.text import code_span, escape_markdown


class Approval(BaseModel):
    """A consistent answer to the approval form; `keys` None means every proposed change."""

    decision: ApprovalDecision
    keys: set[str] | None = None
    reviewer: str
    note: str


class ApprovalOutcome(BaseModel):
    """What the flow did with one answer: problems (asked again), or the decision carried out."""

    problems: list[str] = Field(default_factory=list)
    decision: ApprovalDecision | None = None
    reviewer: str | None = None
    note: str | None = None
    applied: list[PolicyChange] = Field(default_factory=list)
    applied_version: int | None = None


def check_approval(changes: list[PolicyChange], submitted: dict[str, Any]) -> Approval | list[str]:
    """The approval, or what is wrong with the answer. The form's schema enforces choices and
    required fields; the rules spanning fields are checked here because the UI does not."""
    problems: list[str] = []
    decision = submitted.get("decision")
    reviewer = str(submitted.get("reviewer") or "").strip()
    note = str(submitted.get("note") or "").strip()
    keys = [str(k) for k in submitted.get("approved_keys") or []]
    if decision not in DECISIONS:
        problems.append(f"decision must be one of {', '.join(DECISIONS)}")
    if not reviewer:
        problems.append("fill in reviewer: the policy history records who approved the change")
    elif problem := name_problem(reviewer, "reviewer"):
        problems.append(problem)
    if not note:
        problems.append("fill in note: say why (it is recorded with the new policy version)")
    unknown = sorted(set(keys) - {c.key for c in changes})
    if unknown:
        problems.append(f"unknown change key(s) {', '.join(unknown)}: choose among the keys listed above")
    if decision == "approve_some" and not keys:
        problems.append("approve_some needs at least one key in approved_keys (or choose reject)")
    if decision in ("approve_all", "reject") and keys:
        problems.append(
            f"you listed approved_keys but chose {decision}: choose approve_some to apply only those, "
            "or clear the list"
        )
    if problems:
        return problems
    return Approval(
        decision=decision,  # type: ignore[arg-type]
        keys=set(keys) if decision == "approve_some" else None,
        reviewer=reviewer,
        note=note,
    )


def approval_description(result: ReviewResult, changes: list[PolicyChange], problems: list[str],
                         report: str | None, deadline: str | None) -> str:  # fmt: skip
    """The markdown above the approval form. Keys, labels and client names come from decision data
    (a CSV may come from anywhere), so they go into code spans; reasons are escaped."""
    lines = [
        f"### Threshold review {escape_markdown(window_text(result))}: {len(changes)} proposed change(s)",
        "",
        f"Evidence: {result.n_decisions} decisions from {code_span(result.source, 120)}; policy version "
        f"{result.policy_version if result.policy_version is not None else 'unknown'} in force.",
    ]
    for problem in problems:
        lines += ["", f"> **Your previous answer was not applied:** {escape_markdown(problem)}"]
    lines += ["", "| key | threshold | action | why |", "|---|---|---|---|"]
    for c in changes:
        why = escape_markdown(c.reason)
        lines.append(f"| {_key_cell(c)} | {fmt(c.old)} → {c.new_text} | {c.action.value} | {why} |")
    if report:
        lines += ["", f"Full report: {code_span(report, 300)}"]
    if deadline:
        lines += ["", f"Answer by {escape_markdown(deadline)}; after that nothing is applied."]
    lines += [
        "",
        "Choose **approve_all** to apply every change, **approve_some** and tick the keys to apply, or "
        "**reject** to keep the thresholds. Always fill in *reviewer* and *note* (why); both are recorded "
        "with the new policy version and in the audit trail.",
    ]
    return "\n".join(lines)


def _key_cell(change: PolicyChange) -> str:
    return code_span(change.key, 120).replace("|", "\\|")  # GFM tables split even code spans on a bare |


def changes_markdown(title: str, changes: list[PolicyChange]) -> str:
    """A titled table of changes (the flow's closing artifact)."""
    lines = [f"### {escape_markdown(title)}", ""]
    if not changes:
        return "\n".join([*lines, "No threshold changes."])
    lines += ["| key | threshold | action |", "|---|---|---|"]
    lines += [f"| {_key_cell(c)} | {fmt(c.old)} → {c.new_text} | {c.action.value} |" for c in changes]
    return "\n".join(lines)
