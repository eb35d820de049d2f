"""Reply drafting: templates, retrieval (demo and real helpdesk data), drafts and edit distance."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hitl.demo import CATEGORIES, generate_tickets
from hitl.errors import ConfigError
from hitl.ml.dataset import ticket_text
from hitl.models import TicketRecord
from hitl.replies import (
    ReplyIndex,
    ReplyRecord,
    TemplateError,
    adapt_answer,
    confidence_from_similarity,
    draft_reply,
    edit_distance,
    load_reply_templates,
    normalised_edit_distance,
    render,
    store_ref,
)
from hitl.replies.drafting import reply_subject
from hitl.replies.templates import DEFAULT_TEMPLATES_PATH, PLACEHOLDERS, ReplyTemplates
from hitl.store.db import Database
from hitl.store.orm import Client, Ticket

from .support import HELPDESK, needs_shared_data

SIGNATURE = "Service Desk\nBrightpath IT Services"


@pytest.fixture(scope="module")
def templates() -> ReplyTemplates:
    return load_reply_templates()


@pytest.fixture(scope="module")
def demo() -> list[TicketRecord]:
    return generate_tickets(400, seed=5)


@pytest.fixture(scope="module")
def demo_index(demo: list[TicketRecord]) -> ReplyIndex:
    resolved = [t for t in demo if t.resolution]
    return ReplyIndex.from_records(
        (t.external_id, ticket_text(t.subject, t.body), t.resolution, t.language) for t in resolved
    )


def _values(**overrides: str) -> dict[str, str]:
    values = {name: f"<{name}>" for name in PLACEHOLDERS}
    values.update(overrides)
    return values


# ---------------------------------------------------------------- templates
def test_shipped_templates_cover_every_demo_category_and_render(templates: ReplyTemplates) -> None:
    assert set(CATEGORIES) <= set(templates.templates)
    for category in [*CATEGORIES, "default"]:
        for language in templates.languages:
            selected = templates.select(category, language)
            text = render(selected.body, _values())
            assert "<resolution_hint>" in text and "<signature>" in text
            assert "{" not in text and "}" not in text, (category, language)


def test_language_choice_and_fallbacks(templates: ReplyTemplates) -> None:
    assert set(templates.languages) >= {"en", "de", "fr", "es", "pt"}
    assert templates.language_for("de-AT") == "de"
    assert templates.language_for("PT_br") == "pt"
    assert templates.language_for(None) == "en"
    assert templates.language_for("xx") == "en"
    # a category written only in English answers a German ticket with the German default body
    german_vpn = templates.select("vpn", "de")
    assert (german_vpn.template_id, german_vpn.language) == ("default", "de")
    assert templates.select("vpn", "en").template_id == "vpn"
    assert templates.select("no-such-category", "fr").template_id == "default"


def test_render_refuses_unknown_placeholders_and_keeps_values_literal() -> None:
    with pytest.raises(TemplateError, match=r"unknown placeholder\(s\) \{nme\}"):
        render("Hello {nme}", {"name": "x"})
    with pytest.raises(ConfigError, match="not allowed"):
        render("{client.__class__}", {"client": "x"})
    with pytest.raises(ConfigError, match="not allowed"):
        render("{client!r:>20}", {"client": "x"})
    with pytest.raises(ConfigError, match="malformed"):
        render("Hello {client", {"client": "x"})
    # values are inserted once: braces in untrusted text are never expanded
    assert render("{subject} / {{literal}}", {"subject": "{signature}"}) == "{signature} / {literal}"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.replace("\n      {resolution_hint}", "\n      {resolution_hnt}", 1),
            "unknown placeholder",
        ),
        (lambda s: s.replace("\n      {signature}\n", "\n", 1), "must contain {signature}"),
        (lambda s: s.replace("  default:", "  generic:", 1), "'default' template is required"),
        (lambda s: s.replace("languages:", "languages: [", 1), "not valid YAML at line"),
        (lambda s: s.replace('    greeting: "Hello,"', '    greeting: "Hello {name},"', 1), "greeting"),
    ],
)
def test_broken_template_file_is_one_config_error_line(
    tmp_path: Path, edit: Callable[[str], str], message: str
) -> None:
    broken = tmp_path / "reply_templates.yaml"
    broken.write_text(edit(DEFAULT_TEMPLATES_PATH.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_reply_templates(broken)
    text = str(info.value)
    assert message in text and str(broken) in text and "\n" not in text


def test_missing_template_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the reply templates"):
        load_reply_templates(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- retrieval
def test_vpn_ticket_neighbours_are_vpn_tickets(demo: list[TicketRecord], demo_index: ReplyIndex) -> None:
    category = {t.external_id: t.category for t in demo}
    queries = [t for t in demo if t.category == "vpn" and not t.resolution]
    assert len(queries) >= 10
    top3 = []
    for query in queries:
        neighbours = demo_index.nearest(ticket_text(query.subject, query.body), k=3, language="en")
        assert len(neighbours) == 3
        assert category[neighbours[0].ref] == "vpn", (query.subject, neighbours[0])
        assert [n.similarity for n in neighbours] == sorted((n.similarity for n in neighbours), reverse=True)
        top3 += [category[n.ref] == "vpn" for n in neighbours]
    assert sum(top3) / len(top3) >= 0.9


def test_same_language_is_preferred_and_others_fill_up() -> None:
    index = ReplyIndex.from_records(
        [
            ("en-1", "printer paper jam in tray two", "Cleared the jam.", "en"),
            ("de-1", "Drucker Papierstau printer paper jam", "Papierstau entfernt.", "de"),
            ("en-2", "mailbox full cannot send", "Archive enabled.", "en"),
        ]
    )
    query = "printer paper jam in tray two again"
    assert index.nearest(query, k=1)[0].ref == "en-1"
    german = index.nearest(query, k=2, language="de-DE")
    assert [n.ref for n in german] == ["de-1", "en-1"]
    assert index.nearest(query, k=3, exclude_refs={"en-1"})[0].ref == "de-1"
    assert index.nearest(query, k=0) == []
    assert ReplyIndex.from_records([]).nearest(query) == []
    assert all(0.0 <= n.similarity <= 1.0 for n in index.nearest(query, k=3))


def test_records_without_text_or_answer_are_left_out() -> None:
    index = ReplyIndex(
        [ReplyRecord(ref="a", text="vpn down", answer="  "), ReplyRecord(ref="b", text="", answer="x")]
    )
    assert len(index) == 0 and index.nearest("vpn down") == []


def test_building_on_ten_thousand_tickets_takes_seconds() -> None:
    tickets = generate_tickets(10_000, seed=3)
    records = [
        (f"T{i}", ticket_text(t.subject, t.body), f"answer {i}", t.language) for i, t in enumerate(tickets)
    ]
    started = time.perf_counter()
    index = ReplyIndex.from_records(records)
    built = time.perf_counter() - started
    started = time.perf_counter()
    for ticket in tickets[:50]:
        index.nearest(ticket_text(ticket.subject, ticket.body), k=3, language="en")
    per_query = (time.perf_counter() - started) / 50
    print(f"\nreply index: 10,000 tickets built in {built:.2f} s, {per_query * 1000:.1f} ms per query")
    assert len(index) == 10_000
    assert built < 30 and per_query < 0.5


def test_index_from_store(database: Database) -> None:
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with database.session() as session:
        client = Client(name="Acme", tier="gold", sla_hours={})
        session.add(client)
        session.flush()
        rows = [
            ("1", "VPN drops", "Renewed the gateway certificate.", "en"),
            ("2", "Printer jam", "   ", "en"),
        ]
        rows += [("3", "Drucker Papierstau", "Papierstau entfernt.", "de"), ("4", "Mailbox full", None, "en")]
        for external_id, subject, resolution, language in rows:
            session.add(
                Ticket(
                    source="psa",
                    external_id=external_id,
                    client_id=client.id,
                    subject=subject,
                    body=f"{subject} since this morning",
                    created_at=now,
                    content_hash=external_id * 64,
                    status="resolved" if resolution else "new",
                    resolution=resolution,
                    language=language,
                )
            )
    with database.session() as session:
        index = ReplyIndex.from_store(session)
        assert sorted(index.refs) == [store_ref("psa", "1"), store_ref("psa", "3")]
        assert index.nearest("VPN keeps dropping", k=1)[0].answer == "Renewed the gateway certificate."
        assert len(ReplyIndex.from_store(session, limit=1)) == 1
        assert ReplyIndex.from_store(session, limit=1).refs == ["psa:3"]  # the newest first


@needs_shared_data()
@pytest.mark.skipif(not HELPDESK.exists(), reason=f"helpdesk data not found at {HELPDESK}")
def test_helpdesk_nearest_neighbour_shares_the_queue_far_more_often_than_chance() -> None:
    """Leave-one-out on 100 tickets: each is answered from the other 599 (IDF still counts it, a
    small optimism). Baseline: the chance that a random other ticket shares the queue."""
    data = pd.read_csv(HELPDESK, dtype=str, keep_default_na=False)
    index = ReplyIndex.from_records(
        (row.id, ticket_text(row.subject, row.body), row.answer, row.language) for row in data.itertuples()
    )
    queue = dict(zip(data["id"], data["queue"], strict=True))
    sample = data.sample(n=100, random_state=7)
    hits = baseline = 0.0
    for row in sample.itertuples():
        best = index.nearest(
            ticket_text(row.subject, row.body), k=1, language=row.language, exclude_refs={row.id}
        )
        hits += queue[best[0].ref] == row.queue
        baseline += ((data["queue"] == row.queue).sum() - 1) / (len(data) - 1)
    hit_rate, baseline_rate = hits / 100, baseline / 100
    print(
        f"\nhelpdesk leave-one-out (100 tickets): same queue {hit_rate:.2f}, "
        f"random baseline {baseline_rate:.2f}"
    )
    assert hit_rate >= baseline_rate + 0.2
    assert hit_rate >= 2 * baseline_rate


# ---------------------------------------------------------------- drafting
def test_draft_contains_template_text_and_the_retrieved_hint(
    demo: list[TicketRecord], demo_index: ReplyIndex, templates: ReplyTemplates
) -> None:
    query = next(t for t in demo if t.category == "vpn" and not t.resolution)
    draft = draft_reply(
        ticket_ref="T-1001",
        subject=query.subject,
        body=query.body,
        category=query.category,
        language=query.language,
        client="Kessler Precision Manufacturing",
        index=demo_index,
        templates=templates,
        signature=SIGNATURE,
    )
    answers = {t.external_id: t.resolution for t in demo}
    assert draft.template_id == "vpn" and draft.language == "en"
    assert draft.subject == f"Re: {query.subject}"
    assert "Please disconnect and reconnect the VPN once to pick up the change." in draft.body
    assert draft.hint_ref == draft.sources[0].ref
    assert adapt_answer(answers[draft.hint_ref], ticket_ref="T-1001", client="x") in draft.body
    assert "T-1001" in draft.body and draft.body.rstrip().endswith(SIGNATURE)
    assert draft.body.startswith("Hello,\n\n")
    assert 0.0 <= draft.confidence <= 1.0 and len(draft.sources) == 3


def test_confidence_is_higher_for_a_near_duplicate_than_for_an_unrelated_ticket(
    demo: list[TicketRecord], demo_index: ReplyIndex, templates: ReplyTemplates
) -> None:
    resolved = next(t for t in demo if t.resolution and t.category == "printer")

    def confidence(subject: str, body: str) -> float:
        return draft_reply(
            ticket_ref="T-7",
            subject=subject,
            body=body,
            category="printer",
            language="en",
            client="Acme",
            index=demo_index,
            templates=templates,
            signature=SIGNATURE,
        ).confidence

    near = confidence(resolved.subject, resolved.body.replace("Hi,", "Hello,") + " Thanks again.")
    unrelated = confidence(
        "Catering for the summer party", "Please order sandwiches and juice for 40 guests."
    )
    print(f"\nconfidence: near-duplicate {near:.2f}, unrelated {unrelated:.2f}")
    assert near >= 0.8 and unrelated <= 0.2 and near > unrelated


def test_draft_in_the_ticket_language_from_a_helpdesk_style_answer(templates: ReplyTemplates) -> None:
    answer = (
        "Sehr geehrter <name>,\n\nvielen Dank für Ihre Nachricht. Bitte starten Sie den Router neu "
        "und rufen Sie uns unter <tel_num> an, Vorgang <ticket_number>. Details: {signature}<br>\n\n"
        "Mit freundlichen Grüßen,\nKundenservice"
    )
    index = ReplyIndex.from_records([("hd:1", "Router startet ständig neu, kein Internet", answer, "de")])
    draft = draft_reply(
        ticket_ref="T-55",
        subject="Router startet neu\r\nBcc: x@example.com",
        body="Unser Router startet ständig neu und wir haben kein Internet.",
        category=None,
        language="de",
        client="Acme",
        index=index,
        templates=templates,
        signature=SIGNATURE,
    )
    assert draft.template_id == "default" and draft.language == "de"
    assert draft.body.startswith("Guten Tag,\n\nvielen Dank für Ihre Nachricht zu")
    assert "Vielen Dank für Ihre Nachricht. Bitte starten Sie den Router neu" in draft.body
    assert "[phone number]" in draft.body and "Vorgang T-55" in draft.body and "{signature}" in draft.body
    assert "Sehr geehrter" not in draft.body and "Kundenservice" not in draft.body and "<" not in draft.body
    assert draft.to_fill == ["[phone number]"]
    assert draft.subject == "Re: Router startet neu Bcc: x@example.com"
    assert draft.confidence > 0


def test_no_neighbour_gives_the_no_hint_line_and_zero_confidence(templates: ReplyTemplates) -> None:
    draft = draft_reply(
        ticket_ref="T-9",
        subject="Question",
        body="Anything",
        category="outage",
        language="en",
        client="Acme",
        index=ReplyIndex.from_records([]),
        templates=templates,
        signature=SIGNATURE,
    )
    assert draft.confidence == 0.0 and draft.sources == [] and draft.hint_ref is None
    assert templates.languages["en"].no_hint in draft.body


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Dear <name>,\n\nPlease restart it.\n\nBest regards,\nSupport Team", "Please restart it."),
        ("Estimado <name>, reinicie el equipo. Saludos cordiales, Soporte al Cliente", "Reinicie el equipo."),
        ("Caro <name>,<br><br>Reinicie.<br><br> Atenciosamente,<br> Suporte", "Reinicie."),
        ("Thanks, we will restart the server tonight.", "Thanks, we will restart the server tonight."),
        ("Cher <name>, merci. Cordialement, <name>.", "Merci."),
        (
            "See [Guide link] or ask <name> about <order_num>.",
            "See [Guide link] or ask [name] about [order number].",
        ),
    ],
)
def test_adapt_answer(answer: str, expected: str) -> None:
    assert adapt_answer(answer, ticket_ref="T-1", client="Acme") == expected


def test_confidence_mapping_and_subject() -> None:
    assert confidence_from_similarity(0.1) == 0.0
    assert confidence_from_similarity(0.4) == pytest.approx(0.5)
    assert confidence_from_similarity(0.9) == 1.0
    assert confidence_from_similarity(0.9, same_language=False) == 0.5
    assert reply_subject("RE: Printer") == "RE: Printer"
    assert reply_subject("  Printer\n jam ") == "Re: Printer jam"


# ---------------------------------------------------------------- edit distance
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("kitten", "sitting", 3),
        ("", "", 0),
        ("", "abc", 3),
        ("flaw", "lawn", 2),
        ("naïve café", "naive cafe", 2),
        ("café", "cafe\u0301", 0),  # the same text, composed and decomposed
        ("日本語のテキスト", "日本のテキスト", 1),
        ("👍 done", "done 👍", 4),
        ("Grüße", "Grüsse", 2),
    ],
)
def test_edit_distance_hand_checked(a: str, b: str, expected: int) -> None:
    assert edit_distance(a, b) == expected
    assert edit_distance(b, a) == expected


def _reference(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcxyzé😀 ", max_size=25), st.text(alphabet="abcxyzé😀 ", max_size=25))
def test_edit_distance_matches_the_textbook_table(a: str, b: str) -> None:
    assert edit_distance(a, b) == _reference(a, b) == edit_distance(b, a)
    assert 0.0 <= normalised_edit_distance(a, b) <= 1.0


def test_edit_distance_on_long_texts_is_fast() -> None:
    rng = random.Random(1)
    a = "".join(rng.choice("abcdefgh ") for _ in range(3000))
    b = "".join(rng.choice("abcdefgh ") for _ in range(3000))
    started = time.perf_counter()
    distance = edit_distance(a, b)
    assert time.perf_counter() - started < 2.0
    assert 0 < distance <= 3000
    assert edit_distance(a, a[:1500] + "inserted" + a[1500:]) == 8


def test_normalised_edit_distance() -> None:
    assert normalised_edit_distance("", "") == 0.0
    assert normalised_edit_distance("abc", "abc") == 0.0
    assert normalised_edit_distance("abcd", "wxyz") == 1.0
    assert normalised_edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
