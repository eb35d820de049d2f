"""Every deployment of the product, declared in one place (see the README for why a serve
module rather than prefect.yaml: the schedule's time zone and defaults come from HITL_ settings).
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.ingestion import nightly_ingestion
from hitl.settings import Settings

NIGHTLY_CRON = "0 2 * * *"


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


def all_deployments(settings: Settings) -> list[RunnerDeployment]:
    return [nightly_ingestion_deployment(settings)]
