"""The tamper-evident audit trail: an append-only, hash-chained table of lifecycle events.

"Our AI made that decision, a human reviewed it, and here is the trail." Each event stores its
canonical JSON `body` exactly as hashed, the `prev_hash` of the event before it, and
`hash = SHA-256(prev_hash + body)`. Changing, removing or re-ordering any event breaks a link
that `verify_chain` finds; the migration adds triggers that refuse UPDATE and DELETE outright,
so the chain is what catches tampering that goes around the triggers (a superuser, a file edit).

A chain alone cannot reveal that its newest events were cut off or that the whole tail was
rewritten consistently: publish `ChainReport.head_hash` somewhere else (a ticket comment, a log
shipper) and compare it later to anchor the trail.

Transaction rule: `append_event` runs inside the caller's transaction, so the event commits or
rolls back with the change it records. It takes the chain's write lock (PostgreSQL: a
transaction-level advisory lock; SQLite: the `BEGIN IMMEDIATE` write lock `Database` already
holds), which every other append then waits for until the caller commits: append last, commit
soon.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from hitl.store.orm import NAME_LENGTH, AuditEvent, utcnow

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first event."""

# pg_advisory_xact_lock key that serializes appends (hitl.store.db uses 72_736_001 for migrations).
# Advisory keys are database-wide, so every schema in one database shares this lock.
_PG_AUDIT_LOCK = 72_736_002

LIFECYCLE_KINDS: tuple[str, ...] = (
    "decision.created",  # the AI proposed a value at a checkpoint (model, policy version, confidence)
    "decision.routed",  # the policy routed it: AUTO, HUMAN or AUDIT, with the threshold used
    "checkpoint.waiting",  # a flow run suspended for a human, with its deadline
    "review.recorded",  # a human approved / overrode / rejected, with reason code
    "review.refused",  # a submitted review was rejected (invalid input, not authorised, too late)
    "action.executed",  # a runbook ran under its idempotency key, with status and output digest
    "action.skipped_duplicate",  # a re-run found the idempotency key already executed
    "action.not_run",  # an approved runbook this deployment cannot run (executor not configured): escalated
    "action.result_unknown",  # an execution is still "running" with nobody behind it: not re-run, escalated
    "action.result_recorded",  # a person checked the target system and recorded an unknown result
    "lifecycle.recovered",  # a lifecycle run whose process died: restarted, result unknown, or escalated
    "reply.queued",  # a client reply went to the outbox, with its edit distance from the draft
    "checkpoint.timed_out",  # nobody reviewed before the deadline; the fallback that applied
    "policy.version_created",  # a new checkpoint policy version is in force
    "model.activated",  # a model version became the active one for its head
)
"""The kinds the ticket lifecycle writes. Documentation only: `kind` is a free string."""


class _EventInput(BaseModel):
    """The arguments of `append_event`, checked against the column sizes on every dialect."""

    model_config = ConfigDict(strict=True)

    kind: Annotated[str, Field(min_length=1, max_length=50)]
    actor: Annotated[str, Field(min_length=1, max_length=NAME_LENGTH)]
    ticket_id: int | None
    data: dict[str, Any]


class ChainReport(BaseModel):
    """What `verify_chain` found; `problem` is one sentence naming the first broken link."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    events_checked: int = Field(description="events verified intact before the first broken link")
    first_broken_seq: int | None = None
    problem: str | None = None
    head_hash: str = Field(
        default=GENESIS_HASH, description="hash of the last intact event (GENESIS_HASH when none)"
    )


class TimelineEntry(BaseModel):
    """One event of a ticket's history, as the trail recorded it."""

    model_config = ConfigDict(frozen=True)

    seq: int
    at: datetime
    kind: str
    actor: str
    data: dict[str, Any]


# ---------------------------------------------------------------- canonical JSON
def _iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime in audit data: give it a time zone")
    # Fixed width (always microseconds) so equal instants always print the same.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_PLAIN = (str, int, bool)


