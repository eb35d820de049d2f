"""`hitl policy`: the checkpoint policy versions in force and their history."""

from __future__ import annotations

import typer

from hitl.cli.common import JSON_OPTION, out, print_json, table
from hitl.errors import ConfigError
from hitl.store.db import get_database

policy_app = typer.Typer(help="Checkpoint policy versions.", no_args_is_help=True)


@policy_app.command("show")
def policy_show(
    version: int | None = typer.Argument(None, help="A version; default: the one in force."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Thresholds, audit rates, timeouts and autonomy per checkpoint."""
    from hitl.store.policies import current_policy, get_policy

    with get_database().session() as session:
        number, document = (
            current_policy(session) if version is None else (version, get_policy(session, version))
        )
    if json_output:
        print_json({"version": number, **document.model_dump(mode="json")})
        return
    table(
        f"policy version {number}",
        [
            "checkpoint",
            "threshold",
            "target error",
            "audit rate",
            "timeout (min)",
            "autonomy",
            "autonomous values",
            "overrides",
        ],
        [
            [
                name,
                c.threshold,
                c.target_error,
                c.audit_rate,
                c.timeout_minutes,
                c.autonomy,
                ", ".join(c.autonomous_values) if c.autonomous_values is not None else "any",
                ", ".join([*(f"class {k}" for k in c.classes), *(f"client {k}" for k in c.clients)]),
            ]
            for name, c in document.checkpoints.items()
        ],
    )


@policy_app.command("history")
def policy_history(json_output: bool = JSON_OPTION) -> None:
    """Every version, newest first, with who approved it and why."""
    from hitl.store.policies import history

    with get_database().session() as session:
        rows = [
            {
                "version": v.version,
                "created_at": v.created_at.isoformat(),
                "created_by": v.created_by,
                "reason": v.reason,
                "sha256": v.sha256,
            }
            for v in history(session)
        ]
    if json_output:
        print_json(rows)
        return
    table(
        f"{len(rows)} policy version(s)",
        ["version", "created", "by", "reason"],
        [[r["version"], r["created_at"][:19], r["created_by"], r["reason"]] for r in rows],
    )


@policy_app.command("rollback")
def policy_rollback(
    version: int = typer.Argument(..., help="The version whose settings to put back in force."),
    reviewer: str = typer.Option(..., help="Who approves the rollback (recorded)."),
    reason: str = typer.Option(..., help="Why (recorded)."),
) -> None:
    """Put an earlier version's settings in force as a new version (history only grows)."""
    from hitl.audit import append_event
    from hitl.store.orm import name_problem
    from hitl.store.policies import rollback

    problem = name_problem(reviewer.strip(), "--reviewer")
    if problem:  # one line, before the database is touched
        raise ConfigError(problem)
    with get_database().session() as session:
        row = rollback(session, version, reviewer, reason)
        append_event(
            session,
            kind="policy.version_created",
            actor=reviewer,
            ticket_id=None,
            data={"version": row.version, "rollback_to": version, "reason": row.reason},
        )
        created = row.version
    out.print(f"policy version {created} is in force (the settings of version {version})")
