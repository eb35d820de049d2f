"""The model registry: versioned files under the models folder, one DB row per version.

A model file is loaded only after its SHA-256 matches the one recorded when it was saved, and
through skops with an allow-list of types, so a swapped or tampered file can never run code.
Promotion to `active` is explicit, one active model per head.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hitl.errors import HitlError
from hitl.ml.confidence import ConfidenceMap
from hitl.ml.predictor import LoadedModel
from hitl.store.orm import ModelVersion, utcnow

# Types a model file may contain beyond what skops trusts by default: those of our pipelines.
ALLOWED_TYPES = frozenset(
    {
        "builtins.dict",
        "hitl.ml.auxiliary.AuxiliaryMix",  # our own class: two sklearn classifiers, a table, a weight
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "scipy.sparse._csr.csr_matrix",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.calibration._TemperatureScaling",
        "sklearn.utils._bunch.Bunch",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.pipeline.FeatureUnion",
    }
)


class ModelError(HitlError):
    """A model is missing, unknown, or may not be loaded."""


class ModelIntegrityError(ModelError):
    """The file on disk is not the file the registry recorded."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_model_file(pipeline: object, folder: Path, version: str) -> tuple[Path, str]:
    """Atomically write the model; returns its path and SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{version}.skops"
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{version}.", suffix=".tmp")
    os.close(fd)
    import skops.io  # imported here: it takes seconds, and most processes never save a model

    try:
        # the vocabularies go into skops' JSON schema: deflate shrinks a model file about tenfold
        skops.io.dump(pipeline, temp_name, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    return target, file_sha256(target)


@dataclass(frozen=True)
class ModelRef:
    """What a registry row says about a model file, kept after the session that read it closed."""

    version: str
    head: str
    path: str
    sha256: str
    classes: tuple[str, ...]
    confidence_map: ConfidenceMap | None = None

    @classmethod
    def of(cls, row: ModelVersion) -> ModelRef:
        return cls(
            row.version, row.head, row.path, row.sha256, tuple(str(c) for c in row.classes), stored_map(row)
        )


def stored_map(row: ModelVersion | ModelRef) -> ConfidenceMap | None:
    """The confidence map a version was registered with (versions from before it have none)."""
    if isinstance(row, ModelRef):
        return row.confidence_map
    stored = (row.params or {}).get("confidence_map")
    return ConfidenceMap.model_validate(stored) if stored else None


_loaded: dict[tuple[Path, str, str], LoadedModel] = {}
_loaded_lock = threading.Lock()


def load_model_cached(ref: ModelRef, models_dir: Path) -> LoadedModel:
    """Each model file is verified and loaded once per process: a worker process that serves many
    flow runs (or one run asking twice) does not pay seconds of skops loading per run. Keyed by the
    recorded SHA-256 too, so a file replaced under the same version is verified (and refused) again."""
    key = (models_dir / ref.path, ref.version, ref.sha256)
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = load_model(ref, models_dir)
        return _loaded[key]


def load_model(row: ModelVersion | ModelRef, models_dir: Path) -> LoadedModel:
    path = models_dir / row.path
    if not path.is_file():
        raise ModelError(f"model {row.version}: file {path} is missing (HITL_MODELS_DIR={models_dir})")
    actual = file_sha256(path)
    if actual != row.sha256:
        raise ModelIntegrityError(
            f"model {row.version}: file {path} has SHA-256 {actual[:12]}..., the registry recorded "
            f"{row.sha256[:12]}...; refusing to load a file that was changed after training"
        )
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    # One pass: skops audits the types against the allow-list while it loads (asking for the
    # untrusted types first parsed the whole file twice; about 40 % of the load time).
    try:
        pipeline = skops.io.load(path, trusted=sorted(ALLOWED_TYPES))
    except UntrustedTypesFoundException:
        unexpected = sorted(set(skops.io.get_untrusted_types(file=path)) - ALLOWED_TYPES)
        raise ModelIntegrityError(
            f"model {row.version}: file {path} holds unexpected types {unexpected}"
        ) from None
    classes = [str(c) for c in pipeline.classes_]
    if classes != list(row.classes):
        raise ModelIntegrityError(f"model {row.version}: classes in the file differ from the registry's")
    return LoadedModel(
        version=row.version, head=row.head, pipeline=pipeline, classes=classes, confidence_map=stored_map(row)
    )


def get_version(session: Session, head: str | None, ref: str) -> ModelVersion:
    """`ref` is a version string, or `active` (then `head` is required)."""
    if ref == "active":
        if not head:
            raise ModelError("say which head's active model to use (--head)")
        row = session.execute(
            select(ModelVersion).where(ModelVersion.head == head, ModelVersion.status == "active")
        ).scalar_one_or_none()
        if row is None:
            raise ModelError(f"no active model for head {head!r}: train one with `hitl train ... --activate`")
        return row
    row = session.get(ModelVersion, ref)
    if row is None:
        raise ModelError(f"no model version {ref!r} (see `hitl models list`)")
    return row


def activate(session: Session, version: str) -> ModelVersion:
    """Make `version` its head's active model; the previously active one is retired."""
    row = get_version(session, None, version)
    if row.status == "active":
        return row
    now = utcnow()
    current = session.execute(
        select(ModelVersion)
        .where(ModelVersion.head == row.head, ModelVersion.status == "active")
        .with_for_update()
    ).scalar_one_or_none()
    if current is not None:
        current.status, current.retired_at = "retired", now
        session.flush()
    row.status, row.activated_at, row.retired_at = "active", now, None
    return row


def list_versions(session: Session, head: str | None = None) -> list[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.created_at.desc())
    if head:
        query = query.where(ModelVersion.head == head)
    return list(session.execute(query).scalars())


def active_versions(session: Session) -> dict[str, ModelVersion]:
    rows = session.execute(select(ModelVersion).where(ModelVersion.status == "active")).scalars()
    return {row.head: row for row in rows}
