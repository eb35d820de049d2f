"""The demo generator is reproducible and realistic enough to exercise the pipeline, and its batches
round-trip through the canonical CSV/JSONL format without changing a ticket's content hash."""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hitl.demo import CANONICAL_COLUMNS, CATEGORIES, DEFAULT_NOW, generate_tickets, write_batch
from hitl.models import ClientSpec, ClientTier, Priority, TicketRecord, TicketStatus
from policies.clients import load_client_catalog

REQUIRED_CATEGORIES = {
    "password_reset",
    "mailbox",
    "vpn",
    "printer",
    "patching",
    "firewall_change",
    "backup_failure",
    "outage",
    "new_user",
    "software_install",
    "hardware_failure",
    "phishing_report",
}
REOPEN = re.compile(r"reopen|\b(second|third|fourth) time\b", re.IGNORECASE)
EARLIER_ID = re.compile(r"DEMO-\d{6}")
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@pytest.fixture(scope="module")
def thousand() -> list[TicketRecord]:
    return generate_tickets(1000, seed=3)


def _hashes(records: list[TicketRecord]) -> list[str]:
    return [record.content_hash() for record in records]


def _revalidate(row: dict[str, Any]) -> TicketRecord:
    return TicketRecord.model_validate({key: None if value == "" else value for key, value in row.items()})


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_tickets() -> None:
    first, second = generate_tickets(80, seed=11), generate_tickets(80, seed=11)

    assert [r.model_dump() for r in first] == [r.model_dump() for r in second]
    assert _hashes(first) == _hashes(second)


def test_different_seed_gives_different_tickets() -> None:
    first, second = generate_tickets(80, seed=11), generate_tickets(80, seed=12)

    assert _hashes(first) != _hashes(second)
    assert sum(a.body != b.body for a, b in zip(first, second, strict=True)) > 40


def test_default_output_is_reproducible_and_anchored_to_a_fixed_now() -> None:
    records = generate_tickets()

    assert datetime(2026, 11, 26, 8, 0, tzinfo=UTC) == DEFAULT_NOW
    assert len(records) == 60
    assert _hashes(records) == _hashes(generate_tickets())
    assert _hashes(records) == _hashes(generate_tickets(60, 7, DEFAULT_NOW, load_client_catalog()))


def test_global_random_state_is_neither_used_nor_changed() -> None:
    random.seed(1)
    state = random.getstate()
    first = generate_tickets(30, seed=5)
    assert random.getstate() == state

    random.seed(2)
    assert _hashes(generate_tickets(30, seed=5)) == _hashes(first)


def test_naive_now_is_taken_as_utc() -> None:
    naive = datetime(2026, 3, 1, 12, 0)

    assert _hashes(generate_tickets(20, now=naive)) == _hashes(
        generate_tickets(20, now=naive.replace(tzinfo=UTC))
    )


def test_count_zero_and_negative() -> None:
    assert generate_tickets(0) == []
    with pytest.raises(ValueError, match="count"):
        generate_tickets(-1)


# ------------------------------------------------------------------ content
def test_every_category_appears_in_500_tickets() -> None:
    seen = {record.category for record in generate_tickets(500, seed=1)}

    assert set(CATEGORIES) >= REQUIRED_CATEGORIES
    assert seen == set(CATEGORIES)


def test_records_are_complete_and_consistent(thousand: list[TicketRecord]) -> None:
    for record in thousand:
        assert re.fullmatch(r"DEMO-\d{6}", record.external_id)
        assert record.subject and record.body
        assert record.language == "en"
        assert record.ticket_type in {"incident", "request"}
        assert record.queue and record.business_service
        assert record.priority is not None
        assert record.urgency is not None and 0 <= record.urgency <= 3
        assert record.impact is not None and 0 <= record.impact <= 4
        assert record.created_at is not None and record.created_at.tzinfo is not None
        assert DEFAULT_NOW - timedelta(days=14) <= record.created_at < DEFAULT_NOW
        assert record.updated_at == record.created_at
        assert (record.status == TicketStatus.resolved) == (record.resolution is not None)
        assert record.status in {TicketStatus.new, TicketStatus.resolved}
        for text in (record.subject, record.body, record.resolution or ""):
            assert "{" not in text and "}" not in text, text
        assert 2 <= len(SENTENCE_END.findall(record.body)) <= 6, record.body


def test_bodies_vary(thousand: list[TicketRecord]) -> None:
    assert len({record.body for record in thousand}) > 0.9 * len(thousand)
    assert len({record.subject for record in thousand}) > 300


def test_external_ids_are_unique_and_follow_creation_order(thousand: list[TicketRecord]) -> None:
    ids = [record.external_id for record in thousand]

    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert [r.created_at for r in thousand] == sorted(r.created_at for r in thousand)  # type: ignore[type-var]


def test_about_five_percent_have_no_client(thousand: list[TicketRecord]) -> None:
    share = sum(record.client is None for record in thousand) / len(thousand)

    assert 0.01 <= share <= 0.10
    assert {record.client for record in thousand} - {None} == set(load_client_catalog())


def test_bigger_clients_get_more_tickets() -> None:
    clients = {
        "Big Co": ClientSpec(name="Big Co", tier=ClientTier.platinum),
        "Small Co": ClientSpec(name="Small Co", tier=ClientTier.standard),
    }

    counts = Counter(record.client for record in generate_tickets(1000, seed=2, clients=clients))

    assert set(counts) <= {"Big Co", "Small Co", None}
    assert counts["Big Co"] > 2 * counts["Small Co"] > 0


def test_empty_catalog_leaves_every_client_unset() -> None:
    assert all(record.client is None for record in generate_tickets(50, clients={}))


