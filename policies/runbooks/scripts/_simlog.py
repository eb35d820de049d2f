"""Shared by the simulation scripts: the action a real RMM or PowerShell call would take is
appended as one JSON line to `actions.log` in the working directory, which the subprocess
executor makes the execution's own sandbox. Nothing outside that directory is touched."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

LOG = Path("actions.log")  # relative on purpose: the working directory is the sandbox


def record(tool: str, action: str, result: str, **fields: str | None) -> None:
    """Log the simulated action, then print its one-line result (the executor keeps the output)."""
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "tool": tool, "action": action}
    entry.update({key: value for key, value in fields.items() if value is not None})
    entry["result"] = result
    with LOG.open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry, ensure_ascii=False) + "\n")
    print(result)
