"""The write-back state machine's steps (DESIGN §5). Each takes the execution state and returns it, extended.

Exactly one note, always: the note id goes on the ledger the moment the PSA returns it; a retried or
resumed post looks at the ledger first, then searches the ticket's notes for the write-back's marker.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from flowpilot.account_settings import Preferences
from flowpilot.clock import now_iso
from flowpilot.errors import FlowPilotError, InvalidInput, error_record
from flowpilot.models import SessionStatus, WritebackOutcome
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
)
from flowpilot.psa.factory import provider_for_account
from flowpilot.store import dynamo
from flowpilot.store import writebacks as ledger

State = dict[str, Any]
# A 429's Retry-After is honoured inside the step up to this long; longer waits go back to the
# state machine's Retry (backoff with jitter), so a Lambda never idles for minutes.
MAX_INLINE_RETRY_AFTER_SECONDS = 10
INLINE_RATE_LIMIT_ATTEMPTS = 3

provider_factory: Callable[[str, str], PSAProvider] = provider_for_account


def _provider(state: State) -> PSAProvider:
    return provider_factory(state["account_id"], state["ticket"]["provider"])


def _honouring_retry_after[T](call: Callable[[], T]) -> T:
    for attempt in range(INLINE_RATE_LIMIT_ATTEMPTS):
        try:
            return call()
        except PSARateLimited as error:
            if error.retry_after > MAX_INLINE_RETRY_AFTER_SECONDS or attempt == INLINE_RATE_LIMIT_ATTEMPTS - 1:
                raise
            logger.info("PSA rate limited; waiting as asked", extra={"retry_after": error.retry_after})
            time.sleep(error.retry_after)
    raise AssertionError("unreachable")


def _provider_name(state: State) -> str:
    return str(state["ticket"]["provider"]) if state.get("ticket") else "none"


def _ids(state: State) -> tuple[str, str, str]:
    return state["account_id"], state["session_id"], state["writeback_id"]


def _outcome(state: State, local: bool) -> WritebackOutcome:
    if state["kind"] == "resolve":
        return WritebackOutcome.resolved_local if local else WritebackOutcome.resolved
    return WritebackOutcome.escalated_local if local else WritebackOutcome.escalated


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    """The session's `last_writeback` view of a ledger entry."""
    keys = (
        "writeback_id",
        "kind",
        "state",
        "outcome",
        "external_id",
        "verified_status_id",
        "verified_status_name",
        "updated_at",
    )
    summary = {k: entry.get(k) for k in keys if entry.get(k) is not None}
    summary["drift_detected"] = bool((entry.get("drift") or {}).get("drifted"))
    if entry.get("error"):
        summary["error_code"] = entry["error"]["code"]
    return summary


# --- steps ---


def record_local(state: State) -> State:
    return _close_session(state, local=True)


def prepare(state: State) -> State:
    provider = _provider(state)
    try:
        ticket = _honouring_retry_after(lambda: provider.fetch_ticket(state["ticket"]["ticket_id"]))
        if ticket.record_type != "ServiceTicket":
            raise InvalidInput(
                f"Ticket {ticket.id} is a {ticket.record_type}; only service tickets can be written back. "
                "Nothing was posted.",
                code="psa_ticket_not_service_ticket",
            )
        preferences = Preferences.model_validate(state.get("preferences") or {})
        target = preferences.target_status(state["kind"], ticket.board_id)
        state.update(board_id=ticket.board_id, board_name=ticket.board_name, target_status_id=None)
        if target is None:
            setting = "cw_resolved_status_id" if state["kind"] == "resolve" else "cw_escalated_status_id"
            state["status_transition_skipped_reason"] = (
                f"No {state['kind']} status is configured for board '{ticket.board_name}' ({ticket.board_id}); "
                f"set {setting} or {setting.replace('_id', '_ids_by_board')} in the account preferences."
            )
        else:
            status = _honouring_retry_after(lambda: provider.check_target_status(ticket, target))
            state.update(target_status_id=status.id, target_status_name=status.name)
    finally:
        provider.close()
    fields = {
        k: state.get(k)
        for k in (
            "board_id",
            "board_name",
            "target_status_id",
            "target_status_name",
            "status_transition_skipped_reason",
        )
        if state.get(k) is not None
    }
    ledger.update(*_ids(state), {**fields, "updated_at": now_iso()})
    return state


