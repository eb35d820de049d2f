"""A real HTTP server on 127.0.0.1 playing a PSA's REST API, for the HTTP-source tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class PsaState:
    tickets: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None
    fail_next: int = 0  # answer this many requests with 503 first
    broken_page: int | None = None  # always answer this page with 500
    ignore_paging: bool = False  # a broken API: every page is page 1, always with a next page
    requests: list[dict[str, str]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)


def _handler(state: PsaState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            state.requests.append(query)
            state.auth_headers.append(self.headers.get("Authorization"))
            if url.path != "/api/tickets":
                return self._send(404, {"error": "not found"})
            if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._send(401, {"error": "unauthorised"})
            if state.fail_next > 0:
                state.fail_next -= 1
                return self._send(503, {"error": "busy"})
            page, size = int(query.get("page", 1)), int(query.get("page_size", 100))
            if state.ignore_paging:
                return self._send(200, {"tickets": state.tickets[:size], "page": 1, "next_page": 2})
            if state.broken_page == page:
                return self._send(500, {"error": "boom"})
            since = query.get("updated_since")
            matching = sorted(
                (t for t in state.tickets if since is None or t["updated_at"] >= since),
                key=lambda t: (t["updated_at"], t["external_id"]),
            )
            items = matching[(page - 1) * size : page * size]
            more = page * size < len(matching)
            return self._send(200, {"tickets": items, "page": page, "next_page": page + 1 if more else None})

    return Handler


@contextmanager
def psa_server(state: PsaState) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/tickets"
    finally:
        server.shutdown()
        server.server_close()
