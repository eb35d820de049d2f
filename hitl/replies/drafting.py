"""Draft a client reply: a template for the frame, the closest resolved ticket's answer for the content.

The draft is a proposal for the operator at the reply checkpoint, who reads it, edits it and
approves it; the outbox logs how much was changed.

Why the retrieved answer may be shown as it is
----------------------------------------------
* It is text the MSP's own agents wrote and sent before (a resolved ticket's answer), not text
  from the client who is waiting for this reply.
* It is adapted minimally and visibly: the answer's own greeting and sign-off are removed (the
  template supplies ours), `<br>` becomes a line break, an anonymisation token for the ticket
  number or company becomes this ticket's reference or client, and every other token (`<name>`,
  `<tel_num>`) becomes a bracketed marker such as `[name]`, listed in `ReplyDraft.to_fill` with
  any brackets the answer already had (`[link]`). Nothing is invented, reworded or translated.
* Templates are rendered in one pass (see templates.render): braces inside the subject or the
  answer stay literal text and are never expanded.
* Limits the operator must know, and why every draft names its `sources`: the answer was written
  for another ticket, possibly of another client, so it may name that ticket's devices, addresses
  or people, or describe a fix that does not apply here; and a PSA's resolution field may hold
  internal notes never meant for a client. So a draft is safe to *show* to the operator, not to
  send unreviewed. It is plain text; a UI that renders markdown or HTML must escape it
  (hitl.text.escape_markdown).

Confidence
----------
`confidence` is the best neighbour's similarity s (in [0, 1]) mapped linearly from
CONFIDENCE_FLOOR (0.2, confidence 0) to CONFIDENCE_FULL (0.6, confidence 1), clipped, and halved
when the answer is in another language than the reply (an answer of unknown language is not
penalised; retrieval prefers the reply's language, see templates.select). The anchors come from
leave-one-out on the helpdesk data (600 tickets): below s = 0.2 the neighbour shared the queue
32 % of the time and its answer resembled the true one little (answer cosine 0.18); from s = 0.5
upwards every neighbour shared the queue and answer cosine rose from 0.71 to 0.90; between, both
rise steadily. It is a ranking score for the checkpoint threshold, not a calibrated probability.
No neighbour gives 0.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field

from hitl.ml.dataset import ticket_text
from hitl.replies.retrieval import Neighbour, ReplyIndex, normalise_language
from hitl.replies.templates import ReplyTemplates, render

CONFIDENCE_FLOOR = 0.2
CONFIDENCE_FULL = 0.6
OTHER_LANGUAGE_FACTOR = 0.5

_GREETING = re.compile(
    r"""^\s*(?:dear|hello|hi|hey|greetings|good\ (?:morning|afternoon|evening)
    |sehr\ geehrte[rs]?(?:\(r\)|/r)?|liebe[rs]?|hallo|guten\ (?:tag|morgen|abend)
    |cher|chère|chers|bonjour|bonsoir|salut
    |estimad[oa]s?(?:/a|\(a\))?|hola|buen[oa]s\ (?:días|tardes)|querid[oa]s?
    |car[oa]s?|prezad[oa]s?(?:/a|\(a\))?|olá|ola|bom\ dia|boa\ tarde)
    \b[^\n,:;!.?]{0,60}(?:[,:;!]|(?=\n)|$)[ \t]*\n?""",
    re.IGNORECASE | re.VERBOSE,
)
_CLOSING = re.compile(
    r"""(?:^|(?<=\n)|(?<=[.!?]))[ \t]*
    (?:(?:best|kind|warm|warmest|with\ kind)\ regards|regards|best\ wishes|best|sincerely
    |yours\ (?:sincerely|truly|faithfully)|cheers|many\ thanks|thanks|thank\ you
    |mit\ (?:freundlichen|besten|herzlichen)\ grüßen|(?:freundliche|beste|viele|liebe)\ grüße
    |vielen\ dank|danke|(?:bien\ )?cordialement|(?:meilleures\ |sincères\ )?salutations|merci
    |atentamente|saludos\ cordiales|saludos|un\ saludo|gracias|atenciosamente
    |(?:melhores\ )?cumprimentos|obrigad[oa])
    [ \t]*(?:[,.!]|(?=\n)|$)""",
    re.IGNORECASE | re.VERBOSE,
)
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"<([a-z][a-z_]{1,30})>")
_MARKER = re.compile(r"\[[^\[\]\n]{1,60}\]")
_TOKEN_NAMES = {
    "tel_num": "phone number",
    "acc_num": "account number",
    "order_num": "order number",
    "serial_num": "serial number",
}
_SIGNATURE_MAX_CHARS = 150
_SIGNATURE_MAX_LINES = 4


class DraftSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    ref: str
    similarity: float = Field(ge=0.0, le=1.0)


class ReplyDraft(BaseModel):
    """What the operator is shown at the reply checkpoint, and what the decision records."""

    model_config = ConfigDict(frozen=True)

    subject: str
    body: str
    confidence: float = Field(ge=0.0, le=1.0)
    sources: list[DraftSource]
    template_id: str
    language: str
    hint_ref: str | None = Field(description="the source whose answer is in the body; None: no hint found")
    to_fill: list[str] = Field(description="bracketed markers in the body the operator must replace")


def confidence_from_similarity(similarity: float, same_language: bool = True) -> float:
    """The documented mapping (module docstring): linear from the floor to the full mark, clipped."""
    scaled = (similarity - CONFIDENCE_FLOOR) / (CONFIDENCE_FULL - CONFIDENCE_FLOOR)
    confidence = min(1.0, max(0.0, scaled))
    return confidence if same_language else confidence * OTHER_LANGUAGE_FACTOR


def reply_subject(subject: str) -> str:
    """`Re: <subject>` on one line (a line break in a mail header would start a new header)."""
    flat = " ".join(subject.split())
    return flat if flat.lower().startswith("re:") else f"Re: {flat}".rstrip()


def _is_signature(tail: str) -> bool:
    """A few short lines, no sentence inside, starting like a name ("Support Team", "<name>"), so
    that "Thanks, we will restart the server tonight." is kept as content."""
    if not tail:
        return True
    short = len(tail) <= _SIGNATURE_MAX_CHARS and tail.count("\n") < _SIGNATURE_MAX_LINES
    return short and not re.search(r"[.!?]\s", tail) and (tail[0].isupper() or tail[0] in "<[")


def _strip_sign_off(text: str) -> str:
    """Cut from the first closing phrase that has content before it and only a signature after."""
    for match in _CLOSING.finditer(text):
        if text[: match.start()].strip() and _is_signature(text[match.end() :].strip()):
            return text[: match.start()]
    return text


def adapt_answer(answer: str, *, ticket_ref: str, client: str) -> str:
    """The retrieved answer without its greeting and sign-off, tokens replaced (module docstring)."""
    text = _BREAK.sub("\n", answer.replace("\r\n", "\n").replace("\r", "\n"))
    text, greeted = _GREETING.subn("", text, count=1)
    text = _strip_sign_off(text).strip()
    if greeted and text[:1].islower():  # "Sehr geehrte X,\n\nvielen Dank": the sentence now starts the text
        text = text[0].upper() + text[1:]

    def token(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ticket_number":
            return ticket_ref
        if name == "company_name":
            return client
        return f"[{_TOKEN_NAMES.get(name, name.replace('_', ' '))}]"

    text = _TOKEN.sub(token, text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def draft_reply(
    *,
    ticket_ref: str,
    subject: str,
    body: str,
    category: str | None,
    language: str | None,
    client: str,
    index: ReplyIndex,
    templates: ReplyTemplates,
    signature: str,
    k: int = 3,
    exclude_refs: Collection[str] = (),
) -> ReplyDraft:
    """The reply for one ticket. `exclude_refs` keeps the ticket itself out of its own sources."""
    selected = templates.select(category, language)
    neighbours: list[Neighbour] = index.nearest(
        ticket_text(subject, body), k=k, language=selected.language, exclude_refs=exclude_refs
    )
    base = {
        "client": client,
        "ticket_ref": ticket_ref,
        "subject": " ".join(subject.split()),
        "signature": signature,
    }
    hint, hint_ref, confidence = "", None, 0.0
    for neighbour in neighbours:  # the best one whose answer survives adaptation
        hint = adapt_answer(neighbour.answer, ticket_ref=ticket_ref, client=client)
        if hint:
            hint_ref = neighbour.ref
            same = normalise_language(neighbour.language) in (None, selected.language)
            confidence = confidence_from_similarity(neighbour.similarity, same_language=same)
            break
    phrases = selected.phrases
    values = {
        **base,
        "greeting": render(phrases.greeting, base),
        "closing": render(phrases.closing, base),
        "resolution_hint": hint or render(phrases.no_hint, base),
    }
    return ReplyDraft(
        subject=reply_subject(subject),
        body=render(selected.body, values).strip() + "\n",
        confidence=confidence,
        sources=[DraftSource(ref=n.ref, similarity=n.similarity) for n in neighbours],
        template_id=selected.template_id,
        language=selected.language,
        hint_ref=hint_ref,
        to_fill=sorted(set(_MARKER.findall(hint))),
    )
