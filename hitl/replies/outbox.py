"""The outbox: approved client replies waiting to be sent, one row per reply decision.

A row is written when the operator approves the reply; sending (smtp.py, or a PSA integration
reading `pending`) is a separate step, so an approved reply survives a mail server outage and is
never lost between the form and the wire.

Idempotent per decision: `decision_id` is unique in the table, and `queue_reply` inserts with
ON CONFLICT DO NOTHING, so a resumed or retried flow run that approves the same decision again
gets the existing row back, never a second message (the first approved text stands).

Status moves queued -> sending -> sent | failed. `sending` is taken in its own transaction before
a message goes on the wire: a second sender skips the row, and a crash between the mail server's
acceptance and `mark_sent` leaves the row in `sending` for a person to check rather than sending
the client the same reply twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Insert, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hitl.replies.distance import edit_distance
from hitl.store.orm import OutboxMessage, utcnow

log = logging.getLogger(__name__)


class OutboxStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"


def _newlines(text: str) -> str:
    """Browsers submit form text with CRLF; a line ending is not a human edit."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _checked(subject: str, final_body: str, to_address: str | None, approved_by: str) -> None:
    if not final_body.strip():
        raise ValueError("the reply is empty: an approved reply needs a text")
    if not approved_by.strip():
        raise ValueError("approved_by is required: every reply in the outbox names who approved it")
    if "\n" in subject or "\r" in subject:
        raise ValueError("the subject must be one line (a line break would start a new mail header)")
    if to_address is not None and ("@" not in to_address or any(c in to_address for c in "\r\n,;<>")):
        raise ValueError(f"not a single e-mail address: {to_address!r}")


def _insert(session: Session, values: dict[str, object]) -> None:
    """Insert unless a row for this decision exists (a concurrent approver may have just written it)."""
    dialect = session.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(OutboxMessage).on_conflict_do_nothing(index_elements=["decision_id"])
    elif dialect == "sqlite":
        stmt = sqlite.insert(OutboxMessage).on_conflict_do_nothing(index_elements=["decision_id"])
    else:
        try:
            with session.begin_nested():
                session.execute(insert(OutboxMessage).values(values))
        except IntegrityError:
            pass
        return
    session.execute(stmt.values(values))


def queue_reply(
    session: Session,
    *,
    ticket_id: int,
    decision_id: int,
    to_address: str | None,
    subject: str,
    draft_body: str,
    final_body: str,
    approved_by: str,
) -> OutboxMessage:
    """Queue the approved text, logging its edit distance from the draft; the existing row when
    this decision was queued before. `to_address` may be None (no address known): the row is
    kept, and a sender marks it failed with that reason."""
    draft_body, final_body = _newlines(draft_body), _newlines(final_body)
    _checked(subject, final_body, to_address, approved_by)
    _insert(
        session,
        {
            "ticket_id": ticket_id,
            "decision_id": decision_id,
            "to_address": to_address,
            "subject": subject,
            "body": final_body,
            "draft_body": draft_body,
            "edit_distance": edit_distance(draft_body, final_body),
            "approved_by": approved_by,
            "status": OutboxStatus.queued.value,
            "created_at": utcnow(),
        },
    )
    message = session.execute(
        select(OutboxMessage)
        .where(OutboxMessage.decision_id == decision_id)
        .execution_options(populate_existing=True)
    ).scalar_one()
    if message.body != final_body or message.ticket_id != ticket_id:
        log.warning(
            "decision %s was already queued as outbox message %s; keeping the first text",
            decision_id,
            message.id,
        )
    return message


def pending(session: Session, limit: int | None = None) -> list[OutboxMessage]:
    """Queued messages, oldest first (the order clients replied to first should be sent in)."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.queued.value)
        .order_by(OutboxMessage.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.execute(query).scalars())


def _move(session: Session, message_id: int, from_: tuple[OutboxStatus, ...], **values: object) -> bool:
    changed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status.in_([s.value for s in from_]))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(changed)


def claim(session: Session, message_id: int) -> bool:
    """queued -> sending; False when another sender (or an operator) got there first."""
    return _move(session, message_id, (OutboxStatus.queued,), status=OutboxStatus.sending.value)


def release(session: Session, message_id: int, error: str) -> bool:
    """sending -> queued, for a temporary refusal: the next run tries again."""
    return _move(session, message_id, (OutboxStatus.sending,), status=OutboxStatus.queued.value, error=error)


def mark_sent(session: Session, message_id: int, sent_at: datetime | None = None) -> bool:
    """queued or sending -> sent; False when the message is not waiting to be sent."""
    return _move(
        session,
        message_id,
        (OutboxStatus.queued, OutboxStatus.sending),
        status=OutboxStatus.sent.value,
        sent_at=sent_at or utcnow(),
        error=None,
    )


def mark_failed(session: Session, message_id: int, error: str) -> bool:
    """queued or sending -> failed, with the reason; a failed message is not retried by itself."""
    return _move(
        session,
        message_id,
        (OutboxStatus.queued, OutboxStatus.sending),
        status=OutboxStatus.failed.value,
        error=error,
    )
