"""An Autotask (Datto/Kaseya) PSA simulator: a real HTTP server on loopback that speaks Autotask's REST wire format.

Owns fake Autotask state (tickets, ticket notes, the tenant's picklists), zone discovery (`zoneInformation`, and a
second zone that answers 401 as a wrong zone does), Autotask's three auth headers, its envelopes (`{"item"}`,
`{"items", "pageDetails"}`, `{"itemId"}`), its error shapes (validation = HTTP 500 `{"errors": [...]}`, the
thread-limit rejection) and per-ticket fault knobs. Three tenant variants of the note `publish` picklist show
why `publish` must be chosen by label. Dev and test tool only; never shipped in the layer.

    with AutotaskSimulator() as sim:
        sim.seed_demo()
        autotask.zone_lookup_url = sim.zone_lookup_url  # or AutotaskConnection(base_url=sim.zone_url)

Run standalone with the demo seed: `python -m devstack.autotask_simulator --port 8090`.
Wire facts and their sources: ../shared/PSA-NOTES.md section 2; [U] there = guessed here too.
"""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
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

__all__ = ["AutotaskSimulator", "AutotaskTicketFaults", "RecordedRequest", "TenantVariant", "TicketFaults"]

DEMO_USERNAME = "flowpilot-api@demo-msp.example"
DEMO_SECRET = "demo-autotask-secret"
DEMO_INTEGRATION_CODE = "DEMOFLOWPILOTTRACKINGID00001"

# Zones live on different hosts in Autotask (webservices5, webservices15...); on loopback, on different paths.
ZONE_PATHS = ("/ATServicesRest", "/zone2/ATServicesRest")
DEFAULT_PAGE_SIZE = 500  # Autotask's maximum records per page
DESCRIPTION_LENGTH = 32000
NOTE_TITLE_LENGTH = 250
TICKET_TITLE_LENGTH = 255

# Who writes: the API user (our provider) or a person in the Autotask UI (state helpers).
API_RESOURCE_ID = 29682885
HUMAN_RESOURCE_ID = 29682901

# [U] wording; the codes and phrases are what clients detect (n8n-nodes-autotask retryHandler, PSA-NOTES S14).
THREAD_LIMIT_MESSAGE = (
    "Itgenatr005: The thread threshold of 3 concurrent requests for this API tracking identifier and "
    "endpoint has been exceeded. Please retry the request."
)
RESOURCE_NOT_FOUND = "Resource not found"

TenantVariant = Literal["standard", "swapped", "ambiguous"]

# value, label, isDefaultValue, isActive
_Picklist = list[tuple[int, str, bool, bool]]

# The note `publish` picklist by tenant, and which value is the public / the internal one.
_PUBLISH: dict[str, tuple[_Picklist, int, int]] = {
    # The labels seen in the wild (PSA-NOTES S30); an inactive "Internal" value that must not count.
    "standard": (
        [
            (1, "All Autotask Users", True, True),
            (2, "Internal Project Team", False, True),
            (4, "Internal Only (retired)", False, False),
        ],
        1,
        2,
    ),
    # The tenant where "1" is internal: hard-coding 1 would publish handoffs to customers (PSA-NOTES S25 #126).
    "swapped": (
        [
            (1, "Internal Only", True, True),
            (2, "Customer Portal (retired)", False, False),
            (3, "All Autotask Users", False, True),
        ],
        3,
        1,
    ),
    # No exact "All Autotask Users" and two "Internal" labels: only preferences can say.
    "ambiguous": (
        [
            (1, "All Users", True, True),
            (2, "Internal Project Team", False, True),
            (4, "Internal Only", False, True),
        ],
        1,
        4,
    ),
}

_STATUSES: _Picklist = [
    (1, "New", True, True),
    (5, "Complete", False, True),
    (8, "In Progress", False, True),
    (13, "Waiting Customer", False, True),
    (14, "Escalated", False, True),
    (99, "Old - Do Not Use", False, False),
]
_QUEUES: _Picklist = [
    (29682833, "Service Desk", True, True),
    (29682834, "Escalations", False, True),
    (29682835, "Monitoring Alerts", False, True),
    (29682899, "Old Queue", False, False),
]
_PRIORITIES: _Picklist = [
    (1, "High", False, True),
    (2, "Medium", True, True),
    (3, "Low", False, True),
    (4, "Critical", False, True),
]
_NOTE_TYPES: _Picklist = [
    (1, "Task Notes", True, True),
    (2, "Service Desk Notification", False, True),
    (3, "Task Detail", False, True),
    (13, "Workflow Rule", False, True),
    (17, "FlowPilot Resolution", False, True),
    (18, "FlowPilot Escalation", False, True),
    (19, "Old Note Type", False, False),
]

