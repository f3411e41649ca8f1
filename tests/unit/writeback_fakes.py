"""In-memory stand-ins for the write-back's two outside worlds: the ledger (`flowpilot.store.writebacks`)
and a PSA (`flowpilot.psa.base.PSAProvider`), so the write-back's decisions run without moto or HTTP.

Both keep the real ones' semantics where the domain relies on them: the first recorded note id wins, the
lock is taken only on an active, unlocked session still linking the ticket read, a session is finished only
by the write-back holding it (or by the same one again); the PSA keeps what it was sent unless a knob says
it misbehaves the way PSAs do (a status change ignored, a visibility forced, an update dropped, a 429, an
answer lost after the write committed, a note deleted by hand).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from pydantic import BaseModel

from flowpilot.models import SessionStatus, WritebackKind, WritebackSummary
from flowpilot.psa.base import (
    BoardStatus,
    NoteKind,
    PostedNote,
    PSAError,
    PSANoteNotFound,
    PSAProvider,
    PSARateLimited,
    PSAStatusNotOnBoard,
    PSATicketNotFound,
    PSATransientError,
    StatusRef,
    Ticket,
    contains_marker,
)
from flowpilot.store.dynamo import ConditionFailed
from flowpilot.store.protocols import WritebackLedger
from flowpilot.writeback_state import (
    GuardedNote,
    LedgerEntry,
    LedgerError,
    PendingNote,
    TicketRef,
    keep_pending,
    pending_notes,
    settled_attributes,
)

# --- the ledger ----------------------------------------------------------------------------------------

_Key = tuple[str, str, str]


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """As the store keeps values: models as plain JSON without their Nones; a None is an absent attribute."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_none=True)
        if value is not None:
            out[key] = copy.deepcopy(value)
    return out


