"""The threshold review's boundary types: what goes in (parameters), what comes out
(recommendations, policy changes, the review result) and the decision-log columns it reads.

One decision log shape serves both the product's own database and decisions exported from other
systems (`--from-csv`), so every analysis function takes the same DataFrame.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The exchange format, in this order (hitl decisions export writes exactly these; `reopened` is an
# optional extra column: "true" when the ticket came back after the decision, implicit evidence of
# an error for decisions nobody reviewed; `rejected`, another: "true" when a reviewer rejected or
# escalated the AI's proposal, which then counts as wrong whatever final_value holds).
CSV_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "checkpoint",
    "label",
    "confidence",
    "route",
    "propensity",
    "ai_value",
    "final_value",
    "reason_code",
    "reviewer",
    "decided_at",
    "client_id",
    "threshold",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("reopened", "rejected")
# Review actions by which a human did not accept the AI's proposal (the lifecycle stores the AI's
# value as final_value for them, so final_value == ai_value alone would read them as agreement).
REJECTING_ACTIONS: tuple[str, ...] = ("reject", "escalate")
ROUTES: tuple[str, ...] = ("auto", "human", "audit")

# The in-memory decision log (pandas) adds derived columns to CSV_COLUMNS:
#   reviewed: bool   a human gave a final value (final_value not empty)
#   correct:  bool   final_value == ai_value and not rejected (meaningful only where reviewed)
#   reopened: bool   implicit error evidence (False when unknown)
#   rejected: bool   a reviewer rejected or escalated the proposal (False when unknown)
#   eligible: bool   the decision could have been automated at some threshold (autonomy allowed,
#                    value allowed); only eligible decisions enter the threshold analysis
# decided_at is a timezone-aware UTC datetime64; confidence, propensity, threshold are float64.
DERIVED_COLUMNS: tuple[str, ...] = ("reviewed", "correct", "reopened", "rejected", "eligible")


class Action(StrEnum):
    RAISE = "raise"
    LOWER = "lower"
    HOLD = "hold"


class ReviewParams(BaseModel):
    """The analyst's knobs, with the defaults the docs justify (docs/threshold-review.md)."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    target_error: dict[str, float] = Field(
        default_factory=dict, description="Per-checkpoint overrides of the policy's target_error."
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    min_samples: int = Field(default=30, ge=1)
    max_step: float = Field(default=0.05, gt=0, le=1)
    hysteresis: float = Field(
        default=0.01, ge=0, lt=1, description="A lowering smaller than this is held (no churn)."
    )
    grid_step: float = Field(default=0.005, gt=0, le=0.1)
    drift_margin: float = Field(default=0.02, gt=0, lt=1, description="ECE rise that flags drift.")

    @field_validator("target_error")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if not 0 < rate < 1:
                raise ValueError(f"target error for {name} must lie strictly between 0 and 1, got {rate}")
        return value


class Recommendation(BaseModel):
    """One checkpoint-wide, per-class or per-client verdict; the JSON output's list items."""

    checkpoint: str
    label: str | None = None
    client: str | None = None
    action: Action
    current: float
    recommended: float
    target_error: float
    estimated_error: float | None
    error_upper_bound: float | None
    error_lower_bound_current: float | None = None
    automation_rate_current: float
    automation_rate_recommended: float
    n_decisions: int
    n_reviewed: int
    n_audited: int
    effective_n: float
    reason: str
    guard: str | None = Field(default=None, description="The guard that shaped the verdict, if any.")
    stop: bool = Field(
        default=False, description="No threshold can be shown safe: automation stops (nothing AUTO)."
    )
    stopped_current: bool = Field(default=False, description="Automation is stopped now (policy `stopped`).")

    @property
    def changes_policy(self) -> bool:
        if self.action is Action.HOLD:
            return False
        return self.recommended != self.current or self.stop != self.stopped_current


class CalibrationDrift(BaseModel):
    checkpoint: str
    ece_current: float | None
    ece_previous: float | None
    n_current: int
    n_previous: int
    drifted: bool
    note: str


class PolicyChange(BaseModel):
    """One threshold edit a new policy version would make; what the approval form lists."""

    key: str = Field(description="Stable id in the approval form, e.g. 'triage' or 'triage/class:network'.")
    checkpoint: str
    label: str | None = None
    client: str | None = None
    old: float
    new: float
    action: Action
    reason: str
    stop: bool = Field(default=False, description="Stop automation here (policy `stopped`): nothing AUTO.")

    @property
    def new_text(self) -> str:
        from hitl.analysis.apply import fmt

        return f"{fmt(self.new)} (automation stopped)" if self.stop else fmt(self.new)


class ReviewResult(BaseModel):
    recommendations: list[Recommendation]
    drift: list[CalibrationDrift] = Field(default_factory=list)
    report_path: str | None = None
    policy_version: int | None = Field(default=None, description="The version the review started from.")
    n_decisions: int = 0
    window_start: datetime | None = None
    window_end: datetime | None = None
    source: str = "database"
    applied_version: int | None = None
    unreconciled: list[str] = Field(
        default_factory=list,
        description="A decision-log file's groups whose logged threshold is not the one in force "
        "('triage 0.8 (in force: 0.75)'); the review then used the file's thresholds, and cannot apply.",
    )
