"""A simulation harness for the threshold review: decisions drawn from a known true error curve,
reviewed the way the product reviews them (everything below the threshold, an audit sample
above it), recommended on, and the recommendation judged against the truth.

It answers the two questions the guarantee is about: how often adopting a recommendation leaves
the true AUTO error above target (must be at most 1 - confidence), and how much automation that
safety costs against an oracle that knows the true curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hitl.analysis.bounds import clopper_pearson
from hitl.analysis.evidence import Evidence, ThresholdCurve, candidate_grid, threshold_curve
from hitl.analysis.models import Action, ReviewParams
from hitl.analysis.recommend import decide


@dataclass(frozen=True)
class Scenario:
    """Classes with imbalanced frequencies; per class, confidence = 1 - Beta(a, b) and the true
    probability of a wrong decision at confidence c is min(1, miscalibration * (1 - c))."""

    name: str
    frequencies: tuple[float, ...]
    beta_a: tuple[float, ...]
    beta_b: tuple[float, ...]
    miscalibration: tuple[float, ...]
    target: float = 0.05
    audit_rate: float = 0.05
    decisions_per_period: int = 20_000
    start_threshold: float = 0.95

    def draw(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, probability of error) for `size` decisions."""
        freq = np.asarray(self.frequencies) / np.sum(self.frequencies)
        cls = rng.choice(freq.size, size=size, p=freq)
        u = rng.beta(np.asarray(self.beta_b)[cls], np.asarray(self.beta_a)[cls])
        confidence = 1.0 - u
        p_error = np.minimum(1.0, np.asarray(self.miscalibration)[cls] * u)
        return confidence, p_error


# Imbalanced classes (40 % .. 1 %), the frequent ones roughly calibrated, the rare ones
# over-confident: the shape the Endava triage model's out-of-fold predictions have.
TRIAGE_LIKE = Scenario(
    name="triage-like",
    frequencies=(0.40, 0.22, 0.13, 0.09, 0.07, 0.05, 0.03, 0.01),
    beta_a=(9, 7, 6, 5, 5, 4, 3, 3),
    beta_b=(1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.5),
    miscalibration=(0.8, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6),
)


@dataclass
class TrueCurve:
    grid: np.ndarray
    error: np.ndarray
    automation: np.ndarray

    def oracle_index(self, target: float) -> int:
        """Lowest threshold whose true AUTO error, and every higher one's, is within target."""
        index = self.grid.size - 1
        while index > 0 and self.error[index - 1] <= target:
            index -= 1
        return index


def true_curve(
    scenario: Scenario, grid: np.ndarray, size: int = 2_000_000, seed: int = 20261128
) -> TrueCurve:
    """The truth, by a large fixed-seed Monte Carlo average of the error probability (not draws)."""
    confidence, p_error = scenario.draw(np.random.default_rng(seed), size)
    order = np.argsort(confidence)
    confidence, p_error = confidence[order], p_error[order]
    tail = np.concatenate([np.cumsum(p_error[::-1])[::-1], [0.0]])
    start = np.searchsorted(confidence, grid, side="left")
    count = size - start
    error = np.where(count > 0, tail[start] / np.maximum(count, 1), 0.0)
    return TrueCurve(grid=grid, error=error, automation=count / size)


def simulate_period(scenario: Scenario, threshold: float, rng: np.random.Generator) -> Evidence:
    confidence, p_error = scenario.draw(rng, scenario.decisions_per_period)
    wrong = rng.random(confidence.size) < p_error
    above = confidence >= threshold
    reviewed = np.where(above, rng.random(confidence.size) < scenario.audit_rate, True)
    return Evidence(
        confidence=confidence,
        propensity=np.where(above, scenario.audit_rate, 1.0),
        reviewed=reviewed,
        correct=~wrong,
        reopened=np.zeros(confidence.size, dtype=bool),
    )


def _pooled(periods: list[Evidence]) -> Evidence:
    fields = Evidence.__dataclass_fields__
    return Evidence(*(np.concatenate([getattr(p, name) for p in periods]) for name in fields))


