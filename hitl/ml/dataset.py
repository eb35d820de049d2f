"""Labelled training and evaluation data: a ticket file read through a column mapping, optionally
corrected by the labels humans gave in reviews (the override log).

The text a model sees is always `subject + " " + body`, built by `ticket_text`, at training and at
prediction time alike.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hitl.errors import ConfigError
from hitl.ingestion.files import check_file, iter_file
from hitl.ingestion.pipeline import validate_record
from hitl.models import TicketRecord
from hitl.store.orm import Decision, Review, Ticket
from policies.mappings import ColumnMapping


def ticket_text(subject: str | None, body: str | None) -> str:
    return f"{subject or ''} {body or ''}".strip()


@dataclass
class LabelledSet:
    """Parallel lists; `keys` are (source, external_id), so reviews can find their tickets."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)
    # a second label of the same tickets (None where a ticket has none), for a head that a finer
    # label helps (hitl/ml/auxiliary.py); None when not asked for or not in the data
    auxiliary: list[str | None] | None = None
    auxiliary_label: str | None = None
    description: str = ""
    skipped_invalid: int = 0
    skipped_unlabelled: int = 0
    from_reviews: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def content_hash(self) -> str:
        """SHA-256 over (text, label) pairs in order: the registry's training-data fingerprint."""
        digest = hashlib.sha256()
        for i, (text, label) in enumerate(zip(self.texts, self.labels, strict=True)):
            digest.update(text.encode("utf-8", "surrogateescape"))
            digest.update(b"\x1f")
            digest.update(label.encode("utf-8"))
            if self.auxiliary is not None:  # the model learnt from it too
                digest.update(b"\x1f" + (self.auxiliary[i] or "").encode("utf-8"))
            digest.update(b"\x1e")
        return digest.hexdigest()

    def has_auxiliary(self, per_label: int = 1) -> bool:
        """Enough of the auxiliary label to learn from: two values with `per_label` tickets each."""
        return self.auxiliary is not None and enough_labels(self.auxiliary, per_label)


def enough_labels(labels: Iterable[str | None], per_label: int) -> bool:
    """Whether at least two labels have `per_label` tickets or more (None: no label)."""
    counts = Counter(label for label in labels if label)
    return sum(1 for n in counts.values() if n >= per_label) >= 2


def label_of(record: TicketRecord, label: str) -> str | None:
    """A ticket field (`category`, `queue`, ...) or a label the mapping kept (`sub_category1`)."""
    if label in TicketRecord.model_fields and label != "labels":
        value = getattr(record, label)
        return None if value is None else str(getattr(value, "value", value))
    kept = record.labels.get(label)
    return kept if isinstance(kept, str) else None


def resolve_label(mapping: ColumnMapping, label: str) -> str:
    """Accept the ticket field name or the source column name; return the field/label name."""
    if label in mapping.fields or label in mapping.extras:
        return label
    for target, column in mapping.fields.items():
        if column == label:
            return target
    for key, column in mapping.extras.items():
        if column == label:
            return key
    known = sorted({*mapping.fields, *mapping.extras} - {"external_id", "body", "subject"})
    raise ConfigError(f"mapping {mapping.name!r} has no label {label!r} (known: {', '.join(known)})")


def load_labelled(
    path: Path, mapping: ColumnMapping, label: str, source: str | None = None, auxiliary: str | None = None
) -> LabelledSet:
    """Every valid, labelled record of the file; invalid and unlabelled rows are counted, not used.
    `auxiliary` names a second label to read alongside, when the mapping has it (else ignored)."""
    check_file(path, mapping.required_columns)
    field_name = resolve_label(mapping, label)
    source_name = source or mapping.source
    data = LabelledSet(description=f"{path} (mapping {mapping.name}, label {field_name})")
    aux_name = None
    if auxiliary and auxiliary != field_name:
        try:
            aux_name = resolve_label(mapping, auxiliary)
        except ConfigError:
            aux_name = None
    if aux_name:
        data.auxiliary, data.auxiliary_label = [], aux_name
    for raw in iter_file(path):
        result = validate_record(raw, mapping, "unassigned")
        if isinstance(result, str):
            data.skipped_invalid += 1
            continue
        value = label_of(result, field_name)
        if value is None or not value.strip():
            data.skipped_unlabelled += 1
            continue
        data.texts.append(ticket_text(result.subject, result.body))
        data.labels.append(value.strip())
        data.keys.append((source_name, result.external_id))
        if data.auxiliary is not None and aux_name:
            aux_value = label_of(result, aux_name)
            data.auxiliary.append(aux_value.strip() if aux_value and aux_value.strip() else None)
    if not data.labels:
        raise ConfigError(f"{path}: no valid record has a {field_name!r} label")
    return data


def apply_reviews(data: LabelledSet, session: Session, head: str) -> LabelledSet:
    """Add the final labels humans gave at the triage checkpoint for this head; a human label
    wins over the file's. Reviewed tickets missing from the file are added from the store."""
    rows = session.execute(
        select(Ticket.source, Ticket.external_id, Ticket.subject, Ticket.body, Review.final_value)
        .join(Decision, Review.decision_id == Decision.id)
        .join(Ticket, Decision.ticket_id == Ticket.id)
        .where(Decision.checkpoint == "triage", Decision.head == head, Review.final_value.is_not(None))
        .order_by(Review.created_at, Review.id)
    ).all()
    latest: dict[tuple[str, str], tuple[str, str]] = {}
    for source, external_id, subject, body, final_value in rows:
        latest[(source, external_id)] = (ticket_text(subject, body), final_value)  # later reviews win
    out = LabelledSet(
        texts=list(data.texts),
        labels=list(data.labels),
        keys=list(data.keys),
        auxiliary=None if data.auxiliary is None else list(data.auxiliary),
        auxiliary_label=data.auxiliary_label,
        description=data.description + f" + {len(latest)} reviewed",
        skipped_invalid=data.skipped_invalid,
        skipped_unlabelled=data.skipped_unlabelled,
    )
    index = {key: i for i, key in enumerate(out.keys)}
    for key, (text, final_value) in latest.items():
        if key in index:
            out.labels[index[key]] = final_value
        else:
            out.texts.append(text)
            out.labels.append(final_value)
            out.keys.append(key)
            if out.auxiliary is not None:  # a ticket only the store knows: its auxiliary label is unknown
                out.auxiliary.append(None)
    out.from_reviews = len(latest)
    return out
