"""Prefect tasks of the train-model flow: thin wrappers over hitl.ml."""

from __future__ import annotations

import base64
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from hitl.ml import service
from hitl.ml.dataset import LabelledSet, apply_reviews, load_labelled
from hitl.ml.pipelines import spec_for_head
from hitl.ml.plots import reliability_png
from hitl.ml.report import TrainReport, metrics_rows, train_markdown
from hitl.ml.training import TrainingResult, train
from hitl.settings import get_settings
from hitl.store.db import get_database
from policies.mappings import load_mapping


@task(name="load-training-data", cache_policy=NO_CACHE)
def load_data(data: str, mapping: str, label: str, head: str, include_reviews: bool) -> LabelledSet:
    settings = get_settings()
    helper = spec_for_head(head).auxiliary_label  # read too when the mapping has it (hitl/ml/auxiliary.py)
    dataset = load_labelled(Path(data), load_mapping(mapping, settings.mappings_dir), label, auxiliary=helper)
    if include_reviews:
        with get_database(settings).session() as session:
            dataset = apply_reviews(dataset, session, head)
    get_run_logger().info(
        "%d labelled tickets (%d from reviews; %d invalid and %d unlabelled rows skipped)",
        len(dataset),
        dataset.from_reviews,
        dataset.skipped_invalid,
        dataset.skipped_unlabelled,
    )
    return dataset


@task(name="train-and-cross-validate", cache_policy=NO_CACHE)
def fit(dataset: LabelledSet, head: str, seed: int, cv_folds: int) -> TrainingResult:
    result = train(dataset, head, seed=seed, cv_folds=cv_folds)
    get_run_logger().info(
        "trained %s in %.1f s; out-of-fold: %s",
        head,
        result.seconds,
        result.cv_metrics.model_dump() if result.cv_metrics else "not measured",
    )
    return result


@task(name="register-model", cache_policy=NO_CACHE)
def register(result: TrainingResult, dataset: LabelledSet, head: str, activate: bool) -> TrainReport:
    settings = get_settings()
    with get_database(settings).session() as session:
        row = service.register(
            session, settings.effective_models_dir, result, dataset, head, make_active=activate
        )
        return TrainReport.from_row(row, settings.effective_models_dir)


@task(name="publish-training-report", cache_policy=NO_CACHE)
def publish(report: TrainReport, result: TrainingResult) -> Path | None:
    key = f"model-{report.head.replace('_', '-')}"
    create_markdown_artifact(key=key, markdown=train_markdown(report), description=f"Model {report.version}")
    if result.cv_metrics is None:
        return None
    create_table_artifact(key=f"{key}-metrics", table=metrics_rows(report))
    png = reliability_png(result.cv_reliability, f"{report.head} out-of-fold", result.cv_metrics.ece)
    path = Path(report.model_path).with_suffix(".reliability.png")
    path.write_bytes(png)
    create_image_artifact(
        image_url="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        key=f"{key}-reliability",
        description=f"Reliability diagram of {report.version} (out-of-fold)",
    )
    return path
