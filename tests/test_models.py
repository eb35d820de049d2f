"""TicketRecord is where good and bad records part: each rule gives a reason an operator can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from hitl.models import TicketRecord


def make(**fields: object) -> TicketRecord:
    return TicketRecord.model_validate({"external_id": "T-1", "body": "printer jammed", **fields})


def test_types_are_normalised() -> None:
    record = make(urgency="2", impact=3.0, category=4, priority=" High ", created_at="2026-11-01T08:00:00")
    assert record.urgency == 2 and record.impact == 3 and record.category == "4"
    assert record.priority == "high"
    assert record.created_at == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert make(created_at="2026-11-01T09:00:00+01:00").created_at == datetime(2026, 11, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"body": "  "}, "missing or empty"),
        ({"body": None}, "missing or empty"),
        ({"urgency": "high"}, "expected a whole number, got 'high'"),
        ({"urgency": 2.5}, "expected a whole number"),
        ({"urgency": 11}, "less than or equal to 10"),
        ({"created_at": "yesterday"}, "not an ISO 8601 date/time: 'yesterday'"),
        ({"priority": "urgent"}, "Input should be 'critical', 'high', 'medium' or 'low'"),
        ({"category": True}, "a label must be text or a number"),
        ({"external_id": ""}, "external_id"),
        ({"unexpected": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_fields_are_rejected_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**fields)


def test_content_hash_ignores_representation_not_content() -> None:
    assert make(category="4", urgency="1").content_hash() == make(category=4, urgency=1).content_hash()
    assert make(subject=None).content_hash() == make(subject="").content_hash()
    assert make(body="printer jammed").content_hash() != make(body="printer fixed").content_hash()


def test_requester_email_is_one_address_and_leaves_older_hashes_alone() -> None:
    """Where approved replies go. Absent, the content hash is the one computed before the field
    existed, so re-ingesting an unchanged source reports nothing as updated."""
    import hashlib
    import json

    from hitl.models import TicketRecord

    plain = TicketRecord(external_id="A-1", body="printer jam", requester_email="  ")
    assert plain.requester_email is None
    before = plain.model_dump(mode="json")
    del before["requester_email"]
    encoded = json.dumps(before, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plain.content_hash() == hashlib.sha256(encoded.encode("utf-8")).hexdigest()
    with_address = TicketRecord(external_id="A-1", body="printer jam", requester_email="dana@harbor.example")
    assert with_address.content_hash() != plain.content_hash()
    for bad in ("dana", "a@b.example, c@d.example", "Dana <dana@harbor.example>", "x\n@y.example"):
        with pytest.raises(ValueError, match="not an e-mail address"):
            TicketRecord(external_id="A-1", body="printer jam", requester_email=bad)
