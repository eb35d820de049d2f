"""`hitl review-thresholds`: the threshold review from the command line, and optionally its approval.

The same analysis as the monthly threshold-review flow (hitl.analysis.service), without Prefect:
an analyst can try windows, targets and confidence levels in seconds. `--apply` turns the
proposed changes into one new policy version under the analyst's name; without it nothing changes.

`--apply --from-csv` is allowed only when the CSV describes our own policy: every proposed
change must be for a checkpoint our policy has, from the threshold our policy has in force (for
example `hitl decisions export` of this installation). Decisions exported from another system,
under other checkpoints or other thresholds, are refused: they can inform, not change, our policy.
"""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from hitl.cli.common import JSON_OPTION, out, print_json, status, table
from hitl.cli.decisions import parse_moment
from hitl.errors import ConfigError
from hitl.yamlfile import first_problem

app = typer.Typer()


def parse_targets(values: list[str]) -> dict[str, float]:
    """`CHECKPOINT=RATE` pairs, e.g. triage=0.03; the rate lies strictly between 0 and 1."""
    targets: dict[str, float] = {}
    for value in values:
        name, sep, rate = value.partition("=")
        try:
            number = float(rate)
        except ValueError:
            number = float("nan")
        if not sep or not name.strip() or not 0 < number < 1:
            raise ConfigError(
                f"--target-error {value!r}: expected CHECKPOINT=RATE with 0 < RATE < 1, e.g. triage=0.03"
            )
        targets[name.strip()] = number
    return targets


_CSV_HELP = "A decision log in the exchange format instead of the database."
_APPLY_HELP = (
    "Put every proposed change in force as one new policy version. With --from-csv only when the CSV "
    "has our checkpoints and the thresholds in force (e.g. our own `hitl decisions export`)."
)
_PLAIN = {"markup": False, "emoji": False, "highlight": False}  # names from the decision log, literally


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


@app.command("review-thresholds")
def review_thresholds(
    since: str | None = typer.Option(None, help="Decisions at or after this ISO date/time (naive: UTC)."),
    until: str | None = typer.Option(None, help="Decisions before this ISO date/time (naive: UTC)."),
    from_csv: Path | None = typer.Option(None, "--from-csv", help=_CSV_HELP),
    target_error: list[str] = typer.Option([], "--target-error", help="CHECKPOINT=RATE (repeatable)."),
    confidence: float = typer.Option(0.95, help="Confidence level of the error bounds (0.5 < c < 1)."),
    min_samples: int = typer.Option(30, help="Reviewed decisions a group needs for a verdict."),
    max_step: float = typer.Option(0.05, help="Largest threshold decrease in one review."),
    json_output: bool = JSON_OPTION,
    apply: bool = typer.Option(False, "--apply", help=_APPLY_HELP),
    reviewer: str | None = typer.Option(None, help="Who approves (required with --apply; recorded)."),
    note: str = typer.Option("", help="Why (recorded with the new policy version)."),
) -> None:
    """Recommend checkpoint thresholds from reviewed decisions; with --apply, put them in force."""
    from hitl.analysis.models import ReviewParams

    if apply and not (reviewer or "").strip():
        raise ConfigError("--apply needs --reviewer NAME: the policy history records who approved the change")
    if apply:
        from hitl.analysis.apply import required_reviewer

        required_reviewer(reviewer or "", "--reviewer")  # before the review writes its report
    try:
        params = ReviewParams(
            since=parse_moment("--since", since),
            until=parse_moment("--until", until),
            target_error=parse_targets(target_error),
            confidence=confidence,
            min_samples=min_samples,
            max_step=max_step,
        )
    except ValidationError as exc:  # name the option, not the model field
        where, _, what = first_problem(exc).partition(": ")
        raise ConfigError(f"--{where.replace('_', '-')}: {what}") from None
    from hitl.analysis.review import group_key
    from hitl.analysis.service import run_review

    with status("reviewing thresholds ..."):
        result, _ = run_review(params, csv=from_csv)
    applied, reason = None, ""
    if apply:
        from hitl.analysis.apply import apply_review
        from hitl.store.db import get_database

        with get_database().session() as session:
            row = apply_review(session, result, None, reviewer or "", note)
            applied, reason = (row.version, row.reason) if row is not None else (None, "")
    if json_output:
        print_json(
            {
                "recommendations": [r.model_dump(mode="json") for r in result.recommendations],
                "report_path": result.report_path,
                "drift": [d.model_dump(mode="json") for d in result.drift],
                "applied_version": applied,
            }
        )
        return
    table(
        f"threshold review: {result.n_decisions} decisions from {result.source}",
        ["group", "action", "threshold", "error (bound / target)", "automation", "reviewed"],
        [
            [
                group_key(r.checkpoint, r.label, r.client),  # labels come from data: printed literally
                r.action.value,
                f"{r.current:g} -> {r.recommended:g}{' (stop)' if r.stop else ''}",
                f"{_pct(r.estimated_error)} ({_pct(r.error_upper_bound)} / {_pct(r.target_error)})",
                f"{_pct(r.automation_rate_current)} -> {_pct(r.automation_rate_recommended)}",
                r.n_reviewed,
            ]
            for r in result.recommendations
        ],
    )
    for r in result.recommendations:  # the reasons are sentences: a table column would shred them
        out.print(f"{group_key(r.checkpoint, r.label, r.client)}: {r.reason}", **_PLAIN)
    if result.unreconciled:
        out.print(
            "thresholds taken from the file, not from the policy in force (which differs for "
            f"{', '.join(result.unreconciled)}): these verdicts can inform, not change, our policy",
            **_PLAIN,
        )
    for drift in result.drift:
        if drift.drifted:
            out.print(f"calibration drift at {drift.checkpoint}: {drift.note}", **_PLAIN)
    out.print(f"report: {result.report_path or 'not written'}", **_PLAIN)
    if apply:
        out.print(
            f"policy version {applied} is in force, approved by {(reviewer or '').strip()}: {reason}"
            if applied is not None
            else "no threshold change proposed; the policy is unchanged",
            **_PLAIN,
        )
