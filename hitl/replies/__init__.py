"""Reply drafting for the ticket lifecycle's last checkpoint: templates plus the answers of similar
resolved tickets make a draft, an operator approves (and may edit) it, the outbox keeps the final
text with its edit distance from the draft, and SMTP sending is optional.

Importable without Prefect; the flow and its form wire these pieces together. The names below load
their module on first use: retrieval pulls in scikit-learn and SciPy (seconds), and every flow-run
process that imports one light module of this package (templates, the outbox) must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "edit_distance": "distance",
    "normalised_edit_distance": "distance",
    "DraftSource": "drafting",
    "ReplyDraft": "drafting",
    "adapt_answer": "drafting",
    "confidence_from_similarity": "drafting",
    "draft_reply": "drafting",
    "OutboxStatus": "outbox",
    "mark_failed": "outbox",
    "mark_sent": "outbox",
    "pending": "outbox",
    "queue_reply": "outbox",
    "Neighbour": "retrieval",
    "ReplyIndex": "retrieval",
    "ReplyRecord": "retrieval",
    "store_ref": "retrieval",
    "SendReport": "smtp",
    "SmtpSender": "smtp",
    "ReplyTemplates": "templates",
    "TemplateError": "templates",
    "load_reply_templates": "templates",
    "render": "templates",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
