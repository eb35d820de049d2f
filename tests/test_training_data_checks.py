"""Data too small or too uniform to train on is refused in one line, before scikit-learn fails
deep in a fold split; data just large enough trains in every fold. The limits are those of
`tickets_per_label`, found by training tiny sets until they failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl.errors import TrainingDataError
from hitl.ml.dataset import LabelledSet, load_labelled
from hitl.ml.pipelines import DEFAULT_SPEC
from hitl.ml.training import effective_spec, tickets_per_label, train
from policies.mappings import load_mapping

from .support import run_cli

WORDS = {
    "printer": "printer toner paper jam tray office floor queue",
    "network": "vpn tunnel router switch firewall latency packet gateway",
    "account": "password reset locked account login expired mailbox user",
}


def _tickets(counts: dict[str, int]) -> LabelledSet:
    texts, labels = [], []
    for label, n in counts.items():
        words = WORDS[label].split()
        for i in range(n):
            texts.append(" ".join(words[(i + j) % len(words)] for j in range(5)) + f" ticket{i}")
            labels.append(label)
    return LabelledSet(texts=texts, labels=labels, description="tiny.csv")


def test_the_limit_per_label_follows_the_folds() -> None:
    assert [tickets_per_label(DEFAULT_SPEC, k) for k in (0, 2, 3, 4, 5, 10)] == [3, 6, 5, 4, 5, 10]


@pytest.mark.parametrize("folds", [0, 2, 3, 5, 10])
def test_two_labels_at_the_limit_train_and_one_ticket_fewer_is_refused(folds: int) -> None:
    need = tickets_per_label(DEFAULT_SPEC, folds)
    trained = train(_tickets({"printer": need, "network": need, "account": 1}), "queue", cv_folds=folds)
    assert trained.classes == ["account", "network", "printer"]
    assert (trained.cv_metrics is not None) == (folds >= 2)
    with pytest.raises(TrainingDataError) as refused:
        train(
            _tickets({"printer": need + 20, "network": need - 1, "account": need - 1}),
            "queue",
            cv_folds=folds,
        )
    message = str(refused.value)
    assert "\n" not in message
    assert f"two labels with {need} tickets or more" in message and "'printer': " in message


def test_one_label_is_refused() -> None:
    with pytest.raises(TrainingDataError, match=r"in 1 label\(s\) \(most common: 'printer': 40\)"):
        train(_tickets({"printer": 40}), "queue", cv_folds=5)


def test_texts_without_a_shared_word_are_refused() -> None:
    data = LabelledSet(texts=["a", "b"] * 10, labels=["x", "y"] * 10, description="letters.csv")
    with pytest.raises(TrainingDataError, match=r"letters\.csv: no word to learn from"):
        train(data, "queue", cv_folds=5)


def test_a_helper_label_too_rare_for_the_folds_is_left_out(demo_file: Path) -> None:
    data = load_labelled(demo_file, load_mapping("canonical"), "category", auxiliary="business_service")
    common = max(set(data.auxiliary or []), key=(data.auxiliary or []).count)
    data.auxiliary = [a if a == common else None for a in data.auxiliary or []]
    data.auxiliary[0] = data.auxiliary[0] or "rare"  # two values, but one of them once
    spec = effective_spec(DEFAULT_SPEC.model_copy(update={"auxiliary_label": "business_service"}), data, 5)
    assert spec.auxiliary_label is None
    assert train(data, "category", cv_folds=5).spec.auxiliary_label is None


def test_hitl_train_refuses_in_one_line_before_starting_the_flow(tmp_path: Path) -> None:
    data = tmp_path / "tiny.csv"
    rows = [f"T{i},Acme,printer {i},toner jam {i},{'hardware' if i < 4 else 'network'}" for i in range(6)]
    data.write_text("\n".join(["external_id,client,subject,body,category", *rows]) + "\n", encoding="utf-8")
    result = run_cli("train", "--data", str(data), "--mapping", "canonical", "--label", "category")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {data} (mapping canonical")
    assert "'hardware': 4, 'network': 2" in result.stderr
