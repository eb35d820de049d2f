"""The outbox on SQLite and PostgreSQL, and SMTP sending against a real SMTP server on 127.0.0.1.

The server is the standard library's `smtpd` (deprecated, still shipped with Python 3.11) running
its asyncore loop in a thread: a real socket and a real SMTP dialogue, so smtplib, the status
transitions and the error handling are exercised as in production. It replies 550 to recipients
starting with "reject" and 451 to those starting with "defer", and does not offer AUTH.
"""

from __future__ import annotations

import email
import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from hitl.replies import OutboxStatus, SmtpSender, mark_failed, mark_sent, pending, queue_reply
from hitl.replies.outbox import claim
from hitl.store.db import Database
from hitl.store.orm import Client, Decision, OutboxMessage, Ticket

from .support import free_port, run_cli

PASSWORD = "s3cret-Pa55word"


@dataclass
class SmtpServer:
    port: int
    received: list[tuple[str, list[str], Message]] = field(default_factory=list)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import asyncore
        import smtpd

    server_info = SmtpServer(port=free_port())
    channels: dict[int, Any] = {}

    class Recorder(smtpd.SMTPServer):
        def process_message(
            self, peer: Any, mailfrom: str, rcpttos: list[str], data: bytes, **kwargs: Any
        ) -> str | None:
            if any(rcpt.startswith("reject") for rcpt in rcpttos):
                return "550 5.1.1 mailbox unavailable"
            if any(rcpt.startswith("defer") for rcpt in rcpttos):
                return "451 4.3.0 try again later"
            server_info.received.append((mailfrom, rcpttos, email.message_from_bytes(data)))
            return None

    server = Recorder(("127.0.0.1", server_info.port), None, map=channels)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            asyncore.loop(timeout=0.05, count=1, map=channels)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server_info
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        asyncore.close_all(map=channels)


@pytest.fixture
def ticket(database: Database) -> tuple[int, list[int]]:
    """A client, a ticket and five reply decisions, inserted directly."""
    with database.session() as session:
        client = Client(name="Harbor Point Dental Group", tier="silver", sla_hours={"high": 5})
        session.add(client)
        session.flush()
        row = Ticket(
            source="psa",
            external_id="T-100",
            client_id=client.id,
            subject="Printer offline",
            body="The printer at reception is offline.",
            created_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
            content_hash="0" * 64,
            status="new",
        )
        session.add(row)
        session.flush()
        decisions = [
            Decision(ticket_id=row.id, checkpoint="reply", head="reply", route="HUMAN", status="decided")
            for _ in range(5)
        ]
        session.add_all(decisions)
        session.flush()
        return row.id, [d.id for d in decisions]


def _queue(database: Database, ticket_id: int, decision_id: int, **overrides: Any) -> OutboxMessage:
    values: dict[str, Any] = {
        "ticket_id": ticket_id,
        "decision_id": decision_id,
        "to_address": "dana.morales@harborpoint.example",
        "subject": "Re: Printer offline",
        "draft_body": "Hello,\n\nWe restarted the printer.\n\nKind regards,\nService Desk\n",
        "final_body": "Hello Dana,\n\nWe restarted the printer.\n\nKind regards,\nService Desk\n",
        "approved_by": "operator@msp.example",
    }
    values.update(overrides)
    with database.session() as session:
        return queue_reply(session, **values)


def _status(database: Database, message_id: int) -> OutboxMessage:
    with database.session() as session:
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        return message


# ---------------------------------------------------------------- outbox
def test_queue_reply_stores_the_edit_distance(database: Database, ticket: tuple[int, list[int]]) -> None:
    ticket_id, decisions = ticket
    message = _queue(database, ticket_id, decisions[0])
    stored = _status(database, message.id)
    assert stored.edit_distance == len(" Dana")
    assert stored.status == OutboxStatus.queued and stored.sent_at is None
    assert stored.body.startswith("Hello Dana,") and stored.draft_body.startswith("Hello,")
    assert stored.approved_by == "operator@msp.example"
    # a browser form's CRLF line endings are not a human edit
    unchanged = _queue(database, ticket_id, decisions[1], final_body="a\r\nb\r\n", draft_body="a\nb\n")
    assert _status(database, unchanged.id).edit_distance == 0
    assert _status(database, unchanged.id).body == "a\nb\n"


