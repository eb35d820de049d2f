"""`python -m deployments.work_pool [POOL]`: register the deployments on a Prefect *process work
pool*, for `prefect worker start` processes (`hitl worker`) on one or more machines to run, instead
of the runner of `hitl serve` / `python -m deployments.serve`.

The deployments are the ones `definitions.py` declares (same names, schedules, parameters, tags,
descriptions and concurrency limits); only where they run changes: each is re-targeted with
`flow.from_source(<repository root>, "flows/<file>.py:<flow>").deploy(work_pool_name=...)`, so a
worker's flow process starts in the repository root and imports the flow from its file. No image is
built or pushed: every worker machine needs this repository at the same path, with its `.venv`.
Needs a Prefect server (PREFECT_API_URL); see docs/scale-out.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from uuid import UUID

from prefect.deployments.runner import RunnerDeployment

from deployments.definitions import all_deployments
from hitl.errors import ConfigError
from hitl.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
POOL_TYPE = "process"


def entrypoint_of(deployment: RunnerDeployment, root: Path = ROOT) -> str:
    """`flows/<file>.py:<function>` relative to the repository root, whatever the working directory
    was when the deployment was declared (Prefect records the path relative to it)."""
    path, _, function = str(deployment.entrypoint).rpartition(":")
    file = Path(path).resolve()
    try:
        relative = file.relative_to(root)
    except ValueError as exc:
        raise ConfigError(f"deployment {deployment.name}: {file} is outside the repository {root}") from exc
    return f"{relative.as_posix()}:{function}"


def ensure_work_pool(name: str) -> bool:
    """Create the process work pool when it is missing; True when it was created. A pool of
    another type under that name is refused: its workers could not run these flows."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type=POOL_TYPE))
                return True
            except ObjectAlreadyExists:  # another `hitl deploy` created it at the same moment
                pool = client.read_work_pool(name)
    if pool.type != POOL_TYPE:
        raise ConfigError(
            f"work pool {name!r} exists with type {pool.type!r}; a {POOL_TYPE!r} pool is needed"
        )
    return False


def deploy_to_work_pool(settings: Settings, pool: str | None = None) -> dict[str, UUID]:
    """Create the pool if missing and (re-)register every deployment on it, updating the existing
    deployments in place (same names, same ids: runs waiting at a checkpoint stay resumable).
    Returns `flow/deployment` name -> deployment id."""
    from prefect import Flow

    pool = pool or settings.work_pool
    ensure_work_pool(pool)
    registered: dict[str, UUID] = {}
    for declared in all_deployments(settings):
        flow = Flow.from_source(source=str(ROOT), entrypoint=entrypoint_of(declared))
        registered[f"{declared.flow_name}/{declared.name}"] = flow.deploy(
            name=declared.name,
            work_pool_name=pool,
            # exactly what the runner path registers (DeploymentScheduleCreate is accepted as is)
            schedules=declared.schedules,  # type: ignore[arg-type]
            parameters=declared.parameters,
            description=declared.description,
            tags=declared.tags,
            concurrency_limit=declared.concurrency_limit,
            enforce_parameter_schema=declared.enforce_parameter_schema,
            build=False,
            push=False,
            print_next_steps=False,
            ignore_warnings=True,  # Prefect's "consider .serve for a process pool" hint
        )
    return registered


def main() -> None:
    pool = sys.argv[1] if len(sys.argv) > 1 else None
    for name, deployment_id in deploy_to_work_pool(get_settings(), pool).items():
        print(f"{name}: {deployment_id}")


if __name__ == "__main__":
    main()
