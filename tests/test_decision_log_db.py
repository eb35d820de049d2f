"""The decision log read from the store: column mapping, exclusions, the time window, the
"reopened" evidence set by re-ingestion, and the CSV export round trip, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import inspect, select

from hitl.analysis.db_log import load_decisions
from hitl.analysis.decision_log import read_decision_csv
from hitl.analysis.models import CSV_COLUMNS, DERIVED_COLUMNS
from hitl.models import TicketRecord
from hitl.settings import Settings
from hitl.store.db import Database
from hitl.store.orm import Decision, Review, Ticket

from .support import run_cli
from .test_lifecycle_engine import ingest

T0 = datetime(2026, 11, 2, 9, 0, 0, 123456, tzinfo=UTC)
BELOW = "confidence 0.50 is below the threshold 0.90"
ABOVE = "confidence 0.97 reaches the threshold 0.90"


def _ticket(
    external_id: str, status: str = "open", client: str = "Acme", body: str = "printer jams"
) -> TicketRecord:
    return TicketRecord(external_id=external_id, client=client, subject="s", body=body, status=status)


def _ticket_id(database: Database, external_id: str) -> int:
    with database.session() as session:
        return session.execute(select(Ticket.id).where(Ticket.external_id == external_id)).scalar_one()


def _decide(
    database: Database, ticket_id: int, reviews: tuple[tuple[str, str | None], ...] = (), **kw: Any
) -> int:
    """One decision row (a triage AUTO by default) and its reviews (reviewer, reason code), in order."""
    values: dict[str, Any] = {
        "checkpoint": "triage",
        "head": "category",
        "ai_value": "printer",
        "confidence": 0.97,
        "threshold": 0.9,
        "route": "AUTO",
        "propensity": 0.05,
        "final_value": "printer",
        "status": "auto",
        "reason": ABOVE,
        "created_at": T0,
        "decided_at": T0,
    }
    values.update(kw)
    with database.session() as session:
        decision = Decision(ticket_id=ticket_id, **values)
        session.add(decision)
        session.flush()
        for i, (reviewer, reason_code) in enumerate(reviews):
            session.add(
                Review(
                    decision_id=decision.id,
                    ticket_id=ticket_id,
                    reviewer=reviewer,
                    action="override" if reason_code else "approve",
                    final_value=values["final_value"],
                    reason_code=reason_code,
                    created_at=T0 + timedelta(minutes=i + 1),
                )
            )
        return decision.id


def _rows(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["decision_id"]: row for row in frame.to_dict("records")}


def test_migration_adds_reopened_at(database: Database) -> None:
    with database.session() as session:
        columns = {c["name"]: c for c in inspect(session.connection()).get_columns("tickets")}
    assert database.current_revision() == "0004" == Database.head_revision()
    assert columns["reopened_at"]["nullable"]


def test_columns_map_from_decisions_reviews_tickets_and_clients(database: Database) -> None:
    ingest(database, [_ticket("A", client="Northwind")])
    tid = _ticket_id(database, "A")
    auto = _decide(database, tid)
    audit = _decide(
        database, tid, route="AUDIT", final_value="mailbox", reviews=(("alice", "wrong_category"),)
    )
    waiting = _decide(
        database,
        tid,
        route="HUMAN",
        propensity=1.0,
        confidence=0.5,
        reason=BELOW,
        final_value=None,
        status="waiting",
        decided_at=None,
        created_at=T0 - timedelta(hours=1),
    )
    two = _decide(
        database,
        tid,
        checkpoint="remediation",
        head="runbook",
        ai_value="firewall-allow-rule",
        final_value="firewall-allow-rule",
        route="HUMAN",
        propensity=1.0,
        confidence=0.4,
        reason="confidence 0.40 is below the threshold 0.90",
        decided_at=T0 + timedelta(hours=2),
        reviews=(("bob", "wrong_parameters"), ("carol", None)),
    )
    later = _decide(
        database, tid, route="AUDIT", reviews=(("dan", "wrong_category"), ("erin", "wrong_priority"))
    )
    with database.session() as session:
        frame = load_decisions(session)
    assert list(frame.columns) == [*CSV_COLUMNS, "reopened", "rejected", "reviewed", "correct", "eligible"]
    assert set(frame.columns) == {*CSV_COLUMNS, *DERIVED_COLUMNS}
    rows = _rows(frame)
    assert list(rows) == [str(auto), str(audit), str(waiting), str(two), str(later)]
    a = rows[str(auto)]
    assert (a["checkpoint"], a["label"], a["ai_value"], a["route"], a["client_id"]) == (
        "triage",
        "printer",
        "printer",
        "auto",
        "Northwind",
    )
    assert (a["confidence"], a["propensity"], a["threshold"]) == (0.97, 0.05, 0.9)
    # an automatic decision fills final_value itself: without a review it is no human verdict
    assert (a["final_value"], a["reviewer"], a["reason_code"], a["reviewed"]) == ("", "", "", False)
    assert a["decided_at"] == pd.Timestamp(T0) and not a["reopened"] and a["eligible"]
    b = rows[str(audit)]
    assert (b["route"], b["final_value"], b["reviewer"], b["reason_code"]) == (
        "audit",
        "mailbox",
        "alice",
        "wrong_category",
    )
    assert b["reviewed"] and not b["correct"]
    w = rows[str(waiting)]
    assert (
        w["route"] == "human"
        and w["final_value"] == ""
        and w["decided_at"] == pd.Timestamp(T0 - timedelta(hours=1))
    )
    t = rows[str(two)]
    assert (t["reviewer"], t["reason_code"], t["final_value"]) == (
        "bob+carol",
        "wrong_parameters",
        "firewall-allow-rule",
    )
    assert t["reviewed"] and t["correct"] and t["eligible"]
    assert (rows[str(later)]["reviewer"], rows[str(later)]["reason_code"]) == ("dan+erin", "wrong_priority")


def test_decisions_no_threshold_explains_are_left_out(database: Database) -> None:
    ingest(database, [_ticket("A")])
    tid = _ticket_id(database, "A")
    kept = _decide(database, tid)
    for kw in (
        {"confidence": None},
        {"threshold": None},
        {"propensity": None},
        {
            "checkpoint": "remediation",
            "ai_value": "none",
            "propensity": 0.0,
            "reason": "no runbook matches: nothing to execute",
        },
        {"ai_value": None, "final_value": None},
        {"route": "HUMAN", "propensity": 1.0, "reason": "high-risk runbook: two different approvers needed"},
        {
            "route": "HUMAN",
            "propensity": 1.0,
            "reason": "the policy grants the triage checkpoint no autonomy here",
        },
        {"route": "HUMAN", "propensity": 1.0, "reason": None},
    ):
        _decide(database, tid, reviews=(("alice", None),), **kw)
    with database.session() as session:
        frame = load_decisions(session)
    assert frame["decision_id"].tolist() == [str(kept)]


def test_since_is_inclusive_and_until_exclusive_on_decided_or_created(database: Database) -> None:
    ingest(database, [_ticket("A")])
    tid = _ticket_id(database, "A")
    hour = timedelta(hours=1)
    before = _decide(database, tid, decided_at=T0 - hour)
    at_since = _decide(database, tid, decided_at=T0, reviews=(("alice", None),))
    undecided = _decide(
        database,
        tid,
        route="HUMAN",
        propensity=1.0,
        reason=BELOW,
        final_value=None,
        decided_at=None,
        created_at=T0 + hour,
    )
    created_early = _decide(database, tid, created_at=T0 - 5 * hour, decided_at=T0 + 2 * hour)
    _decide(database, tid, decided_at=T0 + 3 * hour)  # at until: excluded
    with database.session() as session:
        window = load_decisions(session, since=T0, until=T0 + 3 * hour)
        naive = load_decisions(
            session, since=T0.replace(tzinfo=None), until=(T0 + 3 * hour).replace(tzinfo=None)
        )
        after = load_decisions(session, since=T0 + 3 * hour + timedelta(microseconds=1))
        until_only = load_decisions(session, until=T0)
    assert window["decision_id"].tolist() == [str(at_since), str(undecided), str(created_early)]
    assert window["reviewer"].tolist() == ["alice", "", ""]  # reviews follow the same window
    pd.testing.assert_frame_equal(naive, window)
    assert after.empty and list(after.columns) == list(window.columns)
    assert after.dtypes.equals(window.dtypes)
    assert until_only["decision_id"].tolist() == [str(before)]


def test_reopened_by_reingestion_flags_earlier_decisions_only(database: Database) -> None:
    ingest(
        database,
        [_ticket("R", status="resolved"), _ticket("S", status="resolved"), _ticket("N", status="open")],
    )
    r, s, n = (_ticket_id(database, x) for x in "RSN")
    past = datetime.now(UTC) - timedelta(days=1)
    before_reopen = _decide(database, r, decided_at=past)
    never_reopened = _decide(database, s, decided_at=past)
    open_all_along = _decide(database, n, decided_at=past)
    ingest(
        database,
        [
            _ticket("R", status="open", body="printer jams again"),
            _ticket("S", status="resolved", body="printer jams, fixed"),
            _ticket("N", status="waiting", body="printer still jams"),
        ],
    )
    with database.session() as session:
        reopened = {t.external_id: t.reopened_at for t in session.execute(select(Ticket)).scalars()}
    assert reopened["R"] is not None and reopened["S"] is None and reopened["N"] is None
    after_reopen = _decide(database, r, decided_at=datetime.now(UTC) + timedelta(seconds=1))
    # resolved again, then reopened again: the first reopen time stays
    ingest(database, [_ticket("R", status="resolved", body="fixed")])
    ingest(database, [_ticket("R", status="waiting", body="broken again")])
    with database.session() as session:
        assert session.get(Ticket, r).reopened_at == reopened["R"]  # type: ignore[union-attr]
        frame = load_decisions(session)
    flags = dict(zip(frame["decision_id"], frame["reopened"], strict=True))
    assert flags == {
        str(before_reopen): True,
        str(never_reopened): False,
        str(open_all_along): False,
        str(after_reopen): False,
    }


def test_export_round_trips_through_the_exchange_csv(database: Database, tmp_path: Path) -> None:
    ingest(database, [_ticket("A", status="resolved"), _ticket("B", client="Contoso")])
    a, b = _ticket_id(database, "A"), _ticket_id(database, "B")
    _decide(database, a, decided_at=T0 - timedelta(days=1))
    _decide(database, a, route="AUDIT", final_value="mailbox", reviews=(("alice", "wrong_category"),))
    _decide(
        database,
        b,
        route="HUMAN",
        propensity=1.0,
        confidence=0.5,
        reason=BELOW,
        final_value=None,
        decided_at=None,
    )
    _decide(
        database,
        b,
        checkpoint="remediation",
        head="runbook",
        ai_value="reset-password",
        final_value="reset-password",
        route="HUMAN",
        propensity=1.0,
        confidence=0.6,
        reason="confidence 0.60 is below the threshold 0.90",
        reviews=(("bob", None), ("carol", None)),
    )
    ingest(database, [_ticket("A", status="open", body="printer jams again")])
    path = tmp_path / "out" / "decisions.csv"
    done = run_cli("decisions", "export", str(path), "--since", "2026-11-02", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"path": str(path), "decisions": 3}
    with database.session() as session:
        expected = load_decisions(session, since=datetime(2026, 11, 2, tzinfo=UTC))
    exported = read_decision_csv(path)
    assert expected["reopened"].tolist() == [True, False, False]
    pd.testing.assert_frame_equal(exported, expected)
    plain = run_cli("decisions", "export", str(path))
    assert plain.returncode == 0 and plain.stdout.strip() == f"exported 4 decisions to {path}"


def test_export_rejects_a_bad_date_in_one_line(settings: Settings, tmp_path: Path) -> None:
    done = run_cli("decisions", "export", str(tmp_path / "x.csv"), "--since", "2026-13-01")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "error: --since '2026-13-01' is not an ISO 8601 date or date-time\n"
    assert not (tmp_path / "x.csv").exists()


def test_rejected_and_escalated_proposals_count_as_not_correct(database: Database, tmp_path: Path) -> None:
    """The lifecycle stores the AI's value as final_value for a reject or an escalate, so the review
    read 'final == ai' as agreement: a remediation rejected with risk_too_high pushed thresholds down.
    The stored rows stay as they are; the analysis (and the export's `rejected` column) reads the
    review's action."""
    ingest(database, [_ticket("R")])
    ticket = _ticket_id(database, "R")
    ids = {}
    for action, checkpoint, reason_code in (
        ("reject", "remediation", "risk_too_high"),
        ("escalate", "triage", "missing_info"),
        ("approve", "triage", None),
    ):
        ids[action] = _decide(database, ticket, checkpoint=checkpoint, route="AUDIT")
        with database.session() as session:
            session.add(Review(decision_id=ids[action], ticket_id=ticket, reviewer="rev", action=action,
                               final_value="printer", reason_code=reason_code, created_at=T0))  # fmt: skip
    with database.session() as session:
        frame = load_decisions(session)
        stored = {d.id: d.final_value for d in session.execute(select(Decision)).scalars()}
    assert set(stored.values()) == {"printer"}  # nothing rewritten
    rows = _rows(frame)
    verdicts = {a: (rows[str(i)]["reviewed"], rows[str(i)]["correct"]) for a, i in ids.items()}
    assert verdicts == {"reject": (True, False), "escalate": (True, False), "approve": (True, True)}
    path = tmp_path / "decisions.csv"
    assert run_cli("decisions", "export", str(path)).returncode == 0
    exported = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("decision_id")
    assert exported.loc[str(ids["reject"]), "rejected"] == "true"
    assert exported.loc[str(ids["approve"]), "rejected"] == "false"
    pd.testing.assert_frame_equal(read_decision_csv(path), frame)
