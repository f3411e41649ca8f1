"""Posting the final resolution note or escalation package to the session's PSA ticket.

The handler's side: validate, take the session's write-back lock, start the execution, wait a bounded
time for the ledger to reach a result, and answer exactly what happened.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from flowpilot import scanner
from flowpilot.account_settings import preferences_for
from flowpilot.clock import new_id, now_iso
from flowpilot.config import settings
from flowpilot.errors import (
    Conflict,
    FlowPilotError,
    NotFound,
    UpstreamUnavailable,
    error_from_record,
)
from flowpilot.identity import Caller
from flowpilot.models import (
    EscalationPackagePostRequest,
    ResolutionNotePostRequest,
    ResolutionPostResponse,
    SessionStatus,
    WritebackKind,
    canonical_ticket_id,
)
from flowpilot.observability import logger, metrics
from flowpilot.psa.base import note_marker
from flowpilot.psa.factory import check_configured
from flowpilot.sessions import get_session, require_active, session_item
from flowpilot.store import executions
from flowpilot.store import sessions as session_store
from flowpilot.store import writebacks as ledger
from flowpilot.writeback_state import (
    GuardedNote,
    LedgerEntry,
    LedgerError,
    PendingNote,
    TicketRef,
    WritebackState,
    pending_note_for,
    same_ticket,
)

# The answer waits at most one interval after the write-back ends; each poll is one small read.
POLL_INTERVAL_SECONDS = 0.1


class WritebackAccepted(BaseModel):
    """202: the PSA is still working (retries, rate limits); poll `status_url`."""

    writeback_id: str
    state: Literal["running"] = "running"
    status_url: str


class WritebackLedgerEntry(LedgerEntry):
    """`GET …/writebacks/{id}`: the ledger entry as stored (`markdown` is the text the ticket was read back
    showing; `requested_markdown` what the post asked for; `abandon_reason` why an abandoned one was)."""


def first_line_summary(markdown: str) -> str:
    for line in markdown.splitlines():
        text = re.sub(r"^\s*(#+|[-*>]|\d+\.)\s*", "", line).strip().strip("*_").strip()
        if text:
            return text[:500]
    return markdown.strip()[:500]


_LOCK_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What a post ended in: the verified answer (200) or still running (202); errors are raised."""

    answer: ResolutionPostResponse | WritebackAccepted

    @property
    def finished(self) -> bool:
        return isinstance(self.answer, ResolutionPostResponse)


@dataclass(frozen=True, slots=True)
class _Started:
    writeback_id: str
    state: WritebackState


def post(
    caller: Caller, session_id: str, request: ResolutionNotePostRequest | EscalationPackagePostRequest
) -> PostOutcome:
    """Check the text, lock the session on its ticket, start the state machine, and wait a bounded time."""
    kind = WritebackKind.resolve if isinstance(request, ResolutionNotePostRequest) else WritebackKind.escalate
    if kind is WritebackKind.resolve and not request.acknowledge_warnings:
        _refuse_secrets(request.markdown)
    started = _lock_and_describe(caller, session_id, kind, request)
    _start_execution(caller, session_id, started)
    return wait_for_result(caller, session_id, started.writeback_id, settings().writeback_wait_seconds)


def _summary_of(request: ResolutionNotePostRequest | EscalationPackagePostRequest) -> str:
    explicit = (
        request.resolution_summary if isinstance(request, ResolutionNotePostRequest) else request.escalation_reason
    )
    return explicit or first_line_summary(request.markdown)


def _lock_and_describe(
    caller: Caller,
    session_id: str,
    kind: WritebackKind,
    request: ResolutionNotePostRequest | EscalationPackagePostRequest,
) -> _Started:
    """Read the session, and take its lock on the ticket it links, writing the ledger entry in the same write.

    A relink that lands between the read and the lock fails the lock's condition: read again and retry.
    """
    writeback_id = new_id("wb")
    summary = _summary_of(request)
    for attempt in range(_LOCK_ATTEMPTS):
        raw_session = session_item(caller, session_id)  # one read: the session, its ticket and pending notes
        session = require_active(session_store.to_session(raw_session))
        ticket = (
            TicketRef(provider=session.psa_ticket.provider.value, ticket_id=session.psa_ticket.ticket_id)
            if session.psa_ticket
            else None
        )
        if ticket is not None:
            check_configured(caller.account_id, ticket.provider)  # fail fast: 422 before anything starts
        pending = pending_note_for(ledger.pending_notes(raw_session, kind), ticket)
        entry = _ledger_entry(caller, session_id, writeback_id, kind, request.markdown, summary, ticket, pending)
        try:
            ledger.take_lock_and_start(caller.account_id, entry, _stored_ticket(raw_session), int(time.time()))
        except session_store.ConditionFailed:
            current = session_item(caller, session_id)
            require_active(session_store.to_session(current))
            if heal_dead_lock(caller, session_id, current):
                continue  # the lock belonged to a write-back that will never end: try again, now free
            if current.get("active_writeback_id") or attempt == _LOCK_ATTEMPTS - 1:
                running = current.get("active_writeback_id")
                raise Conflict(
                    f"A write-back of session {session_id} is already running; see its result before posting again.",
                    code="writeback_in_progress",
                    # So a client can follow the running one (GET …/writebacks/{id}) instead of guessing.
                    details={"writeback_id": str(running)} if running else None,
                ) from None
            logger.info("the session's ticket changed while posting; reading it again")
            continue
        state = WritebackState(
            account_id=caller.account_id,
            session_id=session_id,
            writeback_id=writeback_id,
            kind=kind,
            markdown=request.markdown,
            summary=summary,
            ticket=ticket,
            note_marker=entry.note_marker or note_marker(writeback_id),
            guard_internal_notes=_internal_notes_to_guard(kind, ticket, raw_session),
            preferences=preferences_for(caller.account_id),
            drift_check_seconds=settings().drift_check_seconds,
        )
        return _Started(writeback_id=writeback_id, state=state)
    raise AssertionError("unreachable")


