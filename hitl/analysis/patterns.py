"""Where reviewers disagree with the AI: override rates by reason code, checkpoint, class, client,
reviewer and ISO week, and the strongest checkpoint x class (x client) patterns as sentences.

The threshold verdicts say how often the AI is wrong; these tables say where and why, which is what
an analyst acts on (a client-specific rule, examples for retraining, a word with a reviewer). Only
reviewed decisions count: an unreviewed decision has no verdict. An override is a reviewed
decision whose final value differs from the AI's (`correct` is False). Counts are plain, not
weighted by 1/propensity: they describe what reviewers saw, not the whole population.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from policies.checkpoint_policy import CHECKPOINTS

NO_VALUE = "(none)"  # shown for an empty reason code, class, client or reviewer
_NO_REASON = frozenset({"", "none"})  # reviews record "no reason" as empty; some exports write "none"
METRICS: tuple[str, ...] = ("reviewed", "overrides", "override_rate", "share_of_overrides")


def _per_unique(values: pd.Series, convert: Callable[[str], str]) -> pd.Series:
    """`convert` applied once per distinct value: a million reviews hold a few dozen reason codes,
    and string methods over every row were most of a large report's time."""
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=False)
    mapped = np.array([convert(str(u)) for u in uniques], dtype=object)
    return pd.Series(mapped[codes] if len(mapped) else np.array([], dtype=object), index=values.index)


def reviewed_only(log: pd.DataFrame) -> pd.DataFrame:
    """The reviewed decisions with an `override` flag and the reason code normalised."""
    if "override" in log.columns:  # already prepared (override_tables prepares once)
        return log.drop(columns="group", errors="ignore").copy(
            deep=False
        )  # copy-on-write: callers add columns
    part = log[log["reviewed"].to_numpy(dtype=bool)].copy()
    part["override"] = ~part["correct"].to_numpy(dtype=bool)
    part["reason"] = _per_unique(
        part["reason_code"], lambda r: NO_VALUE if r.strip().lower() in _NO_REASON else r
    )
    return part


def _filled(values: pd.Series) -> pd.Series:
    """Values as written (the analysis groups them that way too), blanks shown as NO_VALUE."""
    return _per_unique(values, lambda v: v if v.strip() else NO_VALUE)


