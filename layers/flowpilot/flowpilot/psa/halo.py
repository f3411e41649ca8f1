"""HaloPSA over REST: Halo's wire format and nothing else.

Owns the client-credentials token (fetched from `{base_url}/auth/token`, cached per process until shortly
before it expires, refreshed once when the API answers 401), the Action/Ticket payloads (always JSON arrays),
the text <-> `note_html` conversion, the mapping of Halo's answers (.NET exception bodies, OAuth errors, plain
text) to `psa.base` errors, and the per-ticket-type status and outcome caches. It never retries anything but
that one token refresh: the write-back state machine owns retrying, and dedupes note POSTs with
`find_note_by_marker`.

Halo notes are "actions" and need an outcome (per tenant, so the account's preferences name one per kind).
Visibility is `hiddenfromuser`; `sendemail` decides whether the end user is emailed. Both are always sent,
with the outcome: an omitted flag takes the outcome's default, which may show the note to the end user or
email them. A status is never put on an action (Halo ignores misnamed keys there); it is changed on the
ticket with `POST /api/Tickets`.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeIs

import httpx

from flowpilot import resets
from flowpilot.psa import http
from flowpilot.psa.base import (
    BoardStatus,
    NoteKind,
    PostedNote,
    PSAAuthError,
    PSAError,
    PSANotConfigured,
    PSANoteNotFound,
    PSARateLimited,
    PSATicketNotFound,
    PSATransientError,
    PSAValidationError,
    StatusRef,
    Ticket,
    contains_marker,
)
from flowpilot.psa.http import (
    HTTPProvider,
    TTLCache,
    bad_response,
    json_or_none,
    operation_name,
    retry_after,
    status_by_id,
)

VENDOR = "HaloPSA"
STATUS_TTL_SECONDS = 600.0
OUTCOME_TTL_SECONDS = 600.0
# A token is used until this long before Halo says it expires (or half its life, for a short-lived one).
TOKEN_REFRESH_MARGIN_SECONDS = 60.0
# A token that would be reusable for less than this is not cached at all.
TOKEN_MIN_REUSE_SECONDS = 1.0
# When the token answer has no usable expires_in.
TOKEN_DEFAULT_EXPIRES_IN = 600
ACTIONS_PAGE_SIZE = 50
# Hosted Halo allows 300 requests per rolling 5 minutes and may say so without a Retry-After.
RATE_LIMIT_DEFAULT_RETRY_AFTER = 30
# Halo's built-in Closed status (Halo has one closed status; `type` on TStatus is undocumented).
CLOSED_STATUS_ID = 9

# The preference that names the outcome for each kind of note.
OUTCOME_PREFERENCES: dict[NoteKind, str] = {
    NoteKind.resolution: "halo_resolution_outcome_id",
    NoteKind.internal_analysis: "halo_escalation_outcome_id",
}
_NO_ACCESS = "you do not have access to this action"


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # on the provider's clock


_token_cache: TTLCache[tuple[str, str, str, str], _Token] = TTLCache(3600.0)
_status_cache: TTLCache[tuple[str, str, str, int], tuple[BoardStatus, ...]] = TTLCache(STATUS_TTL_SECONDS)
_outcome_cache: TTLCache[tuple[str, str, str], tuple[tuple[int, str], ...]] = TTLCache(OUTCOME_TTL_SECONDS)


@resets.register
def reset_caches() -> None:
    """Forget cached tokens, ticket-type statuses and outcomes (tests; or after a tenant changed them)."""
    _token_cache.clear()
    _status_cache.clear()
    _outcome_cache.clear()


@dataclass(frozen=True)
class HaloConnection:
    """One tenant's API application (client credentials). `base_url` is the instance root
    (`https://acme.halopsa.com`); the API is under `/api` and the token endpoint at `/auth/token`.
    `tenant` is sent as `?tenant=` to the token endpoint (hosted instances that need it)."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    tenant: str | None = None

    def __post_init__(self) -> None:
        missing = [name for name in ("base_url", "client_id", "client_secret") if not _text(getattr(self, name))]
        if missing:
            raise ValueError(f"HaloPSA connection is missing: {', '.join(missing)}")

    @property
    def root_url(self) -> str:
        """The instance root without a trailing slash; a pasted `.../api` is taken back to the root."""
        root = self.base_url.strip().rstrip("/")
        if "://" not in root:
            root = f"https://{root}"
        if root.lower().endswith("/api"):
            root = root[: -len("/api")]
        return root

    @property
    def tenant_name(self) -> str | None:
        return self.tenant.strip() if self.tenant and self.tenant.strip() else None


