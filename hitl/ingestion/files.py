"""Reading ticket files record by record, so that one bad row never costs the rest of the file.

CSV is parsed one record at a time with the csv module in strict mode. When a record is
malformed (broken quoting, wrong number of fields) only its first physical line is
quarantined and parsing resumes on the next line: an unclosed quote cannot swallow the good
rows after it. Bytes that are not UTF-8 are kept (surrogate-escaped) and the record carrying
them is quarantined, never silently "repaired".
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hitl.errors import SourceError

FILE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
csv.field_size_limit(10_000_000)


@dataclass(frozen=True)
class RawRecord:
    """One record as read; `data` is None when it could not even be parsed (`error` says why)."""

    row_number: int
    line_number: int | None
    raw: str
    data: dict[str, Any] | None = None
    error: str | None = None


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes kept by surrogateescape decoding


def has_bad_bytes(text: str) -> bool:
    return _UNDECODABLE.search(text) is not None


def printable(text: str) -> str:
    """Raw text safe to store: undecodable bytes shown as U+FFFD, NUL as a visible escape."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL


_LINE_END = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # Only \n, \r\n and \r end a line: str.splitlines() also splits on \x1c-\x1e, \x85, \v, \f,
    # U+2028/9, which appear inside ticket text (found by fuzzing: a good record was quarantined).
    return _LINE_END.findall(data.decode("utf-8", "surrogateescape"))


def _lines_from(lines: Sequence[str], start: int) -> Iterator[str]:
    for index in range(start, len(lines)):
        yield lines[index]


def read_csv_header(path: Path) -> list[str]:
    """The header of a CSV file; a file without a usable header cannot be ingested at all."""
    lines = _read_lines(path)
    return _parse_header(path, lines)[0]


def _parse_header(path: Path, lines: list[str]) -> tuple[list[str], int]:
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        raise SourceError(f"{path} is empty: a CSV file needs a header row")
    reader = csv.reader(_lines_from(lines, start), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        raise SourceError(f"{path}: the header row cannot be parsed ({exc})") from exc
    if any(has_bad_bytes(name) for name in header):
        raise SourceError(f"{path}: the header row is not valid UTF-8")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SourceError(f"{path}: duplicate column name(s) in the header: {', '.join(duplicates)}")
    return header, start + reader.line_num


def iter_csv(path: Path) -> Iterator[RawRecord]:
    lines = _read_lines(path)
    header, position = _parse_header(path, lines)
    row_number = 0
    while position < len(lines):
        if not lines[position].strip():
            position += 1
            continue
        row_number += 1
        reader = csv.reader(_lines_from(lines, position), strict=True)
        error: str | None = None
        fields: list[str] = []
        try:
            fields = next(reader)
        except csv.Error as exc:
            error = f"malformed CSV (broken quoting?): {exc}"
        consumed = max(reader.line_num, 1)
        if error is None and len(fields) != len(header):
            error = f"expected {len(header)} fields as in the header, found {len(fields)}"
            if consumed > 1:
                error += " (an unclosed quote may have joined several lines)"
        if error is not None:
            # resynchronise on the next physical line: only this line is lost to quarantine
            yield RawRecord(row_number, position + 1, printable(lines[position]), error=error)
            position += 1
            continue
        raw = "".join(lines[position : position + consumed])
        yield RawRecord(row_number, position + 1, printable(raw), data=dict(zip(header, fields, strict=True)))
        position += consumed


def iter_jsonl(path: Path) -> Iterator[RawRecord]:
    lines = _read_lines(path)
    stripped = next((line.strip() for line in lines if line.strip()), "")
    if path.suffix == ".json" and stripped.startswith("["):
        yield from _iter_json_array(path, "".join(lines))
        return
    row_number = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        row_number += 1
        text = printable(line.rstrip("\r\n"))
        if has_bad_bytes(line):
            yield RawRecord(row_number, index + 1, text, error="the line is not valid UTF-8")
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RawRecord(
                row_number, index + 1, text, error=f"invalid JSON: {exc.msg} at column {exc.colno}"
            )
            continue
        if not isinstance(value, dict):
            kind = type(value).__name__
            yield RawRecord(row_number, index + 1, text, error=f"expected a JSON object, got {kind}")
            continue
        yield RawRecord(row_number, index + 1, text, data=value)


def _iter_json_array(path: Path, text: str) -> Iterator[RawRecord]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    for number, item in enumerate(items, start=1):
        raw = json.dumps(item, ensure_ascii=False)
        if isinstance(item, dict):
            yield RawRecord(number, None, raw, data=item)
        else:
            yield RawRecord(number, None, raw, error=f"expected a JSON object, got {type(item).__name__}")


def iter_file(path: Path) -> Iterator[RawRecord]:
    if path.suffix.lower() == ".csv":
        return iter_csv(path)
    if path.suffix.lower() in FILE_SUFFIXES:
        return iter_jsonl(path)
    raise SourceError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(FILE_SUFFIXES)})")


def check_file(path: Path, required_columns: Sequence[str]) -> None:
    """Fail fast, before a run starts, on inputs no row of which could be ingested."""
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise SourceError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(FILE_SUFFIXES)})")
    if path.suffix.lower() == ".csv":
        header = read_csv_header(path)
        missing = [c for c in required_columns if c not in header]
        if missing:
            raise SourceError(
                f"{path} lacks column(s) {', '.join(missing)} required by the mapping "
                f"(its columns: {', '.join(header[:12])}{', ...' if len(header) > 12 else ''})"
            )
    elif not path.is_file():
        raise SourceError(f"{path} is not a file")


def discover_inputs(path: Path) -> list[Path]:
    """A file is its own input; a drop folder gives its ticket files, oldest name first."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
    if path.exists():
        return [path]
    raise SourceError(f"no such file or folder: {path}")


def ignored_files(folder: Path) -> list[str]:
    """Files of a drop folder that no run reads (another type: an Excel export, a PDF), so the run
    can say so instead of leaving them unread night after night. Hidden files (editor locks,
    partial uploads) are not listed."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in FILE_SUFFIXES
    )


def move_processed(path: Path) -> Path:
    """Move a drop-folder file into `processed/`, never overwriting an earlier file of that name."""
    target_dir = path.parent / "processed"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = target_dir / f"{path.stem}.{stamp}{path.suffix}"
    shutil.move(str(path), target)
    return target
