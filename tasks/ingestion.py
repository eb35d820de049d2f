"""Prefect tasks of the ingestion flow: thin wrappers that add logging, retries and artifacts.

One task per input file (not per ticket): thousands of task runs would cost more than the
ingestion itself (about 8 ms each on this machine).
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from hitl.ingestion import pipeline
from hitl.ingestion.http_source import HttpTicketSource
from hitl.ingestion.plan import IngestionPlan
from hitl.ingestion.progress import notify
from hitl.ingestion.report import report_markdown, report_rows
from hitl.models import IngestReport, InputResult
from hitl.settings import get_settings
from hitl.store.db import get_database
from policies.clients import load_client_catalog


def _context(plan: IngestionPlan, run_id: str) -> pipeline.IngestionContext:
    settings = get_settings()
    logger = get_run_logger()
    batches = 0

    def progress(input_name: str, done: int) -> None:
        nonlocal batches
        batches += 1
        notify(input_name, done)
        if batches % 20 == 0:
            logger.info("%s: %d records processed", Path(input_name).name, done)

    return pipeline.IngestionContext(
        db=get_database(settings),
        mapping=plan.mapping,
        source=plan.source,
        run_id=run_id,
        default_client=settings.default_client,
        catalog=load_client_catalog(settings.client_catalog),
        batch_size=settings.batch_size,
        progress=progress,
    )


@task(name="open-ingestion-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def open_run(plan: IngestionPlan, flow_run_id: str | None) -> str:
    db = get_database()
    return pipeline.open_run(db, plan.source, plan.mapping.name, plan.description, flow_run_id)


@task(name="ingest-file", cache_policy=NO_CACHE)
def ingest_file(plan: IngestionPlan, run_id: str, path: Path) -> tuple[InputResult, list[int]]:
    result, new_ids = pipeline.ingest_file(_context(plan, run_id), path, plan.move_processed)
    logger = get_run_logger()
    if result.error:
        logger.error("%s not ingested: %s (left in place)", path, result.error)
    else:
        logger.info("%s: %s", path.name, result.stats.model_dump())
    return result, new_ids


@task(name="ingest-http", cache_policy=NO_CACHE)
def ingest_http(plan: IngestionPlan, run_id: str) -> tuple[InputResult, list[int], str | None]:
    assert plan.url is not None
    settings = get_settings()
    source = HttpTicketSource(
        plan.url,
        plan.mapping.http,
        token=settings.http_token,
        page_size=settings.http_page_size,
        timeout_s=settings.http_timeout_s,
        retries=settings.http_retries,
    )
    result, new_ids, cursor = pipeline.ingest_http(_context(plan, run_id), source)
    if result.error:
        get_run_logger().error("%s: %s (cursor not advanced)", plan.url, result.error)
    return result, new_ids, cursor


@task(name="close-ingestion-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def close_run(run_id: str, inputs: list[InputResult], new_ids: list[int], cursor: str | None) -> IngestReport:
    return pipeline.close_run(get_database(), run_id, inputs, new_ids, cursor)


@task(name="fail-ingestion-run", cache_policy=NO_CACHE)
def fail_run(run_id: str, error: str) -> None:
    pipeline.fail_run(get_database(), run_id, error)


@task(name="publish-ingestion-report", cache_policy=NO_CACHE)
def publish_report(report: IngestReport) -> None:
    key = "ingestion-" + "".join(c if c.isalnum() else "-" for c in report.source.lower())
    create_table_artifact(key=key, table=report_rows(report), description=f"Ingestion run {report.run_id}")
    create_markdown_artifact(key=f"{key}-summary", markdown=report_markdown(report))
