"""`hitl notify setup|test|remove`: checkpoint notifications through Prefect automations
(docs/notifications.md). Every command talks to a running Prefect server; no output names a secret."""

from __future__ import annotations

import os

import typer

from hitl.cli.common import JSON_OPTION, out, print_json
from hitl.errors import HitlError
from hitl.settings import get_settings

notify_app = typer.Typer(
    help="Notify people when a checkpoint waits or times out (webhook, e-mail).", no_args_is_help=True
)


def _server() -> None:
    from hitl.prefect_env import configure_prefect

    configure_prefect(get_settings())
    if not os.environ.get("PREFECT_API_URL"):
        raise HitlError(
            "notifications live on a running Prefect server: start `hitl serve` or set PREFECT_API_URL"
        )


@notify_app.command("setup")
def setup(
    webhook_url_secret: str | None = typer.Option(
        None,
        "--webhook-url-secret",
        metavar="NAME",
        help="Read the webhook URL from this Prefect Secret block (default: HITL_NOTIFY_WEBHOOK_URL).",
    ),
    smtp: bool = typer.Option(
        False, "--smtp", help="Also notify by e-mail through HITL_SMTP_* to HITL_NOTIFY_EMAIL_TO."
    ),
    smtp_password_secret: str | None = typer.Option(
        None,
        "--smtp-password-secret",
        metavar="NAME",
        help="Read the SMTP password from this Prefect Secret block (default: HITL_SMTP_PASSWORD).",
    ),
    ui_url: str | None = typer.Option(
        None, help="Base URL of the Prefect UI for links in messages (default: PREFECT_UI_URL)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Create or update the notification blocks and the two automations (idempotent)."""
    from hitl import notifications

    _server()
    config = notifications.resolve_config(
        get_settings(),
        webhook_url_secret=webhook_url_secret,
        smtp=smtp,
        smtp_password_secret=smtp_password_secret,
        ui_url=ui_url,
    )
    report = notifications.setup(config)
    if json_output:
        print_json(report.model_dump(mode="json"))
        return
    for line in report.lines():
        out.print(line)


@notify_app.command("test")
def test(json_output: bool = JSON_OPTION) -> None:
    """Send a test message through every notification block (exit 1 if one fails)."""
    from hitl import notifications

    _server()
    results = notifications.send_test()
    if json_output:
        print_json([r.model_dump(mode="json") for r in results])
    else:
        for r in results:
            out.print(f"{r.channel} ({r.block}): {'sent' if r.ok else 'FAILED: ' + (r.error or '')}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@notify_app.command("remove")
def remove() -> None:
    """Delete the notification automations and blocks."""
    from hitl import notifications

    _server()
    removed = notifications.remove()
    out.print(f"removed: {', '.join(removed)}" if removed else "nothing to remove")
