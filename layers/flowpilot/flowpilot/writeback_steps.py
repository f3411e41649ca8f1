"""The write-back state machine's steps: each takes the execution state and returns it, extended.

Exactly one note, always: the note id goes on the ledger the moment the PSA returns it; a retried or
resumed post looks at the ledger first, then searches the ticket's notes for the write-back's marker.
Every fact a 200 claims is read back from the PSA first: the note (text and visibility) and the status.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from flowpilot.account_settings import Preferences, status_setting
from flowpilot.clock import now_iso
from flowpilot.errors import Conflict, FlowPilotError, InvalidInput, StoreUnavailable, error_record
from flowpilot.models import WritebackKind
from flowpilot.observability import MetricUnit, emit, logger, metrics
from flowpilot.psa.base import (
    NoteKind,
    PostedNote,
    PSAError,
    PSANoteNotAmended,
    PSANoteNotFound,
    PSANoteVisibilityMismatch,
    PSAProvider,
    PSARateLimited,
    PSAStatusVerificationError,
    same_text,
    with_marker,
    without_marker,
)
from flowpilot.psa.factory import provider_for_account
from flowpilot.store import dynamo
from flowpilot.store import writebacks as ledger
from flowpilot.writeback_state import Drift, LedgerEntry, LedgerError, StepFailure, WritebackState

# A 429's Retry-After is honoured inside the step up to this long; longer waits go back to the
# state machine's Retry (backoff with jitter), so a Lambda never idles for minutes.
MAX_INLINE_RETRY_AFTER_SECONDS = 10
INLINE_RATE_LIMIT_ATTEMPTS = 3

provider_factory: Callable[[str, str, Preferences], PSAProvider] = provider_for_account


# --- the PSA, as every step uses it ------------------------------------------------------------------


@contextlib.contextmanager
def psa(state: WritebackState) -> Iterator[PSAProvider]:
    """The account's provider for the write-back's ticket, closed afterwards; its calls honour a short 429."""
    provider = provider_factory(state.account_id, state.linked_ticket.provider, state.preferences)
    with provider:
        yield cast(PSAProvider, _HonouringRetryAfter(provider))


class _HonouringRetryAfter:
    """Delegates to a provider; a call answered 429 with a short Retry-After waits and goes again."""

    def __init__(self, provider: PSAProvider) -> None:
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._provider, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(INLINE_RATE_LIMIT_ATTEMPTS):
                try:
                    return attribute(*args, **kwargs)
                except PSARateLimited as error:
                    last = attempt == INLINE_RATE_LIMIT_ATTEMPTS - 1
                    if error.retry_after > MAX_INLINE_RETRY_AFTER_SECONDS or last:
                        raise
                    logger.info("PSA rate limited; waiting as asked", extra={"retry_after": error.retry_after})
                    time.sleep(error.retry_after)
            raise AssertionError("unreachable")

        return call


# --- steps -------------------------------------------------------------------------------------------


def record_local(state: WritebackState) -> WritebackState:
    return _close_session(state, local=True)


def prepare(state: WritebackState) -> WritebackState:
    """Fetch the ticket and settle the target status for its board before anything is posted."""
    if _entry(state).state != "running":
        raise _abandoned(state)  # healed while it waited to start: the session is someone else's now
    with psa(state) as p:
        ticket = p.fetch_ticket(state.linked_ticket.ticket_id)
        if ticket.record_type != "ServiceTicket":
            raise InvalidInput(
                f"Ticket {ticket.id} is a {ticket.record_type}; only service tickets can be written back. "
                "Nothing was posted.",
                code="psa_ticket_not_service_ticket",
            )
        state.board_id, state.board_name, state.target_status_id = ticket.board_id, ticket.board_name, None
        provider = state.linked_ticket.provider
        target = state.preferences.target_status(provider, state.kind.value, ticket.board_id)
        if target is None:
            setting = status_setting(provider, state.kind.value)
            if provider == "connectwise":
                where = f"board '{ticket.board_name}' ({ticket.board_id})"
                setting = f"{setting} or {setting.replace('_id', '_ids_by_board')}"
            else:
                where = "this account"
            state.status_transition_skipped_reason = (
                f"No {state.kind.value} status is configured for {where}; set {setting} in the account preferences."
            )
        else:
            status = p.check_target_status(ticket, target)
            state.target_status_id, state.target_status_name = status.id, status.name
        # Everything the note needs (visibility values, note type, outcome) is settled before anything is posted.
        p.check_note_settings(_note_kind(state))
    _ledger_update(
        state,
        board_id=state.board_id,
        board_name=state.board_name,
        target_status_id=state.target_status_id,
        target_status_name=state.target_status_name,
        status_transition_skipped_reason=state.status_transition_skipped_reason,
    )
    return state


def post_note(state: WritebackState) -> WritebackState:
    """Exactly one note on the ticket, showing the approved text with the visibility its kind needs.

    The note comes from the ledger, else from the ticket (found by its marker after an attempt we never
    heard back from), else it is posted now; whichever it is, it is read back from the PSA, and repaired
    (visibility) or amended (an edited re-post) through the PSA's note update, then read back again.
    """
    entry = _entry(state)
    marker = entry.note_marker or state.note_marker
    ticket_id = state.linked_ticket.ticket_id
    kind = _note_kind(state)
    approved = with_marker(state.markdown, marker)
    with psa(state) as p:
        for guarded in state.guard_internal_notes:
            _guard_internal_note(p, guarded.ticket_id, guarded.note_id)
        note_id = entry.note_id
        if note_id is None and entry.post_attempted:
            # An earlier attempt may have been committed by the PSA without us hearing back.
            found = p.find_note_by_marker(ticket_id, marker)
            if found is not None:
                logger.warning("found the note an earlier attempt posted", extra={"note_id": found.id})
                note_id = _record_note_id(state, found.id)
        if note_id is None:
            if not ledger.mark_post_attempted(state.account_id, state.session_id, state.writeback_id, now_iso()):
                raise _abandoned(state)
            note_id = _record_note_id(state, p.post_note(ticket_id, approved, kind).id)
            metrics.add_metric(name="NotePosted", unit="Count", value=1)
        else:
            logger.info("reusing the note already on the ticket", extra={"note_id": note_id})
        shown, amended = _settle_note(p, state, note_id, approved, kind, marker)
    if amended:
        metrics.add_metric(name="NoteAmended", unit="Count", value=1)
    # What the ticket shows, as read back, is what the ledger records: not the request, which the PSA may
    # have normalised (trailing whitespace, blank lines).
    recorded = _ledger_update(
        state,
        markdown=without_marker(shown.text, marker),
        note_verified_at=now_iso(),
        note_amended=True if amended else None,
    )
    state.note_id, state.posted_at, state.note_amended = shown.id, recorded.note_posted_at, recorded.note_amended
    return state


def transition(state: WritebackState) -> WritebackState:
    assert state.target_status_id is not None, "the state machine skips the transition without a target"
    with psa(state) as p:
        p.change_status(
            state.linked_ticket.ticket_id,
            state.target_status_id,
            notify_customer=state.kind is WritebackKind.resolve and state.preferences.notify_customer_on_resolve,
        )
    _ledger_update(state, status_change_sent_at=now_iso())
    return state


def verify(state: WritebackState) -> WritebackState:
    """Re-fetch the ticket: the status the PSA shows must be the target, or it is a 502."""
    assert state.target_status_id is not None
    with psa(state) as p:
        ticket = p.fetch_ticket(state.linked_ticket.ticket_id)
    if ticket.status.id != state.target_status_id:
        metrics.add_metric(name="StatusVerificationFailed", unit="Count", value=1)
        logger.error(
            "PSA accepted the status change but did not apply it",
            extra={
                "expected_status_id": state.target_status_id,
                "actual_status_id": ticket.status.id,
                "ticket_id": state.linked_ticket.ticket_id,
            },
        )
        raise PSAStatusVerificationError(state.target_status_id, ticket.status)
    state.verified_status_id, state.verified_status_name = ticket.status.id, ticket.status.name
    return state


def record_success(state: WritebackState) -> WritebackState:
    return _close_session(state, local=False)


def drift_check(state: WritebackState) -> WritebackState:
    """Some time after a verified write-back, look again: a workflow may have moved the status back."""
    assert state.verified_status_id is not None
    with psa(state) as p:
        ticket = p.fetch_ticket(state.linked_ticket.ticket_id)
    drifted = ticket.status.id != state.verified_status_id
    state.drift = Drift(
        checked_at=now_iso(), status_id=ticket.status.id, status_name=ticket.status.name, drifted=drifted
    )
    if drifted:
        metrics.add_metric(name="StatusDrift", unit="Count", value=1)
        logger.error(
            "PSA status drifted after a verified write-back (a workflow moved it back)",
            extra={
                "verified_status_id": state.verified_status_id,
                "status_now": ticket.status.id,
                "ticket_id": state.linked_ticket.ticket_id,
            },
        )
        # The session first, the ledger last: whoever sees the drift on the ledger finds it on the session.
        seen = LedgerEntry.model_validate({**_entry(state).model_dump(), "drift": state.drift, "updated_at": now_iso()})
        ledger.record_drift(state.account_id, state.session_id, seen.summary_view())
    _ledger_update(state, drift=state.drift)
    return state


def record_drift_check_failure(state: WritebackState) -> WritebackState:
    state.drift = Drift(checked_at=now_iso(), error=_cause(state.error))
    _ledger_update(state, drift=state.drift)
    return state


def record_failure(state: WritebackState) -> WritebackState:
    """Record why the write-back failed; release the session; keep what a resume needs (the note)."""
    entry = _entry(state)
    if entry.state in {"succeeded", "abandoned"}:
        # Never overwrite a success (a redelivered step), nor touch a session an abandoned write-back let go.
        logger.warning("write-back already ended; its failure path changes nothing", extra={"state": entry.state})
        return state
    now = now_iso()
    error = _failure_for_client(entry, state.error)
    final = LedgerEntry.model_validate(
        {
            **entry.model_dump(),
            "state": "failed",
            "error": error,
            "finished_at": entry.finished_at or now,
            "updated_at": now,
        }
    )
    pending = entry.pending_note()
    # The session first (lock released, the note kept for a resume), the ledger last: once the post endpoint
    # sees the failure, an immediate re-post finds the session free. Idempotent if this step runs twice.
    ledger.release_session(
        state.account_id,
        state.session_id,
        state.writeback_id,
        kind=state.kind,
        last_writeback=final.summary_view(),
        pending=pending,
        guards=state.guard_internal_notes,
        now=now,
    )
    ledger.update(
        state.account_id,
        state.session_id,
        state.writeback_id,
        {"state": "failed", "error": error, "finished_at": final.finished_at, "updated_at": now},
    )
    ledger.mark_finished(state.account_id, state.session_id, state.writeback_id, "failed")
    emit("Writebacks", MetricUnit.Count, 1, {"outcome": "failed", "provider": _provider_name(state)})
    metrics.add_metric(name="WritebackFailed", unit="Count", value=1)
    return state


def release_lock(state: WritebackState) -> WritebackState:
    """The last resort when RecordFailure failed for good: free the session (keeping the note for a resume)
    and mark the entry abandoned, so no session stays locked behind a write-back that cannot record."""
    entry = _entry(state)
    if entry.state == "running":
        ledger.abandon(
            state.account_id,
            state.session_id,
            entry,
            reason="recording_failed",
            pending=entry.pending_note(),
            now=now_iso(),
        )
        metrics.add_metric(name="WritebackLockHealed", unit="Count", value=1)
        logger.error("recording the failure failed; released the session's lock", extra={"note_id": entry.note_id})
    return state


STEPS: dict[str, Callable[[WritebackState], WritebackState]] = {
    "record_local": record_local,
    "prepare": prepare,
    "post_note": post_note,
    "transition": transition,
    "verify": verify,
    "record_success": record_success,
    "drift_check": drift_check,
    "record_drift_check_failure": record_drift_check_failure,
    "record_failure": record_failure,
    "release_lock": release_lock,
}


# Steps that record an end: an error of theirs is not the write-back's error (a throttled RecordFailure
# must not replace the PSA's answer it is recording).
_RECORDING_STEPS = frozenset({"record_failure", "release_lock", "record_drift_check_failure"})


def run(action: str, raw_state: dict[str, Any]) -> dict[str, Any]:
    """Run one step on the validated state; a domain error is written to the ledger (as the client will see
    it) before it propagates to the state machine's Retry/Catch."""
    step = STEPS[action]
    state = WritebackState.model_validate(raw_state)
    metrics.add_metric(name="WritebackStepRun", unit="Count", value=1)
    logger.append_keys(session_id=state.session_id, writeback_id=state.writeback_id, step=action)
    try:
        with dynamo.transient_errors():  # AWS-side hiccups: one error type the state machine retries
            return step(state).to_json()
    except FlowPilotError as error:
        if action in _RECORDING_STEPS or isinstance(error, StoreUnavailable):
            # Retried or explained elsewhere; recording it would hide the error the client must see.
            raise
        record = LedgerError.model_validate({**error_record(error), "error_type": type(error).__name__, "step": action})
        logger.warning("write-back step failed", extra={"error_code": error.code, "status": error.status})
        try:
            ledger.record_error(state.account_id, state.session_id, state.writeback_id, record, now_iso())
        except Exception:  # the step's own error matters more; RecordFailure explains it either way
            logger.exception("could not record the step's error on the ledger")
        raise


