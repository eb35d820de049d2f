"""From a threshold review to a new policy version: which recommendations would change the policy,
how each one edits the policy document, and the one audited version a human approval creates.

Nothing here runs without a named reviewer: a threshold decides which tickets nobody looks at, so
the policy history and the audit trail must say who let it move and why. The CLI (`--apply`) and
the threshold-review flow (after its approval form) both end here, so they apply the same way.

Changes are only applied to the thresholds the review actually saw: a change whose `old` value is
not the threshold in force now (the policy moved while the approval waited, or a CSV from another
system with other thresholds) is refused, as is a change for a checkpoint our policy does not have.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy.orm import Session

from hitl.analysis.models import PolicyChange, ReviewResult
from hitl.analysis.review import group_key
from hitl.errors import ConfigError
from hitl.store.orm import PolicyVersion, name_problem
from policies.checkpoint_policy import Overrides, PolicyDocument, parse_policy

ApprovalDecision = Literal["approve_all", "approve_some", "reject"]
DECISIONS: tuple[str, ...] = ("approve_all", "approve_some", "reject")
_SAME = 1e-6  # recommendations are rounded to 6 decimals


def proposed_changes(result: ReviewResult) -> list[PolicyChange]:
    """One change per raise/lower recommendation that moves a threshold, in the review's order."""
    return [
        PolicyChange(
            key=group_key(r.checkpoint, r.label, r.client),
            checkpoint=r.checkpoint,
            label=r.label,
            client=r.client,
            old=r.current,
            new=r.recommended,
            action=r.action,
            reason=r.reason,
            stop=r.stop,
        )
        for r in result.recommendations
        if r.changes_policy
    ]


def in_force(document: PolicyDocument, change: PolicyChange) -> float:
    return document.effective(change.checkpoint, change.label, change.client).threshold


def applicability_problems(document: PolicyDocument, changes: Iterable[PolicyChange]) -> list[str]:
    """Why these changes cannot become a version of `document` (empty: they can)."""
    problems: list[str] = []
    changes = list(changes)
    unknown = sorted({c.checkpoint for c in changes} - set(document.checkpoints))
    if unknown:
        problems.append(
            f"checkpoint(s) {', '.join(unknown)} are not in our policy ({', '.join(document.checkpoints)}): "
            "decisions from another system cannot change our thresholds"
        )
    moved = [
        f"{c.key} {fmt(c.old)} (in force: {fmt(in_force(document, c))})"
        for c in changes
        if c.checkpoint in document.checkpoints and abs(in_force(document, c) - c.old) > _SAME
    ]
    if moved:
        problems.append(
            f"the review started from thresholds that are not in force: {', '.join(moved)}; "
            "re-run the review (a CSV must come from this policy to change it)"
        )
    return problems


def reconciliation_problems(result: ReviewResult) -> list[str]:
    """A decision-log file that does not describe the policy in force cannot change it: its verdicts
    were reached from its own thresholds (pooling our overrides), not from ours."""
    if not result.unreconciled:
        return []
    return [
        f"the decision log's newest decisions were made under thresholds that are not in force: "
        f"{', '.join(result.unreconciled)}; review from the database, or export again once decisions "
        "were made under the policy in force"
    ]


def apply_changes(document: PolicyDocument, changes: Iterable[PolicyChange]) -> PolicyDocument:
    """A new document with the changed thresholds; `document` itself is left untouched."""
    changes = list(changes)
    unknown = sorted({c.checkpoint for c in changes} - set(document.checkpoints))
    if unknown:
        raise ConfigError(applicability_problems(document, changes)[0])
    updated = document.model_copy(deep=True)
    for change in changes:
        checkpoint = updated.checkpoints[change.checkpoint]
        # a stop is written where the change applies; a later change there lifts it (explicitly
        # False only where a stop would otherwise be inherited from the checkpoint or the client)
        inherited = document.effective(change.checkpoint, change.label, change.client).stopped
        stopped = True if change.stop else (False if inherited else None)
        if change.label is not None:
            layer = checkpoint.classes.setdefault(change.label, Overrides())
            layer.threshold, layer.stopped = change.new, stopped
        elif change.client is not None:
            layer = checkpoint.clients.setdefault(change.client, Overrides())
            layer.threshold, layer.stopped = change.new, stopped
        else:
            checkpoint.threshold, checkpoint.stopped = change.new, bool(stopped)
    # assignment skips validation: validate the whole document again (a threshold outside [0, 1])
    return parse_policy(updated.model_dump(mode="python"), "the policy with the review's changes")


