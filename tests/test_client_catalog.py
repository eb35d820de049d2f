"""The client catalog: the shipped file is sound, and every kind of mistake is reported on one line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hitl.models import ClientTier, Priority
from policies.clients import DEFAULT_CATALOG, load_client_catalog

TIER_ORDER = [ClientTier.platinum, ClientTier.gold, ClientTier.silver, ClientTier.bronze, ClientTier.standard]


def test_shipped_catalog_lists_seven_clients_keyed_by_name() -> None:
    catalog = load_client_catalog()

    assert len(catalog) == 7
    assert all(name == spec.name for name, spec in catalog.items())
    assert {spec.tier for spec in catalog.values()} == set(ClientTier)
    assert all(set(spec.sla_hours) == set(Priority) for spec in catalog.values())


def test_default_path_is_the_yaml_next_to_the_module() -> None:
    assert Path(__file__).parent.parent / "policies" / "clients.yaml" == DEFAULT_CATALOG
    assert load_client_catalog(DEFAULT_CATALOG) == load_client_catalog()


def test_higher_tiers_have_stricter_slas() -> None:
    specs = sorted(load_client_catalog().values(), key=lambda spec: TIER_ORDER.index(spec.tier))

    for higher, lower in itertools.pairwise(specs):
        for priority in Priority:
            assert higher.sla_hours[priority] <= lower.sla_hours[priority], (higher.name, priority)
    for priority in Priority:
        assert specs[0].sla_hours[priority] < specs[-1].sla_hours[priority]
    for spec in specs:
        hours = [spec.sla_hours[p] for p in (Priority.critical, Priority.high, Priority.medium, Priority.low)]
        assert hours == sorted(hours) and len(set(hours)) == 4, spec.name


GOOD_ENTRY = "  - name: Acme Dental\n    tier: gold\n"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param(
            "clients:\n" + GOOD_ENTRY + GOOD_ENTRY,
            ["clients[1]", "duplicate", "'Acme Dental'"],
            id="duplicate-name",
        ),
        pytest.param(
            "clients:\n  - name: Acme Dental\n    tier: diamond\n",
            ["clients[0]", "field 'tier'", "platinum"],
            id="bad-tier",
        ),
        pytest.param("customers:\n" + GOOD_ENTRY, ["top-level 'clients' list"], id="missing-list"),
        pytest.param(
            "clients:\n  name: Acme Dental\n", ["top-level 'clients' list"], id="clients-not-a-list"
        ),
        pytest.param("", ["top-level 'clients' list"], id="empty-file"),
        pytest.param(
            "clients:\n  - name: Acme Dental\n\ttier: gold\n",
            ["not valid YAML", "line 3", "cannot start any token"],
            id="broken-yaml",
        ),
        pytest.param("clients:\n  - Acme Dental\n", ["clients[0]", "mapping"], id="entry-not-a-mapping"),
        pytest.param(
            "clients:\n" + GOOD_ENTRY + "  - name: Beta Law\n    colour: red\n",
            ["clients[1]", "colour"],
            id="unknown-field",
        ),
        pytest.param(
            "clients:\n  - name: Acme Dental\n    sla_hours: {critical: 0}\n",
            ["clients[0]", "sla_hours.critical", "greater than 0"],
            id="non-positive-sla",
        ),
        pytest.param(
            "clients:\n  - name: Acme Dental\n    sla_hours: {urgent: 2}\n",
            ["clients[0]", "sla_hours.urgent"],
            id="unknown-priority",
        ),
        pytest.param("clients:\n  - tier: gold\n", ["clients[0]", "field 'name'", "required"], id="no-name"),
    ],
)
def test_catalog_mistakes_raise_one_line_value_error(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ValueError) as caught:
        load_client_catalog(path)

    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ValueError, match="cannot read") as caught:
        load_client_catalog(path)

    assert str(path) in str(caught.value)


def test_valid_custom_catalog_uses_model_defaults(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text("clients:\n  - name: Solo Practice\n", encoding="utf-8")

    catalog = load_client_catalog(path)

    assert list(catalog) == ["Solo Practice"]
    assert catalog["Solo Practice"].tier == ClientTier.standard
    assert catalog["Solo Practice"].sla_hours[Priority.critical] == 4
