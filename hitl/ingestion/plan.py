"""Checking an ingestion request before any run starts: a wrong mapping or an unreadable file
is the operator's one-line error, not a failed flow run in the UI."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from hitl.errors import SourceError
from hitl.ingestion.files import check_file, discover_inputs, ignored_files
from hitl.settings import Settings
from policies.clients import load_client_catalog
from policies.mappings import ColumnMapping, load_mapping


class IngestionPlan(BaseModel):
    mapping: ColumnMapping
    source: str
    files: list[Path] = Field(default_factory=list)
    url: str | None = None
    move_processed: bool = False
    folder: Path | None = None
    ignored: list[str] = Field(default_factory=list)  # drop-folder files of a type no run reads

    @property
    def description(self) -> str:
        if self.url:
            return self.url
        return str(self.folder) if self.folder else ", ".join(str(f) for f in self.files)


def plan_ingestion(
    settings: Settings,
    path: str | None = None,
    url: str | None = None,
    mapping: str = "canonical",
    source: str | None = None,
    move_processed: bool | None = None,
) -> IngestionPlan:
    """Resolve what a run will read. No path and no URL means the configured drop folder."""
    if path and url:
        raise SourceError("give a file/folder or a URL, not both")
    chosen = load_mapping(mapping, settings.mappings_dir)
    load_client_catalog(settings.client_catalog)  # a broken catalog fails here, not mid-run
    source_name = (source or chosen.source).strip()
    if not source_name:
        raise SourceError("the source name must not be empty")
    if url:
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"not an http(s) URL: {url}")
        return IngestionPlan(mapping=chosen, source=source_name, url=url)
    target = Path(path).expanduser() if path else settings.effective_inbox
    if path is None:
        target.mkdir(parents=True, exist_ok=True)
    files = discover_inputs(target)
    is_folder = target.is_dir()
    for file in files if not is_folder else []:
        check_file(file, chosen.required_columns)
    return IngestionPlan(
        mapping=chosen,
        source=source_name,
        files=files,
        move_processed=is_folder if move_processed is None else move_processed,
        folder=target if is_folder else None,
        ignored=ignored_files(target) if is_folder else [],
    )