# Ticket fields a PATCH may change (lower-case -> Autotask's name); any other field is dropped silently.
_TICKET_WRITABLE = {
    "status": "status",
    "title": "title",
    "priority": "priority",
    "queueid": "queueID",
    "resolution": "resolution",
    "description": "description",
}
_TICKET_PICKLISTS = {"status", "priority", "queueID"}

_ZONE_INFORMATION = re.compile(r"^/atservicesrest/v1\.0/zoneinformation/?$", re.I)
_TICKET_SCOPE = re.compile(r"^/tickets/(\d+)(?:/|$)", re.I)
_TICKETS = re.compile(r"^/tickets/?$", re.I)
_TICKET = re.compile(r"^/tickets/(\d+)/?$", re.I)
_NOTES = re.compile(r"^/tickets/(\d+)/notes/?$", re.I)
_NOTE = re.compile(r"^/tickets/(\d+)/notes/(\d+)/?$", re.I)
_TICKET_FIELDS = re.compile(r"^/tickets/entityinformation/fields/?$", re.I)
_NOTE_FIELDS = re.compile(r"^/ticketnotes/entityinformation/fields/?$", re.I)

_IIS_404 = "<html><head><title>404 - File or directory not found.</title></head><body></body></html>"


@dataclass
class AutotaskTicketFaults(TicketFaults):
    """The common knobs (`psa_sim.TicketFaults`) and Autotask's own."""

    # The next K calls touching the ticket get the thread-limit rejection: HTTP 500 whose `errors` carry
    # "Itgenatr005 ... thread threshold ... exceeded" (not a 429: PSA-NOTES 2.6, from S14's retryHandler,
    # which looks for the text in the errors array whatever the status).
    thread_limit_next: int = 0


@dataclass
class _Ticket:
    id: int
    title: str
    status: int
    queue_id: int | None
    priority: int = 2
    description: str = ""
    resolution: str = ""
    completed_date: str | None = None
    completed_by: int | None = None
    create_date: str = ""
    last_activity: str = ""


def _errors(*messages: str) -> SimError:
    """Autotask's answer to a request it refuses: HTTP 500 with an `errors` array (PSA-NOTES 2.4, S23)."""
    return SimError(500, {"errors": list(messages)})


def _picklist_json(values: _Picklist) -> list[dict[str, Any]]:
    return [
        {
            "value": str(value),
            "label": label,
            "isDefaultValue": default,
            "sortOrder": order,
            "parentValue": "",
            "isActive": active,
            "isSystem": False,
        }
        for order, (value, label, default, active) in enumerate(values, start=1)
    ]


