"""Confidence bounds on the error rate of automated decisions, from stratified review evidence.

The evidence comes in strata of equal review probability (propensity): decisions below the
threshold were all reviewed (propensity 1), decisions above it only through the audit sample
(propensity = audit rate, e.g. 0.05). The AUTO error rate at a threshold is a weighted sum of the
strata's error rates, with weights known exactly (every decision is counted, reviewed or not).

Bounding each stratum on its own and combining them is what makes the evidence count: one
pooled effective-sample-size bound (Kish) treats the plentiful, fully reviewed errors as if they
were as noisy as the few audited ones. The combined bound is Fay & Feuer's (1997) gamma bound for
a weighted sum of Poisson counts, the standard interval for directly standardised rates: exact
(Garwood) for a single stratum, conservative for binomial counts (binomial variance is below
Poisson's), and defined when a stratum saw no error at all. docs/threshold-review.md has the maths.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def clopper_pearson(errors: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided exact binomial bounds (lower, upper) at `confidence`; (0, 1) where n == 0."""
    x = np.asarray(errors, dtype=float)
    n = np.asarray(n, dtype=float)
    alpha = 1.0 - confidence
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = np.where(x >= n, 1.0, stats.beta.ppf(confidence, x + 1, np.maximum(n - x, 1e-12)))
        lower = np.where(x <= 0, 0.0, stats.beta.ppf(alpha, np.maximum(x, 1e-12), n - x + 1))
    upper = np.where(n <= 0, 1.0, upper)
    lower = np.where(n <= 0, 0.0, lower)
    return lower, upper


def stratified_gamma(
    weighted_errors: np.ndarray,
    variance: np.ndarray,
    max_weight: np.ndarray,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Fay-Feuer bounds (lower, upper) for Y = sum_g w_g X_g with X_g ~ Poisson.

    weighted_errors: Y observed; variance: sum_g w_g^2 X_g; max_weight: max_g w_g over strata
    that hold decisions (the weight a single unseen error would have had; it makes the bound
    honest when no error was seen). Arrays broadcast; one entry per candidate threshold.
    """
    y = np.asarray(weighted_errors, dtype=float)
    v = np.asarray(variance, dtype=float)
    wm = np.asarray(max_weight, dtype=float)
    alpha = 1.0 - confidence
    shape_up = (y + wm) ** 2 / np.maximum(v + wm**2, 1e-300)
    scale_up = (v + wm**2) / np.maximum(y + wm, 1e-300)
    upper = stats.gamma.ppf(confidence, shape_up, scale=scale_up)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(
            y > 0,
            stats.gamma.ppf(
                alpha,
                np.where(y > 0, y**2 / np.maximum(v, 1e-300), 1.0),
                scale=np.where(y > 0, v / np.maximum(y, 1e-300), 1.0),
            ),
            0.0,
        )
    upper = np.where(wm > 0, np.minimum(upper, 1.0), 0.0)
    return np.clip(lower, 0.0, 1.0), upper
