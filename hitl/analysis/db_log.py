"""The product's own decisions as a decision log: the same DataFrame `read_decision_csv` returns, so
the threshold review never cares whether its input came from this database or from a CSV.

Two queries, whatever the size: the analysable decisions (with ticket and client), then the
reviews of those decisions; reviews are folded per decision in pandas. Decisions the threshold
cannot explain are left out here rather than in the analysis: no confidence or threshold, no
propensity (a remediation with no runbook to run is recorded with propensity 0), no AI value, or
a human route for a policy reason (autonomy withheld, high-risk runbook), which no threshold would
have changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from hitl.analysis.decision_log import with_derived
from hitl.analysis.models import CSV_COLUMNS, REJECTING_ACTIONS
from hitl.store.orm import Client, Decision, Review, Ticket

_TEXT = ("decision_id", "checkpoint", "label", "route", "ai_value", "final_value",
         "reason_code", "reviewer", "client_id")  # fmt: skip
_THRESHOLD_REASON = "confidence "  # how route_decision words a route chosen by the threshold


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _analysable(query: Select, since: datetime | None, until: datetime | None) -> Select:
    when = func.coalesce(Decision.decided_at, Decision.created_at)
    since, until = _utc(since), _utc(until)  # naive means UTC, as everywhere in the store
    query = query.where(
        Decision.confidence.is_not(None),
        Decision.threshold.is_not(None),
        Decision.propensity > 0,
        Decision.ai_value.is_not(None),
        or_(
            func.upper(Decision.route) != "HUMAN",
            func.substr(Decision.reason, 1, len(_THRESHOLD_REASON)) == _THRESHOLD_REASON,
        ),
    )
    if since is not None:
        query = query.where(when >= since)
    if until is not None:
        query = query.where(when < until)
    return query


def _reviews(session: Session, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    """Per decision: every reviewer joined by "+" in review order, the latest reason code, and
    whether any reviewer rejected or escalated the proposal (the stored final value is then still
    the AI's, so only the review's action says the human did not accept it)."""
    rows = session.execute(
        _analysable(
            select(Review.decision_id, Review.reviewer, Review.reason_code, Review.action).join(
                Decision, Review.decision_id == Decision.id
            ),
            since,
            until,
        ).order_by(Review.decision_id, Review.created_at, Review.id)
    ).all()
    reviews = pd.DataFrame(rows, columns=["id", "reviewer", "reason_code", "action"])
    reviews["rejected"] = reviews["action"].str.lower().isin(REJECTING_ACTIONS)
    grouped = reviews.groupby("id", sort=False)
    return pd.DataFrame(
        {
            "reviewer": grouped["reviewer"].agg("+".join),
            "reason_code": grouped["reason_code"].last(),  # last() skips missing values
            "rejected": grouped["rejected"].any(),
        }
    )


def load_decisions(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The analysable decisions decided (or, if undecided, created) in [since, until)."""
    rows = session.execute(
        _analysable(
            select(
                Decision.id,
                Decision.checkpoint,
                Decision.confidence,
                Decision.route,
                Decision.propensity,
                Decision.ai_value,
                Decision.final_value,
                Decision.decided_at,
                Decision.created_at,
                Client.name,
                Decision.threshold,
                Ticket.reopened_at,
            )
            .join(Ticket, Decision.ticket_id == Ticket.id)
            .join(Client, Ticket.client_id == Client.id),
            since,
            until,
        ).order_by(Decision.id)
    ).all()
    raw = pd.DataFrame(
        rows,
        columns=["id", "checkpoint", "confidence", "route", "propensity", "ai_value", "final_value",
                 "decided_at", "created_at", "client_id", "threshold", "reopened_at"],
    )  # fmt: skip
    reviews = _reviews(session, since, until).reindex(raw["id"])
    decided_at = pd.to_datetime(raw["decided_at"].fillna(raw["created_at"]), utc=True)
    reopened_at = pd.to_datetime(raw["reopened_at"], utc=True)
    frame = pd.DataFrame(
        {
            "decision_id": raw["id"].astype(str),
            "checkpoint": raw["checkpoint"],
            "label": raw["ai_value"],
            "confidence": raw["confidence"],
            "route": raw["route"].str.lower(),
            "propensity": raw["propensity"],
            "ai_value": raw["ai_value"],
            # automatic decisions fill final_value themselves: only a review makes it a human verdict
            "final_value": raw["final_value"].where(reviews["reviewer"].notna().to_numpy()),
            "reason_code": reviews["reason_code"].to_numpy(),
            "reviewer": reviews["reviewer"].to_numpy(),
            "decided_at": decided_at.astype("datetime64[us, UTC]"),
            "client_id": raw["client_id"],
            "threshold": raw["threshold"],
            "reopened": (reopened_at > decided_at).to_numpy(dtype=bool),
            "rejected": reviews["rejected"].eq(True).to_numpy(dtype=bool),
        },
        columns=[*CSV_COLUMNS, "reopened", "rejected"],
    )
    for column in _TEXT:
        frame[column] = frame[column].fillna("").astype(str).str.strip().astype(object)
    for column in ("confidence", "propensity", "threshold"):
        frame[column] = frame[column].astype("float64")
    return with_derived(frame)