# --- the note: settle, repair, guard -----------------------------------------------------------------


def _note_kind(state: WritebackState) -> NoteKind:
    return NoteKind.resolution if state.kind is WritebackKind.resolve else NoteKind.internal_analysis


def _settle_note(
    p: PSAProvider, state: WritebackState, note_id: str, approved: str, kind: NoteKind, marker: str
) -> tuple[PostedNote, bool]:
    """Read the note back; repair its visibility and amend its text if either differs; read it back again.

    Returns the note as last read back (a new one only when the PSA lost the note) and whether the text was
    amended.
    """
    ticket_id = state.linked_ticket.ticket_id
    try:
        note = p.get_note(ticket_id, note_id)
    except PSANoteNotFound:
        return _replace_lost_note(p, state, note_id, approved, kind, marker), False
    text_ok = same_text(note.text, approved)
    visible_ok = p.visibility_matches(note, kind)
    if text_ok and visible_ok:
        return note, False
    if not visible_ok:
        metrics.add_metric(name="NoteVisibilityRepaired", unit="Count", value=1)
        logger.error(
            "the PSA shows the note with the wrong visibility; updating it",
            extra={"note_id": note.id, "kind": str(kind), "customer_visible": note.customer_visible},
        )
    p.update_note(ticket_id, note.id, kind=kind, text=None if text_ok else approved)
    after = p.get_note(ticket_id, note.id)
    if not p.visibility_matches(after, kind):
        metrics.add_metric(name="NoteVisibilityMismatch", unit="Count", value=1)
        raise _visibility_error(after, kind, ticket_id)
    if not same_text(after.text, approved):
        raise PSANoteNotAmended(
            f"The PSA accepted the new text for note {after.id} on ticket {ticket_id} but still shows the "
            "earlier text; the ticket was not changed further. Check the note in the PSA.",
            details={"ticket_id": ticket_id, "note_id": after.id},
        )
    return after, not text_ok


