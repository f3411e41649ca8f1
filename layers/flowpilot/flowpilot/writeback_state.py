"""The write-back's typed shapes: the execution state the state machine carries from step to step, the
ledger entry it keeps in DynamoDB, and the pending note a failed write-back leaves for the next post.

Step Functions passes JSON; each step validates it into `WritebackState` on entry and dumps it on exit
with every field present (the ASL's Choice states test `$.ticket`, `$.target_status_id` and
`$.verified_status_id` for null, and a missing path would be a runtime error there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowpilot.account_settings import Preferences
from flowpilot.models import SessionStatus, WritebackKind, WritebackOutcome, WritebackSummary, canonical_ticket_id


class _Shape(BaseModel):
    # Tolerant of fields a newer or older deployment added: an execution started before a deploy still runs.
    model_config = ConfigDict(extra="ignore")


class TicketRef(_Shape):
    provider: str
    ticket_id: str


class GuardedNote(_Shape):
    """An internal note an earlier, failed escalation left on a ticket: a post checks it is not customer-visible."""

    ticket_id: str
    note_id: str


class StepFailure(_Shape):
    """What a Catch puts at `$.error`: the error name and its cause (a JSON string from Lambda)."""

    Error: str | None = None
    Cause: str | None = None


class Drift(_Shape):
    checked_at: str
    status_id: int | None = None
    status_name: str | None = None
    drifted: bool = False
    error: dict[str, Any] | None = None


class WritebackState(_Shape):
    """The execution's input, extended by each step."""

    account_id: str
    session_id: str
    writeback_id: str
    kind: WritebackKind
    markdown: str
    summary: str | None = None
    ticket: TicketRef | None = None
    note_marker: str
    guard_internal_notes: list[GuardedNote] = Field(default_factory=list)
    preferences: Preferences = Field(default_factory=Preferences)
    drift_check_seconds: int = 120
    # prepare
    board_id: int | None = None
    board_name: str | None = None
    target_status_id: int | None = None
    target_status_name: str | None = None
    status_transition_skipped_reason: str | None = None
    # post_note
    note_id: str | None = None
    posted_at: str | None = None
    note_amended: bool = False
    # verify
    verified_status_id: int | None = None
    verified_status_name: str | None = None
    # record_success / record_local
    outcome: WritebackOutcome | None = None
    finished_at: str | None = None
    # drift_check / record_drift_check_failure
    drift: Drift | None = None
    # a Catch's ResultPath
    error: StepFailure | None = None

    @property
    def linked_ticket(self) -> TicketRef:
        """The ticket of a PSA write-back (every step but the local one has one)."""
        if self.ticket is None:
            raise ValueError("this write-back has no ticket")
        return self.ticket

    @property
    def session_status(self) -> SessionStatus:
        return SessionStatus.resolved if self.kind is WritebackKind.resolve else SessionStatus.escalated

    def outcome_for(self, *, local: bool) -> WritebackOutcome:
        if self.kind is WritebackKind.resolve:
            return WritebackOutcome.resolved_local if local else WritebackOutcome.resolved
        return WritebackOutcome.escalated_local if local else WritebackOutcome.escalated

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class LedgerError(_Shape):
    """An error as the client sees it (code, message, status, details), plus where it came from."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    status: int
    details: dict[str, Any] | None = None
    error_type: str | None = None
    step: str | None = None

    def for_client(self) -> dict[str, Any]:
        return self.model_dump(exclude={"error_type", "step"}, exclude_none=True)


class LedgerEntry(_Shape):
    """One write-back as stored: the source of truth for what was posted."""

    writeback_id: str
    session_id: str
    kind: WritebackKind
    state: Literal["running", "succeeded", "failed", "abandoned"]
    outcome: WritebackOutcome | None = None
    # Why a write-back was given up on without its state machine recording an end (see `store.abandon`).
    abandon_reason: str | None = None
    created_by: str
    created_at: str
    updated_at: str
    finished_at: str | None = None
    # What the engineer asked to post; `markdown` only once the ticket was read back showing it.
    requested_markdown: str | None = None
    markdown: str | None = None
    summary: str | None = None
    ticket: TicketRef | None = None
    board_id: int | None = None
    board_name: str | None = None
    post_attempted: bool = False
    note_id: str | None = None
    note_marker: str | None = None
    note_posted_at: str | None = None
    note_reused_from: str | None = None
    note_amended: bool = False
    note_verified_at: str | None = None
    replaced_note_id: str | None = None
    external_id: str | None = None
    posted_at: str | None = None
    target_status_id: int | None = None
    target_status_name: str | None = None
    status_change_sent_at: str | None = None
    verified_status_id: int | None = None
    verified_status_name: str | None = None
    status_transition_skipped_reason: str | None = None
    error: LedgerError | None = None
    last_error: LedgerError | None = None
    drift: Drift | None = None
    execution_arn: str | None = None

    def pending_note(self) -> PendingNote | None:
        """What this write-back leaves for the next post if it does not finish: its note, or the marker to
        find it by (the PSA may have stored it without answering)."""
        if not (self.post_attempted or self.note_id):
            return None
        return PendingNote(
            writeback_id=self.writeback_id,
            note_id=self.note_id,
            note_marker=self.note_marker,
            ticket_id=self.ticket.ticket_id if self.ticket else None,
            provider=self.ticket.provider if self.ticket else None,
        )

    def summary_view(self) -> WritebackSummary:
        """The session's `last_writeback`."""
        return WritebackSummary(
            writeback_id=self.writeback_id,
            kind=self.kind,
            state=str(self.state),
            outcome=str(self.outcome) if self.outcome else None,
            external_id=self.external_id,
            verified_status_id=self.verified_status_id,
            verified_status_name=self.verified_status_name,
            drift_detected=bool(self.drift and self.drift.drifted),
            error_code=self.error.code if self.error else None,
            updated_at=self.updated_at,
        )


