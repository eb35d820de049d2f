"""What the `hitl` command prints: untrusted text literally (no rich markup, emoji codes or terminal
links taken from tickets or file names), and the approval queue's short run ids that `hitl resume`
accepts. Real subprocesses, a real Prefect server, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hitl.errors import HitlError
from hitl.lifecycle.queue import resolve_waiting_run
from hitl.models import TicketRecord
from hitl.settings import Settings
from hitl.store.db import Database

from .support import run_cli
from .test_decision_log_db import _decide
from .test_lifecycle_engine import ingest

HOSTILE = "printer [/x] jammed [red]again[/red] :thumbs_up: [link=http://evil.example]reset here[/link]"


@pytest.mark.usefixtures("prefect_api")
def test_ticket_text_and_file_names_are_printed_literally(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "[b]batch [link=mailto:x@evil.example]1 :warning:.csv"
    source.write_text(
        "external_id,client,subject,body,created_at,priority,urgency,category\n"
        f'M1,Acme,"{HOSTILE}",body,,low,1,x\n'
    )
    ingested = run_cli("ingest", str(source), env={"COLUMNS": "400"})
    assert ingested.returncode == 0, ingested.stderr[-2000:]
    assert source.name in ingested.stdout  # the summary table names the file as it is
    listed = run_cli("tickets", "list", env={"COLUMNS": "400"})
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert HOSTILE[:60] in listed.stdout  # the table cuts subjects at 60 characters
    assert "\N{THUMBS UP SIGN}" not in listed.stdout and "Traceback" not in listed.stderr
    assert json.loads(run_cli("tickets", "list", "--json").stdout)[0]["subject"] == HOSTILE


def test_a_waiting_run_is_named_by_its_first_characters(database: Database) -> None:
    [ticket_id] = ingest(database, [TicketRecord(external_id="Q1", client="Acme", subject="s", body="b")])
    one = "17529a2c-fff5-4a05-b374-eb31019d0a79"
    twins = ["63087fa5-fd4f-423d-a716-8f0abb5cdf60", "63087fa5-0000-423d-a716-8f0abb5cdf61"]
    for run_id in (one, *twins):
        _decide(database, ticket_id, route="HUMAN", status="waiting", flow_run_id=run_id)
    with database.session() as session:
        assert resolve_waiting_run(session, "17529A2C") == one
        assert resolve_waiting_run(session, f" {one} ") == one
        assert resolve_waiting_run(session, "63087fa5-f") == twins[0]
        for reference, message in [
            ("63087fa5", "names 2 waiting runs"),
            ("1752", "give the id or its first 8 or more characters"),
            ("1752%%%%", "is not a flow run id"),
            ("99999999", "no run waiting at a checkpoint starts with 99999999"),
        ]:
            with pytest.raises(HitlError, match=message):
                resolve_waiting_run(session, reference)