def _replace_lost_note(
    p: PSAProvider, state: WritebackState, lost_id: str, approved: str, kind: NoteKind, marker: str
) -> PostedNote:
    """The note on the ledger was deleted in the PSA: the ticket shows no note, so post it (once) again."""
    ticket_id = state.linked_ticket.ticket_id
    found = p.find_note_by_marker(ticket_id, marker)
    if found is not None and found.id == lost_id:
        raise PSAError(
            f"The PSA says note {lost_id} is not on ticket {ticket_id} but lists it there; nothing was posted.",
            code="psa_bad_response",
            details={"ticket_id": ticket_id, "note_id": lost_id},
        )
    if found is None:
        logger.warning("the note on the ledger is gone from the ticket; posting it again", extra={"note_id": lost_id})
        found = p.post_note(ticket_id, approved, kind)
        metrics.add_metric(name="NotePosted", unit="Count", value=1)
    ledger.replace_note_id(state.account_id, state.session_id, state.writeback_id, lost_id, found.id, now_iso())
    return _repair_visibility(p, ticket_id, p.get_note(ticket_id, found.id), kind)


def _guard_internal_note(p: PSAProvider, ticket_id: str, note_id: str) -> None:
    """An internal note an earlier escalation left must not be customer-visible when this post answers."""
    try:
        note = p.get_note(ticket_id, note_id)
    except PSANoteNotFound:
        return
    _repair_visibility(p, ticket_id, note, NoteKind.internal_analysis)