class HaloProvider(HTTPProvider):
    """`PSAProvider` for HaloPSA over a sync `httpx.Client`."""

    name: str = "halopsa"
    vendor = VENDOR

    def __init__(
        self,
        conn: HaloConnection,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        resolution_outcome_id: int | None = None,
        escalation_outcome_id: int | None = None,
        notify_customer_on_resolve: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for pref, value in (
            ("halo_resolution_outcome_id", resolution_outcome_id),
            ("halo_escalation_outcome_id", escalation_outcome_id),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{pref} must be a positive integer")
        self._conn = conn
        self._root = conn.root_url
        self._outcomes: dict[NoteKind, int | None] = {
            NoteKind.resolution: resolution_outcome_id,
            NoteKind.internal_analysis: escalation_outcome_id,
        }
        self._notify_on_resolve = notify_customer_on_resolve
        self._clock = clock
        super().__init__(http=http, timeout=timeout, transport=transport)
        secret_hash = hashlib.sha256(conn.client_secret.encode()).hexdigest()
        tenant = conn.tenant_name or ""
        self._token_key = (self._root.lower(), conn.client_id, tenant, secret_hash)
        self._config_key = (self._root.lower(), conn.client_id, tenant)
        # Every token this provider saw: scrubbed from every message built from upstream text.
        self._tokens_seen: list[str] = []

    def __repr__(self) -> str:
        conn = self._conn
        return f"HaloProvider(base_url={self._root!r}, client_id={conn.client_id!r}, tenant={conn.tenant!r})"

    # ---------------------------------------------------------------------------------------------
    # PSAProvider

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        tid = _ticket_id(ticket_id)
        what = f"fetch ticket {tid}"
        resp = self._send("GET", f"/Tickets/{tid}", params={"includedetails": "true"}, what=what, ticket_id=tid)
        return self._ticket_from(self._json_object(resp, what))

    def board_statuses(self, board_id: int) -> list[BoardStatus]:
        """The statuses of ticket type `board_id` (Halo has no boards; the ticket type plays that part)."""
        key = (*self._config_key, int(board_id))
        cached = _status_cache.get(key)
        if cached is None:
            cached = self._load_statuses(int(board_id))
            _status_cache.put(key, cached)
        return list(cached)

    def _fresh_statuses(self, board_id: int) -> list[BoardStatus]:
        fresh = self._load_statuses(board_id)
        _status_cache.put((*self._config_key, board_id), fresh)
        return list(fresh)

    def check_note_settings(self, kind: NoteKind) -> None:
        """The outcome for `kind` is set and exists in this Halo (read from `GET /api/Outcome`, cached)."""
        kind = NoteKind(kind)
        outcome_id = self._outcome_for(kind)
        outcomes = self._load_outcomes()
        if outcomes is None or any(oid == outcome_id for oid, _ in outcomes):
            return
        pref = OUTCOME_PREFERENCES[kind]
        listed = ", ".join(f"{name} ({oid})" for oid, name in outcomes) or "none"
        raise PSANotConfigured(
            f"HaloPSA has no outcome {outcome_id}, which {pref} names for the {_label(kind)} note; "
            f"set {pref} to one of: {listed}. Nothing was posted.",
            details={"preference": pref, "outcome_id": outcome_id, "outcomes": [o for o, _ in outcomes]},
        )

    def post_note(self, ticket_id: str, text: str, kind: NoteKind) -> PostedNote:
        tid = _ticket_id(ticket_id)
        kind = NoteKind(kind)
        self.check_note_settings(kind)
        outcome_id = self._outcome_for(kind)
        internal = kind is NoteKind.internal_analysis
        action = {
            "ticket_id": int(tid),
            "outcome_id": outcome_id,
            "note_html": to_note_html(text),
            # Both always explicit: an omitted flag takes the outcome's default (visible, emailed...).
            "hiddenfromuser": internal,
            "sendemail": not internal and self._notify_on_resolve,
        }
        what = f"post the {_label(kind)} note on ticket {tid}"
        resp = self._send("POST", "/Actions", json_body=[action], what=what, ticket_id=tid, kind=kind)
        return self._note_from(self._single_action(resp, what), tid, write=True)

    def get_note(self, ticket_id: str, note_id: str) -> PostedNote:
        tid, nid = _ticket_id(ticket_id), _note_id(note_id)
        what = f"read action {nid} of ticket {tid}"
        params = {"ticket_id": tid, "includehtmlnote": "true"}
        try:
            resp = self._send("GET", f"/Actions/{nid}", params=params, what=what, ticket_id=tid)
        except PSATicketNotFound as error:
            raise PSANoteNotFound(
                f"Action {nid} is no longer on HaloPSA ticket {tid}.",
                details={"ticket_id": tid, "note_id": nid, **(error.details or {})},
            ) from None
        note = self._note_from(self._json_object(resp, what), tid, write=False)
        if note.ticket_id != tid:
            raise PSANoteNotFound(
                f"Action {nid} is not on HaloPSA ticket {tid}.", details={"ticket_id": tid, "note_id": nid}
            )
        return note

    def update_note(self, ticket_id: str, note_id: str, *, kind: NoteKind, text: str | None = None) -> None:
        tid, nid = _ticket_id(ticket_id), _note_id(note_id)
        kind = NoteKind(kind)
        action: dict[str, Any] = {
            "id": int(nid),
            "ticket_id": int(tid),
            "hiddenfromuser": kind is NoteKind.internal_analysis,
            # The note was announced when it was created; an update emails nobody.
            "sendemail": False,
            "outcome_id": self._outcome_for(kind),
        }
        if text is not None:
            action["note_html"] = to_note_html(text)
        what = f"update action {nid} of ticket {tid}"
        try:
            self._send("POST", "/Actions", json_body=[action], what=what, ticket_id=tid, kind=kind)
        except PSATicketNotFound as error:
            raise PSANoteNotFound(
                f"Action {nid} is no longer on HaloPSA ticket {tid}.",
                details={"ticket_id": tid, "note_id": nid, **(error.details or {})},
            ) from None

    def visibility_matches(self, note: PostedNote, kind: NoteKind) -> bool:
        wanted = NoteKind(kind) is NoteKind.internal_analysis
        return note.flags.get("hiddenfromuser") is wanted

    def find_note_by_marker(self, ticket_id: str, marker: str) -> PostedNote | None:
        tid = _ticket_id(ticket_id)
        what = f"list the actions of ticket {tid}"
        params = {
            "ticket_id": tid,
            "excludesys": "true",
            "includehtmlnote": "true",
            "count": str(ACTIONS_PAGE_SIZE),
        }
        resp = self._send("GET", "/Actions", params=params, what=what, ticket_id=tid)
        for item in self._json_items(resp, what, "actions"):
            if isinstance(item, dict) and contains_marker(_action_text(item), marker):
                return self._note_from(item, tid, write=False)
        return None

    def change_status(self, ticket_id: str, status_id: int, *, notify_customer: bool = True) -> None:
        """`POST /api/Tickets [{id, status_id}]`. Halo's ticket update has no notification switch; whether
        a status change emails anyone is the status's own configuration, so `notify_customer` has no wire form."""
        tid = _ticket_id(ticket_id)
        if isinstance(status_id, bool) or not isinstance(status_id, int) or status_id <= 0:
            raise PSAValidationError(f"Status id must be a positive integer, got {status_id!r}.")
        self._send(
            "POST",
            "/Tickets",
            json_body=[{"id": int(tid), "status_id": status_id}],
            what=f"change the status of ticket {tid} to {status_id}",
            ticket_id=tid,
        )

    # ---------------------------------------------------------------------------------------------
    # Token

    def _token(self) -> str:
        cached = _token_cache.get(self._token_key)
        if cached is not None and self._clock() < cached.refresh_at:
            self._remember(cached.value)
            return cached.value
        return self._fetch_token()

    def _drop_token(self, token: str) -> None:
        cached = _token_cache.get(self._token_key)
        if cached is not None and cached.value == token:
            _token_cache.discard(self._token_key)

    def _fetch_token(self) -> str:
        url = f"{self._root}/auth/token"
        tenant = self._conn.tenant_name
        what = "get an API token (client credentials)"
        form = {
            "grant_type": "client_credentials",
            "client_id": self._conn.client_id,
            "client_secret": self._conn.client_secret,
            "scope": "all",
        }
        resp = self._request(
            "POST",
            url,
            operation="POST /auth/token",
            what=what,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            params={"tenant": tenant} if tenant else None,
            form=form,
        )
        if not resp.is_success:
            raise self._token_error(resp, url)
        data = json_or_none(resp)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise bad_response(VENDOR, what, "an access_token", write=False)
        self._remember(token)
        token_type = data.get("token_type") if isinstance(data, dict) else None
        if token_type is not None and str(token_type).lower() != "bearer":
            raise bad_response(VENDOR, what, "a Bearer token", write=False)
        lifetime = _reuse_seconds(data.get("expires_in") if isinstance(data, dict) else None)
        if lifetime >= TOKEN_MIN_REUSE_SECONDS:
            _token_cache.put(self._token_key, _Token(token, self._clock() + lifetime), ttl_seconds=lifetime)
        return token

    def _token_error(self, resp: httpx.Response, url: str) -> PSAError:
        status = resp.status_code
        said = self._halo_said(resp)
        details: dict[str, Any] = {"psa_status": status}
        if status in (400, 401, 403):
            return PSAAuthError(
                f"HaloPSA refused the API application's client credentials (HTTP {status}{_colon(said)}); "
                "check the client id, client secret and tenant, and that the application uses client credentials.",
                details=details,
            )
        if status == 404 or (300 <= status < 400):
            return PSAError(
                f"HaloPSA has no token endpoint at {url} (HTTP {status}); check the base URL (the instance root, "
                "e.g. https://acme.halopsa.com).",
                code="psa_misconfigured",
                details=details,
            )
        return self._error_for(resp, what="get an API token", ticket_id=None, write=False)

    def _remember(self, token: str) -> None:
        if token not in self._tokens_seen:
            self._tokens_seen.append(token)

    # ---------------------------------------------------------------------------------------------
    # HTTP

    def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        ticket_id: str | None,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        kind: NoteKind | None = None,
    ) -> httpx.Response:
        """One API call under `/api`; on a 401 the token is fetched again and the call retried once (Halo
        answers 401 to an expired token, and to one minted before a permission change)."""
        for attempt in range(2):
            token = self._token()
            resp = self._request(
                method,
                f"{self._root}/api{path}",
                operation=operation_name(method, f"/api{path}"),
                what=what,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
                params=params,
                json_body=json_body,
            )
            if resp.status_code != 401 or attempt == 1:
                break
            self._drop_token(token)
        if not resp.is_success:
            raise self._error_for(resp, what=what, ticket_id=ticket_id, write=method != "GET", kind=kind)
        return resp

    def _secret_values(self) -> tuple[str, ...]:
        return (self._conn.client_secret, *self._tokens_seen)

    def _halo_said(self, resp: httpx.Response) -> str:
        """Halo's own words, from whichever error shape it used (scrubbed, bounded)."""
        body = json_or_none(resp)
        text = ""
        if isinstance(body, dict):
            message = body.get("Message") or body.get("message") or body.get("errorMessage")
            if message:
                text = str(message)
            elif body.get("error"):
                text = str(body["error"])
                if body.get("error_description"):
                    text += f": {body['error_description']}"
        elif isinstance(body, str):
            text = body
        elif body is None and not _is_html(resp):
            text = resp.text.strip()
        return self._scrub(" ".join(text.split())[:500])

    def _error_for(
        self,
        resp: httpx.Response,
        *,
        what: str,
        ticket_id: str | None,
        write: bool,
        kind: NoteKind | None = None,
    ) -> PSAError:
        status = resp.status_code
        body = json_or_none(resp)
        halo = body if isinstance(body, dict) else {}
        said = self._halo_said(resp)
        halo_code = str(halo.get("ClassName") or halo.get("resultCode") or halo.get("error") or "")
        details: dict[str, Any] = {"psa_status": status}
        maybe = "; it may have been applied" if write else ""

        if _NO_ACCESS in said.lower() and status < 500:
            if kind is not None:
                # A setting to change, not credentials: Halo refused the action, so nothing was stored.
                pref = OUTCOME_PREFERENCES[kind]
                return PSANotConfigured(
                    f"HaloPSA refused to {what} (HTTP {status}{_colon(said)}); the API application's agent may not "
                    f"use outcome {self._outcomes[kind]} ({pref}). Give the agent access to it in Halo, or set {pref} "
                    "to another outcome; nothing was posted.",
                    details={**details, "preference": pref},
                )
            return PSAAuthError(
                f"HaloPSA refused to {what} (HTTP {status}{_colon(said)}); the API application's agent may not use"
                " that outcome. Give the agent access to it in Halo, or choose another outcome.",
                details=details,
            )
        if status == 401:
            return PSAAuthError(
                f"HaloPSA refused our API token to {what}, also after fetching a new one (HTTP 401{_colon(said)}); "
                "check that the API application is active and has the permissions it needs.",
                details=details,
            )
        if status == 403:
            return PSAAuthError(
                f"HaloPSA refused to {what} (HTTP 403{_colon(said)}); the API application or its agent lacks "
                "the permission for it.",
                details=details,
            )
        if status == 429:
            wait = retry_after(resp) if resp.headers.get("retry-after") else RATE_LIMIT_DEFAULT_RETRY_AFTER
            return PSARateLimited(
                f"HaloPSA is rate limiting us ({what}{_colon(said)}).", retry_after=wait, details=details
            )
        if status >= 500:
            return PSATransientError(
                f"HaloPSA failed to {what} (HTTP {status}{_colon(said)}){maybe}.",
                retry_after=retry_after(resp),
                details={**details, "may_have_applied": write},
            )
        if status == 404:
            if _is_html(resp):
                # Not Halo's API answering: the base URL points at something else.
                return PSAError(
                    f"HaloPSA answered 404 with a web page to {what}; check the base URL.",
                    code="psa_misconfigured",
                    details=details,
                )
            if ticket_id is not None:
                return PSATicketNotFound(f"HaloPSA ticket {ticket_id} was not found{_colon(said)}.", details=details)
            message = f"HaloPSA could not {what}: not found{_colon(said)}."
            return PSAError(message, code="psa_not_found", details=details)
        if status == 400:
            psa_errors = [{"code": halo_code, "message": said, "field": None}]
            return PSAValidationError(
                f"HaloPSA rejected the request to {what}{_colon(said)}.", details={**details, "psa_errors": psa_errors}
            )
        return PSAError(f"HaloPSA answered HTTP {status} to {what}{_colon(said)}.", details=details)

    def _json_items(self, resp: httpx.Response, what: str, key: str) -> list[Any]:
        """A bare array, or Halo's list envelope (`{"<key>": [...], "record_count": n}`)."""
        data = json_or_none(resp)
        if isinstance(data, list):
            return data
        if isinstance(data, dict):
            items = data.get(key)
            if isinstance(items, list):
                return items
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) == 1:
                return lists[0]
        raise bad_response(VENDOR, what, f"a JSON array or a {key!r} list", write=False)

    def _single_action(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        """The created action: an object, or (with `returnall`) an array of one."""
        data = json_or_none(resp)
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise bad_response(VENDOR, what, "the created action", write=True)
        return data

    # ---------------------------------------------------------------------------------------------
    # Configuration: statuses and outcomes

    def _outcome_for(self, kind: NoteKind) -> int:
        outcome_id = self._outcomes[kind]
        if outcome_id is None:
            pref = OUTCOME_PREFERENCES[kind]
            raise PSANotConfigured(
                f"HaloPSA needs an outcome for every note and none is set for the {_label(kind)} note: set "
                f"{pref} in the account's preferences (an outcome id from Halo). Nothing was posted.",
                details={"preference": pref},
            )
        return outcome_id

    def _load_statuses(self, tickettype_id: int) -> tuple[BoardStatus, ...]:
        what = f"list the statuses of ticket type {tickettype_id}"
        params = {"tickettype_id": str(tickettype_id)}
        resp = self._send("GET", "/Status", params=params, what=what, ticket_id=None)
        statuses: list[BoardStatus] = []
        for item in self._json_items(resp, what, "statuses"):
            sid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(sid, int) or isinstance(sid, bool):
                raise bad_response(VENDOR, what, "status objects with an id", write=False)
            statuses.append(
                BoardStatus(
                    id=sid,
                    name=str(item.get("name") or ""),
                    board_id=tickettype_id,
                    # TStatus documents no such flags; honour them if a version sends them.
                    inactive=item.get("inactive") is True or item.get("hidden") is True,
                    closed=sid == CLOSED_STATUS_ID,
                )
            )
        return tuple(statuses)

    def _load_outcomes(self) -> tuple[tuple[int, str], ...] | None:
        """(id, name) of the tenant's outcomes, or None when the API application may not read them (the
        note POST will then say whether the outcome is usable)."""
        cached = _outcome_cache.get(self._config_key)
        if cached is not None:
            return cached
        what = "list the action outcomes"
        try:
            resp = self._send("GET", "/Outcome", params={"showhidden": "true"}, what=what, ticket_id=None)
        except PSAAuthError as error:
            if error.details.get("psa_status") == 403:
                return None
            raise
        outcomes: list[tuple[int, str]] = []
        for item in self._json_items(resp, what, "outcomes"):
            oid = item.get("id") if isinstance(item, dict) else None
            if isinstance(oid, int) and not isinstance(oid, bool):
                outcomes.append((oid, str(item.get("outcome") or item.get("buttonname") or "")))
        result = tuple(outcomes)
        _outcome_cache.put(self._config_key, result)
        return result

    # ---------------------------------------------------------------------------------------------
    # Wire -> domain

    def _ticket_from(self, data: dict[str, Any]) -> Ticket:
        tid, type_id, status_id = data.get("id"), data.get("tickettype_id"), data.get("status_id")
        if tid is None or not _is_int(type_id) or not _is_int(status_id):
            raise bad_response(VENDOR, "read a ticket", "a ticket with id, tickettype_id and status_id", write=False)
        type_name = data.get("tickettype_name")
        known = status_by_id(self.board_statuses(type_id), status_id)
        status_name = known.name if known is not None else str(data.get("status_name") or "")
        return Ticket(
            id=str(tid),
            summary=str(data.get("summary") or ""),
            board_id=type_id,
            board_name=type_name if isinstance(type_name, str) and type_name else f"ticket type {type_id}",
            status=StatusRef(id=status_id, name=status_name),
            closed=data.get("hasbeenclosed") is True,
            record_type="ServiceTicket",
        )

    def _note_from(self, data: dict[str, Any], ticket_id: str, *, write: bool) -> PostedNote:
        aid = data.get("id")
        if not _is_int(aid):
            raise bad_response(VENDOR, f"read an action of ticket {ticket_id}", "an action with an id", write=write)
        hidden = data.get("hiddenfromuser")
        owner = data.get("ticket_id")
        return PostedNote(
            id=str(aid),
            ticket_id=str(owner) if _is_int(owner) else ticket_id,
            text=_action_text(data),
            customer_visible=hidden is not True,
            internal_analysis=hidden is True,
            flags={"hiddenfromuser": hidden if isinstance(hidden, bool) else None},
        )


def provider_for(connection: HaloConnection, **kw: Any) -> HaloProvider:
    return HaloProvider(connection, **kw)


# --------------------------------------------------------------------------------------------------
# Text <-> note_html. Our text is plain text (markdown) with a marker line; Halo shows HTML. We write
# escaped lines joined by <br> in one paragraph and read back by the exact inverse, so `same_text` holds.

_BR = re.compile(r"<br\s*/?>", re.I)
_PARAGRAPH_BREAK = re.compile(r"</p\s*>\s*<p(?:\s[^>]*)?>", re.I)
_BLOCK_BREAK = re.compile(r"</(?:div|li|h[1-6]|tr|blockquote|pre)\s*>\s*(?=<)", re.I)
_LAYOUT_WHITESPACE = re.compile(r">[ \t]*\r?\n\s*<")
# We never write a raw line break (lines are joined with <br>): one in the stored HTML is Halo's pretty-printing.
# Beside a tag it is layout only; between words it renders as one space.
_LAYOUT_AT_TAG = re.compile(r"(?<=>)[ \t]*\r?\n\s*|\s*\r?\n[ \t]*(?=<)")
_LAYOUT_BETWEEN_WORDS = re.compile(r"[ \t]*\r?\n\s*")
_TAG = re.compile(r"<[^>]*>")


def to_note_html(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>"


def from_note_html(value: str) -> str:
    text = _LAYOUT_WHITESPACE.sub("><", value)  # pretty-printing between tags is not content
    text = _LAYOUT_BETWEEN_WORDS.sub(" ", _LAYOUT_AT_TAG.sub("", text))
    text = _PARAGRAPH_BREAK.sub("\n\n", text)
    text = _BR.sub("\n", text)
    text = _BLOCK_BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    return html.unescape(text)


def _action_text(data: Mapping[str, Any]) -> str:
    note_html = data.get("note_html")
    if isinstance(note_html, str) and note_html.strip():
        return from_note_html(note_html)
    note = data.get("note")
    return note if isinstance(note, str) else ""


# --------------------------------------------------------------------------------------------------
# Small helpers


def _reuse_seconds(expires_in: object) -> float:
    """How long to reuse a token Halo says lives `expires_in` seconds: until a minute before (half its life,
    if shorter)."""
    try:
        lifetime = float(str(expires_in))
    except ValueError:
        lifetime = TOKEN_DEFAULT_EXPIRES_IN
    if math.isnan(lifetime) or lifetime <= 0:
        return 0.0
    lifetime = min(lifetime, 86400.0)
    return lifetime - min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)


def _ticket_id(ticket_id: str) -> str:
    return http.ticket_id(ticket_id, VENDOR)


def _note_id(note_id: str) -> str:
    return http.note_id(note_id, VENDOR, "action")


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_int(value: object) -> TypeIs[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_html(resp: httpx.Response) -> bool:
    return "html" in resp.headers.get("content-type", "").lower()


def _label(kind: NoteKind) -> str:
    return "resolution" if kind is NoteKind.resolution else "internal analysis"


def _colon(said: str) -> str:
    return f": {said}" if said else ""