def kish_curve(evidence: Evidence, grid: np.ndarray, confidence: float) -> ThresholdCurve:
    """The baseline's curve: one Clopper-Pearson bound per threshold at the Kish effective
    sample size of the inverse-propensity weights (the plain method the stratified bound beats)."""
    order = np.argsort(evidence.confidence)
    conf = evidence.confidence[order]
    reviewed = evidence.reviewed[order]
    weight = np.where(reviewed, 1.0 / evidence.propensity[order], 0.0)
    wrong = reviewed & ~evidence.correct[order]
    full = reviewed & (evidence.propensity[order] >= 1)

    def tail(values: np.ndarray) -> np.ndarray:
        sums = np.concatenate([np.cumsum(values[::-1])[::-1], [0.0]])
        return sums[np.searchsorted(conf, grid, side="left")]

    sum_w, sum_w2, sum_wx = tail(weight), tail(weight**2), tail(weight * wrong)
    n_auto = (conf.size - np.searchsorted(conf, grid, side="left")).astype(int)
    n_reviewed, n_full = tail(reviewed.astype(float)).astype(int), tail(full.astype(float)).astype(int)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(sum_w > 0, sum_wx / sum_w, np.nan)
        ess = np.where(sum_w2 > 0, sum_w**2 / sum_w2, 0.0)
    lower, upper = clopper_pearson(np.nan_to_num(estimate) * ess, ess, confidence)
    upper = np.where(n_auto > 0, upper, 0.0)
    return ThresholdCurve(
        grid=grid, n_total=evidence.size, n_auto=n_auto, automation_rate=n_auto / evidence.size,
        estimate=estimate, upper=upper, lower=lower, n_reviewed=n_reviewed, n_full=n_full,
        n_audited=n_reviewed - n_full, effective_n=ess,
    )  # fmt: skip


@dataclass
class SimulationResult:
    scenario: str
    method: str
    mode: str
    periods: int
    oracle_threshold: float
    oracle_automation: float
    failure_rate: float
    automation_ratio: float
    mean_threshold: float
    actions: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.scenario:12} {self.method:10} {self.mode:11} periods={self.periods} "
            f"failures={self.failure_rate:.3f} automation/oracle={self.automation_ratio:.3f} "
            f"mean t={self.mean_threshold:.3f} (oracle t={self.oracle_threshold:.3f}, "
            f"auto {self.oracle_automation:.3f}) actions={self.actions}"
        )


def run_simulation(
    scenario: Scenario = TRIAGE_LIKE,
    periods: int = 500,
    *,
    method: str = "stratified",
    mode: str = "sequential",
    pool: int = 3,
    params: ReviewParams | None = None,
    seed: int = 7,
) -> SimulationResult:
    """`mode`: "independent" — every period starts from scenario.start_threshold; "sequential" —
    each period runs under the threshold the previous review recommended (adopted at once), and
    the review pools the last `pool` periods' evidence (same model, any policy version)."""
    params = params or ReviewParams(max_step=1.0)
    grid = candidate_grid(params.grid_step, scenario.start_threshold)
    truth = true_curve(scenario, grid)
    oracle = truth.oracle_index(scenario.target)
    rng = np.random.default_rng(seed)
    threshold = scenario.start_threshold
    history: list[Evidence] = []
    failures, automation, thresholds = 0, [], []
    actions = {a.value: 0 for a in Action}
    for _ in range(periods):
        current = scenario.start_threshold if mode == "independent" else threshold
        kept = history[max(0, len(history) - pool + 1) :] if mode == "sequential" else []
        history = [*kept, simulate_period(scenario, current, rng)]
        evidence = _pooled(history)
        curve = (kish_curve if method == "kish" else threshold_curve)(evidence, grid, params.confidence)
        verdict = decide(curve, current, scenario.target, params)
        actions[verdict.action.value] += 1
        threshold = float(grid[verdict.index])
        index = int(np.argmin(np.abs(grid - threshold)))
        failures += bool(truth.error[index] > scenario.target)
        automation.append(truth.automation[index])
        thresholds.append(threshold)
    return SimulationResult(
        scenario=scenario.name,
        method=method,
        mode=mode,
        periods=periods,
        oracle_threshold=float(grid[oracle]),
        oracle_automation=float(truth.automation[oracle]),
        failure_rate=failures / periods,
        automation_ratio=float(np.mean(automation) / truth.automation[oracle]),
        mean_threshold=float(np.mean(thresholds)),
        actions=actions,
    )
