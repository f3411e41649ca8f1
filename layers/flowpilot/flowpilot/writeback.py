"""Posting the final resolution note or escalation package to the session's PSA ticket (DESIGN §5).

The handler's side: validate, take the session's write-back lock, start the execution, wait a bounded
time for the ledger to reach a result, and answer exactly what happened.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from flowpilot import scanner
from flowpilot.account_settings import preferences_for
from flowpilot.clock import new_id, now_iso
from flowpilot.config import settings
from flowpilot.errors import Conflict, InvalidInput, NotFound, UpstreamUnavailable, error_from_record
from flowpilot.identity import Caller
from flowpilot.models import (
    EscalationPackagePostRequest,
    ResolutionNotePostRequest,
    ResolutionPostResponse,
    SessionStatus,
    WritebackKind,
    WritebackOutcome,
    canonical_ticket_id,
)
from flowpilot.observability import logger
from flowpilot.psa.base import note_marker
from flowpilot.psa.factory import check_configured
from flowpilot.sessions import get_session, require_active, session_item
from flowpilot.store import executions
from flowpilot.store import sessions as session_store
from flowpilot.store import writebacks as ledger

# The answer waits at most one interval after the write-back ends; each poll is one small read.
POLL_INTERVAL_SECONDS = 0.1


class WritebackAccepted(BaseModel):
    """202: the PSA is still working (retries, rate limits); poll `status_url`."""

    writeback_id: str
    state: Literal["running"] = "running"
    status_url: str


class WritebackLedgerEntry(BaseModel):
    writeback_id: str
    session_id: str
    kind: WritebackKind
    state: Literal["running", "succeeded", "failed"]
    outcome: WritebackOutcome | None = None
    created_by: str
    created_at: str
    updated_at: str
    finished_at: str | None = None
    markdown: str | None = Field(
        default=None, description="The text the ticket was read back showing (without the marker line)."
    )
    requested_markdown: str | None = None
    summary: str | None = None
    ticket: dict[str, Any] | None = None
    board_id: int | None = None
    board_name: str | None = None
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
    verified_status_id: int | None = None
    verified_status_name: str | None = None
    status_transition_skipped_reason: str | None = None
    error: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    execution_arn: str | None = None


def first_line_summary(markdown: str) -> str:
    for line in markdown.splitlines():
        text = re.sub(r"^\s*(#+|[-*>]|\d+\.)\s*", "", line).strip().strip("*_").strip()
        if text:
            return text[:500]
    return markdown.strip()[:500]


_LOCK_ATTEMPTS = 3


def post(
    caller: Caller, session_id: str, request: ResolutionNotePostRequest | EscalationPackagePostRequest
) -> tuple[ResolutionPostResponse | WritebackAccepted, int]:
    kind = WritebackKind.resolve if isinstance(request, ResolutionNotePostRequest) else WritebackKind.escalate
    if kind is WritebackKind.resolve and not request.acknowledge_warnings:
        _refuse_secrets(request.markdown)
    explicit = (
        request.resolution_summary if isinstance(request, ResolutionNotePostRequest) else request.escalation_reason
    )
    summary = explicit or first_line_summary(request.markdown)
    writeback_id = new_id("wb")
    for attempt in range(_LOCK_ATTEMPTS):
        raw_session = session_item(caller, session_id)  # one read: the session, its ticket and pending notes
        session = require_active(session_store.to_session(raw_session))
        ticket = session.psa_ticket.model_dump(mode="json") if session.psa_ticket else None
        if ticket is not None:
            check_configured(caller.account_id, ticket["provider"])  # fail fast: 422 before anything starts
        entry = _ledger_entry(caller, session_id, writeback_id, kind, request.markdown, summary, ticket, raw_session)
        try:
            # The ticket read above is the ticket the lock is taken on: a relink in between fails the condition.
            ledger.start(caller.account_id, session_id, entry, _stored_ticket(raw_session))
            break
        except session_store.ConditionFailed:
            current = session_item(caller, session_id)
            require_active(session_store.to_session(current))
            if current.get("active_writeback_id") or attempt == _LOCK_ATTEMPTS - 1:
                raise Conflict(
                    f"A write-back of session {session_id} is already running; see its result before posting again.",
                    code="writeback_in_progress",
                ) from None
            logger.info("the session's ticket changed while posting; reading it again")
    payload = {
        "account_id": caller.account_id,
        "session_id": session_id,
        "writeback_id": writeback_id,
        "kind": kind.value,
        "markdown": request.markdown,
        "summary": summary,
        "ticket": ticket,
        "note_marker": entry["note_marker"],
        "guard_internal_notes": _internal_notes_to_guard(kind, ticket, raw_session),
        "preferences": preferences_for(caller.account_id).model_dump(mode="json"),
        "drift_check_seconds": settings().drift_check_seconds,
    }
    try:
        arn = executions.start_writeback(writeback_id, payload)
    except Exception as error:
        logger.exception("could not start the write-back execution")
        _abandon(caller, session_id, writeback_id)
        raise UpstreamUnavailable(
            "The write-back could not be started; nothing was posted. Try again.",
            code="writeback_not_started",
            retry_after=5,
        ) from error
    ledger.update(caller.account_id, session_id, writeback_id, {"execution_arn": arn})
    return wait_for_result(caller, session_id, writeback_id, settings().writeback_wait_seconds)


def _refuse_secrets(markdown: str) -> None:
    findings = scanner.scan(markdown)
    if findings:
        raise InvalidInput(
            "The customer-visible note looks like it contains secrets; remove them, or resend with "
            "acknowledge_warnings: true if they are not secrets.",
            code="sensitive_content",
            details={
                "warnings": [
                    {"kind": f.kind, "line": f.line, "column": f.column, "excerpt": f.excerpt} for f in findings
                ]
            },
        )


def _ledger_entry(
    caller: Caller,
    session_id: str,
    writeback_id: str,
    kind: WritebackKind,
    markdown: str,
    summary: str,
    ticket: dict[str, Any] | None,
    raw_session: dict[str, Any],
) -> dict[str, Any]:
    """The ledger entry a write-back starts with; a resume carries the earlier note so it is never posted twice."""
    pending = raw_session.get(f"pending_note_{kind.value}") or {}
    resume = bool(ticket and _same_ticket(pending.get("ticket_id"), ticket["ticket_id"]) and pending.get("note_marker"))
    now = now_iso()
    entry: dict[str, Any] = {
        "writeback_id": writeback_id,
        "session_id": session_id,
        "kind": kind.value,
        "state": "running",
        "created_by": caller.engineer_id,
        "created_at": now,
        "updated_at": now,
        # What the engineer asked to post; `markdown` is set once the ticket is read back showing it.
        "requested_markdown": markdown,
        "summary": summary,
        "note_marker": pending["note_marker"] if resume else note_marker(writeback_id),
    }
    if ticket:
        entry["ticket"] = ticket
    if resume:
        entry.update(note_reused_from=pending["writeback_id"], post_attempted=True)
        if pending.get("note_id"):
            entry["note_id"] = pending["note_id"]
    return entry


def _internal_notes_to_guard(
    kind: WritebackKind, ticket: dict[str, Any] | None, raw_session: dict[str, Any]
) -> list[dict[str, str]]:
    """Failed escalations' internal notes this post will not itself settle (a resolve post, or a post to another
    ticket after a relink): each must be found internal before this post can answer 200."""
    if ticket is None:
        return []
    # Notes earlier failed posts already had to guard (a relink may have left them on another ticket),
    # and the newest failed escalation's own note.
    candidates = [*(raw_session.get("guard_internal_notes") or []), raw_session.get("pending_note_escalate") or {}]
    guards: list[dict[str, str]] = []
    for note in candidates:
        if not isinstance(note, dict) or not note.get("note_id") or not note.get("ticket_id"):
            continue
        if (note.get("provider") or ticket["provider"]) != ticket["provider"]:
            continue
        if kind is WritebackKind.escalate and _same_ticket(note["ticket_id"], ticket["ticket_id"]):
            continue  # resumed by this very post, which reads it back and repairs it
        guard = {"ticket_id": canonical_ticket_id(str(note["ticket_id"])), "note_id": str(note["note_id"])}
        if guard not in guards:
            guards.append(guard)
    return guards


def _stored_ticket(raw_session: dict[str, Any]) -> dict[str, str] | None:
    # The lock's condition compares the stored spelling, which predates canonical ids for older sessions.
    stored = raw_session.get("psa_ticket")
    if not isinstance(stored, dict) or not stored.get("ticket_id"):
        return None
    return {"ticket_id": str(stored["ticket_id"]), "provider": str(stored.get("provider"))}


def _same_ticket(a: object, b: object) -> bool:
    try:
        return canonical_ticket_id(str(a)) == canonical_ticket_id(str(b))
    except ValueError:
        return False


def _abandon(caller: Caller, session_id: str, writeback_id: str) -> None:
    now = now_iso()
    error = {"code": "writeback_not_started", "message": "The execution could not be started.", "status": 503}
    ledger.update(
        caller.account_id,
        session_id,
        writeback_id,
        {"state": "failed", "error": error, "finished_at": now, "updated_at": now},
    )
    ledger.finish_session(caller.account_id, session_id, writeback_id, {"updated_at": now})


def wait_for_result(
    caller: Caller, session_id: str, writeback_id: str, timeout: float
) -> tuple[ResolutionPostResponse | WritebackAccepted, int]:
    deadline = time.monotonic() + timeout
    while True:
        if ledger.finished_state(caller.account_id, session_id, writeback_id) is not None:
            entry = ledger.get(caller.account_id, session_id, writeback_id)
            assert entry is not None
            if entry["state"] == "succeeded":
                return _response(entry), 200
            if entry["state"] == "failed" and entry.get("error"):
                raise error_from_record(
                    {
                        **entry["error"],
                        "details": {**(entry["error"].get("details") or {}), "writeback_id": writeback_id},
                    }
                )
        if time.monotonic() >= deadline:
            url = f"/ai-sessions/{session_id}/writebacks/{writeback_id}"
            return WritebackAccepted(writeback_id=writeback_id, status_url=url), 202
        time.sleep(min(POLL_INTERVAL_SECONDS, max(0.0, deadline - time.monotonic())))


def _response(entry: dict[str, Any]) -> ResolutionPostResponse:
    kind = WritebackKind(entry["kind"])
    return ResolutionPostResponse(
        outcome=WritebackOutcome(entry["outcome"]),
        session_status=SessionStatus.resolved if kind is WritebackKind.resolve else SessionStatus.escalated,
        external_id=entry.get("external_id"),
        posted_at=entry.get("posted_at") or entry.get("finished_at"),
        verified_status_id=entry.get("verified_status_id"),
        verified_status_name=entry.get("verified_status_name"),
        status_transition_skipped_reason=entry.get("status_transition_skipped_reason"),
        writeback_id=entry["writeback_id"],
        drift_check=_drift_state(entry),
        note_amended=bool(entry.get("note_amended")),
    )


def _drift_state(entry: dict[str, Any]) -> str | None:
    if entry.get("verified_status_id") is None:
        return None
    drift = entry.get("drift")
    if not drift:
        return "pending"
    if drift.get("error"):
        return "failed"
    return "drifted" if drift.get("drifted") else "stable"


def get_entry(caller: Caller, session_id: str, writeback_id: str) -> WritebackLedgerEntry:
    get_session(caller, session_id)
    entry = ledger.get(caller.account_id, session_id, writeback_id)
    if entry is None:
        raise NotFound(f"Write-back {writeback_id} not found.", code="writeback_not_found")
    return WritebackLedgerEntry.model_validate(entry)