def _normalize(value: Any, path: str) -> Any:
    """Reduce `value` to JSON types, refusing whatever has no single obvious JSON form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} has no JSON form (NaN and infinities are refused)")
        return value
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, BaseModel):
        return _normalize(value.model_dump(), path)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: key {key!r} is not a string")
            kind = type(item)
            if item is None or kind in _PLAIN or (kind is float and math.isfinite(item)):
                out[key] = item  # the common case, without a call and a path string per value
            else:
                out[key] = _normalize(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_normalize(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{path}: {type(value).__name__} has no canonical JSON form; convert it first")


def canonical_json(value: Any) -> str:
    """One exact text per value: sorted keys, no whitespace, UTF-8 as is, datetimes as UTC 'Z'.

    The hash chain is only as stable as this text, so anything ambiguous (NaN, naive datetimes,
    non-string keys, sets, decimals) is refused rather than guessed.
    """
    text = json.dumps(
        _normalize(value, "$"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no database would store it faithfully
        raise ValueError(f"audit data is not valid Unicode: {exc.reason}") from exc
    return text


def _event_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- append
def _lock_chain(session: Session) -> None:
    """Serialize appends until the caller's transaction ends.

    SQLite needs nothing more: `Database` opens every transaction with BEGIN IMMEDIATE, which
    already holds the database's only write lock. PostgreSQL (READ COMMITTED) needs the advisory
    lock so two appenders cannot read the same last event.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_PG_AUDIT_LOCK)))


class NewEvent(NamedTuple):
    """One event to append; `append_events` writes many in one go."""

    kind: str
    actor: str
    ticket_id: int | None
    data: dict[str, Any]


def _chain_rows(session: Session, events: Sequence[NewEvent]) -> list[dict[str, Any]]:
    """The rows that extend the chain by `events`, in order (the caller holds the chain lock)."""
    checked = [_EventInput(kind=e.kind, actor=e.actor, ticket_id=e.ticket_id, data=e.data) for e in events]
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq = last.seq if last else 0
    prev_hash = last.hash if last else GENESIS_HASH
    at = utcnow()
    rows: list[dict[str, Any]] = []
    for args in checked:
        seq += 1
        body = canonical_json(
            {
                "seq": seq,
                "kind": args.kind,
                "actor": args.actor,
                "ticket_id": args.ticket_id,
                "at": at,
                "data": args.data,
            }
        )
        digest = _event_hash(prev_hash, body)
        rows.append(
            {
                "seq": seq,
                "ticket_id": args.ticket_id,
                "kind": args.kind,
                "actor": args.actor,
                "body": body,
                "prev_hash": prev_hash,
                "hash": digest,
                "created_at": at,
            }
        )
        prev_hash = digest
    return rows


