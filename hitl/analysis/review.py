"""The threshold review, end to end: which decisions count, which groups get a verdict, and what
threshold each group's evidence supports.

Groups: each checkpoint as a whole, then each predicted class and each client with enough
reviewed decisions. A checkpoint-wide verdict only speaks for decisions governed by the
checkpoint-wide threshold, so classes and clients with their own threshold override are left out
of it (they get their own verdict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from hitl.analysis.calibration import calibration_drift
from hitl.analysis.decision_log import sampled_reviews
from hitl.analysis.evidence import Evidence, ThresholdCurve, candidate_grid, threshold_curve
from hitl.analysis.models import Action, CalibrationDrift, Recommendation, ReviewParams, ReviewResult
from hitl.analysis.recommend import decide
from hitl.errors import ConfigError
from policies.checkpoint_policy import CHECKPOINTS, PolicyDocument


@dataclass(frozen=True)
class Group:
    key: str
    checkpoint: str
    label: str | None
    client: str | None
    current: float
    target: float
    mask: np.ndarray = field(repr=False)
    stopped: bool = False  # the policy stopped automation here (its threshold in force is 1)


@dataclass
class Analysis:
    """Everything the report draws: the verdicts and the curves behind them."""

    recommendations: list[Recommendation]
    curves: dict[str, ThresholdCurve]
    groups: list[Group]
    drift: list[CalibrationDrift]
    log: pd.DataFrame
    since: datetime
    until: datetime
    # a decision-log file whose thresholds are not the policy in force: "key logged (in force: x)"
    unreconciled: list[str] = field(default_factory=list)


def group_key(checkpoint: str, label: str | None = None, client: str | None = None) -> str:
    if label is not None:
        return f"{checkpoint}/class:{label}"
    if client is not None:
        return f"{checkpoint}/client:{client}"
    return checkpoint


@dataclass(frozen=True)
class LogArrays:
    """The log's columns the analysis needs, as numpy arrays and integer codes: a million-row
    review compares integers, not strings, and never copies the DataFrame per group."""

    checkpoint: np.ndarray
    checkpoints: list[str]
    label: np.ndarray
    labels: list[str]
    client: np.ndarray
    clients: list[str]
    confidence: np.ndarray
    propensity: np.ndarray
    reviewed: np.ndarray
    correct: np.ndarray
    reopened: np.ndarray
    eligible: np.ndarray
    threshold: np.ndarray
    stamp: np.ndarray  # int64 nanoseconds since the epoch, UTC

    @classmethod
    def of(cls, log: pd.DataFrame) -> LogArrays:
        """`reviewed` holds the sampled reviews only (`sampled_reviews`); an incidental review of an
        AUTO decision that found it wrong joins `reopened`, the errors known outside the sample."""
        sampled = sampled_reviews(log)
        incidental_error = (
            log["reviewed"].to_numpy(dtype=bool) & ~sampled & ~log["correct"].to_numpy(dtype=bool)
        )
        codes = {}
        for column in ("checkpoint", "label", "client_id"):
            code, uniques = pd.factorize(log[column], sort=True)
            codes[column] = (code, [str(u) for u in uniques])
        return cls(
            checkpoint=codes["checkpoint"][0], checkpoints=codes["checkpoint"][1],
            label=codes["label"][0], labels=codes["label"][1],
            client=codes["client_id"][0], clients=codes["client_id"][1],
            confidence=log["confidence"].to_numpy(dtype=float),
            propensity=log["propensity"].to_numpy(dtype=float),
            reviewed=sampled,
            correct=log["correct"].to_numpy(dtype=bool),
            reopened=log["reopened"].to_numpy(dtype=bool) | incidental_error,
            eligible=log["eligible"].to_numpy(dtype=bool),
            threshold=log["threshold"].to_numpy(dtype=float),
            stamp=log["decided_at"].dt.as_unit("ns").array.asi8 if len(log) else np.zeros(0, dtype=np.int64),
        )  # fmt: skip

    def codes_of(self, names: list[str], values: set[str]) -> np.ndarray:
        return np.array([i for i, name in enumerate(names) if name in values], dtype=np.int64)


def evidence_of(arrays: LogArrays, mask: np.ndarray) -> Evidence:
    rows = np.flatnonzero(mask)  # one pass over the mask, then five small gathers
    return Evidence(
        confidence=arrays.confidence.take(rows),
        propensity=arrays.propensity.take(rows),
        reviewed=arrays.reviewed.take(rows),
        correct=arrays.correct.take(rows),
        reopened=arrays.reopened.take(rows),
    )


def window(
    log: pd.DataFrame, params: ReviewParams, now: datetime, days: int
) -> tuple[pd.DataFrame, datetime, datetime]:
    """The decisions in [since, until): by default the last `days` days up to now (the database)
    or up to the newest decision (a CSV from elsewhere, which may be old)."""
    until = params.until or now
    since = params.since or until - timedelta(days=days)
    if since >= until:
        raise ConfigError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    stamps = log["decided_at"]
    inside = ((stamps >= pd.Timestamp(since)) & (stamps < pd.Timestamp(until))).to_numpy()
    return (log if inside.all() else log[inside].reset_index(drop=True)), since, until


def _latest_threshold(arrays: LogArrays, mask: np.ndarray) -> float:
    rows = np.flatnonzero(mask)
    return float(arrays.threshold[rows[int(np.argmax(arrays.stamp[rows]))]])


def _target(checkpoint: str, label: str | None, client: str | None, params: ReviewParams,
            policy: PolicyDocument | None) -> float:  # fmt: skip
    if checkpoint in params.target_error:
        return params.target_error[checkpoint]
    if policy is not None and checkpoint in policy.checkpoints:
        return policy.effective(checkpoint, label, client).target_error
    raise ConfigError(f"no target error for checkpoint {checkpoint!r}: pass --target-error {checkpoint}=RATE")


def _overridden(policy: PolicyDocument | None, checkpoint: str) -> tuple[set[str], set[str]]:
    """Classes and clients of this checkpoint whose threshold the policy sets separately."""
    if policy is None or checkpoint not in policy.checkpoints:
        return set(), set()
    base = policy.checkpoints[checkpoint]
    classes = {name for name, o in base.classes.items() if o.threshold is not None}
    clients = {
        name for name, o in base.clients.items()
        if o.threshold is not None or any(c.threshold is not None for c in o.classes.values())
    }  # fmt: skip
    return classes, clients


def build_groups(arrays: LogArrays, params: ReviewParams, policy: PolicyDocument | None,
                 thresholds_from_log: bool) -> list[Group]:  # fmt: skip
    """`thresholds_from_log`: take the threshold in force from the newest decision of each group and
    pool the policy's class and client overrides (a CSV from another system) instead of the policy's
    groups and thresholds (the product's own decisions)."""
    groups: list[Group] = []
    order = sorted(
        {int(c) for c in np.unique(arrays.checkpoint[arrays.eligible])},
        key=lambda c: (CHECKPOINTS.index(arrays.checkpoints[c]) if arrays.checkpoints[c] in CHECKPOINTS
                       else len(CHECKPOINTS), arrays.checkpoints[c]),
    )  # fmt: skip
    for code in order:
        checkpoint = arrays.checkpoints[code]
        in_checkpoint = arrays.eligible & (arrays.checkpoint == code)
        classes, clients = (set(), set()) if thresholds_from_log else _overridden(policy, checkpoint)
        own_class = np.isin(arrays.label, arrays.codes_of(arrays.labels, classes))
        own_client = np.isin(arrays.client, arrays.codes_of(arrays.clients, clients))

        def current(label: str | None, client: str | None, mask: np.ndarray,
                    cp: str = checkpoint) -> tuple[float, bool]:  # fmt: skip
            if thresholds_from_log or policy is None or cp not in policy.checkpoints:
                return _latest_threshold(arrays, mask), False
            effective = policy.effective(cp, label, client)
            return effective.threshold, effective.stopped

        wide = in_checkpoint & ~own_class & ~own_client
        if wide.any():
            target = _target(checkpoint, None, None, params, policy)
            now, stopped = current(None, None, wide)
            groups.append(Group(checkpoint, checkpoint, None, None, now, target, wide, stopped))
        reviewed = in_checkpoint & arrays.reviewed
        for codes, names, kind in (
            (arrays.label, arrays.labels, "class"),
            (arrays.client, arrays.clients, "client"),
        ):
            if np.unique(codes[in_checkpoint]).size < 2:
                continue
            counts = np.bincount(codes[reviewed], minlength=len(names))
            for value_code in np.flatnonzero(counts >= params.min_samples):
                value = names[value_code]
                if value == "":
                    continue
                mask = in_checkpoint & (codes == value_code)
                if kind == "class":
                    mask &= ~own_client
                    label, client = value, None
                else:
                    mask &= ~own_class
                    label, client = None, value
                if mask.any():
                    key = group_key(checkpoint, label, client)
                    target = _target(checkpoint, label, client, params, policy)
                    now, stopped = current(label, client, mask)
                    groups.append(Group(key, checkpoint, label, client, now, target, mask, stopped))
    return groups


def unreconciled(arrays: LogArrays, groups: list[Group], policy: PolicyDocument | None) -> list[str]:
    """Groups of our checkpoints whose newest decision was made under another threshold than the
    policy has in force for them: the log does not describe the policy in force (another system's
    decisions, or our export from before a policy change)."""
    if policy is None:
        return []
    found = []
    for group in groups:
        if group.checkpoint in policy.checkpoints:
            logged = _latest_threshold(arrays, group.mask)
            if abs(logged - group.current) > 1e-6:
                found.append(f"{group.key} {logged:g} (in force: {group.current:g})")
    return found


def csv_groups(arrays: LogArrays, params: ReviewParams,
               policy: PolicyDocument | None) -> tuple[list[Group], list[str]]:  # fmt: skip
    """The groups of a decision-log file, and what keeps it from describing our policy.

    When the file's newest decisions were made under the thresholds our policy has in force (our own
    `hitl decisions export`), it is reviewed exactly like the database: the policy's thresholds and
    its class/client overrides, so both give the same verdict for the same decisions. Otherwise its
    own logged thresholds are used (it can inform, not change, our policy: `unreconciled` says why)."""
    ours = build_groups(arrays, params, policy, thresholds_from_log=False)
    mismatches = unreconciled(arrays, ours, policy)
    if not mismatches:
        return ours, []
    return build_groups(arrays, params, policy, thresholds_from_log=True), mismatches


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)


