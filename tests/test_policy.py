"""The checkpoint policy: loading, per-class and per-client overrides, routing, versions in the DB."""

from __future__ import annotations

import pytest

from hitl.errors import ConfigError
from hitl.store.db import Database
from hitl.store.policies import create_version, current_policy, history, rollback
from policies.checkpoint_policy import Route, audit_draw, load_policy_file, parse_policy, route_decision


def test_shipped_policy_and_overrides() -> None:
    policy = load_policy_file()
    triage = policy.effective("triage", "vpn", "Acme")
    assert (triage.threshold, triage.audit_rate, triage.autonomy) == (0.80, 0.05, True)
    assert policy.effective("triage", "firewall_change").threshold == 0.95
    assert policy.effective("reply", None, "Whitaker & Lowe LLP").autonomy is False
    assert policy.effective("escalation").autonomous_values == ["T1"]


def test_client_overrides_win_over_class_overrides() -> None:
    document = load_policy_file().model_dump()
    document["checkpoints"]["triage"]["clients"] = {
        "Acme": {"threshold": 0.7, "classes": {"vpn": {"threshold": 0.99}}}
    }
    policy = parse_policy(document, "test")
    assert policy.effective("triage", "firewall_change", "Acme").threshold == 0.7
    assert policy.effective("triage", "vpn", "Acme").threshold == 0.99
    assert policy.effective("triage", "vpn", "Other").threshold == 0.80


@pytest.mark.parametrize(
    ("value", "confidence", "draw", "route", "propensity", "reason"),
    [
        ("vpn", 0.79, 0.9, Route.HUMAN, 1.0, "below the threshold 0.80"),
        ("vpn", 0.80, 0.9, Route.AUTO, 0.05, "reaches the threshold"),
        ("vpn", 0.95, 0.01, Route.AUDIT, 0.05, "sampled for audit"),
        (None, None, 0.9, Route.HUMAN, 1.0, "no suggestion"),
    ],
)
def test_routing(
    value: str | None, confidence: float | None, draw: float, route: Route, propensity: float, reason: str
) -> None:
    result = route_decision(load_policy_file().effective("triage", value), value, confidence, draw)
    assert (result.route, result.propensity) == (route, propensity) and reason in result.reason


def test_autonomy_limits() -> None:
    policy = load_policy_file()
    assert route_decision(policy.effective("escalation"), "T2", 0.99, 0.9).route is Route.HUMAN
    assert route_decision(policy.effective("escalation"), "T1", 0.99, 0.9).route is Route.AUTO
    assert (
        route_decision(policy.effective("reply", None, "Whitaker & Lowe LLP"), "x", 0.99, 0.9).route
        is Route.HUMAN
    )
    assert route_decision(policy.effective("remediation"), "patch-host", 0.99, 0.9).route is Route.HUMAN


def test_audit_draw_is_stable_and_uniform() -> None:
    assert audit_draw(1, "triage", 3) == audit_draw(1, "triage", 3) != audit_draw(2, "triage", 3)
    draws = [audit_draw(i, "triage", 1) for i in range(20_000)]
    assert 0.045 < sum(d < 0.05 for d in draws) / len(draws) < 0.055


def test_invalid_policies_are_one_line_errors() -> None:
    document = load_policy_file().model_dump()
    document["checkpoints"]["triage"]["reason_codes"] = ["no_such_code"]
    with pytest.raises(ConfigError, match="reason codes \\['no_such_code'\\] are not defined"):
        parse_policy(document, "test")
    document = load_policy_file().model_dump()
    document["checkpoints"]["triage"]["threshold"] = 1.5
    with pytest.raises(ConfigError, match=r"checkpoints\.triage\.threshold"):
        parse_policy(document, "test")
    del document["checkpoints"]["reply"]
    with pytest.raises(ConfigError):
        parse_policy(document, "test")


def test_versions_in_the_database(database: Database) -> None:
    with database.session() as session:
        version, policy = current_policy(session)
        assert version == 1
        changed = policy.model_copy(deep=True)
        changed.checkpoints["triage"].threshold = 0.75
        assert create_version(session, changed, "ana", "monthly review").version == 2
    with database.session() as session:
        version, policy = current_policy(session)
        assert (version, policy.checkpoints["triage"].threshold) == (2, 0.75)
        rolled = rollback(session, 1, "ana", "too many overrides")
        assert rolled.version == 3 and "rollback to v1" in rolled.reason
        with pytest.raises(ConfigError, match="who approved it and why"):
            create_version(session, policy, " ", "x")
    with database.session() as session:
        assert [v.version for v in history(session)] == [3, 2, 1]
        assert current_policy(session)[1].checkpoints["triage"].threshold == 0.80


def test_a_stopped_checkpoint_automates_nothing_and_a_class_can_be_restarted() -> None:
    """`stopped` (set by a threshold review that found no safe threshold): before it existed, the
    review's raise to 1.0 left confidence 1.00 reaching the threshold, so AUTO."""
    data = load_policy_file().model_dump()
    data["checkpoints"]["triage"]["stopped"] = True
    data["checkpoints"]["triage"]["classes"]["printer"] = {"threshold": 0.9, "stopped": False}
    policy = parse_policy(data, "test")
    stopped = policy.effective("triage", "network")
    assert (stopped.stopped, stopped.threshold) == (True, 1.0)
    for confidence in (0.5, 0.99, 1.0):
        routed = route_decision(stopped, "network", confidence, 0.99)
        assert (routed.route, routed.propensity, routed.threshold) == (Route.HUMAN, 1.0, 1.0)
        assert routed.reason.startswith(f"confidence {confidence:.2f}: automation is stopped")
    assert route_decision(policy.effective("triage", "printer"), "printer", 1.0, 0.99).route is Route.AUTO
