"""Where the CLI's flows report to: the server in PREFECT_API_URL, else the one `hitl serve` runs
on 127.0.0.1:4200 when it answers, else Prefect's embedded server with its data under HITL_HOME.

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
    # Prefect gives the embedded server 20 s to start; on a busy 2-core machine it needs more,
    # and a CLI command failing with "Timed out ... ephemeral Prefect API" helps nobody.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):  # a protected local server: the client
        os.environ.setdefault("PREFECT_API_AUTH_STRING", os.environ["PREFECT_SERVER_API_AUTH_STRING"])
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url and _answers(LOCAL_SERVER):
        api_url = os.environ["PREFECT_API_URL"] = LOCAL_SERVER  # `hitl serve` is running here: join it
    if api_url:
        return f"Prefect server at {api_url}"
    return f"embedded Prefect server (PREFECT_HOME={os.environ['PREFECT_HOME']})"


LOCAL_SERVER = "http://127.0.0.1:4200/api"


def _answers(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=0.3).status_code == 200
    except httpx.HTTPError:
        return False


def quiet_shutdown() -> None:
    """Silence loggers that report the embedded server's teardown as errors."""
    for name in ("prefect.server", "uvicorn", "uvicorn.error", "asyncio", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
