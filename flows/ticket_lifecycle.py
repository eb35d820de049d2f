"""One ticket's lifecycle: triage, escalation, remediation, reply; at each stage the AI proposes,
the policy routes, and when a human must look the run suspends (holding no process) until an
operator resumes it with the checkpoint's form."""

from __future__ import annotations

from prefect import flow
from prefect.flow_runs import suspend_flow_run

from hitl.checkpoints import form_class
from hitl.lifecycle.engine import StageStatus
from policies.checkpoint_policy import CHECKPOINTS
from tasks.lifecycle import announce_waiting, finish, propose, record, settle

BACKSTOP_S = 600  # the sweeper marks a checkpoint overdue at its deadline; Prefect fails the run 10 min later


@flow(name="ticket-lifecycle", description="A ticket from triage to reply, with human checkpoints.")
def ticket_lifecycle(ticket_id: int) -> str:
    for checkpoint in CHECKPOINTS:
        propose(ticket_id, checkpoint)
        state = settle(ticket_id, checkpoint, [])
        # Attempts count per checkpoint: a re-run skips the checkpoints already answered (settle
        # reads the database), so a count over the whole run would give the waiting checkpoint a
        # lower number than its answer was stored under, and ask again. Within the checkpoint the
        # loop replays its earlier answers (refused, or a first approval) in order up to the latest.
        attempt = 0
        while state.status is StageStatus.NEEDS_HUMAN:
            assert state.view is not None and state.timeout_seconds is not None
            key = f"{checkpoint}-{state.decision_ids[0]}-{attempt}"
            attempt += 1
            announce_waiting(state, key)
            answer = suspend_flow_run(  # Prefect's own expiry is only a backstop behind checkpoint-timeouts
                wait_for_input=form_class(state.view),
                key=key,
                timeout=int(state.timeout_seconds) + BACKSTOP_S,
            )
            result = record(ticket_id, checkpoint, answer.model_dump(exclude={"metadata"}), key)
            if result.stop:
                return finish(ticket_id, "; ".join(result.problems))
            state = settle(ticket_id, checkpoint, result.problems)
        if state.status is StageStatus.STOPPED:
            return finish(ticket_id, state.message)
    return finish(ticket_id, None)