class FakeLedger:
    """The write-back ledger and the session items it locks, in dicts.

    Sessions are plain dicts with the attributes the store keeps (`status`, `psa_ticket`,
    `active_writeback_id`, `last_writeback`, `pending_note_<kind>`, `guard_internal_notes`…).
    """

    def __init__(self) -> None:
        self.entries: dict[_Key, dict[str, Any]] = {}
        self.finished: dict[_Key, str] = {}
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    # test set-up and inspection

    def add_session(
        self,
        account_id: str,
        session_id: str,
        *,
        ticket: TicketRef | None = None,
        status: str = "active",
        **attributes: Any,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"status": status, **_stored(attributes)}
        if ticket is not None:
            item["psa_ticket"] = ticket.model_dump(mode="json")
        self.sessions[(account_id, session_id)] = item
        return item

    def session(self, account_id: str, session_id: str) -> dict[str, Any]:
        return self.sessions[(account_id, session_id)]

    def entry(self, account_id: str, session_id: str, writeback_id: str) -> LedgerEntry:
        found = self.get(account_id, session_id, writeback_id)
        assert found is not None, f"no ledger entry {writeback_id}"
        return found

    # WritebackLedger

    def get(self, account_id: str, session_id: str, writeback_id: str) -> LedgerEntry | None:
        item = self.entries.get((account_id, session_id, writeback_id))
        return LedgerEntry.model_validate(item) if item is not None else None

    def update(self, account_id: str, session_id: str, writeback_id: str, values: dict[str, Any]) -> LedgerEntry:
        self.calls.append("update")
        item = self._existing(account_id, session_id, writeback_id)
        item.update(_stored(values))
        return LedgerEntry.model_validate(item)

    def record_note_id(
        self, account_id: str, session_id: str, writeback_id: str, note_id: str, now: str
    ) -> LedgerEntry:
        self.calls.append("record_note_id")
        item = self._existing(account_id, session_id, writeback_id)
        if "note_id" not in item:  # first writer wins
            item.update(note_id=note_id, note_posted_at=now, updated_at=now)
        return LedgerEntry.model_validate(item)

    def replace_note_id(
        self, account_id: str, session_id: str, writeback_id: str, lost_id: str, note_id: str, now: str
    ) -> LedgerEntry:
        self.calls.append("replace_note_id")
        item = self._existing(account_id, session_id, writeback_id)
        if item.get("note_id") != lost_id:
            raise ConditionFailed
        item.update(note_id=note_id, note_posted_at=now, replaced_note_id=lost_id, updated_at=now)
        return LedgerEntry.model_validate(item)

    def mark_post_attempted(self, account_id: str, session_id: str, writeback_id: str, now: str) -> bool:
        self.calls.append("mark_post_attempted")
        item = self.entries.get((account_id, session_id, writeback_id))
        if item is None or item.get("state") != "running":
            return False
        item.update(post_attempted=True, updated_at=now)
        return True

    def record_error(self, account_id: str, session_id: str, writeback_id: str, error: LedgerError, now: str) -> None:
        self.calls.append("record_error")
        item = self.entries.get((account_id, session_id, writeback_id))
        if item is not None:
            item.update(_stored({"last_error": error, "updated_at": now}))

    def take_lock_and_start(self, account_id: str, entry: LedgerEntry, ticket: TicketRef | None, taken_at: int) -> None:
        self.calls.append("take_lock_and_start")
        key = (account_id, entry.session_id, entry.writeback_id)
        session = self.sessions.get((account_id, entry.session_id))
        linked = (session or {}).get("psa_ticket") or {}
        if ticket is None:
            same_ticket = "ticket_id" not in linked
        else:
            same_ticket = linked.get("ticket_id") == ticket.ticket_id and linked.get("provider") == ticket.provider
        if (
            key in self.entries
            or session is None
            or session.get("status") != "active"
            or "active_writeback_id" in session
            or not same_ticket
        ):
            raise ConditionFailed
        self.entries[key] = _stored(entry.model_dump(mode="json"))
        session.update(
            active_writeback_id=entry.writeback_id, active_writeback_at=taken_at, updated_at=entry.created_at
        )

    def close_session(
        self,
        account_id: str,
        session_id: str,
        writeback_id: str,
        *,
        status: SessionStatus,
        kind: WritebackKind,
        last_writeback: WritebackSummary,
        ticket: TicketRef | None,
        summary: str | None,
        now: str,
    ) -> None:
        self.calls.append("close_session")
        values: dict[str, Any] = {
            "status": status.value,
            "last_writeback": last_writeback,
            "updated_at": now,
            "psa_ticket": ticket,
            "resolution_summary" if kind is WritebackKind.resolve else "escalation_reason": summary,
        }
        self._finish(account_id, session_id, writeback_id, values, remove=settled_attributes(kind, ticket))

    def release_session(
        self,
        account_id: str,
        session_id: str,
        writeback_id: str,
        *,
        kind: WritebackKind,
        last_writeback: WritebackSummary,
        pending: PendingNote | None,
        guards: list[GuardedNote],
        now: str,
    ) -> None:
        self.calls.append("release_session")
        values: dict[str, Any] = {"last_writeback": last_writeback, "updated_at": now}
        if guards:
            values["guard_internal_notes"] = [g.model_dump(mode="json") for g in guards]
        if pending is not None:
            values |= keep_pending(kind, pending)
        self._finish(account_id, session_id, writeback_id, values)

    def record_drift(self, account_id: str, session_id: str, last_writeback: WritebackSummary) -> None:
        self.calls.append("record_drift")
        session = self.sessions.get((account_id, session_id))
        if session is None:
            raise ConditionFailed
        session.update(_stored({"last_writeback": last_writeback}))

    def mark_finished(self, account_id: str, session_id: str, writeback_id: str, state: str) -> None:
        self.calls.append("mark_finished")
        self.finished[(account_id, session_id, writeback_id)] = state

    def finished_state(self, account_id: str, session_id: str, writeback_id: str) -> str | None:
        return self.finished.get((account_id, session_id, writeback_id))

    def pending_notes(self, session_item: dict[str, Any], kind: WritebackKind) -> list[PendingNote]:
        return pending_notes(session_item, kind)  # the item format is the store's, shared

    def guarded_notes(self, session_item: dict[str, Any]) -> list[GuardedNote]:
        raw = session_item.get("guard_internal_notes")
        return [GuardedNote.model_validate(g) for g in raw if isinstance(g, dict)] if isinstance(raw, list) else []

    def held_lock(self, session_item: dict[str, Any]) -> tuple[str, int] | None:
        held = session_item.get("active_writeback_id")
        if not held:
            return None
        return str(held), int(session_item.get("active_writeback_at") or 0)

    def abandon(
        self,
        account_id: str,
        session_id: str,
        entry: LedgerEntry,
        *,
        reason: str,
        pending: PendingNote | None,
        now: str,
    ) -> bool:
        self.calls.append("abandon")
        session = self.sessions.get((account_id, session_id))
        item = self.entries.get((account_id, session_id, entry.writeback_id))
        if session is None or item is None:
            return False
        if session.get("active_writeback_id") != entry.writeback_id or item.get("state") != "running":
            return False
        if bool(item.get("post_attempted")) != entry.post_attempted:
            return False  # a post attempt since the healer read the entry: it reads again
        abandoned = {"state": "abandoned", "abandon_reason": reason, "finished_at": now, "updated_at": now}
        last = LedgerEntry.model_validate({**entry.model_dump(), **abandoned}).summary_view()
        session.update(_stored({"last_writeback": last, "updated_at": now}))
        if pending is not None:
            session.update(_stored(dict(keep_pending(entry.kind, pending))))
        session.pop("active_writeback_id", None)
        session.pop("active_writeback_at", None)
        item.update(abandoned)
        return True

    # the conditions

    def _existing(self, account_id: str, session_id: str, writeback_id: str) -> dict[str, Any]:
        item = self.entries.get((account_id, session_id, writeback_id))
        if item is None:
            raise ConditionFailed
        return item

    def _finish(
        self,
        account_id: str,
        session_id: str,
        writeback_id: str,
        values: dict[str, Any],
        remove: tuple[str, ...] = (),
    ) -> None:
        """Only the write-back holding the lock, or the same one again once it released it."""
        session = self.sessions.get((account_id, session_id))
        if session is None:
            raise ConditionFailed
        held = session.get("active_writeback_id")
        again = held is None and (session.get("last_writeback") or {}).get("writeback_id") == writeback_id
        if held != writeback_id and not again:
            raise ConditionFailed
        session.update(_stored(values))
        for name in ("active_writeback_id", "active_writeback_at", *remove):
            session.pop(name, None)