def recommend_group(group: Group, curve: ThresholdCurve, params: ReviewParams) -> Recommendation:
    verdict = decide(curve, group.current, group.target, params)
    stopped_after = verdict.stop or (group.stopped and verdict.action is not Action.LOWER)
    i, i0 = verdict.index, curve.index(group.current)
    return Recommendation(
        checkpoint=group.checkpoint,
        label=group.label,
        client=group.client,
        action=verdict.action,
        current=round(group.current, 6),
        recommended=round(float(curve.grid[i]), 6),
        target_error=group.target,
        estimated_error=_none_if_nan(curve.estimate[i]),
        error_upper_bound=round(float(curve.upper[i]), 6),
        error_lower_bound_current=round(float(curve.lower[i0]), 6),
        # stopped now / stopping / staying stopped: nothing is automated, whatever the curve says at 1
        automation_rate_current=0.0 if group.stopped else round(float(curve.automation_rate[i0]), 6),
        automation_rate_recommended=0.0 if stopped_after else round(float(curve.automation_rate[i]), 6),
        n_decisions=curve.n_total,
        n_reviewed=int(curve.n_reviewed[i]),
        n_audited=int(curve.n_audited[i]),
        effective_n=round(float(curve.effective_n[i]), 1),
        reason=verdict.reason,
        guard=verdict.guard,
        stop=verdict.stop,
        stopped_current=group.stopped,
    )


