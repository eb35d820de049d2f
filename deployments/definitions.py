"""Every deployment of the product, declared in one place (see the README for why a serve
module rather than prefect.yaml: the schedule's time zone and defaults come from HITL_ settings).
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval

from flows.checkpoint_timeouts import checkpoint_timeouts
from flows.ingestion import nightly_ingestion
from flows.threshold_review import threshold_review
from flows.ticket_lifecycle import ticket_lifecycle
from flows.train_model import train_model
from hitl.settings import Settings

NIGHTLY_CRON = "0 2 * * *"
# 06:00 on a Monday among days 1-7: the first Monday, but only with day_or=False (plain cron ORs the
# day-of-month and day-of-week fields, which would run every Monday and on days 1-7 as well).
REVIEW_CRON = "0 6 1-7 * 1"


def nightly_ingestion_deployment(settings: Settings) -> RunnerDeployment:
    """02:00 every night in the configured zone: the drop folder by default; a PSA API when the
    `url` parameter is set. One run at a time, so a slow night never overlaps the next."""
    return nightly_ingestion.to_deployment(
        name="nightly-ingestion",
        schedule=Cron(NIGHTLY_CRON, timezone=settings.timezone),
        parameters={"path": None, "url": None, "mapping": settings.nightly_mapping, "source": None},
        description=(
            "Nightly ticket ingestion. Reads the drop folder (HITL_INBOX) by default, or a PSA API when "
            "`url` is set; moves processed files to processed/; bad records go to quarantine."
        ),
        tags=["ingestion", "nightly", "scheduled"],
        concurrency_limit=1,
    )


def lifecycle_deployment() -> RunnerDeployment:
    """Started per ticket (by ingestion for tickets that wait for a human, or `hitl lifecycle start`)."""
    return ticket_lifecycle.to_deployment(
        name="ticket-lifecycle",
        description="One ticket's lifecycle; suspended runs wait for an operator's Resume.",
        tags=["lifecycle", "human-in-the-loop"],
    )


def train_model_deployment() -> RunnerDeployment:
    return train_model.to_deployment(
        name="train-model",
        description="Train a decision head on labelled tickets (on demand); fill in data, mapping and label.",
        tags=["models", "on-demand"],
    )


def timeouts_deployment() -> RunnerDeployment:
    return checkpoint_timeouts.to_deployment(
        name="checkpoint-timeouts",
        schedule=Interval(60),
        description=(
            "Every minute: overdue checkpoints go to the escalation queue (a timeout never acts); "
            "lifecycle runs whose worker died are recovered (fresh run, or escalation when an "
            "action's result is unknown); runs claimed but never started are Scheduled again."
        ),
        tags=["lifecycle", "scheduled"],
        concurrency_limit=1,
    )


def threshold_review_deployment(settings: Settings) -> RunnerDeployment:
    """The first Monday of every month at 06:00 in the configured zone: review the last
    HITL_REVIEW_WINDOW_DAYS of decisions and ask for approval of any threshold change. On demand
    from the UI with other parameters (a window, a CSV, targets, apply=false for a dry run)."""
    return threshold_review.to_deployment(
        name="threshold-review",
        schedule=Cron(REVIEW_CRON, timezone=settings.timezone, day_or=False),
        description=(
            "Monthly threshold review (first Monday, 06:00). Publishes the report; when thresholds should "
            "move, the run waits for an analyst's Resume: approve all, some or none. Unanswered after "
            "timeout_hours, it fails and nothing changes."
        ),
        tags=["review", "policy", "human-in-the-loop", "scheduled"],
        # no concurrency limit: a run waiting days for approval must not block an on-demand review;
        # two approvals cannot clash, because a change is refused once its old threshold moved
    )


def all_deployments(settings: Settings) -> list[RunnerDeployment]:
    return [
        nightly_ingestion_deployment(settings),
        lifecycle_deployment(),
        train_model_deployment(),
        timeouts_deployment(),
        threshold_review_deployment(settings),
    ]
