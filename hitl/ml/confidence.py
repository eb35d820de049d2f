"""A last, one-dimensional recalibration of the confidence (the top probability) of a head.

The per-class isotonic calibration of the SVMs leaves a systematic bias in the top probability
that the checkpoints compare with their thresholds: averaging three calibrated inner models pulls
it towards the middle (on the Endava categories, tickets at 0.87-0.93 were right 94.5 % of the
time). An isotonic map of the confidence, fitted on out-of-fold predictions, removes that bias.
It is increasing (its flat steps are broken by the old confidence), so it does not reorder
tickets (coverage at an accuracy is unchanged), and it never changes a predicted label: the other
probabilities are rescaled so each row still sums to 1, and a row where the rescaled runner-up
would overtake the top (only possible at low confidence) keeps the model's own probabilities.
docs/model-selection.md has the measurements.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

_TIE_BREAK = 1e-6


class ConfidenceMap(BaseModel):
    """An increasing map of the confidence (isotonic regression of "top label right" on it, fitted
    on out-of-fold predictions), stored with the model version as its breakpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: list[float]
    values: list[float]

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> ConfidenceMap | None:
        """None when the data cannot support a map: one outcome only, too few tickets, or no
        increasing relation between confidence and being right."""
        from sklearn.isotonic import IsotonicRegression  # here: predicting needs no scikit-learn

        correct = np.asarray(correct, dtype=bool)
        if correct.all() or not correct.any() or len(correct) < 20:
            return None
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(np.asarray(confidence, dtype=float), correct.astype(float))
        thresholds, values = model.X_thresholds_.tolist(), model.y_thresholds_.tolist()
        if len(values) < 2 or values[-1] <= values[0]:
            return None
        return cls(thresholds=thresholds, values=values)

    def confidence(self, confidence: np.ndarray) -> np.ndarray:
        """The mapped confidence, mixed with 1e-6 of the old one: that breaks the map's flat steps
        (a step at 1.0 included), so tickets keep their order and a threshold can still fall
        between any two of them."""
        c = np.asarray(confidence, dtype=float)
        return (1.0 - _TIE_BREAK) * np.interp(c, self.thresholds, self.values) + _TIE_BREAK * c

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Rows with a new top probability; the others scaled to keep the sum, the label kept."""
        proba = np.asarray(proba, dtype=float)
        if proba.ndim != 2 or proba.shape[1] < 2 or proba.shape[0] == 0:
            return proba
        rows = np.arange(proba.shape[0])
        top = proba.argmax(axis=1)
        old = proba[rows, top]
        ordered = np.sort(proba, axis=1)
        second = ordered[:, -2]
        rest = 1.0 - old
        new = self.confidence(old)
        # Rescaled, the runner-up would reach the top where new < second / (rest + second): such a
        # row (a low-confidence one) keeps the model's own probabilities, so no label ever changes.
        keeps_top = new * (rest + second) > second
        changeable = (rest > 1e-12) & keeps_top
        factor = np.divide(1.0 - new, rest, out=np.ones_like(rest), where=changeable)
        out = np.where(changeable[:, None], proba * factor[:, None], proba)
        out[rows, top] = np.where(changeable, new, old)
        return out


def cross_fitted(proba: np.ndarray, correct: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities recalibrated without any ticket fitting its own map: the map for
    each part is fitted on the other parts (`correct`: whether each row's top label is right), so
    the metrics stored with a version stay honest."""
    from sklearn.model_selection import KFold

    correct = np.asarray(correct, dtype=bool)
    out = proba.copy()
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_part, apply_part in splitter.split(proba):
        mapping = ConfidenceMap.fit(proba[fit_part].max(axis=1), correct[fit_part])
        if mapping is not None:
            out[apply_part] = mapping.apply(proba[apply_part])
    return out
