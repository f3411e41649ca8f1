"""Autotask (Datto/Kaseya) PSA over REST: Autotask's wire format and nothing else.

Owns zone discovery (`zoneInformation?user=`, cached per API user), the three auth headers, the ticket/note/status
payloads, the tenant's picklists (ticket statuses and queues, note `publish` and `noteType`, read from
`entityInformation/fields` and cached), choosing a note's `publish` value by its label (the values differ by
tenant), and the mapping of Autotask's answers to `psa.base` errors: its validation errors are HTTP 500 with an
`errors` array, and its thread-limit rejection does not always come as a 429. It never retries, except once after
a 401 with a freshly discovered zone (the tenant's database may have moved); the write-back state machine owns
retrying, and dedupes note POSTs with `find_note_by_marker`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from flowpilot import resets
from flowpilot.psa import egress, http
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
    PSAVisibilityUnknown,
    StatusRef,
    Ticket,
    contains_marker,
)
from flowpilot.psa.http import HTTPProvider, TTLCache, json_or_none, numeric_id, operation_name, retry_after

zone_lookup_url: str = "https://webservices.autotask.net/atservicesrest/"
"""Where zone discovery asks `V1.0/zoneInformation?user=`. In AWS it is always Autotask's own; the local stack and
the tests point it at the Autotask simulator (`devstack/autotask_simulator.py`), as they replace `egress.rules`.
Nothing in the layer changes it. Read at each discovery, so a swap takes effect at once."""

ZONE_TTL_SECONDS = 3600.0
PICKLIST_TTL_SECONDS = 600.0
# Autotask's thread-limit rejection carries no Retry-After; a thread frees up within seconds.
THREAD_LIMIT_RETRY_AFTER = 2
# Autotask lists a ticket's notes oldest first (up to 500 a page); a retried post's note is among the newest.
MARKER_SEARCH_PAGES = 10
DEFAULT_DESCRIPTION_LENGTH = 32000
MESSAGE_LIMIT = 500

PUBLIC_PUBLISH_PREFERENCE = "autotask_public_publish_value"
INTERNAL_PUBLISH_PREFERENCE = "autotask_internal_publish_value"
RESOLUTION_NOTE_TYPE_PREFERENCE = "autotask_resolution_note_type_id"
ESCALATION_NOTE_TYPE_PREFERENCE = "autotask_escalation_note_type_id"

_PUBLIC_LABEL = "all autotask users"
_INTERNAL_LABEL_PART = "internal"
_COMPLETE_LABEL = "complete"
_NOTE_TITLES: dict[NoteKind, str] = {
    NoteKind.resolution: "FlowPilot resolution",
    NoteKind.internal_analysis: "FlowPilot escalation",
}
_THREAD_LIMIT = re.compile(r"itgenatr005|thread\s+threshold|thread\s+limit")
# Autotask's answer to a path it has no route for (e.g. POST /TicketNotes): not a missing ticket.
_ROUTE_MISS = "resource not found"
_VERSION_SUFFIX = re.compile(r"/v1\.0/?$", re.I)


@dataclass(frozen=True, slots=True)
class _Choice:
    """One picklist value; Autotask sends values as strings, we keep the integer ones."""

    value: int
    label: str
    default: bool
    active: bool


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    length: int
    choices: tuple[_Choice, ...]

    def active(self) -> list[_Choice]:
        return [c for c in self.choices if c.active]

    def choice(self, value: int) -> _Choice | None:
        return next((c for c in self.choices if c.value == value), None)


@dataclass(frozen=True, slots=True)
class _NoteSettings:
    publish: int
    note_type: int
    max_length: int


_zone_cache: TTLCache[tuple[str, str], str] = TTLCache(ZONE_TTL_SECONDS)
_picklist_cache: TTLCache[tuple[str, str, str], Mapping[str, _Field]] = TTLCache(PICKLIST_TTL_SECONDS)


@resets.register
def reset_caches() -> None:
    """Forget discovered zones and cached picklists (tests; or after a tenant changes its configuration)."""
    _zone_cache.clear()
    _picklist_cache.clear()


@dataclass(frozen=True)
class AutotaskConnection:
    """One tenant's API user. `integration_code` (the API tracking identifier) is treated as a secret.
    `base_url` is a zone URL such as `https://webservices5.autotask.net/ATServicesRest/`; it skips discovery."""

    username: str
    secret: str = field(repr=False)
    integration_code: str = field(repr=False)
    base_url: str | None = None

    def __post_init__(self) -> None:
        missing = [
            name for name in ("username", "secret", "integration_code") if not str(getattr(self, name) or "").strip()
        ]
        if missing:
            raise ValueError(f"Autotask connection is missing: {', '.join(missing)}")


class AutotaskProvider(HTTPProvider):
    """`PSAProvider` for Autotask over a sync `httpx.Client`.

    The preferences pin what the tenant's picklists cannot say by themselves: the note types of the two notes
    (else the `noteType` picklist's default), and the `publish` values (else chosen by label).
    """

    name: str = "autotask"
    vendor = "Autotask"

    def __init__(
        self,
        conn: AutotaskConnection,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        resolution_note_type_id: int | None = None,
        escalation_note_type_id: int | None = None,
        public_publish_value: int | None = None,
        internal_publish_value: int | None = None,
    ) -> None:
        super().__init__(http=http, timeout=timeout, transport=transport)
        self._conn = conn
        self._note_type_pins: dict[NoteKind, int | None] = {
            NoteKind.resolution: resolution_note_type_id,
            NoteKind.internal_analysis: escalation_note_type_id,
        }
        self._publish_pins: dict[NoteKind, int | None] = {
            NoteKind.resolution: public_publish_value,
            NoteKind.internal_analysis: internal_publish_value,
        }
        self._zone: str | None = _zone_from_base_url(conn.base_url) if conn.base_url else None
        # Scrubbed from every message we build from upstream text.
        self._secrets = tuple(s for s in (conn.secret, conn.integration_code) if s)

    def __repr__(self) -> str:
        return f"AutotaskProvider(username={self._conn.username!r}, zone={self._zone!r})"

    # ---------------------------------------------------------------------------------------------
    # PSAProvider

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        tid = _ticket_id(ticket_id)
        what = f"fetch ticket {tid}"
        item = self._item(self._send("GET", f"Tickets/{tid}", what=what, ticket_id=tid), what)
        if item is None:
            raise PSATicketNotFound(f"Autotask ticket {tid} was not found.", details={"ticket_id": tid})
        return self._ticket_from(item)

    def board_statuses(self, board_id: int) -> list[BoardStatus]:
        """Autotask's statuses are one tenant-wide picklist, the same for every queue (our "board")."""
        return self._statuses(board_id, fresh=False)

    def _fresh_statuses(self, board_id: int) -> list[BoardStatus]:
        return self._statuses(board_id, fresh=True)

    def check_note_settings(self, kind: NoteKind) -> None:
        """The `publish` value and note type a note of `kind` gets, from the tenant's picklists and the
        preferences; a 422 (`PSAVisibilityUnknown`, `PSANotConfigured`) when they don't say."""
        self._note_settings(NoteKind(kind))

    def post_note(self, ticket_id: str, text: str, kind: NoteKind) -> PostedNote:
        tid = _ticket_id(ticket_id)
        kind = NoteKind(kind)
        settings = self._note_settings(kind)
        _check_length(text, settings.max_length)
        # Always the child URL: POST /TicketNotes is a 404 on Autotask.
        body = {
            "ticketID": int(tid),
            "title": _NOTE_TITLES[kind],
            "description": text,
            "noteType": settings.note_type,
            "publish": settings.publish,
        }
        what = f"post the {_label(kind)} note on ticket {tid}"
        resp = self._send("POST", f"Tickets/{tid}/Notes", json_body=body, what=what, ticket_id=tid)
        note_id = self._item_id(resp, what)
        # Autotask answers only the id: this is what it accepted; the write-back reads the note back next.
        customer_visible, internal = self._visibility(settings.publish)
        return PostedNote(
            id=note_id,
            ticket_id=tid,
            text=text,
            customer_visible=customer_visible,
            internal_analysis=internal,
            flags={"publish": settings.publish},
        )

    def get_note(self, ticket_id: str, note_id: str) -> PostedNote:
        tid, nid = _ticket_id(ticket_id), _note_id(note_id)
        what = f"read note {nid} of ticket {tid}"
        gone = f"Note {nid} is no longer on Autotask ticket {tid}."
        try:
            resp = self._send("GET", f"Tickets/{tid}/Notes/{nid}", what=what, ticket_id=tid)
        except PSATicketNotFound as error:
            raise PSANoteNotFound(gone, details={**error.details, "ticket_id": tid, "note_id": nid}) from None
        item = self._item(resp, what)
        if item is None:  # Autotask's `{"item": null}`: no such note (deleted in the PSA)
            raise PSANoteNotFound(gone, details={"ticket_id": tid, "note_id": nid})
        return self._note_from(item, tid)

    def update_note(self, ticket_id: str, note_id: str, *, kind: NoteKind, text: str | None = None) -> None:
        tid, nid = _ticket_id(ticket_id), _note_id(note_id)
        kind = NoteKind(kind)
        body: dict[str, Any] = {"id": int(nid), "publish": self._checked_publish(kind)}
        if text is not None:
            _check_length(text, self._description_length(self._fields("TicketNotes")))
            body["description"] = text
        # A sparse update of the note; Autotask's API emails nobody about it.
        what = f"update note {nid} of ticket {tid}"
        resp = self._send("PATCH", f"Tickets/{tid}/Notes", json_body=body, what=what, ticket_id=tid)
        self._item_id(resp, what)

    def visibility_matches(self, note: PostedNote, kind: NoteKind) -> bool:
        publish = note.flags.get("publish")
        wanted = self._publish_value(NoteKind(kind), self._fields("TicketNotes"))
        return isinstance(publish, int) and not isinstance(publish, bool) and publish == wanted

    def find_note_by_marker(self, ticket_id: str, marker: str) -> PostedNote | None:
        tid = _ticket_id(ticket_id)
        what = f"list notes of ticket {tid}"
        page_url: str | None = None
        for _ in range(MARKER_SEARCH_PAGES):
            resp = self._send("GET", f"Tickets/{tid}/Notes", url=page_url, what=what, ticket_id=tid)
            data = self._json_object(resp, what)
            items = data.get("items")
            if not isinstance(items, list):
                raise self._bad_response(what, "an items list", write=False)
            for item in items:
                if isinstance(item, dict) and contains_marker(str(item.get("description") or ""), marker):
                    return self._note_from(item, tid)
            details = data.get("pageDetails")
            next_url = details.get("nextPageUrl") if isinstance(details, dict) else None
            if not next_url:
                return None
            page_url = self._same_zone(str(next_url), what)
        # Oldest first: the pages not read hold the newest notes, where a retried post's note would be.
        raise PSAError(
            f"Autotask ticket {tid} has more notes than FlowPilot reads ({MARKER_SEARCH_PAGES} pages) while "
            "looking for the note an earlier attempt may have posted; nothing was posted. Check the ticket.",
            details={"ticket_id": tid, "pages_read": MARKER_SEARCH_PAGES},
        )

    def change_status(self, ticket_id: str, status_id: int, *, notify_customer: bool = True) -> None:
        # notify_customer has nothing to switch off: Autotask's API sends no email for a status change by itself.
        tid = _ticket_id(ticket_id)
        if isinstance(status_id, bool) or not isinstance(status_id, int) or status_id <= 0:
            raise PSAValidationError(f"Status id must be a positive integer, got {status_id!r}.")
        what = f"change the status of ticket {tid} to {status_id}"
        # PATCH is a sparse update; PUT would null every field we leave out.
        body = {"id": int(tid), "status": status_id}
        resp = self._send("PATCH", "Tickets", json_body=body, what=what, ticket_id=tid)
        self._item_id(resp, what)

    # ---------------------------------------------------------------------------------------------
    # Zone

    def zone_url(self) -> str:
        """The zone URL (ending in `/`) calls go to: `base_url`, or discovered for the API user."""
        if self._zone is None:
            self._zone = self._discover_zone()
        return self._zone

    def _zone_key(self) -> tuple[str, str]:
        return (zone_lookup_url.lower(), self._conn.username.strip().lower())

    def _discover_zone(self) -> str:
        key = self._zone_key()
        cached = _zone_cache.get(key)
        if cached is not None:
            return cached
        username = self._conn.username.strip()
        url = zone_lookup_url.rstrip("/") + "/V1.0/zoneInformation"
        what = f"look up the Autotask zone of API user {username!r}"
        # No credentials: zoneInformation needs none (django-autotask sends none either).
        resp = self._request("GET", url, what=what, headers={"Accept": "application/json"}, params={"user": username})
        if resp.status_code == 500:
            # Autotask's answer for a blank or unknown user name.
            raise PSAAuthError(
                f"Autotask does not know the API user {username!r} (zoneInformation answered HTTP 500"
                f"{self._said(resp)}); check the username, the API user's email address.",
                details={"psa_status": 500},
            )
        if not resp.is_success:
            raise self._error_for(resp, what=what, ticket_id=None, write=False)
        zone = self._json_object(resp, what).get("url")
        if not isinstance(zone, str) or not zone.strip():
            raise self._bad_response(what, "a zone url", write=False)
        try:
            checked = egress.rules.check_url(zone.strip())
        except egress.EgressRefused as refused:
            raise PSAError(
                f"Autotask's zone URL for API user {username!r} is not an address FlowPilot may call: "
                f"{refused.message}",
                code="psa_misconfigured",
            ) from None
        zone = _zone_from_base_url(checked)
        _zone_cache.put(key, zone)
        return zone

    def _forget_zone(self) -> None:
        _zone_cache.discard(self._zone_key())
        self._zone = None

    def _same_zone(self, url: str, what: str) -> str:
        """`url` when it is under our zone URL (same scheme, host, port and path prefix); else refused, so our
        credentials never go anywhere else."""
        zone = httpx.URL(self.zone_url())
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise self._bad_response(what, "a usable next-page URL", write=False) from None
        if (
            target.scheme.lower() != zone.scheme.lower()
            or target.host.lower() != zone.host.lower()
            or _port(target) != _port(zone)
            or not target.path.lower().startswith(zone.path.lower())
        ):
            raise PSAError(
                f"Autotask's next page of notes ({what}) points outside the zone {zone.host!r}; "
                "FlowPilot does not send the credentials there.",
                code="psa_bad_response",
                details={"next_page_host": target.host},
            )
        return url

    # ---------------------------------------------------------------------------------------------
    # HTTP

    def _headers(self) -> dict[str, str]:
        return {
            "ApiIntegrationCode": self._conn.integration_code,
            "UserName": self._conn.username,
            "Secret": self._conn.secret,
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
        url: str | None = None,
        json_body: object = None,
    ) -> httpx.Response:
        """One API call under `{zone}V1.0/` (or to `url`, a next page); a non-2xx answer raises the PSA error.

        A 401 from a discovered zone is asked once more with the zone discovered afresh: a database that moved
        zones answers 401 at the old one (django-autotask does the same). A 401 means nothing was applied.
        """
        resp = self._request(method, url or self.zone_url() + "V1.0/" + path, what=what, json_body=json_body)
        if resp.status_code == 401 and url is None and not self._conn.base_url:
            self._forget_zone()
            resp = self._request(method, self.zone_url() + "V1.0/" + path, what=what, json_body=json_body)
        if not resp.is_success:
            raise self._error_for(resp, what=what, ticket_id=ticket_id, write=method != "GET")
        return resp

    def _operation(self, method: str, url: str) -> str:
        path = httpx.URL(url).path
        if "zoneinformation" in path.lower():
            return f"{method} /zoneInformation"
        start = path.lower().find("/v1.0/")
        return operation_name(method, path[start + len("/v1.0") :] if start >= 0 else path)

    def _error_for(self, resp: httpx.Response, *, what: str, ticket_id: str | None, write: bool) -> PSAError:
        status = resp.status_code
        body = json_or_none(resp)
        errors = self._errors(body)
        messages = errors or self._messages(body)
        said = self._said(resp)
        details: dict[str, Any] = {"psa_status": status}
        maybe = "; it may have been applied" if write else ""

        # The thread-limit rejection (too many concurrent calls): any status, told by its text (n8n-nodes-autotask).
        if _THREAD_LIMIT.search(" ".join([*messages, resp.text[:2000]]).lower()):
            seconds = retry_after(resp) if resp.headers.get("retry-after") else THREAD_LIMIT_RETRY_AFTER
            return PSARateLimited(
                f"Autotask's thread limit refused to {what} (HTTP {status}{said}); too many concurrent calls "
                "for this integration.",
                retry_after=seconds,
                details=details,
            )
        if status in (401, 403):
            return PSAAuthError(
                f"Autotask refused to {what} (HTTP {status}{said}); check the API user's username, secret and "
                "integration code, and its security level.",
                details=details,
            )
        if status == 429:
            return PSARateLimited(
                f"Autotask is rate limiting us ({what}{said}).", retry_after=retry_after(resp), details=details
            )
        if status in (400, 500) and errors:
            # Autotask reports a rejected request body as HTTP 500 with an `errors` array; nothing was applied.
            psa_errors = [{"code": "", "message": message, "field": None} for message in errors]
            return PSAValidationError(
                f"Autotask rejected the request to {what}: {'; '.join(errors)}",
                details={**details, "psa_errors": psa_errors},
            )
        if status >= 500:
            return PSATransientError(
                f"Autotask failed to {what} (HTTP {status}{said}){maybe}.",
                retry_after=retry_after(resp),
                details={**details, "may_have_applied": write},
            )
        if status == 404:
            route_miss = not messages or any(_ROUTE_MISS in m.lower() for m in messages)
            if ticket_id is not None and not route_miss:
                return PSATicketNotFound(f"Autotask ticket {ticket_id} was not found{said}.", details=details)
            # Autotask's 404 for a path it has no route for, or not Autotask at all: the zone URL is wrong.
            return PSAError(
                f"Autotask answered 404 to {what}{said}; the zone URL does not lead to Autotask's REST API "
                "(check base_url).",
                code="psa_misconfigured",
                details=details,
            )
        return PSAError(f"Autotask answered HTTP {status} to {what}{said}.", details=details)

    def _errors(self, body: object) -> list[str]:
        """Autotask's `errors` array (strings, sometimes objects with a message), scrubbed and shortened."""
        raw = body.get("errors") if isinstance(body, dict) else None
        if not isinstance(raw, list):
            return []
        found = [e if isinstance(e, str) else e.get("message") if isinstance(e, dict) else None for e in raw]
        return [self._scrub(str(m)[:MESSAGE_LIMIT]) for m in found if isinstance(m, str) and m.strip()]

    def _messages(self, body: object) -> list[str]:
        """A lone `message` (ASP.NET's `Message`) when there is no `errors` array."""
        if not isinstance(body, dict):
            return []
        found = [body.get(key) for key in ("message", "Message")]
        return [self._scrub(str(m)[:MESSAGE_LIMIT]) for m in found if isinstance(m, str) and m.strip()]

    def _said(self, resp: httpx.Response) -> str:
        body = json_or_none(resp)
        messages = self._errors(body) or self._messages(body)
        return f": {'; '.join(messages)}" if messages else ""

    def _item(self, resp: httpx.Response, what: str) -> dict[str, Any] | None:
        """The `item` of a single-entity answer; None for Autotask's `{"item": null}` (no such id)."""
        data = self._json_object(resp, what)
        if "item" not in data or not (data["item"] is None or isinstance(data["item"], dict)):
            raise self._bad_response(what, "an item", write=False)
        item: dict[str, Any] | None = data["item"]
        return item

    def _item_id(self, resp: httpx.Response, what: str) -> str:
        """The `itemId` every Autotask create/update answers with."""
        value = self._json_object(resp, what, write=True).get("itemId")
        item_id = None if isinstance(value, bool) or value is None else numeric_id(value)
        if item_id is None:
            raise self._bad_response(what, "an itemId", write=True)
        return item_id

    def _secret_values(self) -> tuple[str, ...]:
        return self._secrets

    # ---------------------------------------------------------------------------------------------
    # Picklists

    def _fields(self, entity: str, *, fresh: bool = False) -> Mapping[str, _Field]:
        """The entity's fields (by lower-case name), cached per zone and API user."""
        key = (self.zone_url(), self._conn.username.strip().lower(), entity)
        cached = None if fresh else _picklist_cache.get(key)
        if cached is None:
            cached = self._load_fields(entity)
            _picklist_cache.put(key, cached)
        return cached

    def _load_fields(self, entity: str) -> Mapping[str, _Field]:
        what = f"read the {entity} fields and picklists"
        raw = self._json_object(
            self._send("GET", f"{entity}/entityInformation/fields", what=what, ticket_id=None), what
        ).get("fields")
        if not isinstance(raw, list):
            raise self._bad_response(what, "a fields list", write=False)
        fields: dict[str, _Field] = {}
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            choices = []
            for value in item.get("picklistValues") or []:
                number = _int(value.get("value")) if isinstance(value, dict) else None
                if number is None:
                    continue  # not an integer value: nothing we could send
                choices.append(
                    _Choice(
                        value=number,
                        label=str(value.get("label") or ""),
                        default=value.get("isDefaultValue") is True,
                        active=value.get("isActive") is not False,
                    )
                )
            length = _int(item.get("length")) or 0
            fields[item["name"].lower()] = _Field(name=item["name"], length=length, choices=tuple(choices))
        return fields

    def _picklist(self, fields: Mapping[str, _Field], entity: str, name: str) -> _Field:
        found = fields.get(name.lower())
        if found is None or not found.choices:
            raise PSAError(
                f"Autotask's {entity} fields have no {name} picklist; FlowPilot cannot tell which values to use.",
                code="psa_bad_response",
            )
        return found

    def _choice(self, entity: str, name: str, value: int) -> _Choice | None:
        """The picklist value, looked up once more afresh when the cached list lacks it."""
        found = self._picklist(self._fields(entity), entity, name).choice(value)
        if found is None:
            found = self._picklist(self._fields(entity, fresh=True), entity, name).choice(value)
        return found

    def _statuses(self, board_id: int, *, fresh: bool) -> list[BoardStatus]:
        status = self._picklist(self._fields("Tickets", fresh=fresh), "Tickets", "status")
        return [
            BoardStatus(c.value, c.label, board_id, inactive=not c.active, closed=_is_complete(c.label))
            for c in status.choices
        ]

    # ---------------------------------------------------------------------------------------------
    # Note settings: publish by label, note type by default or preference

    def _note_settings(self, kind: NoteKind) -> _NoteSettings:
        try:
            return self._resolve_note_settings(kind, self._fields("TicketNotes"))
        except (PSAVisibilityUnknown, PSANotConfigured):
            # The tenant may have fixed its picklists since we cached them: one fresh look before refusing.
            return self._resolve_note_settings(kind, self._fields("TicketNotes", fresh=True))

    def _resolve_note_settings(self, kind: NoteKind, fields: Mapping[str, _Field]) -> _NoteSettings:
        return _NoteSettings(
            publish=self._publish_value(kind, fields),
            note_type=self._note_type(kind, fields),
            max_length=self._description_length(fields),
        )

    def _checked_publish(self, kind: NoteKind) -> int:
        try:
            return self._publish_value(kind, self._fields("TicketNotes"))
        except PSAVisibilityUnknown:
            return self._publish_value(kind, self._fields("TicketNotes", fresh=True))

    def _publish_value(self, kind: NoteKind, fields: Mapping[str, _Field]) -> int:
        """The `publish` value `kind` needs: the preference when set, else the one active value whose label says
        so. Never a hard-coded number: in some tenants "1" is the internal one."""
        active = self._picklist(fields, "TicketNotes", "publish").active()
        listed = ", ".join(f"{c.value} = {c.label!r}" for c in active) or "none"
        values = [{"value": c.value, "label": c.label} for c in active]
        if kind is NoteKind.resolution:
            preference, visibility = PUBLIC_PUBLISH_PREFERENCE, "customer-visible"
            rule = 'the value labelled "All Autotask Users"'
            candidates = [c for c in active if c.label.strip().lower() == _PUBLIC_LABEL]
        else:
            preference, visibility = INTERNAL_PUBLISH_PREFERENCE, "internal-only"
            rule = 'the value whose label contains "Internal"'
            candidates = [c for c in active if _INTERNAL_LABEL_PART in c.label.lower()]
        details = {"preference": preference, "note_kind": str(kind), "active_publish_values": values}
        pinned = self._publish_pins[kind]
        if pinned is not None:
            choice = next((c for c in active if c.value == pinned), None)
            if choice is None:
                raise PSAVisibilityUnknown(
                    f"The preference {preference} = {pinned} is not an active value of Autotask's note publish "
                    f"picklist. Active values: {listed}. Set {preference} to the one that makes a note {visibility}.",
                    details=details,
                )
            if _label_contradicts(kind, choice.label) or pinned == self._publish_pins[_other_kind(kind)]:
                # A pin settles labels that don't say; it never overrules one that says the opposite.
                raise PSAVisibilityUnknown(
                    f"The preference {preference} = {pinned} names the value labelled {choice.label!r}, which does "
                    f"not make a note {visibility} (or is pinned for both kinds of note). Active values: {listed}. "
                    f"Set {preference} to the one that makes a note {visibility}; nothing was posted.",
                    details=details,
                )
            return pinned
        if len(candidates) == 1:
            return candidates[0].value
        raise PSAVisibilityUnknown(
            f"Autotask's note publish picklist does not say which value makes a note {visibility}: {rule} matches "
            f"{len(candidates)} active values. Active values: {listed}. Set the preference {preference} to the "
            "right value; nothing was posted.",
            details=details,
        )

    def _note_type(self, kind: NoteKind, fields: Mapping[str, _Field]) -> int:
        active = self._picklist(fields, "TicketNotes", "noteType").active()
        listed = ", ".join(f"{c.value} = {c.label!r}" for c in active) or "none"
        preference = RESOLUTION_NOTE_TYPE_PREFERENCE if kind is NoteKind.resolution else ESCALATION_NOTE_TYPE_PREFERENCE
        pinned = self._note_type_pins[kind]
        if pinned is not None:
            if any(c.value == pinned for c in active):
                return pinned
            raise PSANotConfigured(
                f"The preference {preference} = {pinned} is not an active Autotask note type. "
                f"Active note types: {listed}.",
                details={"preference": preference},
            )
        default = next((c for c in active if c.default), None)
        if default is None:
            raise PSANotConfigured(
                f"Autotask's note types have no default; set the preference {preference}. Active note types: {listed}.",
                details={"preference": preference},
            )
        return default.value

    def _description_length(self, fields: Mapping[str, _Field]) -> int:
        description = fields.get("description")
        return description.length if description is not None and description.length > 0 else DEFAULT_DESCRIPTION_LENGTH

    def _visibility(self, publish: int | None) -> tuple[bool, bool]:
        """(customer_visible, internal_analysis) of a note with this `publish` value.

        When the labels don't give the public value, every value but the internal one counts as visible: a wrong
        "visible" makes the write-back repair or refuse; a wrong "internal" would let a customer read a handoff.
        """
        fields = self._fields("TicketNotes")
        public = self._soft_publish(NoteKind.resolution, fields)
        internal = self._soft_publish(NoteKind.internal_analysis, fields)
        internal_analysis = internal is not None and publish == internal
        customer_visible = publish == public if public is not None else not internal_analysis
        return customer_visible, internal_analysis

    def _soft_publish(self, kind: NoteKind, fields: Mapping[str, _Field]) -> int | None:
        try:
            return self._publish_value(kind, fields)
        except PSAVisibilityUnknown:
            return None

    # ---------------------------------------------------------------------------------------------
    # Wire -> domain

    def _ticket_from(self, item: dict[str, Any]) -> Ticket:
        ticket_id, status_id = _int(item.get("id")), _int(item.get("status"))
        queue = item.get("queueID")
        queue_id = 0 if queue is None else _int(queue)
        if ticket_id is None or status_id is None or queue_id is None:
            raise self._bad_response("read a ticket", "a ticket with id, status and queueID", write=False)
        status = self._choice("Tickets", "status", status_id)
        queue_choice = self._choice("Tickets", "queueID", queue_id) if queue_id else None
        board_name = queue_choice.label if queue_choice else (f"queue {queue_id}" if queue_id else "no queue")
        # Closed = Autotask's completed status (label "Complete"); completedDate only when the status is unknown.
        closed = _is_complete(status.label) if status else bool(item.get("completedDate"))
        return Ticket(
            id=str(ticket_id),
            summary=str(item.get("title") or ""),
            board_id=queue_id,
            board_name=board_name,
            status=StatusRef(id=status_id, name=status.label if status else f"status {status_id}"),
            closed=closed,
            record_type="ServiceTicket",
        )

    def _note_from(self, item: dict[str, Any], ticket_id: str) -> PostedNote:
        note_id = _int(item.get("id"))
        if note_id is None:
            raise self._bad_response(f"read a note of ticket {ticket_id}", "a note with an id", write=False)
        publish = _int(item.get("publish"))
        customer_visible, internal = self._visibility(publish)
        return PostedNote(
            id=str(note_id),
            ticket_id=str(_int(item.get("ticketID")) or ticket_id),
            text=str(item.get("description") or ""),
            customer_visible=customer_visible,
            internal_analysis=internal,
            flags={"publish": publish},
        )


def _label_contradicts(kind: NoteKind, label: str) -> bool:
    """Whether a publish value's label says the opposite of what `kind` needs."""
    if kind is NoteKind.resolution:
        return _INTERNAL_LABEL_PART in label.lower()
    return label.strip().lower() == _PUBLIC_LABEL


def _other_kind(kind: NoteKind) -> NoteKind:
    return NoteKind.internal_analysis if kind is NoteKind.resolution else NoteKind.resolution


def provider_for(connection: AutotaskConnection, **kw: Any) -> AutotaskProvider:
    return AutotaskProvider(connection, **kw)


def _zone_from_base_url(url: str) -> str:
    """A zone URL ending in one `/`; a trailing `V1.0` (the API base given instead of the zone) is dropped."""
    return _VERSION_SUFFIX.sub("", url.strip().rstrip("/")).rstrip("/") + "/"


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme.lower() == "https" else 80)


def _int(value: object) -> int | None:
    """An integer, or a string of digits (Autotask sends picklist values as strings); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _is_complete(label: str) -> bool:
    return label.strip().lower() == _COMPLETE_LABEL


def _label(kind: NoteKind) -> str:
    return "resolution" if kind is NoteKind.resolution else "escalation"


def _check_length(text: str, limit: int) -> None:
    if len(text) > limit:
        message = f"The note is {len(text)} characters; Autotask's note description holds at most {limit}."
        raise PSAValidationError(
            message, details={"psa_errors": [{"code": "MaxLength", "message": message, "field": "description"}]}
        )


def _ticket_id(ticket_id: str) -> str:
    return http.ticket_id(ticket_id, "Autotask")


def _note_id(note_id: str) -> str:
    return http.note_id(note_id, "Autotask")
