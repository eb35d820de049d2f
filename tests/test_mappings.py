"""Column mappings are data: the shipped ones load, and a broken file is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl.errors import ConfigError, UnknownMappingError
from hitl.models import TicketRecord
from policies.mappings import available_mappings, load_mapping


def test_shipped_mappings() -> None:
    assert {"canonical", "endava", "helpdesk"} <= set(available_mappings())
    endava = load_mapping("endava")
    assert endava.fields["external_id"] == "ticket_id" and endava.fields["subject"] == "title"
    assert endava.required_columns == ["ticket_id", "body"]


def test_endava_row_becomes_a_record() -> None:
    row = {
        "ticket_id": "END-1",
        "title": "",
        "body": "vpn down",
        "ticket_type": "0",
        "category": "4",
        "sub_category1": "21",
        "sub_category2": "77",
        "business_service": "65",
        "urgency": "1",
        "impact": "3",
    }
    record = TicketRecord.model_validate(load_mapping("endava").apply(row))
    assert record.subject == "" and record.category == "4" and record.urgency == 1
    assert record.labels == {"sub_category1": "21", "sub_category2": "77"}


def test_helpdesk_row_becomes_a_resolved_record_with_tags() -> None:
    row = {
        "id": "36",
        "subject": "Zoom",
        "body": "crash",
        "answer": "update it",
        "type": "Incident",
        "queue": "Product Support",
        "priority": "high",
        "language": "fr",
        "business_type": "Shop",
        "tag_1": "Bug",
        "tag_2": "Crash",
        "tag_3": "",
        "tag_9": None,
    }
    record = TicketRecord.model_validate(load_mapping("helpdesk").apply(row))
    assert record.status == "resolved" and record.resolution == "update it"
    assert record.labels == {"business_type": "Shop", "tags": ["Bug", "Crash"]}
    assert record.priority == "high" and record.queue == "Product Support"


def test_nested_json_paths(tmp_path: Path) -> None:
    (tmp_path / "psa.yaml").write_text(
        "name: psa\nsource: psa\nfields:\n  external_id: id\n  body: details.text\n  client: company.name\n"
    )
    mapping = load_mapping("psa", tmp_path)
    data = mapping.apply({"id": 7, "details": {"text": "hi"}, "company": {"name": "Acme"}})
    assert data == {"external_id": 7, "body": "hi", "client": "Acme"}


def test_unknown_and_broken_mappings(tmp_path: Path) -> None:
    with pytest.raises(UnknownMappingError, match=r"unknown mapping 'nope' \(known: .*endava"):
        load_mapping("nope")
    with pytest.raises(UnknownMappingError, match="invalid mapping name"):
        load_mapping("../etc/passwd")
    (tmp_path / "bad.yaml").write_text("name: bad\nsource: s\nfields:\n  external_id: id\n  colour: c\n")
    with pytest.raises(ConfigError, match="unknown ticket field"):
        load_mapping("bad", tmp_path)
    (tmp_path / "nobody.yaml").write_text("name: nobody\nsource: s\nfields:\n  external_id: id\n")
    with pytest.raises(ConfigError, match=r"fields must map \['body'\]"):
        load_mapping("nobody", tmp_path)
    (tmp_path / "junk.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_mapping("junk", tmp_path)
