"""The `hitl` command line end to end: real subprocesses, a real Prefect server, real databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hitl.settings import Settings
from hitl.store.db import Database

from .psa_server import PsaState, psa_server
from .support import ENDAVA, ROOT, needs_shared_data, run_cli

pytestmark = pytest.mark.usefixtures("prefect_api")

HEADER = "external_id,client,subject,body,created_at,priority,urgency,category\n"


def ingest_json(*args: str) -> dict[str, object]:
    result = run_cli("ingest", *args, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout  # exactly one JSON object on stdout
    return json.loads(lines[0])


def counts(report: dict[str, object]) -> tuple[object, ...]:
    return tuple(report[k] for k in ("read", "inserted", "updated", "unchanged", "quarantined"))


@needs_shared_data()
def test_endava_acceptance(settings: Settings, prefect_api: str) -> None:
    first = ingest_json(str(ENDAVA), "--mapping", "endava", "--no-lifecycle")
    assert counts(first) == (4344, 4344, 0, 0, 0)
    second = ingest_json(str(ENDAVA), "--mapping", "endava", "--no-lifecycle")
    assert counts(second) == (4344, 0, 0, 4344, 0)
    flow_run = httpx.get(f"{prefect_api}/flow_runs/{second['flow_run_id']}").json()
    assert flow_run["state_type"] == "COMPLETED" and flow_run["parameters"]["mapping"] == "endava"
    artifacts = httpx.post(
        f"{prefect_api}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [second["flow_run_id"]]}}},
    ).json()
    table = next(a for a in artifacts if a["type"] == "table")
    assert table["key"] == "ingestion-endava"
    assert {"input": "TOTAL", "read": 4344, "unchanged": 4344}.items() <= json.loads(table["data"])[
        -1
    ].items()
    listed = json.loads(run_cli("tickets", "list", "--client", "endava", "--limit", "5", "--json").stdout)
    assert len(listed) == 5 and all(t["source"] == "endava" for t in listed)


def test_malformed_file_reports_each_row(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "malformed.csv"
    path.write_text(
        HEADER
        + "M1,Acme,fine,printer jammed,2026-11-01T08:00:00Z,high,2,printer\n"
        + "M2,Acme,missing body,,2026-11-01T08:00:00Z,low,1,mailbox\n"
        + "M3,Acme,bad date,vpn down,not-a-date,low,1,vpn\n"
        + 'M4,Acme,"broken"quoting,body,2026-11-01,low,1,vpn\n'
        + "M5,Acme,wrong type,disk full,2026-11-01,low,very,backup\n"
        + "M6,Acme,fine,mailbox full,2026-11-02,medium,1,mailbox\n"
    )
    report = ingest_json(str(path), "--no-lifecycle")
    assert counts(report) == (6, 2, 0, 0, 4) and report["status"] == "completed"
    rows = json.loads(run_cli("quarantine", "list", "--run", str(report["run_id"]), "--json").stdout)
    by_row = {r["row_number"]: r["error"] for r in rows}
    assert sorted(by_row) == [2, 3, 4, 5]
    assert by_row[2] == "body: missing or empty" and "not-a-date" in by_row[3]
    assert "malformed CSV" in by_row[4] and "'very'" in by_row[5]
    runs = json.loads(run_cli("runs", "list", "--json").stdout)
    assert runs[0]["id"] == report["run_id"] and runs[0]["quarantined"] == 4
    shown = run_cli("quarantine", "list", "--run", str(report["run_id"]), env={"COLUMNS": "250"}).stdout
    assert "raw (start)" in shown and "M3,Acme,bad date,vpn down,not-a-date" in shown  # the README's promise


def test_drop_folder_and_http_source(settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text(HEADER + "D1,Acme,s,body,,low,1,x\nD2,Acme,s,body,,low,1,x\n")
    (inbox / "b.jsonl").write_text(json.dumps({"external_id": "D3", "body": "vpn", "client": "Acme"}) + "\n")
    (inbox / "export.xlsx").write_bytes(b"PK\x03\x04")  # a type no run reads: reported, left in place
    report = ingest_json(str(inbox), "--source", "drop")
    assert counts(report) == (3, 3, 0, 0, 0) and report["ignored_files"] == ["export.xlsx"]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.csv", "b.jsonl"]
    assert (inbox / "export.xlsx").exists()
    assert counts(ingest_json(str(inbox), "--source", "drop")) == (0, 0, 0, 0, 0)

    state = PsaState(tickets=[{"external_id": "P1", "body": "b", "updated_at": "2026-11-20T10:00:00Z"}])
    with psa_server(state) as url:
        report = ingest_json(url, "--source", "psa")
    assert counts(report) == (1, 1, 0, 0, 0)


def test_bad_input_is_one_line_and_loses_nothing(settings: Settings, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "G1,Acme,s,body,,low,1,x\n")
    cases = [
        (
            ("ingest", str(good), "--mapping", "nope"),
            "unknown mapping 'nope' (known: canonical, endava, helpdesk",
        ),
        (("ingest", str(tmp_path / "missing.csv")), "no such file or folder"),
        (("ingest", str(good), "--mapping", "endava"), "lacks column(s) ticket_id required by the mapping"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 1, result
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    broken_db = run_cli(
        "ingest", str(good), env={"HITL_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x"}
    )
    assert broken_db.returncode == 1 and "cannot reach the database" in broken_db.stderr
    assert broken_db.stderr.strip().count("\n") == 0
    assert good.exists()
    tickets = json.loads(run_cli("tickets", "list", "--json").stdout)
    assert tickets == []  # nothing was half-done by the failed attempts


def test_two_processes_ingest_overlapping_files(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(HEADER + "".join(f"C{i},Acme,s,b{i},,low,1,x\n" for i in range(0, 1500)))
    (tmp_path / "b.csv").write_text(
        HEADER + "".join(f"C{i},Acme,s,b{i},,low,1,x\n" for i in range(500, 2000))
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "hitl.cli", "ingest", str(tmp_path / name), "--json", "--no-lifecycle"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name in ("a.csv", "b.csv")
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outputs]
    reports = [json.loads(o[0]) for o in outputs]
    assert sum(int(r["inserted"]) for r in reports) == 2000
    assert sum(int(r["unchanged"]) for r in reports) == 1000
    listed = json.loads(run_cli("tickets", "list", "--limit", "5000", "--json").stdout)
    assert len(listed) == 2000 and len({t["external_id"] for t in listed}) == 2000


def test_db_upgrade_and_listings(settings: Settings) -> None:
    result = run_cli("db", "upgrade")
    head = Database.head_revision()
    assert result.returncode == 0 and f"schema at revision {head} (was empty)" in result.stdout
    assert f"revision {head}, head {head}" in run_cli("db", "current").stdout
    mappings = json.loads(run_cli("mappings", "--json").stdout)
    assert {m["name"] for m in mappings} >= {"canonical", "endava", "helpdesk"}


def test_invalid_setting_is_one_line(tmp_path: Path) -> None:
    result = run_cli("tickets", "list", env={"HITL_BATCH_SIZE": "lots", "HITL_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: invalid setting HITL_BATCH_SIZE:") and result.stderr.count("\n") == 1
    )
    result = run_cli("tickets", "list", env={"HITL_TIMEZONE": "Mars/Olympus", "HITL_HOME": str(tmp_path)})
    assert "error: invalid setting HITL_TIMEZONE: unknown time zone 'Mars/Olympus'" in result.stderr
    # a From address the outbox would have refused with a traceback when it sends
    env = {"HITL_SMTP_HOST": "127.0.0.1", "HITL_SMTP_SENDER": "service desk", "HITL_HOME": str(tmp_path)}
    result = run_cli("outbox", "send", env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == "error: invalid setting HITL_SMTP_SENDER: not an e-mail address: 'service desk'\n"
    env = {"HITL_NOTIFY_EMAIL_TO": "noc@example.com, on-call", "HITL_HOME": str(tmp_path)}
    result = run_cli("tickets", "list", env=env)
    assert "error: invalid setting HITL_NOTIFY_EMAIL_TO: not an e-mail address: 'on-call'" in result.stderr


def test_a_home_that_is_not_a_folder_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the home folder should be")
    result = run_cli("tickets", "list", env={"HITL_HOME": str(home)})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == f"error: cannot use {home}: File exists\n"


def test_demo_generate_refuses_an_out_without_a_format_suffix(tmp_path: Path) -> None:
    result = run_cli("demo", "generate", "--out", str(tmp_path / "batch"), env={"HITL_HOME": str(tmp_path)})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "the name must end in .csv or .jsonl" in result.stderr and not (tmp_path / "batch").exists()
    missing = tmp_path / "no" / "such" / "folder"
    missing.parent.parent.write_text("a file, so the folder cannot be made")
    result = run_cli("demo", "generate", "--out", str(missing / "b.csv"), env={"HITL_HOME": str(tmp_path)})
    assert result.returncode == 1 and result.stderr.startswith("error: cannot use "), result.stderr


def test_usage_errors_are_one_line_naming_the_help(tmp_path: Path) -> None:
    """Typer's own copy of click raises its own exceptions; these printed tracebacks once."""
    env = {"HITL_HOME": str(tmp_path)}
    cases = [
        (("nosuch",), "error: No such command 'nosuch' (see `hitl --help`)"),
        (("tickets", "list", "--nope"), "error: No such option: --nope (see `hitl tickets list --help`)"),
        (("tickets", "list", "--limit", "-5"), "error: Invalid value for '--limit': Input should be greater"),
        (("audit", "show", "abc"), "error: Invalid value for 'ticket_id': Input should be a valid integer"),
        (("ingest",), "error: Missing argument 'path' (see `hitl ingest --help`)"),
        (("policy", "rollback", "1", "--reviewer", "x"), "error: Missing option '--reason'"),
    ]
    for args, message in cases:
        result = run_cli(*args, env=env)
        assert result.returncode == 2 and result.stderr.startswith(message), (args, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stdout == "", (args, result.stderr)
    bare = run_cli(env=env)  # the help, as for any group called without a command
    assert bare.returncode == 2 and "Usage: hitl" in bare.stdout
    assert "Traceback" not in bare.stderr + bare.stdout and "NoArgsIsHelpError" not in bare.stderr


def test_policy_history_and_rollback(settings: Settings) -> None:
    shown = json.loads(run_cli("policy", "show", "--json").stdout)
    assert shown["version"] == 1 and shown["checkpoints"]["triage"]["threshold"] == 0.8
    refused = run_cli("policy", "rollback", "7", "--reviewer", "ana", "--reason", "test")
    assert refused.returncode == 1 and "no policy version 7" in refused.stderr
    for blank in ("", "  "):  # the "rollback to v1: " prefix is not a reason
        refused = run_cli("policy", "rollback", "1", "--reviewer", "ana", "--reason", blank)
        assert refused.returncode == 1 and "needs who approved it and why" in refused.stderr
    rolled = run_cli("policy", "rollback", "1", "--reviewer", "ana", "--reason", "back to the file")
    assert rolled.returncode == 0 and "policy version 2 is in force" in rolled.stdout
    history = json.loads(run_cli("policy", "history", "--json").stdout)
    assert [(h["version"], h["created_by"]) for h in history] == [(2, "ana"), (1, "system")]
    assert "rollback to v1: back to the file" in history[0]["reason"]
    assert run_cli("audit", "verify").returncode == 0


def test_audit_show_of_a_ticket_that_does_not_exist_says_so(tmp_path: Path) -> None:
    """It printed "0 event(s)" and exit 0, as for a ticket whose events had been erased."""
    result = run_cli("audit", "show", "99999", env={"HITL_HOME": str(tmp_path)})
    assert (
        result.returncode == 1
        and result.stderr.strip() == "error: no ticket 99999 in the store (see `hitl tickets list`)"
    )


def test_policy_rollback_to_version_1_works_on_a_fresh_database(settings: Settings) -> None:
    """Version 1 (the policy file) is seeded by the first reader; a rollback as the first command
    said "no policy version 1"."""
    rolled = run_cli("policy", "rollback", "1", "--reviewer", "ana", "--reason", "undo a bad review")
    assert rolled.returncode == 0 and "policy version 2 is in force" in rolled.stdout, rolled.stderr
