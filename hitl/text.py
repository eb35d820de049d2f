"""Escaping for text we did not write (ticket content, file names) before it is rendered."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def escape_markdown(text: str) -> str:
    """Make untrusted text render literally in Prefect's markdown (no links, no HTML, no tables)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", " ")
