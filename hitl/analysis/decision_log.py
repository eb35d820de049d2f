"""The decision-log exchange format: decisions from any system, one row each, read into the one
DataFrame shape every analysis function takes.

Reading is vectorised (a million rows must review in a few times pandas' own read): values are
parsed column by column, and the first bad value found is reported with its row number, so an
analyst fixes the file instead of guessing. Nothing is dropped silently: one bad row stops the read.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from hitl.analysis.models import CSV_COLUMNS, OPTIONAL_COLUMNS, ROUTES
from hitl.errors import SourceError

_TEXT_COLUMNS = ("decision_id", "checkpoint", "label", "route", "ai_value", "final_value",
                 "reason_code", "reviewer", "client_id")  # fmt: skip
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_GUARD = "'"
# The guard is added to a trigger and to a value that starts with the guard itself, so reading
# strips exactly one quote from exactly these and every value reads back as it was written.
_GUARDED = (*FORMULA_TRIGGERS, _GUARD)
_FALSE = frozenset({"false", "0", "no", "n", "f", ""})


class DecisionLogError(SourceError):
    """A decision log that cannot be analysed as given; the message names the row."""


def _row_error(path: Path, index: int, message: str) -> DecisionLogError:
    # index is the 0-based data row; row 1 is the first line after the header.
    return DecisionLogError(f"{path}: row {index + 1} (line {index + 2}): {message}")


def _first_bad(mask: np.ndarray | pd.Series) -> int | None:
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    return int(positions[0]) if positions.size else None


def guard_formulas(values: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula, made inert with a leading single quote.

    Ticket, client and reviewer text comes from outside (a client named `=HYPERLINK(...)`), and
    analysts open the export in a spreadsheet. A value that already starts with a quote gets one
    too, so `unguard_formulas` can undo exactly what was added."""
    text = values.fillna("").astype(str)
    return text.where(~text.str.startswith(_GUARDED), _GUARD + text).astype(object)


def unguard_formulas(values: pd.Series) -> pd.Series:
    """The inverse of `guard_formulas`: one leading quote removed where the guard put it (before a
    formula character or another quote); `'abc` from another system is left as written."""
    text = values.astype(str)
    guarded = text.str.startswith(_GUARD) & text.str.slice(1).str.startswith(_GUARDED)
    return text.where(~guarded, text.str.slice(1)).astype(object)


