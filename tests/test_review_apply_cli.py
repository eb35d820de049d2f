"""From a threshold review to a policy version: each kind of change edits the right threshold and
nothing else, only approved changes are applied and only under a reviewer's name, the history
grows and a rollback restores the old thresholds; and `hitl review-thresholds` end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from hitl.analysis.apply import apply_changes, apply_review, proposed_changes, review_reason
from hitl.analysis.approval import check_approval
from hitl.analysis.decision_log import read_decision_csv
from hitl.analysis.models import Action, PolicyChange, ReviewParams
from hitl.analysis.review import analyse, group_key, result_of
from hitl.analysis.service import run_review
from hitl.audit import verify_chain
from hitl.errors import ConfigError
from hitl.settings import Settings
from hitl.store.db import Database
from hitl.store.orm import AuditEvent
from hitl.store.policies import current_policy, history, rollback
from policies.checkpoint_policy import load_policy_file

from .review_evidence import STANDARD_CHANGES, decisions, standard_log, store_log, write_csv
from .support import run_cli


def change(key: str, old: float, new: float, **kw: str) -> PolicyChange:
    action = Action.LOWER if new < old else Action.RAISE
    return PolicyChange(
        key=key, checkpoint=key.split("/")[0], old=old, new=new, action=action, reason="r", **kw
    )


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(standard_log(), tmp_path_factory.mktemp("evidence") / "decisions.csv")


# ---------------------------------------------------------------- pure: changes and the document
def test_apply_changes_edits_each_kind_of_key_and_leaves_the_input_alone() -> None:
    document = load_policy_file()
    before = document.model_dump()
    updated = apply_changes(
        document,
        [
            change("triage", 0.80, 0.75),
            change("triage/class:printer", 0.80, 0.70, label="printer"),  # a new class entry
            change("triage/class:outage", 0.90, 0.85, label="outage"),  # an existing one
            change("reply/client:Acme", 0.90, 0.95, client="Acme"),  # a new client entry
            change("reply/client:Whitaker & Lowe LLP", 0.90, 0.97, client="Whitaker & Lowe LLP"),
        ],
    )
    assert document.model_dump() == before  # never mutated
    triage, reply = updated.checkpoints["triage"], updated.checkpoints["reply"]
    assert triage.threshold == 0.75 and triage.classes["printer"].threshold == 0.70
    assert triage.classes["outage"].threshold == 0.85 and triage.classes["firewall_change"].threshold == 0.95
    assert reply.threshold == 0.90 and reply.clients["Acme"].threshold == 0.95
    law_firm = reply.clients["Whitaker & Lowe LLP"]
    assert law_firm.threshold == 0.97 and law_firm.autonomy is False  # other overrides kept
    assert updated.effective("triage", "printer").threshold == 0.70
    assert updated.effective("reply", None, "Acme").threshold == 0.95
    assert updated.checkpoints["escalation"] == document.checkpoints["escalation"]


def test_apply_changes_refuses_a_checkpoint_the_policy_lacks() -> None:
    with pytest.raises(ConfigError, match=r"intake.*not in our policy"):
        apply_changes(load_policy_file(), [change("intake", 0.8, 0.7)])
    with pytest.raises(ConfigError):  # a threshold outside [0, 1] is caught by validation
        apply_changes(load_policy_file(), [change("triage", 0.8, 1.5)])


def changes_at(evidence: Path, confidence: float) -> dict[str, tuple[str, float, float]]:
    log = read_decision_csv(evidence)
    analysis = analyse(log, ReviewParams(confidence=confidence), load_policy_file(), thresholds_from_log=True)
    result = result_of(analysis, source="test", policy_version=1, report_path=None)
    return {c.key: (c.action.value, c.old, c.new) for c in proposed_changes(result)}


def test_the_review_proposes_what_the_evidence_supports_at_its_confidence(evidence: Path) -> None:
    assert changes_at(evidence, 0.95) == STANDARD_CHANGES  # holds are no changes
    strict = changes_at(evidence, 0.999)
    assert strict["triage/class:printer"][0] != "lower"  # the same evidence proves less at 99.9 %


def test_check_approval_states_every_problem() -> None:
    changes = [change("triage", 0.8, 0.75), change("reply", 0.9, 0.945)]
    ok = check_approval(changes, {"decision": "approve_some", "approved_keys": ["reply"], "reviewer": " ana ",
                                  "note": "why"})  # fmt: skip
    assert not isinstance(ok, list) and ok.keys == {"reply"} and ok.reviewer == "ana"
    problems = check_approval(
        changes, {"decision": "approve_some", "approved_keys": ["nope"], "reviewer": " ", "note": ""}
    )
    assert isinstance(problems, list) and len(problems) == 3
    assert any("nope" in p for p in problems) and any("reviewer" in p for p in problems)
    empty = check_approval(changes, {"decision": "approve_some", "reviewer": "a", "note": "n"})
    assert isinstance(empty, list) and "approve_some needs at least one key" in empty[0]
    mixed = check_approval(changes, {"decision": "approve_all", "approved_keys": ["triage"], "reviewer": "a",
                                     "note": "n"})  # fmt: skip
    assert isinstance(mixed, list) and "approve_some" in mixed[0]


# ---------------------------------------------------------------- the store: versions, audit, rollback
def test_apply_review_creates_one_version_with_the_approved_subset(settings: Settings, database: Database,
                                                                    evidence: Path) -> None:  # fmt: skip
    result, _ = run_review(ReviewParams(), csv=evidence, report=False)
    with database.session() as session:
        with pytest.raises(ConfigError, match=r"unknown change key.*bogus"):
            apply_review(session, result, {"reply", "bogus"}, "ana", "n")
        with pytest.raises(ConfigError, match="reviewer"):
            apply_review(session, result, None, "  ", "n")
        assert apply_review(session, result, set(), "ana", "nothing") is None
        row = apply_review(session, result, {"reply", "triage/class:printer"}, "ana", "monthly review")
        assert row is not None and (row.version, row.created_by) == (2, "ana")
        approved = [c for c in proposed_changes(result) if c.key in ("reply", "triage/class:printer")]
        assert row.reason == review_reason(result, approved, "monthly review")
        assert "reply 0.90->0.945 (raise)" in row.reason and "triage/class:printer 0.80->0.75" in row.reason
        assert row.reason.startswith("threshold review 2026-") and row.reason.endswith(": monthly review")
    with database.session() as session:
        version, policy = current_policy(session)
        assert version == 2 and [v.version for v in history(session)] == [2, 1]
        assert policy.checkpoints["reply"].threshold == 0.945
        assert policy.checkpoints["triage"].threshold == 0.80  # not approved
        assert policy.effective("triage", "printer").threshold == 0.75
        assert "mailbox" not in policy.checkpoints["triage"].classes
        event = session.execute(
            select(AuditEvent).where(AuditEvent.kind == "policy.version_created")
        ).scalar_one()
        data = json.loads(event.body)["data"]
        assert event.actor == "ana" and data["version"] == 2 and data["previous_version"] == 1
        assert sorted(c["key"] for c in data["changes"]) == ["reply", "triage/class:printer"]
        assert data["review"]["window"]["until"].startswith("2026-11-19") and data["review"]["source"] == str(
            evidence
        )
        with pytest.raises(ConfigError, match=re.escape("not in force: reply 0.90 (in force: 0.945)")):
            apply_review(session, result, {"reply"}, "ana", "twice")  # the review is stale now
        rolled = rollback(session, 1, "bob", "undo")
    with database.session() as session:
        assert rolled.version == 3
        _, policy = current_policy(session)
        assert policy == load_policy_file()  # every threshold back, the new class entry gone
        assert verify_chain(session).ok


def test_database_evidence_respects_the_policys_class_overrides(
    settings: Settings, database: Database
) -> None:
    frame = decisions("triage", 0.80, 3000, lambda c: np.where(c >= 0.7, 0.01, 0.3),
                      labels=("printer", "outage"), seed=5)  # fmt: skip
    frame = frame[(frame["label"] != "outage") | (frame["route"] != "human")]  # outage: its own 0.90
    store_log(database, frame.assign(threshold=np.where(frame["label"] == "outage", 0.90, 0.80)))
    result, _ = run_review(ReviewParams(), report=False)
    keys = {c.key: (c.old, c.new) for c in proposed_changes(result)}
    assert keys["triage"] == (0.80, 0.75)
    assert all(old == (0.90 if "outage" in key else 0.80) for key, (old, _) in keys.items())
    with database.session() as session:
        row = apply_review(session, result, None, "ana", "from our own decisions")
        assert row is not None
        _, policy = current_policy(session)
    assert policy.checkpoints["triage"].threshold == 0.75
    assert policy.checkpoints["triage"].classes["firewall_change"].threshold == 0.95


# ---------------------------------------------------------------- the CLI
def review_json(*args: str) -> dict[str, object]:
    result = run_cli("review-thresholds", *args, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout  # exactly one JSON object
    return json.loads(lines[0])


def test_cli_json_lists_recommendations_and_changes_nothing(settings: Settings, evidence: Path) -> None:
    output = review_json("--from-csv", str(evidence))
    assert set(output) == {"recommendations", "report_path", "drift", "applied_version"}
    assert output["applied_version"] is None
    recommendations = output["recommendations"]
    assert isinstance(recommendations, list)
    required = {"checkpoint", "label", "action", "current", "recommended", "estimated_error",
                "error_upper_bound", "automation_rate_current", "automation_rate_recommended",
                "n_reviewed", "n_audited", "effective_n", "reason"}  # fmt: skip
    assert all(required <= set(r) for r in recommendations)
    changes = {
        group_key(r["checkpoint"], r["label"], r["client"]): (r["action"], r["current"], r["recommended"])
        for r in recommendations
        if r["action"] != "hold"
    }
    assert changes == STANDARD_CHANGES
    if output["report_path"] is not None:
        assert Path(str(output["report_path"])).is_file()
    assert json.loads(run_cli("policy", "show", "--json").stdout)["version"] == 1
    table = run_cli("review-thresholds", "--from-csv", str(evidence))
    assert table.returncode == 0 and "triage/class:printer" in table.stdout and "report:" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-error", "triage"], "expected CHECKPOINT=RATE"),
        (["--target-error", "triage=1.5"], "expected CHECKPOINT=RATE"),
        (["--target-error", "=0.1"], "expected CHECKPOINT=RATE"),
        (["--since", "2026-13-01"], "--since '2026-13-01' is not an ISO 8601 date"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "must be before"),
        (["--confidence", "1.5"], "--confidence"),
        (["--apply"], "--apply needs --reviewer"),
        (["--apply", "--reviewer", "  "], "--apply needs --reviewer"),
    ],
)
def test_cli_bad_input_is_one_line(settings: Settings, args: list[str], message: str) -> None:
    result = run_cli("review-thresholds", *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr


def test_cli_apply_records_the_reviewer_and_rollback_restores(settings: Settings, evidence: Path) -> None:
    output = review_json("--from-csv", str(evidence), "--apply", "--reviewer", "ana", "--note", "monthly")
    assert output["applied_version"] == 2
    history_rows = json.loads(run_cli("policy", "history", "--json").stdout)
    assert [(h["version"], h["created_by"]) for h in history_rows] == [(2, "ana"), (1, "system")]
    assert "triage 0.80->0.75 (lower)" in history_rows[0]["reason"] and "monthly" in history_rows[0]["reason"]
    shown = json.loads(run_cli("policy", "show", "--json").stdout)
    assert (
        shown["checkpoints"]["triage"]["threshold"] == 0.75
        and shown["checkpoints"]["reply"]["threshold"] == 0.945
    )
    listed = run_cli("policy", "history")
    assert "ana" in listed.stdout and "threshold review" in listed.stdout
    again = run_cli("review-thresholds", "--from-csv", str(evidence), "--apply", "--reviewer", "ana")
    assert again.returncode == 1 and "not in force" in again.stderr  # the CSV no longer describes our policy
    rolled = run_cli("policy", "rollback", "1", "--reviewer", "bob", "--reason", "too aggressive")
    assert rolled.returncode == 0, rolled.stderr
    restored = json.loads(run_cli("policy", "show", "--json").stdout)
    assert restored["version"] == 3
    triage = restored["checkpoints"]["triage"]
    assert triage["threshold"] == 0.8 and set(triage["classes"]) == {"firewall_change", "outage"}
    assert restored["checkpoints"]["reply"]["threshold"] == 0.9
    assert run_cli("audit", "verify").returncode == 0


def test_cli_apply_refuses_another_systems_checkpoints(settings: Settings, tmp_path: Path) -> None:
    foreign = decisions("intake", 0.80, 4000, lambda c: np.where(c >= 0.7, 0.01, 0.3), seed=9)
    path = write_csv(foreign, tmp_path / "foreign.csv")
    shown = review_json("--from-csv", str(path), "--target-error", "intake=0.05")
    assert [r["action"] for r in shown["recommendations"]] == ["lower"]  # it may inform ...
    refused = run_cli("review-thresholds", "--from-csv", str(path), "--target-error", "intake=0.05",
                      "--apply", "--reviewer", "ana")  # fmt: skip
    assert refused.returncode == 1 and "intake" in refused.stderr and "not in our policy" in refused.stderr
    assert json.loads(run_cli("policy", "show", "--json").stdout)["version"] == 1  # ... but not change


def test_a_reviewer_name_too_long_to_record_is_one_line_and_writes_nothing(
    settings: Settings, database: Database, evidence: Path
) -> None:
    """The history's name columns hold 200 characters: a longer name was a database traceback
    (PostgreSQL: StringDataRightTruncation; SQLite: pydantic's string_too_long from the audit event)."""
    long_name = "r" * 300
    for args in (
        ["policy", "rollback", "1", "--reviewer", long_name, "--reason", "x"],
        ["review-thresholds", "--from-csv", str(evidence), "--apply", "--reviewer", long_name],
    ):
        refused = run_cli(*args)
        assert refused.returncode == 1 and refused.stdout == "", refused.stderr[-300:]
        assert refused.stderr == "error: --reviewer is 300 characters long; at most 200 are recorded\n"
    assert not settings.effective_reports_dir.exists() or not any(settings.effective_reports_dir.iterdir())
    with database.session() as session:
        assert [row.version for row in history(session)] == [1]
        with pytest.raises(ConfigError, match="at most 200"):
            rollback(session, 1, long_name, "x")
        assert session.query(AuditEvent).count() == 0
    assert check_approval([], {"decision": "reject", "reviewer": long_name, "note": "n"}) == [
        "reviewer is 300 characters long; at most 200 are recorded"
    ]
    assert run_cli("policy", "rollback", "1", "--reviewer", "r" * 200, "--reason", "x").returncode == 0


def _triage_with_an_override(seed: int = 5) -> pd.DataFrame:
    """Triage decisions under policy v1: printer at the checkpoint's 0.80, outage at its own 0.90,
    the newest decision an outage (what made a CSV review take 0.90 as the checkpoint's threshold)."""
    printer = decisions("triage", 0.80, 3000, lambda c: np.where(c >= 0.95, 0.01, 0.2), seed=seed)
    outage = decisions("triage", 0.90, 600, lambda c: np.full(c.shape, 0.02), labels=("outage",),
                       seed=seed + 1)  # fmt: skip
    outage.loc[0, "decided_at"] = printer["decided_at"].max() + pd.Timedelta(minutes=1)
    return pd.concat([printer, outage], ignore_index=True)


def test_our_own_export_reviews_and_applies_like_the_database(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """The CSV path took the checkpoint's threshold from the newest decision's logged one and pooled
    the class overrides: 'triage raise 1.0 -> 1.0' (no change, applied as "the policy is unchanged")
    where the database said 'triage raise 0.8 -> ...'. Our own export now reviews like the database."""
    store_log(database, _triage_with_an_override())
    path = tmp_path / "ours.csv"
    assert run_cli("decisions", "export", str(path)).returncode == 0
    from_db, _ = run_review(ReviewParams(), report=False)
    from_csv, _ = run_review(ReviewParams(), csv=path, report=False)
    assert [r.model_dump() for r in from_csv.recommendations] == [
        r.model_dump() for r in from_db.recommendations
    ]
    assert from_csv.unreconciled == []
    triage = next(r for r in from_db.recommendations if r.label is None and r.client is None)
    assert (triage.action, triage.current) == (Action.RAISE, 0.8) and triage.recommended > 0.8
    output = review_json("--from-csv", str(path), "--apply", "--reviewer", "ana")
    assert output["applied_version"] == 2
    shown = json.loads(run_cli("policy", "show", "--json").stdout)["checkpoints"]["triage"]
    assert shown["threshold"] == triage.recommended and shown["classes"]["outage"]["threshold"] == 0.9


def test_a_csv_not_made_under_the_policy_in_force_cannot_apply(settings: Settings, tmp_path: Path) -> None:
    """Decisions logged under triage 0.70 while 0.80 is in force: the review holds at 0.70 (too few
    reviews for a verdict) from the file's own threshold, which says nothing about ours; --apply
    printed 'the policy is unchanged' and exited 0."""
    other = decisions("triage", 0.70, 3000, lambda c: np.full(c.shape, 0.01), seed=3)
    path = write_csv(other, tmp_path / "other.csv")
    shown = review_json("--from-csv", str(path), "--min-samples", "100000")
    first = shown["recommendations"][0]  # type: ignore[index]
    assert (first["action"], first["current"]) == ("hold", 0.7)
    refused = run_cli("review-thresholds", "--from-csv", str(path), "--min-samples", "100000",
                      "--apply", "--reviewer", "ana")  # fmt: skip
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "not in force: triage 0.7 (in force: 0.8)" in refused.stderr
    assert json.loads(run_cli("policy", "show", "--json").stdout)["version"] == 1


def test_when_no_threshold_is_safe_automation_really_stops_and_a_later_review_restarts_it(
    settings: Settings, database: Database
) -> None:
    """'no threshold up to 1.000 can be shown to stay under 5.0% yet, so automation stops' raised
    triage to 1.0, yet a decision with confidence 1.00 was still AUTO ('confidence 1.00 reaches the
    threshold 1.00') and the verdict reported automation_rate_recommended 0.40. Now the applied
    policy stops the checkpoint (nothing AUTO, automation 0) and a review that finds a safe
    threshold lifts the stop, each step a recorded version."""
    from policies.checkpoint_policy import route_decision

    wrong = decisions("triage", 0.80, 4000, lambda c: np.full(c.shape, 0.2), seed=11)
    sure = wrong.index[wrong["route"] != "human"][::2]
    wrong.loc[sure, "confidence"] = 1.0  # like the real model: many decisions at exactly 1.00
    # Then, under the stop, every decision is reviewed (route human at threshold 1, propensity 1):
    # these reviews are the evidence that can restart it.
    rng = np.random.default_rng(12)
    later = decisions("triage", 1.0, 4000, lambda c: np.full(c.shape, 0.002), seed=13)
    restart = wrong["decided_at"].max() + pd.Timedelta(days=1)
    later = later.assign(confidence=rng.uniform(0.9, 1.0, len(later)).round(4), route="human", propensity=1.0,
                         final_value=later["ai_value"], reviewer="rev",
                         decided_at=later["decided_at"] - later["decided_at"].min() + restart)  # fmt: skip
    store_log(database, pd.concat([wrong, later], ignore_index=True))

    first, _ = run_review(ReviewParams(until=restart.to_pydatetime()), report=False)
    triage = first.recommendations[0]
    assert (triage.action, triage.recommended, triage.automation_rate_recommended) == (Action.RAISE, 1.0, 0.0)
    assert triage.stop and "automation stops" in triage.reason
    with database.session() as session:
        row = apply_review(session, first, {"triage"}, "ana", "stop it")
        assert row is not None and "triage 0.80->1.00 (automation stopped) (raise)" in row.reason
        _, policy = current_policy(session)
    settings_now = policy.effective("triage", "printer", "Acme")
    assert policy.checkpoints["triage"].stopped and settings_now.threshold == 1.0
    routed = route_decision(settings_now, "printer", 1.0, 0.99)
    assert (routed.route, routed.propensity, routed.threshold) == ("HUMAN", 1.0, 1.0)
    assert routed.reason.startswith("confidence 1.00: automation is stopped")

    window = ReviewParams(
        since=restart.to_pydatetime(), until=(restart + pd.Timedelta(days=61)).to_pydatetime()
    )
    second, _ = run_review(window, report=False)
    again = second.recommendations[0]
    assert (again.action, again.current, again.recommended) == (Action.LOWER, 1.0, 0.95), again.reason
    assert again.stopped_current and not again.stop and again.automation_rate_current == 0.0
    with database.session() as session:
        assert apply_review(session, second, {"triage"}, "bob", "safe again") is not None
        _, policy = current_policy(session)
        assert [v.created_by for v in history(session)] == ["bob", "ana", "system"]
    assert not policy.checkpoints["triage"].stopped and policy.checkpoints["triage"].threshold == 0.95
    assert route_decision(policy.effective("triage", "printer"), "printer", 1.0, 0.99).route == "AUTO"
