"""A process-local progress listener, so the CLI can draw a progress bar for a flow it runs
in-process without passing a callable through the flow's (serialised) parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int], None]
_listener: Listener | None = None


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous


def notify(input_name: str, records_done: int) -> None:
    if _listener is not None:
        _listener(input_name, records_done)
