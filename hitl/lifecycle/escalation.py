"""Escalation: which support tier (T1/T2/T3) a ticket needs, from its urgency and impact, the
client's tier and SLA, and history (reopens, the client's recent incidents).

It is a transparent points score rather than a model: every point has a reason an operator can
read in the form. The confidence says how far the score is from a tier boundary; the threshold
review calibrates it against human verdicts like any other checkpoint.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

Tier = Literal["T1", "T2", "T3"]
TIERS: tuple[Tier, ...] = ("T1", "T2", "T3")
_REOPEN = re.compile(
    r"\b(re-?open(ed|ing)?|again|still (not|broken|failing|down)|(second|third|fourth|fifth) time|"
    r"same (issue|problem)|keeps? (happening|coming back))\b",
    re.IGNORECASE,
)
_TICKET_REF = re.compile(r"\b[A-Z]{2,6}-\d{3,}\b")
_PRIORITY_POINTS = {"critical": 3, "high": 2, "medium": 1, "low": 0}
_CLIENT_POINTS = {"platinum": 1, "gold": 1}


class EscalationInput(BaseModel):
    priority: str | None = None
    urgency: int | None = None
    impact: int | None = None
    client_tier: str = "standard"
    sla_hours: float = Field(default=24, gt=0)
    created_at: datetime
    now: datetime
    reopen_signals: int = 0
    recent_client_incidents: int = 0


class Recommendation(BaseModel):
    tier: Tier
    confidence: float
    score: int
    reasons: list[str]
    sla_deadline: datetime


def reopen_signals(subject: str, body: str) -> int:
    """Mentions of a repeat or of an earlier ticket: each one makes a quick T1 fix less likely."""
    text = f"{subject}\n{body}"
    return len(_REOPEN.findall(text)) + len(_TICKET_REF.findall(text))


def recommend_tier(data: EscalationInput) -> Recommendation:
    score, reasons = 0, []
    points = _PRIORITY_POINTS.get((data.priority or "").lower(), 1)
    if points:
        score += points
        reasons.append(f"priority {data.priority} (+{points})")
    if data.impact is not None and data.impact >= 3:
        score += 1
        reasons.append(f"impact {data.impact} (+1)")
    if data.urgency is not None and data.urgency >= 3:
        score += 1
        reasons.append(f"urgency {data.urgency} (+1)")
    if _CLIENT_POINTS.get(data.client_tier, 0):
        score += 1
        reasons.append(f"{data.client_tier} client (+1)")
    deadline = data.created_at + timedelta(hours=data.sla_hours)
    remaining = (deadline - data.now).total_seconds() / 3600
    if remaining < min(2.0, data.sla_hours / 2):
        score += 1
        reasons.append(f"SLA deadline in {max(remaining, 0):.1f} h (+1)")
    if data.reopen_signals:
        score += 1
        reasons.append(f"reopened or refers to earlier tickets ({data.reopen_signals} signs) (+1)")
    if data.recent_client_incidents >= 3:
        score += 1
        reasons.append(
            f"{data.recent_client_incidents} high-priority tickets from this client in 7 days (+1)"
        )
    tier: Tier = "T3" if score >= 5 else "T2" if score >= 3 else "T1"
    distance = min(abs(score - 2.5), abs(score - 4.5))  # to the nearest tier boundary
    confidence = round(min(0.97, 0.7 + 0.2 * distance), 2)  # 0.8 next to a boundary, 0.97 far from it
    return Recommendation(
        tier=tier,
        confidence=confidence,
        score=score,
        reasons=reasons or ["routine request"],
        sla_deadline=deadline,
    )
