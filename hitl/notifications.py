"""Notifications: Prefect automations that tell people when a checkpoint starts waiting for a human
and when one times out.

The lifecycle already emits the events (`hitl.checkpoint.waiting` from the announce-waiting task,
`hitl.checkpoint.timed_out` from the checkpoint-timeouts flow). This module puts on the Prefect
server, idempotently:

* notification blocks, one per channel, each holding its whole target as an Apprise URL in the
  block's `url`, a SecretStr field that Prefect stores encrypted and never returns unless asked for
  secrets. Prefect ships no SMTP block and no generic Apprise block, but its "Slack Webhook" block
  hands any URL that is not a hooks.slack.com one straight to Apprise (which Prefect depends on):
  - `hitl-notify-webhook`: Apprise's `json(s)://` form of the webhook URL, set to POST exactly
    Slack's `{"text": ...}` (Slack, Mattermost, Rocket.Chat and most chat webhooks accept it);
  - `hitl-notify-email`: an Apprise `mailto://` URL built from the `HITL_SMTP_*` settings, so the
    server's automation service sends the e-mail over SMTP itself;
* two automations (`hitl-checkpoint-waiting`, `hitl-checkpoint-timed-out`) whose actions send a
  message through every hitl block on the server, rendered from the event: ticket id, checkpoint,
  why a human is asked, and a link to the flow run.

Secrets come from the environment (`HITL_NOTIFY_WEBHOOK_URL`, `HITL_SMTP_PASSWORD`) or from a Prefect
Secret block named by the caller; they never appear in a report, an error or a log line of this
module. Nothing here imports Prefect at module level: the caller points Prefect at its server first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit
from uuid import UUID

from pydantic import BaseModel, Field, SecretStr

from hitl.errors import ConfigError, HitlError
from hitl.settings import Settings
from hitl.text import address_list

WAITING_EVENT = "hitl.checkpoint.waiting"
TIMED_OUT_EVENT = "hitl.checkpoint.timed_out"
WEBHOOK_BLOCK = "hitl-notify-webhook"
EMAIL_BLOCK = "hitl-notify-email"
WAITING_AUTOMATION = "hitl-checkpoint-waiting"
TIMED_OUT_AUTOMATION = "hitl-checkpoint-timed-out"
_WEBHOOK_SECRET_KEY = "webhook_url"

Channel = Literal["webhook", "email"]
Outcome = Literal["created", "updated", "unchanged"]


class NotifyError(HitlError):
    """Notifications cannot be set up or sent; the message never contains a secret."""


# ---------------------------------------------------------------- configuration
class EmailChannel(BaseModel):
    host: str
    port: int
    sender: str
    recipients: list[str]
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = True

    def apprise_url(self) -> SecretStr:
        """`mailto://[user:password@]host:port?from=...&to=...&mode=...&format=text` for Apprise."""
        auth = ""
        if self.username:
            secret = self.password.get_secret_value() if self.password else ""
            auth = f"{quote(self.username, safe='')}:{quote(secret, safe='')}@"
        query = urlencode(
            {
                "from": self.sender,
                "to": ",".join(self.recipients),
                "mode": "starttls" if self.starttls else "insecure",
                "format": "text",
            },
            quote_via=quote,
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        return SecretStr(f"mailto://{auth}{host}:{self.port}?{query}")


class NotifyConfig(BaseModel):
    """What `setup` puts on the server. Unset channels are left as they are there."""

    webhook_url: SecretStr | None = None
    email: EmailChannel | None = None
    ui_url: str | None = None

    @property
    def channels(self) -> list[Channel]:
        found: list[Channel] = []
        if self.webhook_url is not None:
            found.append("webhook")
        if self.email is not None:
            found.append("email")
        return found

    def secrets(self) -> list[str]:
        """Every secret value in this configuration (to scrub from messages)."""
        values = [self.webhook_url.get_secret_value() if self.webhook_url else ""]
        if self.email is not None:
            values.append(self.email.password.get_secret_value() if self.email.password else "")
            values.append(self.email.apprise_url().get_secret_value())
        return [v for v in values if v]


def _secret_block_value(name: str) -> str:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError as exc:
        raise NotifyError(f"no Prefect Secret block named {name!r}") from exc
    if not isinstance(value, str) or not value:
        raise NotifyError(f"the Prefect Secret block {name!r} does not hold a non-empty string")
    return value


def resolve_config(
    settings: Settings,
    *,
    webhook_url_secret: str | None = None,
    smtp: bool = False,
    smtp_password_secret: str | None = None,
    ui_url: str | None = None,
) -> NotifyConfig:
    """The channels to set up: the webhook from a Secret block or HITL_NOTIFY_WEBHOOK_URL; e-mail
    (only when `smtp`) from HITL_SMTP_* and HITL_NOTIFY_EMAIL_TO, the password from a Secret block or
    HITL_SMTP_PASSWORD."""
    webhook: SecretStr | None = None
    if webhook_url_secret:
        webhook = SecretStr(_secret_block_value(webhook_url_secret))
    elif settings.notify_webhook_url is not None and settings.notify_webhook_url.get_secret_value():
        webhook = settings.notify_webhook_url
    if webhook is not None:
        parts = urlsplit(webhook.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            source = (
                f"Secret block {webhook_url_secret!r}" if webhook_url_secret else "HITL_NOTIFY_WEBHOOK_URL"
            )
            raise ConfigError(f"{source} is not an http(s) URL")  # the value itself is a secret
    email: EmailChannel | None = None
    if smtp:
        missing = [
            name
            for name, value in (
                ("HITL_SMTP_HOST", settings.smtp_host),
                ("HITL_SMTP_SENDER", settings.smtp_sender),
                ("HITL_NOTIFY_EMAIL_TO", address_list(settings.notify_email_to)),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"e-mail notifications need {', '.join(missing)}")
        password = settings.smtp_password
        if smtp_password_secret:
            password = SecretStr(_secret_block_value(smtp_password_secret))
        if (settings.smtp_username is None) != (password is None):
            raise ConfigError("give both HITL_SMTP_USERNAME and an SMTP password, or neither")
        assert settings.smtp_host is not None and settings.smtp_sender is not None
        email = EmailChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            recipients=address_list(settings.notify_email_to),
            username=settings.smtp_username,
            password=password,
            starttls=settings.smtp_starttls,
        )
    return NotifyConfig(webhook_url=webhook, email=email, ui_url=ui_url or default_ui_url())


def default_ui_url() -> str | None:
    """Prefect's UI address as the client sees it (PREFECT_UI_URL, else derived from PREFECT_API_URL)."""
    from prefect.settings import PREFECT_UI_URL

    value = PREFECT_UI_URL.value()
    return str(value).rstrip("/") if value else None


