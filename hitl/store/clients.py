"""Clients: created on first sight of their name, with tier and SLA from the MSP's catalog."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hitl.models import ClientSpec
from hitl.store.orm import Client


def ensure_clients(
    session: Session, names: Iterable[str], catalog: Mapping[str, ClientSpec]
) -> dict[str, int]:
    """Ids of the named clients, creating the missing ones (safe against a concurrent creator)."""
    wanted = set(names)
    if not wanted:
        return {}
    found = dict(session.execute(select(Client.name, Client.id).where(Client.name.in_(wanted))).all())
    for name in sorted(wanted - set(found)):
        spec = catalog.get(name) or ClientSpec(name=name)
        try:
            with session.begin_nested():
                client = Client(
                    name=name,
                    tier=spec.tier.value,
                    sla_hours={k.value: v for k, v in spec.sla_hours.items()},
                )
                session.add(client)
                session.flush()
                found[name] = client.id
        except IntegrityError:  # another ingestion created it first
            found[name] = session.execute(select(Client.id).where(Client.name == name)).scalar_one()
    return {name: found[name] for name in wanted}


def list_clients(session: Session) -> list[Client]:
    return list(session.execute(select(Client).order_by(Client.name)).scalars())
