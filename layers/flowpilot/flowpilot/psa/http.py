"""What every PSA provider's HTTP side shares: a base class (`HTTPProvider`: the client, scrubbing, JSON
checks, the target-status check), one timed request that maps transport failures to PSA errors without
leaking credentials, Retry-After parsing, a small TTL cache for per-tenant configuration, and the
numeric-id guards for ids that go into URL paths.

Providers own their vendor's wire format (URLs, headers, bodies, error shapes); this module owns none of it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Self

import httpx

from flowpilot.observability import timed_call
from flowpilot.psa.base import (
    BoardStatus,
    PSAError,
    PSANoteNotFound,
    PSAStatusNotOnBoard,
    PSATicketNotFound,
    PSATransientError,
    Ticket,
)

DEFAULT_RETRY_AFTER = 5
_NUMERIC_ID = re.compile(r"^[0-9]{1,12}$")


class TTLCache[K: Hashable, V]:
    """A small thread-safe TTL map; module-level so warm Lambda containers reuse it across invocations."""

    def __init__(self, ttl_seconds: float, maxsize: int = 1024) -> None:
        self.ttl_seconds = ttl_seconds
        self._maxsize = maxsize
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            expires_at, value = hit
            if expires_at <= time.monotonic():
                del self._items[key]
                return None
            return value

    def put(self, key: K, value: V, *, ttl_seconds: float | None = None) -> None:
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        with self._lock:
            if len(self._items) >= self._maxsize and key not in self._items:
                # Dicts keep insertion order: drop the oldest entry.
                self._items.pop(next(iter(self._items)))
            self._items[key] = (time.monotonic() + ttl, value)

    def discard(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def numeric_id(value: object) -> str | None:
    """`value` as a PSA numeric id (digits only, it goes into a URL path), or None when it is not one."""
    text = str(value).strip()
    return text if _NUMERIC_ID.match(text) else None


def json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def retry_after(resp: httpx.Response) -> int:
    """The answer's Retry-After in whole seconds (1..3600), or the default when absent or unreadable."""
    value = (resp.headers.get("retry-after") or "").strip()
    if not value:
        return DEFAULT_RETRY_AFTER
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return max(1, min(3600, math.ceil(seconds)))


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def request(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    vendor: str,
    provider: str,
    operation: str,
    what: str,
    timeout: float,
    secrets: Iterable[str],
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    json_body: object = None,
    form: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One timed HTTP call (metric `PsaCallLatency` by provider and `operation`, a path with ids as `{id}`).

    Transport failures become PSA errors: a timeout or a dropped connection is transient (and, for a write,
    may have applied); an unusable URL is `psa_misconfigured`. Never raised `from` the httpx exception: it
    holds the request, and with it our credentials.
    """
    write = method != "GET"
    maybe = "; it may have been applied" if write else ""
    try:
        with timed_call("PsaCallLatency", {"provider": provider, "operation": operation}) as call:
            resp = http.request(
                method, url, params=params, json=json_body, data=form, headers=dict(headers), timeout=timeout
            )
            call["psa_status"] = resp.status_code
        return resp
    except httpx.TimeoutException:
        raise PSATransientError(
            f"{vendor} did not answer within {timeout:g}s ({what}){maybe}.",
            details={"may_have_applied": write},
        ) from None
    except httpx.UnsupportedProtocol as exc:
        raise PSAError(
            f"{vendor} URL is not usable ({what}): {scrub(str(exc), secrets)}", code="psa_misconfigured"
        ) from None
    except httpx.TransportError as exc:
        raise PSATransientError(
            f"Connection to {vendor} failed ({what}): {type(exc).__name__}: {scrub(str(exc), secrets)}{maybe}.",
            details={"may_have_applied": write},
        ) from None


def operation_name(method: str, path: str) -> str:
    """`GET /tickets/{id}/notes` from `GET /tickets/1005/notes`: a bounded metric dimension."""
    return f"{method} " + re.sub(r"/\d+(?=/|$)", "/{id}", path)


def bad_response(vendor: str, what: str, expected: str, *, write: bool) -> PSAError:
    maybe = "; the change may have been applied" if write else ""
    return PSAError(
        f"{vendor} answered without {expected} ({what}){maybe}.",
        code="psa_bad_response",
        details={"may_have_applied": write},
    )


def ticket_id(value: object, vendor: str) -> str:
    """A ticket id for a URL path: digits only (anything else would be a path injection, and is no ticket)."""
    tid = numeric_id(value)
    if tid is None:
        raise PSATicketNotFound(f"{value!r} is not a {vendor} ticket id.")
    return str(int(tid))


def note_id(value: object, vendor: str, noun: str = "note") -> str:
    nid = numeric_id(value)
    if nid is None:
        raise PSANoteNotFound(f"{value!r} is not a {vendor} {noun} id.")
    return str(int(nid))


def status_by_id(statuses: Sequence[BoardStatus], status_id: int) -> BoardStatus | None:
    return next((s for s in statuses if s.id == status_id), None)


class HTTPProvider:
    """What each provider's client shares: the httpx client it may own (a context manager that closes it),
    secrets scrubbed from every message built from upstream text, JSON-shape checks, and the target-status
    check against the ticket's statuses with one fresh look before refusing."""

    vendor: ClassVar[str]
    name: str

    def __init__(self, *, http: httpx.Client | None, timeout: float, transport: httpx.BaseTransport | None) -> None:
        self._owns_http = http is None
        self._http = (
            http if http is not None else httpx.Client(follow_redirects=False, transport=transport, trust_env=False)
        )
        self._timeout = timeout

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # --- requests ---

    def _headers(self) -> dict[str, str]:
        """The headers of an API call (credentials included)."""
        raise NotImplementedError

    def _operation(self, method: str, url: str) -> str:
        """The metric dimension for a call: the path under the API root, ids as `{id}`."""
        return operation_name(method, httpx.URL(url).path)

    def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        operation: str | None = None,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        form: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One timed call (`request`); the API's own headers unless `headers` are given."""
        return request(
            self._http,
            method,
            url,
            vendor=self.vendor,
            provider=self.name,
            operation=operation or self._operation(method, url),
            what=what,
            timeout=self._timeout,
            secrets=self._secret_values(),
            headers=self._headers() if headers is None else headers,
            params=params,
            json_body=json_body,
            form=form,
        )

    # --- the ticket's statuses ---

    def board_statuses(self, board_id: int) -> list[BoardStatus]:
        raise NotImplementedError

    def _fresh_statuses(self, board_id: int) -> list[BoardStatus]:
        """The statuses read again from the PSA (and cached again)."""
        raise NotImplementedError

    def check_target_status(self, ticket: Ticket, status_id: int) -> BoardStatus:
        statuses = self.board_statuses(ticket.board_id)
        match = status_by_id(statuses, status_id)
        if match is None:
            # A status added since we cached the list: one fresh look before refusing.
            statuses = self._fresh_statuses(ticket.board_id)
            match = status_by_id(statuses, status_id)
        if match is not None and not match.inactive:
            return match
        raise PSAStatusNotOnBoard(
            board_id=ticket.board_id,
            board_name=ticket.board_name,
            status_id=status_id,
            valid_statuses=[s for s in statuses if not s.inactive],
            inactive=match is not None,
        )

    # --- answers ---

    def _secret_values(self) -> Iterable[str]:
        """Anything that could identify the credentials (keys, secrets, tokens)."""
        raise NotImplementedError

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secret_values())

    def _bad_response(self, what: str, expected: str, write: bool) -> PSAError:
        return bad_response(self.vendor, what, expected, write=write)

    def _json_object(self, resp: httpx.Response, what: str, *, write: bool = False) -> dict[str, Any]:
        data = json_or_none(resp)
        if not isinstance(data, dict):
            raise self._bad_response(what, "a JSON object", write)
        return data
