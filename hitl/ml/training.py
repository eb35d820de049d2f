"""Training and evaluation of one decision head, with honest (out-of-fold) metrics.

Registry metrics come from K-fold cross-validation on the training data: every ticket is scored
by a model that never saw it, so the ECE and coverage stored beside a version mean what they say.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from hitl.errors import TrainingDataError
from hitl.ml.confidence import ConfidenceMap, cross_fitted
from hitl.ml.dataset import LabelledSet, enough_labels
from hitl.ml.metrics import EvaluationMetrics, ReliabilityBin, classification_report, reliability_bins
from hitl.ml.pipelines import PipelineSpec, build_pipeline, fit_pipeline, portable, spec_for_head
from hitl.ml.predictor import LoadedModel


class Evaluation(BaseModel):
    """What `hitl evaluate --json` prints, plus the reliability bins for the diagram."""

    metrics: EvaluationMetrics
    tickets_per_second: float
    reliability: list[dict[str, Any]]
    unknown_labels: int = 0

    def summary(self) -> dict[str, Any]:
        return {**self.metrics.model_dump(), "tickets_per_second": round(self.tickets_per_second, 1)}


@dataclass
class TrainingResult:
    pipeline: Any
    classes: list[str]
    spec: PipelineSpec
    cv_metrics: EvaluationMetrics | None = None
    cv_reliability: list[ReliabilityBin] = field(default_factory=list)
    seconds: float = 0.0
    confidence_map: ConfidenceMap | None = None  # fitted on the out-of-fold predictions (CV only)


def _aligned_proba(pipeline: Any, texts: Sequence[str], classes: list[str]) -> np.ndarray:
    """Probabilities in `classes` order; a class this fold's model never saw gets 0."""
    proba = np.asarray(pipeline.predict_proba(list(texts)), dtype=float)
    out = np.zeros((len(texts), len(classes)))
    position = {label: i for i, label in enumerate(classes)}
    for j, label in enumerate(pipeline.classes_):
        out[:, position[str(label)]] = proba[:, j]
    return out


def out_of_fold_proba(data: LabelledSet, spec: PipelineSpec, folds: int, seed: int) -> np.ndarray:
    spec = effective_spec(spec, data, folds)
    classes = sorted(set(data.labels))
    labels = np.asarray(data.labels)
    texts = np.asarray(data.texts, dtype=object)
    given = data.auxiliary if data.auxiliary is not None else [None] * len(labels)
    auxiliary = np.asarray(given, dtype=object)
    proba = np.zeros((len(labels), len(classes)))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        for train_idx, test_idx in splitter.split(texts, labels):
            model = fit_pipeline(
                build_pipeline(spec, seed),
                list(texts[train_idx]),
                labels[train_idx],
                list(auxiliary[train_idx]),
            )
            proba[test_idx] = _aligned_proba(model, list(texts[test_idx]), classes)
    return proba


def effective_spec(spec: PipelineSpec, data: LabelledSet, cv_folds: int = 0) -> PipelineSpec:
    """The spec as it can be trained on this data: without its auxiliary label when the data lacks
    it (the demo tickets, another mapping) or has too little of it to fit the helper in every fold,
    so the registry records what was really fitted."""
    if spec.auxiliary_label and not (
        data.auxiliary_label == spec.auxiliary_label and data.has_auxiliary(tickets_per_label(spec, cv_folds))
    ):
        return spec.model_copy(update={"auxiliary_label": None})
    return spec


def tickets_per_label(spec: PipelineSpec, cv_folds: int) -> int:
    """Tickets that each of two labels needs for the pipeline to fit in every fold. The final fit
    calibrates on inner folds, so one label needs a ticket per calibration fold; with K-fold
    cross-validation a label of n tickets keeps n - ceil(n / K) in a training part, which must
    still be that many, and n >= K for the outer split. Below this scikit-learn failed on tiny
    sets (the fold split, a training part of one class, an empty inner split)."""
    need = spec.calibration_folds
    if cv_folds < 2:
        return need
    n = max(cv_folds, need)
    while n - math.ceil(n / cv_folds) < need:
        n += 1
    return n