# ---------------------------------------------------------------- messages
# Rendered by the Prefect server (sandboxed Jinja) from the triggering event. Only ids, the
# checkpoint name and the routing reason go in: never ticket text, which is untrusted. For the
# webhook, &, < and > are escaped as Slack requires, so a value cannot ping a channel or forge a link.
_SLACK = "| replace('&', '&amp;') | replace('<', '&lt;') | replace('>', '&gt;')"


def _field(name: str, default: str, slack: bool) -> str:
    return (
        f"{{{{ (event.payload.{name} or '{default}') | string | truncate(300) {_SLACK if slack else ''} }}}}"
    )


def _link(ui_url: str | None) -> str:
    run = "{{ event.payload.flow_run_id }}"
    target = f"{ui_url}/runs/flow-run/{run}" if ui_url else f"flow run {run}"
    return f"{{% if event.payload.flow_run_id %}}{target}{{% else %}}(no flow run){{% endif %}}"


def _checkpoint(slack: bool) -> str:
    """'the triage checkpoint', or 'its checkpoint' when the event does not name it."""
    name = _field("checkpoint", "", slack)
    return f"{{% if event.payload.checkpoint %}}the {name} checkpoint{{% else %}}its checkpoint{{% endif %}}"


def messages(event: str, ui_url: str | None, slack: bool) -> tuple[str, str]:
    """(subject, body) templates of the notification for `event`."""
    ticket = _field("ticket_id", "?", slack)
    checkpoint = _checkpoint(slack)
    if event == WAITING_EVENT:
        subject = f"hitl: ticket {ticket} waits at {checkpoint}"
        body = "\n".join(
            [
                f"Ticket {ticket} waits for a human at {checkpoint}.",
                f"Why: {_field('why', 'review requested', slack)}",
                f"Answer it in the Prefect UI: {_link(ui_url)}",
                "or: hitl resume {{ event.payload.flow_run_id }} --decision ... --reviewer NAME",
            ]
        )
    else:
        subject = f"hitl: ticket {ticket} timed out at {checkpoint}"
        body = "\n".join(
            [
                f"Ticket {ticket} timed out at {checkpoint}. It is in the "
                f"{_field('fallback', 'escalation queue', slack)}; nothing was executed or sent.",
                f"Its run, now cancelled: {_link(ui_url)}",
            ]
        )
    return subject, body


