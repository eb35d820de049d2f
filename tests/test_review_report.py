"""The threshold-review report: override tables and patterns (exact numbers on a hand-made log),
the self-contained HTML page and the markdown summary on a synthetic log, and untrusted log text
coming out inert in both."""

from __future__ import annotations

import base64
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from hitl.analysis import patterns as pat
from hitl.analysis.decision_log import with_derived
from hitl.analysis.models import CSV_COLUMNS, CalibrationDrift, ReviewParams, ReviewResult
from hitl.analysis.report import markdown_summary, recommendation_rows, write_report
from hitl.analysis.report_html import render_html
from hitl.analysis.review import Analysis, analyse, result_of

NOW = datetime(2025, 3, 31, 12, tzinfo=UTC)
TARGETS = {"triage": 0.05, "escalation": 0.05}
CLASSES = {"triage": ("network", "access", "hardware"), "escalation": ("l1", "l2", "l3")}
THRESHOLDS = {"triage": 0.90, "escalation": 0.85}
CLIENTS = ("acme", "globex", "initech")
REVIEWERS = ("alice", "bob", "carol")
REASONS = ("client_context", "wrong_class", "missing_info")
TEXT_COLUMNS = (
    "decision_id",
    "checkpoint",
    "label",
    "route",
    "ai_value",
    "final_value",
    "reason_code",
    "reviewer",
    "client_id",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"
BOLD = "**bold** | pipe"


def frame_of(columns: dict[str, object]) -> pd.DataFrame:
    """A decision log in memory, typed and derived exactly as the CSV reader leaves it."""
    frame = pd.DataFrame(columns)
    for column in TEXT_COLUMNS:  # the readers keep text as object columns
        frame[column] = frame[column].astype(object)
    frame["decided_at"] = pd.to_datetime(frame["decided_at"], utc=True)
    frame["reopened"] = False
    return with_derived(frame.loc[:, [*CSV_COLUMNS, "reopened"]])


def synthetic_log(n: int = 4000, seed: int = 11) -> pd.DataFrame:
    """Two checkpoints over 10 weeks, everything below the threshold reviewed, a 5 % audit above
    it; triage/network at acme errs more often, mostly for client_context (the planted pattern)."""
    rng = np.random.default_rng(seed)
    checkpoint = rng.choice(list(CLASSES), n)
    label = np.array([CLASSES[c][k] for c, k in zip(checkpoint, rng.integers(0, 3, n), strict=True)])
    client = rng.choice(CLIENTS, n)
    threshold = np.array([THRESHOLDS[c] for c in checkpoint])
    confidence = np.round(1 - rng.beta(2, 16, n), 4)
    above = confidence >= threshold
    audited = above & (rng.random(n) < 0.05)
    reviewed = ~above | audited
    planted = (checkpoint == "triage") & (label == "network") & (client == "acme")
    wrong = (rng.random(n) < 0.3 * (1 - confidence)) | (planted & (rng.random(n) < 0.4))
    reason = np.where(planted, rng.choice(REASONS, n, p=[0.7, 0.15, 0.15]), rng.choice(REASONS, n))
    return frame_of(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "checkpoint": checkpoint,
            "label": label,
            "confidence": confidence,
            "route": np.where(above, np.where(audited, "audit", "auto"), "human"),
            "propensity": np.where(above, 0.05, 1.0),
            "ai_value": label,
            "final_value": np.where(reviewed, np.where(wrong, "other", label), ""),
            "reason_code": np.where(reviewed & wrong, reason, ""),
            "reviewer": np.where(reviewed, rng.choice(REVIEWERS, n), ""),
            "decided_at": [NOW - timedelta(seconds=float(s)) for s in rng.uniform(0, 70 * 86400, n)],
            "client_id": client,
            "threshold": threshold,
        }
    )


def analysed(log: pd.DataFrame) -> tuple[Analysis, ReviewResult]:
    analysis = analyse(log, ReviewParams(target_error=TARGETS), None, thresholds_from_log=True, now=NOW)
    return analysis, result_of(analysis, source="synthetic.csv", policy_version=None, report_path=None)


def section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    assert match, f"no section {name}"
    return match.group(1)


def outside_code_spans(markdown: str) -> str:
    return re.sub(r"(`+) .*? \1", "", markdown)


