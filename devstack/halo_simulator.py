"""A HaloPSA simulator: a real HTTP server on loopback that speaks Halo's REST wire format.

Owns fake Halo state (statuses per ticket type, outcomes with their default visibility and email, tickets,
actions), Halo's client-credentials token endpoint and Bearer checks, its array bodies and error shapes,
and per-ticket fault knobs that reproduce how Halo write-backs fail in production: a status on the action
silently ignored, an outcome whose defaults show the note to the end user and email them, an outcome the
API agent may not use, expired tokens, the rolling rate limit, 500s, connections dropped after the action
was stored. Dev and test tool only; never shipped in the layer.

    with HaloSimulator() as sim:
        sim.seed_demo()
        ...  # point a HaloProvider at sim.base_url with sim.client_id / sim.client_secret

Wire facts marked [U] in ../shared/PSA-NOTES.md are modelled as follows (guesses, kept in one place):
- action ids are numbered per ticket (1, 2, ...), so reading or updating one needs its `ticket_id`;
- a 404 for a missing ticket or action is a JSON exception body; a route Halo does not have is an HTML 404;
- an outcome the API agent may not use is a 400 "You do not have access to this Action at the moment";
- `status_id`, `new_status_id` and `new_status` on an action are ignored (the status moves on the ticket);
- the 429 is plain text with a Retry-After (none when the knob `retry_after` is 0);
- a hidden status is left out of `GET /api/Status` unless `showall=true` (TStatus has no inactive flag).

Run standalone with the demo seed: `python -m devstack.halo_simulator --port 8091`.
"""

from __future__ import annotations

import argparse
import copy
import html
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

__all__ = ["HaloSimulator", "HaloTicketFaults", "RecordedRequest", "TicketFaults"]

DEMO_CLIENT_ID = "3f9d2c4e-halo-4a1b-8c7d-flowpilotdemo"
DEMO_CLIENT_SECRET = "demo-halo-client-secret"

# Who writes: the API application's agent (our provider) or a person in Halo's UI (state helpers).
API_AGENT: dict[str, Any] = {"id": 31, "name": "FlowPilot API"}
HUMAN_AGENT: dict[str, Any] = {"id": 4, "name": "Jane Doe"}

RATE_LIMIT_TEXT = "Rate Limit Reached - 300 Requests per rolling 5 minute window"
OUTCOME_REQUIRED = "An Outcome must be entered for this Action"
NO_ACCESS = "You do not have access to this Action at the moment"

NEW_STATUS_ID = 1
CLOSED_STATUS_ID = 9
ESCALATED_STATUS_ID = 21
HIDDEN_STATUS_ID = 25
PRIVATE_NOTE_OUTCOME_ID = 7
PUBLIC_NOTE_OUTCOME_ID = 8
RESOLUTION_OUTCOME_ID = 12
RESTRICTED_OUTCOME_ID = 30

_TICKET = re.compile(r"^/api/tickets/(\d+)/?$", re.I)
_TICKETS = re.compile(r"^/api/tickets/?$", re.I)
_ACTIONS = re.compile(r"^/api/actions/?$", re.I)
_ACTION = re.compile(r"^/api/actions/(\d+)/?$", re.I)
_STATUSES = re.compile(r"^/api/status/?$", re.I)
_OUTCOMES = re.compile(r"^/api/outcome/?$", re.I)
_TOKEN = re.compile(r"^/auth/token/?$", re.I)

_IIS_404 = "<html><head><title>404 - File or directory not found.</title></head><body></body></html>"
_FORM = "application/x-www-form-urlencoded"


@dataclass
class HaloTicketFaults(TicketFaults):
    """The common knobs (`psa_sim.TicketFaults`) and Halo's own."""

    # The next K API calls on this ticket answer 401 as for an expired token (and that token stops working).
    expire_token_next: int = 0


@dataclass
class _Status:
    id: int
    name: str
    sequence: int
    hidden: bool = False


@dataclass
class _TicketType:
    id: int
    name: str
    status_ids: list[int]


