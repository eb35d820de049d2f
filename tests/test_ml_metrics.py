"""Hand-computed cases for the triage metrics: each number below was worked out on paper."""

from __future__ import annotations

import numpy as np
import pytest

from hitl.ml.metrics import (
    EvaluationMetrics,
    brier_score,
    classification_report,
    coverage_at_accuracy,
    expected_calibration_error,
    macro_f1,
    reliability_bins,
)


def test_ece_hand_computed_two_bins() -> None:
    # Bin [0.8, 0.8667): confidences 0.8, 0.8 -> mean 0.8, accuracy 1/2 -> gap 0.3, weight 2/4.
    # Bin [0.9333, 1]:   confidences 1.0, 1.0 -> mean 1.0, accuracy 1   -> gap 0,   weight 2/4.
    ece = expected_calibration_error([0.8, 0.8, 1.0, 1.0], [True, False, True, True])
    assert ece == pytest.approx(0.15)


def test_ece_uses_fifteen_bins_by_default() -> None:
    # 0.50 and 0.55 share a bin with 10 bins but not with 15 (0.5333 is a 15-bin edge).
    conf, correct = [0.50, 0.55], [False, True]
    # 15 bins: |0 - 0.5| * 1/2 + |1 - 0.55| * 1/2 = 0.475
    assert expected_calibration_error(conf, correct) == pytest.approx(0.475)
    # 10 bins: one bin, mean confidence 0.525, accuracy 0.5 -> 0.025
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.025)


def test_ece_of_perfectly_calibrated_model_is_near_zero() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.0, 1.0, 200_000)
    correct = rng.uniform(0.0, 1.0, conf.size) < conf
    assert expected_calibration_error(conf, correct) < 0.01


def test_ece_of_overconfident_model_is_large() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.9, 1.0, 50_000)
    correct = rng.uniform(0.0, 1.0, conf.size) < 0.6  # says ~95 %, is right 60 % of the time
    assert expected_calibration_error(conf, correct) == pytest.approx(0.35, abs=0.01)


def test_reliability_bins_edges_and_contents() -> None:
    bins = reliability_bins([0.1, 0.15, 0.9, 1.0], [False, True, True, True], n_bins=4)
    assert [(b.lower, b.upper) for b in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [b.count for b in bins] == [2, 0, 0, 2]
    assert bins[0].accuracy == pytest.approx(0.5)
    assert bins[0].mean_confidence == pytest.approx(0.125)
    assert bins[1].accuracy is None and bins[1].mean_confidence is None
    assert bins[3].accuracy == pytest.approx(1.0)
    assert bins[3].mean_confidence == pytest.approx(0.95)  # 1.0 falls in the last, closed bin


def test_brier_of_perfect_one_hot_is_zero() -> None:
    proba = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert brier_score(proba, ["a", "b", "c"], ["a", "c"]) == 0.0


def test_brier_hand_computed() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    # row 1 (y=a): 0.09 + 0.04 + 0.01 = 0.14; row 2 (y=b): 0.25 + 0.25 + 0 = 0.50 -> mean 0.32
    assert brier_score(proba, ["a", "b", "c"], ["a", "b"]) == pytest.approx(0.32)


def test_brier_unknown_label_counts_as_all_zero_one_hot() -> None:
    proba = np.array([[0.6, 0.4]])
    assert brier_score(proba, [1, 2], [9]) == pytest.approx(0.36 + 0.16)


def test_brier_rejects_mismatched_classes() -> None:
    with pytest.raises(ValueError):
        brier_score(np.array([[0.5, 0.5]]), [1, 2, 3], [1])


def test_coverage_all_correct_is_full() -> None:
    assert coverage_at_accuracy([0.9, 0.6, 0.3], [True, True, True]) == {
        "0.90": 1.0,
        "0.95": 1.0,
        "0.99": 1.0,
    }


def test_coverage_first_wrong_gives_zero_at_high_levels() -> None:
    # Prefix accuracies: 0, 1/2, 2/3, 3/4 -> none reaches 0.90.
    cov = coverage_at_accuracy([0.99, 0.8, 0.7, 0.6], [False, True, True, True])
    assert cov == {"0.90": 0.0, "0.95": 0.0, "0.99": 0.0}
    assert coverage_at_accuracy([0.99, 0.8, 0.7, 0.6], [False, True, True, True], levels=(0.75,)) == {
        "0.75": 1.0
    }


def test_coverage_takes_the_largest_qualifying_prefix() -> None:
    # Sorted by confidence: T T T T T T T T T F (acc 9/10) then T (10/11) then F (10/12).
    conf = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.90, 0.89, 0.50]
    correct = [True] * 9 + [False, True, False]
    cov = coverage_at_accuracy(conf, correct, levels=(0.90, 0.95))
    assert cov["0.90"] == pytest.approx(11 / 12)  # 10/11 = 0.909 >= 0.90
    assert cov["0.95"] == pytest.approx(9 / 12)


