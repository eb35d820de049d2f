"""The AUTO error rate at every candidate threshold, with its bounds: the curve a threshold is
chosen from and the risk-coverage plot is drawn from.

Decisions are stratified by review propensity. At a candidate threshold t the automated set is
every decision with confidence >= t; in stratum g it holds N_g decisions of which n_g were
reviewed and x_g found wrong. The error estimate is sum_g (N_g / N) * x_g / n_g (inverse
propensity weighting, normalised within each stratum), and the bounds come from
`bounds.stratified_gamma`. Known errors that nobody reviewed (a ticket reopened after an AUTO
decision) set a floor under the estimate and both bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitl.analysis.bounds import stratified_gamma


@dataclass(frozen=True)
class Evidence:
    """One group's eligible decisions as arrays (any order)."""

    confidence: np.ndarray
    propensity: np.ndarray
    reviewed: np.ndarray
    correct: np.ndarray
    reopened: np.ndarray

    @property
    def size(self) -> int:
        return int(self.confidence.size)


@dataclass(frozen=True)
class ThresholdCurve:
    """Per candidate threshold (ascending `grid`): what automating everything at or above it means."""

    grid: np.ndarray
    n_total: int
    n_auto: np.ndarray
    automation_rate: np.ndarray
    estimate: np.ndarray  # nan where nothing would be automated or a stratum has no reviews
    upper: np.ndarray
    lower: np.ndarray
    n_reviewed: np.ndarray  # reviewed decisions in the automated set
    n_full: np.ndarray  # ... of which from fully reviewed strata (propensity 1)
    n_audited: np.ndarray  # ... of which from audit samples (propensity < 1)
    effective_n: np.ndarray

    def index(self, threshold: float) -> int:
        """Position of `threshold` in the grid (grids always contain the thresholds in force)."""
        return int(np.argmin(np.abs(self.grid - threshold)))


def candidate_grid(step: float, *required: float) -> np.ndarray:
    base = np.round(np.arange(0.0, 1.0 + step / 2, step), 6)
    return np.unique(np.concatenate([base, np.round(np.asarray(required, dtype=float), 6), [1.0]]))


def _count_at_or_above(sorted_values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return sorted_values.size - np.searchsorted(sorted_values, grid, side="left")


def threshold_curve(evidence: Evidence, grid: np.ndarray, confidence: float) -> ThresholdCurve:
    conf = np.asarray(evidence.confidence, dtype=float)
    prop = np.round(np.asarray(evidence.propensity, dtype=float), 6)
    reviewed = np.asarray(evidence.reviewed, dtype=bool)
    wrong = reviewed & ~np.asarray(evidence.correct, dtype=bool)
    known = ~reviewed & np.asarray(evidence.reopened, dtype=bool)
    shape = grid.shape
    n_auto = np.zeros(shape)
    weighted = np.zeros(shape)  # sum_g N_g x_g / n_g (expected error count)
    variance = np.zeros(shape)  # sum_g (N_g / n_g)^2 x_g
    max_weight = np.zeros(shape)
    kish_den = np.zeros(shape)  # sum_g N_g^2 / n_g
    floor = np.zeros(shape)  # errors known for certain
    n_full = np.zeros(shape)
    n_audited = np.zeros(shape)
    blind = np.zeros(shape)  # decisions in strata without a single review: error unknown
    for p in np.unique(prop):
        in_stratum = prop == p
        c = conf[in_stratum]
        big_n = _count_at_or_above(np.sort(c), grid)
        small_n = _count_at_or_above(np.sort(c[reviewed[in_stratum]]), grid)
        x = _count_at_or_above(np.sort(c[wrong[in_stratum]]), grid)
        floor += x + _count_at_or_above(np.sort(c[known[in_stratum]]), grid)
        n_auto += big_n
        has = small_n > 0
        ratio = np.where(has, big_n / np.maximum(small_n, 1), 0.0)
        weighted += ratio * x
        variance += ratio**2 * x
        kish_den += np.where(has, big_n**2 / np.maximum(small_n, 1), 0.0)
        max_weight = np.maximum(max_weight, ratio)
        blind += np.where(has, 0, big_n)
        if p >= 1.0:
            n_full += small_n
        else:
            n_audited += small_n
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.maximum(n_auto, 1)
        lower, upper = stratified_gamma(weighted / denom, variance / denom**2, max_weight / denom, confidence)
        effective = np.where(kish_den > 0, n_auto**2 / np.maximum(kish_den, 1e-300), 0.0)
        # Unreviewed strata may be all wrong (upper) or all right (lower); the estimate assumes
        # they err like the reviewed rest.
        seen = n_auto - blind
        estimate = np.where(seen > 0, weighted / np.maximum(seen, 1), np.nan)
    floor_rate = floor / denom
    upper = np.minimum(upper + blind / denom, 1.0)
    estimate = np.maximum(estimate, floor_rate)
    upper = np.where(n_auto > 0, np.maximum(upper, floor_rate), 0.0)
    lower = np.maximum(lower, floor_rate)
    total = evidence.size
    return ThresholdCurve(
        grid=grid,
        n_total=total,
        n_auto=n_auto.astype(int),
        automation_rate=n_auto / max(total, 1),
        estimate=estimate,
        upper=upper,
        lower=lower,
        n_reviewed=(n_full + n_audited).astype(int),
        n_full=n_full.astype(int),
        n_audited=n_audited.astype(int),
        effective_n=effective,
    )
