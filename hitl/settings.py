"""Runtime configuration, read from `HITL_*` environment variables (or a `.env` file).

Everything an operator may need to change lives here, so that the README can list every
setting in one table and no module reads `os.environ` on its own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hitl.errors import ConfigError
from hitl.text import address_list, is_email_address


class Settings(BaseSettings):
    """All `HITL_` settings. Paths are resolved against the working directory at load time."""

    model_config = SettingsConfigDict(env_prefix="HITL_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path("var"),
        description="Folder for the embedded database, drop folder, models and reports.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the application database; unset means SQLite at <home>/hitl.db.",
    )
    sqlite_busy_timeout_s: float = Field(
        default=60.0, gt=0, description="How long a SQLite writer waits for another writer's lock."
    )
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Records per database transaction.")
    inbox: Path | None = Field(
        default=None, description="Drop folder the nightly ingestion reads; unset means <home>/inbox."
    )
    default_client: str = Field(
        default="unassigned", min_length=1, description="Client for tickets whose source names none."
    )
    mappings_dir: Path | None = Field(
        default=None, description="Extra folder of column-mapping YAML files (besides policies/mappings)."
    )
    http_token: SecretStr | None = Field(
        default=None, description="Bearer token sent to HTTP (PSA) sources; never logged."
    )
    http_timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout for HTTP sources.")
    http_page_size: int = Field(default=100, ge=1, le=10_000, description="Page size asked of HTTP sources.")
    http_retries: int = Field(default=3, ge=0, le=10, description="Retries of a failed HTTP page request.")
    timezone: str = Field(default="UTC", description="Time zone of schedules (nightly ingestion at 02:00).")
    models_dir: Path | None = Field(
        default=None, description="Folder of trained model files; unset means <home>/models."
    )
    client_catalog: Path | None = Field(
        default=None, description="YAML catalog of clients (tier, SLA hours); unset: policies/clients.yaml."
    )
    nightly_mapping: str = Field(
        default="canonical", min_length=1, description="Column mapping the nightly ingestion uses by default."
    )

    @field_validator(
        "home",
        "inbox",
        "mappings_dir",
        "client_catalog",
        "models_dir",
        "runbooks_dir",
        "sandbox_dir",
        mode="after",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    triage_heads: str = Field(
        default="category,priority", description="Comma-separated model heads the triage checkpoint asks."
    )
    runbooks_dir: Path | None = Field(
        default=None, description="Folder of runbook YAML files; unset means policies/runbooks."
    )
    sandbox_dir: Path | None = Field(
        default=None, description="Working folders of the subprocess executor; unset means <home>/sandbox."
    )
    rmm_webhook_url: str | None = Field(
        default=None,
        description="Base URL of the RMM tool that runs webhook runbooks; unset: they cannot run.",
    )
    rmm_token: SecretStr | None = Field(
        default=None, description="Bearer token for the RMM webhook; never logged."
    )
    runner_limit: int = Field(
        default=8, ge=1, le=200, description="Flow processes the runner starts at once (waiting runs: none)."
    )
    work_pool: str = Field(
        default="hitl-process",
        min_length=1,
        description="Prefect process work pool of `hitl deploy --work-pool` and `hitl worker` (scale-out).",
    )
    reply_signature: str = Field(default="Your service desk", description="Signature under drafted replies.")
    smtp_host: str | None = Field(
        default=None, description="SMTP relay for outbox replies; unset: no sending."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    reports_dir: Path | None = Field(
        default=None, description="Where threshold-review reports go; unset means <home>/reports."
    )
    review_window_days: int = Field(
        default=180,
        ge=1,
        description="Evidence the threshold review pools by default: the last N days of decisions.",
    )
    smtp_sender: str | None = Field(default=None, description="From address of sent replies.")
    smtp_username: str | None = Field(default=None, description="SMTP login (with HITL_SMTP_PASSWORD).")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password; never logged.")
    smtp_starttls: bool = Field(default=True, description="Use STARTTLS on the SMTP connection.")
    notify_webhook_url: SecretStr | None = Field(
        default=None,
        description="Incoming-webhook URL for checkpoint notifications (Slack-compatible JSON); a secret.",
    )
    notify_email_to: str | None = Field(
        default=None, description="Comma-separated addresses that get checkpoint notifications by e-mail."
    )

    @field_validator("smtp_sender", "notify_email_to")
    @classmethod
    def _addresses(cls, value: str | None) -> str | None:
        """Checked here, so a typo is one line at start-up, not a traceback when the outbox sends."""
        for address in address_list(value):
            if not is_email_address(address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/London)") from exc
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'hitl.db'}"

    @property
    def effective_models_dir(self) -> Path:
        return self.models_dir or self.home / "models"

    @property
    def effective_reports_dir(self) -> Path:
        return self.reports_dir or self.home / "reports"

    @property
    def effective_sandbox_dir(self) -> Path:
        return self.sandbox_dir or self.home / "sandbox"

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.triage_heads.split(",") if h.strip())

    @property
    def effective_inbox(self) -> Path:
        return self.inbox or self.home / "inbox"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the env."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "HITL_" + str(first["loc"][0]).upper() if first["loc"] else "a HITL_ setting"
        raise ConfigError(f"invalid setting {name}: {first['msg'].removeprefix('Value error, ')}") from exc
