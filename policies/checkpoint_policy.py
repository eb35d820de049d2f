"""The checkpoint policy as data, and the pure evaluator that routes a decision.

Routing: AUTO when the confidence reaches the threshold in force and autonomy is allowed;
HUMAN otherwise, and always where the threshold review stopped automation (`stopped`); and a
deterministic pseudo-random AUDIT sample of would-be AUTO decisions also goes to a human. Every
decision logs the probability that it was reviewed (its propensity), so the threshold review can
weight audited decisions by 1/propensity.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hitl.errors import ConfigError
from hitl.yamlfile import first_problem, read_yaml

DEFAULT_FILE = Path(__file__).with_name("checkpoints.yaml")
CHECKPOINTS = ("triage", "escalation", "remediation", "reply")


class Route(StrEnum):
    AUTO = "AUTO"
    HUMAN = "HUMAN"
    AUDIT = "AUDIT"


class Overrides(BaseModel):
    """Any subset of the checkpoint settings, for one class or one client."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(default=None, ge=0, le=1)
    target_error: float | None = Field(default=None, gt=0, lt=1)
    audit_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_minutes: float | None = Field(default=None, gt=0)
    autonomy: bool | None = None
    autonomous_values: list[str] | None = None
    stopped: bool | None = None
    classes: dict[str, Overrides] = Field(default_factory=dict)


class CheckpointPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0, le=1)
    target_error: float = Field(gt=0, lt=1)
    audit_rate: float = Field(default=0.05, ge=0, le=1)
    timeout_minutes: float = Field(default=240, gt=0)
    autonomy: bool = True
    autonomous_values: list[str] | None = None  # None: any value may be automated
    # Set by an approved threshold review that found no threshold it could show to be safe: nothing
    # is automated (the threshold in force is 1 and no confidence reaches past it) until a later
    # review shows a safe threshold and clears it. Unlike `autonomy: false`, a human's standing
    # decision, this is the review's own and it lifts it.
    stopped: bool = False
    reason_codes: list[str] = Field(min_length=1)
    classes: dict[str, Overrides] = Field(default_factory=dict)
    clients: dict[str, Overrides] = Field(default_factory=dict)


class Effective(BaseModel):
    """The settings in force for one (checkpoint, class, client)."""

    checkpoint: str
    threshold: float
    target_error: float
    audit_rate: float
    timeout_minutes: float
    autonomy: bool
    autonomous_values: list[str] | None
    reason_codes: list[str]
    stopped: bool = False


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason_codes: dict[str, str] = Field(min_length=1)
    checkpoints: dict[str, CheckpointPolicy]

    @model_validator(mode="after")
    def _consistent(self) -> PolicyDocument:
        missing = [c for c in CHECKPOINTS if c not in self.checkpoints]
        if missing:
            raise ValueError(f"checkpoints missing: {missing}")
        unknown = sorted(set(self.checkpoints) - set(CHECKPOINTS))
        if unknown:
            raise ValueError(f"unknown checkpoints {unknown}; known: {list(CHECKPOINTS)}")
        for name, checkpoint in self.checkpoints.items():
            undefined = sorted(set(checkpoint.reason_codes) - set(self.reason_codes))
            if undefined:
                raise ValueError(f"{name}: reason codes {undefined} are not defined under reason_codes")
        return self

    def effective(
        self, checkpoint: str, predicted: str | None = None, client: str | None = None
    ) -> Effective:
        """Checkpoint defaults, then the class's overrides, then the client's (and its class's)."""
        base = self.checkpoints[checkpoint]
        values: dict[str, Any] = base.model_dump(exclude={"classes", "clients"})
        layers = [base.classes.get(predicted or "")]
        client_layer = base.clients.get(client or "")
        if client_layer is not None:
            layers += [client_layer, client_layer.classes.get(predicted or "")]
        for layer in layers:
            if layer is not None:
                values.update(layer.model_dump(exclude={"classes"}, exclude_none=True))
        if values["stopped"]:
            values["threshold"] = 1.0  # stopped: no confidence is past it (route_decision), logged as 1
        return Effective(checkpoint=checkpoint, **values)


class RouteResult(BaseModel):
    route: Route
    threshold: float
    propensity: float
    reason: str
    timeout_minutes: float


def audit_draw(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by the decision's identity: the same decision always
    draws the same number, so a re-run or a resumed flow never re-rolls the audit sample."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def route_decision(
    settings: Effective, value: str | None, confidence: float | None, draw: float
) -> RouteResult:
    """Decide who decides. `draw` comes from `audit_draw` (or a test)."""

    def result(route: Route, propensity: float, reason: str) -> RouteResult:
        return RouteResult(
            route=route,
            threshold=settings.threshold,
            propensity=propensity,
            reason=reason,
            timeout_minutes=settings.timeout_minutes,
        )

    if value is None or confidence is None:
        return result(Route.HUMAN, 1.0, "the AI has no suggestion")
    if settings.stopped:  # "confidence ..." like a threshold route: the review reads it as evidence
        return result(
            Route.HUMAN,
            1.0,
            f"confidence {confidence:.2f}: automation is stopped here until a threshold review shows a "
            "safe threshold",
        )
    if confidence < settings.threshold:
        return result(
            Route.HUMAN, 1.0, f"confidence {confidence:.2f} is below the threshold {settings.threshold:.2f}"
        )
    if not settings.autonomy:
        return result(
            Route.HUMAN, 1.0, f"the policy grants the {settings.checkpoint} checkpoint no autonomy here"
        )
    if settings.autonomous_values is not None and value not in settings.autonomous_values:
        return result(Route.HUMAN, 1.0, f"the policy does not let the AI decide {value!r} alone")
    if draw < settings.audit_rate:
        return result(
            Route.AUDIT,
            settings.audit_rate,
            f"randomly sampled for audit ({settings.audit_rate:.0%} of automatic decisions)",
        )
    return result(
        Route.AUTO,
        settings.audit_rate,
        f"confidence {confidence:.2f} reaches the threshold {settings.threshold:.2f}",
    )


def parse_policy(document: Any, origin: str) -> PolicyDocument:
    if not isinstance(document, dict):
        raise ConfigError(f"{origin}: a policy must be a YAML mapping with reason_codes and checkpoints")
    try:
        return PolicyDocument.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {first_problem(exc)}") from exc


def load_policy_file(path: Path = DEFAULT_FILE) -> PolicyDocument:
    return parse_policy(read_yaml(path, "the checkpoint policy"), str(path))
