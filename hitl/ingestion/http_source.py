"""A PSA-style REST API as a ticket source: paged JSON, filtered by `updated_since`.

Page and parameter names come from the mapping's `http` section. A page that keeps failing
stops the source with a clear error; pages already stored stay stored (upserts are
idempotent) and the cursor does not advance, so the next run fetches them again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from pydantic import SecretStr

from hitl.errors import SourceError
from hitl.ingestion.files import RawRecord
from policies.mappings import HttpOptions

_RETRYABLE = {429, 500, 502, 503, 504}


class HttpTicketSource:
    """Iterates the records of every page of one API endpoint, from a cursor on."""

    def __init__(
        self,
        url: str,
        options: HttpOptions,
        *,
        token: SecretStr | None = None,
        page_size: int = 100,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url
        self.options = options
        self.page_size = page_size
        self.retries = retries
        self.backoff_s = backoff_s
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers, follow_redirects=True)

    def close(self) -> None:
        self._client.close()

    def records(self, since: str | None) -> Iterator[RawRecord]:
        row_number = 0
        page = 1
        previous: bytes | None = None
        while True:
            items, has_next = self._page(page, since)
            # An API that ignores the page parameter answers page 1 again and again, each time with
            # "more to come": without this check the ingestion would never end.
            fingerprint = hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).digest()
            if items and fingerprint == previous:
                raise SourceError(
                    f"{self.url} page {page}: the same {len(items)} records as page {page - 1}; the API "
                    f"seems to ignore the {self.options.page_param!r} parameter (the mapping's http section)"
                )
            previous = fingerprint
            for item in items:
                row_number += 1
                raw = json.dumps(item, ensure_ascii=False, default=str)
                if isinstance(item, dict):
                    yield RawRecord(row_number, None, raw, data=item)
                else:
                    kind = type(item).__name__
                    yield RawRecord(row_number, None, raw, error=f"expected a JSON object, got {kind}")
            if not items or not has_next:
                return
            page += 1

    def _page(self, page: int, since: str | None) -> tuple[list[Any], bool]:
        opts = self.options
        params: dict[str, str | int] = {opts.page_param: page, opts.page_size_param: self.page_size}
        if since:
            params[opts.since_param] = since
        response = self._get(params, page)
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceError(f"{self.url} page {page}: the answer is not JSON") from exc
        if isinstance(body, list):
            return body, len(body) >= self.page_size
        if not isinstance(body, dict) or not isinstance(body.get(opts.items_key), list):
            raise SourceError(
                f"{self.url} page {page}: expected a JSON object with a list {opts.items_key!r}"
            )
        items: list[Any] = body[opts.items_key]
        if opts.next_key is not None and opts.next_key in body:
            return items, body[opts.next_key] not in (None, "", False)
        return items, len(items) >= self.page_size

    def _get(self, params: dict[str, str | int], page: int) -> httpx.Response:
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.get(self.url, params=params)
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRYABLE:
                last_problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise SourceError(f"{self.url} page {page}: HTTP {response.status_code} (not retried)")
            return response
        raise SourceError(f"{self.url} page {page}: {last_problem} after {self.retries + 1} attempts")
