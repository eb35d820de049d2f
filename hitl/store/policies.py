"""Policy versions in the database: immutable rows, the newest in force.

Version 1 is seeded from policies/checkpoints.yaml on first use. A rollback creates a new
version with an old document, so the history only ever grows and every decision's recorded
version still means what it meant.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hitl.errors import ConfigError
from hitl.store.orm import PolicyVersion, name_problem, utcnow
from policies.checkpoint_policy import PolicyDocument, load_policy_file, parse_policy


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def current_policy(session: Session) -> tuple[int, PolicyDocument]:
    """The version in force and its document; seeds version 1 from the YAML file when empty."""
    row = session.execute(select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(1)).scalar()
    if row is None:
        document = load_policy_file()
        try:
            with session.begin_nested():
                row = _insert(session, 1, document, "system", "initial policy from policies/checkpoints.yaml")
        except IntegrityError:  # another process seeded it first
            row = session.get(PolicyVersion, 1)
            assert row is not None
    return row.version, parse_policy(row.document, f"policy version {row.version}")


def get_policy(session: Session, version: int) -> PolicyDocument:
    current_policy(session)  # a fresh database has version 1 (the file) like every other reader sees
    row = session.get(PolicyVersion, version)
    if row is None:
        raise ConfigError(f"no policy version {version} (see `hitl policy history`)")
    return parse_policy(row.document, f"policy version {version}")


def _insert(session: Session, version: int, document: PolicyDocument, by: str, reason: str) -> PolicyVersion:
    data = document.model_dump(mode="json")
    row = PolicyVersion(
        version=version,
        document=data,
        sha256=_digest(data),
        created_by=by,
        reason=reason,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def create_version(session: Session, document: PolicyDocument, created_by: str, reason: str) -> PolicyVersion:
    """A new version in force from now on; who and why are required, never defaulted."""
    if not created_by.strip() or not reason.strip():
        raise ConfigError("a new policy version needs who approved it and why")
    problem = name_problem(created_by.strip(), "the approver's name")
    if problem:
        raise ConfigError(problem)
    current_policy(session)
    latest = session.execute(select(func.max(PolicyVersion.version))).scalar_one()
    return _insert(session, int(latest) + 1, document, created_by.strip(), reason.strip())


def rollback(session: Session, version: int, created_by: str, reason: str) -> PolicyVersion:
    """Why is required here too: the prefix alone ("rollback to v3: ") would pass as a reason."""
    if not reason.strip():
        raise ConfigError("a new policy version needs who approved it and why")
    return create_version(
        session, get_policy(session, version), created_by, f"rollback to v{version}: {reason.strip()}"
    )


def history(session: Session) -> list[PolicyVersion]:
    current_policy(session)
    return list(session.execute(select(PolicyVersion).order_by(PolicyVersion.version.desc())).scalars())
