"""The scikit-learn pipelines of the decision heads, described by data (a PipelineSpec) so the
registry can record exactly what was trained. The chosen specs and the measurements behind them
are in docs/model-selection.md.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    word_ngram_max: int = 2
    char_ngram: tuple[int, int] | None = (2, 5)
    min_df: int = 1
    max_features: int | None = None
    sublinear_tf: bool = True
    classifier: Literal["logreg", "linear_svc"] = "logreg"
    C: float = 10.0
    class_weight: Literal["balanced"] | None = None
    calibration: Literal["none", "sigmoid", "isotonic"] = "none"
    calibration_folds: int = 3


DEFAULT_SPEC = PipelineSpec()
HEAD_SPECS: dict[str, PipelineSpec] = {}


def spec_for_head(head: str) -> PipelineSpec:
    return HEAD_SPECS.get(head, DEFAULT_SPEC)


def build_pipeline(spec: PipelineSpec, seed: int = 0) -> Pipeline:
    features: list[tuple[str, Any]] = [
        (
            "word",
            TfidfVectorizer(
                ngram_range=(1, spec.word_ngram_max),
                min_df=spec.min_df,
                max_features=spec.max_features,
                sublinear_tf=spec.sublinear_tf,
                dtype=np.float64,
            ),
        )
    ]
    if spec.char_ngram:
        features.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=spec.char_ngram,
                    min_df=spec.min_df,
                    max_features=spec.max_features,
                    sublinear_tf=spec.sublinear_tf,
                    dtype=np.float64,
                ),
            )
        )
    classifier: Any
    if spec.classifier == "logreg":
        classifier = LogisticRegression(
            C=spec.C, class_weight=spec.class_weight, max_iter=2000, random_state=seed
        )
    else:
        classifier = LinearSVC(C=spec.C, class_weight=spec.class_weight, random_state=seed)
    if spec.calibration != "none":
        classifier = CalibratedClassifierCV(classifier, method=spec.calibration, cv=spec.calibration_folds)
    return Pipeline([("features", FeatureUnion(features)), ("classifier", classifier)])