def post_note(state: State) -> State:
    """Exactly one note on the ticket, showing the approved text with the visibility its kind needs.

    The note comes from the ledger, else from the ticket (found by its marker after an attempt we never
    heard back from), else it is posted now; whichever it is, it is read back from the PSA, and repaired
    (visibility) or amended (an edited re-post) through the PSA's note update, then read back again.
    """
    account_id, session_id, writeback_id = _ids(state)
    entry = ledger.get(account_id, session_id, writeback_id) or {}
    marker = entry.get("note_marker") or state["note_marker"]
    ticket_id = state["ticket"]["ticket_id"]
    kind = _note_kind(state)
    approved = with_marker(state["markdown"], marker)
    provider = _provider(state)
    try:
        _guard_internal_notes(provider, state)
        note_id = entry.get("note_id")
        if note_id is None and entry.get("post_attempted"):
            # An earlier attempt may have been committed by the PSA without us hearing back.
            found = _honouring_retry_after(lambda: provider.find_note_by_marker(ticket_id, marker))
            if found is not None:
                logger.warning("found the note an earlier attempt posted", extra={"note_id": found.id})
                note_id = ledger.record_note_id(account_id, session_id, writeback_id, found.id, now_iso())["note_id"]
        if note_id is None:
            ledger.update(account_id, session_id, writeback_id, {"post_attempted": True, "updated_at": now_iso()})
            note = _honouring_retry_after(lambda: provider.post_note(ticket_id, approved, kind))
            note_id = ledger.record_note_id(account_id, session_id, writeback_id, note.id, now_iso())["note_id"]
            metrics.add_metric(name="NotePosted", unit="Count", value=1)
        else:
            logger.info("reusing the note already on the ticket", extra={"note_id": note_id})
        note_id, amended = _settle_note(provider, state, str(note_id), approved, kind, marker)
    finally:
        provider.close()
    values: dict[str, Any] = {"markdown": state["markdown"], "note_verified_at": now_iso(), "updated_at": now_iso()}
    if amended:
        values["note_amended"] = True
        metrics.add_metric(name="NoteAmended", unit="Count", value=1)
    recorded = ledger.update(account_id, session_id, writeback_id, values)
    state.update(
        note_id=note_id, posted_at=recorded.get("note_posted_at"), note_amended=bool(recorded.get("note_amended"))
    )
    return state


def _note_kind(state: State) -> NoteKind:
    return NoteKind.resolution if state["kind"] == "resolve" else NoteKind.internal_analysis


def _settle_note(
    provider: PSAProvider, state: State, note_id: str, approved: str, kind: NoteKind, marker: str
) -> tuple[str, bool]:
    """Read the note back; repair its visibility and amend its text if either differs; read it back again.

    Returns the note id (a new one only when the PSA lost the note) and whether the text was amended.
    """
    ticket_id = state["ticket"]["ticket_id"]
    try:
        note = _honouring_retry_after(lambda: provider.get_note(ticket_id, note_id))
    except PSANoteNotFound:
        return _replace_lost_note(provider, state, note_id, approved, kind, marker), False
    text_ok = same_text(note.text, approved)
    visible_ok = provider.visibility_matches(note, kind)
    if text_ok and visible_ok:
        return note.id, False
    if not visible_ok:
        metrics.add_metric(name="NoteVisibilityRepaired", unit="Count", value=1)
        logger.error(
            "the PSA shows the note with the wrong visibility; updating it",
            extra={"note_id": note.id, "kind": str(kind), "customer_visible": note.customer_visible},
        )
    new_text = None if text_ok else approved
    _honouring_retry_after(lambda: provider.update_note(ticket_id, note.id, kind=kind, text=new_text))
    after = _honouring_retry_after(lambda: provider.get_note(ticket_id, note.id))
    if not provider.visibility_matches(after, kind):
        metrics.add_metric(name="NoteVisibilityMismatch", unit="Count", value=1)
        raise _visibility_error(after, kind, ticket_id)
    if not same_text(after.text, approved):
        raise PSANoteNotAmended(
            f"The PSA accepted the new text for note {after.id} on ticket {ticket_id} but still shows the "
            "earlier text; the ticket was not changed further. Check the note in the PSA.",
            details={"ticket_id": ticket_id, "note_id": after.id},
        )
    return after.id, not text_ok