def _repair_visibility(p: PSAProvider, ticket_id: str, note: PostedNote, kind: NoteKind) -> PostedNote:
    """The note as read, or, when its visibility is wrong, updated and read back; a 502 if it stays wrong."""
    if p.visibility_matches(note, kind):
        return note
    p.update_note(ticket_id, note.id, kind=kind)
    after = p.get_note(ticket_id, note.id)
    if not p.visibility_matches(after, kind):
        metrics.add_metric(name="NoteVisibilityMismatch", unit="Count", value=1)
        raise _visibility_error(after, kind, ticket_id)
    return after


def _visibility_error(note: PostedNote, kind: NoteKind, ticket_id: str) -> PSANoteVisibilityMismatch:
    shown = "customer-visible" if note.customer_visible else "internal-only"
    needed = "customer-visible" if kind is NoteKind.resolution else "internal-only"
    label = "resolution" if kind is NoteKind.resolution else "internal escalation"
    return PSANoteVisibilityMismatch(
        f"The PSA shows the {label} note {note.id} on ticket {ticket_id} as {shown}; it must be {needed}, and "
        "updating the note did not change that. Fix the note's visibility in the PSA now; nothing more was sent.",
        details={
            "ticket_id": ticket_id,
            "note_id": note.id,
            "kind": str(kind),
            "customer_visible": note.customer_visible,
            "shown_flags": dict(note.flags),
        },
    )


