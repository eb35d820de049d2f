"""Metrics for a classifier whose confidence decides between automation and a human.

Accuracy alone does not say whether a confidence threshold is safe: the hand-off rule needs the
confidence to be *honest* (calibration: ECE, Brier) and *well ranked* (coverage at a target accuracy).
Everything here is plain numpy so the product can evaluate a model without scikit-learn installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict

DEFAULT_LEVELS: tuple[float, ...] = (0.90, 0.95, 0.99)


def _round4(value: float) -> float:
    return round(float(value), 4)


def _round4_dict(values: dict[str, float]) -> dict[str, float]:
    return {key: _round4(value) for key, value in values.items()}


Rounded = Annotated[float, AfterValidator(_round4)]


@dataclass(frozen=True)
class ReliabilityBin:
    """One bar of a reliability diagram; accuracy and mean_confidence are None when the bin is empty."""

    lower: float
    upper: float
    count: int
    accuracy: float | None
    mean_confidence: float | None


class EvaluationMetrics(BaseModel):
    """The figures that decide whether a model may route tickets, rounded to 4 decimals for reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int
    accuracy: Rounded
    macro_f1: Rounded
    ece: Rounded
    brier: Rounded
    coverage_at_accuracy: Annotated[dict[str, float], AfterValidator(_round4_dict)]


def _check_confidence_correct(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=float).reshape(-1)
    corr = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != corr.shape:
        raise ValueError(f"confidence and correct differ in length ({conf.size} vs {corr.size})")
    if conf.size == 0:
        raise ValueError("no predictions to evaluate")
    if np.isnan(conf).any() or (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidence must lie in [0, 1]")
    return conf, corr


def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    # Bin b covers [b/n, (b+1)/n); the last bin also takes confidence 1.0.
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    return np.minimum((conf * n_bins).astype(int), n_bins - 1)


def reliability_bins(confidence: Any, correct: Any, n_bins: int = 15) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]: where confidence and observed accuracy part ways, and by how much."""
    conf, corr = _check_confidence_correct(confidence, correct)
    idx = _bin_index(conf, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    hits = np.bincount(idx, weights=corr.astype(float), minlength=n_bins)
    conf_sums = np.bincount(idx, weights=conf, minlength=n_bins)
    bins = []
    for b in range(n_bins):
        n_b = int(counts[b])
        bins.append(
            ReliabilityBin(
                lower=b / n_bins,
                upper=(b + 1) / n_bins,
                count=n_b,
                accuracy=float(hits[b] / n_b) if n_b else None,
                mean_confidence=float(conf_sums[b] / n_b) if n_b else None,
            )
        )
    return bins


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    """Sum over bins of (n_b / N) * |accuracy_b - confidence_b|: how far stated confidence is from truth.

    A threshold on an uncalibrated confidence does not deliver the accuracy it promises, so the hand-off
    rule is only as good as this number is small.
    """
    conf, _ = _check_confidence_correct(confidence, correct)
    total = conf.size
    return float(
        sum(
            (b.count / total) * abs(b.accuracy - b.mean_confidence)
            for b in reliability_bins(confidence, correct, n_bins)
            if b.count and b.accuracy is not None and b.mean_confidence is not None
        )
    )


def brier_score(proba: Any, classes: Sequence[Any], y_true: Any) -> float:
    """Mean over tickets of sum_k (p_k - 1[y = k])^2 over the model's classes.

    Unlike ECE it scores the whole distribution, not only the top class, and it has no binning
    artefacts. A true label the model does not know has an all-zero one-hot, so it costs sum_k p_k^2.
    """
    p = np.asarray(proba, dtype=float)
    labels = np.asarray(list(classes))
    y = np.asarray(y_true).reshape(-1)
    if p.ndim != 2 or p.shape[1] != labels.size:
        raise ValueError(f"proba must have shape (n, {labels.size}), got {p.shape}")
    if p.shape[0] != y.size:
        raise ValueError(f"proba has {p.shape[0]} rows but y_true has {y.size} labels")
    if y.size == 0:
        raise ValueError("no predictions to evaluate")
    onehot = (y[:, None] == labels[None, :]).astype(float)
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def coverage_at_accuracy(
    confidence: Any, correct: Any, levels: Sequence[float] = DEFAULT_LEVELS
) -> dict[str, float]:
    """For each accuracy level a, the largest share of tickets that can be automated at accuracy >= a.

    Tickets are taken in decreasing confidence (stable sort); a cut may only fall between different
    confidence values, because a threshold cannot split tickets of equal confidence. 0.0 when no
    prefix qualifies (e.g. the most confident ticket is wrong). Keys are formatted "0.95".
    """
    conf, corr = _check_confidence_correct(confidence, correct)
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    hits = np.cumsum(corr[order])
    k = np.arange(1, conf.size + 1)
    prefix_accuracy = hits / k
    # A prefix of length k is a valid cut when the (k+1)-th ticket is strictly less confident.
    valid_cut = np.append(sorted_conf[1:] < sorted_conf[:-1], True)
    result: dict[str, float] = {}
    for level in levels:
        ok = valid_cut & (prefix_accuracy >= level - 1e-12)
        result[f"{level:.2f}"] = float(k[ok].max() / conf.size) if ok.any() else 0.0
    return result


def macro_f1(y_true: Any, y_pred: Any) -> float:
    """Unweighted mean F1 over the labels in y_true or y_pred (as scikit-learn's average="macro").

    Rare classes count as much as frequent ones, so it exposes a model that ignores the small queues.
    A label with no true and no predicted members cannot occur; one with zero precision+recall scores 0.
    """
    yt = np.asarray(y_true).reshape(-1)
    yp = np.asarray(y_pred).reshape(-1)
    if yt.shape != yp.shape:
        raise ValueError("y_true and y_pred differ in length")
    if yt.size == 0:
        raise ValueError("no predictions to evaluate")
    scores = []
    for label in np.union1d(yt, yp):
        tp = float(np.sum((yt == label) & (yp == label)))
        denom = float(np.sum(yt == label) + np.sum(yp == label))
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def classification_report(
    y_true: Any,
    y_pred: Any,
    proba: Any,
    classes: Sequence[Any],
    levels: Sequence[float] = DEFAULT_LEVELS,
    ranking: Any = None,
) -> EvaluationMetrics:
    """All the figures for one decision head; confidence is the largest predicted probability.
    Coverage depends only on the order of the tickets: `ranking` gives another confidence to
    order them by (default: the same largest probability)."""
    yt = np.asarray(y_true).reshape(-1)
    yp = np.asarray(y_pred).reshape(-1)
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[0] != yt.size or yp.size != yt.size:
        raise ValueError("y_true, y_pred and proba must describe the same tickets")
    confidence = np.clip(p.max(axis=1), 0.0, 1.0)
    correct = yt == yp
    return EvaluationMetrics(
        n=int(yt.size),
        accuracy=float(np.mean(correct)),
        macro_f1=macro_f1(yt, yp),
        ece=expected_calibration_error(confidence, correct),
        brier=brier_score(p, classes, yt),
        coverage_at_accuracy=coverage_at_accuracy(
            confidence if ranking is None else np.asarray(ranking, dtype=float), correct, levels
        ),
    )
