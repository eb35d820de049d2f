"""A head helped by a finer label of the same tickets (hitl/ml/auxiliary.py): learnt when the data
has the label, recorded with the version, loaded through the skops allow-list, and skipped when the
data lacks it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hitl.ml import service
from hitl.ml.auxiliary import AuxiliaryMix
from hitl.ml.dataset import LabelledSet, load_labelled
from hitl.ml.registry import get_version, load_model
from hitl.ml.training import train
from hitl.settings import Settings
from hitl.store.db import Database
from policies.mappings import load_mapping


@pytest.fixture(scope="module")
def helped(demo_file: Path) -> LabelledSet:
    data = load_labelled(demo_file, load_mapping("canonical"), "category", auxiliary="business_service")
    assert data.auxiliary_label == "business_service" and data.has_auxiliary()
    return data


def test_the_helping_label_is_learnt_recorded_and_loaded(
    database: Database, settings: Settings, helped: LabelledSet
) -> None:
    result = train(helped, "category", seed=0, cv_folds=3)
    assert result.spec.auxiliary_label == "business_service" and result.cv_metrics is not None
    mix = result.pipeline.named_steps["classifier"]
    assert isinstance(mix, AuxiliaryMix) and mix.weight == 0.8
    texts = helped.texts[:60]
    features = result.pipeline.named_steps["features"].transform(texts)
    implied = mix.auxiliary_.predict_proba(features) @ mix.table_
    expected = 0.8 * mix.main_.predict_proba(features) + 0.2 * implied
    np.testing.assert_allclose(mix.predict_proba(features), expected)
    np.testing.assert_allclose(mix.table_.sum(axis=1), 1.0)
    with database.session() as session:
        version = service.register(
            session, settings.effective_models_dir, result, helped, "category", make_active=True
        ).version
    with database.session() as session:
        row = get_version(session, "category", version)
        assert row.params["auxiliary_label"] == "business_service"
        loaded = load_model(row, settings.effective_models_dir)  # through the skops allow-list
    np.testing.assert_allclose(loaded.pipeline.predict_proba(texts), result.pipeline.predict_proba(texts))


def test_training_with_a_helping_label_is_deterministic(helped: LabelledSet) -> None:
    first = train(helped, "category", seed=3, cv_folds=0)
    second = train(helped, "category", seed=3, cv_folds=0)
    texts = helped.texts[:50]
    np.testing.assert_array_equal(first.pipeline.predict_proba(texts), second.pipeline.predict_proba(texts))


def test_without_the_helping_label_the_head_trains_alone(demo_file: Path) -> None:
    plain = load_labelled(demo_file, load_mapping("canonical"), "category")
    result = train(plain, "category", seed=0, cv_folds=0)
    assert result.spec.auxiliary_label is None
    assert not isinstance(result.pipeline.named_steps["classifier"], AuxiliaryMix)


def test_tickets_without_the_helping_label_still_train_the_head(helped: LabelledSet) -> None:
    """Reviewed tickets that only the store knows come without it (dataset.apply_reviews)."""
    n = len(helped)
    assert helped.auxiliary is not None
    extra = dataclasses.replace(
        helped,
        texts=helped.texts + ["printer on floor 3 jams on every job"] * 5,
        labels=helped.labels + ["printer"] * 5,
        keys=helped.keys + [("demo", f"X-{i}") for i in range(5)],
        auxiliary=helped.auxiliary + [None] * 5,
    )
    result = train(extra, "category", seed=0, cv_folds=0)
    mix = result.pipeline.named_steps["classifier"]
    assert mix.auxiliary_.classes_.size == len({a for a in helped.auxiliary if a})
    assert extra.content_hash() != dataclasses.replace(extra, auxiliary=None).content_hash()
    assert len(result.pipeline.predict(extra.texts[n:])) == 5
