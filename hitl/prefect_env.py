"""Where the CLI's flows report to: the server in PREFECT_API_URL, else the one `hitl serve` runs
on 127.0.0.1:4200 when it answers, else Prefect's embedded server with its data under HITL_HOME.

Must run before `prefect` is imported, because Prefect reads its settings at import time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

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


class RepeatThrottle(logging.Filter):
    """Lets one message template through at most once per `every` seconds (other records pass).
    Prefect's runner logs "N scheduled runs skipped (at capacity)" at every poll (each second under
    `hitl serve`) while more runs are due than HITL_RUNNER_LIMIT allows: 48 lines in the first
    minute of `make run`, burying what the operator needs to read. The first line still shows, and
    one a minute while the backlog lasts; nothing is lost but the repeats."""

    def __init__(self, template: str, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.template, self.every, self.clock = template, every, clock
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.template:
            return True
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            return False
        self._last = now
        return True


RUNNER_AT_CAPACITY = "%d scheduled runs skipped (at capacity)"  # prefect/runner/_scheduled_run_poller.py


def throttle_runner_capacity_messages(every: float = 60.0) -> RepeatThrottle:
    throttle = RepeatThrottle(RUNNER_AT_CAPACITY, every)
    logging.getLogger("prefect.runner").addFilter(throttle)
    return throttle
