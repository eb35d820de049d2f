"""Which runbooks fit a ticket, with the parameters the ticket text already gives.

The score is deliberately simple and explainable, because a human reads it next to the proposal:
the triaged category dominates (a runbook for another category can never outrank one for the
ticket's own), keywords refine the choice between runbooks of one category, and the share of
required parameters found in the text breaks the remaining ties. A match with missing required
parameters is still proposed (the reviewer fills them in) but ranks below a complete one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, Field

from policies.runbooks import ParameterValue, Risk, Runbook

CATEGORY_WEIGHT = 0.6
KEYWORD_WEIGHT = 0.25
PARAMETER_WEIGHT = 0.15
KEYWORDS_FOR_FULL_CREDIT = 2
_RISK_ORDER = {Risk.low: 0, Risk.medium: 1, Risk.high: 2}


class RunbookMatch(BaseModel):
    """A proposed runbook: how well it fits, what the ticket filled in, and what a human must add."""

    runbook_id: str
    title: str
    risk: Risk
    score: float = Field(ge=0.0, le=1.0)
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list, description="required parameters not found")
    reasons: list[str] = Field(default_factory=list, description="why it matched, for the reviewer")


def _normalise(category: str) -> str:
    return "_".join(category.strip().lower().replace("-", " ").split())


def _phrase_found(phrase: str, text: str) -> bool:
    words = r"\s+".join(re.escape(word) for word in phrase.split())
    return re.search(rf"(?<!\w){words}(?!\w)", text, re.IGNORECASE) is not None


def _match_one(runbook: Runbook, text: str, category: str | None) -> RunbookMatch | None:
    rule = runbook.match
    vetoed = [word for word in rule.exclude if _phrase_found(word, text)]
    if vetoed:
        return None
    in_category = category is not None and category in {_normalise(c) for c in rule.categories}
    hits = [word for word in rule.keywords if _phrase_found(word, text)]
    if not in_category and not hits:
        return None

    parameters: dict[str, ParameterValue] = {}
    for parameter in runbook.parameters:
        value = parameter.extract_from(text)
        if value is not None:
            parameters[parameter.name] = value
    extracted = list(parameters)
    for parameter in runbook.parameters:
        if parameter.name not in parameters and parameter.default is not None:
            parameters[parameter.name] = parameter.coerce(parameter.default)
    required = [p.name for p in runbook.parameters if p.required]
    missing = [name for name in required if name not in parameters]

    # Without keywords in the runbook, the category is all the evidence there is.
    keyword_share = min(len(hits), KEYWORDS_FOR_FULL_CREDIT) / KEYWORDS_FOR_FULL_CREDIT
    if not rule.keywords:
        keyword_share = 1.0 if in_category else 0.0
    filled_share = 1.0 - len(missing) / len(required) if required else 1.0
    score = CATEGORY_WEIGHT * in_category + KEYWORD_WEIGHT * keyword_share + PARAMETER_WEIGHT * filled_share

    reasons = [f"category {category}"] if in_category else []
    reasons += [f"keyword '{word}'" for word in hits]
    reasons += [f"{name} found in the ticket" for name in extracted]
    return RunbookMatch(
        runbook_id=runbook.id,
        title=runbook.title,
        risk=runbook.risk,
        score=round(min(score, 1.0), 4),
        parameters=parameters,
        missing=missing,
        reasons=reasons,
    )


def match_runbooks(
    subject: str,
    body: str,
    category: str | None,
    catalog: Mapping[str, Runbook],
    *,
    min_score: float = 0.0,
) -> list[RunbookMatch]:
    """Runbooks that fit the ticket, best first (ties: lower risk first, then id)."""
    text = f"{subject}\n{body}"
    wanted = _normalise(category) if category else None
    found = [m for r in catalog.values() if (m := _match_one(r, text, wanted)) is not None]
    found = [m for m in found if m.score >= min_score]
    return sorted(found, key=lambda m: (-m.score, _RISK_ORDER[m.risk], m.runbook_id))