def test_queue_reply_is_idempotent_per_decision(database: Database, ticket: tuple[int, list[int]]) -> None:
    ticket_id, decisions = ticket
    first = _queue(database, ticket_id, decisions[0])
    again = _queue(database, ticket_id, decisions[0], final_body="A different text after a retry")
    assert again.id == first.id and again.body == first.body
    with database.session() as session:
        count = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
        assert count == 1
        assert [m.id for m in pending(session)] == [first.id]


def test_queue_reply_refuses_what_cannot_be_sent(database: Database, ticket: tuple[int, list[int]]) -> None:
    ticket_id, decisions = ticket
    with pytest.raises(ValueError, match="empty"):
        _queue(database, ticket_id, decisions[0], final_body="  \n")
    with pytest.raises(ValueError, match="one line"):
        _queue(database, ticket_id, decisions[0], subject="Re: x\r\nBcc: victim@example.com")
    with pytest.raises(ValueError, match="single e-mail address"):
        _queue(database, ticket_id, decisions[0], to_address="a@example.com, b@example.com")
    with pytest.raises(ValueError, match="approved_by"):
        _queue(database, ticket_id, decisions[0], approved_by=" ")


def test_status_transitions(database: Database, ticket: tuple[int, list[int]]) -> None:
    ticket_id, decisions = ticket
    one = _queue(database, ticket_id, decisions[0])
    two = _queue(database, ticket_id, decisions[1])
    with database.session() as session:
        assert mark_sent(session, one.id)
        assert not mark_sent(session, one.id)  # already sent
        assert mark_failed(session, two.id, "no route")
        assert not mark_failed(session, two.id, "again")
        assert pending(session) == []
    assert _status(database, one.id).sent_at is not None
    assert _status(database, two.id).error == "no route"


# ---------------------------------------------------------------- SMTP
def test_send_pending_against_a_real_smtp_server(
    database: Database, ticket: tuple[int, list[int]], smtp_server: SmtpServer
) -> None:
    ticket_id, decisions = ticket
    good = _queue(database, ticket_id, decisions[0], final_body="Hello Dana,\n\nThe printer is back. Grüße\n")
    rejected = _queue(database, ticket_id, decisions[1], to_address="reject@harborpoint.example")
    deferred = _queue(database, ticket_id, decisions[2], to_address="defer@harborpoint.example")
    no_address = _queue(database, ticket_id, decisions[3], to_address=None)
    taken = _queue(database, ticket_id, decisions[4])
    with database.session() as session:
        assert claim(session, taken.id)  # another sender is on it: this run must skip it

    sender = SmtpSender(
        "127.0.0.1", smtp_server.port, "MSP Service Desk <servicedesk@msp.example>", timeout_s=10
    )
    report = sender.send_pending(database)

    assert report.error is None
    assert (report.attempted, report.sent, report.failed, report.deferred, report.no_recipient) == (
        3,
        1,
        1,
        1,
        1,
    )
    assert report.sent_ids == [good.id]
    assert len(smtp_server.received) == 1
    mailfrom, recipients, received = smtp_server.received[0]
    assert mailfrom == "servicedesk@msp.example" and recipients == ["dana.morales@harborpoint.example"]
    assert received["Subject"] == "Re: Printer offline"
    assert received["From"] == "MSP Service Desk <servicedesk@msp.example>"
    assert received["To"] == "dana.morales@harborpoint.example"
    assert received["Message-ID"] == f"<hitl-outbox-{good.id}@msp.example>"
    payload = received.get_payload(decode=True)
    assert isinstance(payload, bytes) and "The printer is back. Grüße" in payload.decode("utf-8")

    assert _status(database, good.id).status == OutboxStatus.sent
    assert _status(database, good.id).sent_at is not None
    assert _status(database, rejected.id).status == OutboxStatus.failed
    assert "550" in (_status(database, rejected.id).error or "")
    assert _status(database, deferred.id).status == OutboxStatus.queued
    assert "451" in (_status(database, deferred.id).error or "")
    assert _status(database, no_address.id).status == OutboxStatus.queued  # for a PSA integration
    assert _status(database, no_address.id).error is None
    assert _status(database, taken.id).status == OutboxStatus.sending

    # a second run sends nothing twice: only the deferred message is tried (and deferred) again
    again = sender.send_pending(database)
    assert (again.attempted, again.sent, again.deferred) == (1, 0, 1)
    assert len(smtp_server.received) == 1