def test_priority_distribution_depends_on_category(thousand: list[TicketRecord]) -> None:
    def urgent_share(category: str) -> float:
        records = [r for r in thousand if r.category == category]
        assert len(records) > 20
        return sum(r.priority in {Priority.critical, Priority.high} for r in records) / len(records)

    assert urgent_share("outage") > 0.7
    assert urgent_share("password_reset") < 0.2
    assert urgent_share("outage") - urgent_share("password_reset") > 0.5


def test_urgency_and_impact_follow_priority(thousand: list[TicketRecord]) -> None:
    by_priority: dict[Priority, list[TicketRecord]] = {p: [] for p in Priority}
    for record in thousand:
        assert record.priority is not None
        by_priority[record.priority].append(record)

    for record in by_priority[Priority.critical]:
        assert record.urgency == 3 and record.impact is not None and record.impact >= 3
    for record in by_priority[Priority.low]:
        assert record.urgency is not None and record.urgency <= 1
        assert record.impact is not None and record.impact <= 1
    order = [Priority.critical, Priority.high, Priority.medium, Priority.low]
    means = [sum(r.urgency or 0 for r in by_priority[p]) / len(by_priority[p]) for p in order]
    assert means == sorted(means, reverse=True) and len(set(means)) == 4


def test_some_tickets_are_reopens_and_a_few_cite_an_earlier_ticket(thousand: list[TicketRecord]) -> None:
    by_id = {record.external_id: record for record in thousand}
    reopens = [r for r in thousand if REOPEN.search(r.subject) or REOPEN.search(r.body)]
    citing = [r for r in thousand if EARLIER_ID.search(r.body)]

    assert 0.05 <= len(reopens) / len(thousand) <= 0.16
    assert 0 < len(citing) < len(reopens)
    for record in citing:
        assert REOPEN.search(record.body)
        for cited in EARLIER_ID.findall(record.body):
            assert cited < record.external_id
            assert by_id[cited].client == record.client


def test_about_a_third_are_resolved_with_an_answer(thousand: list[TicketRecord]) -> None:
    resolved = [r for r in thousand if r.status == TicketStatus.resolved]

    assert 0.25 <= len(resolved) / len(thousand) <= 0.42
    assert all(r.resolution and len(r.resolution) > 30 for r in resolved)


# ------------------------------------------------------------------ canonical batches
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_batch_round_trips_with_equal_content_hashes(tmp_path: Path, fmt: str) -> None:
    records = generate_tickets(300, seed=5)
    assert any(r.client is None for r in records) and any(r.resolution for r in records)

    path = write_batch(tmp_path / f"batch.{fmt}", records)

    if fmt == "csv":
        header, rows = _read_csv(path)
        assert header == list(CANONICAL_COLUMNS)
    else:
        rows = _read_jsonl(path)
        assert all(list(row) == list(CANONICAL_COLUMNS) for row in rows)
    assert _hashes([_revalidate(row) for row in rows]) == _hashes(records)


def test_csv_cells_are_plain_text(tmp_path: Path) -> None:
    records = generate_tickets(200, seed=5)
    _, rows = _read_csv(write_batch(tmp_path / "batch.csv", records))

    for record, row in zip(records, rows, strict=True):
        assert row["client"] == (record.client or "")
        assert row["resolution"] == (record.resolution or "")
        assert row["created_at"].endswith("+00:00")
        assert datetime.fromisoformat(row["created_at"]) == record.created_at
        assert row["priority"] == str(record.priority)
        assert row["urgency"] == str(record.urgency)


def test_jsonl_keeps_nulls_and_numbers(tmp_path: Path) -> None:
    records = generate_tickets(200, seed=5)
    rows = _read_jsonl(write_batch(tmp_path / "batch.jsonl", records))

    for record, row in zip(records, rows, strict=True):
        assert row["client"] == record.client
        assert row["resolution"] == record.resolution
        assert row["urgency"] == record.urgency and isinstance(row["urgency"], int)
        assert row["updated_at"].endswith("+00:00")


def test_format_comes_from_the_suffix_unless_given(tmp_path: Path) -> None:
    records = generate_tickets(5)

    upper = write_batch(tmp_path / "BATCH.CSV", records)
    assert upper.read_text(encoding="utf-8").startswith(",".join(CANONICAL_COLUMNS))

    forced = write_batch(tmp_path / "batch.data", records, fmt="jsonl")
    assert [row["external_id"] for row in _read_jsonl(forced)] == [r.external_id for r in records]

    with pytest.raises(ValueError, match="suffix"):
        write_batch(tmp_path / "batch.txt", records)
    with pytest.raises(ValueError, match="xml"):
        write_batch(tmp_path / "batch.csv", records, fmt="xml")  # type: ignore[arg-type]
    assert not (tmp_path / "batch.txt").exists()


def test_write_creates_folders_and_leaves_only_the_batch(tmp_path: Path) -> None:
    target = tmp_path / "inbox" / "2026-11-26" / "demo.csv"

    assert write_batch(target, generate_tickets(5)) == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["demo.csv"]


def test_failed_write_keeps_the_previous_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "demo.jsonl"
    write_batch(target, generate_tickets(5, seed=1))
    before = target.read_bytes()

    def refuse(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_batch(target, generate_tickets(5, seed=2))

    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["demo.jsonl"]


def test_empty_batch_has_only_a_header(tmp_path: Path) -> None:
    header, rows = _read_csv(write_batch(tmp_path / "empty.csv", []))

    assert header == list(CANONICAL_COLUMNS) and rows == []
    assert write_batch(tmp_path / "empty.jsonl", []).read_text(encoding="utf-8") == ""
