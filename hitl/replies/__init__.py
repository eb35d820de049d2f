"""Reply drafting for the ticket lifecycle's last checkpoint: templates plus the answers of similar
resolved tickets make a draft, an operator approves (and may edit) it, the outbox keeps the final
text with its edit distance from the draft, and SMTP sending is optional.

Importable without Prefect; the flow and its form wire these pieces together.
"""

from hitl.replies.distance import edit_distance, normalised_edit_distance
from hitl.replies.drafting import (
    DraftSource,
    ReplyDraft,
    adapt_answer,
    confidence_from_similarity,
    draft_reply,
)
from hitl.replies.outbox import OutboxStatus, mark_failed, mark_sent, pending, queue_reply
from hitl.replies.retrieval import Neighbour, ReplyIndex, ReplyRecord, store_ref
from hitl.replies.smtp import SendReport, SmtpSender
from hitl.replies.templates import ReplyTemplates, TemplateError, load_reply_templates, render

__all__ = [
    "DraftSource",
    "Neighbour",
    "OutboxStatus",
    "ReplyDraft",
    "ReplyIndex",
    "ReplyRecord",
    "ReplyTemplates",
    "SendReport",
    "SmtpSender",
    "TemplateError",
    "adapt_answer",
    "confidence_from_similarity",
    "draft_reply",
    "edit_distance",
    "load_reply_templates",
    "mark_failed",
    "mark_sent",
    "normalised_edit_distance",
    "pending",
    "queue_reply",
    "render",
    "store_ref",
]
