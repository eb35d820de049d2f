"""Showing text we did not write (ticket content, names from client data) in markdown.

Ticket text is untrusted client input. Backslash-escaping alone is not enough: renderers that
auto-link bare URLs still turn `http://...` into a link. Inside a code span or a fenced code
block, CommonMark renders nothing (no emphasis, no links, no HTML), so untrusted text always goes
there, with a fence longer than any run of backticks in the text.
"""

from __future__ import annotations

import re
from email.utils import parseaddr

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:])")
_BACKTICKS = re.compile(r"`+")


def escape_markdown(text: str) -> str:
    """For short trusted-ish labels in prose: every markdown character escaped, one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _longest_backtick_run(text: str) -> int:
    return max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)


def code_span(text: str, limit: int = 200) -> str:
    """Untrusted text inline, rendered literally; newlines folded, long text cut."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    if not flat:
        return "(empty)"
    fence = "`" * (_longest_backtick_run(flat) + 1)
    return f"{fence} {flat} {fence}"


def code_block(text: str, limit: int = 1500) -> str:
    """Untrusted multi-line text as a fenced block, rendered literally; long text cut."""
    body = text if len(text) <= limit else text[: limit - 1] + "…"
    body = body.replace("\r\n", "\n").replace("\r", "\n").rstrip() or "(empty)"
    fence = "`" * max(3, _longest_backtick_run(body) + 1)
    return f"{fence}text\n{body}\n{fence}"


def address_list(text: str | None) -> list[str]:
    """The addresses of a comma-separated setting (HITL_NOTIFY_EMAIL_TO), blanks dropped."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def is_email_address(text: str) -> bool:
    """An address a mail header can carry: `ops@example.com` or `Ops <ops@example.com>`, with no line
    break that could smuggle another header in."""
    return "@" in parseaddr(text)[1] and not any(c in text for c in "\r\n")
