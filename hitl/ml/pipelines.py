"""The scikit-learn pipelines of the decision heads, described by data (a PipelineSpec) so the
registry records exactly what was trained. docs/model-selection.md has the measurements behind
the defaults: word 1-2-grams, word-prefix n-grams (a crude stemmer at the speed of the word
analyzer) and a block of the ticket's opening words, into a linear SVM whose scores are
calibrated by isotonic regression on inner folds.

Every feature block is a plain TfidfVectorizer with a token regex, and the calibration splitter
is replaced by a plain integer after fitting, so a saved model holds no project class: skops
loads it with nothing but scikit-learn's own types.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from hitl.ml.auxiliary import AuxiliaryMix


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    word_ngram_max: int = 2
    word_min_df: int = 2
    prefix_chars: int | None = 5  # word-prefix n-grams; None: off
    head_chars: int | None = 40  # a block of the words that start in the first N characters; None: off
    char_ngram: tuple[int, int] | None = None  # character n-grams (slow; measured, not chosen)
    classifier: Literal["logreg", "linear_svc"] = "linear_svc"
    C: float = 0.3
    class_weight: Literal["balanced"] | None = None
    calibration: Literal["none", "sigmoid", "isotonic", "isotonic+temperature"] = "isotonic"
    calibration_folds: int = 3
    calibration_ensemble: bool = True  # one calibrated SVM per inner fold, averaged (measured better)
    # a finer label of the same tickets whose model helps this head (hitl/ml/auxiliary.py); used only
    # when the training data has it, and then recorded with the version
    auxiliary_label: str | None = None
    auxiliary_weight: float = 0.8
    auxiliary_calibration: Literal["sigmoid", "isotonic", "isotonic+temperature"] = "isotonic"


DEFAULT_SPEC = PipelineSpec()
# Many classes, few tickets each: averaging an isotonic and a temperature-scaled SVM halves the ECE.
HEAD_SPECS: dict[str, PipelineSpec] = {
    "business_service": PipelineSpec(calibration="isotonic+temperature"),
    "category": PipelineSpec(auxiliary_label="business_service"),
}


def spec_for_head(head: str) -> PipelineSpec:
    return HEAD_SPECS.get(head, DEFAULT_SPEC)


class RareAlwaysTrainKFold:
    """Inner calibration folds where classes rarer than the fold count stay in every training part:
    ticket data has queues with one or two tickets, which plain stratified folds cannot split.
    (No `n_splits` attribute on purpose: CalibratedClassifierCV would then demand K members per class.)"""

    def __init__(self, folds: int = 3, seed: int = 0) -> None:
        self.folds, self.seed = folds, seed

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.folds

    def split(self, X: Any, y: Any, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        labels = np.asarray(y)
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        rare = counts[inverse] < self.folds
        common, always = np.flatnonzero(~rare), np.flatnonzero(rare)
        splitter = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        for train, test in splitter.split(common, labels[common]):
            yield np.sort(np.concatenate([common[train], always])), common[test]


class PooledStratifiedKFold(RareAlwaysTrainKFold):
    """A partition (every ticket in exactly one test fold, as `ensemble=False` needs), stratified
    with all classes rarer than the fold count pooled into one stratum."""

    def split(self, X: Any, y: Any, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        labels = np.asarray(y)
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        strata = np.where(counts[inverse] < self.folds, -1, inverse)
        yield from StratifiedKFold(self.folds, shuffle=True, random_state=self.seed).split(labels, strata)


def _features(spec: PipelineSpec) -> FeatureUnion:
    blocks: list[tuple[str, Any]] = [
        (
            "word",
            TfidfVectorizer(
                ngram_range=(1, spec.word_ngram_max),
                min_df=spec.word_min_df,
                sublinear_tf=True,
                dtype=np.float64,
            ),
        ),
    ]
    if spec.prefix_chars:
        blocks.append(
            (
                "prefix",
                TfidfVectorizer(
                    ngram_range=(1, 2),
                    min_df=2,
                    sublinear_tf=True,
                    dtype=np.float64,
                    token_pattern=rf"\b\w{{2,{spec.prefix_chars}}}",
                ),
            )
        )
    if spec.head_chars:
        n = spec.head_chars  # first alternative: a token with fewer than n characters before it; the
        # second swallows the rest in one match whose empty capture is the only stop word (fast).
        blocks.append(
            (
                "head",
                TfidfVectorizer(
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                    dtype=np.float64,
                    token_pattern=rf"(?<![\s\S]{{{n}}})\b(\w\w+)\b|(?<=[\s\S]{{{n}}})[\s\S]+",
                    stop_words=[""],
                ),
            )
        )
    if spec.char_ngram:
        blocks.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=spec.char_ngram,
                    min_df=2,
                    sublinear_tf=True,
                    dtype=np.float64,
                ),
            )
        )
    return FeatureUnion(blocks)


def build_pipeline(spec: PipelineSpec, seed: int = 0) -> Pipeline:
    def base() -> Any:
        if spec.classifier == "logreg":
            return LogisticRegression(
                C=spec.C, class_weight=spec.class_weight, max_iter=2000, random_state=seed
            )
        return LinearSVC(C=spec.C, class_weight=spec.class_weight, random_state=seed)

    def calibrated(method: str) -> CalibratedClassifierCV:
        splitter = RareAlwaysTrainKFold if spec.calibration_ensemble else PooledStratifiedKFold
        return CalibratedClassifierCV(
            base(),
            method=method,
            cv=splitter(spec.calibration_folds, seed),
            ensemble=spec.calibration_ensemble,
        )

    def classifier_for(calibration: str) -> Any:
        if calibration == "none":
            return base()
        if calibration == "isotonic+temperature":
            return VotingClassifier(
                [("isotonic", calibrated("isotonic")), ("temperature", calibrated("temperature"))],
                voting="soft",
            )
        return calibrated(calibration)

    classifier = classifier_for(spec.calibration)
    if spec.auxiliary_label:
        helper = classifier_for(spec.auxiliary_calibration)
        classifier = AuxiliaryMix(classifier, helper, weight=spec.auxiliary_weight)
    return Pipeline([("features", _features(spec)), ("classifier", classifier)])


def fit_pipeline(pipeline: Pipeline, texts: Any, labels: Any, auxiliary: Any = None) -> Pipeline:
    """Fit, handing the auxiliary labels to the classifier that needs them."""
    if isinstance(pipeline.named_steps["classifier"], AuxiliaryMix):
        return pipeline.fit(texts, labels, classifier__auxiliary_labels=auxiliary)
    return pipeline.fit(texts, labels)


def portable(pipeline: Pipeline) -> Pipeline:
    """After fitting: the splitter object is only needed to fit; an int keeps the file plain sklearn.
    The SVM weights are stored as float32 (half the file), and the features are then computed in
    float32 too: float64 features made every prediction call up-cast the weight matrices (74
    classes x ~46,000 features per SVM for business_service), about 40 % of its classifier time."""
    for _, vectorizer in pipeline.named_steps["features"].transformer_list:
        vectorizer.dtype = np.float32
    classifier = pipeline.named_steps["classifier"]
    # an AuxiliaryMix holds two classifiers, fitted (main_, auxiliary_) and as given (main, auxiliary)
    tops = [classifier, *(getattr(classifier, a, None) for a in ("main_", "auxiliary_", "main", "auxiliary"))]
    members = [
        member
        for top in tops
        if top is not None
        for member in (
            top,
            *getattr(top, "estimators_", []),
            *(e for _, e in getattr(top, "estimators", [])),
        )
    ]
    for member in members:
        if isinstance(member, CalibratedClassifierCV):
            if not isinstance(member.cv, int):
                member.cv = member.cv.get_n_splits()
            for pair in getattr(member, "calibrated_classifiers_", []):
                estimator = pair.estimator
                if hasattr(estimator, "coef_"):
                    estimator.coef_ = estimator.coef_.astype(np.float32)
    return pipeline