# The writebacks Lambda starts its execution within its 29 s timeout; a lock older than this with no
# execution was taken by a post that died before starting it.
LOCK_START_GRACE_SECONDS = 120


def heal_dead_lock(caller: Caller, session_id: str, raw_session: dict[str, Any]) -> bool:
    """Free the session from a write-back that will never record an end, keeping its note for a resume.

    A running execution keeps its lock however long it takes. One that ended without recording (an operator's
    StopExecution, a failure the recording steps could not record) or never started (the post died between
    the lock and StartExecution) gives it up: its entry is marked abandoned, with the reason, in the same
    conditional write that releases the lock, so two healers cannot both act.
    """
    held = ledger.held_lock(raw_session)
    if held is None:
        return False
    writeback_id, taken_at = held
    where = executions.writeback_execution(writeback_id)
    if where == "running" or (where == "missing" and time.time() - taken_at < LOCK_START_GRACE_SECONDS):
        return False
    entry = ledger.get(caller.account_id, session_id, writeback_id)
    if entry is None or entry.state != "running":
        return False
    reason = "never_started" if where == "missing" else "ended_without_recording"
    healed = ledger.abandon(
        caller.account_id, session_id, entry, reason=reason, pending=entry.pending_note(), now=now_iso()
    )
    if healed:
        metrics.add_metric(name="WritebackLockHealed", unit="Count", value=1)
        logger.error(
            "released a session lock its write-back would never release",
            extra={"writeback_id": writeback_id, "reason": reason, "note_id": entry.note_id},
        )
    return healed


def _start_execution(caller: Caller, session_id: str, started: _Started) -> None:
    try:
        arn = executions.start_writeback(started.writeback_id, started.state.to_json())
    except Exception as error:
        logger.exception("could not start the write-back execution")
        _abandon(caller, session_id, started.writeback_id)
        raise UpstreamUnavailable(
            "The write-back could not be started; nothing was posted. Try again.",
            code="writeback_not_started",
            retry_after=5,
        ) from error
    ledger.update(caller.account_id, session_id, started.writeback_id, {"execution_arn": arn})


def _refuse_secrets(markdown: str) -> None:
    scanner.refuse_secrets(
        "The customer-visible note looks like it contains secrets; remove them, or resend with "
        "acknowledge_warnings: true if they are not secrets.",
        {"markdown": markdown},
    )


def _ledger_entry(
    caller: Caller,
    session_id: str,
    writeback_id: str,
    kind: WritebackKind,
    markdown: str,
    summary: str,
    ticket: TicketRef | None,
    pending: PendingNote | None,
) -> LedgerEntry:
    """The ledger entry a write-back starts with; a resume carries the earlier note so it is never posted twice."""
    resume = bool(ticket and pending and pending.is_for(ticket))
    now = now_iso()
    entry = LedgerEntry(
        writeback_id=writeback_id,
        session_id=session_id,
        kind=kind,
        state="running",
        created_by=caller.engineer_id,
        created_at=now,
        updated_at=now,
        requested_markdown=markdown,
        summary=summary,
        ticket=ticket,
        note_marker=note_marker(writeback_id),
    )
    if resume and pending is not None:
        entry = entry.model_copy(
            update={
                "note_marker": pending.note_marker,
                "note_reused_from": pending.writeback_id,
                "post_attempted": True,
                "note_id": pending.note_id,
            }
        )
    return entry


