"""The review end to end on a decision log: which groups get a verdict, where the threshold in
force comes from, what is left out, and calibration drift between the last two 30-day periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from hitl.analysis.decision_log import with_derived
from hitl.analysis.models import Action, ReviewParams
from hitl.analysis.review import analyse
from hitl.errors import ConfigError
from policies.checkpoint_policy import load_policy_file
from tests.review_evidence import decisions

NOW = datetime(2026, 11, 20, tzinfo=UTC)
P = ReviewParams(target_error={"triage": 0.05})  # no policy: the target comes from the analyst


def _log(*frames: pd.DataFrame) -> pd.DataFrame:
    log = pd.concat(frames, ignore_index=True)
    log["decided_at"] = pd.to_datetime(log["decided_at"], utc=True)
    log["reopened"] = False
    for column in ("decision_id", "checkpoint", "label", "route", "ai_value", "final_value", "reason_code",
                   "reviewer", "client_id"):  # fmt: skip
        log[column] = log[column].astype(object)
    return with_derived(log)


def _safe(c: np.ndarray) -> np.ndarray:
    return np.where(c >= 0.7, 0.01, 0.3)


def test_checkpoint_class_and_client_groups_from_the_log_thresholds() -> None:
    log = _log(
        decisions("triage", 0.8, 6000, _safe, labels=("printer", "network"), clients=("Acme", "Globex"))
    )
    analysis = analyse(log, P, None, thresholds_from_log=True, now=NOW)
    keys = [g.key for g in analysis.groups]
    assert keys == [
        "triage",
        "triage/class:network",
        "triage/class:printer",
        "triage/client:Acme",
        "triage/client:Globex",
    ]
    wide = analysis.recommendations[0]
    assert (wide.action, wide.current, wide.recommended) == (Action.LOWER, 0.8, 0.75)
    assert wide.n_decisions == 6000 and wide.automation_rate_recommended > wide.automation_rate_current


def test_the_policy_sets_current_thresholds_and_overridden_classes_leave_the_checkpoint_group() -> None:
    policy = load_policy_file()  # triage: 0.80, classes firewall_change 0.95 and outage 0.90
    log = _log(decisions("triage", 0.8, 4000, _safe, labels=("printer", "outage")))
    analysis = analyse(log, ReviewParams(), policy, thresholds_from_log=False, now=NOW)
    by_key = {g.key: g for g in analysis.groups}
    assert by_key["triage"].mask.sum() == (log["label"] == "printer").sum()  # outage has its own threshold
    assert by_key["triage/class:outage"].current == 0.90
    assert by_key["triage/class:printer"].current == 0.80


def test_decisions_a_threshold_never_governed_are_left_out() -> None:
    log = decisions("triage", 0.8, 2000, _safe)
    log.loc[:99, "route"] = "human"
    log.loc[:99, "confidence"] = 0.99  # sent to a human despite the confidence: policy, not threshold
    log.loc[:99, "propensity"] = 1.0
    analysis = analyse(_log(log), P, None, thresholds_from_log=True, now=NOW)
    assert analysis.recommendations[0].n_decisions == 1900


def test_an_unknown_checkpoint_needs_a_target() -> None:
    log = _log(decisions("dispatch", 0.8, 500, _safe))
    with pytest.raises(ConfigError, match="--target-error dispatch=RATE"):
        analyse(log, ReviewParams(), None, thresholds_from_log=True, now=NOW)
    analysis = analyse(
        log, ReviewParams(target_error={"dispatch": 0.1}), None, thresholds_from_log=True, now=NOW
    )
    assert analysis.recommendations[0].target_error == 0.1


def test_a_target_for_a_checkpoint_neither_the_policy_nor_the_log_knows_is_refused() -> None:
    log = _log(decisions("dispatch", 0.8, 50, _safe))
    with pytest.raises(ConfigError, match=r"unknown checkpoint\(s\) 'triag'; .*know: dispatch, escalation"):
        analyse(log, ReviewParams(target_error={"triag": 0.03}), None, thresholds_from_log=True, now=NOW)
    with pytest.raises(ConfigError, match="'dispach'"):  # an empty log knows only our checkpoints
        analyse(log.iloc[:0], ReviewParams(target_error={"dispach": 0.03}), None, thresholds_from_log=True)
    for known in ("triage", "reply", "dispatch"):  # ours, with or without decisions, and the log's
        targets = {"dispatch": 0.1, known: 0.03}  # dispatch, the log's own, always needs one
        analyse(log, ReviewParams(target_error=targets), None, thresholds_from_log=True, now=NOW)


def test_the_window_defaults_to_the_newest_decision_of_a_csv_and_can_be_narrowed() -> None:
    log = _log(decisions("triage", 0.8, 3000, _safe))
    whole = analyse(log, P, None, thresholds_from_log=True)  # now: the newest decision
    assert len(whole.log) == 3000
    since = NOW - timedelta(days=10)
    narrow = analyse(log, P.model_copy(update={"since": since, "until": NOW}), None, thresholds_from_log=True)
    expected = int(((log["decided_at"] >= since) & (log["decided_at"] < NOW)).sum())
    assert len(narrow.log) == expected < 3000
    with pytest.raises(ConfigError, match="must be before"):
        analyse(log, P.model_copy(update={"since": NOW, "until": since}), None, thresholds_from_log=True)


def test_calibration_drift_compares_the_last_two_30_day_periods() -> None:
    """Reviews in both periods at confidence ~0.6 (all reviewed); the recent period is right only
    30 % of the time, the earlier one 60 %: ECE rises by about 0.3, flagged."""
    rng = np.random.default_rng(5)
    frames = []
    for days_ago, accuracy in ((10, 0.3), (40, 0.6)):
        n = 400
        right = rng.random(n) < accuracy
        frames.append(
            pd.DataFrame(
                {
                    "decision_id": [f"{days_ago}-{i}" for i in range(n)],
                    "checkpoint": "triage",
                    "label": "printer",
                    "confidence": 0.6,
                    "route": "human",
                    "propensity": 1.0,
                    "ai_value": "printer",
                    "final_value": np.where(right, "printer", "network"),
                    "reason_code": "",
                    "reviewer": "rev",
                    "decided_at": NOW - timedelta(days=days_ago),
                    "client_id": "Acme",
                    "threshold": 0.8,
                }
            )
        )
    analysis = analyse(_log(*frames), P, None, thresholds_from_log=True, now=NOW)
    (drift,) = analysis.drift
    assert (drift.n_current, drift.n_previous) == (400, 400)
    assert drift.drifted and drift.ece_current > drift.ece_previous + 0.2
    stable = analyse(_log(frames[1]), P, None, thresholds_from_log=True, now=NOW)
    assert not stable.drift[0].drifted and stable.drift[0].n_previous == 0  # its window ends at its newest


def test_an_auto_decision_reviewed_because_of_its_sibling_head_is_not_an_audit() -> None:
    """Triage's category decision (AUTO, propensity 0.05) gets the reviewer's answer when its sibling
    priority decision went to a human. Such reviews were weighted 1/0.05 = 20 like the random audit
    (one export: 31 of 68 AUTO decisions reviewed, none routed audit, n_audited 27). They must not
    enter the weighted estimate; one that found the AI wrong is still a known error."""
    base = decisions("triage", 0.8, 6000, _safe, seed=21)
    auto = base.index[base["route"] == "auto"]
    incidental = base.copy()
    incidental.loc[auto[::3], "final_value"] = incidental.loc[auto[::3], "ai_value"]  # reviewed, agreed
    incidental.loc[auto[::3], "reviewer"] = "rev"
    plain = analyse(_log(base), P, None, thresholds_from_log=True, now=NOW).recommendations[0]
    mixed = analyse(_log(incidental), P, None, thresholds_from_log=True, now=NOW).recommendations[0]
    n_audit = int(((base["route"] == "audit") & (base["confidence"] >= mixed.recommended)).sum())
    assert mixed.n_audited == plain.n_audited == n_audit
    assert mixed.model_dump() == plain.model_dump()
    wrong = incidental.copy()
    wrong.loc[auto[0], "final_value"] = "other"  # an incidental review that found an error
    known = analyse(_log(wrong), P, None, thresholds_from_log=True, now=NOW).recommendations[0]
    assert known.n_audited == n_audit and known.estimated_error >= plain.estimated_error
