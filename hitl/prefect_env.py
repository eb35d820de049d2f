"""Where the CLI's flows report to: a running Prefect server when one is configured, otherwise
Prefect's embedded server with its database under HITL_HOME.

Must run before `prefect` is imported, because Prefect reads its settings at import time.
"""

from __future__ import annotations

import logging
import os

from hitl.settings import Settings


def configure_prefect(settings: Settings) -> str:
    """Point Prefect at the right server; returns a short description for messages."""
    settings.home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no phoning home; no lock fights
    # The embedded server's background services log noisy cancellations at interpreter exit
    # although every run has finished; they are not the operator's concern.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "false")
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        return f"Prefect server at {api_url}"
    return f"embedded Prefect server (PREFECT_HOME={os.environ['PREFECT_HOME']})"


def quiet_shutdown() -> None:
    """Silence loggers that report the embedded server's teardown as errors."""
    for name in ("prefect.server", "uvicorn", "uvicorn.error", "asyncio", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
