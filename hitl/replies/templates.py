"""Reply templates: the policy file that gives every drafted reply its frame and tone.

Templates are data (policies/reply_templates.yaml) so service managers can word replies without a
release. The file is checked completely when it is loaded, because a broken template found at
drafting time would stall a ticket at its last checkpoint; every problem is one `ConfigError` line
that names the file and the template.

Rendering is a single pass over the template's own placeholders: the values (ticket subject, the
retrieved answer) are inserted as plain text and never parsed again, so a ticket whose subject
says "{signature}" cannot pull other values into the reply.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import policies
from hitl.errors import ConfigError
from hitl.yamlfile import read_yaml

DEFAULT_TEMPLATES_PATH = Path(policies.__file__).with_name("reply_templates.yaml")
DEFAULT_TEMPLATE = "default"
DEFAULT_LANGUAGE = "en"

# What a body may use; phrases (greeting, closing, no_hint) are rendered first, so they may not
# refer to each other or to the hint.
PLACEHOLDERS = frozenset(
    {"greeting", "closing", "client", "ticket_ref", "subject", "resolution_hint", "signature"}
)
PHRASE_PLACEHOLDERS = frozenset({"client", "ticket_ref", "subject", "signature"})
REQUIRED_IN_BODY = ("resolution_hint", "signature")

_formatter = string.Formatter()


class TemplateError(ConfigError):
    """A template uses a placeholder nobody fills, or is not a valid template at all."""


def _parse(template: str) -> list[tuple[str, str | None]]:
    """(literal text, placeholder or None) pairs; only bare `{name}` placeholders are accepted,
    because attribute access, indexing or format specs would let a template reach into objects."""
    try:
        parts = list(_formatter.parse(template))
    except ValueError as exc:
        raise TemplateError(f"malformed template ({exc}); write {{{{ and }}}} for literal braces") from exc
    pairs: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parts:
        if name is not None and (not name.isidentifier() or spec or conversion):
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise TemplateError(f"placeholder {{{shown}}} is not allowed: use a bare {{name}}")
        pairs.append((literal, name))
    return pairs


def placeholders(template: str) -> set[str]:
    """The placeholder names a template uses."""
    return {name for _, name in _parse(template) if name is not None}


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill `template` from `values`; a placeholder without a value is refused, never left in."""
    pairs = _parse(template)
    unknown = sorted({name for _, name in pairs if name is not None and name not in values})
    if unknown:
        names = ", ".join("{" + name + "}" for name in unknown)
        raise TemplateError(f"unknown placeholder(s) {names}; known here: {sorted(values)}")
    return "".join(literal + (str(values[name]) if name is not None else "") for literal, name in pairs)


def _check(text: str, allowed: frozenset[str], required: tuple[str, ...] = ()) -> str:
    used = placeholders(text)
    unknown = sorted(used - allowed)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [name for name in required if name not in used]
    if missing:
        raise ValueError(f"must contain {', '.join('{' + name + '}' for name in missing)}")
    return text


class LanguagePhrases(BaseModel):
    """The words that depend only on the language: they wrap every body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: str = Field(min_length=1)
    closing: str = Field(min_length=1)
    no_hint: str = Field(min_length=1)

    @field_validator("greeting", "closing", "no_hint")
    @classmethod
    def _phrase(cls, value: str) -> str:
        return _check(value, PHRASE_PLACEHOLDERS)


class SelectedTemplate(BaseModel):
    """The body chosen for one ticket, with the phrases of its language."""

    model_config = ConfigDict(frozen=True)

    template_id: str
    language: str
    body: str
    phrases: LanguagePhrases


class ReplyTemplates(BaseModel):
    """`templates` maps a template id (a category, or `default`) to its bodies per language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    languages: dict[str, LanguagePhrases]
    templates: dict[str, dict[str, str]]

    @field_validator("languages")
    @classmethod
    def _codes(cls, value: dict[str, LanguagePhrases]) -> dict[str, LanguagePhrases]:
        bad = [code for code in value if not (code.isascii() and code.isalpha() and code.islower())]
        if bad:
            raise ValueError(f"language codes must be lower-case ISO 639-1 codes such as 'en', got {bad}")
        if DEFAULT_LANGUAGE not in value:
            raise ValueError(f"the '{DEFAULT_LANGUAGE}' language is required (the fallback)")
        return value

    @model_validator(mode="after")
    def _bodies(self) -> ReplyTemplates:
        if DEFAULT_TEMPLATE not in self.templates:
            raise ValueError(f"a '{DEFAULT_TEMPLATE}' template is required (used when no category matches)")
        missing = sorted(set(self.languages) - set(self.templates[DEFAULT_TEMPLATE]))
        if missing:
            raise ValueError(
                f"template '{DEFAULT_TEMPLATE}' needs a body for every language; missing {missing}"
            )
        for template_id, bodies in self.templates.items():
            if not bodies:
                raise ValueError(f"template '{template_id}' has no body")
            for language, body in bodies.items():
                if language not in self.languages:
                    raise ValueError(
                        f"template '{template_id}': language '{language}' is not under 'languages'"
                    )
                try:
                    _check(body, PLACEHOLDERS, REQUIRED_IN_BODY)
                except ValueError as exc:
                    raise ValueError(f"template '{template_id}' ({language}): {exc}") from exc
        return self

    def language_for(self, language: str | None) -> str:
        """`de-AT` and `DE` mean `de`; an unknown or missing language falls back to English."""
        code = (language or "").strip().lower().replace("_", "-").split("-")[0]
        return code if code in self.languages else DEFAULT_LANGUAGE

    def select(self, category: str | None, language: str | None) -> SelectedTemplate:
        """The category's body in the ticket's language, else the default template's body in it."""
        code = self.language_for(language)
        template_id = category if category and code in self.templates.get(category, {}) else DEFAULT_TEMPLATE
        return SelectedTemplate(
            template_id=template_id,
            language=code,
            body=self.templates[template_id][code],
            phrases=self.languages[code],
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = _one_line(error["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{message}{more}"


def _read(path: Path) -> Any:
    return read_yaml(path, "the reply templates")


def load_reply_templates(path: Path | None = None) -> ReplyTemplates:
    """Load and check the whole file; the shipped file is used when `path` is None."""
    path = DEFAULT_TEMPLATES_PATH if path is None else Path(path)
    document = _read(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with 'languages' and 'templates'")
    try:
        return ReplyTemplates.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from exc