# --- the PSA -------------------------------------------------------------------------------------------

_VISIBILITY: dict[NoteKind, tuple[bool, bool]] = {
    # (customer_visible, internal_analysis) that each kind needs
    NoteKind.resolution: (True, False),
    NoteKind.internal_analysis: (False, True),
}

Visibility = Literal["honoured", "wrong_repairable", "wrong_sticky"]


@dataclass
class FakeNote:
    id: str
    ticket_id: str
    text: str
    customer_visible: bool
    internal_analysis: bool
    # Sticky: an update of the note's visibility is accepted and changes nothing (a tenant's workflow).
    sticky_visibility: bool = False

    def shown(self) -> PostedNote:
        flags = {"customerVisible": self.customer_visible, "internalAnalysis": self.internal_analysis}
        return PostedNote(
            id=self.id,
            ticket_id=self.ticket_id,
            text=self.text,
            customer_visible=self.customer_visible,
            internal_analysis=self.internal_analysis,
            flags=flags,
        )


@dataclass
class FakeTicket:
    id: str
    board_id: int
    board_name: str
    status: StatusRef
    record_type: str = "ServiceTicket"
    # A board workflow that answers 200 to a status change and keeps the status.
    ignores_status_changes: bool = False

    def shown(self) -> Ticket:
        return Ticket(
            id=self.id,
            summary=f"Ticket {self.id}",
            board_id=self.board_id,
            board_name=self.board_name,
            status=self.status,
            closed=False,
            record_type=self.record_type,
        )


