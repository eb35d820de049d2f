"""A head helped by a finer label of the same tickets (category by business_service).

In the Endava data 91.6 % of the tickets carry their business_service's most common category, and a
model of the 74 services sees distinctions that the 9 categories blur. The mix adds what the
service model implies for the head (its probabilities times the training data's service -> head
table) to the head's own probabilities: category accuracy rose on each of three 5-fold CV seeds
at the weight 0.8 (0.8660 -> 0.8697, 0.8642 -> 0.8674, 0.8665 -> 0.8686; docs/model-selection.md).
Both classifiers share the pipeline's features, so prediction pays for one more linear model only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone


class AuxiliaryMix(ClassifierMixin, BaseEstimator):
    """`weight` x the main classifier + (1 - `weight`) x (auxiliary classifier @ table). Fitted with
    the auxiliary labels as `auxiliary_labels` (None where a ticket has none: those rows train the
    main classifier only)."""

    def __init__(self, main: Any, auxiliary: Any, weight: float = 0.8, smoothing: float = 0.01) -> None:
        self.main = main
        self.auxiliary = auxiliary
        self.weight = weight
        self.smoothing = smoothing

    def fit(self, X: Any, y: Any, auxiliary_labels: Any = None) -> AuxiliaryMix:
        if auxiliary_labels is None:
            raise ValueError("AuxiliaryMix needs auxiliary_labels (one per row, None where unknown)")
        labels = np.asarray(y).astype(str)
        aux = np.asarray([None if a is None else str(a) for a in auxiliary_labels], dtype=object)
        known = np.flatnonzero(aux != None)  # noqa: E711 (element-wise)
        if len(set(aux[known])) < 2:
            raise ValueError("AuxiliaryMix needs at least two auxiliary labels")
        self.main_ = clone(self.main).fit(X, labels)
        self.classes_ = np.asarray(self.main_.classes_)
        self.auxiliary_ = clone(self.auxiliary).fit(X[known], aux[known].astype(str))
        aux_classes = np.asarray(self.auxiliary_.classes_).astype(str)
        table = np.full((aux_classes.size, self.classes_.size), self.smoothing)
        np.add.at(
            table,
            (
                np.searchsorted(aux_classes, aux[known].astype(str)),
                np.searchsorted(self.classes_.astype(str), labels[known]),
            ),
            1.0,
        )
        self.table_ = table / table.sum(axis=1, keepdims=True)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        own = self.main_.predict_proba(X)
        implied = self.auxiliary_.predict_proba(X) @ self.table_
        return self.weight * own + (1.0 - self.weight) * implied

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