# ---------------------------------------------------------------- patterns on a hand-made log
W1, W2 = "2024-12-30T09:00:00Z", "2025-01-07T09:00:00Z"  # ISO weeks 2025-W01 and 2025-W02
TINY = [  # checkpoint, label, client, reviewer, outcome, reason, when
    ("triage", "network", "acme", "alice", "over", "client_context", W1),
    ("triage", "network", "acme", "bob", "over", "client_context", W1),
    ("triage", "network", "acme", "alice", "over", "wrong_class", W2),
    ("triage", "network", "acme", "alice", "ok", "", W2),
    ("triage", "network", "acme", "", "unreviewed", "", W2),
    ("triage", "network", "globex", "carol", "over", "client_context", W2),
    ("triage", "network", "globex", "alice+bob", "ok", "", W2),
    ("triage", "access", "acme", "bob", "ok", "", W1),
    ("triage", "access", "acme", "bob", "over", "missing_info", W1),
    ("triage", "access", "acme", "carol", "over", "", W2),
    ("escalation", "network", "acme", "alice", "over", "client_context", W2),
]


@pytest.fixture
def tiny() -> pd.DataFrame:
    columns: dict[str, list[object]] = {c: [] for c in CSV_COLUMNS}
    for i, (checkpoint, label, client, reviewer, outcome, reason, when) in enumerate(TINY):
        final = {"over": "other", "ok": label, "unreviewed": ""}[outcome]
        row = {"decision_id": f"t{i}", "checkpoint": checkpoint, "label": label, "confidence": 0.5,
               "route": "human", "propensity": 1.0, "ai_value": label, "final_value": final,
               "reason_code": reason, "reviewer": reviewer, "decided_at": when, "client_id": client,
               "threshold": 0.9}  # fmt: skip
        for column, value in row.items():
            columns[column].append(value)
    return frame_of(columns)


def rows(table: pd.DataFrame) -> list[tuple[object, ...]]:
    return [tuple(r) for r in table.itertuples(index=False)]


def test_override_tables_exact(tiny: pd.DataFrame) -> None:
    assert rows(pat.by_reason_code(tiny)) == [
        ("client_context", 4, 4, 1.0, 4 / 7),
        ("missing_info", 1, 1, 1.0, 1 / 7),
        ("wrong_class", 1, 1, 1.0, 1 / 7),
        ("(none)", 4, 1, 0.25, 1 / 7),
    ]
    assert rows(pat.by_checkpoint(tiny)) == [("triage", 9, 6, 6 / 9, 6 / 7), ("escalation", 1, 1, 1.0, 1 / 7)]
    assert rows(pat.by_class(tiny)) == [
        ("triage", "network", 6, 4, 4 / 6, 4 / 7),
        ("triage", "access", 3, 2, 2 / 3, 2 / 7),
        ("escalation", "network", 1, 1, 1.0, 1 / 7),
    ]
    assert rows(pat.by_client(tiny)) == [("acme", 8, 6, 6 / 8, 6 / 7), ("globex", 2, 1, 0.5, 1 / 7)]
    # alice+bob counts for both; carol (2 of 2) outranks bob (2 of 4) on rate
    assert rows(pat.by_reviewer(tiny)) == [
        ("alice", 5, 3, 0.6, 3 / 7),
        ("carol", 2, 2, 1.0, 2 / 7),
        ("bob", 4, 2, 0.5, 2 / 7),
    ]
    assert rows(pat.by_week(tiny)) == [("2025-W01", 4, 3, 0.75, 3 / 7), ("2025-W02", 6, 4, 4 / 6, 4 / 7)]
    assert list(pat.override_tables(tiny)) == ["reason code", "checkpoint", "class", "client", "reviewer",
                                                "ISO week"]  # fmt: skip


def test_top_patterns_exact(tiny: pd.DataFrame) -> None:
    found = pat.top_patterns(tiny, n=10, min_count=2)
    assert [p.sentence() for p in found] == [
        "triage overrides on class network: 75 % client_context (3 of 4 overrides; "
        "4 of 6 reviewed decisions overridden)",
        "triage overrides on class network for client acme: 67 % client_context (2 of 3 overrides; "
        "3 of 4 reviewed decisions overridden)",
    ]
    # min_count 1: ties on score go to the checkpoint order, and class-wide patterns that only
    # repeat a client-level one (escalation/network, triage/access) are dropped
    found = pat.top_patterns(tiny, n=10, min_count=1)
    assert [(p.checkpoint, p.label, p.client, p.reason_code, p.count, p.overrides) for p in found] == [
        ("triage", "network", None, "client_context", 3, 4),
        ("triage", "network", "acme", "client_context", 2, 3),
        ("triage", "network", "globex", "client_context", 1, 1),
        ("escalation", "network", "acme", "client_context", 1, 1),
        ("triage", "access", "acme", "missing_info", 1, 2),
    ]
    assert len(pat.top_patterns(tiny, n=3, min_count=1)) == 3
    assert pat.top_patterns(tiny, min_count=5) == []


def test_tables_and_patterns_without_reviews(tiny: pd.DataFrame) -> None:
    unreviewed = tiny[~tiny["reviewed"]]
    for name, table in pat.override_tables(unreviewed).items():
        assert table.empty, name
        assert {"reviewed", "overrides", "override_rate", "share_of_overrides"} <= set(table.columns)
    assert pat.top_patterns(unreviewed) == []