def fmt(value: float) -> str:
    """0.8 -> '0.80', 0.775 -> '0.775': two decimals unless the grid needs three."""
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def window_text(result: ReviewResult) -> str:
    start = f"{result.window_start:%Y-%m-%d}" if result.window_start else "?"
    end = f"{result.window_end:%Y-%m-%d}" if result.window_end else "?"
    return f"{start}..{end}"


def review_reason(result: ReviewResult, changes: list[PolicyChange], note: str) -> str:
    listed = ", ".join(f"{c.key} {fmt(c.old)}->{c.new_text} ({c.action.value})" for c in changes)
    text = f"threshold review {window_text(result)}: {listed}"
    return f"{text}: {note.strip()}" if note.strip() else text


def _select(result: ReviewResult, approved_keys: set[str] | None) -> list[PolicyChange]:
    changes = proposed_changes(result)
    if approved_keys is None:
        return changes
    unknown = sorted(set(approved_keys) - {c.key for c in changes})
    if unknown:
        offered = ", ".join(c.key for c in changes) or "none"
        raise ConfigError(f"unknown change key(s) {', '.join(unknown)}; the review proposes: {offered}")
    return [c for c in changes if c.key in approved_keys]


def required_reviewer(reviewer: str, what: str = "the reviewer's name") -> str:
    """The approver's name as recorded; refused (before anything is written) when blank or longer
    than the history's column holds."""
    if not reviewer or not reviewer.strip():
        raise ConfigError("a reviewer name is required: the policy history records who approved the change")
    problem = name_problem(reviewer.strip(), what)
    if problem:
        raise ConfigError(problem)
    return reviewer.strip()


def _review_data(result: ReviewResult) -> dict[str, Any]:
    return {
        "window": {"since": result.window_start, "until": result.window_end},
        "source": result.source,
        "reviewed_policy_version": result.policy_version,
        "n_decisions": result.n_decisions,
    }


def apply_review(
    session: Session,
    result: ReviewResult,
    approved_keys: set[str] | None,
    reviewer: str,
    note: str,
    *,
    context: dict[str, Any] | None = None,
) -> PolicyVersion | None:
    """One new policy version with the approved changes (None: all proposed) and its audit event;
    None when nothing was approved. `context` (e.g. the flow run and pause key) joins the event."""
    from hitl.audit import append_event
    from hitl.store.policies import create_version, current_policy

    who = required_reviewer(reviewer)
    reconciled = reconciliation_problems(result)
    if reconciled:  # even when nothing is proposed: from our thresholds something might have been
        raise ConfigError(reconciled[0])
    chosen = _select(result, approved_keys)
    if not chosen:
        return None
    version, document = current_policy(session)
    problems = applicability_problems(document, chosen)
    if problems:
        raise ConfigError("; ".join(problems))
    row = create_version(session, apply_changes(document, chosen), who, review_reason(result, chosen, note))
    append_event(
        session,
        kind="policy.version_created",
        actor=who,
        ticket_id=None,
        data={
            "version": row.version,
            "previous_version": version,
            "changes": [c.model_dump(mode="json") for c in chosen],
            "review": _review_data(result),
            "note": note.strip(),
            **(context or {}),
        },
    )
    return row


def reject_review(
    session: Session, result: ReviewResult, reviewer: str, note: str, *, context: dict[str, Any] | None = None
) -> None:
    """A rejection changes nothing but is recorded: who decided the thresholds stay, and why."""
    from hitl.audit import append_event

    append_event(
        session,
        kind="policy.review_rejected",
        actor=required_reviewer(reviewer),
        ticket_id=None,
        data={
            "proposed": [c.model_dump(mode="json") for c in proposed_changes(result)],
            "review": _review_data(result),
            "note": note.strip(),
            **(context or {}),
        },
    )