def _replace_lost_note(
    provider: PSAProvider, state: State, lost_id: str, approved: str, kind: NoteKind, marker: str
) -> str:
    """The note on the ledger was deleted in the PSA: the ticket shows no note, so post it (once) again."""
    account_id, session_id, writeback_id = _ids(state)
    ticket_id = state["ticket"]["ticket_id"]
    found = _honouring_retry_after(lambda: provider.find_note_by_marker(ticket_id, marker))
    if found is not None and found.id == lost_id:
        raise PSAError(
            f"The PSA says note {lost_id} is not on ticket {ticket_id} but lists it there; nothing was posted.",
            code="psa_bad_response",
            details={"ticket_id": ticket_id, "note_id": lost_id},
        )
    if found is None:
        logger.warning("the note on the ledger is gone from the ticket; posting it again", extra={"note_id": lost_id})
        found = _honouring_retry_after(lambda: provider.post_note(ticket_id, approved, kind))
        metrics.add_metric(name="NotePosted", unit="Count", value=1)
    ledger.replace_note_id(account_id, session_id, writeback_id, lost_id, found.id, now_iso())
    note_id = found.id
    return _repair_visibility(provider, ticket_id, provider.get_note(ticket_id, note_id), kind).id


def _guard_internal_notes(provider: PSAProvider, state: State) -> None:
    """An internal note an earlier escalation left on the ticket must not be customer-visible when we post."""
    for guarded in state.get("guard_internal_notes") or []:
        _guard_internal_note(provider, guarded["ticket_id"], guarded["note_id"])


def _guard_internal_note(provider: PSAProvider, ticket_id: str, note_id: str) -> None:
    try:
        note = _honouring_retry_after(lambda: provider.get_note(ticket_id, note_id))
    except PSANoteNotFound:
        return
    _repair_visibility(provider, ticket_id, note, NoteKind.internal_analysis)


def _repair_visibility(provider: PSAProvider, ticket_id: str, note: PostedNote, kind: NoteKind) -> PostedNote:
    """The note as read, or, when its visibility is wrong, updated and read back; a 502 if it stays wrong."""
    if provider.visibility_matches(note, kind):
        return note
    _honouring_retry_after(lambda: provider.update_note(ticket_id, note.id, kind=kind))
    after = _honouring_retry_after(lambda: provider.get_note(ticket_id, note.id))
    if not provider.visibility_matches(after, kind):
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


def transition(state: State) -> State:
    provider = _provider(state)
    try:
        _honouring_retry_after(
            lambda: provider.change_status(
                state["ticket"]["ticket_id"],
                int(state["target_status_id"]),
                notify_customer=state["kind"] == "resolve",  # escalations never notify the customer
            )
        )
    finally:
        provider.close()
    ledger.update(*_ids(state), {"status_change_sent_at": now_iso(), "updated_at": now_iso()})
    return state


def verify(state: State) -> State:
    provider = _provider(state)
    try:
        ticket = _honouring_retry_after(lambda: provider.fetch_ticket(state["ticket"]["ticket_id"]))
    finally:
        provider.close()
    expected = int(state["target_status_id"])
    if ticket.status.id != expected:
        metrics.add_metric(name="StatusVerificationFailed", unit="Count", value=1)
        logger.error(
            "PSA accepted the status change but did not apply it",
            extra={
                "expected_status_id": expected,
                "actual_status_id": ticket.status.id,
                "ticket_id": state["ticket"]["ticket_id"],
            },
        )
        raise PSAStatusVerificationError(expected, ticket.status)
    state.update(verified_status_id=ticket.status.id, verified_status_name=ticket.status.name)
    return state


