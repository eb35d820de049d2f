"""The monthly threshold review as analysts read it: one HTML file on disk, plus a markdown
summary and table rows for the Prefect artifacts that point to it.

The HTML page is rendered by `report_html`; this module decides where it goes and what the short
forms say. The markdown summary follows hitl.text's rule for untrusted text: anything from the
decision log goes into a code span, where no renderer turns it into markup or links.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hitl.analysis.models import ReviewResult
from hitl.analysis.patterns import top_patterns
from hitl.analysis.report_html import PATTERN_MIN_COUNT, PATTERNS, pct, render_html, upper_bound
from hitl.analysis.review import Analysis
from hitl.text import code_span, escape_markdown


def write_report(analysis: Analysis, result: ReviewResult, out_dir: Path, *,
                 now: datetime | None = None) -> Path:  # fmt: skip
    """`threshold-review-<UTC timestamp>.html` under out_dir (created); never overwrites an
    earlier report, so two reviews in the same second both survive."""
    generated_at = (now or datetime.now(UTC)).astimezone(UTC)
    html = render_html(analysis, result, generated_at)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"threshold-review-{generated_at:%Y%m%dT%H%M%SZ}"
    path, suffix = out_dir / f"{stem}.html", 1
    while True:
        try:
            path.touch(exist_ok=False)  # claims the name atomically, even against a concurrent run
            break
        except FileExistsError:
            suffix += 1
            path = out_dir / f"{stem}-{suffix}.html"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)  # the claimed name never holds half a report
    return path


def recommendation_rows(result: ReviewResult) -> list[dict[str, Any]]:
    """One row per verdict for a Prefect table artifact. Values stay raw (the UI shows table
    cells as text); None in class or client means the whole checkpoint or class."""
    return [
        {
            "checkpoint": r.checkpoint,
            "class": r.label,
            "client": r.client,
            "action": r.action.value,
            "current": r.current,
            "recommended": r.recommended,
            "target_error": r.target_error,
            "estimated_error": r.estimated_error,
            "error_upper_bound": r.error_upper_bound,
            "automation_current": r.automation_rate_current,
            "automation_recommended": r.automation_rate_recommended,
            "n_decisions": r.n_decisions,
            "n_reviewed": r.n_reviewed,
            "n_audited": r.n_audited,
            "effective_n": r.effective_n,
            "guard": r.guard,
            "reason": r.reason,
        }
        for r in result.recommendations
    ]


def md_cell(text: str | None, limit: int = 60) -> str:
    """Untrusted text in a markdown table cell: a code span, with `|` swapped for U+FF5C (a look-alike),
    because renderers disagree on whether `\\|` inside a code span still ends the cell."""
    return "*all*" if text is None else code_span(text.replace("|", "\uff5c"), limit)


def _recommendation_table(result: ReviewResult) -> list[str]:
    if not result.recommendations:
        return ["No group had eligible decisions in the window: there is nothing to recommend."]
    lines = [
        "| checkpoint | class | client | action | current → recommended | est. error | upper bound "
        "| automation | reviewed | reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.recommendations:
        action = f"**{r.action.value}**" if r.changes_policy else r.action.value
        lines.append(
            f"| {md_cell(r.checkpoint)} | {md_cell(r.label)} | {md_cell(r.client)} | {action} "
            f"| {r.current:.3f} → {r.recommended:.3f} | {pct(r.estimated_error, 2)} "
            f"| {pct(upper_bound(r), 2)} | {pct(r.automation_rate_current, 0)} → "
            f"{pct(r.automation_rate_recommended, 0)} | {r.n_reviewed} | {escape_markdown(r.reason)} |"
        )
    return lines


def markdown_summary(analysis: Analysis, result: ReviewResult) -> str:
    """The Prefect markdown artifact: enough to decide whether to open the full report."""
    log = analysis.log
    reviewed = int(log["reviewed"].sum()) if not log.empty else 0
    overrides = int((log["reviewed"] & ~log["correct"]).sum()) if not log.empty else 0
    changes = sum(r.changes_policy for r in result.recommendations)
    version = "none" if result.policy_version is None else str(result.policy_version)
    report = code_span(result.report_path, 300) if result.report_path else "not written"
    lines = [
        "# Threshold review",
        "",
        f"- **window:** {analysis.since:%Y-%m-%d %H:%M} to {analysis.until:%Y-%m-%d %H:%M} UTC",
        f"- **source:** {code_span(result.source, 200)}",
        f"- **policy version:** {version}",
        f"- **decisions:** {len(log)} ({reviewed} reviewed, {overrides} overridden)",
        f"- **report:** {report}",
        "",
        f"## Recommendations ({len(result.recommendations)}, {changes} would change the policy)",
        "",
        *_recommendation_table(result),
        "",
        "## Calibration drift",
        "",
    ]
    drifted = [d for d in result.drift if d.drifted]
    lines += [f"- {code_span(d.checkpoint, 60)}: {escape_markdown(d.note)}" for d in drifted] or [
        f"No checkpoint drifted ({len(result.drift)} checked)."
    ]
    lines += ["", "## Top override patterns", ""]
    found = top_patterns(log, n=PATTERNS, min_count=PATTERN_MIN_COUNT) if not log.empty else []
    lines += [f"{i}. {p.sentence(lambda s: code_span(s, 60))}" for i, p in enumerate(found, 1)] or [
        f"No combination has {PATTERN_MIN_COUNT} or more overrides with one reason code."
    ]
    return "\n".join(lines) + "\n"


def artifact_images(analysis: Analysis) -> list[tuple[str, str, bytes]]:
    """(artifact key, description, PNG) for the Prefect run page: each checkpoint's reliability
    diagram and checkpoint-wide risk-coverage curve (the HTML report holds the rest)."""
    import re

    from hitl.analysis.plots import reliability_png, risk_coverage_png
    from hitl.analysis.review import group_key

    def key(*parts: str) -> str:
        return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]

    images: list[tuple[str, str, bytes]] = []
    log = analysis.log
    for checkpoint in sorted(log["checkpoint"].unique()) if not log.empty else []:
        png = reliability_png(log[log["checkpoint"] == checkpoint], str(checkpoint))
        if png is not None:
            title = f"Reliability of reviewed {checkpoint} decisions (weighted by 1/propensity)"
            images.append((key("threshold-review-reliability", str(checkpoint)), title, png))
    for rec in analysis.recommendations:
        if rec.label is None and rec.client is None:
            name = group_key(rec.checkpoint)
            curve = analysis.curves.get(name)
            png = risk_coverage_png(curve, rec, name) if curve is not None else None
            if png is not None:
                images.append((key("threshold-review-risk-coverage", rec.checkpoint),
                               f"Risk-coverage of {rec.checkpoint}: {rec.action.value} "
                               f"{rec.current:.3f} -> {rec.recommended:.3f}", png))  # fmt: skip
    return images
