"""ConnectWise Manage over REST: CW's wire format and nothing else.

Owns the base-URL discovery (companyinfo codebase), CW auth headers, the note/status/ticket payloads,
the mapping of CW's HTTP answers to `psa.base` errors, and the per-board status cache. It never
retries: the write-back state machine owns retrying, and dedupes note POSTs with `find_note_by_marker`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from flowpilot import resets
from flowpilot.psa import http
from flowpilot.psa.base import (
    BoardStatus,
    NoteKind,
    PostedNote,
    PSAAuthError,
    PSAError,
    PSANoteNotFound,
    PSARateLimited,
    PSATicketNotFound,
    PSATransientError,
    PSAValidationError,
    StatusRef,
    Ticket,
    contains_marker,
)
from flowpilot.psa.http import HTTPProvider, TTLCache, json_or_none, operation_name, retry_after

BOARD_STATUS_TTL_SECONDS = 600.0
NOTES_PAGE_SIZE = 50
MARKER_SEARCH_PAGES = 3
STATUS_PAGE_SIZE = 1000
# A board with more than 10k statuses is not a board; stop rather than loop on a bad Link header.
STATUS_PAGE_LIMIT = 10

_TICKET_ID = re.compile(r"^[0-9]{1,12}$")
_CODEBASE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9_.-]+/?$")

# What we send per kind; visibility is judged from exactly these flags (a CW quirk:
# CW echoes internalFlag and externalFlag both true on create, so those two say nothing).
_NOTE_FLAGS: dict[NoteKind, dict[str, bool]] = {
    NoteKind.resolution: {
        "detailDescriptionFlag": True,
        "resolutionFlag": True,
        "internalAnalysisFlag": False,
        "issueFlag": False,
    },
    NoteKind.internal_analysis: {
        "internalAnalysisFlag": True,
        "detailDescriptionFlag": False,
        "resolutionFlag": False,
        "issueFlag": False,  # "Issue" notes show on the customer portal too
    },
}


_VISIBILITY_FLAGS = ("detailDescriptionFlag", "resolutionFlag", "internalAnalysisFlag", "issueFlag")


_board_status_cache: TTLCache[tuple[str, str, int], tuple[BoardStatus, ...]] = TTLCache(BOARD_STATUS_TTL_SECONDS)
_codebase_cache: TTLCache[tuple[str, str], str] = TTLCache(BOARD_STATUS_TTL_SECONDS)


@resets.register
def reset_caches() -> None:
    """Forget cached board statuses and codebases (tests; or after a tenant changes its boards)."""
    _board_status_cache.clear()
    _codebase_cache.clear()


@dataclass(frozen=True)
class ConnectWiseConnection:
    """One tenant's API member. `site` is the API host (`api-na.myconnectwise.net`), or a full
    `http(s)://host[:port]` origin; `base_url` (the full `.../apis/3.0` URL) overrides site+codebase."""

    site: str
    company_id: str
    public_key: str = field(repr=False)
    private_key: str = field(repr=False)
    client_id: str
    base_url: str | None = None
    codebase: str | None = None

    def __post_init__(self) -> None:
        missing = [
            name for name in ("site", "company_id", "public_key", "private_key", "client_id") if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"ConnectWise connection is missing: {', '.join(missing)}")

    @property
    def site_url(self) -> str:
        site = self.site.strip().rstrip("/")
        return site if "://" in site else f"https://{site}"


class ConnectWiseProvider(HTTPProvider):
    """`PSAProvider` for ConnectWise Manage over a sync `httpx.Client`."""

    name: str = "connectwise"
    vendor = "ConnectWise"

    def __init__(
        self,
        conn: ConnectWiseConnection,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        notify_customer_on_resolve: bool = True,
    ) -> None:
        super().__init__(http=http, timeout=timeout, transport=transport)
        self._conn = conn
        self._notify_on_resolve = notify_customer_on_resolve
        self._base_url: str | None = conn.base_url.rstrip("/") if conn.base_url else None
        token = base64.b64encode(f"{conn.company_id}+{conn.public_key}:{conn.private_key}".encode()).decode()
        self._authorization = f"Basic {token}"
        # Anything that could identify the keys; scrubbed from every message we build from upstream text.
        self._secrets = tuple(s for s in (conn.private_key, conn.public_key, token) if s)

    def __repr__(self) -> str:
        return f"ConnectWiseProvider(site={self._conn.site!r}, company_id={self._conn.company_id!r})"

    # ---------------------------------------------------------------------------------------------
    # PSAProvider

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        tid = _ticket_id(ticket_id)
        what = f"fetch ticket {tid}"
        resp = self._send("GET", f"/service/tickets/{tid}", what=what, ticket_id=tid)
        return self._ticket_from(self._json_object(resp, what))

    def board_statuses(self, board_id: int) -> list[BoardStatus]:
        key = (self.base_url(), self._conn.company_id.lower(), board_id)
        cached = _board_status_cache.get(key)
        if cached is None:
            cached = self._load_board_statuses(board_id)
            _board_status_cache.put(key, cached)
        return list(cached)

    def _fresh_statuses(self, board_id: int) -> list[BoardStatus]:
        fresh = self._load_board_statuses(board_id)
        _board_status_cache.put((self.base_url(), self._conn.company_id.lower(), board_id), fresh)
        return list(fresh)

    def check_note_settings(self, kind: NoteKind) -> None:
        """Nothing to look up: CW's note flags are fixed by the API, the same in every tenant."""
        NoteKind(kind)

    def post_note(self, ticket_id: str, text: str, kind: NoteKind) -> PostedNote:
        tid = _ticket_id(ticket_id)
        kind = NoteKind(kind)
        flags = _NOTE_FLAGS[kind]
        body = {
            "text": text,
            **flags,
            # Sent explicitly: a default could mark the ticket customer-updated or email the customer.
            "customerUpdatedFlag": False,
            "processNotifications": kind == NoteKind.resolution and self._notify_on_resolve,
        }
        label = str(kind).replace("_", " ")
        what = f"post the {label} note on ticket {tid}"
        resp = self._send("POST", f"/service/tickets/{tid}/notes", json_body=body, what=what, ticket_id=tid)
        return self._note_from(self._json_object(resp, what, write=True), tid, write=True)

    def get_note(self, ticket_id: str, note_id: str) -> PostedNote:
        tid, nid = _ticket_id(ticket_id), _note_id(note_id)
        what = f"read note {nid} of ticket {tid}"
        try:
            resp = self._send("GET", f"/service/tickets/{tid}/notes/{nid}", what=what, ticket_id=tid)
        except PSATicketNotFound as error:
            # CW answers 404 for a deleted note as for a missing ticket; either way the note is not there.
            raise PSANoteNotFound(
                f"Note {nid} is no longer on ConnectWise ticket {tid}.",
                details={"ticket_id": tid, "note_id": nid, **(error.details or {})},
            ) from None
        return self._note_from(self._json_object(resp, what), tid, write=False)

    def update_note(self, ticket_id: str, note_id: str, *, kind: NoteKind, text: str | None = None) -> None:
        tid, nid = _ticket_id(ticket_id), _note_id(note_id)
        kind = NoteKind(kind)
        ops: list[dict[str, Any]] = [
            {"op": "replace", "path": name, "value": value} for name, value in _NOTE_FLAGS[kind].items()
        ]
        if text is not None:
            ops.insert(0, {"op": "replace", "path": "text", "value": text})
        # The note was announced when it was created; an update notifies nobody.
        ops.append({"op": "replace", "path": "processNotifications", "value": False})
        what = f"update note {nid} of ticket {tid}"
        self._send("PATCH", f"/service/tickets/{tid}/notes/{nid}", json_body=ops, what=what, ticket_id=tid)

    def visibility_matches(self, note: PostedNote, kind: NoteKind) -> bool:
        # Exactly the flags we send for the kind; issueFlag (also customer-visible) must be off for internal notes.
        wanted = _NOTE_FLAGS[NoteKind(kind)]
        exact = all(note.flags.get(name) is value for name, value in wanted.items())
        return exact and not (NoteKind(kind) is NoteKind.internal_analysis and note.customer_visible)

    def find_note_by_marker(self, ticket_id: str, marker: str) -> PostedNote | None:
        tid = _ticket_id(ticket_id)
        what = f"list notes of ticket {tid}"
        params: Mapping[str, str] = {"orderBy": "id desc", "pageSize": str(NOTES_PAGE_SIZE)}
        for _ in range(MARKER_SEARCH_PAGES):
            resp = self._send("GET", f"/service/tickets/{tid}/notes", params=params, what=what, ticket_id=tid)
            for item in self._json_list(resp, what):
                if isinstance(item, dict) and contains_marker(str(item.get("text") or ""), marker):
                    return self._note_from(item, tid, write=False)
            next_params = _next_page_params(resp)
            if next_params is None:
                return None
            params = next_params
        return None

    def change_status(self, ticket_id: str, status_id: int, *, notify_customer: bool = True) -> None:
        tid = _ticket_id(ticket_id)
        if isinstance(status_id, bool) or not isinstance(status_id, int) or status_id <= 0:
            raise PSAValidationError(f"Status id must be a positive integer, got {status_id!r}.")
        body: list[dict[str, Any]] = [{"op": "replace", "path": "status", "value": {"id": status_id}}]
        if not notify_customer:
            # A status with an email template would otherwise mail the customer about an internal change.
            body.append({"op": "replace", "path": "processNotifications", "value": False})
        self._send(
            "PATCH",
            f"/service/tickets/{tid}",
            json_body=body,
            what=f"change the status of ticket {tid} to {status_id}",
            ticket_id=tid,
        )

    # ---------------------------------------------------------------------------------------------
    # Base URL

    def base_url(self) -> str:
        """`https://{site}/{codebase}apis/3.0`, discovering the codebase on first use."""
        if self._base_url is None:
            codebase = self._conn.codebase or self._discover_codebase()
            self._base_url = f"{self._conn.site_url}/{codebase.strip('/')}/apis/3.0"
        return self._base_url

    def _discover_codebase(self) -> str:
        site = self._conn.site_url
        key = (site.lower(), self._conn.company_id.lower())
        cached = _codebase_cache.get(key)
        if cached is not None:
            return cached
        url = f"{site}/login/companyinfo/{quote(self._conn.company_id, safe='')}"
        what = f"look up the codebase of company {self._conn.company_id!r}"
        # No credentials on this unauthenticated endpoint (django-connectwise sends none either).
        headers = {"clientId": self._conn.client_id, "Accept": "application/json"}
        resp = self._request("GET", url, what=what, headers=headers)
        if resp.status_code == 404:
            raise PSAError(
                f"ConnectWise at {site} does not know company {self._conn.company_id!r}; check the connection.",
                code="psa_misconfigured",
            )
        if not resp.is_success:
            raise self._error_for(resp, what=what, ticket_id=None, write=False)
        codebase = self._json_object(resp, what).get("Codebase")
        if not isinstance(codebase, str) or not _CODEBASE.match(codebase):
            raise PSAError(f"ConnectWise companyinfo at {site} has no usable Codebase.", code="psa_bad_response")
        _codebase_cache.put(key, codebase)
        return codebase

    # ---------------------------------------------------------------------------------------------
    # HTTP

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": self._authorization,
            "clientId": self._conn.client_id,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        ticket_id: str | None,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
    ) -> httpx.Response:
        """One API call under the base URL; a non-2xx answer raises the matching PSA error."""
        resp = self._request(
            method,
            self.base_url() + path,
            what=what,
            headers=self._headers(),
            params=params,
            json_body=json_body,
        )
        if not resp.is_success:
            raise self._error_for(resp, what=what, ticket_id=ticket_id, write=method != "GET")
        return resp

    def _operation(self, method: str, url: str) -> str:
        path = httpx.URL(url).path
        if "/apis/3.0/" in path:
            path = path.split("/apis/3.0", 1)[1]
        elif "/login/companyinfo/" in path:
            path = "/login/companyinfo"  # the rest is the company id
        return operation_name(method, path)

    def _error_for(self, resp: httpx.Response, *, what: str, ticket_id: str | None, write: bool) -> PSAError:
        status = resp.status_code
        body = json_or_none(resp)
        cw = body if isinstance(body, dict) else {}
        cw_code = str(cw.get("code") or "")
        cw_message = self._scrub(str(cw.get("message") or "")[:500])
        errors = [
            {
                "code": str(e.get("code") or ""),
                "message": self._scrub(str(e.get("message") or "")[:500]),
                "field": e.get("field"),
            }
            for e in (cw.get("errors") or [])
            if isinstance(e, dict)
        ]
        said = f": {cw_message}" if cw_message else ""
        details: dict[str, Any] = {"psa_status": status}
        if request_id := resp.headers.get("x-cw-request-id"):
            details["psa_request_id"] = request_id
        maybe = "; it may have been applied" if write else ""

        if status in (401, 403) or cw_code.lower() == "security":
            return PSAAuthError(
                f"ConnectWise refused to {what} (HTTP {status}{said}); check the API member's keys, "
                "clientId and security role.",
                details=details,
            )
        if status == 429:
            return PSARateLimited(
                f"ConnectWise is rate limiting us ({what}).", retry_after=retry_after(resp), details=details
            )
        # 409 is CW's "record possibly in use": someone else holds the ticket, so later may work.
        if status >= 500 or status == 409:
            return PSATransientError(
                f"ConnectWise failed to {what} (HTTP {status}{said}){maybe}.",
                retry_after=retry_after(resp),
                details={**details, "may_have_applied": write},
            )
        if status == 404:
            if not cw_code:
                # Not CW's JSON: the site or codebase points somewhere that is not the CW API.
                return PSAError(
                    f"ConnectWise answered 404 without a CW body to {what}; check the site and codebase.",
                    code="psa_misconfigured",
                    details=details,
                )
            if ticket_id is not None:
                return PSATicketNotFound(f"ConnectWise ticket {ticket_id} was not found{said}.", details=details)
            return PSAError(f"ConnectWise could not {what}: not found{said}.", code="psa_not_found", details=details)
        if status == 400:
            reasons = "; ".join(e["message"] for e in errors if e["message"])
            message = f"ConnectWise rejected the request to {what}{said}" + (f": {reasons}" if reasons else "")
            psa_errors = errors or [{"code": cw_code, "message": cw_message, "field": None}]
            return PSAValidationError(message + ".", details={**details, "psa_errors": psa_errors})
        return PSAError(f"ConnectWise answered HTTP {status} to {what}{said}.", details=details)

    def _json_list(self, resp: httpx.Response, what: str) -> list[Any]:
        data = json_or_none(resp)
        if not isinstance(data, list):
            raise self._bad_response(what, "a JSON array", write=False)
        return data

    def _secret_values(self) -> tuple[str, ...]:
        return self._secrets

    # ---------------------------------------------------------------------------------------------
    # Wire -> domain

    def _load_board_statuses(self, board_id: int) -> tuple[BoardStatus, ...]:
        what = f"list the statuses of board {board_id}"
        params: Mapping[str, str] = {"pageSize": str(STATUS_PAGE_SIZE)}
        statuses: list[BoardStatus] = []
        for _ in range(STATUS_PAGE_LIMIT):
            resp = self._send(
                "GET", f"/service/boards/{int(board_id)}/statuses", params=params, what=what, ticket_id=None
            )
            for item in self._json_list(resp, what):
                if not isinstance(item, dict) or not isinstance(item.get("id"), int):
                    raise self._bad_response(what, "status objects with an id", write=False)
                board = item.get("board")
                statuses.append(
                    BoardStatus(
                        id=item["id"],
                        name=str(item.get("name") or ""),
                        board_id=board.get("id", board_id) if isinstance(board, dict) else board_id,
                        inactive=item.get("inactive") is True,
                        closed=item.get("closedStatus") is True,
                    )
                )
            next_params = _next_page_params(resp)
            if next_params is None:
                break
            params = next_params
        return tuple(statuses)

    def _ticket_from(self, data: dict[str, Any]) -> Ticket:
        board, status = data.get("board"), data.get("status")
        if (
            data.get("id") is None
            or not isinstance(board, dict)
            or not isinstance(status, dict)
            or not isinstance(board.get("id"), int)
            or not isinstance(status.get("id"), int)
        ):
            raise self._bad_response("read a ticket", "a ticket with id, board and status", write=False)
        return Ticket(
            id=str(data["id"]),
            summary=str(data.get("summary") or ""),
            board_id=board["id"],
            board_name=str(board.get("name") or ""),
            status=StatusRef(id=status["id"], name=str(status.get("name") or "")),
            closed=data.get("closedFlag") is True,
            record_type=str(data.get("recordType") or "ServiceTicket"),
        )

    def _note_from(self, data: dict[str, Any], ticket_id: str, *, write: bool) -> PostedNote:
        if data.get("id") is None:
            raise self._bad_response(f"read a note of ticket {ticket_id}", "a note with an id", write)
        return PostedNote(
            id=str(data["id"]),
            ticket_id=str(data.get("ticketId") or ticket_id),
            text=str(data.get("text") or ""),
            # issueFlag also shows the note to the customer (CW counts it as "external"), so it counts too.
            customer_visible=any(data.get(f) is True for f in ("detailDescriptionFlag", "resolutionFlag", "issueFlag")),
            internal_analysis=data.get("internalAnalysisFlag") is True,
            flags={name: data.get(name) is True for name in _VISIBILITY_FLAGS},
        )


def provider_for(connection: ConnectWiseConnection, **kw: Any) -> ConnectWiseProvider:
    return ConnectWiseProvider(connection, **kw)


def _ticket_id(ticket_id: str) -> str:
    return http.ticket_id(ticket_id, "ConnectWise")


def _note_id(note_id: str) -> str:
    return http.note_id(note_id, "ConnectWise")


def _next_page_params(resp: httpx.Response) -> dict[str, str] | None:
    """The query of the `rel="next"` Link; we apply it to our own URL so no other host gets our keys."""
    link = resp.links.get("next", {}).get("url")
    if not link:
        return None
    params = dict(httpx.URL(link).params.multi_items())
    return params or None
