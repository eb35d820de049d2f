"""The threshold review as one self-contained HTML page: inline CSS, images as data URIs, no
scripts, no external resources, so it can be mailed, attached to a ticket or opened offline.

Every string that came from the decision log (classes, clients, reviewers, reason codes, the
source path) is untrusted: all text goes through `html.escape`, and a Content-Security-Policy
that allows no scripts at all backs that up should an escape ever be missed.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from html import escape

import pandas as pd

from hitl.analysis import patterns as pat
from hitl.analysis.models import Recommendation, ReviewResult
from hitl.analysis.plots import reliability_png, risk_coverage_png
from hitl.analysis.review import Analysis, group_key
from policies.checkpoint_policy import CHECKPOINTS

MAX_ROWS = 50  # per override table; the rest is summarised in a sentence
PATTERNS = 10
PATTERN_MIN_COUNT = 5
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
.recs td:last-child { min-width: 34em; } .recs td { white-space: nowrap; }
.recs td:last-child { white-space: normal; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.raise td:nth-child(4) { color: #b02a1a; font-weight: bold; }
tr.lower td:nth-child(4) { color: #1d7a3e; font-weight: bold; }
tr.drifted td { background: #fff1ee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; }
dt { font-weight: bold; } dd { margin: 0; } em.all { color: #777; }
figure { display: inline-block; margin: 0 1em 1em 0; } figcaption { font-size: 12px; color: #555; }
p.empty { color: #777; font-style: italic; }
"""
_ACTION_CLASS = {"raise": "raise", "lower": "lower", "hold": "hold"}  # never log text in a class


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def upper_bound(rec: Recommendation) -> float | None:
    """None where the recommended threshold automates nothing: the curve's 0 there is no bound."""
    return rec.error_upper_bound if rec.automation_rate_recommended > 0 else None


