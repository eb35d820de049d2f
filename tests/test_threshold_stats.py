"""The threshold review's statistics: bounds, inverse-propensity weighting, every guard, and the
simulation that checks the guarantee (true AUTO error above target in at most 5 % of periods)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hitl.analysis.bounds import clopper_pearson, stratified_gamma
from hitl.analysis.evidence import Evidence, ThresholdCurve, candidate_grid, threshold_curve
from hitl.analysis.models import Action, ReviewParams
from hitl.analysis.recommend import decide
from hitl.analysis.simulation import TRIAGE_LIKE, run_simulation


def test_clopper_pearson_matches_the_closed_form_for_zero_errors() -> None:
    lower, upper = clopper_pearson(np.array([0, 0]), np.array([59, 100]), 0.95)
    assert upper == pytest.approx([1 - 0.05 ** (1 / 59), 1 - 0.05 ** (1 / 100)], rel=1e-9)
    assert list(lower) == [0.0, 0.0]


def test_single_stratum_gamma_bound_is_the_exact_poisson_bound() -> None:
    n = 400
    for errors in (0, 1, 7, 30):
        lower, upper = stratified_gamma(np.array(errors / n), np.array(errors / n**2), np.array(1 / n), 0.95)
        assert upper == pytest.approx(stats.chi2.ppf(0.95, 2 * (errors + 1)) / 2 / n, rel=1e-9)
        expected_lower = stats.chi2.ppf(0.05, 2 * errors) / 2 / n if errors else 0.0
        assert lower == pytest.approx(expected_lower, rel=1e-9)


def _evidence(
    full_n: int, full_errors: int, audit_pool: int, audited: int, audit_errors: int, reopened: int = 0
) -> Evidence:
    """Decisions at confidence 0.7 (all reviewed) and 0.95 (audit sample of a larger pool)."""
    conf = np.concatenate([np.full(full_n, 0.7), np.full(audit_pool, 0.95)])
    prop = np.concatenate([np.ones(full_n), np.full(audit_pool, audited / audit_pool if audited else 0.05)])
    reviewed = np.concatenate([np.ones(full_n, bool), np.arange(audit_pool) < audited])
    correct = np.ones(conf.size, bool)
    correct[:full_errors] = False
    correct[full_n : full_n + audit_errors] = False
    flags = np.zeros(conf.size, bool)
    flags[full_n + audited : full_n + audited + reopened] = True  # unreviewed decisions reopened later
    return Evidence(conf, prop, reviewed, correct, flags)


def test_audited_reviews_are_weighted_by_inverse_propensity() -> None:
    curve = threshold_curve(_evidence(1000, 100, 10_000, 500, 5), np.array([0.5, 0.9]), 0.95)
    # 100 known errors below + 5 audited errors standing for 5 / 500 of 10,000 decisions.
    assert curve.estimate[0] == pytest.approx((100 + 10_000 * 5 / 500) / 11_000)
    assert curve.estimate[1] == pytest.approx(5 / 500)
    assert (curve.n_full[0], curve.n_audited[0], curve.n_reviewed[0]) == (1000, 500, 1500)
    assert curve.n_auto[0] == 11_000 and curve.automation_rate[1] == pytest.approx(10_000 / 11_000)
    # Kish effective n of weights 1 (x1000) and 20 (x500): 11000^2 / (1000 + 500 * 20^2)
    assert curve.effective_n[0] == pytest.approx(11_000**2 / (1000 + 500 * 400))
    assert curve.lower[0] < curve.estimate[0] < curve.upper[0]


def test_the_stratified_bound_is_tighter_than_one_kish_bound() -> None:
    curve = threshold_curve(_evidence(4000, 200, 10_000, 500, 2), np.array([0.5]), 0.95)
    weights = np.concatenate([np.ones(4000), np.full(500, 20.0)])
    wrong = np.concatenate([np.arange(4000) < 200, np.arange(500) < 2])
    estimate = (weights * wrong).sum() / weights.sum()
    ess = weights.sum() ** 2 / (weights**2).sum()
    _, kish_upper = clopper_pearson(np.array([estimate * ess]), np.array([ess]), 0.95)
    assert curve.upper[0] < kish_upper[0]


def test_the_stratified_bound_covers_the_true_rate() -> None:
    rng = np.random.default_rng(3)
    grid, misses, trials = np.array([0.5]), 0, 400
    true_rate = (2000 * 0.08 + 8000 * 0.02) / 10_000
    for _ in range(trials):
        audited = rng.random(8000) < 0.05
        conf = np.concatenate([np.full(2000, 0.7), np.full(8000, 0.95)])
        wrong = np.concatenate([rng.random(2000) < 0.08, rng.random(8000) < 0.02])
        evidence = Evidence(
            conf,
            np.concatenate([np.ones(2000), np.full(8000, 0.05)]),
            np.concatenate([np.ones(2000, bool), audited]),
            ~wrong,
            np.zeros(10_000, bool),
        )
        curve = threshold_curve(evidence, grid, 0.95)
        misses += curve.upper[0] < true_rate
    assert misses / trials <= 0.05


def test_a_stratum_nobody_reviewed_counts_as_possibly_all_wrong() -> None:
    curve = threshold_curve(_evidence(1000, 10, 50, 0, 0), np.array([0.5, 0.9]), 0.95)
    assert curve.upper[1] == 1.0 and np.isnan(curve.estimate[1])
    assert curve.upper[0] >= 50 / 1050  # the 50 unreviewed decisions may all be wrong
    assert curve.estimate[0] == pytest.approx(10 / 1000)


def test_reopened_tickets_are_errors_nobody_needed_to_review() -> None:
    plain = threshold_curve(_evidence(100, 0, 1000, 50, 0), np.array([0.9]), 0.95)
    reopened = threshold_curve(_evidence(100, 0, 1000, 50, 0, reopened=80), np.array([0.9]), 0.95)
    assert plain.estimate[0] == 0.0
    assert reopened.estimate[0] == pytest.approx(80 / 1000)
    assert reopened.lower[0] == pytest.approx(80 / 1000) and reopened.upper[0] >= 80 / 1000


# --- guards, on hand-made curves -------------------------------------------------------------


def _curve(upper: list[float], *, lower: list[float] | None = None, reviewed: list[int] | None = None,
           audited: list[int] | None = None) -> ThresholdCurve:  # fmt: skip
    grid = np.round(np.linspace(0.5, 1.0, len(upper)), 6)
    size = len(upper)
    n_reviewed = np.array(reviewed or [1000 - 50 * i for i in range(size)])
    n_audited = np.array(audited or [40] * size)
    return ThresholdCurve(
        grid=grid,
        n_total=2000,
        n_auto=np.linspace(2000, 0, size).astype(int),
        automation_rate=np.linspace(1.0, 0.0, size),
        estimate=np.array(upper) / 2,
        upper=np.array(upper),
        lower=np.array(lower or [0.0] * size),
        n_reviewed=n_reviewed,
        n_full=n_reviewed - n_audited,
        n_audited=n_audited,
        effective_n=np.full(size, 100.0),
    )


UPPER = [0.30, 0.20, 0.12, 0.08, 0.06, 0.045, 0.04, 0.03, 0.02, 0.01, 0.0]  # grid 0.50, 0.55, ... 1.0


def test_lowers_to_the_lowest_threshold_of_the_unbroken_passing_run() -> None:
    verdict = decide(_curve(UPPER), 0.85, 0.05, ReviewParams(max_step=1))
    assert (verdict.action, verdict.index, verdict.guard) == (Action.LOWER, 5, None)  # 0.75


def test_a_passing_threshold_behind_a_failing_one_is_not_taken() -> None:
    upper = [0.30, 0.04, 0.12, 0.08, 0.06, 0.045, 0.04, 0.03, 0.02, 0.01, 0.0]  # 0.55 passes, 0.60 fails
    verdict = decide(_curve(upper), 0.85, 0.05, ReviewParams(max_step=1))
    assert verdict.index == 5


def test_max_step_limits_a_lowering() -> None:
    verdict = decide(_curve(UPPER), 0.85, 0.05, ReviewParams(max_step=0.05))
    assert (verdict.action, verdict.index, verdict.guard) == (Action.LOWER, 6, "max_step")  # 0.80
    assert "limited to a 0.05 step" in verdict.reason


def test_hysteresis_holds_a_small_lowering() -> None:
    verdict = decide(_curve(UPPER), 0.80, 0.05, ReviewParams(max_step=1, hysteresis=0.06))
    assert (verdict.action, verdict.guard) == (Action.HOLD, "hysteresis")


def test_min_samples_holds_when_the_band_below_is_thin() -> None:
    reviewed = [60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 0]  # 2 more reviews per 0.05 step
    verdict = decide(
        _curve(UPPER, reviewed=reviewed, audited=[40] * 11), 0.85, 0.05, ReviewParams(max_step=1)
    )
    assert (verdict.action, verdict.guard) == (Action.HOLD, "min_samples")


def test_min_samples_holds_when_nothing_was_reviewed_above_or_below() -> None:
    reviewed = [20] * 10 + [0]
    verdict = decide(_curve(UPPER, reviewed=reviewed, audited=[20] * 11), 0.85, 0.05, ReviewParams())
    assert (verdict.action, verdict.guard) == (Action.HOLD, "min_samples")


def test_raises_at_once_without_a_step_limit_when_the_lower_bound_exceeds_the_target() -> None:
    upper = [0.5] * 9 + [0.04, 0.0]  # only 0.95 and above pass
    lower = [0.2] * 11
    verdict = decide(_curve(upper, lower=lower), 0.60, 0.05, ReviewParams(max_step=0.05))
    assert (verdict.action, verdict.index, verdict.guard) == (Action.RAISE, 9, "raise_now")


def test_raises_when_the_current_threshold_is_not_shown_safe() -> None:
    upper = [0.5, 0.4, 0.3, 0.2, 0.1, 0.07, 0.06, 0.045, 0.02, 0.01, 0.0]
    verdict = decide(_curve(upper), 0.75, 0.05, ReviewParams())
    assert (verdict.action, verdict.index, verdict.guard) == (Action.RAISE, 7, "unproven")


def test_holds_when_already_at_the_lowest_safe_threshold() -> None:
    verdict = decide(_curve(UPPER), 0.75, 0.05, ReviewParams())
    assert verdict.action is Action.HOLD and verdict.guard is None
    assert "no lower threshold" in verdict.reason


def test_the_grid_always_holds_the_threshold_in_force() -> None:
    grid = candidate_grid(0.01, 0.8333)
    assert 0.8333 in grid and grid[0] == 0.0 and grid[-1] == 1.0


# --- the guarantee, simulated -----------------------------------------------------------------


def test_simulated_guarantee_and_automation_against_an_oracle() -> None:
    """500 monthly reviews adopted at once (max step 1), 20,000 decisions a month, 5 % audits,
    evidence pooled over the last six months; docs/threshold-review.md reports the figures."""
    result = run_simulation(TRIAGE_LIKE, 500, mode="sequential", pool=6, params=ReviewParams(max_step=1))
    assert result.failure_rate <= 0.05
    assert result.automation_ratio >= 0.70
    assert result.actions["lower"] > 0 and result.actions["raise"] > 0