# ---------------------------------------------------------------- the report on a synthetic log
GENERATED = datetime(2025, 4, 1, 8, 30, 5, tzinfo=UTC)


@dataclass
class Written:
    log: pd.DataFrame
    analysis: Analysis
    result: ReviewResult
    path: Path
    html: str
    figures_before: list[int]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """One report for the module: rendering 16 figures takes a couple of seconds."""
    log = synthetic_log()
    analysis, result = analysed(log)
    figures_before = plt.get_fignums()
    path = write_report(analysis, result, tmp_path_factory.mktemp("out") / "reports", now=GENERATED)
    return Written(log, analysis, result, path, path.read_text(encoding="utf-8"), figures_before)


def test_report_file_is_self_contained(written: Written) -> None:
    assert written.path.name == "threshold-review-20250401T083005Z.html"
    assert [p.name for p in written.path.parent.iterdir()] == [written.path.name]
    html = written.html
    assert html.startswith("<!DOCTYPE html>")
    for external in ('src="http', "src='http", "href=", "<link", "<script", "@import", "url("):
        assert external not in html
    assert plt.get_fignums() == written.figures_before  # no pyplot figures created or left open


def test_report_never_overwrites(tmp_path: Path) -> None:
    analysis, result = analysed(synthetic_log(n=50, seed=1).iloc[0:0])
    first = write_report(analysis, result, tmp_path, now=GENERATED)
    second = write_report(analysis, result, tmp_path, now=GENERATED)
    assert (first.name, second.name) == (
        "threshold-review-20250401T083005Z.html",
        "threshold-review-20250401T083005Z-2.html",
    )
    assert {p.name for p in tmp_path.iterdir()} == {first.name, second.name}  # no .partial left


def test_report_embeds_pngs(written: Written) -> None:
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', written.html)
    # one reliability diagram per checkpoint; a risk-coverage curve per checkpoint-wide verdict and
    # per class/client verdict that changes the policy
    drawn = [
        r
        for r in written.result.recommendations
        if (r.label is None and r.client is None) or r.changes_policy
    ]
    assert 0 < len(drawn) < len(written.result.recommendations)
    assert len(images) == written.log["checkpoint"].nunique() + len(drawn)
    png = base64.b64decode(images[0], validate=True)
    assert png.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (600, 400)


def test_report_recommendations_and_patterns(written: Written) -> None:
    log, result, html = written.log, written.result, written.html
    reviewed = log[log["final_value"] != ""]
    overridden = reviewed[reviewed["final_value"] != reviewed["ai_value"]]
    assert f"{len(log)} ({len(reviewed)} reviewed, {len(overridden)} overridden)" in section_header(html)

    # checkpoint-wide plus every class and client with >= 30 reviews: all 3 of each, per checkpoint
    assert len(result.recommendations) == 2 * (1 + 3 + 3)
    table = section(html, "recommendations")
    assert table.count("<tr class=") == len(result.recommendations)
    for rec in result.recommendations:
        assert f"<td>{rec.current:.3f}</td><td>{rec.recommended:.3f}</td>" in table
        assert rec.reason.replace(">", "&gt;").replace("<", "&lt;") in table

    reasons = Counter(overridden["reason_code"])
    by_reason = section(html, "overrides")
    for reason, count in reasons.items():
        n_reviewed = int((reviewed["reason_code"] == reason).sum())
        assert f'<td>{reason}</td><td class="n">{n_reviewed}</td><td class="n">{count}</td>' in by_reason

    planted = overridden[
        (overridden["checkpoint"] == "triage") & (overridden["label"] == "network")
        & (overridden["client_id"] == "acme")
    ]  # fmt: skip
    n_context = int((planted["reason_code"] == "client_context").sum())
    n_reviewed = int(((reviewed["checkpoint"] == "triage") & (reviewed["label"] == "network")
                      & (reviewed["client_id"] == "acme")).sum())  # fmt: skip
    sentence = (
        f"triage overrides on class network for client acme: {n_context / len(planted) * 100:.0f} % "
        f"client_context ({n_context} of {len(planted)} overrides; {len(planted)} of {n_reviewed} "
        "reviewed decisions overridden)"
    )
    assert f"<li>{sentence}</li>" in section(html, "patterns")


def section_header(html: str) -> str:
    return html.split("</header>")[0]