# ---------------------------------------------------------------- blocks
class BlockReport(BaseModel):
    name: str
    channel: Channel
    block_type: str
    id: str
    outcome: Outcome


class AutomationReport(BaseModel):
    name: str
    event: str
    id: str
    channels: list[Channel]
    outcome: Outcome


class SetupReport(BaseModel):
    blocks: list[BlockReport] = Field(default_factory=list)
    automations: list[AutomationReport] = Field(default_factory=list)
    ui_url: str | None = None

    def lines(self) -> list[str]:
        out = [f"block {b.name} ({b.block_type}): {b.outcome}" for b in self.blocks]
        out += [
            f"automation {a.name} on {a.event} -> {', '.join(a.channels) or 'no channel'}: {a.outcome}"
            for a in self.automations
        ]
        return out


def _comparable(block: Any) -> dict[str, Any]:
    data = block.model_dump(mode="json", context={"include_secrets": True})
    return {k: v for k, v in data.items() if not k.startswith("_") and k != "block_type_slug"}


def apprise_json_url(url: str) -> str:
    """Apprise's `json(s)://` form of an http(s) URL, set to POST exactly `{"text": <body>}` (its
    own keys dropped, `message` renamed); the URL's query parameters are passed through."""
    parts = urlsplit(url)
    scheme = "jsons" if parts.scheme == "https" else "json"
    query = ":message=text&:version=&:title=&:type=&:attachments="
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query += f"&-{quote(key, safe='')}={quote(value, safe='')}"
    return f"{scheme}://{parts.netloc}{parts.path or '/'}?{query}"


def _webhook_block(url: SecretStr) -> Any:
    from prefect.blocks.notifications import SlackWebhook

    # Prefect's Custom Webhook block would do the POST too, but when the receiver answers an error
    # the server logs httpx's exception, URL (and so a Slack token) included, and retries it.
    # Apprise reports failures without the URL, and Prefect turns them into "Notification failed".
    return SlackWebhook(url=SecretStr(apprise_json_url(url.get_secret_value())), notify_type="info")


def _email_block(email: EmailChannel) -> Any:
    from prefect.blocks.notifications import SlackWebhook

    return SlackWebhook(url=email.apprise_url(), notify_type="info")


_BLOCK_TYPES = {"webhook": "SlackWebhook", "email": "SlackWebhook"}
_BLOCK_NAMES: dict[Channel, str] = {"webhook": WEBHOOK_BLOCK, "email": EMAIL_BLOCK}


def _block_class(channel: Channel) -> Any:
    from prefect.blocks import notifications

    return getattr(notifications, _BLOCK_TYPES[channel])


def _existing_block(channel: Channel) -> Any | None:
    try:
        return _block_class(channel).load(_BLOCK_NAMES[channel])
    except ValueError:  # Prefect's "Unable to find block document named ..."
        return None