def check_trainable(data: LabelledSet, spec: PipelineSpec, cv_folds: int) -> None:
    """Refuse, in one line an operator can act on, data the head's pipeline cannot be fitted on."""
    need = tickets_per_label(spec, cv_folds)
    if enough_labels(data.labels, need):
        return
    counts = Counter(data.labels)
    seen = ", ".join(f"{label!r}: {n}" for label, n in counts.most_common(3)) or "none"
    folds = f" for {cv_folds}-fold cross-validation" if cv_folds >= 2 else ""
    raise TrainingDataError(
        f"{data.description or 'the training data'}: {len(data)} labelled ticket(s) in {len(counts)} "
        f"label(s) (most common: {seen}); training needs two labels with {need} tickets or more{folds}"
    )


def trainable_spec(
    data: LabelledSet, head: str, cv_folds: int, spec: PipelineSpec | None = None
) -> PipelineSpec:
    """The spec `train` will fit on this data, after refusing data it cannot be fitted on: what
    `hitl train` checks before it starts the flow, and the flow's training step again."""
    spec = effective_spec(spec or spec_for_head(head), data, cv_folds)
    check_trainable(data, spec, cv_folds)
    return spec


def train(
    data: LabelledSet, head: str, seed: int = 0, cv_folds: int = 5, spec: PipelineSpec | None = None
) -> TrainingResult:
    """Fit the head's pipeline on all data; with `cv_folds` >= 2, also measure it out of fold."""
    started = time.perf_counter()
    spec = trainable_spec(data, head, cv_folds, spec)
    try:
        return _train(data, spec, seed, cv_folds, started)
    except ValueError as exc:
        if "empty vocabulary" not in str(exc):
            raise
        raise TrainingDataError(
            f"{data.description or 'the training data'}: no word to learn from (every feature block needs "
            "a word of two or more letters or digits that at least two tickets share)"
        ) from exc


def _train(data: LabelledSet, spec: PipelineSpec, seed: int, cv_folds: int, started: float) -> TrainingResult:
    result_metrics: EvaluationMetrics | None = None
    bins: list[ReliabilityBin] = []
    confidence_map: ConfidenceMap | None = None
    if cv_folds >= 2:
        classes = sorted(set(data.labels))
        raw = out_of_fold_proba(data, spec, cv_folds, seed)
        predicted = np.asarray(classes)[raw.argmax(axis=1)]
        correct = predicted == np.asarray(data.labels)
        # the final model's map sees every out-of-fold prediction; the metrics use cross-fitted maps
        confidence_map = ConfidenceMap.fit(raw.max(axis=1), correct)
        proba = cross_fitted(raw, correct, cv_folds, seed) if confidence_map else raw
        # Coverage depends only on the order of the confidences, which one model's map keeps; the
        # five cross-fitted maps would reorder tickets between parts, so it is ranked before them.
        result_metrics = classification_report(
            data.labels, predicted, proba, classes, ranking=raw.max(axis=1)
        )
        bins = reliability_bins(proba.max(axis=1), correct)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        pipeline = portable(fit_pipeline(build_pipeline(spec, seed), data.texts, data.labels, data.auxiliary))
    return TrainingResult(
        pipeline=pipeline,
        classes=[str(c) for c in pipeline.classes_],
        spec=spec,
        cv_metrics=result_metrics,
        cv_reliability=bins,
        seconds=time.perf_counter() - started,
        confidence_map=confidence_map,
    )


def evaluate(model: LoadedModel, data: LabelledSet, timing_runs: int = 3) -> Evaluation:
    """Score a registered model on labelled data it should never have seen. Throughput is the
    whole batch on one core (BLAS/OpenMP threads limited to 1), the median of `timing_runs` runs:
    one run of a thousand tickets lasts a fraction of a second, so a single stall of a shared
    machine would otherwise decide the figure."""
    durations = []
    with threadpool_limits(limits=1):
        for _ in range(max(timing_runs, 1)):
            started = time.perf_counter()
            proba = model.predict_proba(data.texts)
            durations.append(time.perf_counter() - started)
    seconds = statistics.median(durations)
    predicted = np.asarray(model.classes)[proba.argmax(axis=1)]
    truth = np.asarray(data.labels)
    known = set(model.classes)
    metrics = classification_report(truth, predicted, proba, model.classes)
    bins = reliability_bins(proba.max(axis=1), predicted == truth)
    return Evaluation(
        metrics=metrics,
        tickets_per_second=len(data) / seconds if seconds > 0 else float("inf"),
        reliability=[asdict(b) for b in bins],
        unknown_labels=sum(1 for label in data.labels if label not in known),
    )
