"""The nightly ingestion flow: plan, open a run, ingest each input, close the run, publish."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from hitl.ingestion.files import FILE_SUFFIXES
from hitl.ingestion.plan import IngestionPlan, plan_ingestion
from hitl.models import IngestReport, InputResult
from hitl.settings import get_settings
from hitl.store.db import get_database
from tasks.ingestion import close_run, fail_run, ingest_file, ingest_http, open_run, publish_report
from tasks.lifecycle import lifecycle_batch, start_runs


@task(name="plan-ingestion", cache_policy=NO_CACHE)
def plan(
    path: str | None, url: str | None, mapping: str, source: str | None, move_processed: bool | None
) -> IngestionPlan:
    return plan_ingestion(get_settings(), path, url, mapping, source, move_processed)


@flow(
    name="nightly-ingestion",
    description="Read tickets from a file, a drop folder or a PSA API; upsert them; quarantine bad rows.",
)
def nightly_ingestion(
    path: str | None = None,
    url: str | None = None,
    mapping: str = "canonical",
    source: str | None = None,
    move_processed: bool | None = None,
    start_lifecycle: bool = True,
) -> IngestReport:
    """`path` is a file or drop folder (default: the configured inbox); `url` a PSA endpoint.

    With `start_lifecycle`, new tickets go through the lifecycle in batch here, as far as the AI
    may go alone; only those that wait for a human get a ticket-lifecycle run of their own.
    """
    logger = get_run_logger()
    the_plan = plan(path, url, mapping, source, move_processed)
    logger.info("ingesting %s with mapping %r as source %r", the_plan.description, mapping, the_plan.source)
    if the_plan.ignored:
        logger.warning("not read (%s only): %s", ", ".join(FILE_SUFFIXES), ", ".join(the_plan.ignored))
    run_id = open_run(the_plan, flow_run.id)
    inputs: list[InputResult] = []
    new_ids: list[int] = []
    cursor: str | None = None
    try:
        for file in the_plan.files:
            result, ids = ingest_file(the_plan, run_id, file)
            inputs.append(result)
            new_ids.extend(ids)
        if the_plan.url:
            result, ids, cursor = ingest_http(the_plan, run_id)
            inputs.append(result)
            new_ids.extend(ids)
    except BaseException as exc:
        fail_run(run_id, f"{type(exc).__name__}: {exc}")
        raise
    report = close_run(run_id, inputs, new_ids, cursor).model_copy(update={"ignored_files": the_plan.ignored})
    publish_report(report)
    if start_lifecycle and report.new_ticket_ids:
        waiting = lifecycle_batch(report.new_ticket_ids)
        logger.info("%d new tickets: %d wait for a human", len(report.new_ticket_ids), len(waiting))
        if waiting:
            start_runs(waiting)
    return report


def preflight(
    target: str, mapping: str = "canonical", source: str | None = None, move_processed: bool | None = None
) -> tuple[str | None, str | None]:
    """What `hitl ingest` checks before starting a run: the request and the database, so that a
    bad request is a one-line error and not a failed run in the UI. Returns (path, url)."""
    settings = get_settings()
    is_url = target.startswith(("http://", "https://"))
    path, url = (None, target) if is_url else (target, None)
    plan_ingestion(settings, path, url, mapping, source, move_processed)
    get_database(settings).ensure_schema()
    return path, url
