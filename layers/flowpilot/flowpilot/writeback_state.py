"""The write-back's typed shapes: the execution state the state machine carries from step to step, the
ledger entry it keeps in DynamoDB, and the pending note a failed write-back leaves for the next post.

Step Functions passes JSON; each step validates it into `WritebackState` on entry and dumps it on exit
with every field present (the ASL's Choice states test `$.ticket`, `$.target_status_id` and
`$.verified_status_id` for null, and a missing path would be a runtime error there).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowpilot.account_settings import Preferences
from flowpilot.models import SessionStatus, WritebackKind, WritebackOutcome, WritebackSummary


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
    """What a failed write-back leaves on the session so the next post of its kind reuses its note."""

    writeback_id: str
    note_id: str | None = None
    note_marker: str | None = None
    ticket_id: str | None = None
    provider: str | None = None