@dataclass
class _Outcome:
    id: int
    name: str
    hidefromuser: bool
    sendemail: bool
    agent_may_use: bool = True


@dataclass
class _Ticket:
    id: int
    summary: str
    tickettype_id: int
    status_id: int
    hasbeenclosed: bool = False
    dateclosed: str | None = None
    dateoccurred: str = ""
    lastactiondate: str = ""


def _exception(status: int, message: str, class_name: str = "System.Exception") -> SimError:
    """Halo's .NET exception body."""
    return SimError(status, {"ClassName": class_name, "Message": message})


def _oauth_error(status: int, error: str, description: str | None = None) -> SimError:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return SimError(status, body)


def _int(value: Any) -> int | None:
    """An id as Halo's model binding reads it: an integer or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def note_text(note_html: str) -> str:
    """The plain `note` Halo keeps beside `note_html`: line breaks and paragraphs as newlines, no tags."""
    text = re.sub(r">[ \t]*\r?\n\s*<", "><", note_html)
    text = re.sub(r"</p\s*>\s*<p(?:\s[^>]*)?>", "\n\n", text, flags=re.I)
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.I)
    text = re.sub(r"</(?:div|li|h[1-6]|tr|blockquote|pre)\s*>\s*(?=<)", "\n", text, flags=re.I)
    return html.unescape(re.sub(r"<[^>]*>", "", text))


def text_html(text: str) -> str:
    """What Halo's editor makes of plain text: escaped lines, <br> between them, one paragraph."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>"