def ensure_block(channel: Channel, block: Any) -> BlockReport:
    """Create the channel's block, or update it in place (same document id) when it differs."""
    name = _BLOCK_NAMES[channel]
    existing = _existing_block(channel)
    if existing is not None and _comparable(existing) == _comparable(block):
        outcome: Outcome = "unchanged"
        block_id = existing._block_document_id
    else:
        block_id = block.save(name, overwrite=True)
        outcome = "created" if existing is None else "updated"
    return BlockReport(
        name=name, channel=channel, block_type=_BLOCK_TYPES[channel], id=str(block_id), outcome=outcome
    )


def present_blocks() -> dict[Channel, UUID]:
    """The hitl notification blocks on the server, by channel."""
    found: dict[Channel, UUID] = {}
    for channel in ("webhook", "email"):
        block = _existing_block(channel)  # type: ignore[arg-type]
        if block is not None and block._block_document_id is not None:
            found[channel] = block._block_document_id  # type: ignore[index]
    return found


# ---------------------------------------------------------------- automations
def _automation(name: str, event: str, blocks: dict[Channel, UUID], ui_url: str | None) -> Any:
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    actions = []
    for channel, block_id in sorted(blocks.items()):
        subject, body = messages(event, ui_url, slack=channel == "webhook")
        if channel == "webhook":  # only the body is posted: {"text": "*subject*\nbody"}
            body = f"*{subject}*\n{body}"
        actions.append(SendNotification(block_document_id=block_id, subject=subject, body=body))
    what = "starts waiting for a human" if event == WAITING_EVENT else "times out"
    return AutomationCore(
        name=name,
        description=f"hitl-ops: notify when a checkpoint {what} (managed by `hitl notify setup`).",
        enabled=True,
        trigger=EventTrigger(
            expect={event},
            match={"prefect.resource.id": "hitl.ticket.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=actions,
    )


_COMPARED = {
    "name",
    "description",
    "enabled",
    "trigger",
    "actions",
    "actions_on_trigger",
    "actions_on_resolve",
}


def ensure_automation(
    name: str, event: str, blocks: dict[Channel, UUID], ui_url: str | None
) -> AutomationReport:
    from prefect import get_client

    desired = _automation(name, event, blocks, ui_url)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name)
        for duplicate in existing[1:]:  # two setups raced: keep one
            client.delete_automation(duplicate.id)
        if not existing:
            automation_id = client.create_automation(desired)
            outcome: Outcome = "created"
        else:
            automation_id = existing[0].id
            current = existing[0].model_dump(mode="json", include=_COMPARED)
            if current == desired.model_dump(mode="json", include=_COMPARED):
                outcome = "unchanged"
            else:
                client.update_automation(automation_id, desired)
                outcome = "updated"
    return AutomationReport(
        name=name, event=event, id=str(automation_id), channels=sorted(blocks), outcome=outcome
    )


# ---------------------------------------------------------------- entry points
@contextmanager
def _api_errors(config: NotifyConfig | None = None) -> Iterator[None]:
    """Prefect API failures as one-line errors, with every secret scrubbed."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        yield
    except PrefectHTTPStatusError as exc:
        code = exc.response.status_code
        hint = " (set PREFECT_API_AUTH_STRING to the server's auth string)" if code == 401 else ""
        raise NotifyError(f"the Prefect API refused the request: HTTP {code}{hint}") from None
    except httpx.HTTPError as exc:
        raise NotifyError(
            scrub(f"cannot reach the Prefect API: {type(exc).__name__}: {exc}", config)
        ) from None


def scrub(text: str, config: NotifyConfig | None) -> str:
    for secret in config.secrets() if config else []:
        text = text.replace(secret, "***")
    return " ".join(text.split())


def setup(config: NotifyConfig) -> SetupReport:
    """Blocks for the configured channels, then both automations over every hitl block present."""
    if not config.channels:
        raise NotifyError(
            "nothing to set up: set HITL_NOTIFY_WEBHOOK_URL (or pass --webhook-url-secret NAME), "
            "or pass --smtp with HITL_SMTP_HOST, HITL_SMTP_SENDER and HITL_NOTIFY_EMAIL_TO"
        )
    report = SetupReport(ui_url=config.ui_url)
    with _api_errors(config):
        if config.webhook_url is not None:
            report.blocks.append(ensure_block("webhook", _webhook_block(config.webhook_url)))
        if config.email is not None:
            report.blocks.append(ensure_block("email", _email_block(config.email)))
        blocks = present_blocks()
        for name, event in ((WAITING_AUTOMATION, WAITING_EVENT), (TIMED_OUT_AUTOMATION, TIMED_OUT_EVENT)):
            report.automations.append(ensure_automation(name, event, blocks, config.ui_url))
    return report


def setup_from_settings(settings: Settings) -> list[str]:
    """For `hitl serve`: set up what the environment configures; nothing (and no output) when it
    configures no channel. Returns the lines to print; a failure is a line too, never an exit."""
    email = bool(settings.smtp_host and address_list(settings.notify_email_to))
    webhook = settings.notify_webhook_url is not None and settings.notify_webhook_url.get_secret_value()
    lines = []
    if settings.smtp_host and not email:
        lines.append("notifications: no e-mail notifications (HITL_NOTIFY_EMAIL_TO is not set)")
    if not webhook and not email:
        return lines
    try:
        return lines + [
            f"notifications: {line}" for line in setup(resolve_config(settings, smtp=email)).lines()
        ]
    except HitlError as exc:
        return [*lines, f"notifications not set up: {exc}"]


class ChannelCheck(BaseModel):
    channel: Channel
    block: str
    ok: bool
    error: str | None = None


def _block_secrets(block: Any) -> list[str]:
    """The secret values a block holds: its Apprise URL, and the URL's password, if any."""
    url = str(_comparable(block).get("url") or "")
    values = [url]
    password = urlsplit(url).password if url else None
    if password:
        values += [password, unquote(password)]
    return [v for v in values if v]


def send_test(
    message: str = "hitl-ops test notification: checkpoint notifications reach you.",
) -> list[ChannelCheck]:
    """Send `message` through every hitl block on the server, from this process (the automations
    send from the server's process: the same blocks, on another machine perhaps)."""
    quiet = [logging.getLogger(n) for n in ("httpx", "httpcore", "apprise")]  # request lines name the URL
    levels = [logger.level for logger in quiet]
    with _api_errors():
        blocks = {channel: _existing_block(channel) for channel in ("webhook", "email")}
    if not any(blocks.values()):
        raise NotifyError("no notification block on the server: run `hitl notify setup` first")
    results: list[ChannelCheck] = []
    try:
        for logger in quiet:
            logger.setLevel(logging.WARNING)
        for channel, block in blocks.items():
            if block is None:
                continue
            name = _BLOCK_NAMES[channel]  # type: ignore[index]
            try:
                with block.raise_on_failure():
                    block.notify(body=message, subject="hitl-ops test notification")
            except Exception as exc:  # reported per channel, never raised with its URL
                response = getattr(exc, "response", None)
                detail = (
                    f"HTTP {response.status_code}" if response is not None else getattr(exc, "log", "") or exc
                )
                text = f"{type(exc).__name__}: {detail}"
                for secret in _block_secrets(block):
                    text = text.replace(secret, "***")
                error = " ".join(text.split())[:500]
                results.append(ChannelCheck(channel=channel, block=name, ok=False, error=error))  # type: ignore[arg-type]
            else:
                results.append(ChannelCheck(channel=channel, block=name, ok=True))  # type: ignore[arg-type]
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return results


def remove() -> list[str]:
    """Delete the hitl automations and notification blocks; returns what was deleted."""
    from prefect import get_client

    removed: list[str] = []
    with _api_errors(), get_client(sync_client=True) as client:
        for name in (WAITING_AUTOMATION, TIMED_OUT_AUTOMATION):
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)
                removed.append(f"automation {name}")
        for channel, block_id in present_blocks().items():
            client.delete_block_document(block_id)
            removed.append(f"block {_BLOCK_NAMES[channel]}")
    return removed
