"""How an ingestion run is shown to people: the table and summary published as Prefect artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hitl.models import IngestReport
from hitl.text import escape_markdown


def report_rows(report: IngestReport) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "input": Path(item.name).name if not item.name.startswith("http") else item.name,
            **item.stats.model_dump(),
            "error": item.error or "",
        }
        for item in report.inputs
    ]
    rows.append({"input": "TOTAL", **report.stats.model_dump(), "error": ""})
    return rows


def report_markdown(report: IngestReport) -> str:
    s = report.stats
    lines = [
        f"# Ingestion of `{escape_markdown(report.source)}` ({report.status})",
        "",
        f"- mapping: {escape_markdown(report.mapping)}; run id: {report.run_id}",
        f"- read {s.read}, inserted {s.inserted}, updated {s.updated}, unchanged {s.unchanged}, "
        f"quarantined {s.quarantined}",
    ]
    if s.quarantined:
        lines.append(f"- see the rows with `hitl quarantine list --run {report.run_id}`")
    for item in report.failed_inputs:
        lines.append(f"- **not ingested**: {escape_markdown(item.name)}: {escape_markdown(item.error or '')}")
    if report.ignored_files:
        names = ", ".join(escape_markdown(name) for name in report.ignored_files)
        lines.append(f"- **not read** (not a ticket file type): {names}")
    if not report.inputs:
        lines.append("- nothing to read: the drop folder had no ticket file")
    return "\n".join(lines)
