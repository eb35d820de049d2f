"""`python -m deployments.serve`: register the deployments and run their flows from this process.

Needs a Prefect server (PREFECT_API_URL); scheduled runs (the nightly ingestion) start here.
"""

from __future__ import annotations

from prefect import serve

from deployments.definitions import all_deployments
from hitl.prefect_env import throttle_runner_capacity_messages
from hitl.settings import get_settings


def main() -> None:
    settings = get_settings()
    throttle_runner_capacity_messages()
    serve(*all_deployments(settings), pause_on_shutdown=False, limit=settings.runner_limit)


if __name__ == "__main__":
    main()
