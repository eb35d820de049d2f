"""The threshold-review deployment on a real Prefect server, served like production: the run
publishes its artifacts, suspends for approval holding no process, and applies exactly what the
reviewer approved under the reviewer's name; invalid answers keep it waiting, a rejection changes
nothing."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run
from sqlalchemy import select

from hitl.settings import get_settings
from hitl.store import db as db_module
from hitl.store.db import Database
from hitl.store.orm import AuditEvent
from hitl.store.policies import create_version, current_policy
from policies.checkpoint_policy import PolicyDocument, load_policy_file

from .lifecycle_stack import processes_of, served_deployments, state_of, wait_for
from .review_evidence import STANDARD_CHANGES, standard_log, write_csv

pytestmark = pytest.mark.usefixtures("prefect_api")
DEPLOYMENT = "threshold-review/threshold-review"


class Review:
    def __init__(self, api: str, db: Database, csv: Path) -> None:
        self.api, self.db, self.csv = api, db, csv

    def reset_policy(self) -> int:
        """Policy thresholds as in the CSV (version 1's), as a new version; returns its number."""
        with self.db.session() as session:
            return create_version(session, load_policy_file(), "test", "reset for a scenario").version

    def policy(self) -> tuple[int, PolicyDocument]:
        with self.db.session() as session:
            return current_policy(session)

    def start(self) -> str:
        run = run_deployment(DEPLOYMENT, parameters={"from_csv": str(self.csv)}, timeout=0)
        return str(run.id)

    def suspended(self, run_id: str, key: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=10).json()
            details = (run.get("state") or {}).get("state_details") or {}
            if run["state_name"] == "Suspended" and details.get("pause_key") == key:
                return run
            assert run["state_type"] not in ("FAILED", "CRASHED", "COMPLETED"), run["state"]
            return None

        return wait_for(check, timeout=180, what=f"run {run_id} waiting under {key}")

    def finished(self, run_id: str) -> str:
        def check() -> str | None:
            kind, _ = state_of(self.api, run_id)
            return kind if kind in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        return wait_for(check, timeout=180, what=f"run {run_id} finished")

    def read_input(self, run_id: str, key: str, kind: str) -> Any:
        value = httpx.get(f"{self.api}/flow_runs/{run_id}/input/suspended-{key}-{kind}", timeout=10).json()
        return json.loads(value["value"]) if isinstance(value, dict) and "value" in value else value

    def artifact_keys(self, run_id: str) -> set[str]:
        found = httpx.post(
            f"{self.api}/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [run_id]}}},
            timeout=10,
        ).json()
        return {a["key"] for a in found if a.get("key")}

    def events(self, kind: str) -> list[AuditEvent]:
        with self.db.session() as session:
            rows = session.execute(select(AuditEvent).where(AuditEvent.kind == kind)).scalars().all()
            session.expunge_all()
            return list(rows)


@pytest.fixture(scope="module")
def review(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    home = tmp_path_factory.mktemp("threshold-review")
    env = {
        "HITL_HOME": str(home / "var"),
        "HITL_DATABASE_URL": f"sqlite:///{home / 'hitl.db'}",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    database = db_module.get_database()
    csv = write_csv(standard_log(), home / "decisions.csv")
    try:
        with served_deployments(env, home / "serve.log"):
            wait_for(
                lambda: (
                    httpx.get(f"{prefect_api}/deployments/name/{DEPLOYMENT}", timeout=5).status_code == 200
                ),
                what="the served deployments",
            )
            yield Review(prefect_api, database, csv)
    finally:
        for key, value in previous.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        get_settings.cache_clear()
        database.dispose()
        db_module._databases.clear()


def test_approve_some_applies_exactly_the_approved_change(review: Review) -> None:
    before = review.reset_policy()
    run_id = review.start()
    review.suspended(run_id, "threshold-approval-0")
    wait_for(lambda: not processes_of(run_id), timeout=30, what="the waiting run's process to exit")
    description = review.read_input(run_id, "threshold-approval-0", "description")
    assert all(f"` {key} `" in description for key in STANDARD_CHANGES) and "0.90 → 0.945" in description
    schema = review.read_input(run_id, "threshold-approval-0", "schema")
    assert set(schema["properties"]["approved_keys"]["items"]["enum"]) == set(STANDARD_CHANGES)
    assert set(schema["required"]) == {"decision", "reviewer", "note"}
    keys = review.artifact_keys(run_id)
    assert {"threshold-review", "threshold-review-recommendations"} <= keys
    assert {"threshold-review-reliability-triage", "threshold-review-risk-coverage-triage"} <= keys  # PNGs

    resume_flow_run(
        uuid.UUID(run_id),
        run_input={"decision": "approve_some", "approved_keys": ["reply"], "reviewer": "alice",
                   "note": "reply drafts are wrong too often"},
    )  # fmt: skip
    assert review.finished(run_id) == "COMPLETED"
    version, policy = review.policy()
    assert version == before + 1
    expected = load_policy_file()
    expected.checkpoints["reply"].threshold = 0.945
    assert policy == expected  # exactly the approved change, nothing else
    with review.db.session() as session:
        from hitl.store.policies import history

        latest = history(session)[0]
        assert latest.created_by == "alice" and "reply 0.90->0.945 (raise)" in latest.reason
        assert latest.reason.endswith(": reply drafts are wrong too often")
    [event] = [
        e for e in review.events("policy.version_created") if json.loads(e.body)["data"]["version"] == version
    ]
    data = json.loads(event.body)["data"]
    assert (
        event.actor == "alice"
        and data["flow_run_id"] == run_id
        and data["pause_key"] == "threshold-approval-0"
    )
    assert "threshold-review-outcome" in review.artifact_keys(run_id)


def test_invalid_answers_keep_the_run_waiting_and_change_nothing(review: Review) -> None:
    before = review.reset_policy()
    run_id = review.start()
    review.suspended(run_id, "threshold-approval-0")
    with pytest.raises(RuntimeError, match="nope"):  # the form offers only the proposed keys
        resume_flow_run(
            uuid.UUID(run_id),
            run_input={"decision": "approve_some", "approved_keys": ["nope"], "reviewer": "bob", "note": "x"},
        )
    assert state_of(review.api, run_id) == ("PAUSED", "Suspended")
    resume_flow_run(  # valid for the schema, not for the flow: a blank reviewer, keys with approve_all
        uuid.UUID(run_id),
        run_input={"decision": "approve_all", "approved_keys": ["triage"], "reviewer": " ", "note": "x"},
    )
    review.suspended(run_id, "threshold-approval-1")
    description = review.read_input(run_id, "threshold-approval-1", "description")
    assert "Your previous answer was not applied" in description and "fill in reviewer" in description
    assert "choose approve\\_some" in description
    assert review.policy()[0] == before  # nothing applied
    httpx.post(  # leave no waiting run behind
        f"{review.api}/flow_runs/{run_id}/set_state",
        json={"state": {"type": "CANCELLED"}, "force": True},
        timeout=10,
    ).raise_for_status()


def test_reject_changes_nothing_and_is_audited(review: Review) -> None:
    before = review.reset_policy()
    run_id = review.start()
    review.suspended(run_id, "threshold-approval-0")
    resume_flow_run(
        uuid.UUID(run_id),
        run_input={"decision": "reject", "reviewer": "carol", "note": "wait for the new model"},
    )
    assert review.finished(run_id) == "COMPLETED"
    assert review.policy()[0] == before
    [event] = review.events("policy.review_rejected")
    data = json.loads(event.body)["data"]
    assert (
        event.actor == "carol" and data["note"] == "wait for the new model" and data["flow_run_id"] == run_id
    )
    assert {c["key"] for c in data["proposed"]} == set(STANDARD_CHANGES)
