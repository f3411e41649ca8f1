"""A ConnectWise Manage simulator: a real HTTP server on loopback that speaks CW's REST wire format.

Owns fake CW state (boards, statuses, tickets, notes), CW's auth, paging and error bodies
and per-ticket fault knobs that reproduce how CW write-backs fail in
production: silently ignored status changes, workflow reverts, 429s, 500s, connections dropped after
the note was stored, slow answers. Dev and test tool only; never shipped in the layer.

    with CWSimulator() as sim:
        sim.seed_demo()
        ...  # point a ConnectWiseProvider at sim.base_url (or sim.site_url for codebase discovery)

Run standalone with the demo seed: `python -m devstack.cw_simulator --port 8089`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from devstack.psa_sim import (
    NoteView,
    PSASimulator,
    RecordedRequest,
    SimError,
    SimReply,
    SimRequest,
    TicketFaults,
    now_iso,
    serve_forever,
)

__all__ = ["CWSimulator", "CWTicketFaults", "RecordedRequest", "TicketFaults"]

DEMO_COMPANY_ID = "flowpilot-demo"
DEMO_PUBLIC_KEY = "demo-public"
DEMO_PRIVATE_KEY = "demo-private"
DEMO_CLIENT_ID = "5b7e3c1a-2f4d-4e8b-9a6c-0d1e2f3a4b5c"
DEMO_CODEBASE = "v4_6_release/"

# Who writes: the API member (our provider) or a person in the CW UI (state helpers).
API_MEMBER: dict[str, Any] = {"id": 176, "identifier": "flowpilot-api", "name": "FlowPilot API"}
HUMAN_MEMBER: dict[str, Any] = {"id": 150, "identifier": "jdoe", "name": "Jane Doe"}

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000
SUMMARY_MAX_LENGTH = 100
_CUSTOMER_VISIBLE_FLAGS = ("detailDescriptionFlag", "resolutionFlag", "issueFlag")
_NOTE_FLAGS = ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag", "issueFlag")

_COMPANYINFO = re.compile(r"^/login/companyinfo/([^/]+)/?$", re.I)
_TICKET_SCOPE = re.compile(r"^/service/tickets/(\d+)(?:/|$)", re.I)
_TICKET = re.compile(r"^/service/tickets/(\d+)/?$", re.I)
_NOTES = re.compile(r"^/service/tickets/(\d+)/notes/?$", re.I)
_NOTE = re.compile(r"^/service/tickets/(\d+)/notes/(\d+)/?$", re.I)
_STATUSES = re.compile(r"^/service/boards/(\d+)/statuses/?$", re.I)
_STATUS = re.compile(r"^/service/boards/(\d+)/statuses/(\d+)/?$", re.I)
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_/]*)\s*(=|!=)\s*(.+?)\s*$")

_IIS_404 = "<html><head><title>404 - File or directory not found.</title></head><body></body></html>"


@dataclass
class CWTicketFaults(TicketFaults):
    """The common knobs (`psa_sim.TicketFaults`) and ConnectWise's own."""

    # This ticket's calls get 403 {"code": "Security"} (API member lacks the security role).
    security_denied: bool = False
    # Note flags CW stores whatever we send (a tenant default that, e.g., makes notes customer-visible).
    note_flag_overrides: dict[str, bool] = field(default_factory=dict)
    # The overrides hold on note updates too (a tenant policy that no API update can change).
    note_flag_overrides_sticky: bool = False

    def flag_overrides(self) -> dict[str, bool]:
        """`note_flag_overrides`, plus the flags `force_note_visibility` stands for."""
        forced: dict[str, bool] = {}
        if self.force_note_visibility == "customer":
            forced = {"detailDescriptionFlag": True}
        elif self.force_note_visibility == "internal":
            forced = dict.fromkeys(("detailDescriptionFlag", "resolutionFlag", "issueFlag"), False)
            forced["internalAnalysisFlag"] = True
        return {**forced, **self.note_flag_overrides}

    def overrides_sticky(self) -> bool:
        return self.note_flag_overrides_sticky or self.force_note_visibility_sticky


@dataclass
class _Board:
    id: int
    name: str
    statuses: dict[int, dict[str, Any]]


