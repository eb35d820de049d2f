"""Decision logs with known error rates, for tests that need the threshold review to really
recommend something: thousands of decisions whose error probability depends on the confidence,
reviewed the way the product reviews them (everything below the threshold, an audit sample above)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from hitl.analysis.decision_log import write_decision_csv
from hitl.models import TicketRecord
from hitl.store.db import Database
from hitl.store.orm import Decision, Review

END = datetime(2026, 11, 20, tzinfo=UTC)
# What `standard_log` makes the review propose at the default 95 % confidence (policy v1 thresholds).
STANDARD_CHANGES = {
    "triage": ("lower", 0.80, 0.75),
    "triage/class:mailbox": ("lower", 0.80, 0.75),
    "triage/class:printer": ("lower", 0.80, 0.75),
    "reply": ("raise", 0.90, 0.945),
}


def decisions(checkpoint: str, threshold: float, n: int, error: Callable[[np.ndarray], np.ndarray], *,
              labels: tuple[str, ...] = ("printer",), clients: tuple[str, ...] = ("Acme",),
              audit: float = 0.2, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """n decisions with confidence uniform on [0.5, 1) and P(wrong) = error(confidence)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n).round(4)
    wrong = rng.random(n) < error(confidence)
    above = confidence >= threshold
    audited = above & (rng.random(n) < audit)
    reviewed = ~above | audited
    label = rng.choice(labels, n)
    return pd.DataFrame(
        {
            "decision_id": [f"{checkpoint}-{seed}-{i}" for i in range(n)],
            "checkpoint": checkpoint,
            "label": label,
            "confidence": confidence,
            "route": np.where(above, np.where(audited, "audit", "auto"), "human"),
            "propensity": np.where(above, audit, 1.0),
            "ai_value": label,
            "final_value": np.where(reviewed, np.where(wrong, "other", label), ""),
            "reason_code": np.where(reviewed & wrong, "wrong_category", ""),
            "reviewer": np.where(reviewed, "rev", ""),
            "decided_at": [END - timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 60, n)],
            "client_id": rng.choice(clients, n),
            "threshold": threshold,
        }
    )


def standard_log() -> pd.DataFrame:
    """Triage at 0.80 is 1 % wrong from confidence 0.70 up (lower it); reply at 0.90 is 25 % wrong
    below 0.95 (raise it)."""
    triage = decisions("triage", 0.80, 6000, lambda c: np.where(c >= 0.7, 0.01, 0.3),
                       labels=("printer", "mailbox"), seed=1)  # fmt: skip
    reply = decisions("reply", 0.90, 6000, lambda c: np.where(c >= 0.95, 0.01, 0.25), seed=2)
    return pd.concat([triage, reply], ignore_index=True)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    write_decision_csv(frame, path)
    return path


def store_log(database: Database, frame: pd.DataFrame) -> int:
    """The same decisions as rows of the product's own store (one ticket per client), with a
    review row for every reviewed decision; returns how many decisions were written."""
    from .test_lifecycle_engine import ingest

    clients = sorted(frame["client_id"].unique())
    records = [TicketRecord(external_id=f"EV-{c}", client=c, subject="s", body="b") for c in clients]
    ticket_of = dict(zip(clients, ingest(database, records), strict=True))
    with database.session() as session:
        rows = []
        for r in frame.itertuples(index=False):
            below = r.route == "human"
            rows.append(
                Decision(
                    ticket_id=ticket_of[r.client_id], checkpoint=r.checkpoint, head="category",
                    ai_value=r.ai_value, confidence=float(r.confidence), threshold=float(r.threshold),
                    route=r.route.upper(), propensity=float(r.propensity),
                    final_value=r.final_value or r.ai_value, status="decided",
                    reason=f"confidence {r.confidence:.2f} {'is below' if below else 'reaches'} it",
                    created_at=r.decided_at, decided_at=r.decided_at,
                )
            )  # fmt: skip
        session.add_all(rows)
        session.flush()
        reviewed = [(d, r) for d, r in zip(rows, frame.itertuples(index=False), strict=True) if r.final_value]
        session.add_all(
            Review(
                decision_id=d.id,
                ticket_id=d.ticket_id,
                reviewer="rev",
                action="approve",
                final_value=r.final_value,
                created_at=r.decided_at,
            )
            for d, r in reviewed
        )
    return len(rows)