class PendingNote(_Shape):
    """What a failed write-back leaves on the session so the next post of its kind to that ticket reuses its note.

    A session keeps one per kind and ticket: a post to another ticket (after a relink) that fails too leaves
    its own, and a relink back finds the first one still there.
    """

    writeback_id: str
    note_id: str | None = None
    note_marker: str | None = None
    ticket_id: str | None = None
    provider: str | None = None

    def is_for(self, ticket: TicketRef) -> bool:
        """Whether a post to `ticket` resumes this note (same PSA, same ticket under any spelling)."""
        return (
            bool(self.note_marker)
            and self.provider in (None, ticket.provider)
            and same_ticket(self.ticket_id, ticket.ticket_id)
        )


# The session attribute of a pending note: `pending_note_<kind>__<provider>__<ticket>`. Sessions stored before
# notes were kept per ticket have one `pending_note_<kind>`, read as one more of them.
_PENDING = "pending_note_"


def pending_attribute(kind: WritebackKind, provider: str | None, ticket_id: str | None) -> str:
    """The session attribute that keeps `kind`'s pending note for one ticket (a name DynamoDB takes unquoted)."""
    try:
        ticket = canonical_ticket_id(str(ticket_id))
    except ValueError:
        ticket = "".join(c for c in str(ticket_id) if c.isascii() and c.isalnum()) or "none"
    provider_name = "".join(c for c in str(provider or "any") if c.isascii() and c.isalnum())
    return f"{_PENDING}{kind.value}__{provider_name}__{ticket}"


def keep_pending(kind: WritebackKind, pending: PendingNote) -> dict[str, PendingNote]:
    """The session attribute (and value) that keeps `pending` for its ticket."""
    return {pending_attribute(kind, pending.provider, pending.ticket_id): pending}


def settled_attributes(kind: WritebackKind, ticket: TicketRef | None) -> tuple[str, ...]:
    """What a write-back of `kind` that succeeded on `ticket` removes: that ticket's pending note (and the single
    one of sessions stored before notes were kept per ticket)."""
    legacy = f"{_PENDING}{kind.value}"
    return (legacy,) if ticket is None else (legacy, pending_attribute(kind, ticket.provider, ticket.ticket_id))


def pending_attributes(session_item: dict[str, Any], kind: WritebackKind) -> list[str]:
    """The attributes of `session_item` that keep a pending note of `kind` (per ticket, and the older single one)."""
    legacy = f"{_PENDING}{kind.value}"
    return sorted(name for name in session_item if name == legacy or name.startswith(f"{legacy}__"))


def pending_notes(session_item: dict[str, Any], kind: WritebackKind) -> list[PendingNote]:
    """Every pending note of `kind` the session keeps, whatever its ticket."""
    raw = (session_item[name] for name in pending_attributes(session_item, kind))
    return [PendingNote.model_validate(value) for value in raw if isinstance(value, dict) and value.get("writeback_id")]


def pending_note_for(notes: Iterable[PendingNote], ticket: TicketRef | None) -> PendingNote | None:
    """Of a session's pending notes of one kind, the one a post to `ticket` resumes, if any."""
    if ticket is None:
        return None
    return next((note for note in notes if note.is_for(ticket)), None)


def same_ticket(a: object, b: object) -> bool:
    """Two spellings of one ticket id (" 01005" is 1005); anything that is not a ticket id matches nothing."""
    try:
        return canonical_ticket_id(str(a)) == canonical_ticket_id(str(b))
    except ValueError:
        return False
