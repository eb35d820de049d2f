"""Send queued outbox messages over SMTP (optional: without it the outbox is the hand-over).

One connection per run. What a failure means decides what happens to the rows:

* the server cannot be reached, refuses STARTTLS or the login: nothing was sent, every row stays
  `queued` for the next run, and the report carries the reason;
* a 4xx reply to one message (greylisting, a full queue): that row goes back to `queued`;
* a 5xx reply, a refused recipient, no or an invalid address: that row is `failed` with the reason;
* the connection drops while a message is on the wire: whether the server kept it is unknown, so
  the row is `failed` with that reason (a person checks; the client never gets it twice) and
  the run stops, leaving the rest `queued`.

The password is a SecretStr, revealed only in the call to `login`; smtplib's debug output (which
would print the AUTH exchange) is never switched on, and every error text that leaves this module
has the password masked in case a server echoes it back.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from pydantic import BaseModel, Field, SecretStr

from hitl.replies.outbox import OutboxStatus, claim, mark_failed, mark_sent, pending, release
from hitl.store.db import Database
from hitl.store.orm import OutboxMessage
from hitl.text import is_email_address

log = logging.getLogger(__name__)


class SendFailure(BaseModel):
    message_id: int
    error: str


class SendReport(BaseModel):
    """What one `send_pending` run did; `error` is set when the run could not send at all."""

    attempted: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    # queued replies whose ticket has no requester address: left queued (a PSA integration can post
    # them; e-mail cannot), never failed: failing them lost every reply of a source without addresses
    no_recipient: int = 0
    sent_ids: list[int] = Field(default_factory=list)
    failures: list[SendFailure] = Field(default_factory=list)
    error: str | None = None


class SmtpSender:
    """An SMTP relay for outbox messages. The connection is opened per `send_pending` call."""

    def __init__(
        self,
        host: str,
        port: int,
        sender_address: str,
        username: str | None = None,
        password: SecretStr | None = None,
        starttls: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        if not host:
            raise ValueError("an SMTP host is required")
        if not 0 < port < 65536:
            raise ValueError(f"SMTP port must be 1-65535, got {port}")
        if not is_email_address(sender_address):
            raise ValueError(f"not an e-mail address: {sender_address!r}")
        address = parseaddr(sender_address)[1]
        if (username is None) != (password is None):
            raise ValueError("give both an SMTP username and a password, or neither")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.host, self.port, self.sender_address = host, port, sender_address
        self._domain = address.rsplit("@", 1)[1]
        self.username, self._password = username, password
        self.starttls, self.timeout_s = starttls, timeout_s

    def __repr__(self) -> str:
        auth = f", username={self.username!r}, password='**********'" if self.username else ""
        return (
            f"SmtpSender(host={self.host!r}, port={self.port}, sender_address={self.sender_address!r}{auth})"
        )

    def _masked(self, exc: BaseException) -> str:
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        secret = self._password.get_secret_value() if self._password else ""
        return text.replace(secret, "**********") if secret else text

    def _connect(self) -> smtplib.SMTP:
        connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            connection.ehlo()
            if self.starttls:
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if self.username is not None and self._password is not None:
                connection.login(self.username, self._password.get_secret_value())
        except BaseException:
            connection.close()
            raise
        return connection

    def _email(self, message: OutboxMessage) -> EmailMessage:
        """Raises ValueError for a header the email package refuses (e.g. a line break)."""
        email = EmailMessage()
        email["From"] = self.sender_address
        email["To"] = message.to_address or ""
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        # Deterministic, so a receiving system recognises the same reply if it ever arrives twice.
        email["Message-ID"] = f"<hitl-outbox-{message.id}@{self._domain}>"
        email.set_content(message.body)
        return email

    def send_pending(self, db: Database, limit: int | None = None) -> SendReport:
        """Send queued messages, oldest first, and record each outcome in its own transaction."""
        report = SendReport()
        with db.session() as session:
            queued = pending(session, limit)
        ids = [message.id for message in queued if message.to_address]
        report.no_recipient = len(queued) - len(ids)
        if not ids:
            return report
        try:
            connection = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            report.error = f"cannot send through {self.host}:{self.port}: {self._masked(exc)}"
            log.error("outbox: %s; %d message(s) stay queued", report.error, len(ids))
            return report
        try:
            for message_id in ids:
                if not self._send_one(db, connection, message_id, report):
                    break
        finally:
            try:
                connection.quit()
            except (OSError, smtplib.SMTPException):
                connection.close()
        return report

    def _send_one(self, db: Database, connection: smtplib.SMTP, message_id: int, report: SendReport) -> bool:
        """False when the connection is gone and the run must stop."""
        if connection.sock is None:  # the server closed it (a 421 reply): nothing more goes out
            report.error = report.error or f"{self.host}:{self.port} closed the connection"
            return False
        with db.session() as session:
            if not claim(session, message_id):
                return True  # another sender took it, or it is no longer queued
            message = session.get(OutboxMessage, message_id)
        if message is None or message.status != OutboxStatus.sending:
            return True
        report.attempted += 1
        if not message.to_address:
            self._fail(db, report, message_id, "no recipient address")
            return True
        try:
            connection.send_message(self._email(message))
        except ValueError as exc:
            self._fail(db, report, message_id, f"cannot build the message: {self._masked(exc)}")
            return True
        except smtplib.SMTPNotSupportedError as exc:  # e.g. a non-ASCII address without SMTPUTF8
            self._fail(db, report, message_id, f"not supported by the server: {self._masked(exc)}")
            return True
        except smtplib.SMTPRecipientsRefused as exc:
            self._fail(db, report, message_id, f"recipient refused: {self._masked(exc)}")
            return True
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                with db.session() as session:
                    release(session, message_id, f"deferred: {self._masked(exc)}")
                report.deferred += 1
                return True
            self._fail(db, report, message_id, f"refused by the server: {self._masked(exc)}")
            return True
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._fail(
                db,
                report,
                message_id,
                f"connection lost while sending, delivery unknown: {self._masked(exc)}",
            )
            report.error = f"connection to {self.host}:{self.port} lost: {self._masked(exc)}"
            return False
        with db.session() as session:
            mark_sent(session, message_id)
        report.sent += 1
        report.sent_ids.append(message_id)
        log.info("outbox: message %d (ticket %d) sent", message_id, message.ticket_id)
        return True

    def _fail(self, db: Database, report: SendReport, message_id: int, error: str) -> None:
        with db.session() as session:
            mark_failed(session, message_id, error)
        report.failed += 1
        report.failures.append(SendFailure(message_id=message_id, error=error))
        log.warning("outbox: message %d failed: %s", message_id, error)