@dataclass
class _Ticket:
    id: int
    summary: str
    board_id: int
    status_id: int
    closed: bool = False
    closed_date: str | None = None
    closed_by: str | None = None
    customer_updated: bool = False
    record_type: str = "ServiceTicket"
    date_entered: str = ""
    last_updated: str = ""
    updated_by: str = "jdoe"


def _invalid(resource: str, code: str, message: str, field_name: str | None) -> SimError:
    return SimError(
        400,
        {
            "code": "InvalidObject",
            "message": f"{resource} object is invalid",
            "errors": [{"code": code, "message": message, "resource": resource, "field": field_name}],
        },
    )


class CWSimulator(PSASimulator):
    """A ConnectWise Manage tenant on 127.0.0.1. Thread-safe; every state helper takes the lock."""

    provider = "connectwise"
    faults_type = CWTicketFaults
    server_name = "cw-simulator"

    def __init__(
        self,
        *,
        company_id: str = DEMO_COMPANY_ID,
        public_key: str = DEMO_PUBLIC_KEY,
        private_key: str = DEMO_PRIVATE_KEY,
        client_id: str = DEMO_CLIENT_ID,
        codebase: str = DEMO_CODEBASE,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, verbose=verbose)
        self.company_id = company_id
        self.public_key = public_key
        self.private_key = private_key
        self.client_id = client_id
        self.codebase = codebase.strip("/") + "/"
        self._boards: dict[int, _Board] = {}
        self._tickets: dict[int, _Ticket] = {}
        self._next_note_id = 5001

    @property
    def base_url(self) -> str:
        return f"{self.site_url}/{self.codebase}apis/3.0"

    @property
    def base_path(self) -> str:
        return f"/{self.codebase}apis/3.0"

    # ---------------------------------------------------------------------------------------------
    # State helpers (what a human does in the CW UI, or what a test arranges)

    def add_board(self, board_id: int, name: str, statuses: list[dict[str, Any]]) -> None:
        """Statuses need `id` and `name`; `inactive`, `closedStatus`, `escalationStatus`,
        `defaultFlag`, `sortOrder` default to a plain open status."""
        normalized: dict[int, dict[str, Any]] = {}
        for order, status in enumerate(statuses):
            sid = int(status["id"])
            normalized[sid] = {
                "id": sid,
                "name": str(status["name"]),
                "board": {"id": board_id},
                "sortOrder": int(status.get("sortOrder", order)),
                "displayOnBoard": bool(status.get("displayOnBoard", True)),
                "inactive": bool(status.get("inactive", False)),
                "closedStatus": bool(status.get("closedStatus", False)),
                "timeEntryNotAllowed": bool(status.get("timeEntryNotAllowed", False)),
                "defaultFlag": bool(status.get("defaultFlag", False)),
                "escalationStatus": str(
                    status.get("escalationStatus", "Resolved" if status.get("closedStatus") else "NotResponded")
                ),
                "customerPortalFlag": bool(status.get("customerPortalFlag", False)),
            }
        with self._lock:
            self._boards[board_id] = _Board(id=board_id, name=name, statuses=normalized)

    def add_ticket(
        self, ticket_id: int | str, *, board_id: int, status_id: int, summary: str, record_type: str = "ServiceTicket"
    ) -> None:
        tid = int(ticket_id)
        with self._lock:
            board = self._boards.get(board_id)
            if board is None:
                raise ValueError(f"no board {board_id}")
            status = board.statuses.get(status_id)
            if status is None:
                raise ValueError(f"status {status_id} is not on board {board_id}")
            now = now_iso()
            self._tickets[tid] = _Ticket(
                id=tid,
                summary=summary[:SUMMARY_MAX_LENGTH],
                board_id=board_id,
                status_id=status_id,
                closed=status["closedStatus"],
                record_type=record_type,
                date_entered=now,
                last_updated=now,
            )
            self._notes.setdefault(tid, [])

    def add_note(self, ticket_id: int | str, text: str, **flags: bool) -> dict[str, Any]:
        """Store a note directly (as if typed in the CW UI); returns it as GET would."""
        tid = int(ticket_id)
        with self._lock:
            self._require_ticket(tid)
            note = self._store_note(tid, {"text": text, **flags}, member=HUMAN_MEMBER)
            return copy.deepcopy(note)

    def set_status(self, ticket_id: int | str, status_id: int) -> None:
        """Out-of-band status change, as a person in CW would make it (board rules apply)."""
        with self._lock:
            ticket = self._require_ticket(int(ticket_id))
            status = self._boards[ticket.board_id].statuses.get(status_id)
            if status is None or status["inactive"]:
                raise ValueError(f"status {status_id} is not an active status of board {ticket.board_id}")
            self._apply_status(ticket, status_id, updated_by=str(HUMAN_MEMBER["identifier"]))

    def note_views(self, ticket_id: int | str) -> list[NoteView]:
        return [
            NoteView(
                id=str(n["id"]),
                text=n["text"],
                customer_visible=any(n.get(f) is True for f in _CUSTOMER_VISIBLE_FLAGS),
            )
            for n in self.notes(ticket_id)
        ]

    def status_id(self, ticket_id: int | str) -> int:
        with self._lock:
            return self._require_ticket(int(ticket_id)).status_id

    def add_person_note(self, ticket_id: int | str, text: str, *, customer_visible: bool) -> NoteView:
        flags = {"detailDescriptionFlag": True} if customer_visible else {"internalAnalysisFlag": True}
        note = self.add_note(ticket_id, text, **flags)
        return NoteView(id=str(note["id"]), text=note["text"], customer_visible=customer_visible)

    def preferences(self) -> dict[str, Any]:
        return {
            "cw_resolved_status_id": 5,
            "cw_escalated_status_id": 6,
            "cw_resolved_status_ids_by_board": {"2": 25},
            "cw_escalated_status_ids_by_board": {"2": 23},
        }

    def connection_settings(self) -> dict[str, Any]:
        """The body of `PUT /account-settings/psa-connection` that points an account at this simulator."""
        return {
            "provider": "connectwise",
            "site": self._host,
            "company_id": self.company_id,
            "public_key": self.public_key,
            "private_key": self.private_key,
            "client_id": self.client_id,
            "base_url": self.base_url,
        }

    def seed_demo(self) -> dict[str, Any]:
        """Two boards and tickets 1001..1006; returns what was made and what each ticket is for."""
        self.add_board(
            1,
            "Service Desk",
            [
                {"id": 1, "name": "New", "defaultFlag": True},
                {"id": 2, "name": "In Progress", "escalationStatus": "Responded"},
                {"id": 3, "name": "Waiting on Customer", "escalationStatus": "ResolutionPlan"},
                {"id": 5, "name": "Resolved", "closedStatus": True, "escalationStatus": "Resolved"},
                {"id": 6, "name": "Escalated - Tier 2", "escalationStatus": "Responded"},
                {"id": 7, "name": ">Closed", "closedStatus": True, "escalationStatus": "Resolved"},
                {"id": 8, "name": "Old - Do Not Use", "inactive": True},
            ],
        )
        self.add_board(
            2,
            "Escalations",
            [
                {"id": 21, "name": "New", "defaultFlag": True},
                {"id": 22, "name": "Triage", "escalationStatus": "Responded"},
                {"id": 23, "name": "Engineering", "escalationStatus": "Responded"},
                {"id": 24, "name": "Waiting on Vendor", "escalationStatus": "ResolutionPlan"},
                {"id": 25, "name": "Resolved", "closedStatus": True, "escalationStatus": "Resolved"},
                {"id": 26, "name": "Cancelled", "inactive": True},
            ],
        )
        tickets = {
            1001: (1, 2, "VPN drops every 10 minutes", "resolve: happy path"),
            1002: (1, 2, "Exchange mailbox migration stuck", "escalate: internal note + Escalated - Tier 2"),
            1003: (1, 1, "Printer offline on 3rd floor", "silent reject: PATCH 200, status unchanged"),
            1004: (1, 2, "Outlook prompts for password", "workflow revert: status flips back after 1 s"),
            1005: (2, 22, "Firewall firmware bug", "spare, on the Escalations board"),
            1006: (1, 3, "New starter laptop", "spare"),
        }
        for tid, (board_id, status_id, summary, _) in tickets.items():
            self.add_ticket(tid, board_id=board_id, status_id=status_id, summary=summary)
        self.set_faults(1003, ignore_status_change=True)
        self.set_faults(1004, revert_status_after=1.0)
        with self._lock:
            boards = {
                str(b.id): {
                    "name": b.name,
                    "statuses": {str(s["id"]): s["name"] for s in b.statuses.values()},
                }
                for b in self._boards.values()
            }
        return {
            "company_id": self.company_id,
            "public_key": self.public_key,
            "private_key": self.private_key,
            "client_id": self.client_id,
            "site_url": self.site_url,
            "base_url": self.base_url,
            "boards": boards,
            "tickets": {str(tid): purpose for tid, (_, _, _, purpose) in tickets.items()},
            "statuses": {"resolved": 5, "escalated": 6},
        }

    # ---------------------------------------------------------------------------------------------
    # Request handling

    def _route(self, req: SimRequest) -> SimReply:
        if m := _COMPANYINFO.match(req.path):
            if req.method != "GET":
                raise self._method_not_allowed(req)
            return self._companyinfo(m.group(1))
        if not req.path.lower().startswith(self.base_path.lower() + "/"):
            # Wrong codebase or site: IIS answers, not the CW API.
            return SimReply(404, _IIS_404, content_type="text/html")
        sub = req.path[len(self.base_path) :]
        self._check_auth(req)
        if scope := _TICKET_SCOPE.match(sub):
            self._ticket_faults(int(scope.group(1)))
        if req.method in {"POST", "PUT", "PATCH"}:
            ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json" and not ctype.endswith("+json"):
                raise SimError(
                    415,
                    {
                        "code": "UnsupportedMediaType",
                        "message": f"The request entity's media type '{ctype}' is not supported.",
                    },
                )
            if req.body_invalid:
                raise SimError(400, {"code": "InvalidObject", "message": "The request body is not valid JSON."})

        routes: list[tuple[re.Pattern[str], dict[str, Callable[[SimRequest, re.Match[str]], SimReply]]]] = [
            (_TICKET, {"GET": self._get_ticket, "PATCH": self._patch_ticket}),
            (_NOTES, {"GET": self._list_notes, "POST": self._post_note}),
            (_NOTE, {"GET": self._get_note, "PATCH": self._patch_note}),
            (_STATUSES, {"GET": self._list_statuses}),
            (_STATUS, {"GET": self._get_status}),
        ]
        for pattern, methods in routes:
            if m := pattern.match(sub):
                handler = methods.get(req.method)
                if handler is None:
                    raise self._method_not_allowed(req)
                return handler(req, m)
        raise SimError(404, {"code": "NotFound", "message": f"The resource '{sub}' was not found."})

    def _method_not_allowed(self, req: SimRequest) -> SimError:
        message = f"The requested resource does not support http method '{req.method}'."
        return SimError(405, {"code": "MethodNotAllowed", "message": message})

    def _companyinfo(self, company: str) -> SimReply:
        if company.lower() != self.company_id.lower():
            return SimReply(404, {"code": "NotFound", "message": f"Company '{company}' not found."})
        return SimReply(
            200,
            {
                "CompanyName": "FlowPilot Demo MSP",
                "Codebase": self.codebase,
                "VersionCode": "v2025.1",
                "VersionNumber": "v4.6.97000",
                "CompanyID": self.company_id,
                "IsCloud": False,
                "SiteUrl": f"{self._host}:{self._port}",
            },
        )

    def _check_auth(self, req: SimRequest) -> None:
        unauthorized = {"WWW-Authenticate": 'Basic realm="ConnectWise"'}
        with self._lock:
            revoked = self._credentials_revoked
        if revoked or not self._credentials_ok(req.headers.get("authorization", "")):
            body = {
                "code": "Unauthorized",
                "message": "Authentication failed: invalid or missing credentials.",
            }
            raise SimError(401, body, unauthorized)
        client_id = req.headers.get("clientid", "").strip()
        if not client_id:
            raise SimError(401, {"code": "Unauthorized", "message": "clientId header is required."}, unauthorized)
        if client_id.lower() != self.client_id.lower():
            raise SimError(401, {"code": "Unauthorized", "message": "clientId is not valid."}, unauthorized)

    def _credentials_ok(self, authorization: str) -> bool:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        company, _, public = user.partition("+")
        return company.lower() == self.company_id.lower() and public == self.public_key and password == self.private_key

    def _ticket_faults(self, tid: int) -> None:
        """Apply the ticket's fault knobs before the call is handled (raises the faulty answer)."""
        faults = self._apply_ticket_faults(tid)
        if isinstance(faults, CWTicketFaults) and faults.security_denied:
            message = "You do not have security permission to perform this action."
            raise SimError(403, {"code": "Security", "message": message})

    def _cw_faults(self, tid: int) -> CWTicketFaults:
        faults = self._ticket_faults_or_default(tid)
        assert isinstance(faults, CWTicketFaults)
        return faults

    # --- CW's error bodies (the shared fault knobs answer with these) ---

    def _unauthorized(self) -> SimError:
        return SimError(401, {"code": "Unauthorized", "message": "Authentication failed."})

    def _rate_limited(self, retry_after: int) -> SimError:
        body = {"code": "TooManyRequests", "message": "Request volume exceeds capacity limits."}
        return SimError(429, body, {"Retry-After": str(retry_after)})

    def _server_error(self) -> SimError:
        message = "An unexpected error has occurred. Please contact your administrator."
        return SimError(500, {"code": "UnexpectedError", "message": message})

    def _not_found(self, what: str) -> SimError:
        return SimError(404, {"code": "NotFound", "message": f"{what} not found."})

    def _response_headers(self) -> dict[str, str]:
        return {"x-cw-request-id": str(uuid.uuid4()), "x-server-name": "cw-simulator", "api-current-version": "2025.1"}

    def _require_ticket(self, tid: int) -> _Ticket:
        ticket = self._tickets.get(tid)
        if ticket is None:
            raise SimError(404, {"code": "NotFound", "message": f"Ticket ID {tid} not found.", "errors": None})
        return ticket

    # --- tickets ---

    def _get_ticket(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        with self._lock:
            data = self._ticket_json(self._require_ticket(int(m.group(1))))
        if wanted := req.query.get("fields"):
            keep = {f.strip() for f in wanted.split(",")}
            data = {k: v for k, v in data.items() if k in keep}
        return SimReply(200, data)

    def _patch_ticket(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid = int(m.group(1))
        if not isinstance(req.body, list) or not req.body:
            raise _invalid("ticket", "InvalidField", "The body must be a non-empty JSON-Patch array.", None)
        with self._lock:
            ticket = self._require_ticket(tid)
            board = self._boards[ticket.board_id]
            changes: dict[str, Any] = {}
            for op in req.body:
                name, value = self._patch_op(op)
                changes[name] = value
            if "status" in changes:
                sid = changes["status"]
                status = board.statuses.get(sid)
                if status is None:
                    message = f"Service Status {sid} not found for Service Board {board.id}"
                    raise _invalid("ticket", "NotFound", message, "status/id")
                if status["inactive"]:
                    message = f"Service Status {sid} is inactive for Service Board {board.id}"
                    raise _invalid("ticket", "InvalidField", message, "status/id")
            faults = self._cw_faults(tid)
            reply = SimReply(200)
            if not faults.ignore_status_change:
                previous = ticket.status_id
                if "summary" in changes:
                    ticket.summary = changes["summary"]
                if "customerUpdatedFlag" in changes:
                    ticket.customer_updated = changes["customerUpdatedFlag"]
                ticket.last_updated, ticket.updated_by = now_iso(), API_MEMBER["identifier"]
                if "status" in changes and changes["status"] != previous:
                    self._apply_status(ticket, changes["status"], updated_by=str(API_MEMBER["identifier"]))
                    applied = changes["status"]
                    reply.after = self._schedule_revert(
                        tid,
                        faults,
                        lambda: self._tickets[tid].status_id == applied,
                        lambda: self._apply_status(self._tickets[tid], previous, updated_by="Workflow"),
                    )
            reply.body = self._ticket_json(ticket)
        return reply

    def _patch_op(self, op: Any) -> tuple[str, Any]:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str) or "value" not in op:
            raise _invalid("ticket", "InvalidField", "Each operation needs op, path and value.", None)
        path = op["path"].strip().lstrip("/").lower()
        if str(op.get("op", "")).lower() != "replace":
            raise _invalid("ticket", "InvalidField", f"The operation '{op.get('op')}' is not supported.", path)
        value = op["value"]
        if path == "status":
            value = value.get("id") if isinstance(value, dict) else None
            return "status", self._status_id(value, path)
        if path == "status/id":
            return "status", self._status_id(value, path)
        if path == "summary":
            if not isinstance(value, str) or not value.strip():
                raise _invalid("ticket", "MissingRequiredField", "summary is required.", "summary")
            if len(value) > SUMMARY_MAX_LENGTH:
                message = f"summary cannot be longer than {SUMMARY_MAX_LENGTH} characters."
                raise _invalid("ticket", "MaxLengthField", message, "summary")
            return "summary", value
        if path == "processnotifications":
            if not isinstance(value, bool):
                raise _invalid("ticket", "InvalidField", "processNotifications must be a boolean.", path)
            return "processNotifications", value
        if path == "customerupdatedflag":
            if not isinstance(value, bool):
                raise _invalid("ticket", "InvalidField", "customerUpdatedFlag must be a boolean.", path)
            return "customerUpdatedFlag", value
        raise _invalid("ticket", "InvalidField", "the path source is not valid", op["path"])

    def _status_id(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise _invalid("ticket", "InvalidField", "status id must be an integer.", "status/id")
        return int(value)

    def _apply_status(self, ticket: _Ticket, status_id: int, *, updated_by: str) -> None:
        status = self._boards[ticket.board_id].statuses[status_id]
        ticket.status_id = status_id
        ticket.last_updated, ticket.updated_by = now_iso(), updated_by
        if status["closedStatus"] and not ticket.closed:
            ticket.closed, ticket.closed_date, ticket.closed_by = True, ticket.last_updated, updated_by
        elif not status["closedStatus"]:
            ticket.closed, ticket.closed_date, ticket.closed_by = False, None, None

    def _ticket_json(self, ticket: _Ticket) -> dict[str, Any]:
        board = self._boards[ticket.board_id]
        status = board.statuses[ticket.status_id]
        base = self.base_url
        return {
            "id": ticket.id,
            "summary": ticket.summary,
            "recordType": ticket.record_type,
            "board": {
                "id": board.id,
                "name": board.name,
                "_info": {"board_href": f"{base}/service/boards/{board.id}"},
            },
            "status": {
                "id": status["id"],
                "name": status["name"],
                "_info": {"status_href": f"{base}/service/boards/{board.id}/statuses/{status['id']}"},
            },
            "closedFlag": ticket.closed,
            "closedDate": ticket.closed_date,
            "closedBy": ticket.closed_by,
            "customerUpdatedFlag": ticket.customer_updated,
            "processNotifications": None,
            "automaticEmailContactFlag": False,
            "automaticEmailResourceFlag": False,
            "automaticEmailCcFlag": False,
            "_info": {
                "lastUpdated": ticket.last_updated,
                "dateEntered": ticket.date_entered,
                "updatedBy": ticket.updated_by,
                "notes_href": f"{base}/service/tickets/{ticket.id}/notes",
            },
        }

    # --- notes ---

    def _list_notes(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid = int(m.group(1))
        with self._lock:
            self._require_ticket(tid)
            notes = copy.deepcopy(self._notes[tid])
        return self._page(req, notes)

    def _get_note(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid, note_id = int(m.group(1)), int(m.group(2))
        with self._lock:
            self._require_ticket(tid)
            for note in self._notes[tid]:
                if note["id"] == note_id:
                    return SimReply(200, copy.deepcopy(note))
        raise SimError(404, {"code": "NotFound", "message": f"Ticket Note ID {note_id} not found."})

    def _patch_note(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        """JSON-Patch of a note's text and flags (ServiceNote fields)."""
        tid, note_id = int(m.group(1)), int(m.group(2))
        if not isinstance(req.body, list) or not req.body:
            raise _invalid("serviceNote", "InvalidField", "The body must be a non-empty JSON-Patch array.", None)
        changes: dict[str, Any] = {}
        for op in req.body:
            if not isinstance(op, dict) or not isinstance(op.get("path"), str) or "value" not in op:
                raise _invalid("serviceNote", "InvalidField", "Each operation needs op, path and value.", None)
            if str(op.get("op", "")).lower() != "replace":
                raise _invalid("serviceNote", "InvalidField", f"The operation '{op.get('op')}' is not supported.", None)
            path, value = op["path"].strip().lstrip("/"), op["value"]
            name = next((n for n in (*_NOTE_FLAGS, "text", "processNotifications") if n.lower() == path.lower()), None)
            if name is None:
                raise _invalid("serviceNote", "InvalidField", "the path source is not valid", op["path"])
            if name == "text" and (not isinstance(value, str) or not value.strip()):
                raise _invalid("serviceNote", "MissingRequiredField", "text is required.", "text")
            if name != "text" and not isinstance(value, bool):
                raise _invalid("serviceNote", "InvalidField", f"{name} must be a boolean.", name)
            changes[name] = value
        with self._lock:
            self._require_ticket(tid)
            note = next((n for n in self._notes[tid] if n["id"] == note_id), None)
            if note is None:
                raise SimError(404, {"code": "NotFound", "message": f"Ticket Note ID {note_id} not found."})
            faults = self._cw_faults(tid)
            if not faults.ignore_note_update:
                if faults.overrides_sticky():
                    changes.update(faults.flag_overrides())
                note.update(changes)
                note["_info"] = {"lastUpdated": now_iso(), "updatedBy": str(API_MEMBER["identifier"])}
            return SimReply(200, copy.deepcopy(note))

    def _post_note(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid = int(m.group(1))
        body = req.body
        if not isinstance(body, dict):
            raise _invalid("serviceNote", "InvalidField", "The body must be a JSON object.", None)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _invalid("serviceNote", "MissingRequiredField", "text is required.", "text")
        for name in (*_NOTE_FLAGS, "customerUpdatedFlag", "processNotifications"):
            if body.get(name) is not None and not isinstance(body[name], bool):
                raise _invalid("serviceNote", "InvalidField", f"{name} must be a boolean.", name)
        with self._lock:
            ticket = self._require_ticket(tid)
            faults = self._cw_faults(tid)
            note = self._store_note(tid, {**body, **faults.flag_overrides()}, member=API_MEMBER)
            if note["customerUpdatedFlag"]:
                ticket.customer_updated = True
                ticket.last_updated = now_iso()
            if faults.drop_after_commit_next > 0:
                faults.drop_after_commit_next -= 1
                return SimReply(0, drop=True)
            created = copy.deepcopy(note)
        # A CW quirk: the create response says internal AND external; GET says null for both.
        created["internalFlag"] = True
        created["externalFlag"] = True
        return SimReply(201, created)

    def _store_note(self, tid: int, body: dict[str, Any], *, member: dict[str, Any]) -> dict[str, Any]:
        now, created_by = now_iso(), str(member["identifier"])
        note = {
            "id": self._next_note_id,
            "ticketId": tid,
            "text": body["text"],
            **{name: bool(body.get(name, False)) for name in _NOTE_FLAGS},
            "member": dict(member),
            "contact": None,
            "customerUpdatedFlag": bool(body.get("customerUpdatedFlag", False)),
            "processNotifications": body.get("processNotifications"),
            "dateCreated": now,
            "createdBy": created_by,
            "internalFlag": None,
            "externalFlag": None,
            "_info": {"lastUpdated": now, "updatedBy": created_by},
        }
        self._next_note_id += 1
        self._notes[tid].append(note)
        return note

    # --- boards ---

    def _list_statuses(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        board_id = int(m.group(1))
        with self._lock:
            board = self._boards.get(board_id)
            if board is None:
                raise SimError(404, {"code": "NotFound", "message": f"Board ID {board_id} not found."})
            statuses = copy.deepcopy(list(board.statuses.values()))
        return self._page(req, statuses)

    def _get_status(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        board_id, status_id = int(m.group(1)), int(m.group(2))
        with self._lock:
            board = self._boards.get(board_id)
            status = board.statuses.get(status_id) if board else None
            if status is None:
                message = f"Service Status {status_id} not found for Service Board {board_id}"
                raise SimError(404, {"code": "NotFound", "message": message})
            return SimReply(200, copy.deepcopy(status))

    # --- lists ---

    def _page(self, req: SimRequest, items: list[dict[str, Any]]) -> SimReply:
        """CW list semantics: `conditions`, `orderBy`, `page`/`pageSize` and a `Link` header."""
        if conditions := req.query.get("conditions"):
            items = [i for i in items if _matches(i, conditions)]
        items = _ordered(items, req.query.get("orderBy", "id asc"))
        size = min(MAX_PAGE_SIZE, max(1, _int_param(req.query, "pageSize", DEFAULT_PAGE_SIZE)))
        page = max(1, _int_param(req.query, "page", 1))
        last = max(1, -(-len(items) // size))
        chunk = items[(page - 1) * size : page * size]
        links = []
        if page < last:
            links.append(f'<{self._page_url(req, page + 1)}>; rel="next"')
        if page > 1:
            links.append(f'<{self._page_url(req, page - 1)}>; rel="prev"')
            links.append(f'<{self._page_url(req, 1)}>; rel="first"')
        if last > 1:
            links.append(f'<{self._page_url(req, last)}>; rel="last"')
        return SimReply(200, chunk, headers={"Link": ", ".join(links)} if links else {})

    def _page_url(self, req: SimRequest, page: int) -> str:
        query = {**req.query, "page": str(page)}
        return f"{self.site_url}{req.path}?{urlencode(query)}"


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    value = query.get(name, "")
    if not value:
        return default
    if not value.strip().isdigit():
        raise SimError(400, {"code": "InvalidObject", "message": f"{name} must be an integer."})
    return int(value)


def _field(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
    return value


def _matches(item: dict[str, Any], conditions: str) -> bool:
    """The subset of CW conditions the simulator understands: `a = v [and b != v ...]`."""
    for clause in re.split(r"\s+and\s+", conditions, flags=re.I):
        m = _CONDITION.match(clause)
        if m is None:
            raise SimError(400, {"code": "InvalidObject", "message": f"Unsupported condition: {clause}"})
        name, op, raw = m.groups()
        expected: Any
        if raw.lower() in {"true", "false"}:
            expected = raw.lower() == "true"
        elif raw.lstrip("-").isdigit():
            expected = int(raw)
        elif len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            expected = raw[1:-1]
        else:
            raise SimError(400, {"code": "InvalidObject", "message": f"Unsupported condition value: {raw}"})
        if (_field(item, name) == expected) != (op == "="):
            return False
    return True


def _ordered(items: list[dict[str, Any]], order_by: str) -> list[dict[str, Any]]:
    # Stable sorts applied last key first give a multi-key `orderBy=a desc, b asc`.
    for part in reversed([p.strip() for p in order_by.split(",") if p.strip()]):
        name, _, direction = part.partition(" ")

        def key(item: dict[str, Any], name: str = name) -> tuple[bool, Any]:
            value = _field(item, name)
            return (value is None, 0 if value is None else value)

        items = sorted(items, key=key, reverse=direction.strip().lower() == "desc")
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ConnectWise Manage simulator with the demo seed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    sim = CWSimulator(host=args.host, port=args.port, verbose=args.verbose)
    sim.start()
    seed = sim.seed_demo()
    banner = [
        f"ConnectWise simulator: {sim.base_url}",
        f"  site (companyinfo): {sim.site_url}/login/companyinfo/{sim.company_id}",
        f"  company id:  {sim.company_id}",
        f"  public key:  {sim.public_key}   (fake demo credentials)",
        f"  private key: {sim.private_key}",
        f"  clientId:    {sim.client_id}",
        *(f"  ticket {tid}: {purpose}" for tid, purpose in seed["tickets"].items()),
    ]
    serve_forever(sim, banner)


if __name__ == "__main__":
    main()