def read_decision_csv(path: Path) -> pd.DataFrame:
    """Validated decision log from a CSV in the exchange format (see docs/threshold-review.md)."""
    if not path.is_file():
        raise DecisionLogError(f"{path}: no such file")
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would otherwise stick to
        # the first column's name and make decision_id "missing"
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise DecisionLogError(f"{path}: cannot read: {exc}") from exc
    header = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise DecisionLogError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must hold {', '.join(CSV_COLUMNS)}"
        )
    try:
        frame = pd.read_csv(
            path,
            dtype={c: object for c in (*_TEXT_COLUMNS, "decided_at", *OPTIONAL_COLUMNS)},
            keep_default_na=False,
            na_values={"confidence": [""], "propensity": [""], "threshold": [""]},
            skipinitialspace=True,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DecisionLogError(f"{path}: not a readable CSV: {' '.join(str(exc).split())}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in _TEXT_COLUMNS:
        frame[column] = unguard_formulas(frame[column])
    return validate_log(frame, path)


def _numeric(frame: pd.DataFrame, column: str, path: Path, low: float, high: float, *,
             low_open: bool = False, required: bool = True) -> pd.Series:  # fmt: skip
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = (
        values.isna().to_numpy() & (raw.astype(str).str.strip() != "").to_numpy()
        if not required
        else (values.isna().to_numpy())
    )
    index = _first_bad(bad)
    if index is not None:
        shown = raw.iloc[index]
        what = (
            "empty" if pd.isna(shown) or str(shown).strip() == "" else f"{str(shown)[:40]!r} is not a number"
        )
        raise _row_error(path, index, f"{column}: {what}")
    finite = values.dropna()
    low_ok = finite > low if low_open else finite >= low
    out_of_range = ~(low_ok & (finite <= high))
    if out_of_range.any():
        index = int(frame.index.get_indexer([out_of_range[out_of_range].index[0]])[0])
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise _row_error(path, index, f"{column}: {values.iloc[index]:g} is outside {interval}")
    return values


def validate_log(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Typed columns plus the derived ones (reviewed, correct, reopened, eligible)."""
    frame = frame.reset_index(drop=True)
    if frame.empty:
        raise DecisionLogError(f"{path}: no decisions (the file holds only a header)")
    # Text fields are taken as written (the reader drops leading blanks); with NA detection off, a
    # short row's missing fields read as "" and fail the checks below like any empty field.
    for column in ("decision_id", "checkpoint", "ai_value"):
        index = _first_bad(frame[column] == "")
        if index is not None:
            raise _row_error(path, index, f"{column} is empty")
    duplicated = frame["decision_id"].duplicated()
    index = _first_bad(duplicated)
    if index is not None:
        raise _row_error(path, index, f"decision_id {frame['decision_id'].iloc[index]!r} appears twice")
    route = frame["route"].str.lower().astype(object)
    index = _first_bad(~route.isin(ROUTES))
    if index is not None:
        raise _row_error(
            path, index, f"route {frame['route'].iloc[index]!r} is not one of {', '.join(ROUTES)}"
        )
    frame["route"] = route
    frame["confidence"] = _numeric(frame, "confidence", path, 0.0, 1.0)
    frame["propensity"] = _numeric(frame, "propensity", path, 0.0, 1.0, low_open=True)
    frame["threshold"] = _numeric(frame, "threshold", path, 0.0, 1.0)
    decided = pd.to_datetime(frame["decided_at"], utc=True, format="ISO8601", errors="coerce")
    index = _first_bad(decided.isna())
    if index is not None:
        raise _row_error(
            path, index, f"decided_at {str(frame['decided_at'].iloc[index])[:40]!r} is not an ISO 8601 time"
        )
    frame["decided_at"] = decided
    human_below = (frame["route"] == "human").to_numpy()
    index = _first_bad(human_below & (frame["propensity"] != 1.0).to_numpy())
    if index is not None:
        raise _row_error(
            path, index, "propensity of a human-routed decision must be 1 (every one is reviewed)"
        )
    for column in OPTIONAL_COLUMNS:  # true/false flags, False when the column is absent
        if column in frame.columns:
            flag = frame[column].fillna("").astype(str).str.strip().str.lower()
            index = _first_bad(~flag.isin(_TRUE | _FALSE))
            if index is not None:
                raise _row_error(path, index, f"{column} {frame[column].iloc[index]!r} is not true or false")
            frame[column] = flag.isin(_TRUE)
        else:
            frame[column] = False
    return with_derived(frame)


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """reviewed / correct / eligible from the exchange columns, the same for CSV and database logs.

    Eligible: the decision could have been automated at some threshold. A human route despite a
    confidence at or above the threshold in force means autonomy was withheld for another reason
    (the policy, a high-risk action), so no threshold would have automated it, except under the
    threshold 1 of a checkpoint the review stopped: there every decision went to a human because of
    the threshold, and those reviews are the evidence that can re-enable it.
    """
    frame["reviewed"] = frame["final_value"] != ""
    if "rejected" not in frame.columns:
        frame["rejected"] = False
    # A rejected or escalated proposal is not a correct one even where the final value repeats the AI's:
    # the human did not accept it (the conservative reading for the threshold review).
    frame["correct"] = frame["reviewed"] & (frame["final_value"] == frame["ai_value"]) & ~frame["rejected"]
    frame["eligible"] = (
        (frame["route"] != "human") | (frame["confidence"] < frame["threshold"]) | (frame["threshold"] >= 1.0)
    )
    return frame


def sampled_reviews(log: pd.DataFrame) -> np.ndarray:
    """The reviews the estimator may weight by 1/propensity: those the routing asked for (below the
    threshold, `human`, or the random audit draw, `audit`). An AUTO decision reviewed anyway (triage's
    category decision answered because its sibling priority went to a human) was not drawn at
    random, so weighting it as an audit (1/0.05 = 20) would bias the estimate; it stays information
    (`reviewed`) and, when the reviewer changed it, a known error like a reopened ticket."""
    return log["reviewed"].to_numpy(dtype=bool) & (log["route"] != "auto").to_numpy(dtype=bool)


def write_decision_csv(frame: pd.DataFrame, path: Path) -> int:
    """The exchange format, so another installation (or a spreadsheet) reads exactly what we read.

    Text cells are formula-guarded (`guard_formulas`); numeric columns are written as numbers."""
    out = frame.loc[:, [*CSV_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in frame.columns)]].copy()
    for column in _TEXT_COLUMNS:
        out[column] = guard_formulas(out[column])
    out["decided_at"] = pd.to_datetime(out["decided_at"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for column in OPTIONAL_COLUMNS:
        if column in out.columns:
            out[column] = np.where(out[column].astype(bool), "true", "false")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return len(out)
