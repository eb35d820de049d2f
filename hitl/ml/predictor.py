"""Predictions as the checkpoints consume them: label, calibrated confidence, top-3, model version.

Batch first: one `predict_proba` call per batch of texts, so the ingestion path can triage
thousands of tickets without a call per ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from hitl.ml.confidence import ConfidenceMap


class Alternative(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    head: str
    label: str
    confidence: float
    alternatives: list[Alternative]
    model_version: str


@dataclass
class LoadedModel:
    version: str
    head: str
    pipeline: Any
    classes: list[str]
    confidence_map: ConfidenceMap | None = None  # the registry's; None: the pipeline's own

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in the order of `classes` (the registry's order, checked at load)."""
        proba = np.asarray(self.pipeline.predict_proba(list(texts)), dtype=float)
        return self.confidence_map.apply(proba) if self.confidence_map else proba

    def predict(self, texts: Sequence[str], top: int = 3) -> list[Prediction]:
        if not texts:
            return []
        proba = self.predict_proba(texts)
        order = np.argsort(-proba, axis=1, kind="stable")[:, :top]
        predictions = []
        for row, ranked in zip(proba, order, strict=True):
            alternatives = [
                Alternative(label=self.classes[i], probability=round(float(row[i]), 6)) for i in ranked
            ]
            predictions.append(
                Prediction(
                    head=self.head,
                    label=alternatives[0].label,
                    confidence=alternatives[0].probability,
                    alternatives=alternatives,
                    model_version=self.version,
                )
            )
        return predictions