def _lower_keys(body: dict[str, Any]) -> dict[str, Any]:
    # Autotask takes PascalCase keys as well as camelCase (PSA-NOTES S29).
    return {str(k).lower(): v for k, v in body.items()}


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class AutotaskSimulator(PSASimulator):
    """An Autotask tenant on 127.0.0.1. Thread-safe; every state helper takes the lock."""

    provider = "autotask"
    faults_type = AutotaskTicketFaults
    server_name = "autotask-simulator"

    def __init__(
        self,
        *,
        username: str = DEMO_USERNAME,
        secret: str = DEMO_SECRET,
        integration_code: str = DEMO_INTEGRATION_CODE,
        tenant_variant: TenantVariant = "standard",
        page_size: int = DEFAULT_PAGE_SIZE,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, verbose=verbose)
        if tenant_variant not in _PUBLISH:
            raise ValueError(f"unknown tenant variant {tenant_variant!r}")
        self.username = username
        self.secret = secret
        self.integration_code = integration_code
        self.tenant_variant: TenantVariant = tenant_variant
        # Records per page of a list answer; tests lower it to force several pages.
        self.page_size = page_size
        publish, self.public_publish_value, self.internal_publish_value = _PUBLISH[tenant_variant]
        self._picklists: dict[tuple[str, str], _Picklist] = {
            ("tickets", "status"): list(_STATUSES),
            ("tickets", "queueID"): list(_QUEUES),
            ("tickets", "priority"): list(_PRIORITIES),
            ("ticketnotes", "noteType"): list(_NOTE_TYPES),
            ("ticketnotes", "publish"): list(publish),
        }
        self._zone = 0
        self._tickets: dict[int, _Ticket] = {}
        self._next_note_id = 30777001

    # ---------------------------------------------------------------------------------------------
    # URLs

    @property
    def zone_lookup_url(self) -> str:
        """What `flowpilot.psa.autotask.zone_lookup_url` points at to discover this tenant's zone."""
        return f"{self.site_url}/atservicesrest/"

    @property
    def zone_url(self) -> str:
        """The tenant's zone URL, as zoneInformation answers it (a connection's `base_url`)."""
        return f"{self.site_url}{ZONE_PATHS[self._zone]}/"

    @property
    def wrong_zone_url(self) -> str:
        """Another zone: every API call there answers 401, as Autotask does for a database in another zone."""
        return f"{self.site_url}{ZONE_PATHS[1 - self._zone]}/"

    @property
    def api_path(self) -> str:
        """The path prefix of the API in the current zone (`/ATServicesRest/V1.0`)."""
        return f"{ZONE_PATHS[self._zone]}/V1.0"

    def move_zone(self) -> None:
        """The tenant's database moves to the other zone: the old zone URL answers 401 from now on."""
        with self._lock:
            self._zone = 1 - self._zone

    # ---------------------------------------------------------------------------------------------
    # State helpers (what a person does in the Autotask UI, or what a test arranges)

    def set_picklist(self, entity: str, field_name: str, values: list[dict[str, Any]]) -> None:
        """Replace a picklist: `entity` "Tickets" or "TicketNotes", `field_name` one of status, queueID, priority,
        noteType, publish; values need `value` and `label`; `isDefaultValue` (False), `isActive` (True)."""
        key = (entity.lower(), field_name)
        with self._lock:
            if key not in self._picklists:
                raise ValueError(f"no picklist {entity}.{field_name}")
            self._picklists[key] = [
                (int(v["value"]), str(v["label"]), bool(v.get("isDefaultValue", False)), bool(v.get("isActive", True)))
                for v in values
            ]

    def picklist(self, entity: str, field_name: str) -> list[dict[str, Any]]:
        """A picklist as entityInformation/fields shows it."""
        with self._lock:
            return _picklist_json(self._picklists[(entity.lower(), field_name)])

    def add_ticket(
        self, ticket_id: int | str, *, status: int, queue_id: int | None, title: str, priority: int = 2
    ) -> None:
        tid = int(ticket_id)
        with self._lock:
            if not self._is_active("tickets", "status", status):
                raise ValueError(f"status {status} is not an active status")
            now = now_iso()
            ticket = _Ticket(
                id=tid,
                title=title[:TICKET_TITLE_LENGTH],
                status=status,
                queue_id=queue_id,
                priority=priority,
                create_date=now,
                last_activity=now,
            )
            self._tickets[tid] = ticket
            self._notes.setdefault(tid, [])
            self._apply_status(ticket, status, by=HUMAN_RESOURCE_ID)

    def add_note(
        self, ticket_id: int | str, description: str, *, publish: int, note_type: int = 1, title: str = ""
    ) -> dict[str, Any]:
        """Store a note directly (as if typed in the Autotask UI); returns it as GET would."""
        tid = int(ticket_id)
        with self._lock:
            self._require_ticket(tid)
            body = {"title": title, "description": description, "noteType": note_type, "publish": publish}
            return copy.deepcopy(self._store_note(tid, body, creator=HUMAN_RESOURCE_ID))

    def note_views(self, ticket_id: int | str) -> list[NoteView]:
        """Customer-visible = published to "All Autotask Users" (this variant's public value)."""
        return [
            NoteView(id=str(n["id"]), text=n["description"], customer_visible=n["publish"] == self.public_publish_value)
            for n in self.notes(ticket_id)
        ]

    def status_id(self, ticket_id: int | str) -> int:
        with self._lock:
            return self._require_ticket(int(ticket_id)).status

    def set_status(self, ticket_id: int | str, status_id: int) -> None:
        """Out-of-band status change, as a person in Autotask would make it."""
        with self._lock:
            ticket = self._require_ticket(int(ticket_id))
            if not self._is_active("tickets", "status", status_id):
                raise ValueError(f"status {status_id} is not an active Autotask status")
            self._apply_status(ticket, status_id, by=HUMAN_RESOURCE_ID)

    def add_person_note(self, ticket_id: int | str, text: str, *, customer_visible: bool) -> NoteView:
        publish = self.public_publish_value if customer_visible else self.internal_publish_value
        note = self.add_note(ticket_id, text, publish=publish)
        return NoteView(id=str(note["id"]), text=note["description"], customer_visible=customer_visible)

    def connection_settings(self, *, with_base_url: bool = False) -> dict[str, Any]:
        """The body of `PUT /account-settings/psa-connection` for this simulator. Without `base_url` the provider
        discovers the zone (point `autotask.zone_lookup_url` at `zone_lookup_url`)."""
        settings: dict[str, Any] = {
            "provider": "autotask",
            "username": self.username,
            "secret": self.secret,
            "integration_code": self.integration_code,
        }
        if with_base_url:
            settings["base_url"] = self.zone_url
        return settings

    def preferences(self) -> dict[str, Any]:
        # Nothing about publish: it is chosen by label, in the swapped tenant too (the ambiguous one needs pins).
        return {"autotask_resolved_status_id": 5, "autotask_escalated_status_id": 14}

    def seed_demo(self) -> dict[str, Any]:
        """Tickets 1001..1006 (purposes as in the ConnectWise seed); returns what was made and what each is for."""
        service_desk, escalations = _QUEUES[0][0], _QUEUES[1][0]
        tickets = {
            1001: (service_desk, 8, "VPN drops every 10 minutes", "resolve: happy path"),
            1002: (service_desk, 8, "Exchange mailbox migration stuck", "escalate: internal note + Escalated"),
            1003: (service_desk, 1, "Printer offline on 3rd floor", "silent reject: PATCH 200, status unchanged"),
            1004: (service_desk, 8, "Outlook prompts for password", "workflow revert: status flips back after 1 s"),
            1005: (escalations, 13, "Firewall firmware bug", "spare, in the Escalations queue"),
            1006: (service_desk, 13, "New starter laptop", "spare"),
        }
        for tid, (queue_id, status, title, _) in tickets.items():
            self.add_ticket(tid, status=status, queue_id=queue_id, title=title)
        self.set_faults(1003, ignore_status_change=True)
        self.set_faults(1004, revert_status_after=1.0)
        with self._lock:
            labels = {
                name: {str(v): label for v, label, _, _ in self._picklists[key]}
                for name, key in (
                    ("queues", ("tickets", "queueID")),
                    ("status_labels", ("tickets", "status")),
                    ("publish", ("ticketnotes", "publish")),
                    ("note_types", ("ticketnotes", "noteType")),
                )
            }
        return {
            "username": self.username,
            "secret": self.secret,
            "integration_code": self.integration_code,
            "site_url": self.site_url,
            "zone_lookup_url": self.zone_lookup_url,
            "zone_url": self.zone_url,
            "tenant_variant": self.tenant_variant,
            **labels,
            "public_publish_value": self.public_publish_value,
            "internal_publish_value": self.internal_publish_value,
            "tickets": {str(tid): purpose for tid, (_, _, _, purpose) in tickets.items()},
            "statuses": {"resolved": 5, "escalated": 14},
        }

    # ---------------------------------------------------------------------------------------------
    # Request handling

    def _route(self, req: SimRequest) -> SimReply:
        if _ZONE_INFORMATION.match(req.path):
            if req.method != "GET":
                raise self._method_not_allowed(req)
            return self._zone_information(req)
        with self._lock:
            current, other = ZONE_PATHS[self._zone], ZONE_PATHS[1 - self._zone]
        lower = req.path.lower()
        if lower.startswith(other.lower() + "/"):
            # The tenant's database is not in this zone: 401 with nothing else (PSA-NOTES 2.1, S25 #47).
            return SimReply(401, None)
        api = current.lower() + "/v1.0"
        if not lower.startswith(api + "/"):
            return SimReply(404, _IIS_404, content_type="text/html")
        sub = req.path[len(api) :]
        self._check_auth(req)
        if scope := _TICKET_SCOPE.match(sub):
            self._ticket_faults(int(scope.group(1)))
        if req.method in {"POST", "PUT", "PATCH"}:
            if req.content_type != "application/json":
                message = f"The request entity's media type '{req.content_type}' is not supported for this resource."
                raise SimError(415, {"Message": message})
            if req.body_invalid or not isinstance(req.body, dict):
                raise _errors("The request body must be one JSON object.")
            if _TICKETS.match(sub) and (tid := _as_int(_lower_keys(req.body).get("id"))) is not None:
                self._ticket_faults(tid)

        routes: list[tuple[re.Pattern[str], dict[str, Callable[[SimRequest, re.Match[str]], SimReply]]]] = [
            (_TICKET_FIELDS, {"GET": lambda r, m: self._fields("tickets")}),
            (_NOTE_FIELDS, {"GET": lambda r, m: self._fields("ticketnotes")}),
            (_TICKETS, {"PATCH": self._patch_ticket, "PUT": self._put_ticket}),
            (_TICKET, {"GET": self._get_ticket}),
            (_NOTES, {"GET": self._list_notes, "POST": self._post_note, "PATCH": self._patch_note}),
            (_NOTE, {"GET": self._get_note}),
        ]
        for pattern, methods in routes:
            if m := pattern.match(sub):
                handler = methods.get(req.method)
                if handler is None:
                    raise self._method_not_allowed(req)
                return handler(req, m)
        # Includes POST /TicketNotes: notes are created under their ticket only (PSA-NOTES 2.3).
        raise SimError(404, {"errors": [RESOURCE_NOT_FOUND]})

    def _method_not_allowed(self, req: SimRequest) -> SimError:
        message = f"The requested resource does not support http method '{req.method}'."
        return SimError(405, {"Message": message})

    def _zone_information(self, req: SimRequest) -> SimReply:
        user = req.query.get("user", "").strip()
        if not user or user.lower() != self.username.lower():
            # Autotask answers 500 for a blank or unknown user (PSA-NOTES 2.1, S13); body [U].
            raise _errors(f"Zone information could not be determined for user '{user}'.")
        return SimReply(
            200,
            {
                "zoneName": "Simulated Zone",
                "url": self.zone_url,
                "webUrl": f"{self.site_url}/web/",
                "ci": 12345,
            },
        )

    def _check_auth(self, req: SimRequest) -> None:
        with self._lock:
            revoked = self._credentials_revoked
        ok = (
            req.headers.get("apiintegrationcode", "") == self.integration_code
            and req.headers.get("username", "").strip().lower() == self.username.lower()
            and req.headers.get("secret", "") == self.secret
        )
        if revoked or not ok:
            raise self._unauthorized()

    def _ticket_faults(self, tid: int) -> None:
        """Apply the ticket's fault knobs before the call is handled (raises the faulty answer)."""
        faults = self._apply_ticket_faults(tid)
        if isinstance(faults, AutotaskTicketFaults):
            with self._lock:
                if faults.thread_limit_next > 0:
                    faults.thread_limit_next -= 1
                    raise _errors(THREAD_LIMIT_MESSAGE)

    def _at_faults(self, tid: int) -> AutotaskTicketFaults:
        faults = self._ticket_faults_or_default(tid)
        assert isinstance(faults, AutotaskTicketFaults)
        return faults

    # --- Autotask's error bodies (the shared fault knobs answer with these; bodies [U]) ---

    def _unauthorized(self) -> SimError:
        return SimError(401, {"errors": ["The user name, secret or API integration code is not valid."]})

    def _rate_limited(self, retry_after: int) -> SimError:
        body = {"errors": ["The request threshold for this database has been exceeded. Please retry later."]}
        return SimError(429, body, {"Retry-After": str(retry_after)})

    def _server_error(self) -> SimError:
        # An unhandled failure: ASP.NET's body, no `errors` array (which would read as a validation error).
        return SimError(500, {"Message": "An error has occurred."})

    def _not_found(self, what: str) -> SimError:
        return SimError(404, {"errors": [f"{what} was not found."]})

    def _require_ticket(self, tid: int) -> _Ticket:
        ticket = self._tickets.get(tid)
        if ticket is None:
            raise self._not_found(f"Ticket {tid}")
        return ticket

    def _is_active(self, entity: str, field_name: str, value: Any) -> bool:
        number = _as_int(value)
        return any(v == number and active for v, _, _, active in self._picklists[(entity, field_name)])

    def _label(self, entity: str, field_name: str, value: int) -> str:
        return next((label for v, label, _, _ in self._picklists[(entity, field_name)] if v == value), "")

    # --- entity information ---

    def _fields(self, entity: str) -> SimReply:
        def field(
            name: str, data_type: str, *, length: int = 0, required: bool = False, read_only: bool = False
        ) -> dict[str, Any]:
            picklist = self._picklists.get((entity, name))
            return {
                "name": name,
                "dataType": data_type,
                "length": length,
                "isRequired": required,
                "isReadOnly": read_only,
                "isQueryable": True,
                "isReference": name in {"ticketID", "companyID"},
                "referenceEntityType": {"ticketID": "Ticket", "companyID": "Company"}.get(name, ""),
                "isPickList": picklist is not None,
                "picklistValues": _picklist_json(picklist) if picklist is not None else None,
                "picklistParentValueField": "",
                "isSupportedWebhookField": False,
            }

        with self._lock:
            if entity == "tickets":
                fields = [
                    field("id", "long", read_only=True, required=True),
                    field("ticketNumber", "string", length=50, read_only=True),
                    field("title", "string", length=TICKET_TITLE_LENGTH, required=True),
                    field("description", "string", length=8000),
                    field("status", "integer", required=True),
                    field("priority", "integer", required=True),
                    field("queueID", "integer"),
                    field("companyID", "integer", required=True),
                    field("resolution", "string", length=32000),
                    field("completedDate", "datetime", read_only=True),
                    field("createDate", "datetime", read_only=True),
                    field("lastActivityDate", "datetime", read_only=True),
                ]
            else:
                fields = [
                    field("id", "long", read_only=True, required=True),
                    field("ticketID", "integer", required=True),
                    field("title", "string", length=NOTE_TITLE_LENGTH),
                    field("description", "string", length=DESCRIPTION_LENGTH, required=True),
                    field("noteType", "integer", required=True),
                    field("publish", "integer", required=True),
                    field("createDateTime", "datetime", read_only=True),
                    field("lastActivityDate", "datetime", read_only=True),
                ]
        return SimReply(200, {"fields": fields})

    # --- tickets ---

    def _get_ticket(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        with self._lock:
            ticket = self._tickets.get(int(m.group(1)))
            return SimReply(200, {"item": self._ticket_json(ticket) if ticket else None})

    def _put_ticket(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        # PUT replaces every field (omitted ones become null, PSA-NOTES 2.4, S24); clients must PATCH.
        raise _errors(
            "PUT replaces the whole ticket and every field left out becomes empty: companyID, title, status and "
            "priority are required. Use PATCH to change only some fields."
        )

    def _patch_ticket(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        body = _lower_keys(req.body)
        tid = _as_int(body.get("id"))
        if tid is None:
            raise _errors("The id field is required to update a Ticket.")
        changes = {_TICKET_WRITABLE[k]: v for k, v in body.items() if k in _TICKET_WRITABLE}
        with self._lock:
            ticket = self._tickets.get(tid)
            if ticket is None:
                raise _errors("Value does not reference an existing entity for id.")
            problems = [
                f"The value '{changes[name]}' is not an active picklist value for the field {name}."
                for name in sorted(_TICKET_PICKLISTS & changes.keys())
                if not self._is_active("tickets", name, changes[name])
            ]
            if "title" in changes and (not isinstance(changes["title"], str) or not changes["title"].strip()):
                problems.append("The title field is required.")
            if problems:
                raise _errors(*problems)
            faults = self._at_faults(tid)
            reply = SimReply(200, {"itemId": tid})
            if faults.ignore_status_change:
                return reply
            previous = ticket.status
            for name, value in changes.items():
                if name == "title":
                    ticket.title = value[:TICKET_TITLE_LENGTH]
                elif name in {"priority", "queueID"}:
                    setattr(ticket, "priority" if name == "priority" else "queue_id", _as_int(value))
                elif name in {"resolution", "description"}:
                    setattr(ticket, name, str(value or ""))
            ticket.last_activity = now_iso()
            if "status" in changes and _as_int(changes["status"]) != previous:
                applied = _as_int(changes["status"])
                assert applied is not None
                self._apply_status(ticket, applied, by=API_RESOURCE_ID)
                reply.after = self._schedule_revert(
                    tid,
                    faults,
                    lambda: self._tickets[tid].status == applied,
                    lambda: self._apply_status(self._tickets[tid], previous, by=0),
                )
        return reply

    def _apply_status(self, ticket: _Ticket, status: int, *, by: int) -> None:
        ticket.status = status
        ticket.last_activity = now_iso()
        if self._label("tickets", "status", status).lower() == "complete":
            if ticket.completed_date is None:
                ticket.completed_date, ticket.completed_by = ticket.last_activity, by or None
        else:
            ticket.completed_date, ticket.completed_by = None, None

    def _ticket_json(self, ticket: _Ticket) -> dict[str, Any]:
        return {
            "id": ticket.id,
            "ticketNumber": f"T20250101.{ticket.id:04d}",
            "title": ticket.title,
            "description": ticket.description,
            "status": ticket.status,
            "queueID": ticket.queue_id,
            "priority": ticket.priority,
            "issueType": None,
            "subIssueType": None,
            "source": 2,
            "ticketCategory": 3,
            "ticketType": 1,
            "companyID": 174,
            "companyLocationID": None,
            "contactID": None,
            "assignedResourceID": None,
            "assignedResourceRoleID": None,
            "resolution": ticket.resolution,
            "completedDate": ticket.completed_date,
            "completedByResourceID": ticket.completed_by,
            "createDate": ticket.create_date,
            "lastActivityDate": ticket.last_activity,
            "userDefinedFields": [],
        }

    # --- notes ---

    def _list_notes(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        with self._lock:
            notes = copy.deepcopy(self._notes.get(int(m.group(1)), []))  # an unknown ticket has no notes [U]
        return self._page(req, notes)

    def _get_note(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid, note_id = int(m.group(1)), int(m.group(2))
        with self._lock:
            note = next((n for n in self._notes.get(tid, []) if n["id"] == note_id), None)
            return SimReply(200, {"item": copy.deepcopy(note)})

    def _post_note(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid = int(m.group(1))
        body = _lower_keys(req.body)
        sent_ticket = body.get("ticketid", tid)
        if _as_int(sent_ticket) != tid:
            raise _errors(f"The ticketID {sent_ticket} does not match the parent ticket {tid} of the URL.")
        with self._lock:
            if tid not in self._tickets:
                raise _errors("Value does not reference an existing entity for ticketID.")
            problems = self._note_problems(body, creating=True)
            if problems:
                raise _errors(*problems)
            faults = self._at_faults(tid)
            if faults.force_note_visibility is not None:
                body["publish"] = self._forced_publish(faults)
            note = self._store_note(tid, body, creator=API_RESOURCE_ID)
            if faults.drop_after_commit_next > 0:
                faults.drop_after_commit_next -= 1
                return SimReply(0, drop=True)
            return SimReply(200, {"itemId": note["id"]})

    def _patch_note(self, req: SimRequest, m: re.Match[str]) -> SimReply:
        tid = int(m.group(1))
        body = _lower_keys(req.body)
        note_id = _as_int(body.get("id"))
        if note_id is None:
            raise _errors("The id field is required to update a TicketNote.")
        with self._lock:
            note = next((n for n in self._notes.get(tid, []) if n["id"] == note_id), None)
            if note is None:
                raise _errors("Value does not reference an existing entity for id.")
            problems = self._note_problems(body, creating=False)
            if problems:
                raise _errors(*problems)
            faults = self._at_faults(tid)
            if not faults.ignore_note_update:
                if faults.force_note_visibility is not None and faults.force_note_visibility_sticky:
                    body["publish"] = self._forced_publish(faults)
                for key, name in (("title", "title"), ("description", "description")):
                    if key in body:
                        note[name] = str(body[key] or "")
                for key, name in (("notetype", "noteType"), ("publish", "publish")):
                    if key in body:
                        note[name] = _as_int(body[key])
                note["lastActivityDate"] = now_iso()
                note["impersonatorUpdaterResourceID"] = None
            return SimReply(200, {"itemId": note_id})

    def _note_problems(self, body: dict[str, Any], *, creating: bool) -> list[str]:
        """Autotask's rules for a note body (PSA-NOTES 2.3, S20); unknown fields are dropped, not refused."""
        problems = []
        if creating or "description" in body:
            description = body.get("description")
            if not isinstance(description, str) or not description.strip():
                # Text only: the API cannot create Rich Text (S20), so anything but a string is refused too.
                problems.append("The description field is required and must be plain text.")
            elif len(description) > DESCRIPTION_LENGTH:
                problems.append(f"The description field exceeds its maximum length of {DESCRIPTION_LENGTH}.")
        title = body.get("title")
        if title is not None and (not isinstance(title, str) or len(title) > NOTE_TITLE_LENGTH):
            problems.append(f"The title field must be text of at most {NOTE_TITLE_LENGTH} characters.")
        for key, name in (("notetype", "noteType"), ("publish", "publish")):
            if key not in body and not creating:
                continue
            if key not in body:
                problems.append(f"The {name} field is required.")
            elif not self._is_active("ticketnotes", name, body[key]):
                problems.append(f"The value '{body[key]}' is not an active picklist value for the field {name}.")
        return problems

    def _forced_publish(self, faults: TicketFaults) -> int:
        if faults.force_note_visibility == "customer":
            return self.public_publish_value
        return self.internal_publish_value

    def _store_note(self, tid: int, body: dict[str, Any], *, creator: int) -> dict[str, Any]:
        body = _lower_keys(body)
        now = now_iso()
        note = {
            "id": self._next_note_id,
            "ticketID": tid,
            "title": str(body.get("title") or ""),
            "description": body["description"],
            "noteType": _as_int(body.get("notetype")),
            "publish": _as_int(body.get("publish")),
            "createDateTime": now,
            "lastActivityDate": now,
            "creatorResourceID": creator,
            "createdByContactID": None,
            "impersonatorCreatorResourceID": None,
            "impersonatorUpdaterResourceID": None,
        }
        self._next_note_id += 1
        self._notes[tid].append(note)
        return note

    # --- lists ---

    def _page(self, req: SimRequest, items: list[dict[str, Any]]) -> SimReply:
        """Autotask's list envelope; next/prev are absolute URLs on this simulator (the real form is [U])."""
        raw_page = req.query.get("page", "1")
        if not raw_page.isdigit() or int(raw_page) < 1:
            raise _errors("page must be a positive integer.")
        page, size = int(raw_page), max(1, self.page_size)
        chunk = items[(page - 1) * size : page * size]
        last = max(1, -(-len(items) // size))
        return SimReply(
            200,
            {
                "items": chunk,
                "pageDetails": {
                    "count": len(chunk),
                    "requestCount": size,
                    "prevPageUrl": self._page_url(req, page - 1) if page > 1 else None,
                    "nextPageUrl": self._page_url(req, page + 1) if page < last else None,
                },
            },
        )

    def _page_url(self, req: SimRequest, page: int) -> str:
        return f"{self.site_url}{req.path}?{urlencode({**req.query, 'page': str(page)})}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Autotask PSA simulator with the demo seed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--variant", choices=sorted(_PUBLISH), default="standard", help="the publish picklist")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    sim = AutotaskSimulator(host=args.host, port=args.port, tenant_variant=args.variant, verbose=args.verbose)
    sim.start()
    seed = sim.seed_demo()
    banner = [
        f"Autotask simulator: {sim.zone_url}",
        f"  zone lookup (autotask.zone_lookup_url): {sim.zone_lookup_url}",
        f"  username:         {sim.username}",
        f"  secret:           {sim.secret}   (fake demo credentials)",
        f"  integration code: {sim.integration_code}",
        f"  publish picklist: {sim.tenant_variant} {seed['publish']}",
        *(f"  ticket {tid}: {purpose}" for tid, purpose in seed["tickets"].items()),
    ]
    serve_forever(sim, banner)


if __name__ == "__main__":
    main()
