"""Prefect tasks of the threshold-review flow: thin wrappers over hitl.analysis, plus the approval form.

The review task persists its result with the default cache policy (inputs + source + run id): a
resumed run re-runs the flow from the top, and the approval must apply the very review the
reviewer saw, not a fresh one over newer decisions. `settle_approval` is cached the same way, so
a replayed answer that was already applied is never applied twice.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, create_model

from hitl.analysis.apply import (
    DECISIONS,
    applicability_problems,
    apply_review,
    fmt,
    proposed_changes,
    reconciliation_problems,
    reject_review,
)
from hitl.analysis.approval import ApprovalOutcome, approval_description, changes_markdown, check_approval
from hitl.analysis.models import PolicyChange, ReviewParams, ReviewResult
from hitl.errors import ConfigError
from hitl.settings import get_settings
from hitl.store.db import get_database
from hitl.text import code_span, escape_markdown

ARTIFACT_KEY = "threshold-review"
_PAUSE_KEY = re.compile(r"[a-z0-9-]+")


def review_params(since: datetime | None, until: datetime | None, target_error: dict[str, float] | None,
                  confidence: float, min_samples: int, max_step: float) -> ReviewParams:  # fmt: skip
    """The flow's parameters as the analysis's; a naive time is UTC, as everywhere in the store."""

    def utc(moment: datetime | None) -> datetime | None:
        return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment

    return ReviewParams(since=utc(since), until=utc(until), target_error=target_error or {},
                        confidence=confidence, min_samples=min_samples, max_step=max_step)  # fmt: skip


@task(name="run-threshold-review", persist_result=True)
def run_threshold_review(params: ReviewParams, from_csv: str | None) -> ReviewResult:
    """The review, its report and its artifacts, once per flow run (replays reuse the result)."""
    from hitl.analysis.report import artifact_images, markdown_summary, recommendation_rows
    from hitl.analysis.service import run_review

    result, analysis = run_review(params, csv=Path(from_csv) if from_csv else None)
    create_markdown_artifact(
        markdown=markdown_summary(analysis, result), key=ARTIFACT_KEY, description="Threshold review summary"
    )
    create_table_artifact(
        table=recommendation_rows(result),
        key=f"{ARTIFACT_KEY}-recommendations",
        description="Recommendations",
    )
    for key, description, png in artifact_images(analysis):
        create_image_artifact(image_url="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                              key=key, description=description)  # fmt: skip
    if result.report_path:
        create_link_artifact(link=Path(result.report_path).resolve().as_uri(), link_text=result.report_path,
                             key=f"{ARTIFACT_KEY}-report", description="The HTML report")  # fmt: skip
    get_run_logger().info(
        "%d decisions from %s: %d recommendation(s), %d change(s) proposed; report: %s",
        result.n_decisions, result.source, len(result.recommendations),
        len(proposed_changes(result)), result.report_path or "not written",
    )  # fmt: skip
    return result


@task(name="check-applicable", persist_result=True)
def check_applicable(result: ReviewResult) -> list[str]:
    """Why the proposed changes could not become a version of the policy in force (empty: they can)."""
    from hitl.store.policies import current_policy

    with get_database(get_settings()).session() as session:
        _, document = current_policy(session)
    return [*reconciliation_problems(result), *applicability_problems(document, proposed_changes(result))]


def approval_key(attempt: int) -> str:
    """Pause keys outside [a-z0-9-] strand a run for good (docs/prefect-semantics.md §1)."""
    key = f"threshold-approval-{attempt}"
    assert _PAUSE_KEY.fullmatch(key), key
    return key


def approval_form(result: ReviewResult, changes: list[PolicyChange], problems: list[str],
                  timeout_hours: float) -> type[RunInput]:  # fmt: skip
    """The resume form: the schema offers exactly the proposed keys; reviewer and note are required
    and never prefilled, so an empty Resume cannot approve anything."""
    keys = tuple(c.key for c in changes)
    deadline = f"{datetime.now(UTC) + timedelta(hours=timeout_hours):%Y-%m-%d %H:%M} UTC"
    fields: dict[str, Any] = {
        "decision": (Literal[DECISIONS], Field(description="approve_all, approve_some or reject")),
        "approved_keys": (
            list[Literal[keys]],
            Field(default=[], description="With approve_some: what to apply."),
        ),
        "reviewer": (str, Field(min_length=1, max_length=200, description="Who decides (recorded).")),
        "note": (str, Field(min_length=1, max_length=2000, description="Why (recorded with the version).")),
    }
    model = create_model("ThresholdApproval", __base__=RunInput, **fields)
    model._description = approval_description(result, changes, problems, result.report_path, deadline)
    return model


@task(name="settle-approval", persist_result=True)
def settle_approval(result: ReviewResult, answer: dict[str, Any], key: str) -> ApprovalOutcome:
    """Check one answer; apply or reject it when consistent. Cached per answer and key, so replays
    of an answer already carried out do nothing again."""
    logger = get_run_logger()
    checked = check_approval(proposed_changes(result), answer)
    if isinstance(checked, list):
        logger.warning("answer under %s not applied: %s", key, "; ".join(checked))
        return ApprovalOutcome(problems=checked)
    context = {"flow_run_id": str(flow_run.id) if flow_run.id else None, "pause_key": key}
    outcome = ApprovalOutcome(decision=checked.decision, reviewer=checked.reviewer, note=checked.note)
    with get_database(get_settings()).session() as session:
        if checked.decision == "reject":
            reject_review(session, result, checked.reviewer, checked.note, context=context)
            return outcome
        row = apply_review(session, result, checked.keys, checked.reviewer, checked.note, context=context)
        if row is None:  # cannot happen after check_approval; say so rather than pretend
            raise ConfigError("the approval selected no change")
        applied = [c for c in proposed_changes(result) if checked.keys is None or c.key in checked.keys]
        return outcome.model_copy(update={"applied": applied, "applied_version": row.version})


@task(name="publish-outcome", persist_result=True)
def publish_outcome(outcome: ApprovalOutcome) -> str:
    """The last artifact: what changed (or that nothing did), and who decided."""
    who = f"{code_span(outcome.reviewer or '?', 200)}: {escape_markdown(outcome.note or '')}"
    if outcome.decision == "reject":
        body = f"### Threshold review rejected\n\nNo threshold changed. Rejected by {who}"
        message = f"rejected by {outcome.reviewer}; no threshold changed"
    else:
        body = changes_markdown(f"Policy version {outcome.applied_version} is in force", outcome.applied)
        body += f"\n\nApproved by {who}"
        listed = ", ".join(f"{c.key} {fmt(c.old)}->{c.new_text}" for c in outcome.applied)
        message = f"policy version {outcome.applied_version} in force ({listed}); by {outcome.reviewer}"
    create_markdown_artifact(markdown=body, key=f"{ARTIFACT_KEY}-outcome", description="What changed")
    get_run_logger().info(message)
    return message
