"""`hitl train`, `hitl evaluate`, `hitl predict`, `hitl models`: the triage models."""

from __future__ import annotations

from pathlib import Path

import typer

from hitl.cli.common import JSON_OPTION, err, head_name, out, print_json, status, table
from hitl.settings import get_settings
from hitl.store.db import get_database

app = typer.Typer()
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Labelled tickets (CSV/JSONL)."),
    mapping: str = typer.Option(..., help="Column mapping of the file."),
    label: str = typer.Option(..., help="Label to learn: a ticket field or a source column."),
    head: str | None = typer.Option(None, help="Decision head name; default: the label's field name."),
    activate: bool = typer.Option(False, "--activate", help="Make the new version its head's active model."),
    include_reviews: bool = typer.Option(
        False, "--include-reviews", help="Let final labels from human reviews override the file's."
    ),
    cv_folds: int = typer.Option(5, min=0, max=20, help="Folds for out-of-fold metrics (0: skip)."),
    seed: int = typer.Option(0, help="Random seed (same data and seed, same model)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Train a decision head with the train-model flow and register the version."""
    from hitl.ml.dataset import resolve_label
    from hitl.prefect_env import configure_prefect, quiet_shutdown
    from policies.mappings import load_mapping

    settings = get_settings()
    chosen = load_mapping(mapping, settings.mappings_dir)
    head_key = head_name(head or resolve_label(chosen, label))
    from hitl.ingestion.files import check_file

    check_file(data, chosen.required_columns)
    from hitl.ml.dataset import load_labelled
    from hitl.ml.pipelines import spec_for_head
    from hitl.ml.training import trainable_spec

    # Too few labels is one line here (0.1 s for the Endava file), not a failed flow's tracebacks;
    # the flow checks again with the reviews (--include-reviews) applied.
    labelled = load_labelled(data, chosen, label, auxiliary=spec_for_head(head_key).auxiliary_label)
    trainable_spec(labelled, head_key, cv_folds)
    get_database(settings).ensure_schema()
    configure_prefect(settings)
    from flows.train_model import train_model

    with status(f"training {head_key} on {data.name} ..."):
        report = train_model(
            data=str(data),
            mapping=mapping,
            label=label,
            head=head_key,
            activate=activate,
            include_reviews=include_reviews,
            cv_folds=cv_folds,
            seed=seed,
        )
    quiet_shutdown()
    if json_output:
        print_json(report.model_dump())
        return
    from hitl.ml.report import train_markdown

    out.print(train_markdown(report), markup=False, highlight=False)


@app.command()
def evaluate(
    data: Path = typer.Option(..., "--data", help="Labelled tickets the model never trained on."),
    mapping: str = typer.Option(..., help="Column mapping of the file."),
    label: str = typer.Option(..., help="The true label: a ticket field or a source column."),
    model: str = typer.Option("active", help="A model version, or `active`."),
    head: str | None = typer.Option(None, help="Head of the active model; default: the label's field name."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Score a registered model: accuracy, macro-F1, ECE, Brier, coverage at accuracy, speed."""
    from hitl.ml.dataset import load_labelled, resolve_label
    from hitl.ml.registry import get_version, load_model
    from hitl.ml.training import evaluate as evaluate_model
    from policies.mappings import load_mapping

    settings = get_settings()
    chosen = load_mapping(mapping, settings.mappings_dir)
    head_key = head_name(head or resolve_label(chosen, label))
    with get_database(settings).session() as session:
        row = get_version(session, head_key, model)
        loaded = load_model(row, settings.effective_models_dir)
    dataset = load_labelled(data, chosen, label)
    result = evaluate_model(loaded, dataset)
    summary = {**result.summary(), "model_version": loaded.version}
    if json_output:
        if result.unknown_labels:  # JSON readers see the count; a person piping it sees why accuracy fell
            err.print(
                f"warning: {result.unknown_labels} of {len(dataset)} tickets carry a {label} the model does "
                "not know; they count as errors"
            )
        print_json({**summary, "unknown_labels": result.unknown_labels})
        return
    cov = summary.pop("coverage_at_accuracy")
    rows = [[k, v] for k, v in summary.items()] + [[f"coverage at accuracy {k}", v] for k, v in cov.items()]
    if result.unknown_labels:
        rows.append(["labels the model does not know", result.unknown_labels])
    table(f"{loaded.version} on {data.name}", ["metric", "value"], rows)


@app.command()
def predict(
    text: str = typer.Option(..., "--text", help="Ticket text (subject and body)."),
    head: list[str] | None = typer.Option(None, help="Only these heads (repeatable); default: all active."),
    json_output: bool = JSON_OPTION,
) -> None:
    """What the active models say about a text: label, confidence, top-3, model version."""
    from hitl.ml.registry import ModelError
    from hitl.ml.service import load_active_models

    if not text.strip():  # a model would answer with its class priors, which looks like a verdict
        raise ModelError("--text is empty: give the ticket's subject and body")
    settings = get_settings()
    with get_database(settings).session() as session:
        loaded = load_active_models(session, settings.effective_models_dir, head or None)
    if not loaded:
        raise ModelError("no active model: train one with `hitl train ... --activate`")
    predictions = [m.predict([text])[0] for m in loaded]
    if json_output:
        print_json([p.model_dump() for p in predictions])
        return
    table(
        "Predictions",
        ["head", "label", "confidence", "alternatives", "model"],
        [
            [
                p.head,
                p.label,
                f"{p.confidence:.3f}",
                ", ".join(f"{a.label} {a.probability:.3f}" for a in p.alternatives),
                p.model_version,
            ]
            for p in predictions
        ],
    )


@models_app.command("list")
def models_list(
    head: str | None = typer.Option(None, help="Only this head."), json_output: bool = JSON_OPTION
) -> None:
    """Registered model versions, newest first."""
    from hitl.ml.registry import list_versions

    with get_database().session() as session:
        rows = [
            {
                "version": r.version,
                "head": r.head,
                "status": r.status,
                "n_train": r.n_train,
                "n_reviews": r.n_reviews,
                "classes": len(r.classes),
                "cv": r.metrics.get("cv"),
                "sha256": r.sha256,
                "created_at": r.created_at.isoformat(),
                "trained_by": r.trained_by,
            }
            for r in list_versions(session, head)
        ]
    if json_output:
        print_json(rows)
        return
    table(
        f"{len(rows)} model version(s)",
        ["version", "head", "status", "n", "accuracy (cv)", "ECE (cv)", "coverage at 95 % (cv)"],
        [
            [
                r["version"],
                r["head"],
                r["status"],
                r["n_train"],
                (r["cv"] or {}).get("accuracy"),
                (r["cv"] or {}).get("ece"),
                # the share a checkpoint could automate at 95 % accuracy: what promotion is about
                ((r["cv"] or {}).get("coverage_at_accuracy") or {}).get("0.95"),
            ]
            for r in rows
        ],
        whole=frozenset({"version"}),  # what `hitl models activate` and `hitl evaluate --model` take
    )


@models_app.command("activate")
def models_activate(version: str = typer.Argument(..., help="The version to promote.")) -> None:
    """Promote a version to its head's active model (the previous one is retired)."""
    from hitl.ml.registry import activate, load_model

    settings = get_settings()
    with get_database(settings).session() as session:
        row = activate(session, version)
        load_model(row, settings.effective_models_dir)  # refuse to promote a file that would not load
        head = row.head
    out.print(f"{version} is now the active {head} model")