def record_success(state: State) -> State:
    return _close_session(state, local=False)


def _close_session(state: State, *, local: bool) -> State:
    account_id, session_id, writeback_id = _ids(state)
    now = now_iso()
    outcome = _outcome(state, local)
    done = ledger.get(account_id, session_id, writeback_id) or {}
    if done.get("state") == "succeeded":
        # A redelivered step (its first answer was lost): keep the first run's record, finish the session again.
        now = done.get("finished_at") or now
    values: dict[str, Any] = {
        "state": "succeeded",
        "outcome": outcome.value,
        "finished_at": now,
        "updated_at": now,
    }
    if local:
        values["markdown"] = state["markdown"]  # nothing external: what was asked is what was recorded
    else:
        values["external_id"] = state.get("note_id")
        values["posted_at"] = state.get("posted_at")
    for key in ("verified_status_id", "verified_status_name", "status_transition_skipped_reason"):
        if state.get(key) is not None:
            values[key] = state[key]
    status = SessionStatus.resolved if state["kind"] == "resolve" else SessionStatus.escalated
    session_values: dict[str, Any] = {
        "status": status.value,
        "GSI2PK": dynamo.status_pk(account_id, status.value),
        "last_writeback": _summary({**done, **values}),
        "updated_at": now,
    }
    if state.get("ticket"):
        # The ticket the note and status went to (the lock kept the session from being relinked meanwhile).
        session_values["psa_ticket"] = {
            "provider": state["ticket"]["provider"],
            "ticket_id": state["ticket"]["ticket_id"],
        }
    if state["kind"] == "resolve":
        session_values["resolution_summary"] = state.get("summary")
    else:
        session_values["escalation_reason"] = state.get("summary")
    # The session first, the ledger last: the post endpoint answers when the ledger is final, and by then
    # a client reading the session must already see it resolved or escalated.
    ledger.finish_session(
        account_id, session_id, writeback_id, session_values, remove=(f"pending_note_{state['kind']}",)
    )
    ledger.update(account_id, session_id, writeback_id, values)
    ledger.mark_finished(account_id, session_id, writeback_id, "succeeded")
    metrics.add_metric(name="WritebackSucceeded", unit="Count", value=1)
    emit("Writebacks", MetricUnit.Count, 1, {"outcome": outcome.value, "provider": _provider_name(state)})
    state.update(outcome=outcome.value, finished_at=now)
    return state


def drift_check(state: State) -> State:
    account_id, session_id, writeback_id = _ids(state)
    provider = _provider(state)
    try:
        ticket = _honouring_retry_after(lambda: provider.fetch_ticket(state["ticket"]["ticket_id"]))
    finally:
        provider.close()
    drifted = ticket.status.id != int(state["verified_status_id"])
    drift = {
        "checked_at": now_iso(),
        "status_id": ticket.status.id,
        "status_name": ticket.status.name,
        "drifted": drifted,
    }
    entry = ledger.update(account_id, session_id, writeback_id, {"drift": drift, "updated_at": now_iso()})
    if drifted:
        metrics.add_metric(name="StatusDrift", unit="Count", value=1)
        logger.error(
            "PSA status drifted after a verified write-back (a workflow moved it back)",
            extra={
                "verified_status_id": state["verified_status_id"],
                "status_now": ticket.status.id,
                "ticket_id": state["ticket"]["ticket_id"],
            },
        )
        ledger.set_session_fields(account_id, session_id, {"last_writeback": _summary(entry)})
    state["drift"] = drift
    return state


def record_drift_check_failure(state: State) -> State:
    cause = _cause(state.get("error") or {})
    drift = {"checked_at": now_iso(), "error": cause}
    ledger.update(*_ids(state), {"drift": drift, "updated_at": now_iso()})
    state["drift"] = drift
    return state


def _cause(error: dict[str, Any]) -> dict[str, Any]:
    try:
        cause = json.loads(error.get("Cause") or "{}")
    except ValueError:
        cause = {}
    return {"error_type": error.get("Error") or cause.get("errorType"), "message": cause.get("errorMessage")}


