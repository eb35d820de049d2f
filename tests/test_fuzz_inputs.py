"""Property-based fuzzing of the two doors untrusted input comes through: ingestion records and
checkpoint answers. Whatever arrives, nothing crashes, every bad record is quarantined with a
reason, no good record is lost, and an answer is either a verdict or a list of problems."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from hitl.checkpoints import CheckpointView, Suggestion, TicketView, Verdict, check_review
from hitl.ingestion import pipeline
from hitl.store.db import Database
from hitl.store.orm import QuarantineRecord, Ticket
from policies.mappings import load_mapping

COLUMNS = ("external_id", "client", "subject", "body", "created_at", "priority", "urgency", "category")
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
FIELD = st.one_of(
    TEXT,
    st.sampled_from(["", " ", "low", "high", "critical", "2026-11-02T10:00:00Z", "not a date", "0", "-1",
                     '"', "\\", "\n", "\r\n", ",", "<script>", "NULL", "9" * 30]),
)  # fmt: skip


@st.composite
def records(draw: st.DrawFn) -> list[dict[str, str]]:
    count = draw(st.integers(min_value=1, max_value=12))
    rows = []
    for index in range(count):
        row = {column: draw(FIELD) for column in COLUMNS}
        row["external_id"] = f"F{index}-{draw(TEXT)}"  # unique per file: duplicates are another test
        if draw(st.booleans()):  # half the rows are well-formed, so "no good record lost" is tested
            row.update(subject=draw(TEXT) + "s", body=draw(TEXT) + "b", created_at="2026-11-02T10:00:00Z",
                       priority=draw(st.sampled_from(["low", "medium", "high", "critical"])))  # fmt: skip
        rows.append(row)
    return rows


def _expected_valid(rows: list[dict[str, str]]) -> set[str]:
    """The oracle: the pipeline's own per-record validation, applied to what the file will hold."""
    from hitl.ingestion.files import RawRecord

    mapping = load_mapping("canonical")
    valid = set()
    for number, row in enumerate(rows, start=1):
        raw = RawRecord(row_number=number, line_number=number + 1, raw=json.dumps(row), data=dict(row))
        if not isinstance(pipeline.validate_record(raw, mapping, "unassigned"), str):
            valid.add(row["external_id"].strip())
    return valid


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(rows=records(), as_csv=st.booleans())
def test_any_records_are_stored_or_quarantined_never_lost(
    database: Database, tmp_path_factory: Any, rows: list[dict[str, str]], as_csv: bool
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / ("batch.csv" if as_csv else "batch.jsonl")
    if as_csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS)  # quotes any field with \r or \n
        writer.writeheader()
        writer.writerows(rows)
        path.write_bytes(buffer.getvalue().encode("utf-8"))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    source = f"fuzz-{folder.name}"
    run_id = pipeline.open_run(database, source, "canonical", str(path), None)
    ctx = pipeline.IngestionContext(db=database, mapping=load_mapping("canonical"), source=source,
                                    run_id=run_id, default_client="unassigned", batch_size=5)  # fmt: skip
    result, _ = pipeline.ingest_file(ctx, path, False)
    report = pipeline.close_run(database, run_id, [result], [])
    with database.session() as session:
        stored = {
            t.external_id: t for t in session.execute(select(Ticket).where(Ticket.source == source)).scalars()
        }
        quarantined = list(
            session.execute(
                select(QuarantineRecord).where(QuarantineRecord.ingestion_run_id == run_id)
            ).scalars()
        )
    assert all(q.error and q.error.strip() for q in quarantined), "every quarantined record has a reason"
    assert report.stats.read == len(stored) + len(quarantined) >= 1
    expected = _expected_valid(rows)  # the pipeline's own validation of each record: the oracle
    assert expected <= set(stored), f"good records lost: {sorted(expected - set(stored))}"
    for row in rows:
        ticket = stored.get(row["external_id"].strip())
        if ticket is not None:
            assert ticket.subject.strip() == row["subject"].strip()  # str.strip also drops \x1c-\x1f


VIEW = CheckpointView(
    checkpoint="triage",
    ticket=TicketView(id=1, external_id="T1", source="fuzz", client="Acme", client_tier="standard",
                      subject="printer", body="jammed", created_at=datetime(2026, 11, 2, tzinfo=UTC)),
    suggestions=[
        Suggestion(field="category", label="Category", ai_value="printer", confidence=0.42,
                   choices=["printer", "network"]),
        Suggestion(field="priority", label="Priority", ai_value="low", confidence=0.6,
                   choices=["low", "medium", "high", "critical"]),
        Suggestion(field="parameters", label="Parameters", ai_value="{}"),
    ],
    why_human="fuzz",
    reason_codes=["wrong_category", "other"],
    approved_by=["alice"],
)  # fmt: skip


ANSWER = st.dictionaries(
    st.sampled_from(
        ["decision", "category", "priority", "parameters", "reason_code", "reviewer", "comment", ""]
    ),
    st.one_of(
        TEXT, st.none(), st.integers(), st.lists(TEXT, max_size=3), st.dictionaries(TEXT, TEXT, max_size=2)
    ),
    max_size=7,
)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=ANSWER)
def test_any_answer_is_a_verdict_or_problems(answer: dict[str, Any]) -> None:
    outcome = check_review(VIEW, answer)
    if isinstance(outcome, Verdict):
        assert outcome.reviewer.strip()
        assert outcome.reviewer != "alice"  # already approved: a second approver must differ
        assert set(outcome.changed) <= {"category", "priority", "parameters"}
    else:
        assert outcome and all(isinstance(p, str) and p.strip() and "\n" not in p for p in outcome)
