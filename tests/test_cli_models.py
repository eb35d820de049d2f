"""`hitl train / evaluate / predict / models` end to end: subprocesses, a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from hitl.demo import generate_tickets, write_batch
from hitl.settings import Settings

from .support import run_cli

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The registry's database behaviour is covered on both databases in test_ml_models; here SQLite."""
    return f"sqlite:///{tmp_path / 'hitl.db'}"


def test_train_evaluate_predict_and_promote(settings: Settings, tmp_path: Path, prefect_api: str) -> None:
    train_file, eval_file = tmp_path / "train.csv", tmp_path / "eval.jsonl"
    write_batch(train_file, generate_tickets(count=300, seed=21))
    write_batch(eval_file, generate_tickets(count=120, seed=22))

    trained = run_cli(
        "train",
        "--data",
        str(train_file),
        "--mapping",
        "canonical",
        "--label",
        "category",
        "--activate",
        "--cv-folds",
        "3",
        "--json",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    report = json.loads(trained.stdout)
    assert report["status"] == "active" and report["head"] == "category" and report["n_train"] == 300
    assert report["cv"]["n"] == 300 and 0 <= report["cv"]["ece"] <= 1
    artifacts = httpx.post(
        f"{prefect_api}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [report["flow_run_id"]]}}},
    ).json()
    kinds = {a["key"]: a["type"] for a in artifacts}
    assert kinds["model-category-reliability"] == "image" and kinds["model-category-metrics"] == "table"
    assert Path(report["model_path"]).with_suffix(".reliability.png").read_bytes()[:4] == b"\x89PNG"

    evaluated = run_cli(
        "evaluate", "--data", str(eval_file), "--mapping", "canonical", "--label", "category", "--json"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    figures = json.loads(evaluated.stdout)
    assert {"n", "accuracy", "macro_f1", "ece", "brier", "coverage_at_accuracy", "tickets_per_second"} <= set(
        figures
    )
    assert figures["n"] == 120 and set(figures["coverage_at_accuracy"]) == {"0.90", "0.95", "0.99"}
    assert figures["model_version"] == report["version"] and figures["unknown_labels"] == 0
    assert evaluated.stderr.count("warning") == 0

    unseen = tmp_path / "unseen.jsonl"
    rows = [json.loads(line) for line in eval_file.read_text(encoding="utf-8").splitlines()]
    for row in rows[:10]:
        row["category"] = "label-never-trained"
    unseen.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    evaluated = run_cli(
        "evaluate", "--data", str(unseen), "--mapping", "canonical", "--label", "category", "--json"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["unknown_labels"] == 10
    assert "warning: 10 of 120 tickets carry a category the model does not know" in evaluated.stderr

    predicted = json.loads(
        run_cli("predict", "--text", "Outlook keeps asking for my password", "--json").stdout
    )
    assert predicted[0]["model_version"] == report["version"] and len(predicted[0]["alternatives"]) == 3

    candidate = run_cli(
        "train",
        "--data",
        str(train_file),
        "--mapping",
        "canonical",
        "--label",
        "category",
        "--cv-folds",
        "0",
        "--seed",
        "1",
        "--json",
    )
    new_version = json.loads(candidate.stdout)["version"]
    assert json.loads(candidate.stdout)["status"] == "candidate"
    promoted = run_cli("models", "activate", new_version)
    assert promoted.returncode == 0 and f"{new_version} is now the active category model" in promoted.stdout
    listed = {m["version"]: m["status"] for m in json.loads(run_cli("models", "list", "--json").stdout)}
    assert listed == {report["version"]: "retired", new_version: "active"}
    table = run_cli("models", "list", env={"COLUMNS": "200"}).stdout
    header = next(line for line in table.splitlines() if "status" in line)
    assert "accuracy (cv)" in header and "ECE (cv)" in header and "coverage at 95 % (cv)" in header
    row = next(line for line in table.splitlines() if report["version"] in line)
    assert f"{report['cv']['coverage_at_accuracy']['0.95']}" in row.split("│")[-2]
    narrow = run_cli("models", "list", env={"COLUMNS": "80"}).stdout  # a version is copied: never folded
    assert all(f"│ {v} " in narrow for v in listed), narrow


def test_model_errors_are_one_line(settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    write_batch(data, generate_tickets(count=30, seed=1))
    cases = [
        (("predict", "--text", "hello"), "no active model"),
        (("predict", "--text", "  "), "--text is empty"),
        (
            ("evaluate", "--data", str(data), "--mapping", "canonical", "--label", "category"),
            "no active model",
        ),
        (
            ("evaluate", "--data", str(data), "--mapping", "canonical", "--label", "colour"),
            "has no label 'colour'",
        ),
        (("models", "activate", "nope"), "no model version 'nope'"),
        (
            (
                "train",
                "--data",
                str(data),
                "--mapping",
                "canonical",
                "--label",
                "category",
                "--head",
                "Bad Head",
            ),
            "invalid head name",
        ),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
