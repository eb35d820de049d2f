"""Remediation: proposing a runbook for a ticket, executing it once, and recording the result.

The checkpoint in front of it (which humans approve, which runbooks run autonomously) is policy
and lives elsewhere; this package only guarantees that an approved action runs at most once,
in a sandbox or through an authenticated webhook, and that its outcome is stored.
"""

from hitl.remediation.executors import ExecutionResult, Executor, SubprocessExecutor, WebhookExecutor
from hitl.remediation.idempotency import ExecutionOutcome, execute_once, idempotency_key
from hitl.remediation.matching import RunbookMatch, match_runbooks

__all__ = [
    "ExecutionOutcome",
    "ExecutionResult",
    "Executor",
    "RunbookMatch",
    "SubprocessExecutor",
    "WebhookExecutor",
    "execute_once",
    "idempotency_key",
    "match_runbooks",
]
