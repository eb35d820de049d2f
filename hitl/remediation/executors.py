"""Executors: the only code that carries out a runbook's steps against a client environment.

Two kinds, one protocol. The subprocess executor runs each step's argv without a shell, in a
fresh sandbox directory per idempotency key, with a minimal environment, so a parameter value
can never become a command and a step cannot read the worker's secrets from its environment.
The webhook executor sends each step to the MSP's automation gateway (RMM, firewall manager)
with an idempotency key, so the gateway can also refuse a replay. A failing step stops the run:
later steps assume the earlier ones worked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, Protocol
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, SecretStr

from hitl.errors import ConfigError
from policies.runbooks import Runbook, RunbookStep, render_json, render_text, validate_parameters

OUTPUT_LIMIT = 20_000  # characters kept of a run's output: enough to diagnose, small enough to store
_KEY = re.compile(r"[A-Za-z0-9_-]{8,128}")


class ExecutionResult(BaseModel):
    status: Literal["succeeded", "failed"]
    output: str = ""
    error: str | None = None


class Executor(Protocol):
    """What `execute_once` needs; `name` is stored with the execution and must equal `runbook.executor`."""

    name: str

    def run(self, runbook: Runbook, params: Mapping[str, Any], key: str) -> ExecutionResult: ...

    def rollback(self, runbook: Runbook, params: Mapping[str, Any], key: str) -> ExecutionResult: ...


def truncate(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Head and tail of a long output: the start says what ran, the end says how it failed."""
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text) - limit} characters cut] ...\n"
    half = (limit - len(marker)) // 2
    return text[:half] + marker + text[len(text) - half :]


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _checked(runbook: Runbook, kind: str, key: str) -> None:
    if runbook.executor != kind:
        raise ConfigError(f"runbook '{runbook.id}' needs the {runbook.executor} executor, not {kind}")
    if not _KEY.fullmatch(key):
        raise ValueError(f"invalid execution key {key!r}: 8-128 letters, digits, '-' or '_'")


def _run_steps(
    steps: Sequence[RunbookStep], perform: Callable[[int, RunbookStep], tuple[str, str | None]]
) -> ExecutionResult:
    """Run steps in order; `perform(number, step)` returns (output, error or None). The first
    error stops the run."""
    parts: list[str] = []
    for number, step in enumerate(steps, start=1):
        output, error = perform(number, step)
        parts.append(f"$ {step.name}\n{output}".rstrip())
        if error is not None:
            where = f"step {number}/{len(steps)} '{step.name}'"
            return ExecutionResult(
                status="failed", output=truncate("\n".join(parts)), error=f"{where}: {error}"
            )
    return ExecutionResult(status="succeeded", output=truncate("\n".join(parts)))


def _no_rollback(runbook: Runbook) -> ExecutionResult:
    return ExecutionResult(
        status="failed", error=f"runbook '{runbook.id}' has no rollback steps: undo it by hand"
    )


class SubprocessExecutor:
    """Runs argv steps locally in `sandbox_root/<key>`; `timeout_s` bounds a whole run (or rollback)."""

    name = "subprocess"

    def __init__(self, sandbox_root: Path, timeout_s: float = 60.0) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"subprocess executor timeout must be positive, got {timeout_s}")
        self.sandbox_root = Path(sandbox_root).resolve()
        self.timeout_s = timeout_s

    def sandbox(self, key: str) -> Path:
        return self.sandbox_root / key

    def run(self, runbook: Runbook, params: Mapping[str, Any], key: str) -> ExecutionResult:
        _checked(runbook, self.name, key)
        values = validate_parameters(runbook, params)
        self.sandbox_root.mkdir(parents=True, exist_ok=True)
        try:
            self.sandbox(key).mkdir(mode=0o700)
        except FileExistsError:
            # A second guard behind the database: this key has already run on this machine.
            return ExecutionResult(
                status="failed", error=f"sandbox {self.sandbox(key)} exists: refusing to run twice"
            )
        return self._steps(runbook, runbook.steps, values, key)

    def rollback(self, runbook: Runbook, params: Mapping[str, Any], key: str) -> ExecutionResult:
        """Runs in the execution's own sandbox, so a rollback script can read what the run did."""
        _checked(runbook, self.name, key)
        if not runbook.rollback:
            return _no_rollback(runbook)
        values = validate_parameters(runbook, params)
        self.sandbox(key).mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._steps(runbook, runbook.rollback, values, key)

    def _steps(
        self, runbook: Runbook, steps: Sequence[RunbookStep], values: Mapping[str, Any], key: str
    ) -> ExecutionResult:
        sandbox = self.sandbox(key)
        context = {**values, "python": sys.executable, "scripts": str(runbook.scripts_dir.resolve())}
        deadline = time.monotonic() + self.timeout_s

        def perform(_number: int, step: RunbookStep) -> tuple[str, str | None]:
            argv = [
                text for element in step.argv or () if (text := render_text(element, context)) is not None
            ]
            return _run_process(argv, sandbox, deadline - time.monotonic())

        return _run_steps(steps, perform)