def record_failure(state: State) -> State:
    """Record why the write-back failed; release the session; keep what a resume needs (the note)."""
    account_id, session_id, writeback_id = _ids(state)
    entry = ledger.get(account_id, session_id, writeback_id) or {}
    now = now_iso()
    error = entry.get("last_error")
    failure = state.get("error") or {}
    if not error or error.get("error_type") != failure.get("Error"):
        cause = _cause(failure)
        error = {
            "code": "writeback_step_failed",
            "message": f"The write-back stopped unexpectedly ({cause['error_type']}). Nothing more was sent.",
            "status": 502,
        }
    error = {k: v for k, v in error.items() if k not in {"error_type"}}
    if entry.get("note_id"):
        # Say plainly that the note is on the ticket, so nobody posts it again by hand.
        error["details"] = {**(error.get("details") or {}), "note_id": entry["note_id"], "note_kept": True}
    elif entry.get("post_attempted"):
        # The PSA may have stored the note without answering; a re-post finds it by its marker.
        error["details"] = {
            **(error.get("details") or {}),
            "note_may_be_on_ticket": True,
            "note_marker": entry.get("note_marker"),
        }
        error["message"] += " The note may already be on the ticket; posting again will not duplicate it."
    if entry.get("state") == "succeeded":
        # Never overwrite a success: a failure that follows one (a redelivered step) changes nothing.
        logger.warning("write-back already succeeded; its failure path changes nothing")
        return state
    final = {"state": "failed", "error": error, "finished_at": entry.get("finished_at") or now, "updated_at": now}
    session_values: dict[str, Any] = {"last_writeback": _summary({**entry, **final}), "updated_at": now}
    if state.get("guard_internal_notes"):
        # Still unverified internal notes (e.g. on a ticket the session was relinked away from): later posts too.
        session_values["guard_internal_notes"] = state["guard_internal_notes"]
    if entry.get("post_attempted") or entry.get("note_id"):
        session_values[f"pending_note_{state['kind']}"] = {
            "writeback_id": writeback_id,
            "note_id": entry.get("note_id"),
            "note_marker": entry.get("note_marker"),
            "ticket_id": state["ticket"]["ticket_id"] if state.get("ticket") else None,
            "provider": state["ticket"]["provider"] if state.get("ticket") else None,
        }
    # The session first (lock released, the note kept for a resume), the ledger last: once the post endpoint
    # sees the failure, an immediate re-post finds the session free. Idempotent if this step runs twice.
    ledger.finish_session(account_id, session_id, writeback_id, session_values)
    ledger.update(account_id, session_id, writeback_id, final)
    ledger.mark_finished(account_id, session_id, writeback_id, "failed")
    emit("Writebacks", MetricUnit.Count, 1, {"outcome": "failed", "provider": _provider_name(state)})
    metrics.add_metric(name="WritebackFailed", unit="Count", value=1)
    return state


STEPS: dict[str, Callable[[State], State]] = {
    "record_local": record_local,
    "prepare": prepare,
    "post_note": post_note,
    "transition": transition,
    "verify": verify,
    "record_success": record_success,
    "drift_check": drift_check,
    "record_drift_check_failure": record_drift_check_failure,
    "record_failure": record_failure,
}


def run(action: str, state: State) -> State:
    """Run one step; a domain error is written to the ledger (as the client will see it) before it propagates."""
    step = STEPS[action]
    metrics.add_metric(name="WritebackStepRun", unit="Count", value=1)
    logger.append_keys(session_id=state.get("session_id"), writeback_id=state.get("writeback_id"), step=action)
    try:
        return step(state)
    except FlowPilotError as error:
        record = {**error_record(error), "error_type": type(error).__name__, "step": action}
        logger.warning("write-back step failed", extra={"error_code": error.code, "status": error.status})
        with contextlib.suppress(ledger.ConditionFailed):
            ledger.update(*_ids(state), {"last_error": record, "updated_at": now_iso()})
        raise
