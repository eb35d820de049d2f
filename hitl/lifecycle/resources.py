"""What the lifecycle stages need, built once per process and passed in (models, runbooks, the
reply index, executors), so tests hand in real local parts and nothing is a hidden global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hitl.ml.predictor import LoadedModel
from hitl.store.db import Database

PRIORITIES = ["critical", "high", "medium", "low"]


@dataclass
class LifecycleResources:
    db: Database
    models: dict[str, LoadedModel] = field(default_factory=dict)  # triage heads with an active model
    runbooks: dict[str, Any] = field(default_factory=dict)
    executor_for: Callable[[Any], Any] | None = None  # runbook -> Executor
    reply_drafter: Callable[..., Any] | None = None  # (ticket, client, session) -> ReplyDraft
    triage_heads: tuple[str, ...] = ("category", "priority")
    flow_run_id: str | None = None

    def choices(self, head: str) -> list[str] | None:
        if head in self.models:
            return list(self.models[head].classes)
        return PRIORITIES if head == "priority" else None