# --- recording ---------------------------------------------------------------------------------------


def _close_session(state: WritebackState, *, local: bool) -> WritebackState:
    now = now_iso()
    outcome = state.outcome_for(local=local)
    done = _entry(state)
    if done.state == "succeeded":
        # A redelivered step (its first answer was lost): keep the first run's record, finish the session again.
        now = done.finished_at or now
    values: dict[str, Any] = {"state": "succeeded", "outcome": outcome.value, "finished_at": now, "updated_at": now}
    if local:
        values["markdown"] = state.markdown  # nothing external: what was asked is what was recorded
    else:
        values.update(external_id=state.note_id, posted_at=state.posted_at)
    values.update(
        verified_status_id=state.verified_status_id,
        verified_status_name=state.verified_status_name,
        status_transition_skipped_reason=state.status_transition_skipped_reason,
    )
    final = LedgerEntry.model_validate({**done.model_dump(), **{k: v for k, v in values.items() if v is not None}})
    # The session first, the ledger last: the post endpoint answers when the ledger is final, and by then
    # a client reading the session must already see it resolved or escalated.
    ledger.close_session(
        state.account_id,
        state.session_id,
        state.writeback_id,
        status=state.session_status,
        kind=state.kind,
        last_writeback=final.summary_view(),
        ticket=state.ticket,
        summary=state.summary,
        now=now,
    )
    ledger.update(state.account_id, state.session_id, state.writeback_id, values)
    ledger.mark_finished(state.account_id, state.session_id, state.writeback_id, "succeeded")
    metrics.add_metric(name="WritebackSucceeded", unit="Count", value=1)
    emit("Writebacks", MetricUnit.Count, 1, {"outcome": outcome.value, "provider": _provider_name(state)})
    state.outcome, state.finished_at = outcome, now
    return state


def _failure_for_client(entry: LedgerEntry, failure: StepFailure | None) -> LedgerError:
    """The step's own error when it recorded one (the same error the Catch saw), else a plain account of it."""
    error = entry.last_error
    if error is None or error.error_type != (failure.Error if failure else None):
        cause = _cause(failure)
        error = LedgerError(
            code="writeback_step_failed",
            message=f"The write-back stopped unexpectedly ({cause['error_type']}). Nothing more was sent.",
            status=502,
        )
    details = dict(error.details or {})
    message = error.message
    if entry.note_id:
        # Say plainly that the note is on the ticket, so nobody posts it again by hand.
        details.update(note_id=entry.note_id, note_kept=True)
    elif entry.post_attempted and error.status != 422:
        # The PSA may have stored the note without answering; a re-post finds it by its marker. (A 422 is the
        # PSA's own refusal of the note: nothing was stored.)
        details.update(note_may_be_on_ticket=True, note_marker=entry.note_marker)
        message += " The note may already be on the ticket; posting again will not duplicate it."
    return LedgerError(code=error.code, message=message, status=error.status, details=details or None)


def _cause(failure: StepFailure | None) -> dict[str, Any]:
    try:
        cause = json.loads((failure.Cause if failure else None) or "{}")
    except ValueError:
        cause = {}
    if not isinstance(cause, dict):
        cause = {}
    error_type = (failure.Error if failure else None) or cause.get("errorType")
    return {"error_type": error_type, "message": cause.get("errorMessage")}


def _abandoned(state: WritebackState) -> FlowPilotError:
    return Conflict(
        f"Write-back {state.writeback_id} was abandoned (its lock was released); it sends nothing more.",
        code="writeback_abandoned",
    )


def _entry(state: WritebackState) -> LedgerEntry:
    entry = ledger.get(state.account_id, state.session_id, state.writeback_id)
    if entry is None:
        raise RuntimeError(f"write-back {state.writeback_id} has no ledger entry")
    return entry


def _ledger_update(state: WritebackState, **values: Any) -> LedgerEntry:
    return ledger.update(state.account_id, state.session_id, state.writeback_id, {**values, "updated_at": now_iso()})


def _record_note_id(state: WritebackState, note_id: str) -> str:
    recorded = ledger.record_note_id(state.account_id, state.session_id, state.writeback_id, note_id, now_iso())
    assert recorded.note_id is not None
    return recorded.note_id


def _provider_name(state: WritebackState) -> str:
    return state.ticket.provider if state.ticket else "none"