def test_coverage_sorts_by_confidence_not_input_order() -> None:
    cov = coverage_at_accuracy([0.2, 0.9, 0.8], [False, True, True], levels=(0.95,))
    assert cov == {"0.95": pytest.approx(2 / 3)}


def test_coverage_does_not_split_tied_confidences() -> None:
    # The two 0.9 tickets are one threshold: taking only the correct one is not an option.
    cov = coverage_at_accuracy([0.95, 0.9, 0.9, 0.1], [True, True, False, True], levels=(0.95, 0.6))
    assert cov == {"0.95": 0.25, "0.60": 1.0}  # cuts only at 1, 3 or 4 tickets


def test_macro_f1_matches_hand_computation() -> None:
    y_true = ["a", "a", "b", "b"]
    y_pred = ["a", "b", "b", "c"]
    # a: P=1, R=1/2 -> 2/3; b: P=1/2, R=1/2 -> 1/2; c: 0 -> mean (2/3 + 1/2 + 0) / 3
    assert macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 1 / 2) / 3)


def test_macro_f1_agrees_with_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 6, 500)
    y_pred = np.where(rng.uniform(size=500) < 0.6, y_true, rng.integers(0, 8, 500))
    assert macro_f1(y_true, y_pred) == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro"))


def test_classification_report_rounds_and_combines() -> None:
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    classes = [0, 1]
    y_true = [0, 0, 1, 1]
    y_pred = [0, 0, 1, 0]
    report = classification_report(y_true, y_pred, proba, classes, levels=(0.95,))
    assert isinstance(report, EvaluationMetrics)
    assert report.n == 4
    assert report.accuracy == 0.75
    assert report.macro_f1 == round((0.8 + 2 / 3) / 2, 4)  # class 0: P=2/3,R=1; class 1: P=1,R=1/2
    # Brier: 0.02, 0.08, 0.18, 0.72 -> mean 0.25
    assert report.brier == 0.25
    # Bins (15): 0.9 -> [0.8667, 0.9333) acc 1; 0.8 -> [0.8, 0.8667) acc 1; 0.7 -> [0.6667, 0.7333) acc 1;
    # 0.6 -> [0.6, 0.6667) acc 0 -> (0.1 + 0.2 + 0.3 + 0.6) / 4 = 0.3
    assert report.ece == 0.3
    assert report.coverage_at_accuracy == {"0.95": 0.75}


def test_evaluation_metrics_rounds_to_four_decimals() -> None:
    m = EvaluationMetrics(
        n=3,
        accuracy=2 / 3,
        macro_f1=0.123456,
        ece=0.000049,
        brier=1 / 7,
        coverage_at_accuracy={"0.95": 1 / 3},
    )
    assert (m.accuracy, m.macro_f1, m.ece, m.brier) == (0.6667, 0.1235, 0.0, 0.1429)
    assert m.coverage_at_accuracy == {"0.95": 0.3333}


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        expected_calibration_error([0.5, 1.2], [True, False])
    with pytest.raises(ValueError):
        coverage_at_accuracy([0.5], [True, False])
    with pytest.raises(ValueError):
        expected_calibration_error([], [])
