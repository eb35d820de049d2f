"""Building the lifecycle's resources from settings, once per process."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hitl.lifecycle.resources import LifecycleResources
from hitl.ml.registry import ModelError
from hitl.ml.service import ActiveModels
from hitl.settings import Settings
from hitl.store.db import get_database
from hitl.store.orm import Client, Ticket


def _executor_factory(settings: Settings) -> Any:
    from hitl.remediation.executors import SubprocessExecutor, WebhookExecutor

    subprocess_executor = SubprocessExecutor(settings.effective_sandbox_dir)
    webhook = (
        WebhookExecutor(settings.rmm_webhook_url, token=settings.rmm_token)
        if settings.rmm_webhook_url
        else None
    )

    def executor_for(runbook: Any) -> Any:
        if runbook.executor == "webhook":
            if webhook is None:
                raise ModelError(f"runbook {runbook.id} needs HITL_RMM_WEBHOOK_URL (the RMM tool's endpoint)")
            return webhook
        return subprocess_executor

    return executor_for


def unavailable_runbooks(settings: Settings, catalog: dict[str, Any]) -> dict[str, str]:
    """Runbooks whose executor this deployment lacks. Offered anyway, an approved one failed the
    ticket's run at execution ("needs HITL_RMM_WEBHOOK_URL") and left the ticket waiting, in no
    queue: `make run` has no RMM tool, and the demo's firewall tickets all matched a webhook runbook."""
    if settings.rmm_webhook_url:
        return {}
    reason = "its executor is the RMM webhook and HITL_RMM_WEBHOOK_URL is not set"
    return {runbook_id: reason for runbook_id, rb in catalog.items() if rb.executor == "webhook"}


def runbook_catalog(settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """The runbooks, and those of them this deployment cannot run (why): the flow's resources and
    the CLI's view of a waiting form must offer the same choices."""
    from policies.runbooks import load_runbook_catalog

    catalog = load_runbook_catalog(settings.runbooks_dir)
    return catalog, unavailable_runbooks(settings, catalog)


def _reply_drafter(settings: Settings) -> Any:
    """Templates are read (and checked) now; drafting's imports (scikit-learn, SciPy: seconds of
    CPU) wait for the first draft, so a flow-run process that stops at an earlier checkpoint never
    pays for them."""
    from hitl.replies.templates import load_reply_templates

    templates = load_reply_templates()
    index: list[Any] = []

    def drafter(ticket: Ticket, client: Client, session: Session) -> Any:
        from hitl.replies.drafting import draft_reply
        from hitl.replies.retrieval import ReplyIndex, store_ref

        if not index:  # built in the caller's transaction: a second one would wait on SQLite's write lock
            index.append(ReplyIndex.from_store(session))
        ref = store_ref(ticket.source, ticket.external_id)
        return draft_reply(
            ticket_ref=ref,
            subject=ticket.subject,
            body=ticket.body,
            category=ticket.assigned_queue or ticket.category,
            language=ticket.language,
            client=client.name,
            index=index[0],
            templates=templates,
            signature=settings.reply_signature,
            exclude_refs=(ref,),
        )

    return drafter


def build_resources(settings: Settings, flow_run_id: str | None = None) -> LifecycleResources:
    db = get_database(settings)
    with db.session() as session:  # registry rows only: files load later, outside any transaction
        models = ActiveModels.read(session, settings.effective_models_dir, list(settings.heads))
    runbooks, unavailable = runbook_catalog(settings)
    return LifecycleResources(
        db=db,
        models=models,
        runbooks=runbooks,
        unavailable_runbooks=unavailable,
        executor_for=_executor_factory(settings),
        reply_drafter=_reply_drafter(settings),
        triage_heads=settings.heads,
        flow_run_id=flow_run_id,
    )