NEW = StatusRef(1, "New")
RESOLVED = StatusRef(5, "Resolved")
ESCALATED = StatusRef(7, "Escalated")
BOARD_STATUSES = [
    BoardStatus(id=1, name="New", board_id=10, inactive=False, closed=False),
    BoardStatus(id=5, name="Resolved", board_id=10, inactive=False, closed=True),
    BoardStatus(id=7, name="Escalated", board_id=10, inactive=False, closed=False),
    BoardStatus(id=9, name="Retired", board_id=10, inactive=True, closed=False),
]


@dataclass
class FakePSA:
    """One tenant's PSA in memory, implementing `PSAProvider`; what it was asked is in `calls`.

    Knobs, each the misbehaviour of a real PSA:
    - `visibility`: notes posted with the wrong visibility, which an update repairs or not (sticky);
    - `ignore_note_text_updates`: a note update is answered 200 and the text stays as it was;
    - `rate_limit(operation, retry_after, times)`: the next calls answer 429 with Retry-After;
    - `lose_next_post_answers`: the note is stored, then the connection drops before the answer;
    - `FakeTicket.ignores_status_changes`, `delete_note`: a board that ignores status changes, a note deleted.
    """

    name: str = "connectwise"
    tickets: dict[str, FakeTicket] = field(default_factory=dict)
    boards: dict[int, list[BoardStatus]] = field(default_factory=lambda: {10: list(BOARD_STATUSES)})
    notes: dict[str, list[FakeNote]] = field(default_factory=dict)
    visibility: Visibility = "honoured"
    ignore_note_text_updates: bool = False
    lose_next_post_answers: int = 0
    # What check_note_settings raises (a tenant whose note settings are unknown or not configured).
    note_settings_error: PSAError | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    open_contexts: int = 0
    _rate_limits: dict[str, list[int]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(501))

    # test set-up and inspection

    def add_ticket(self, ticket_id: str = "1001", *, status: StatusRef = NEW, **fields: Any) -> FakeTicket:
        ticket = FakeTicket(
            id=ticket_id,
            board_id=fields.pop("board_id", 10),
            board_name=fields.pop("board_name", "Help Desk"),
            status=status,
            **fields,
        )
        self.tickets[ticket_id] = ticket
        return ticket

    def add_note(self, ticket_id: str, text: str, kind: NoteKind, *, customer_visible: bool | None = None) -> FakeNote:
        """A note already on the ticket (an earlier write-back's), optionally with another visibility."""
        visible, internal = _VISIBILITY[kind]
        note = FakeNote(
            id=str(next(self._ids)),
            ticket_id=ticket_id,
            text=text,
            customer_visible=visible if customer_visible is None else customer_visible,
            internal_analysis=internal,
        )
        self.notes.setdefault(ticket_id, []).append(note)
        return note

    def note(self, ticket_id: str, note_id: str) -> FakeNote:
        return next(n for n in self.notes.get(ticket_id, []) if n.id == note_id)

    def notes_on(self, ticket_id: str) -> list[FakeNote]:
        return list(self.notes.get(ticket_id, []))

    def delete_note(self, ticket_id: str, note_id: str) -> None:
        self.notes[ticket_id] = [n for n in self.notes.get(ticket_id, []) if n.id != note_id]

    def rate_limit(self, operation: str, *, retry_after: int, times: int = 1) -> None:
        self._rate_limits.setdefault(operation, []).extend([retry_after] * times)

    def made(self, operation: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == operation]

    # PSAProvider

    def __enter__(self) -> Self:
        self.open_contexts += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.open_contexts -= 1

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        self._call("fetch_ticket", ticket_id)
        return self._ticket(ticket_id).shown()

    def board_statuses(self, board_id: int) -> list[BoardStatus]:
        return list(self.boards.get(board_id, []))

    def check_target_status(self, ticket: Ticket, status_id: int) -> BoardStatus:
        self._call("check_target_status", ticket.id, status_id)
        statuses = self.board_statuses(ticket.board_id)
        found = next((s for s in statuses if s.id == status_id), None)
        if found is None or found.inactive:
            raise PSAStatusNotOnBoard(
                board_id=ticket.board_id,
                board_name=ticket.board_name,
                status_id=status_id,
                valid_statuses=[s for s in statuses if not s.inactive],
                inactive=found is not None,
            )
        return found

    def check_note_settings(self, kind: NoteKind) -> None:
        self.calls.append(("check_note_settings", kind))
        if self.note_settings_error is not None:
            raise self.note_settings_error

    def post_note(self, ticket_id: str, text: str, kind: NoteKind) -> PostedNote:
        self._call("post_note", ticket_id, text, kind)
        self._ticket(ticket_id)
        note = self.add_note(ticket_id, text, kind)
        if self.visibility != "honoured":
            note.customer_visible, note.internal_analysis = not note.customer_visible, not note.internal_analysis
            note.sticky_visibility = self.visibility == "wrong_sticky"
        if self.lose_next_post_answers:
            self.lose_next_post_answers -= 1
            raise PSATransientError(f"The connection dropped after posting to ticket {ticket_id} (fake).")
        return note.shown()

    def get_note(self, ticket_id: str, note_id: str) -> PostedNote:
        self._call("get_note", ticket_id, note_id)
        return self._note(ticket_id, note_id).shown()

    def update_note(self, ticket_id: str, note_id: str, *, kind: NoteKind, text: str | None = None) -> None:
        self._call("update_note", ticket_id, note_id, kind, text)
        note = self._note(ticket_id, note_id)
        if not note.sticky_visibility:
            note.customer_visible, note.internal_analysis = _VISIBILITY[kind]
        if text is not None and not self.ignore_note_text_updates:
            note.text = text

    def visibility_matches(self, note: PostedNote, kind: NoteKind) -> bool:
        return (note.customer_visible, note.internal_analysis) == _VISIBILITY[kind]

    def find_note_by_marker(self, ticket_id: str, marker: str) -> PostedNote | None:
        self._call("find_note_by_marker", ticket_id, marker)
        for note in reversed(self.notes.get(ticket_id, [])):  # newest first, as the PSAs list them
            if contains_marker(note.text, marker):
                return note.shown()
        return None

    def change_status(self, ticket_id: str, status_id: int, *, notify_customer: bool = True) -> None:
        self._call("change_status", ticket_id, status_id, notify_customer)
        ticket = self._ticket(ticket_id)
        if not ticket.ignores_status_changes:
            status = next(s for s in self.board_statuses(ticket.board_id) if s.id == status_id)
            ticket.status = StatusRef(status.id, status.name)

    # the wire, as far as a fake has one

    def _call(self, operation: str, *args: Any) -> None:
        self.calls.append((operation, *args))
        pending = self._rate_limits.get(operation)
        if pending:
            raise PSARateLimited("The PSA is rate limiting us (fake).", retry_after=pending.pop(0))

    def _ticket(self, ticket_id: str) -> FakeTicket:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise PSATicketNotFound(f"Ticket {ticket_id} was not found (fake).")
        return ticket

    def _note(self, ticket_id: str, note_id: str) -> FakeNote:
        for note in self.notes.get(ticket_id, []):
            if note.id == note_id:
                return note
        raise PSANoteNotFound(f"Note {note_id} is not on ticket {ticket_id} (fake).")


def _typed_as_the_domain_sees_them(ledger: FakeLedger, psa: FakePSA) -> tuple[WritebackLedger, PSAProvider]:
    """mypy fails here when a fake's signatures drift from the interface the domain calls."""
    return ledger, psa