def minimal_environment(sandbox: Path) -> dict[str, str]:
    """PATH and what Python and Windows tools need; none of the worker's credentials or settings."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(sandbox),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",  # the scripts folder stays untouched: steps write to cwd only
        "PYTHONNOUSERSITE": "1",
    }
    for name in ("SYSTEMROOT", "WINDIR", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _read_capped(sink: IO[bytes]) -> str:
    size = sink.seek(0, os.SEEK_END)
    sink.seek(0)
    if size <= OUTPUT_LIMIT:
        return sink.read().decode("utf-8", errors="replace")
    head = sink.read(OUTPUT_LIMIT // 2).decode("utf-8", errors="replace")
    sink.seek(size - OUTPUT_LIMIT // 2)
    tail = sink.read().decode("utf-8", errors="replace")
    return f"{head}\n... [{size - OUTPUT_LIMIT} bytes cut] ...\n{tail}"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)  # the step and anything it started
        else:  # pragma: no cover - Windows
            process.kill()
    except ProcessLookupError:
        pass


def _run_process(argv: list[str], cwd: Path, timeout_s: float) -> tuple[str, str | None]:
    """(output, error or None) of one argv run; output is stdout and stderr interleaved."""
    if timeout_s <= 0:
        return "", "not started: the run's time budget is used up"
    # Output goes to a temporary file rather than a pipe, so a chatty step cannot fill memory.
    with tempfile.TemporaryFile() as sink:
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=minimal_environment(cwd),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return "", f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            return _read_capped(sink), f"timed out after {timeout_s:.1f}s and was killed"
        output = _read_capped(sink)
    if code != 0:
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        return output, f"exited with code {code}" + (f": {_one_line(last)}" if last else "")
    return output, None


class WebhookExecutor:
    """Sends each step as an HTTP request to the automation gateway at `base_url`; 2xx is success.

    Each request carries `Idempotency-Key: <key>-<n>` (n: the step's number; rollback steps
    `<key>-rollback-<n>`), one key per distinct request, so a gateway that deduplicates on the key
    never mistakes step 2 for a replay of step 1. The token is sent as a bearer token and scrubbed
    from every output and error. Redirects are not followed (the token stays with `base_url`).
    """

    name = "webhook"

    def __init__(self, base_url: str, token: SecretStr | None = None, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"webhook base URL must be http(s)://host[:port][/path], got {base_url!r}")
        if timeout_s <= 0:
            raise ConfigError(f"webhook timeout must be positive, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    def run(self, runbook: Runbook, params: Mapping[str, Any], key: str) -> ExecutionResult:
        _checked(runbook, self.name, key)
        return self._steps(runbook.steps, validate_parameters(runbook, params), key, "")

    def rollback(self, runbook: Runbook, params: Mapping[str, Any], key: str) -> ExecutionResult:
        _checked(runbook, self.name, key)
        if not runbook.rollback:
            return _no_rollback(runbook)
        return self._steps(runbook.rollback, validate_parameters(runbook, params), key, "rollback-")

    def _scrub(self, text: str) -> str:
        secret = self._token.get_secret_value() if self._token else ""
        return text.replace(secret, "***") if secret else text

    def _steps(
        self, steps: Sequence[RunbookStep], values: Mapping[str, Any], key: str, prefix: str
    ) -> ExecutionResult:
        headers = {"User-Agent": "hitl-ops-remediation"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        quoted = {name: quote(str(value), safe="") for name, value in values.items()}

        with httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout_s) as client:

            def perform(number: int, step: RunbookStep) -> tuple[str, str | None]:
                path = render_text(step.path or "", quoted)
                if path is None:
                    return "", "its path names an optional parameter that has no value"
                body = render_json(step.json_body, values) if step.json_body is not None else None
                request_headers = {"Idempotency-Key": f"{key}-{prefix}{number}"}
                line = f"{step.method} {path}"
                try:
                    response = client.request(step.method or "POST", path, json=body, headers=request_headers)
                except httpx.HTTPError as exc:
                    reason = self._scrub(_one_line(f"{type(exc).__name__}: {exc}"))
                    return (
                        f"{line} -> no response",
                        f"{line} failed ({reason}); it may or may not have been applied",
                    )
                text = self._scrub(response.text[:OUTPUT_LIMIT])
                output = f"{line} -> HTTP {response.status_code}\n{text}"
                if not response.is_success:
                    return output, f"{line} answered HTTP {response.status_code}: {_one_line(text, 200)}"
                return output, None

            result = _run_steps(steps, perform)
        return result.model_copy(
            update={"output": self._scrub(result.output), "error": self._scrub(result.error or "") or None}
        )