def test_markdown_summary_and_rows(written: Written) -> None:
    log, analysis = written.log, written.analysis
    result = written.result.model_copy(update={"report_path": "/reports/threshold-review-x.html"})
    markdown = markdown_summary(analysis, result)
    assert "- **policy version:** none" in markdown
    assert "`` /reports/threshold-review-x.html ``" not in markdown  # one backtick fence is enough
    assert "` /reports/threshold-review-x.html `" in markdown
    assert f"{len(log)} (" in markdown
    assert markdown.count("\n| `") == len(result.recommendations)
    assert "client\\_context" not in markdown and "` client_context `" in markdown
    drifted = CalibrationDrift(
        checkpoint="triage",
        ece_current=0.09,
        ece_previous=0.03,
        n_current=40,
        n_previous=45,
        drifted=True,
        note="calibration drifted: ECE 0.030 -> 0.090",
    )
    flagged = markdown_summary(analysis, result.model_copy(update={"drift": [drifted]}))
    assert "- ` triage `: calibration drifted\\: ECE 0\\.030 \\-\\> 0\\.090" in flagged
    html = render_html(analysis, result.model_copy(update={"drift": [drifted]}), GENERATED)
    assert '<tr class="drifted"><td>triage</td><td>0.030</td><td>0.090</td>' in section(html, "drift")
    rows = recommendation_rows(result)
    assert len(rows) == len(result.recommendations)
    assert rows[0]["checkpoint"] == "triage" and rows[0]["class"] is None and rows[0]["client"] is None
    assert {r["action"] for r in rows} <= {"raise", "lower", "hold"}


# ---------------------------------------------------------------- untrusted text, empty windows
def hostile_log() -> pd.DataFrame:
    log = synthetic_log(n=2500, seed=5)
    triage_network = (log["checkpoint"] == "triage") & (log["label"] == "network")
    for column in ("label", "ai_value"):
        log.loc[triage_network, column] = SCRIPT
    log.loc[triage_network & log["reviewed"] & ~log["correct"], "final_value"] = "other"
    log.loc[log["client_id"] == "acme", "client_id"] = BOLD
    log.loc[log["reviewer"] == "alice", "reviewer"] = BOLD
    log.loc[log["reason_code"] == "wrong_class", "reason_code"] = "$\\frac{</td>"
    return log


def test_untrusted_text_is_inert(tmp_path: Path) -> None:
    analysis, result = analysed(hostile_log())
    assert any(r.label == SCRIPT for r in result.recommendations)
    assert any(r.client == BOLD for r in result.recommendations)
    html = write_report(analysis, result, tmp_path).read_text(encoding="utf-8")
    assert SCRIPT not in html and "<script" not in html and "$\\frac{</td>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section(html, "recommendations")
    assert "<td>**bold** | pipe</td>" in section(html, "overrides")  # HTML never renders markdown
    assert "<td>$\\frac{&lt;/td&gt;</td>" in section(html, "overrides")

    result = result.model_copy(update={"report_path": str(tmp_path / "r.html")})
    markdown = markdown_summary(analysis, result)
    bare = outside_code_spans(markdown)
    for raw in ("<script", "**bold**", "| pipe", "</td>"):
        assert raw not in bare
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(markdown)
    assert "<script" not in rendered and "<strong>bold</strong>" not in rendered
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in rendered
    for row in re.findall(r"<tr>(.*?)</tr>", rendered, re.S):  # no cell split by the pipe
        assert row.count("<td>") + row.count("<th>") == 10


def test_report_without_reviews(tmp_path: Path) -> None:
    log = synthetic_log(n=300, seed=3)
    log["final_value"], log["reason_code"], log["reviewer"] = "", "", ""
    log["route"], log["propensity"] = "auto", 0.05
    analysis, result = analysed(with_derived(log))
    assert result.recommendations and all(r.action.value == "hold" for r in result.recommendations)
    html = write_report(analysis, result, tmp_path).read_text(encoding="utf-8")
    assert "No reviewed decisions: no override rates by reason code." in html
    assert "no reviewed decisions, no reliability diagram" in html
    assert "No checkpoint x class (x client) combination" in html
    assert "300 (0 reviewed, 0 overridden)" in html
    assert "No combination has 5 or more overrides" in markdown_summary(analysis, result)


def test_report_of_an_empty_window(tmp_path: Path) -> None:
    log = synthetic_log(n=200, seed=2)
    params = ReviewParams(target_error=TARGETS, since=NOW + timedelta(days=1), until=NOW + timedelta(days=2))
    analysis = analyse(log, params, None, thresholds_from_log=True, now=NOW)
    result = result_of(analysis, source="database", policy_version=3, report_path=None)
    html = write_report(analysis, result, tmp_path).read_text(encoding="utf-8")
    assert "there is nothing to recommend" in html and "No decisions in the window." in html
    assert "data:image/png" not in html
    markdown = markdown_summary(analysis, result)
    assert "- **policy version:** 3" in markdown and "nothing to recommend" in markdown
    assert recommendation_rows(result) == []