class HaloSimulator(PSASimulator):
    """A HaloPSA instance on 127.0.0.1. Thread-safe; every state helper takes the lock."""

    provider = "halopsa"
    faults_type = HaloTicketFaults
    server_name = "halo-simulator"

    def __init__(
        self,
        *,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        tenant: str | None = None,
        token_ttl: int = 3600,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        on_token_issued: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, verbose=verbose)
        # Told each token as it is issued (the tests' leak check watches them like any other secret).
        self._on_token_issued = on_token_issued
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenant = tenant
        # `expires_in` of the tokens issued from now on; tokens stop working that many seconds (of `clock`) later.
        self.token_ttl = token_ttl
        self._clock = clock
        self._statuses: dict[int, _Status] = {}
        self._types: dict[int, _TicketType] = {}
        self._outcomes: dict[int, _Outcome] = {}
        self._tickets: dict[int, _Ticket] = {}
        self._tokens: dict[str, float] = {}
        self._issued: list[str] = []
        self._emails: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        """The instance root a HaloConnection takes (`/api/...` and `/auth/token` are under it)."""
        return self.site_url

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return len(self._issued)

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token handed out, oldest first (so tests can check none leaks)."""
        with self._lock:
            return list(self._issued)

    @property
    def emails_sent(self) -> list[dict[str, Any]]:
        """One entry per action Halo would have emailed to the end user: {ticket_id, action_id}."""
        with self._lock:
            return copy.deepcopy(self._emails)

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 401 (expired, or minted before a permission change)."""
        with self._lock:
            self._tokens.clear()

    # ---------------------------------------------------------------------------------------------
    # State helpers (what an admin or an agent does in Halo's UI, or what a test arranges)

    def add_status(self, status_id: int, name: str, *, hidden: bool = False) -> None:
        with self._lock:
            self._statuses[status_id] = _Status(status_id, name, sequence=len(self._statuses) + 1, hidden=hidden)

    def add_ticket_type(self, tickettype_id: int, name: str, status_ids: list[int]) -> None:
        with self._lock:
            unknown = [s for s in status_ids if s not in self._statuses]
            if unknown:
                raise ValueError(f"unknown statuses {unknown}")
            self._types[tickettype_id] = _TicketType(tickettype_id, name, list(status_ids))

    def add_outcome(
        self, outcome_id: int, name: str, *, hidefromuser: bool, sendemail: bool, agent_may_use: bool = True
    ) -> None:
        """An action outcome with its defaults for actions that omit `hiddenfromuser` / `sendemail`."""
        with self._lock:
            self._outcomes[outcome_id] = _Outcome(outcome_id, name, hidefromuser, sendemail, agent_may_use)

    def add_ticket(self, ticket_id: int | str, *, tickettype_id: int, status_id: int, summary: str) -> None:
        tid = int(ticket_id)
        with self._lock:
            ticket_type = self._types.get(tickettype_id)
            if ticket_type is None:
                raise ValueError(f"no ticket type {tickettype_id}")
            if status_id not in ticket_type.status_ids:
                raise ValueError(f"status {status_id} is not a status of ticket type {tickettype_id}")
            now = now_iso()
            ticket = _Ticket(tid, summary, tickettype_id, NEW_STATUS_ID, dateoccurred=now, lastactiondate=now)
            self._tickets[tid] = ticket
            self._apply_status(ticket, status_id)
            self._notes.setdefault(tid, [])

    def add_action(
        self, ticket_id: int | str, text: str, *, hiddenfromuser: bool, outcome_id: int = PRIVATE_NOTE_OUTCOME_ID
    ) -> dict[str, Any]:
        """An action typed by a person in Halo's UI; returns it as GET would."""
        tid = int(ticket_id)
        with self._lock:
            self._require_ticket(tid)
            outcome = self._outcomes[outcome_id]
            fields = {"note_html": text_html(text), "hiddenfromuser": hiddenfromuser, "sendemail": False}
            return copy.deepcopy(self._store_action(tid, outcome, fields, agent=HUMAN_AGENT))

    def note_views(self, ticket_id: int | str) -> list[NoteView]:
        return [
            NoteView(id=str(a["id"]), text=a["note"], customer_visible=a["hiddenfromuser"] is not True)
            for a in self.notes(ticket_id)
        ]

    def status_id(self, ticket_id: int | str) -> int:
        with self._lock:
            return self._require_ticket(int(ticket_id)).status_id

    def set_status(self, ticket_id: int | str, status_id: int) -> None:
        """Out-of-band status change, as an agent in Halo would make it (the ticket type's visible statuses)."""
        with self._lock:
            ticket = self._require_ticket(int(ticket_id))
            status = self._statuses.get(status_id)
            if status is None or status.hidden or status_id not in self._types[ticket.tickettype_id].status_ids:
                raise ValueError(f"status {status_id} is not a status of ticket type {ticket.tickettype_id}")
            self._apply_status(ticket, status_id)

    def add_person_note(self, ticket_id: int | str, text: str, *, customer_visible: bool) -> NoteView:
        outcome = PUBLIC_NOTE_OUTCOME_ID if customer_visible else PRIVATE_NOTE_OUTCOME_ID
        action = self.add_action(ticket_id, text, hiddenfromuser=not customer_visible, outcome_id=outcome)
        return NoteView(id=str(action["id"]), text=action["note"], customer_visible=customer_visible)

    def connection_settings(self) -> dict[str, Any]:
        """The body of `PUT /account-settings/psa-connection` that points an account at this simulator."""
        settings: dict[str, Any] = {
            "provider": "halopsa",
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if self.tenant:
            settings["tenant"] = self.tenant
        return settings

    def preferences(self) -> dict[str, Any]:
        return {
            "halo_resolved_status_id": CLOSED_STATUS_ID,
            "halo_escalated_status_id": ESCALATED_STATUS_ID,
            "halo_resolution_outcome_id": RESOLUTION_OUTCOME_ID,
            "halo_escalation_outcome_id": PRIVATE_NOTE_OUTCOME_ID,
        }

    def seed_demo(self) -> dict[str, Any]:
        """Statuses, two ticket types, outcomes and tickets 1001..1006; returns what was made and what each
        ticket is for."""
        for sid, name in (
            (1, "New"),
            (2, "In Progress"),
            (3, "Waiting on User"),
            (CLOSED_STATUS_ID, "Closed"),
            (ESCALATED_STATUS_ID, "Escalated - Tier 2"),
            (22, "Awaiting Approval"),
        ):
            self.add_status(sid, name)
        self.add_status(HIDDEN_STATUS_ID, "Old - Do Not Use", hidden=True)
        self.add_ticket_type(1, "Incident", [1, 2, 3, ESCALATED_STATUS_ID, CLOSED_STATUS_ID, HIDDEN_STATUS_ID])
        self.add_ticket_type(2, "Service Request", [1, 2, 3, 22, CLOSED_STATUS_ID])
        self.add_outcome(PRIVATE_NOTE_OUTCOME_ID, "Private Note", hidefromuser=True, sendemail=False)
        self.add_outcome(PUBLIC_NOTE_OUTCOME_ID, "Public Note", hidefromuser=False, sendemail=False)
        # Halo's resolution-style outcome shows the note on the portal and emails the end user by default.
        self.add_outcome(RESOLUTION_OUTCOME_ID, "Resolution", hidefromuser=False, sendemail=True)
        self.add_outcome(
            RESTRICTED_OUTCOME_ID, "Supplier Update", hidefromuser=True, sendemail=False, agent_may_use=False
        )
        tickets = {
            1001: (1, 2, "VPN drops every 10 minutes", "resolve: happy path"),
            1002: (1, 2, "Exchange mailbox migration stuck", "escalate: private note + Escalated - Tier 2"),
            1003: (1, 1, "Printer offline on 3rd floor", "silent reject: POST /api/Tickets 200, status unchanged"),
            1004: (1, 2, "Outlook prompts for password", "workflow revert: status flips back after 1 s"),
            1005: (2, 22, "Firewall firmware bug", "spare, a Service Request (no Escalated status)"),
            1006: (1, 3, "New starter laptop", "spare"),
        }
        for tid, (type_id, status_id, summary, _) in tickets.items():
            self.add_ticket(tid, tickettype_id=type_id, status_id=status_id, summary=summary)
        self.set_faults(1003, ignore_status_change=True)
        self.set_faults(1004, revert_status_after=1.0)
        with self._lock:
            ticket_types = {
                str(t.id): {"name": t.name, "statuses": {str(s): self._statuses[s].name for s in t.status_ids}}
                for t in self._types.values()
            }
            outcomes = {str(o.id): o.name for o in self._outcomes.values()}
        return {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "tenant": self.tenant,
            "ticket_types": ticket_types,
            "outcomes": outcomes,
            "tickets": {str(tid): purpose for tid, (_, _, _, purpose) in tickets.items()},
            "statuses": {"resolved": CLOSED_STATUS_ID, "escalated": ESCALATED_STATUS_ID, "hidden": HIDDEN_STATUS_ID},
        }

    # ---------------------------------------------------------------------------------------------
    # Request handling

    def _route(self, req: SimRequest) -> SimReply:
        if _TOKEN.match(req.path):
            if req.method != "POST":
                raise self._method_not_allowed(req)
            return self._issue_token(req)
        if not req.path.lower().startswith("/api/"):
            return SimReply(404, _IIS_404, content_type="text/html")
        self._check_bearer(req)
        if req.method == "POST":
            if req.content_type != "application/json" and not req.content_type.endswith("+json"):
                body = {"title": "Unsupported Media Type", "status": 415}
                raise SimError(415, body, content_type="application/problem+json; charset=utf-8")
            if req.body_invalid:
                raise _exception(400, "The request body is not valid JSON.")

        routes: list[tuple[re.Pattern[str], dict[str, Callable[[SimRequest, re.Match[str]], SimReply]]]] = [
            (_TICKET, {"GET": self._get_ticket}),
            (_TICKETS, {"POST": self._post_tickets}),
            (_ACTIONS, {"GET": self._list_actions, "POST": self._post_actions}),
            (_ACTION, {"GET": self._get_action}),
            (_STATUSES, {"GET": self._list_statuses}),
            (_OUTCOMES, {"GET": self._list_outcomes}),
        ]
        for pattern, methods in routes:
            if m := pattern.match(req.path):
                handler = methods.get(req.method)
                if handler is None:
                    raise self._method_not_allowed(req)
                return handler(req, m)
        return SimReply(404, _IIS_404, content_type="text/html")

    def _method_not_allowed(self, req: SimRequest) -> SimError:
        return _exception(405, f"The requested resource does not support http method '{req.method}'.")

    # --- auth ---

    def _issue_token(self, req: SimRequest) -> SimReply:
        if req.content_type != _FORM or not isinstance(req.body, dict):
            # The token endpoint reads a form; a JSON body has no grant_type it can see.
            raise _oauth_error(400, "unsupported_grant_type")
        if self.tenant is not None and req.query.get("tenant") != self.tenant:
            if not req.query.get("tenant"):
                raise _oauth_error(400, "invalid_request", "The tenant parameter is required.")
            raise _oauth_error(401, "invalid_client")
        form: dict[str, str] = req.body
        if form.get("grant_type") != "client_credentials":
            raise _oauth_error(400, "unsupported_grant_type")
        with self._lock:
            revoked = self._credentials_revoked
        if revoked or form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            raise _oauth_error(401, "invalid_client")
        if form.get("scope") not in (None, "all"):
            raise _oauth_error(400, "invalid_scope")
        token = secrets.token_urlsafe(32)
        if self._on_token_issued is not None:
            self._on_token_issued(token)
        with self._lock:
            self._tokens[token] = self._clock() + self.token_ttl
            self._issued.append(token)
            ttl = self.token_ttl
        return SimReply(200, {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": "all"})

    def _check_bearer(self, req: SimRequest) -> None:
        scheme, _, token = req.headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        with self._lock:
            if self._credentials_revoked:
                self._tokens.clear()
            expires_at = self._tokens.get(token) if scheme.lower() == "bearer" else None
            if expires_at is not None and self._clock() >= expires_at:
                del self._tokens[token]
                expires_at = None
        if expires_at is None:
            raise self._unauthorized()

    def _ticket_faults(self, req: SimRequest, tid: int | None) -> HaloTicketFaults:
        """Apply the ticket's knobs before the call is handled (raises the faulty answer)."""
        if tid is None:
            return HaloTicketFaults()
        with self._lock:
            faults = self._faults.get(tid)
            if isinstance(faults, HaloTicketFaults) and faults.expire_token_next > 0:
                faults.expire_token_next -= 1
                token = req.headers.get("authorization", "").partition(" ")[2].strip()
                self._tokens.pop(token, None)
                raise self._unauthorized()
        self._apply_ticket_faults(tid)
        return self._halo_faults(tid)

    def _halo_faults(self, tid: int) -> HaloTicketFaults:
        faults = self._ticket_faults_or_default(tid)
        assert isinstance(faults, HaloTicketFaults)
        return faults

    # --- Halo's error bodies (the shared fault knobs answer with these) ---

    def _unauthorized(self) -> SimError:
        # ASP.NET's bearer middleware: an empty 401 that says why in WWW-Authenticate.
        header = 'Bearer error="invalid_token", error_description="The token is expired or not valid"'
        return SimError(401, None, {"WWW-Authenticate": header})

    def _rate_limited(self, retry_after: int) -> SimError:
        headers = {"Retry-After": str(retry_after)} if retry_after > 0 else {}
        return SimError(429, RATE_LIMIT_TEXT, headers, content_type="text/plain; charset=utf-8")

    def _server_error(self) -> SimError:
        return _exception(500, "Object reference not set to an instance of an object.", "System.NullReferenceException")

    def _not_found(self, what: str) -> SimError:
        return _exception(404, f"{what} not found")

    def _require_ticket(self, tid: int) -> _Ticket:
        ticket = self._tickets.get(tid)
        if ticket is None:
            raise self._not_found(f"Ticket {tid}")
        return ticket

    # --- tickets ---

    def _get_ticket(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid = int(m.group(1))
        self._ticket_faults(req, tid)
        with self._lock:
            return SimReply(200, self._ticket_json(self._require_ticket(tid)))

    def _post_tickets(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        """Ticket upsert; the simulator only updates (each item needs the id of an existing ticket)."""
        items = self._array_body(req, "Tickets")
        tids: list[int] = []
        for item in items:
            tid = _int(item.get("id"))
            if tid is None or tid <= 0:
                raise _exception(400, "A Summary must be entered for this Ticket")
            tids.append(tid)
        for tid in dict.fromkeys(tids):
            self._ticket_faults(req, tid)
        with self._lock:
            changes: list[tuple[_Ticket, dict[str, Any]]] = []
            for tid, item in zip(tids, items, strict=True):
                ticket = self._require_ticket(tid)
                change: dict[str, Any] = {}
                if "status_id" in item:
                    sid = _int(item["status_id"])
                    ticket_type = self._types[ticket.tickettype_id]
                    if sid is None or sid not in ticket_type.status_ids:
                        message = f"Status {item['status_id']} is not valid for Ticket Type '{ticket_type.name}'"
                        raise _exception(400, message)
                    change["status_id"] = sid
                if isinstance(item.get("summary"), str) and item["summary"].strip():
                    change["summary"] = item["summary"]
                changes.append((ticket, change))  # anything else is ignored, as Halo drops unknown keys
            afters: list[Callable[[], None]] = []
            for ticket, change in changes:
                faults = self._halo_faults(ticket.id)
                if faults.ignore_status_change:
                    continue
                if "summary" in change:
                    ticket.summary = change["summary"]
                sid = change.get("status_id")
                if sid is not None and sid != ticket.status_id:
                    previous, tid = ticket.status_id, ticket.id
                    self._apply_status(ticket, sid)
                    after = self._schedule_revert(
                        tid, faults, self._still_in(ticket, sid), self._put_back(ticket, previous)
                    )
                    if after is not None:
                        afters.append(after)
            answers = [self._ticket_json(ticket) for ticket, _ in changes]

        def run_afters() -> None:
            for after in afters:
                after()

        return SimReply(200, answers[0] if len(answers) == 1 else answers, after=run_afters if afters else None)

    def _still_in(self, ticket: _Ticket, status_id: int) -> Callable[[], bool]:
        return lambda: ticket.status_id == status_id

    def _put_back(self, ticket: _Ticket, status_id: int) -> Callable[[], None]:
        """The workflow that undoes a status change."""
        return lambda: self._apply_status(ticket, status_id)

    def _apply_status(self, ticket: _Ticket, status_id: int) -> None:
        ticket.status_id = status_id
        ticket.lastactiondate = now_iso()
        if status_id == CLOSED_STATUS_ID:
            ticket.hasbeenclosed, ticket.dateclosed = True, ticket.dateclosed or ticket.lastactiondate
        else:
            ticket.hasbeenclosed, ticket.dateclosed = False, None

    def _ticket_json(self, ticket: _Ticket) -> dict[str, Any]:
        ticket_type = self._types[ticket.tickettype_id]
        return {
            "id": ticket.id,
            "summary": ticket.summary,
            "details": f"<p>{html.escape(ticket.summary)}</p>",
            "tickettype_id": ticket.tickettype_id,
            "tickettype_name": ticket_type.name,
            "status_id": ticket.status_id,
            "status_name": self._statuses[ticket.status_id].name,
            "client_id": 12,
            "client_name": "Contoso Ltd",
            "site_id": 20,
            "user_id": 399,
            "user_name": "Sam Customer",
            "agent_id": HUMAN_AGENT["id"],
            "team": "1st Line Support",
            "priority_id": 3,
            "hasbeenclosed": ticket.hasbeenclosed,
            "dateoccurred": ticket.dateoccurred,
            "dateclosed": ticket.dateclosed,
            "lastactiondate": ticket.lastactiondate,
        }

    # --- configuration ---

    def _list_statuses(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        show_all = req.query.get("showall", "").lower() == "true"
        with self._lock:
            if "tickettype_id" in req.query:
                type_id = _int(req.query["tickettype_id"])
                ticket_type = self._types.get(type_id) if type_id is not None else None
                ids = ticket_type.status_ids if ticket_type is not None else []
            else:
                ids = list(self._statuses)
            statuses = [self._statuses[s] for s in ids if show_all or not self._statuses[s].hidden]
            body = [
                {
                    "id": s.id,
                    "name": s.name,
                    "shortname": s.name[:10],
                    "type": 1 if s.id == CLOSED_STATUS_ID else 0,
                    "sequence": s.sequence,
                    "colour": "#2f80ed",
                }
                for s in sorted(statuses, key=lambda s: s.sequence)
            ]
        return SimReply(200, body)

    def _list_outcomes(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        with self._lock:
            body = [
                {
                    "id": o.id,
                    "outcome": o.name,
                    "buttonname": o.name,
                    "hidefromuser": o.hidefromuser,
                    "sendemail": 1 if o.sendemail else 0,
                    "hidden": False,
                    "newstatus": None,
                }
                for o in self._outcomes.values()
            ]
        return SimReply(200, body)

    # --- actions ---

    def _list_actions(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid = _int(req.query.get("ticket_id"))
        if tid is None:
            raise _exception(400, "ticket_id is required")
        self._ticket_faults(req, tid)
        count = _int(req.query.get("count")) or 0
        with_html = req.query.get("includehtmlnote", "").lower() == "true"
        with self._lock:
            self._require_ticket(tid)
            actions = copy.deepcopy(list(reversed(self._notes[tid])))  # newest first
        total = len(actions)
        if count > 0:
            actions = actions[:count]
        if not with_html:
            for action in actions:
                action.pop("note_html", None)
        return SimReply(200, {"record_count": total, "actions": actions})

    def _get_action(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        action_id = int(m.group(1))
        tid = _int(req.query.get("ticket_id"))
        if tid is None:
            raise _exception(400, "ticket_id is required")  # action ids are numbered per ticket
        self._ticket_faults(req, tid)
        with self._lock:
            self._require_ticket(tid)
            action = self._find_action(tid, action_id)
            return SimReply(200, copy.deepcopy(action))

    def _post_actions(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        """Create actions, or update the ones whose `id` is given. Status keys on an action are ignored."""
        items = self._array_body(req, "Actions")
        tids = [_int(item.get("ticket_id")) for item in items]
        for touched in dict.fromkeys(t for t in tids if t is not None):
            self._ticket_faults(req, touched)
        with self._lock:
            plans: list[tuple[int, _Outcome | None, dict[str, Any]]] = []
            for item, maybe_tid in zip(items, tids, strict=True):
                if maybe_tid is None:
                    raise _exception(400, "A Ticket must be entered for this Action")
                self._require_ticket(maybe_tid)
                plans.append((maybe_tid, self._outcome_of(item, required=_int(item.get("id")) is None), item))
            answers: list[dict[str, Any]] = []
            drop = False
            for tid, outcome, item in plans:
                faults = self._halo_faults(tid)
                action_id = _int(item.get("id"))
                if action_id is not None:
                    answers.append(copy.deepcopy(self._update_action(tid, action_id, outcome, item, faults)))
                    continue
                assert outcome is not None
                fields = {name: item[name] for name in ("note_html", "note") if isinstance(item.get(name), str)}
                for flag in ("hiddenfromuser", "sendemail"):
                    if isinstance(item.get(flag), bool):
                        fields[flag] = item[flag]
                if faults.force_note_visibility is not None:
                    fields["hiddenfromuser"] = faults.force_note_visibility == "internal"
                answers.append(copy.deepcopy(self._store_action(tid, outcome, fields, agent=API_AGENT)))
                if faults.drop_after_commit_next > 0:
                    faults.drop_after_commit_next -= 1
                    drop = True
        if drop:
            return SimReply(0, drop=True)
        if req.query.get("returnall", "").lower() == "true" or len(answers) > 1:
            return SimReply(200, answers)
        return SimReply(200, answers[0])

    def _outcome_of(self, item: dict[str, Any], *, required: bool) -> _Outcome | None:
        outcome: _Outcome | None = None
        if (oid := _int(item.get("outcome_id"))) is not None:
            outcome = self._outcomes.get(oid)
        elif isinstance(item.get("outcome"), str):
            outcome = next((o for o in self._outcomes.values() if o.name.lower() == item["outcome"].lower()), None)
        elif not required:
            return None
        if outcome is None:
            raise _exception(400, OUTCOME_REQUIRED)
        if not outcome.agent_may_use:
            raise _exception(400, NO_ACCESS)
        return outcome

    def _update_action(
        self, tid: int, action_id: int, outcome: _Outcome | None, item: dict[str, Any], faults: HaloTicketFaults
    ) -> dict[str, Any]:
        action = self._find_action(tid, action_id)
        if faults.ignore_note_update:
            return action
        if isinstance(item.get("note_html"), str):
            action["note_html"] = item["note_html"]
            action["note"] = note_text(item["note_html"])
        elif isinstance(item.get("note"), str):
            action["note_html"] = text_html(item["note"])
            action["note"] = item["note"]
        if outcome is not None:
            action["outcome_id"], action["outcome"] = outcome.id, outcome.name
        if isinstance(item.get("hiddenfromuser"), bool):
            action["hiddenfromuser"] = item["hiddenfromuser"]
        if faults.force_note_visibility_sticky and faults.force_note_visibility is not None:
            action["hiddenfromuser"] = faults.force_note_visibility == "internal"
        if item.get("sendemail") is True:
            self._emails.append({"ticket_id": tid, "action_id": action_id})
        return action

    def _store_action(
        self, tid: int, outcome: _Outcome, fields: dict[str, Any], *, agent: dict[str, Any]
    ) -> dict[str, Any]:
        note_html = fields.get("note_html")
        if isinstance(note_html, str):
            note = note_text(note_html)
        else:
            note = str(fields.get("note") or "")
            note_html = text_html(note) if note else ""
        actions = self._notes[tid]
        action = {
            "id": max((a["id"] for a in actions), default=0) + 1,
            "ticket_id": tid,
            "outcome_id": outcome.id,
            "outcome": outcome.name,
            "who": agent["name"],
            "who_agentid": agent["id"],
            "datetime": now_iso(),
            "note": note,
            "note_html": note_html,
            # An omitted flag takes the outcome's default.
            "hiddenfromuser": fields.get("hiddenfromuser", outcome.hidefromuser),
            "sendemail": fields.get("sendemail", outcome.sendemail),
        }
        actions.append(action)
        self._tickets[tid].lastactiondate = action["datetime"]
        if action["sendemail"]:
            self._emails.append({"ticket_id": tid, "action_id": action["id"]})
        return action

    def _find_action(self, tid: int, action_id: int) -> dict[str, Any]:
        action = next((a for a in self._notes[tid] if a["id"] == action_id), None)
        if action is None:
            raise self._not_found(f"Action {action_id}")
        return action

    def _array_body(self, req: SimRequest, entity: str) -> list[dict[str, Any]]:
        """Halo's POST bodies are JSON arrays of objects."""
        body = req.body
        if not isinstance(body, list) or not body or not all(isinstance(item, dict) for item in body):
            raise _exception(400, f"The request body must be a JSON array of {entity}.")
        return body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="HaloPSA simulator with the demo seed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--tenant", default=None)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    sim = HaloSimulator(host=args.host, port=args.port, tenant=args.tenant, verbose=args.verbose)
    sim.start()
    seed = sim.seed_demo()
    banner = [
        f"HaloPSA simulator: {sim.base_url}",
        f"  token:         POST {sim.base_url}/auth/token" + (f"?tenant={sim.tenant}" if sim.tenant else ""),
        f"  client id:     {sim.client_id}",
        f"  client secret: {sim.client_secret}   (fake demo credentials)",
        *(f"  ticket {tid}: {purpose}" for tid, purpose in seed["tickets"].items()),
    ]
    serve_forever(sim, banner)


if __name__ == "__main__":
    main()