def _internal_notes_to_guard(
    kind: WritebackKind, ticket: TicketRef | None, raw_session: dict[str, Any]
) -> list[GuardedNote]:
    """Failed escalations' internal notes this post will not itself settle (a resolve post, or a post to another
    ticket after a relink): each must be found internal before this post can answer 200."""
    if ticket is None:
        return []
    candidates: list[tuple[str, str, str | None]] = [
        (g.ticket_id, g.note_id, None) for g in ledger.guarded_notes(raw_session)
    ]
    for pending in ledger.pending_notes(raw_session, WritebackKind.escalate):
        if pending.note_id and pending.ticket_id:
            candidates.append((pending.ticket_id, pending.note_id, pending.provider))
    guards: list[GuardedNote] = []
    for ticket_id, note_id, provider in candidates:
        if (provider or ticket.provider) != ticket.provider:
            continue
        if kind is WritebackKind.escalate and same_ticket(ticket_id, ticket.ticket_id):
            continue  # resumed by this very post, which reads it back and repairs it
        guard = GuardedNote(ticket_id=canonical_ticket_id(ticket_id), note_id=note_id)
        if guard not in guards:
            guards.append(guard)
    return guards


def _stored_ticket(raw_session: dict[str, Any]) -> TicketRef | None:
    # The lock's condition compares the stored spelling, which predates canonical ids for older sessions.
    stored = raw_session.get("psa_ticket")
    if not isinstance(stored, dict) or not stored.get("ticket_id"):
        return None
    return TicketRef(ticket_id=str(stored["ticket_id"]), provider=str(stored.get("provider")))


def _abandon(caller: Caller, session_id: str, writeback_id: str) -> None:
    """The execution never started: the ledger says so and the session is free again."""
    now = now_iso()
    error = LedgerError(code="writeback_not_started", message="The execution could not be started.", status=503)
    entry = ledger.update(
        caller.account_id,
        session_id,
        writeback_id,
        {"state": "failed", "error": error, "finished_at": now, "updated_at": now},
    )
    ledger.release_session(
        caller.account_id,
        session_id,
        writeback_id,
        kind=entry.kind,
        last_writeback=entry.summary_view(),
        pending=None,
        guards=[],
        now=now,
    )


def wait_for_result(caller: Caller, session_id: str, writeback_id: str, timeout: float) -> PostOutcome:
    """Poll the write-back's small end item until it ends (then read the entry once) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if ledger.finished_state(caller.account_id, session_id, writeback_id) is not None:
            entry = ledger.get(caller.account_id, session_id, writeback_id)
            assert entry is not None
            if entry.state == "succeeded":
                return PostOutcome(_response(entry))
            if entry.state == "abandoned":
                raise _abandoned_error(entry)
            if entry.state == "failed" and entry.error is not None:
                record = entry.error.for_client()
                raise error_from_record(
                    {**record, "details": {**(record.get("details") or {}), "writeback_id": writeback_id}}
                )
        if time.monotonic() >= deadline:
            url = f"/ai-sessions/{session_id}/writebacks/{writeback_id}"
            return PostOutcome(WritebackAccepted(writeback_id=writeback_id, status_url=url))
        time.sleep(min(POLL_INTERVAL_SECONDS, max(0.0, deadline - time.monotonic())))


def _abandoned_error(entry: LedgerEntry) -> FlowPilotError:
    kept = f" Note {entry.note_id} is on the ticket and will be reused." if entry.note_id else ""
    return error_from_record(
        {
            "code": "writeback_abandoned",
            "message": "The write-back stopped without recording its result "
            f"({entry.abandon_reason}); the session is free to post again.{kept}",
            "status": 502,
            "details": {
                "writeback_id": entry.writeback_id,
                "abandon_reason": entry.abandon_reason,
                "note_id": entry.note_id,
                "note_kept": bool(entry.note_id),
            },
        }
    )


def _response(entry: LedgerEntry) -> ResolutionPostResponse:
    assert entry.outcome is not None
    return ResolutionPostResponse(
        outcome=entry.outcome,
        session_status=SessionStatus.resolved if entry.kind is WritebackKind.resolve else SessionStatus.escalated,
        external_id=entry.external_id,
        posted_at=entry.posted_at or entry.finished_at,
        verified_status_id=entry.verified_status_id,
        verified_status_name=entry.verified_status_name,
        status_transition_skipped_reason=entry.status_transition_skipped_reason,
        writeback_id=entry.writeback_id,
        drift_check=_drift_state(entry),
        note_amended=entry.note_amended,
    )


def _drift_state(entry: LedgerEntry) -> str | None:
    if entry.verified_status_id is None:
        return None
    if entry.drift is None:
        return "pending"
    if entry.drift.error:
        return "failed"
    return "drifted" if entry.drift.drifted else "stable"


def get_entry(caller: Caller, session_id: str, writeback_id: str) -> WritebackLedgerEntry:
    get_session(caller, session_id)
    entry = ledger.get(caller.account_id, session_id, writeback_id)
    if entry is None:
        raise NotFound(f"Write-back {writeback_id} not found.", code="writeback_not_found")
    return WritebackLedgerEntry.model_validate(entry.model_dump(mode="json", exclude_none=True))
