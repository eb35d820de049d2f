"""Escalation scoring and the checkpoint forms (schema, escaping, cross-field checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hitl.checkpoints import CheckpointView, Suggestion, TicketView, Verdict, check_review, form_class
from hitl.lifecycle.escalation import EscalationInput, recommend_tier, reopen_signals
from hitl.ml.predictor import Alternative

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def test_routine_ticket_is_t1_and_sure() -> None:
    result = recommend_tier(EscalationInput(priority="low", client_tier="standard", created_at=NOW, now=NOW))
    assert (
        result.tier == "T1" and result.confidence >= 0.85 and result.sla_deadline == NOW + timedelta(hours=24)
    )


def test_critical_reopened_platinum_ticket_near_its_deadline_is_t3() -> None:
    result = recommend_tier(
        EscalationInput(
            priority="critical",
            impact=4,
            urgency=3,
            client_tier="platinum",
            sla_hours=1,
            created_at=NOW - timedelta(minutes=50),
            now=NOW,
            reopen_signals=2,
            recent_client_incidents=4,
        )
    )
    assert result.tier == "T3" and result.score >= 6
    assert any("SLA deadline" in r for r in result.reasons) and any("reopened" in r for r in result.reasons)


def test_borderline_scores_are_less_confident() -> None:
    sure = recommend_tier(EscalationInput(priority="low", created_at=NOW, now=NOW))
    borderline = recommend_tier(EscalationInput(priority="high", created_at=NOW, now=NOW))
    assert borderline.confidence < sure.confidence


def test_reopen_signals() -> None:
    assert reopen_signals("Printer jammed AGAIN", "third time this week, see DEMO-000123") == 3
    assert reopen_signals("New laptop", "please set up") == 0


def view(**changes: object) -> CheckpointView:
    base = CheckpointView(
        checkpoint="triage",
        ticket=TicketView(
            id=7,
            external_id="T-7",
            source="demo",
            client="Acme",
            client_tier="gold",
            subject="VPN down",
            body="cannot connect",
            created_at=NOW,
        ),
        suggestions=[
            Suggestion(
                field="category",
                label="category",
                ai_value="vpn",
                confidence=0.6,
                threshold=0.8,
                alternatives=[Alternative(label="vpn", probability=0.6)],
                choices=["vpn", "mailbox"],
            ),
            Suggestion(
                field="priority",
                label="priority",
                ai_value="high",
                confidence=0.9,
                threshold=0.8,
                choices=["critical", "high", "medium", "low"],
            ),
        ],
        why_human="confidence 0.60 is below the threshold 0.80",
        reason_codes=["wrong_category", "other"],
    )
    return base.model_copy(update=changes)


def test_form_schema_offers_valid_choices_prefilled() -> None:
    schema = form_class(view()).model_json_schema()
    props = schema["properties"]
    assert props["category"]["enum"] == ["vpn", "mailbox"] and props["category"]["default"] == "vpn"
    assert props["decision"]["enum"] == ["approve", "override", "reject", "escalate"]
    assert props["reason_code"]["enum"] == ["none", "wrong_category", "other"]
    assert schema["required"] == ["reviewer"]
    assert props["comment"]["maxLength"] == 4000 and props["reviewer"]["maxLength"] == 200


def test_untrusted_ticket_text_is_rendered_literally() -> None:
    hostile = "**bold** <script>alert(1)</script> [click](http://evil.example) ``` `x`"
    ticket = view().ticket.model_copy(update={"subject": hostile, "body": hostile + "\n# heading"})
    description = form_class(view(ticket=ticket))._description
    subject_line = next(line for line in description.splitlines() if line.startswith("**Subject:**"))
    assert subject_line == "**Subject:** ```` " + hostile + " ````"
    body = description.split("**Body:**", 1)[1]
    assert body.strip().startswith("````text\n" + hostile + "\n# heading\n````")


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (
            {"decision": "approve", "category": "mailbox", "reviewer": "bob"},
            "you changed category but chose approve",
        ),
        (
            {"decision": "override", "category": "vpn", "reviewer": "bob", "reason_code": "other"},
            "differs from",
        ),
        ({"decision": "override", "category": "mailbox", "reviewer": "bob"}, "override needs a reason code"),
        ({"decision": "reject", "reviewer": "bob"}, "reject needs a reason code"),
        ({"decision": "approve", "reviewer": " "}, "fill in reviewer"),
        ({"decision": "approve", "reviewer": "bob", "reason_code": "tone"}, "not one of"),
        # a 1 MB comment went through the UI and was stored with each review and in the audit chain
        ({"decision": "approve", "reviewer": "bob", "comment": "x" * 4001}, "comment is longer than 4000"),
        ({"decision": "approve", "reviewer": "b" * 201}, "reviewer is 201 characters: at most 200"),
    ],
)
def test_inconsistent_answers_are_refused(answer: dict[str, str], problem: str) -> None:
    result = check_review(view(), answer)
    assert isinstance(result, list) and any(problem in p for p in result), result


def test_consistent_override_and_four_eyes() -> None:
    verdict = check_review(
        view(),
        {
            "decision": "override",
            "category": "mailbox",
            "priority": "high",
            "reviewer": "bob",
            "reason_code": "wrong_category",
            "comment": " x ",
        },
    )
    assert not isinstance(verdict, list)
    assert verdict.changed == ["category"] and verdict.final_values == {
        "category": "mailbox",
        "priority": "high",
    }
    assert verdict.comment == "x" and verdict.reason_code == "wrong_category"
    second = check_review(
        view(approvals_needed=2, approved_by=["bob"]), {"decision": "approve", "reviewer": "bob"}
    )
    assert isinstance(second, list) and "second, different approver" in second[0]


@pytest.mark.parametrize(
    "answer",
    [
        {"decision": "approve", "reviewer": "eve\ud800"},
        {"decision": "approve", "reviewer": "eve", "comment": "ok \udcff"},
        {"decision": "approve", "reviewer": "eve", "extra": ["fine", {"k": "\ud83d"}]},
        {"decision": "approve", "reviewer": "\x00"},  # PostgreSQL's text refuses NUL: a refusal, not a crash
        {"decision": "override", "reviewer": "eve", "category": "mail\x00box", "reason_code": "other"},
    ],
)
def test_broken_unicode_in_an_answer_is_refused_with_one_problem(answer: dict[str, object]) -> None:
    problems = check_review(view(), answer)
    assert isinstance(problems, list) and len(problems) == 1 and "not valid text" in problems[0]
    assert isinstance(check_review(view(), {"decision": "approve", "reviewer": "ève 😀"}), Verdict)
