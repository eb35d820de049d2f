"""Calibration of reviewed decisions, weighted back to all decisions, and its drift.

Reviews over-represent low-confidence decisions (all of them are reviewed, only an audit sample
above the threshold is), so a plain ECE over reviews would describe the wrong population. Each
review is weighted by 1 / propensity, the same weighting the threshold bounds use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from hitl.analysis.decision_log import sampled_reviews
from hitl.analysis.models import CalibrationDrift, ReviewParams

N_BINS = 15
DRIFT_PERIOD = timedelta(days=30)


@dataclass(frozen=True)
class WeightedBins:
    lower: np.ndarray
    upper: np.ndarray
    weight: np.ndarray  # sum of weights per bin (estimated decisions)
    count: np.ndarray  # reviews per bin
    accuracy: np.ndarray  # nan where empty
    confidence: np.ndarray  # nan where empty


def weighted_bins(
    confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray, n_bins: int = N_BINS
) -> WeightedBins:
    conf = np.asarray(confidence, dtype=float)
    index = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    w = np.asarray(weight, dtype=float)
    total = np.bincount(index, weights=w, minlength=n_bins)
    hits = np.bincount(index, weights=w * np.asarray(correct, dtype=float), minlength=n_bins)
    conf_sum = np.bincount(index, weights=w * conf, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(total > 0, hits / total, np.nan)
        mean_conf = np.where(total > 0, conf_sum / total, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return WeightedBins(
        edges[:-1], edges[1:], total, np.bincount(index, minlength=n_bins), accuracy, mean_conf
    )


def weighted_ece(bins: WeightedBins) -> float | None:
    total = bins.weight.sum()
    if total <= 0:
        return None
    gaps = np.abs(np.nan_to_num(bins.accuracy) - np.nan_to_num(bins.confidence))
    return float((bins.weight * gaps).sum() / total)


def reviewed_bins(log: pd.DataFrame) -> WeightedBins:
    reviewed = log[sampled_reviews(log)]  # weighted by 1/propensity: only reviews the routing drew
    return weighted_bins(
        reviewed["confidence"].to_numpy(),
        reviewed["correct"].to_numpy(),
        1.0 / reviewed["propensity"].to_numpy(),
    )


def calibration_drift(log: pd.DataFrame, until: datetime, params: ReviewParams) -> list[CalibrationDrift]:
    """ECE of the last 30 days against the 30 days before, per checkpoint; drift is flagged when
    it rose by more than params.drift_margin with enough reviews on both sides to mean it."""
    result = []
    until_ns = pd.Timestamp(until).value
    period_ns = int(DRIFT_PERIOD.total_seconds() * 1e9)
    stamp = log["decided_at"].dt.as_unit("ns").array.asi8 if len(log) else np.zeros(0, dtype=np.int64)
    reviewed = sampled_reviews(log)
    confidence = log["confidence"].to_numpy(dtype=float)
    correct = log["correct"].to_numpy(dtype=bool)
    weight = 1.0 / log["propensity"].to_numpy(dtype=float)
    recent_all = reviewed & (stamp >= until_ns - period_ns) & (stamp < until_ns)
    previous_all = reviewed & (stamp >= until_ns - 2 * period_ns) & (stamp < until_ns - period_ns)
    codes, names = pd.factorize(log["checkpoint"], sort=True)
    for code, checkpoint in enumerate(names):
        in_checkpoint = codes == code
        recent, previous = recent_all & in_checkpoint, previous_all & in_checkpoint
        n_recent, n_previous = int(recent.sum()), int(previous.sum())
        ece_recent = (
            weighted_ece(weighted_bins(confidence[recent], correct[recent], weight[recent]))
            if n_recent
            else None
        )
        ece_previous = (
            weighted_ece(weighted_bins(confidence[previous], correct[previous], weight[previous]))
            if n_previous
            else None
        )
        enough = n_recent >= params.min_samples and n_previous >= params.min_samples
        drifted = bool(
            enough and ece_recent is not None and ece_previous is not None
            and ece_recent - ece_previous > params.drift_margin
        )  # fmt: skip
        if not enough:
            note = (
                f"not compared: {n_recent} and {n_previous} reviews in the two 30-day periods "
                f"(minimum {params.min_samples})"
            )
        elif drifted:
            note = (
                f"calibration drifted: ECE {ece_previous:.3f} -> {ece_recent:.3f}; confidence means less now"
            )
        else:
            note = f"stable: ECE {ece_previous:.3f} -> {ece_recent:.3f}"
        result.append(
            CalibrationDrift(
                checkpoint=str(checkpoint),
                ece_current=ece_recent,
                ece_previous=ece_previous,
                n_current=n_recent,
                n_previous=n_previous,
                drifted=drifted,
                note=note,
            )
        )
    return result