def _cell(value: object) -> str:
    """A table cell: numbers right-aligned, None as an italic 'all' (a whole checkpoint or class)."""
    if value is None:
        return '<td><em class="all">all</em></td>'
    if isinstance(value, int | float):
        return f'<td class="n">{escape(str(value))}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], classes: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        attr = f' class="{escape(classes[index])}"' if index < len(classes) else ""
        body.append(f"<tr{attr}>{''.join(_cell(v) for v in row)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def empty(sentence: str) -> str:
    return f'<p class="empty">{escape(sentence)}</p>'


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    text = escape(caption)
    return (f'<figure><img alt="{text}" width="600" height="400" src="data:image/png;base64,{data}">'
            f"<figcaption>{text}</figcaption></figure>")  # fmt: skip


def _recommendations(recs: list[Recommendation]) -> str:
    if not recs:
        return empty("No group had eligible decisions in the window: there is nothing to recommend.")
    headers = ["checkpoint", "class", "client", "action", "current", "recommended", "target",
               "est. error", "upper bound", "automation now → after", "decisions", "reviewed",
               "audited", "effective n", "guard", "reason"]  # fmt: skip
    rows = [
        [r.checkpoint, r.label, r.client, r.action.value, f"{r.current:.3f}", f"{r.recommended:.3f}",
         pct(r.target_error), pct(r.estimated_error, 2), pct(upper_bound(r), 2),
         f"{pct(r.automation_rate_current)} → {pct(r.automation_rate_recommended)}", r.n_decisions,
         r.n_reviewed, r.n_audited, r.effective_n, r.guard or "", r.reason]
        for r in recs
    ]  # fmt: skip
    return f'<div class="recs">{table(headers, rows, [_ACTION_CLASS[r.action.value] for r in recs])}</div>'


def _drift(result: ReviewResult) -> str:
    if not result.drift:
        return empty("No checkpoint had decisions in the window.")
    rows = [
        [d.checkpoint, "-" if d.ece_previous is None else f"{d.ece_previous:.3f}",
         "-" if d.ece_current is None else f"{d.ece_current:.3f}", d.n_previous, d.n_current,
         "drifted" if d.drifted else "no", d.note]
        for d in result.drift
    ]  # fmt: skip
    headers = ["checkpoint", "ECE previous 30 days", "ECE last 30 days", "reviews previous",
               "reviews last", "drift", "note"]  # fmt: skip
    return table(headers, rows, ["drifted" if d.drifted else "" for d in result.drift])


def _override_table(title: str, frame: pd.DataFrame) -> str:
    if frame.empty:
        return empty(f"No reviewed decisions: no override rates by {title}.")
    keys = [c for c in frame.columns if c not in pat.METRICS]
    headers = [title if k == "group" else k for k in keys]
    shown = frame.head(MAX_ROWS)
    rows = [
        [*(row[k] for k in keys), int(row["reviewed"]), int(row["overrides"]),
         pct(row["override_rate"]), pct(row["share_of_overrides"])]
        for _, row in shown.iterrows()
    ]  # fmt: skip
    html = table([*headers, "reviewed", "overrides", "override rate", "share of overrides"], rows)
    if len(frame) > len(shown):
        html += empty(f"… and {len(frame) - len(shown)} more rows with fewer overrides.")
    return html


def _overrides(log: pd.DataFrame) -> str:
    parts = [f"<h3>By {escape(title)}</h3>{_override_table(title, frame)}"
             for title, frame in pat.override_tables(log).items()]  # fmt: skip
    return "".join(parts)


def _patterns(log: pd.DataFrame) -> str:
    found = pat.top_patterns(log, n=PATTERNS, min_count=PATTERN_MIN_COUNT)
    if not found:
        return empty(
            f"No checkpoint x class (x client) combination has {PATTERN_MIN_COUNT} or more overrides "
            "with one reason code."
        )
    items = "".join(f"<li>{p.sentence(escape)}</li>" for p in found)
    return f"<ol>{items}</ol>"


def _checkpoints(log: pd.DataFrame) -> list[str]:
    names = [str(c) for c in log["checkpoint"].unique()]
    return sorted(names, key=lambda c: (CHECKPOINTS.index(c) if c in CHECKPOINTS else len(CHECKPOINTS), c))


def _reliability(log: pd.DataFrame) -> str:
    if log.empty:
        return empty("No decisions in the window.")
    parts = []
    for checkpoint in _checkpoints(log):
        png = reliability_png(log[log["checkpoint"] == checkpoint], checkpoint)
        parts.append(
            _figure(png, f"{checkpoint}: reliability, reviews weighted by 1/propensity")
            if png is not None
            else empty(f"{checkpoint}: no reviewed decisions, no reliability diagram.")
        )
    return "".join(parts)


MAX_GROUP_CURVES = 12


def curves_to_draw(recommendations: list[Recommendation]) -> list[Recommendation]:
    wide = [r for r in recommendations if r.label is None and r.client is None]
    moving = sorted(
        (r for r in recommendations if (r.label is not None or r.client is not None) and r.changes_policy),
        key=lambda r: -abs(r.automation_rate_recommended - r.automation_rate_current),
    )[:MAX_GROUP_CURVES]
    keep = {id(r) for r in [*wide, *moving]}
    return [r for r in recommendations if id(r) in keep]


def _risk_coverage(analysis: Analysis) -> str:
    """A curve for each checkpoint and for the class/client groups whose change moves automation
    most (at most MAX_GROUP_CURVES); every verdict is in the recommendations table. Dozens of
    near-identical plots help no analyst and made a 1M-decision report take 20 s."""
    if not analysis.recommendations:
        return empty("No group had eligible decisions in the window: no risk-coverage curves.")
    parts = []
    drawn = curves_to_draw(analysis.recommendations)
    skipped = len(analysis.recommendations) - len(drawn)
    if skipped:
        parts.append(
            empty(f"{skipped} class/client verdict(s) are not drawn (see the recommendations table).")
        )
    for rec in drawn:
        key = group_key(rec.checkpoint, rec.label, rec.client)
        curve = analysis.curves.get(key)
        png = risk_coverage_png(curve, rec, key) if curve is not None else None
        parts.append(
            _figure(png, f"{key}: {rec.action.value} {rec.current:.3f} → {rec.recommended:.3f}")
            if png is not None
            else empty(f"{key}: no decisions, no risk-coverage curve.")
        )
    return "".join(parts)


def _header(analysis: Analysis, result: ReviewResult, generated_at: datetime) -> str:
    log = analysis.log
    reviewed = int(log["reviewed"].sum()) if not log.empty else 0
    overrides = int((log["reviewed"] & ~log["correct"]).sum()) if not log.empty else 0
    facts = {
        "window": f"{analysis.since:%Y-%m-%d %H:%M} to {analysis.until:%Y-%m-%d %H:%M} UTC",
        "source": result.source,
        "policy version": "none" if result.policy_version is None else str(result.policy_version),
        "decisions": f"{len(log)} ({reviewed} reviewed, {overrides} overridden)",
        "generated": f"{generated_at:%Y-%m-%d %H:%M:%S} UTC",
    }
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts.items())
    return f"<header><h1>Threshold review</h1><dl>{rows}</dl></header>"


def render_html(analysis: Analysis, result: ReviewResult, generated_at: datetime) -> str:
    sections = [
        ("recommendations", "Recommendations", _recommendations(result.recommendations)),
        ("drift", "Calibration drift", _drift(result)),
        ("overrides", "Override rates", _overrides(analysis.log)),
        ("patterns", "Top override patterns", _patterns(analysis.log)),
        ("reliability", "Reliability diagrams", _reliability(analysis.log)),
        ("risk-coverage", "Risk-coverage curves", _risk_coverage(analysis)),
    ]
    body = "".join(f'<section id="{id_}"><h2>{escape(title)}</h2>{html}</section>'
                   for id_, title, html in sections)  # fmt: skip
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>Threshold review {analysis.until:%Y-%m-%d}</title><style>{_CSS}</style></head>"
        f"<body>{_header(analysis, result, generated_at)}{body}</body></html>\n"
    )
