"""What the lifecycle stages need, built once per process and passed in (models, runbooks, the
reply index, executors), so tests hand in real local parts and nothing is a hidden global."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hitl.ml.predictor import LoadedModel
from hitl.store.db import Database

PRIORITIES = ["critical", "high", "medium", "low"]


@dataclass
class LifecycleResources:
    db: Database
    # triage heads with an active model: a dict in tests, hitl.ml.service.ActiveModels when built
    models: Mapping[str, LoadedModel] = field(default_factory=dict)
    runbooks: dict[str, Any] = field(default_factory=dict)
    # runbook id -> why it cannot run in this deployment (its executor is not configured): such a
    # runbook is never proposed or offered, and one approved earlier escalates instead of failing
    unavailable_runbooks: dict[str, str] = field(default_factory=dict)
    executor_for: Callable[[Any], Any] | None = None  # runbook -> Executor
    reply_drafter: Callable[..., Any] | None = None  # (ticket, client, session) -> ReplyDraft
    triage_heads: tuple[str, ...] = ("category", "priority")
    flow_run_id: str | None = None

    def load_models(self) -> None:
        """Load the triage models now (lazily built sets load on first use) so that it happens
        outside the caller's transaction."""
        for head in self.triage_heads:
            if head in self.models:
                self.models[head]

    def choices(self, head: str) -> list[str] | None:
        if head in self.models:
            registry_classes = getattr(self.models, "classes", None)  # ActiveModels: without a load
            if callable(registry_classes):
                return list(registry_classes(head))
            return list(self.models[head].classes)
        return PRIORITIES if head == "priority" else None
