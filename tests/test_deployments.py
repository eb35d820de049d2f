"""The deployments register on a real Prefect server with the schedule the README promises."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from deployments.definitions import NIGHTLY_CRON, all_deployments
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
