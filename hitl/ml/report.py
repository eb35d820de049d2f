"""How a trained model is reported: the JSON of `hitl train` and the flow's artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hitl.store.orm import ModelVersion


class TrainReport(BaseModel):
    version: str
    head: str
    status: str
    n_train: int
    n_reviews: int
    classes: int
    cv: dict[str, Any] | None
    model_path: str
    sha256: str
    training_seconds: float
    flow_run_id: str | None = None

    @classmethod
    def from_row(cls, row: ModelVersion, models_dir: Path) -> TrainReport:
        return cls(
            version=row.version,
            head=row.head,
            status=row.status,
            n_train=row.n_train,
            n_reviews=row.n_reviews,
            classes=len(row.classes),
            cv=row.metrics.get("cv"),
            model_path=str(models_dir / row.path),
            sha256=row.sha256,
            training_seconds=row.metrics.get("training_seconds", 0.0),
        )


def metrics_rows(report: TrainReport) -> list[dict[str, Any]]:
    if not report.cv:
        return []
    cv = dict(report.cv)
    coverage = cv.pop("coverage_at_accuracy", {})
    return [{"metric": k, "value": v} for k, v in cv.items()] + [
        {"metric": f"coverage at accuracy {level}", "value": value} for level, value in coverage.items()
    ]


def train_markdown(report: TrainReport) -> str:
    lines = [
        f"# Model `{report.version}` ({report.status})",
        "",
        f"- head: {report.head}; {report.classes} classes; trained on {report.n_train} tickets "
        f"({report.n_reviews} labels from human reviews) in {report.training_seconds:.1f} s",
        f"- file SHA-256: `{report.sha256}`",
    ]
    if report.cv:
        cov = report.cv.get("coverage_at_accuracy", {})
        lines.append(
            f"- out-of-fold: accuracy {report.cv['accuracy']:.4f}, macro-F1 {report.cv['macro_f1']:.4f}, "
            f"ECE {report.cv['ece']:.4f}, Brier {report.cv['brier']:.4f}, coverage at 95 % accuracy "
            f"{cov.get('0.95', 0):.4f}"
        )
    if report.status != "active":
        lines.append(f"- promote it with `hitl models activate {report.version}`")
    return "\n".join(lines)
