"""The runbook catalog, parameter validation, dry runs and ticket-to-runbook matching.

Everything here is pure (files and text in, models out); execution is in
test_remediation_executors.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from hitl.demo import CATEGORIES, generate_tickets
from hitl.errors import ConfigError
from hitl.remediation.matching import match_runbooks
from policies.runbooks import (
    BUILTIN_DIR,
    InvalidParameters,
    Risk,
    Runbook,
    load_runbook_catalog,
    render_dry_run,
    render_json,
    validate_parameters,
)

# A valid set of values for every shipped runbook (required and optional ones).
EXAMPLES: dict[str, dict[str, Any]] = {
    "reset-password": {"username": "dmorales"},
    "unlock-account": {"username": "dmorales", "reason": "locked by a stale phone password"},
    "clear-print-queue": {"host": "PRINT01", "printer": "PRN-2F-01"},
    "restart-service": {"host": "FS01", "service": "Spooler"},
    "reset-vpn-profile": {"host": "LT-0423", "username": "dmorales"},
    "patch-host": {"host": "LT-0423", "kb": "KB5034441"},
    "deploy-patch-fleet": {"ring": "pilot", "kb": "KB5034441"},
    "firewall-allow-rule": {"source_ip": "203.0.113.7", "port": 443, "destination_ip": "10.4.2.17"},
}


@pytest.fixture(scope="module")
def catalog() -> dict[str, Runbook]:
    return load_runbook_catalog()


# ---------------------------------------------------------------- the shipped catalog
def test_shipped_catalog_is_complete_and_coherent(catalog: dict[str, Runbook]) -> None:
    assert set(catalog) == set(EXAMPLES)
    for runbook in catalog.values():
        assert runbook.changes_environment
        assert set(runbook.match.categories) <= set(CATEGORIES), runbook.id
        assert runbook.required_approvers == (2 if runbook.risk is Risk.high else 1)
        for step in (*runbook.steps, *runbook.rollback):
            assert step.kind == runbook.executor
            for element in step.argv or ():
                if element.startswith("{scripts}/"):
                    assert (runbook.scripts_dir / element.removeprefix("{scripts}/")).is_file(), element
    assert {r.id for r in catalog.values() if r.risk is Risk.high} == {
        "deploy-patch-fleet",
        "firewall-allow-rule",
    }
    assert catalog["deploy-patch-fleet"].blast_radius > 100
    assert catalog["reset-password"].blast_radius == 1


@pytest.mark.parametrize("runbook_id", sorted(EXAMPLES))
def test_every_dry_run_renders(catalog: dict[str, Runbook], runbook_id: str) -> None:
    runbook = catalog[runbook_id]
    values = validate_parameters(runbook, EXAMPLES[runbook_id])
    lines = render_dry_run(runbook, values)
    assert lines and all("{" not in line and "?>" not in line for line in lines)
    assert len(lines) == len(runbook.dry_run)  # every optional value given: no line left out
    for value in values.values():
        assert any(str(value) in line for line in lines), value

    # Before a human fills the form: required values show as gaps, never as raw placeholders.
    empty = render_dry_run(runbook, {})
    assert all("{" not in line for line in empty)
    required = [p.name for p in runbook.parameters if p.required and p.default is None]
    assert all(any(f"<{name}?>" in line for line in empty) for name in required)


def test_dry_run_leaves_out_lines_about_empty_optionals(catalog: dict[str, Runbook]) -> None:
    lines = render_dry_run(catalog["clear-print-queue"], {"host": "LT-0423"})
    assert lines == [
        "Cancel the stuck print jobs queued on LT-0423.",
        "Restart the Print Spooler service on LT-0423 (printing pauses for a few seconds).",
    ]


def test_json_templates_keep_types_and_null_empty_optionals(catalog: dict[str, Runbook]) -> None:
    runbook = catalog["firewall-allow-rule"]
    values = validate_parameters(runbook, {"source_ip": "203.0.113.7", "port": "443"})
    body = render_json(runbook.steps[1].json_body, values)
    assert body == {
        "action": "allow",
        "direction": "inbound",
        "source": "203.0.113.7",
        "destination": None,
        "port": 443,
        "protocol": "tcp",
    }


# ---------------------------------------------------------------- broken catalog files
VALID = """\
id: demo-runbook
title: Demo
risk: low
blast_radius: 1
match: {categories: [printer]}
parameters:
  - {name: host, type: hostname, required: true, extract: '\\b(LT-\\d{4})\\b'}