def check_targets(params: ReviewParams, log: pd.DataFrame) -> None:
    """A target for a checkpoint nobody knows is a typo (`triag=0.03`): it would silently leave the
    intended checkpoint at its policy target. Known: our checkpoints, and any checkpoint of the
    log (a CSV from another system may name its own)."""
    known = set(CHECKPOINTS) | (set(log["checkpoint"].astype(str)) if not log.empty else set())
    unknown = sorted(set(params.target_error) - known)
    if unknown:
        raise ConfigError(
            f"target error for unknown checkpoint(s) {', '.join(map(repr, unknown))}; "
            f"the policy and the decision log know: {', '.join(sorted(known))}"
        )


def analyse(log: pd.DataFrame, params: ReviewParams, policy: PolicyDocument | None, *,
            thresholds_from_log: bool, now: datetime | None = None,
            window_days: int = 180) -> Analysis:  # fmt: skip
    """Verdicts for every group with evidence in the window."""
    check_targets(params, log)
    now = now or datetime.now(UTC)
    if params.until is None and thresholds_from_log and not log.empty:
        now = log["decided_at"].max().to_pydatetime() + timedelta(microseconds=1)
    in_window, since, until = window(log, params, now, window_days)
    arrays = LogArrays.of(in_window)
    mismatches: list[str] = []
    if thresholds_from_log:
        groups, mismatches = csv_groups(arrays, params, policy)
    else:
        groups = build_groups(arrays, params, policy, thresholds_from_log=False)
    curves: dict[str, ThresholdCurve] = {}
    recommendations = []
    for group in groups:
        grid = candidate_grid(params.grid_step, group.current)
        curve = threshold_curve(evidence_of(arrays, group.mask), grid, params.confidence)
        curves[group.key] = curve
        recommendations.append(recommend_group(group, curve, params))
    return Analysis(
        recommendations=recommendations,
        curves=curves,
        groups=groups,
        drift=calibration_drift(in_window, until, params),
        log=in_window,
        since=since,
        until=until,
        unreconciled=mismatches,
    )


def result_of(analysis: Analysis, *, source: str, policy_version: int | None,
              report_path: Path | None) -> ReviewResult:  # fmt: skip
    return ReviewResult(
        recommendations=analysis.recommendations,
        drift=analysis.drift,
        report_path=str(report_path) if report_path else None,
        policy_version=policy_version,
        n_decisions=len(analysis.log),
        window_start=analysis.since,
        window_end=analysis.until,
        source=source,
        unreconciled=analysis.unreconciled,
    )
