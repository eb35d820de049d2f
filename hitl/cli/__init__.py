"""The `hitl` command line: what operators, schedulers and analysts type.

Expected failures (bad input, unknown mapping, unreachable database) end in one line on stderr
and a non-zero exit code; `--json` output is exactly one JSON document on stdout. Each command
module holds one area; this module assembles them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
import typer

from hitl.cli import decisions, ingest, lifecycle, models, policy, review, serve, store, workers
from hitl.cli.common import err, fail_line
from hitl.cli.notify import notify_app
from hitl.errors import HitlError

if TYPE_CHECKING:
    import httpx

app = typer.Typer(
    help="Human-in-the-loop automation of MSP ticket operations on Prefect 3.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
for module in (ingest, store, models, lifecycle, serve, review, workers):
    app.registered_commands.extend(module.app.registered_commands)
app.add_typer(store.db_app, name="db")
app.add_typer(store.tickets_app, name="tickets")
app.add_typer(store.quarantine_app, name="quarantine")
app.add_typer(store.runs_app, name="runs")
app.add_typer(ingest.demo_app, name="demo")
app.add_typer(models.models_app, name="models")
app.add_typer(lifecycle.audit_app, name="audit")
app.add_typer(lifecycle.lifecycle_app, name="lifecycle")
app.add_typer(lifecycle.action_app, name="action")
app.add_typer(lifecycle.outbox_app, name="outbox")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(decisions.decisions_app, name="decisions")
app.add_typer(notify_app, name="notify")


def main() -> None:
    """Entry point: expected errors become one line on stderr, never a traceback."""
    try:
        result = app(standalone_mode=False, prog_name="hitl")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.ClickException, typer.TyperException) as exc:
        # typer >= 0.29 raises the exceptions of its own copy of click, which `click.ClickException`
        # does not catch: bad option values, unknown commands and a bare `hitl` printed tracebacks.
        sys.exit(_usage_problem(exc))
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        sys.exit(130)
    except HitlError as exc:
        fail_line(str(exc))
        sys.exit(1)
    except Exception as exc:  # the Prefect API refusing us, or a path we cannot use: one line
        problem = _api_refusal(exc) or _path_problem(exc)
        if problem is None:
            raise
        fail_line(problem)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


def _usage_problem(exc: click.ClickException | typer.TyperException) -> int:
    """A usage error as one line naming the command's help (a bare `hitl` or group: the help
    itself); returns the exit code (2 for usage, as click's own)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already (or is the message)
        if exc.format_message().strip():
            err.print(exc.format_message())
        return 2
    context = getattr(exc, "ctx", None)
    hint = f" (see `{context.command_path} --help`)" if context is not None else ""
    fail_line(f"{exc.format_message().rstrip('.')}{hint}")
    return int(getattr(exc, "exit_code", 1))


def _path_problem(exc: BaseException) -> str | None:
    """A file or folder that cannot be used (HITL_HOME is a file, a folder without write
    permission, a full disk, an --out in a missing folder) names the path and the reason; an
    OSError without a path (a socket, a bug) keeps its traceback."""
    if not isinstance(exc, OSError) or exc.filename is None:
        return None
    other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"cannot use {exc.filename}{other}: {exc.strerror or exc}"


def _api_refusal(exc: BaseException) -> str | None:
    """A 401/403 from the Prefect API, as the one line that says what to set; a 5xx (after the
    Prefect client's own retries) as one line that says to try again; no answer at all (server
    down, wrong PREFECT_API_URL) as one line that names the address tried."""
    import httpx

    while exc is not None and not isinstance(exc, httpx.HTTPStatusError | httpx.TransportError):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, httpx.TransportError):
        return _unreachable(exc)
    if exc is not None and exc.response.status_code >= 500:
        return (
            f"the Prefect API at {exc.request.url.host}:{exc.request.url.port} answered "
            f"{exc.response.status_code} {exc.response.reason_phrase} to {exc.request.method} "
            f"{exc.request.url.path} after its retries: the server is overloaded or failing; try again"
        )
    if exc is None or exc.response.status_code not in (401, 403):
        return None
    return (
        f"the Prefect API at {exc.request.url.host}:{exc.request.url.port} refused the request "
        f"({exc.response.status_code}): set PREFECT_API_AUTH_STRING to the server's "
        "PREFECT_SERVER_API_AUTH_STRING"
    )


def _unreachable(exc: httpx.TransportError) -> str:
    """No answer from the Prefect API. A refused or timed-out connection reached nothing, so the
    command can be repeated as it is; a connection lost mid-request may have taken effect, so the
    operator is told to look first (a repeated resume of a resumed run is refused anyway)."""
    import httpx

    try:
        url = exc.request.url
        where = f" at {url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    except RuntimeError:  # raised without a request
        where = ""
    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc).strip() else 'no detail'}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return (
            f"cannot reach the Prefect API{where} ({detail}): start it (`hitl serve`) or set "
            "PREFECT_API_URL to the running server, then repeat the command"
        )
    return (
        f"the Prefect API{where} stopped answering mid-request ({detail}): the request may have "
        "taken effect; check `hitl queue` or the run in the UI before repeating the command"
    )