def append_event(
    session: Session, *, kind: str, actor: str, ticket_id: int | None, data: dict[str, Any]
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction and return it (flushed).

    The event commits or rolls back with the caller's transaction, so a recorded review and its
    audit event never disagree. Other appenders wait on the chain lock until that transaction
    ends: call this last and commit promptly.
    """
    _lock_chain(session)
    (row,) = _chain_rows(session, [NewEvent(kind, actor, ticket_id, data)])
    event = AuditEvent(**row)
    session.add(event)
    session.flush()
    return event


def append_events(session: Session, events: Sequence[NewEvent]) -> int:
    """Append many events in order with one lock, one read of the chain's head and one
    multi-row INSERT: the batch path writes tens of thousands, and one round trip each would
    cost more than deciding them. Same transaction rule as `append_event`. Returns the count."""
    if not events:
        return 0
    _lock_chain(session)
    session.flush()  # rows the events refer to are written first
    rows = _chain_rows(session, events)
    session.execute(insert(AuditEvent.__table__), rows)  # Core: no ORM bookkeeping per row
    return len(rows)


# ---------------------------------------------------------------- verify
def _row_problem(row: Any, expected_seq: int, prev_hash: str) -> tuple[int, str] | None:
    """The (seq, sentence) of the first thing wrong with one row given the chain so far."""
    if row.seq != expected_seq:
        return expected_seq, (
            f"gap in seq: event {expected_seq} is missing (the chain jumps from "
            f"{expected_seq - 1} to {row.seq})"
        )
    if row.prev_hash != prev_hash:
        return row.seq, (
            f"prev_hash mismatch at event {row.seq}: it does not match the hash of event {row.seq - 1}"
        )
    if _event_hash(row.prev_hash, row.body) != row.hash:
        return row.seq, f"body hash mismatch at event {row.seq}: SHA-256(prev_hash + body) differs from hash"
    column = _column_mismatch(row)
    if column:
        return row.seq, f"column differs from body at event {row.seq}: {column}"
    return None


def _column_mismatch(row: Any) -> str | None:
    """Which stored column disagrees with the hashed body, if any (the body is the truth)."""
    try:
        body = json.loads(row.body)
        if canonical_json(body) != row.body:
            return "the body is not canonical JSON"
        at = datetime.fromisoformat(body["at"])
        columns = {"seq": row.seq, "kind": row.kind, "actor": row.actor, "ticket_id": row.ticket_id}
        for name, stored in columns.items():
            if body[name] != stored:
                return f"{name} is {stored!r} but the body says {body[name]!r}"
    except (ValueError, TypeError, KeyError) as exc:
        return f"the body cannot be read ({exc})"
    if at != row.created_at:
        return f"created_at is {row.created_at.isoformat()} but the body says {body['at']}"
    return None


def verify_chain(session: Session, batch: int = 1000) -> ChainReport:
    """Recompute the whole chain in seq order, `batch` rows at a time, and report the first break.

    Keyset pagination keeps memory flat for millions of events. On SQLite the session's
    BEGIN IMMEDIATE transaction blocks writers for the duration; on PostgreSQL appends can go on,
    and events committed during the walk are simply verified too.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    columns = (
        AuditEvent.seq,
        AuditEvent.ticket_id,
        AuditEvent.kind,
        AuditEvent.actor,
        AuditEvent.body,
        AuditEvent.prev_hash,
        AuditEvent.hash,
        AuditEvent.created_at,
    )
    checked, last_seq, prev_hash = 0, 0, GENESIS_HASH
    while True:
        rows = session.execute(
            select(*columns).where(AuditEvent.seq > last_seq).order_by(AuditEvent.seq).limit(batch)
        ).all()
        for row in rows:
            found = _row_problem(row, last_seq + 1, prev_hash)
            if found:
                broken_seq, problem = found
                return ChainReport(
                    ok=False,
                    events_checked=checked,
                    first_broken_seq=broken_seq,
                    problem=problem,
                    head_hash=prev_hash,
                )
            checked, last_seq, prev_hash = checked + 1, row.seq, row.hash
        if len(rows) < batch:
            return ChainReport(ok=True, events_checked=checked, head_hash=prev_hash)


# ---------------------------------------------------------------- read
def ticket_timeline(session: Session, ticket_id: int) -> list[TimelineEntry]:
    """A ticket's events in the order they happened, exactly as hashed: kind, actor and data come
    from the chained body, not from the columns beside it (an edited actor column showed the edit,
    "mallory" for the hashed "alice", although `verify_chain` reports the break)."""
    rows = session.execute(
        select(AuditEvent.seq, AuditEvent.created_at, AuditEvent.body)
        .where(AuditEvent.ticket_id == ticket_id)
        .order_by(AuditEvent.seq)
    ).all()
    bodies = [(r, json.loads(r.body)) for r in rows]
    return [
        TimelineEntry(seq=r.seq, at=r.created_at, kind=body["kind"], actor=body["actor"], data=body["data"])
        for r, body in bodies
    ]