executor: subprocess
steps:
  - {name: one, argv: ['{python}', '{scripts}/x.py', '--host={host}']}
dry_run: ['Do it on {host}.']
"""


def _broken(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


BROKEN = {
    "unknown placeholder": (
        _broken(VALID, "'--host={host}'", "'--host={hots}'"),
        "field 'steps.0.argv.2': placeholder {hots}",
    ),
    "placeholder in dry run": (_broken(VALID, "on {host}.", "on {server}."), "field 'dry_run.0'"),
    "invalid regex": (
        _broken(VALID, "extract: '\\b(LT-\\d{4})\\b'", "pattern: '[a-'"),
        "field 'parameters.0.pattern'",
    ),
    "extract without a group": (
        _broken(VALID, "'\\b(LT-\\d{4})\\b'", "'LT-\\d{4}'"),
        "field 'parameters.0.extract': [0] regex",
    ),
    "unknown risk": (_broken(VALID, "risk: low", "risk: extreme"), "field 'risk'"),
    "missing steps": (_broken(VALID, "steps:\n  - {name: one", "stepz:\n  - {name: one"), "field 'steps'"),
    "webhook step in a subprocess runbook": (
        _broken(
            VALID,
            "{name: one, argv: ['{python}', '{scripts}/x.py', '--host={host}']}",
            "{name: one, method: POST, path: /x}",
        ),
        "field 'steps.0': a webhook step",
    ),
    "webhook path that leaves the gateway": (
        _broken(
            _broken(VALID, "executor: subprocess", "executor: webhook"),
            "{name: one, argv: ['{python}', '{scripts}/x.py', '--host={host}']}",
            "{name: one, method: POST, path: 'https://elsewhere.example/{host}'}",
        ),
        "field 'steps.0': step 'one': path must start with a single '/'",
    ),
    "enum without values": (_broken(VALID, "type: hostname", "type: enum"), "field 'parameters.0'"),
    "port range on a string": (_broken(VALID, "type: hostname,", "type: string, max: 5,"), "min/max"),
    "not YAML": ("id: [unclosed\n", "not valid YAML at line"),
    "not a mapping": ("- just\n- a list\n", "must hold a YAML mapping"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_is_a_one_line_error_naming_file_and_field(tmp_path: Path, case: str) -> None:
    text, expected = BROKEN[case]
    (tmp_path / "good.yaml").write_text(_broken(VALID, "id: demo-runbook", "id: good-one"))
    (tmp_path / "broken.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_runbook_catalog(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'broken.yaml'}: "), message
    assert expected in message, message


def test_a_duplicate_id_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID)
    with pytest.raises(
        ConfigError, match=r"b\.yaml: field 'id': duplicate runbook id 'demo-runbook' \(also in .*a\.yaml\)"
    ):
        load_runbook_catalog(tmp_path)


def test_an_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no runbook files"):
        load_runbook_catalog(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_runbook_catalog(tmp_path / "nope")


def test_a_copied_catalog_finds_its_own_scripts(tmp_path: Path) -> None:
    shutil.copytree(BUILTIN_DIR, tmp_path / "runbooks")
    copied = load_runbook_catalog(tmp_path / "runbooks")
    assert copied["reset-password"].scripts_dir == tmp_path / "runbooks" / "scripts"


# ---------------------------------------------------------------- parameter validation
def test_every_problem_is_reported_at_once(catalog: dict[str, Runbook]) -> None:
    with pytest.raises(InvalidParameters) as caught:
        validate_parameters(
            catalog["firewall-allow-rule"],
            {"source_ip": "300.1.2.3", "port": 70000, "protocol": "icmp", "colour": "red"},
        )
    problems = caught.value.problems
    assert set(problems) == {"source_ip", "port", "protocol", "colour"}
    assert "not an IPv4 address" in problems["source_ip"]
    assert "above the maximum 65535" in problems["port"]
    assert "not one of tcp, udp" in problems["protocol"]
    message = str(caught.value)
    assert "\n" not in message and all(name in message for name in problems)
    assert isinstance(caught.value, ValueError)


def test_missing_required_values(catalog: dict[str, Runbook]) -> None:
    with pytest.raises(InvalidParameters) as caught:
        validate_parameters(catalog["restart-service"], {"host": "  "})
    assert caught.value.problems == {"host": "missing (required)", "service": "missing (required)"}


def test_values_are_coerced_to_one_canonical_spelling(catalog: dict[str, Runbook]) -> None:
    firewall = validate_parameters(
        catalog["firewall-allow-rule"], {"source_ip": " 203.0.113.7 ", "port": "443", "protocol": "TCP"}
    )
    assert firewall == {
        "source_ip": "203.0.113.7",
        "port": 443,
        "protocol": "tcp",
        "direction": "inbound",  # default applied
    }
    assert validate_parameters(catalog["restart-service"], {"host": "fs01", "service": "spooler"}) == {
        "host": "FS01",
        "service": "Spooler",
    }
    assert validate_parameters(catalog["reset-password"], {"username": "DMorales"}) == {
        "username": "dmorales"
    }


@pytest.mark.parametrize(
    ("runbook_id", "values", "problem"),
    [
        ("firewall-allow-rule", {"source_ip": "203.0.113", "port": 22}, "source_ip"),
        ("firewall-allow-rule", {"source_ip": "203.0.113.7", "port": 0}, "port"),
        ("firewall-allow-rule", {"source_ip": "203.0.113.7", "port": True}, "port"),
        ("firewall-allow-rule", {"source_ip": "203.0.113.7", "port": "22; reboot"}, "port"),
        ("reset-password", {"username": "bob smith"}, "username"),
        ("restart-service", {"host": "FS01;whoami", "service": "Spooler"}, "host"),
        ("restart-service", {"host": "FS01", "service": "sshd"}, "service"),
        ("patch-host", {"host": "FS01", "kb": "5034441"}, "kb"),
        ("unlock-account", {"username": "bob", "reason": "--delete-everything"}, "reason"),
        ("unlock-account", {"username": "bob", "reason": "line one\nline two"}, "reason"),
    ],
)
def test_invalid_values_are_refused(
    catalog: dict[str, Runbook], runbook_id: str, values: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidParameters) as caught:
        validate_parameters(catalog[runbook_id], values)
    assert list(caught.value.problems) == [problem]


# ---------------------------------------------------------------- matching
def test_a_firewall_change_matches_the_allow_rule_with_ip_and_port(catalog: dict[str, Runbook]) -> None:
    matches = match_runbooks(
        "Firewall rule request: allow HTTPS from 203.0.113.45",
        "Hi,\n\nPlease add a rule to allow HTTPS (TCP 443) from 203.0.113.45 to 10.12.4.20 (APP03). "
        "Our Clio vendor needs it for remote support. It can be limited to business hours.\n\nThanks, Dana",
        "firewall_change",
        catalog,
    )
    best = matches[0]
    assert best.runbook_id == "firewall-allow-rule"
    assert best.parameters == {
        "source_ip": "203.0.113.45",
        "port": 443,
        "protocol": "tcp",
        "destination_ip": "10.12.4.20",
        "direction": "inbound",
    }
    assert best.missing == [] and best.score == 1.0
    assert best.risk is Risk.high
    validate_parameters(catalog[best.runbook_id], best.parameters)  # extracted values are valid as they are


def test_a_password_reset_matches_with_the_username(catalog: dict[str, Runbook]) -> None:
    matches = match_runbooks(
        "Need password reset - pmurphy",
        "Please reset the password for Patrick Murphy (pmurphy). They are back from leave today and the old "
        "password has expired. They can't get into SharePoint.",
        "password_reset",
        catalog,
    )
    assert matches[0].runbook_id == "reset-password"
    assert matches[0].parameters == {"username": "pmurphy"}
    assert matches[0].missing == []
    assert "category password_reset" in matches[0].reasons


def test_a_lockout_prefers_unlock_and_never_takes_a_word_for_a_username(catalog: dict[str, Runbook]) -> None:
    matches = match_runbooks(
        "Password expired, can't sign in to Teams",
        "My password expired over the weekend and the self-service reset page keeps saying "
        "'AADSTS50126: invalid username or password'.",
        "password_reset",
        catalog,
    )
    assert matches[0].runbook_id == "reset-password"
    assert matches[0].missing == ["username"]  # not "or": the human fills it in
    locked = match_runbooks(
        "Locked out of my account",
        "I'm locked out of my account after too many attempts. My username is kchen. Can you unlock it?",
        "password_reset",
        catalog,
    )
    assert locked[0].runbook_id == "unlock-account"
    assert locked[0].parameters["username"] == "kchen"


def test_missing_required_parameters_rank_lower_but_still_match(catalog: dict[str, Runbook]) -> None:
    subject, body = "VPN won't connect from home", "GlobalProtect fails to connect with error 809."
    without_host = match_runbooks(subject, body, "vpn", catalog)[0]
    with_host = match_runbooks(subject, body + " My laptop is LT-0423.", "vpn", catalog)[0]
    assert without_host.runbook_id == with_host.runbook_id == "reset-vpn-profile"
    assert without_host.missing == ["host"] and with_host.missing == []
    assert with_host.parameters["host"] == "LT-0423"
    assert without_host.score < with_host.score


def test_the_category_dominates_keywords(catalog: dict[str, Runbook]) -> None:
    # Mentions a stuck print queue, but triage says patching: patch-host must outrank the printer runbook.
    matches = match_runbooks(
        "Windows updates failing on LT-0311",
        "Updates fail with 0x80070643, and since then print jobs are stuck in the print queue too.",
        "patching",
        catalog,
    )
    scores = {m.runbook_id: m.score for m in matches}
    assert matches[0].runbook_id == "patch-host"
    assert scores["clear-print-queue"] < 0.5 <= scores["patch-host"]


def test_an_excluded_phrase_vetoes_a_runbook(catalog: dict[str, Runbook]) -> None:
    matches = match_runbooks(
        "Remove temporary firewall rule for 198.51.100.7",
        "The temporary rule that allowed 198.51.100.7 to reach 10.1.1.5 on port 3389 is no longer needed.",
        "firewall_change",
        catalog,
    )
    assert "firewall-allow-rule" not in {m.runbook_id for m in matches}


@pytest.mark.parametrize("category", [None, "new_user", "phishing_report"])
def test_an_unrelated_ticket_matches_nothing_or_only_weakly(
    catalog: dict[str, Runbook], category: str | None
) -> None:
    matches = match_runbooks(
        "Suspicious email - possible phishing",
        "I received an email from billing@dhl-parcel-notice.com with the subject 'Your parcel could not be "
        "delivered'. It asks me to open an attachment. I haven't clicked anything.",
        category,
        catalog,
    )
    assert all(m.score < 0.3 for m in matches), matches


def test_demo_tickets_only_get_runbooks_of_their_own_category(catalog: dict[str, Runbook]) -> None:
    """Across a seeded demo batch: a proposal scored 0.5 or more is always a runbook made for the
    ticket's category, and what it extracted is valid."""
    proposed = 0
    for ticket in generate_tickets(count=300, seed=11):
        for match in match_runbooks(ticket.subject, ticket.body, ticket.category, catalog, min_score=0.5):
            runbook = catalog[match.runbook_id]
            assert ticket.category in runbook.match.categories, (ticket.subject, match.runbook_id)
            present = {k: v for k, v in match.parameters.items()}
            if not match.missing:
                validate_parameters(runbook, present)
            proposed += 1
    assert proposed > 100
