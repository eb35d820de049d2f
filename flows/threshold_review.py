"""The threshold-review flow (first Monday of the month, or on demand): review the decision log,
publish the report, and, when thresholds should move, wait (holding no process) for an analyst to
approve all, some or none of the changes; only an approval creates a new policy version.

A suspended run that nobody answers before `timeout_hours` is marked Failed by Prefect ("The flow
was paused and never resumed"); no flow code runs then, and nothing is applied.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run

from hitl.analysis.apply import proposed_changes
from tasks.review import (
    approval_form,
    approval_key,
    check_applicable,
    publish_outcome,
    review_params,
    run_threshold_review,
    settle_approval,
)


@flow(name="threshold-review", description="Recommend thresholds; apply only what a human approves.")
def threshold_review(
    since: datetime | None = None,
    until: datetime | None = None,
    from_csv: str | None = None,
    target_error: dict[str, float] | None = None,
    confidence: float = 0.95,
    min_samples: int = 30,
    max_step: float = 0.05,
    apply: bool = True,
    timeout_hours: float = 72,
) -> str:
    logger = get_run_logger()
    params = review_params(since, until, target_error, confidence, min_samples, max_step)
    result = run_threshold_review(params, from_csv)
    changes = proposed_changes(result)
    if (not changes and not result.unreconciled) or not apply:  # unreconciled: say why below
        message = f"{len(changes)} change(s) proposed, apply=False" if changes else "no change proposed"
        logger.info("%s: nothing to approve, the policy stays as it is", message)
        return message
    blockers = check_applicable(result)
    if blockers:
        logger.warning("the proposed changes cannot apply to our policy: %s", "; ".join(blockers))
        return "not applicable: " + "; ".join(blockers)
    problems: list[str] = []
    attempt = 0  # keys replay in the same order on every re-run, so answers line up
    while True:
        key = approval_key(attempt)
        attempt += 1
        logger.info(
            "waiting up to %g h for approval of %d change(s) under %s; if nobody answers, Prefect marks "
            "this run Failed and no threshold changes",
            timeout_hours, len(changes), key,
        )  # fmt: skip
        answer = suspend_flow_run(
            wait_for_input=approval_form(result, changes, problems, timeout_hours),
            key=key,
            timeout=int(timeout_hours * 3600),
        )
        outcome = settle_approval(result, answer.model_dump(exclude={"metadata"}), key)
        if not outcome.problems:
            return publish_outcome(outcome)
        problems = outcome.problems