def _rates(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """reviewed / overrides / override_rate / share_of_overrides per value of `keys`."""
    if frame.empty:
        return pd.DataFrame({**{k: pd.Series(dtype=str) for k in keys},
                             "reviewed": pd.Series(dtype=int), "overrides": pd.Series(dtype=int),
                             "override_rate": pd.Series(dtype=float),
                             "share_of_overrides": pd.Series(dtype=float)})  # fmt: skip
    table = (
        frame.groupby(keys, sort=False)["override"]
        .agg(reviewed="size", overrides="sum")
        .reset_index()
        .astype({"reviewed": int, "overrides": int})
    )
    table["override_rate"] = table["overrides"] / table["reviewed"]
    total = int(frame["override"].sum())
    table["share_of_overrides"] = table["overrides"] / total if total else 0.0
    return table


def _most_overrides_first(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    order = ["overrides", "override_rate", *keys]
    ascending = [False, False, *[True] * len(keys)]
    return table.sort_values(order, ascending=ascending, kind="mergesort").reset_index(drop=True)


def _by(log: pd.DataFrame, values: Callable[[pd.DataFrame], pd.Series]) -> pd.DataFrame:
    frame = reviewed_only(log)
    frame["group"] = values(frame) if not frame.empty else pd.Series(dtype=str)
    return _most_overrides_first(_rates(frame, ["group"]), ["group"])


def by_reason_code(log: pd.DataFrame) -> pd.DataFrame:
    """Per reason code; `share_of_overrides` is the column to read (a reason mostly comes with an
    override, so its override rate is near 100 % by construction)."""
    return _by(log, lambda f: f["reason"])


def by_checkpoint(log: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint, in pipeline order (triage first), unknown checkpoints after, by name."""
    table = _rates(reviewed_only(log).rename(columns={"checkpoint": "group"}), ["group"])
    rank = table["group"].map(lambda c: CHECKPOINTS.index(c) if c in CHECKPOINTS else len(CHECKPOINTS))
    order = table.assign(_rank=rank).sort_values(["_rank", "group"], kind="mergesort")
    return order.drop(columns="_rank").reset_index(drop=True)


def by_class(log: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint and predicted class: the same label means different things at different
    checkpoints, so classes are never pooled across them."""
    frame = reviewed_only(log)
    frame["group"] = _filled(frame["label"]) if not frame.empty else pd.Series(dtype=str)
    return _most_overrides_first(_rates(frame, ["checkpoint", "group"]), ["checkpoint", "group"])


def by_client(log: pd.DataFrame) -> pd.DataFrame:
    return _by(log, lambda f: _filled(f["client_id"]))


def by_reviewer(log: pd.DataFrame) -> pd.DataFrame:
    """Per reviewer. A decision approved by several reviewers (stored as "alice+bob") counts once
    for each of them, so the reviewed column can sum to more than the reviewed decisions."""
    frame = reviewed_only(log)
    if frame.empty:
        return _rates(frame, ["group"])
    # Aggregate per stored reviewer string first (few distinct values), then split "alice+bob".
    per_string = frame.assign(group=frame["reviewer"].astype(object))
    table = _rates(per_string, ["group"])
    table["group"] = table["group"].map(lambda v: [p if p.strip() else NO_VALUE for p in str(v).split("+")])
    table = table.explode("group", ignore_index=True)
    table = table.groupby("group", sort=False)[["reviewed", "overrides"]].sum().reset_index()
    table = table.astype({"reviewed": int, "overrides": int})
    table["override_rate"] = table["overrides"] / table["reviewed"]
    total = int(frame["override"].sum())
    table["share_of_overrides"] = table["overrides"] / total if total else 0.0
    return _most_overrides_first(table, ["group"])


def by_week(log: pd.DataFrame) -> pd.DataFrame:
    """Per ISO week of decided_at (UTC), oldest first: a trend, so time order beats count order."""
    frame = reviewed_only(log)
    if frame.empty:
        return _rates(frame, ["group"])
    iso = frame["decided_at"].dt.tz_convert("UTC").dt.isocalendar()
    frame["group"] = iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)
    return _rates(frame, ["group"]).sort_values("group", kind="mergesort").reset_index(drop=True)


def override_tables(log: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The six tables under the titles the report shows them with, in the report's order."""
    log = reviewed_only(log)
    return {
        "reason code": by_reason_code(log),
        "checkpoint": by_checkpoint(log),
        "class": by_class(log),
        "client": by_client(log),
        "reviewer": by_reviewer(log),
        "ISO week": by_week(log),
    }


@dataclass(frozen=True)
class Pattern:
    """One reason code that dominates the overrides of a checkpoint x class (x client) combination."""

    checkpoint: str
    label: str
    client: str | None  # None: all clients of the class
    reason_code: str
    count: int  # overrides of the combination with this reason code
    overrides: int  # all overrides of the combination (with or without a reason code)
    reviewed: int  # reviewed decisions of the combination

    @property
    def share(self) -> float:
        return self.count / self.overrides if self.overrides else 0.0

    @property
    def score(self) -> float:
        """count x share: many overrides, mostly for one reason, is what a fix can target."""
        return self.count * self.share

    def sentence(self, quote: Callable[[str], str] = str) -> str:
        """One line for an analyst; `quote` makes the log's strings safe for the output format."""
        where = f"{quote(self.checkpoint)} overrides on class {quote(self.label)}"
        if self.client is not None:
            where += f" for client {quote(self.client)}"
        return (
            f"{where}: {self.share * 100:.0f} % {quote(self.reason_code)} ({self.count} of "
            f"{self.overrides} overrides; {self.overrides} of {self.reviewed} reviewed decisions overridden)"
        )


def _patterns(frame: pd.DataFrame, keys: list[str], min_count: int) -> list[Pattern]:
    reviewed = frame.groupby(keys).size()
    overridden = frame[frame["override"]]
    overrides = overridden.groupby(keys).size()
    with_reason = overridden[overridden["reason"] != NO_VALUE]
    if with_reason.empty:
        return []
    counts = with_reason.groupby([*keys, "reason"]).size().reset_index(name="count")
    # the dominant reason per combination: most frequent, ties to the first name alphabetically
    dominant = counts.sort_values(
        [*keys, "count", "reason"], ascending=[*[True] * len(keys), False, True], kind="mergesort"
    ).drop_duplicates(keys)
    result = []
    for row in dominant[dominant["count"] >= min_count].itertuples(index=False):
        key = tuple(getattr(row, k) for k in keys)
        result.append(
            Pattern(
                checkpoint=row.checkpoint,
                label=row.label,
                client=row.client_id if "client_id" in keys else None,
                reason_code=row.reason,
                count=int(row.count),
                overrides=int(overrides[key]),
                reviewed=int(reviewed[key]),
            )
        )
    return result


def top_patterns(log: pd.DataFrame, n: int = 10, min_count: int = 5) -> list[Pattern]:
    """The `n` strongest patterns, ranked by count x share, ties broken by name (deterministic).

    A class-wide pattern that merely repeats a client-level one (same reason, same counts: every
    override came from that client) is dropped in favour of the more specific one.
    """
    frame = reviewed_only(log)
    if frame.empty:
        return []
    frame["label"] = _filled(frame["label"])
    frame["client_id"] = _filled(frame["client_id"])
    specific = _patterns(frame, ["checkpoint", "label", "client_id"], min_count)
    seen = {(p.checkpoint, p.label, p.reason_code, p.count, p.overrides) for p in specific}
    wide = [
        p for p in _patterns(frame, ["checkpoint", "label"], min_count)
        if (p.checkpoint, p.label, p.reason_code, p.count, p.overrides) not in seen
    ]  # fmt: skip

    def rank(p: Pattern) -> tuple[float, int, int, str, str, str, str]:
        position = CHECKPOINTS.index(p.checkpoint) if p.checkpoint in CHECKPOINTS else len(CHECKPOINTS)
        return (-p.score, -p.count, position, p.checkpoint, p.label, p.client or "", p.reason_code)

    return sorted([*specific, *wide], key=rank)[:n]
