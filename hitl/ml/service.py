"""Registry operations the CLI and the train-model flow share: register a trained model, load
active ones, and score a model on labelled data."""

from __future__ import annotations

import getpass
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from hitl.ml.dataset import LabelledSet
from hitl.ml.predictor import LoadedModel
from hitl.ml.registry import (
    ModelRef,
    activate,
    active_versions,
    load_model_cached,
    write_model_file,
)
from hitl.store.orm import ModelVersion, utcnow

if TYPE_CHECKING:  # training pulls in scikit-learn: not needed to load or list models
    from hitl.ml.training import TrainingResult


def _strip_for_storage(pipeline: object) -> None:
    """TfidfVectorizer keeps every pruned term in `stop_words_`, only for introspection; dropping
    it makes model files several times smaller without changing a prediction."""
    features = getattr(pipeline, "named_steps", {}).get("features")
    for _, vectorizer in getattr(features, "transformer_list", []):
        if hasattr(vectorizer, "stop_words_"):
            del vectorizer.stop_words_


def register(
    session: Session,
    models_dir: Path,
    result: TrainingResult,
    data: LabelledSet,
    head: str,
    make_active: bool = False,
    trained_by: str | None = None,
) -> ModelVersion:
    """Save the model file and its registry row (status candidate, or active when asked)."""
    created = utcnow()
    data_hash = data.content_hash()
    version = f"{head}-{created:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"  # unique even within a second
    _strip_for_storage(result.pipeline)
    path, sha256 = write_model_file(result.pipeline, models_dir / head, version)
    row = ModelVersion(
        version=version,
        head=head,
        status="candidate",
        path=str(path.relative_to(models_dir)),
        sha256=sha256,
        training_data_hash=data_hash,
        n_train=len(data),
        n_reviews=data.from_reviews,
        data_source=data.description,
        classes=result.classes,
        metrics={
            "cv": result.cv_metrics.model_dump() if result.cv_metrics else None,
            "cv_reliability": [asdict(b) for b in result.cv_reliability],
            "training_seconds": round(result.seconds, 2),
        },
        params={
            **result.spec.model_dump(mode="json"),
            "confidence_map": result.confidence_map.model_dump() if result.confidence_map else None,
        },
        trained_by=trained_by or _whoami(),
        created_at=created,
    )
    session.add(row)
    session.flush()
    if make_active:
        activate(session, version)
    return row


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def load_active_models(
    session: Session, models_dir: Path, heads: list[str] | None = None
) -> list[LoadedModel]:
    """Every active model (or those of `heads`), each verified before it is loaded."""
    return list(ActiveModels.read(session, models_dir, heads).values())


class ActiveModels(Mapping[str, LoadedModel]):
    """The active models as the registry named them when the set was made, each file verified and
    loaded on first use (once per process). Reading the registry takes a short transaction; loading
    a file takes seconds, and must not happen inside one: on SQLite every transaction holds the
    write lock, so flow processes starting together queued behind each other's loads until
    "database is locked". A run that only shows a form or records an answer loads no model."""

    def __init__(self, refs: Mapping[str, ModelRef], models_dir: Path) -> None:
        self._refs = dict(refs)
        self._models_dir = models_dir

    @classmethod
    def read(cls, session: Session, models_dir: Path, heads: list[str] | None = None) -> ActiveModels:
        rows = active_versions(session)
        wanted = heads or sorted(rows)
        return cls({h: ModelRef.of(rows[h]) for h in wanted if h in rows}, models_dir)

    def __getitem__(self, head: str) -> LoadedModel:
        return load_model_cached(self._refs[head], self._models_dir)

    def __contains__(self, head: object) -> bool:  # Mapping's default would load the file
        return head in self._refs

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def classes(self, head: str) -> list[str]:
        """The registry's classes (checked against the file when it loads), without loading it."""
        return list(self._refs[head].classes)
