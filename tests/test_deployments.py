"""The deployments register on a real Prefect server with the schedule the README promises."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from prefect._vendor.croniter import croniter
from prefect.server.schemas.schedules import CronSchedule
from pydantic import ValidationError

from deployments.definitions import NIGHTLY_CRON, REVIEW_CRON, all_deployments
from hitl.settings import Settings


def test_nightly_ingestion_registers_with_its_schedule(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HITL_TIMEZONE", "Europe/Berlin")
    deployment = next(d for d in all_deployments(Settings()) if d.name == "nightly-ingestion")
    deployment_id = deployment.apply()
    stored = httpx.get(f"{prefect_api}/deployments/{deployment_id}").json()
    schedule = stored["schedules"][0]["schedule"]
    assert schedule["cron"] == NIGHTLY_CRON == "0 2 * * *" and schedule["timezone"] == "Europe/Berlin"
    assert stored["parameters"]["mapping"] == "canonical"
    assert {"ingestion", "nightly"} <= set(stored["tags"])
    assert stored["global_concurrency_limit"]["limit"] == 1  # never two nightly runs at once
    assert set(stored["parameter_openapi_schema"]["properties"]) >= {"path", "url", "mapping", "source"}


def test_unknown_time_zone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITL_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        Settings()


def test_threshold_review_runs_on_the_first_monday_only(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HITL_TIMEZONE", "Europe/Berlin")
    deployment = next(d for d in all_deployments(Settings()) if d.name == "threshold-review")
    stored = httpx.get(f"{prefect_api}/deployments/{deployment.apply()}").json()
    schedule = stored["schedules"][0]["schedule"]
    assert (schedule["cron"], schedule["timezone"], schedule["day_or"]) == (
        REVIEW_CRON,
        "Europe/Berlin",
        False,
    )
    assert {"review", "policy", "scheduled"} <= set(stored["tags"])
    assert set(stored["parameter_openapi_schema"]["properties"]) >= {
        "since", "until", "from_csv", "target_error", "confidence", "min_samples", "max_step", "apply",
        "timeout_hours",
    }  # fmt: skip
    assert stored["parameters"] == {}  # the flow's defaults: the last window, ask for approval
    start = datetime(2026, 11, 28)  # local wall time, as the server evaluates cron in the zone
    first_mondays = croniter(schedule["cron"], start, day_or=schedule["day_or"])
    assert [first_mondays.get_next(datetime) for _ in range(3)] == [
        datetime(2026, 12, 7, 6), datetime(2027, 1, 4, 6), datetime(2027, 2, 1, 6)
    ]  # fmt: skip
    plain_cron = croniter(schedule["cron"], start, day_or=True)  # what day_or=True would have meant
    assert plain_cron.get_next(datetime) == datetime(2026, 11, 30, 6)  # a Monday that is not the first
    server = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"], day_or=schedule["day_or"])
    berlin = ZoneInfo("Europe/Berlin")

    async def scheduled() -> list[datetime]:  # how the server's scheduler places the runs
        return await server.get_dates(n=3, start=start.replace(tzinfo=berlin))

    dates = asyncio.run(scheduled())
    assert [(d.astimezone(berlin).date(), d.astimezone(berlin).hour) for d in dates] == [
        (date(2026, 12, 7), 6), (date(2027, 1, 4), 6), (date(2027, 2, 1), 6)
    ]  # fmt: skip
