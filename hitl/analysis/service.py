"""One call for the CLI and the flow: load the decision log, analyse it, write the report.

The CLI and the Prefect flow must produce the same verdicts from the same evidence, so neither
holds any of this logic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hitl.analysis.decision_log import read_decision_csv
from hitl.analysis.models import ReviewParams, ReviewResult
from hitl.analysis.review import Analysis, analyse, result_of
from hitl.settings import Settings, get_settings
from hitl.store.db import get_database


def load_log(csv: Path | None, settings: Settings) -> tuple[pd.DataFrame, str]:
    if csv is not None:
        return read_decision_csv(csv), str(csv)
    from hitl.analysis.db_log import load_decisions

    with get_database(settings).session() as session:
        return load_decisions(session), "database"


def run_review(
    params: ReviewParams,
    *,
    csv: Path | None = None,
    settings: Settings | None = None,
    report: bool = True,
    now: datetime | None = None,
) -> tuple[ReviewResult, Analysis]:
    """Recommendations (and the HTML report unless `report` is False) for the window in params."""
    from hitl.store.policies import current_policy

    settings = settings or get_settings()
    log, source = load_log(csv, settings)
    with get_database(settings).session() as session:
        version, policy = current_policy(session)
    analysis = analyse(
        log,
        params,
        policy,
        thresholds_from_log=csv is not None,
        now=now or datetime.now(UTC),
        window_days=settings.review_window_days,
    )
    result = result_of(analysis, source=source, policy_version=version, report_path=None)
    if report:
        from hitl.analysis.report import write_report

        path = write_report(analysis, result, settings.effective_reports_dir)
        result = result.model_copy(update={"report_path": str(path)})
    return result, analysis