def test_login_failure_keeps_messages_queued_and_never_shows_the_password(
    database: Database,
    ticket: tuple[int, list[int]],
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticket_id, decisions = ticket
    message = _queue(database, ticket_id, decisions[0])
    sender = SmtpSender(
        "127.0.0.1",
        smtp_server.port,
        "servicedesk@msp.example",
        username="relay-user",
        password=SecretStr(PASSWORD),
        timeout_s=10,
    )
    with caplog.at_level(logging.DEBUG):
        report = sender.send_pending(database)
    assert report.error is not None and "AUTH" in report.error
    assert report.sent == report.failed == 0
    assert _status(database, message.id).status == OutboxStatus.queued
    assert smtp_server.received == []
    assert PASSWORD not in report.model_dump_json()
    assert PASSWORD not in caplog.text and PASSWORD not in repr(sender) and PASSWORD not in str(vars(sender))


def test_unreachable_server_keeps_messages_queued(database: Database, ticket: tuple[int, list[int]]) -> None:
    ticket_id, decisions = ticket
    message = _queue(database, ticket_id, decisions[0])
    report = SmtpSender("127.0.0.1", free_port(), "servicedesk@msp.example", timeout_s=5).send_pending(
        database
    )
    assert report.error is not None and "cannot send through 127.0.0.1" in report.error
    assert report.attempted == 0
    assert _status(database, message.id).status == OutboxStatus.queued


def test_nothing_pending_does_not_connect(database: Database) -> None:
    report = SmtpSender("127.0.0.1", free_port(), "servicedesk@msp.example").send_pending(database)
    assert report.error is None and report.attempted == 0


def test_sender_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="both"):
        SmtpSender("smtp.example", 587, "a@example.com", username="u")
    with pytest.raises(ValueError, match="port"):
        SmtpSender("smtp.example", 0, "a@example.com")
    with pytest.raises(ValueError, match="e-mail address"):
        SmtpSender("smtp.example", 25, "not-an-address")


def test_outbox_send_exits_1_when_a_reply_failed_and_keeps_replies_without_a_recipient(
    database: Database, ticket: tuple[int, list[int]], smtp_server: SmtpServer
) -> None:
    """A scheduler runs `hitl outbox send`: a reply refused for good must not exit 0, and a reply
    whose ticket has no requester address stays queued (it was failed for good, with every reply of
    a source that gives no addresses)."""
    ticket_id, decisions = ticket
    good = _queue(database, ticket_id, decisions[0])
    rejected = _queue(database, ticket_id, decisions[1], to_address="reject@harborpoint.example")
    no_address = _queue(database, ticket_id, decisions[2], to_address=None)
    env = {"HITL_SMTP_HOST": "127.0.0.1", "HITL_SMTP_PORT": str(smtp_server.port),
           "HITL_SMTP_SENDER": "servicedesk@msp.example", "HITL_SMTP_STARTTLS": "false"}  # fmt: skip
    result = run_cli("outbox", "send", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sent 1, failed 1, deferred 0, kept queued without a recipient 1" in result.stdout
    assert (
        result.stderr.strip().splitlines()[-1] == "error: 1 repl(ies) failed for good: see `hitl outbox list`"
    )
    assert _status(database, good.id).status == OutboxStatus.sent
    assert _status(database, rejected.id).status == OutboxStatus.failed
    assert _status(database, no_address.id).status == OutboxStatus.queued
