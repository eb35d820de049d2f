"""Reading files record by record: malformed rows are isolated, good rows are never lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl.errors import SourceError
from hitl.ingestion.files import (
    check_file,
    discover_inputs,
    ignored_files,
    iter_csv,
    iter_jsonl,
    move_processed,
)

HEADER = "ticket_id,title,body,urgency\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_multiline_quoted_field_is_one_record(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", HEADER + 'T1,hello,"line one\nline two",1\nT2,x,y,2\n')
    records = list(iter_csv(path))
    assert [r.row_number for r in records] == [1, 2]
    assert [r.line_number for r in records] == [2, 4]
    expected = {"ticket_id": "T1", "title": "hello", "body": "line one\nline two", "urgency": "1"}
    assert records[0].data == expected
    assert records[1].error is None


def test_broken_quoting_quarantines_one_line_and_resynchronises(tmp_path: Path) -> None:
    content = HEADER + 'T1,ok,fine,1\nT2,"bad"quote,body,1\nT3,ok,fine,2\n'
    content += 'T4,"never closed,body,3\nT5,ok,fine,0\n'
    records = list(iter_csv(write(tmp_path, "b.csv", content)))
    good = [r.data["ticket_id"] for r in records if r.data]
    bad = [(r.line_number, r.error) for r in records if r.error]
    assert good == ["T1", "T3", "T5"]
    assert [line for line, _ in bad] == [3, 5]
    assert all(error for _, error in bad)
    assert "T4" in next(r.raw for r in records if r.line_number == 5)


def test_wrong_field_count_is_reported(tmp_path: Path) -> None:
    records = list(iter_csv(write(tmp_path, "c.csv", HEADER + "T1,a,b\nT2,a,b,1,extra\nT3,a,b,1\n")))
    assert [r.error for r in records][:2] == [
        "expected 4 fields as in the header, found 3",
        "expected 4 fields as in the header, found 5",
    ]
    assert records[2].data is not None


def test_blank_lines_skipped_and_bom_removed(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbf" + HEADER.encode() + b"\nT1,a,b,1\n\n\nT2,a,b,2\n")
    records = list(iter_csv(path))
    assert [r.data["ticket_id"] for r in records if r.data] == ["T1", "T2"]
    assert [r.row_number for r in records] == [1, 2]


def test_invalid_utf8_is_kept_visible_not_repaired(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", HEADER.encode() + b"T1,a,caf\xe9,1\nT2,a,b,2\n")
    first, second = list(iter_csv(path))
    assert first.data is not None and "\udce9" in first.data["body"]
    assert "\ufffd" in first.raw
    assert second.data is not None


def test_header_problems_fail_the_whole_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="empty"):
        list(iter_csv(write(tmp_path, "empty.csv", "")))
    with pytest.raises(SourceError, match="duplicate column"):
        list(iter_csv(write(tmp_path, "dup.csv", "a,a,b\n1,2,3\n")))
    with pytest.raises(SourceError, match="lacks column"):
        check_file(write(tmp_path, "missing.csv", "id,title\n1,x\n"), ["ticket_id", "body"])
    with pytest.raises(SourceError, match="unsupported file type"):
        check_file(write(tmp_path, "x.xlsx", "junk"), ["a"])
    with pytest.raises(SourceError, match="no such file"):
        check_file(tmp_path / "nope.csv", ["a"])


def test_jsonl_records_and_errors(tmp_path: Path) -> None:
    content = b'{"external_id": "J1", "body": "x"}\n\nnot json\n[1, 2]\n'
    content += b'{"external_id": "J2", "body": "\xff"}\n'
    records = list(iter_jsonl(write(tmp_path, "a.jsonl", content)))
    assert [r.line_number for r in records] == [1, 3, 4, 5]
    assert records[0].data == {"external_id": "J1", "body": "x"}
    assert records[1].error is not None and records[1].error.startswith("invalid JSON")
    assert records[2].error == "expected a JSON object, got list"
    assert records[3].error == "the line is not valid UTF-8"


def test_json_array_file(tmp_path: Path) -> None:
    records = list(iter_jsonl(write(tmp_path, "a.json", '[{"external_id": "A", "body": "b"}, 3]')))
    assert records[0].data == {"external_id": "A", "body": "b"}
    assert records[1].error == "expected a JSON object, got int"


def test_drop_folder_discovery_and_move(tmp_path: Path) -> None:
    for name in ("b.csv", "a.jsonl", "notes.txt"):
        write(tmp_path, name, HEADER)
    write(tmp_path, ".~lock.b.csv#", "")  # an editor's lock file: hidden, never reported
    found = discover_inputs(tmp_path)
    assert [p.name for p in found] == ["a.jsonl", "b.csv"]
    assert ignored_files(tmp_path) == ["notes.txt"]
    first = move_processed(found[1])
    write(tmp_path, "b.csv", HEADER)
    second = move_processed(tmp_path / "b.csv")
    assert first == tmp_path / "processed" / "b.csv" and first.exists()
    assert second.parent == tmp_path / "processed" and second != first and second.exists()
    assert not (tmp_path / "b.csv").exists()


def test_the_run_summary_names_files_it_did_not_read() -> None:
    from datetime import UTC, datetime

    from hitl.ingestion.report import report_markdown
    from hitl.models import IngestReport, IngestStats

    report = IngestReport(
        run_id="r1", source="drop", mapping="canonical", status="completed", stats=IngestStats(),
        started_at=datetime(2026, 11, 28, tzinfo=UTC), ignored_files=["*all*.xlsx", "notes.txt"],
    )  # fmt: skip
    summary = report_markdown(report)
    assert "- **not read** (not a ticket file type): \\*all\\*\\.xlsx, notes\\.txt" in summary
    assert "nothing to read: the drop folder had no ticket file" in summary
