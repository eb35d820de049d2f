"""The last recalibration of a head's confidence: it fixes a biased top probability without
reordering tickets or changing a label, and the metrics stored with a version stay out of fold."""

from __future__ import annotations

import numpy as np

from hitl.ml.confidence import ConfidenceMap, cross_fitted
from hitl.ml.metrics import coverage_at_accuracy, expected_calibration_error


def _underconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three-class rows whose top probability understates how often the top label is right."""
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.4, 0.95, n)
    logit = np.log(top / (1 - top))
    truly = 1 / (1 + np.exp(-(2.0 * logit + 0.3)))  # right more often than it says
    correct = rng.random(n) < truly
    second = (1 - top) * rng.uniform(0.5, 1.0, n)
    proba = np.column_stack([top, second, 1 - top - second])
    return proba, correct


def test_the_map_removes_a_systematic_bias_and_keeps_order_and_labels() -> None:
    proba, correct = _underconfident(4000, 1)
    mapping = ConfidenceMap.fit(proba.max(axis=1), correct)
    assert mapping is not None and mapping.values == sorted(mapping.values)
    fresh, fresh_correct = _underconfident(4000, 2)
    mapped = mapping.apply(fresh)
    before = expected_calibration_error(fresh.max(axis=1), fresh_correct)
    after = expected_calibration_error(mapped.max(axis=1), fresh_correct)
    assert after < before / 2, (before, after)
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(mapped.argmax(axis=1), fresh.argmax(axis=1))
    confident = fresh.max(axis=1) > 0.6  # the map's order is the model's order (kept rows are below)
    np.testing.assert_array_equal(
        np.argsort(-mapped.max(axis=1)[confident]), np.argsort(-fresh.max(axis=1)[confident])
    )
    assert coverage_at_accuracy(mapped.max(axis=1), fresh_correct) == coverage_at_accuracy(
        fresh.max(axis=1), fresh_correct
    )


def test_a_lowered_confidence_never_hands_the_top_to_another_label() -> None:
    mapping = ConfidenceMap(thresholds=[0.0, 1.0], values=[0.0, 0.6])  # pulls every confidence down
    proba = np.array([[0.5, 0.45, 0.05], [0.05, 0.9, 0.05], [1.0, 0.0, 0.0]])
    mapped = mapping.apply(proba)
    np.testing.assert_array_equal(mapped.argmax(axis=1), [0, 1, 0])
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0)
    np.testing.assert_array_equal(mapped[0], proba[0])  # lowered, 0.45 would have overtaken: kept
    assert mapped[1, 1] < 0.9 and mapped[1, 0] == mapped[1, 2] > 0.05  # lowered, the rest rescaled
    np.testing.assert_array_equal(mapped[2], proba[2])  # a certain row has nothing to rescale


def test_no_map_without_evidence_for_one() -> None:
    confidence = np.linspace(0.3, 0.99, 50)
    assert ConfidenceMap.fit(confidence, np.ones(50, dtype=bool)) is None
    assert ConfidenceMap.fit(confidence, np.zeros(50, dtype=bool)) is None
    assert ConfidenceMap.fit(confidence, confidence < 0.6) is None  # confidence against correctness
    assert ConfidenceMap.fit(confidence[:10], confidence[:10] > 0.5) is None  # too few


def test_cross_fitted_maps_never_use_a_ticket_for_its_own_confidence() -> None:
    proba, correct = _underconfident(1000, 3)
    once = cross_fitted(proba, correct, folds=5, seed=0)
    flipped = correct.copy()
    flipped[0] = not correct[0]  # change only ticket 0's outcome
    again = cross_fitted(proba, flipped, folds=5, seed=0)
    np.testing.assert_array_equal(once[0], again[0])
    assert not np.array_equal(once, again)
