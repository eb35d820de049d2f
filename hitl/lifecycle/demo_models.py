"""Demo models for `hitl serve --demo` on a fresh machine: trained on generated tickets only when
no model is active, so the demo's triage has something to propose (real models come from
`hitl train` on real data)."""

from __future__ import annotations

from hitl.demo import generate_tickets
from hitl.ml import service
from hitl.ml.dataset import LabelledSet, label_of, ticket_text
from hitl.ml.registry import active_versions
from hitl.ml.training import train
from hitl.settings import Settings
from hitl.store.db import get_database


def ensure_demo_models(settings: Settings, count: int = 1500, seed: int = 1) -> list[str]:
    db = get_database(settings)
    with db.session() as session:
        active = set(active_versions(session))
    missing = [h for h in settings.heads if h not in active]
    if not missing:
        return [f"active models: {', '.join(sorted(active))}"]
    records = generate_tickets(count=count, seed=seed)
    lines = []
    for head in missing:
        data = LabelledSet(description=f"demo generator (count {count}, seed {seed}), label {head}")
        for record in records:
            value = label_of(record, head)
            if value:
                data.texts.append(ticket_text(record.subject, record.body))
                data.labels.append(value)
                data.keys.append(("demo-training", record.external_id))
        result = train(data, head, seed=seed, cv_folds=0)
        with db.session() as session:
            row = service.register(
                session, settings.effective_models_dir, result, data, head, make_active=True
            )
        lines.append(f"trained demo model {row.version} ({len(data)} generated tickets)")
    return lines
