"""The train-model flow: load labelled data (plus human reviews), train with cross-validation,
register the version, publish metrics and a reliability diagram."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from hitl.ml.report import TrainReport
from tasks.training import fit, load_data, publish, register


@flow(name="train-model", description="Train one decision head, measure it out of fold, register it.")
def train_model(
    data: str,
    mapping: str,
    label: str,
    head: str | None = None,
    activate: bool = False,
    include_reviews: bool = False,
    cv_folds: int = 5,
    seed: int = 0,
) -> TrainReport:
    head_name = head or label
    dataset = load_data(data, mapping, label, head_name, include_reviews)
    result = fit(dataset, head_name, seed, cv_folds)
    report = register(result, dataset, head_name, activate)
    publish(report, result)
    return report.model_copy(update={"flow_run_id": flow_run.id})
