"""The write-back's decisions, step by step, against an in-memory ledger and PSA (no moto, no HTTP).

Each step runs through `writeback_steps.run`, as the state machine calls it: the state is validated on the
way in and dumped on the way out, and a domain error is written to the ledger before it propagates.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from flowpilot import writeback_steps
from flowpilot.account_settings import Preferences
from flowpilot.errors import FlowPilotError
from flowpilot.identity import Caller
from flowpilot.models import WritebackKind
from flowpilot.psa.base import (
    NoteKind,
    PSANoteNotAmended,
    PSANoteVisibilityMismatch,
    PSARateLimited,
    PSAStatusVerificationError,
    PSATransientError,
    PSAVisibilityUnknown,
    StatusRef,
    with_marker,
)
from flowpilot.store.dynamo import ConditionFailed
from flowpilot.writeback import _ledger_entry
from flowpilot.writeback_state import GuardedNote, PendingNote, TicketRef, WritebackState
from tests.unit.writeback_fakes import ESCALATED, RESOLVED, FakeLedger, FakePSA

ACCOUNT, SESSION, TICKET = "acct-a", "sess-1", "1001"
CALLER = Caller(account_id=ACCOUNT, engineer_id="engineer-a")
TARGETS = Preferences(cw_resolved_status_id=RESOLVED.id, cw_escalated_status_id=ESCALATED.id)
NOTE = "Reinstalled the VPN client; the connection has been stable for 30 minutes."


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> FakeLedger:
    fake = FakeLedger()
    monkeypatch.setattr(writeback_steps, "ledger", fake)
    return fake


@pytest.fixture
def psa(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePSA]:
    fake = FakePSA()
    fake.add_ticket(TICKET)
    monkeypatch.setattr(writeback_steps, "provider_factory", lambda account, provider, preferences: fake)
    yield fake
    assert fake.open_contexts == 0, "a step left the PSA open"


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """What the steps would have slept: recorded, never waited."""
    waits: list[float] = []
    monkeypatch.setattr(writeback_steps.time, "sleep", waits.append)
    return waits


_numbers = iter(range(1, 10_000))


def only_pending(ledger: FakeLedger, session: dict[str, Any]) -> PendingNote | None:
    """The session's one pending resolve note (these tests use one ticket)."""
    notes = ledger.pending_notes(session, WritebackKind.resolve)
    assert len(notes) <= 1, notes
    return notes[0] if notes else None


def start(
    ledger: FakeLedger,
    *,
    kind: WritebackKind = WritebackKind.resolve,
    markdown: str = NOTE,
    pending: PendingNote | None = None,
    preferences: Preferences = TARGETS,
    guards: tuple[GuardedNote, ...] = (),
    new_session: bool = True,
) -> WritebackState:
    """A write-back as `writeback.post` starts it: the ledger entry (a resume when `pending` says so) and the lock."""
    writeback_id = f"wb_{next(_numbers):04d}"
    ticket = TicketRef(provider="connectwise", ticket_id=TICKET)
    if new_session:
        ledger.add_session(ACCOUNT, SESSION, ticket=ticket)
    entry = _ledger_entry(CALLER, SESSION, writeback_id, kind, markdown, "VPN fixed", ticket, pending)
    ledger.take_lock_and_start(ACCOUNT, entry, ticket, taken_at=0)
    assert entry.note_marker is not None
    return WritebackState(
        account_id=ACCOUNT,
        session_id=SESSION,
        writeback_id=writeback_id,
        kind=kind,
        markdown=markdown,
        summary="VPN fixed",
        ticket=ticket,
        note_marker=entry.note_marker,
        guard_internal_notes=list(guards),
        preferences=preferences,
    )


def step(action: str, state: WritebackState) -> WritebackState:
    return WritebackState.model_validate(writeback_steps.run(action, state.to_json()))


def failing(state: WritebackState, error: Exception) -> WritebackState:
    """The Catch: the step's error goes into `$.error`, and RecordFailure runs on that state."""
    return WritebackState.model_validate({**state.to_json(), "error": {"Error": type(error).__name__, "Cause": "{}"}})


def write_back(state: WritebackState) -> WritebackState:
    """The state machine's happy path: prepare, post, transition and verify (unless skipped), record."""
    state = step("prepare", state)
    state = step("post_note", state)
    if state.target_status_id is not None:
        state = step("transition", state)
        state = step("verify", state)
    return step("record_success", state)


def entry_of(ledger: FakeLedger, state: WritebackState) -> Any:
    return ledger.entry(ACCOUNT, SESSION, state.writeback_id)


def failed_write_back(ledger: FakeLedger, psa: FakePSA, *, markdown: str = NOTE) -> WritebackState:
    """A resolve whose status change the board ignored: 502, the note kept on the ledger and the session."""
    psa.tickets[TICKET].ignores_status_changes = True
    state = step("post_note", step("prepare", start(ledger, markdown=markdown)))
    state = step("transition", state)
    with pytest.raises(PSAStatusVerificationError) as raised:
        step("verify", state)
    step("record_failure", failing(state, raised.value))
    psa.tickets[TICKET].ignores_status_changes = False
    return state


# --- the happy path and the skip ---------------------------------------------------------------------


def test_a_resolve_posts_one_customer_visible_note_and_verifies_the_status(ledger: FakeLedger, psa: FakePSA) -> None:
    state = write_back(start(ledger))

    [note] = psa.notes_on(TICKET)
    assert note.text == with_marker(NOTE, state.note_marker) and note.customer_visible
    assert psa.tickets[TICKET].status == RESOLVED
    assert psa.made("change_status") == [("change_status", TICKET, RESOLVED.id, True)]
    entry = entry_of(ledger, state)
    assert (entry.state, entry.outcome, entry.note_id, entry.external_id) == ("succeeded", "resolved", note.id, note.id)
    assert entry.markdown == NOTE and entry.verified_status_id == RESOLVED.id
    session = ledger.session(ACCOUNT, SESSION)
    assert session["status"] == "resolved" and "active_writeback_id" not in session
    assert ledger.finished_state(ACCOUNT, SESSION, state.writeback_id) == "succeeded"


def test_an_escalation_is_internal_only_and_never_notifies(ledger: FakeLedger, psa: FakePSA) -> None:
    state = write_back(start(ledger, kind=WritebackKind.escalate))

    [note] = psa.notes_on(TICKET)
    assert note.internal_analysis and not note.customer_visible
    assert psa.made("change_status") == [("change_status", TICKET, ESCALATED.id, False)]
    assert entry_of(ledger, state).outcome == "escalated"


def test_no_target_status_skips_the_transition_and_says_why(ledger: FakeLedger, psa: FakePSA) -> None:
    state = step("prepare", start(ledger, preferences=Preferences()))
    assert state.target_status_id is None
    assert state.status_transition_skipped_reason is not None
    assert "cw_resolved_status_id" in state.status_transition_skipped_reason

    state = write_back(state)

    assert psa.made("change_status") == []
    entry = entry_of(ledger, state)
    assert entry.outcome == "resolved" and entry.verified_status_id is None
    assert entry.status_transition_skipped_reason == state.status_transition_skipped_reason
    assert len(psa.notes_on(TICKET)) == 1


# --- verify ------------------------------------------------------------------------------------------


def test_a_status_change_the_board_ignored_is_a_502_naming_expected_and_actual(
    ledger: FakeLedger, psa: FakePSA
) -> None:
    psa.tickets[TICKET].ignores_status_changes = True
    state = step("transition", step("post_note", step("prepare", start(ledger))))

    with pytest.raises(PSAStatusVerificationError) as raised:
        step("verify", state)

    assert raised.value.status == 502
    assert raised.value.details["expected_status_id"] == RESOLVED.id
    assert raised.value.details["actual_status_id"] == psa.tickets[TICKET].status.id
    error = entry_of(ledger, state).last_error
    assert (error.code, error.step, error.error_type) == (
        "psa_status_not_applied",
        "verify",
        "PSAStatusVerificationError",
    )


def test_after_a_failed_verify_the_session_is_free_and_keeps_the_note_for_a_resume(
    ledger: FakeLedger, psa: FakePSA
) -> None:
    state = failed_write_back(ledger, psa)

    [note] = psa.notes_on(TICKET)
    session = ledger.session(ACCOUNT, SESSION)
    assert session["status"] == "active" and "active_writeback_id" not in session
    pending = only_pending(ledger, session)
    assert pending is not None and (pending.writeback_id, pending.note_id) == (state.writeback_id, note.id)
    entry = entry_of(ledger, state)
    assert entry.state == "failed" and entry.error is not None
    assert entry.error.code == "psa_status_not_applied" and entry.error.details["note_kept"] is True


# --- resume: exactly one note ------------------------------------------------------------------------


def test_a_re_post_resumes_with_the_ledgers_note_and_reads_it_back(ledger: FakeLedger, psa: FakePSA) -> None:
    first = failed_write_back(ledger, psa)
    [note] = psa.notes_on(TICKET)
    pending = only_pending(ledger, ledger.session(ACCOUNT, SESSION))

    second = write_back(start(ledger, pending=pending, new_session=False))

    assert psa.notes_on(TICKET) == [note], "a resume never posts a second note"
    assert len(psa.made("post_note")) == 1
    assert ("get_note", TICKET, note.id) in psa.made("get_note")  # read back, not trusted
    entry = entry_of(ledger, second)
    assert entry.note_reused_from == first.writeback_id and entry.note_id == note.id
    assert entry.note_verified_at is not None and entry.markdown == NOTE and entry.outcome == "resolved"
    assert entry.note_amended is False
    assert psa.tickets[TICKET].status == RESOLVED


def test_a_post_whose_answer_was_lost_finds_its_note_by_the_marker(ledger: FakeLedger, psa: FakePSA) -> None:
    psa.lose_next_post_answers = 1
    state = step("prepare", start(ledger))

    with pytest.raises(PSATransientError):
        step("post_note", state)  # the PSA stored the note; we never heard back
    assert entry_of(ledger, state).post_attempted and entry_of(ledger, state).note_id is None

    state = step("post_note", state)  # the state machine's retry

    [note] = psa.notes_on(TICKET)
    assert len(psa.made("post_note")) == 1 and psa.made("find_note_by_marker")
    assert state.note_id == note.id == entry_of(ledger, state).note_id


def test_a_resume_after_a_lost_answer_finds_the_earlier_write_backs_note(ledger: FakeLedger, psa: FakePSA) -> None:
    psa.lose_next_post_answers = 1
    first = step("prepare", start(ledger))
    with pytest.raises(PSATransientError) as raised:
        step("post_note", first)
    step("record_failure", failing(first, raised.value))
    pending = only_pending(ledger, ledger.session(ACCOUNT, SESSION))
    assert pending is not None and pending.note_id is None and pending.note_marker == first.note_marker

    second = write_back(start(ledger, pending=pending, new_session=False))

    [note] = psa.notes_on(TICKET)
    assert second.note_marker == first.note_marker
    assert entry_of(ledger, second).note_id == note.id and len(psa.made("post_note")) == 1


def test_the_first_recorded_note_id_wins(ledger: FakeLedger) -> None:
    state = start(ledger)
    ledger.record_note_id(ACCOUNT, SESSION, state.writeback_id, "501", "t1")
    again = ledger.record_note_id(ACCOUNT, SESSION, state.writeback_id, "999", "t2")
    assert again.note_id == "501" and again.note_posted_at == "t1"


def test_a_note_deleted_in_the_psa_is_replaced_once(ledger: FakeLedger, psa: FakePSA) -> None:
    state = step("post_note", step("prepare", start(ledger)))
    lost = state.note_id
    assert lost is not None
    psa.delete_note(TICKET, lost)

    state = step("post_note", state)  # a redelivered post finds its note gone
    state = step("post_note", state)  # and again: the replacement is there now

    [note] = psa.notes_on(TICKET)
    assert note.id != lost and state.note_id == note.id
    entry = entry_of(ledger, state)
    assert (entry.note_id, entry.replaced_note_id) == (note.id, lost)
    assert len(psa.made("post_note")) == 2


# --- visibility: repair, or a 502 with the note on the ledger ----------------------------------------


@pytest.mark.parametrize("kind", [WritebackKind.resolve, WritebackKind.escalate])
def test_a_wrong_visibility_is_repaired_and_read_back(kind: WritebackKind, ledger: FakeLedger, psa: FakePSA) -> None:
    psa.visibility = "wrong_repairable"
    state = step("post_note", step("prepare", start(ledger, kind=kind)))

    [note] = psa.notes_on(TICKET)
    needed = NoteKind.resolution if kind is WritebackKind.resolve else NoteKind.internal_analysis
    assert psa.visibility_matches(note.shown(), needed)
    assert psa.made("update_note") == [("update_note", TICKET, note.id, needed, None)]
    assert state.note_id == note.id and entry_of(ledger, state).note_verified_at is not None


@pytest.mark.parametrize("kind", [WritebackKind.resolve, WritebackKind.escalate])
def test_a_visibility_that_stays_wrong_is_a_502_with_the_note_on_the_ledger(
    kind: WritebackKind, ledger: FakeLedger, psa: FakePSA
) -> None:
    psa.visibility = "wrong_sticky"
    state = step("prepare", start(ledger, kind=kind))

    with pytest.raises(PSANoteVisibilityMismatch) as raised:
        step("post_note", state)

    [note] = psa.notes_on(TICKET)
    assert raised.value.status == 502 and raised.value.details["note_id"] == note.id
    entry = entry_of(ledger, state)
    assert entry.note_id == note.id, "the note id is on the ledger before the error"
    assert entry.note_verified_at is None and entry.markdown is None
    assert entry.last_error is not None and entry.last_error.code == "psa_note_visibility_mismatch"


# --- amend: the ticket shows the approved text -------------------------------------------------------


def test_an_edited_re_post_amends_the_kept_note(ledger: FakeLedger, psa: FakePSA) -> None:
    failed_write_back(ledger, psa, markdown="First wording.")
    [note] = psa.notes_on(TICKET)
    pending = only_pending(ledger, ledger.session(ACCOUNT, SESSION))

    second = write_back(start(ledger, pending=pending, markdown=NOTE, new_session=False))

    assert psa.notes_on(TICKET) == [note] and note.text == with_marker(NOTE, second.note_marker)
    entry = entry_of(ledger, second)
    assert second.note_amended and entry.note_amended and entry.markdown == NOTE


def test_an_amendment_the_psa_dropped_is_a_502_and_the_ledger_keeps_no_text(ledger: FakeLedger, psa: FakePSA) -> None:
    failed_write_back(ledger, psa, markdown="First wording.")
    pending = only_pending(ledger, ledger.session(ACCOUNT, SESSION))
    psa.ignore_note_text_updates = True
    second = step("prepare", start(ledger, pending=pending, markdown=NOTE, new_session=False))

    with pytest.raises(PSANoteNotAmended):
        step("post_note", second)

    entry = entry_of(ledger, second)
    assert entry.markdown is None and entry.requested_markdown == NOTE and not entry.note_amended
    assert "First wording." in psa.notes_on(TICKET)[0].text


# --- the guard: an earlier escalation's internal note ------------------------------------------------


def test_a_leaking_internal_note_blocks_the_resolution_before_it_is_posted(ledger: FakeLedger, psa: FakePSA) -> None:
    leaked = psa.add_note(TICKET, "Internal: the customer's firewall is misconfigured.", NoteKind.internal_analysis)
    leaked.customer_visible, leaked.sticky_visibility = True, True
    state = step("prepare", start(ledger, guards=(GuardedNote(ticket_id=TICKET, note_id=leaked.id),)))

    with pytest.raises(PSANoteVisibilityMismatch) as raised:
        step("post_note", state)

    assert raised.value.status == 502 and raised.value.details["note_id"] == leaked.id
    assert psa.made("post_note") == [] and psa.notes_on(TICKET) == [leaked]
    assert entry_of(ledger, state).post_attempted is False


def test_a_guarded_note_that_can_be_repaired_is_made_internal_then_the_resolution_goes_on(
    ledger: FakeLedger, psa: FakePSA
) -> None:
    leaked = psa.add_note(TICKET, "Internal analysis.", NoteKind.internal_analysis, customer_visible=True)
    state = write_back(start(ledger, guards=(GuardedNote(ticket_id=TICKET, note_id=leaked.id),)))

    assert not leaked.customer_visible and leaked.internal_analysis
    assert entry_of(ledger, state).outcome == "resolved" and len(psa.notes_on(TICKET)) == 2


# --- redelivered steps change nothing ----------------------------------------------------------------


def test_record_success_twice_keeps_the_first_record(ledger: FakeLedger, psa: FakePSA) -> None:
    state = write_back(start(ledger))
    first = entry_of(ledger, state)

    again = step("record_success", state)

    assert entry_of(ledger, state).finished_at == first.finished_at == again.finished_at
    assert ledger.session(ACCOUNT, SESSION)["status"] == "resolved"


def test_record_failure_after_a_success_changes_nothing(ledger: FakeLedger, psa: FakePSA) -> None:
    state = write_back(start(ledger))
    before_entry, before_session = entry_of(ledger, state), dict(ledger.session(ACCOUNT, SESSION))

    step("record_failure", failing(state, RuntimeError("lost answer")))

    assert entry_of(ledger, state) == before_entry
    assert ledger.session(ACCOUNT, SESSION) == before_session
    assert "release_session" not in ledger.calls


def test_record_failure_twice_releases_once_and_stays_failed(ledger: FakeLedger, psa: FakePSA) -> None:
    state = failed_write_back(ledger, psa)
    step("record_failure", failing(state, RuntimeError("redelivered")))
    assert entry_of(ledger, state).state == "failed"
    assert ledger.session(ACCOUNT, SESSION)["last_writeback"]["writeback_id"] == state.writeback_id


def test_a_write_back_that_lost_its_lock_cannot_close_the_session(ledger: FakeLedger, psa: FakePSA) -> None:
    state = step("post_note", step("prepare", start(ledger)))
    ledger.session(ACCOUNT, SESSION)["active_writeback_id"] = "wb_someone_else"

    with pytest.raises(ConditionFailed):
        step("record_success", state)
    assert ledger.session(ACCOUNT, SESSION)["status"] == "active"


# --- drift -------------------------------------------------------------------------------------------


def test_a_status_moved_back_after_verification_is_recorded_as_drift(ledger: FakeLedger, psa: FakePSA) -> None:
    state = write_back(start(ledger))
    psa.tickets[TICKET].status = StatusRef(1, "New")  # a board workflow moved it back

    state = step("drift_check", state)

    assert state.drift is not None and state.drift.drifted and state.drift.status_id == 1
    assert ledger.session(ACCOUNT, SESSION)["last_writeback"]["drift_detected"] is True


# --- the PSA context: a short 429 is waited out inside the step --------------------------------------


def test_a_short_retry_after_is_honoured_inside_the_step(ledger: FakeLedger, psa: FakePSA, slept: list[float]) -> None:
    psa.rate_limit("fetch_ticket", retry_after=3, times=2)

    state = step("prepare", start(ledger))

    assert slept == [3, 3] and state.target_status_id == RESOLVED.id
    assert len(psa.made("fetch_ticket")) == 3


def test_a_long_retry_after_goes_back_to_the_state_machine(
    ledger: FakeLedger, psa: FakePSA, slept: list[float]
) -> None:
    psa.rate_limit("post_note", retry_after=30)
    state = step("prepare", start(ledger))

    with pytest.raises(PSARateLimited):
        step("post_note", state)

    assert slept == [] and psa.notes_on(TICKET) == []


def test_a_429_that_persists_is_raised_after_the_inline_attempts(
    ledger: FakeLedger, psa: FakePSA, slept: list[float]
) -> None:
    psa.rate_limit("fetch_ticket", retry_after=1, times=writeback_steps.INLINE_RATE_LIMIT_ATTEMPTS)

    with pytest.raises(PSARateLimited):
        step("prepare", start(ledger))

    assert slept == [1] * (writeback_steps.INLINE_RATE_LIMIT_ATTEMPTS - 1)


# --- run(): validated in, recorded on the way out ----------------------------------------------------


def test_run_refuses_a_state_without_a_writeback_id(ledger: FakeLedger, psa: FakePSA) -> None:
    raw = start(ledger).to_json()
    del raw["writeback_id"]

    with pytest.raises(ValidationError, match="writeback_id"):
        writeback_steps.run("prepare", raw)
    assert psa.calls == []


def test_run_records_a_domain_error_on_the_ledger_before_re_raising(ledger: FakeLedger, psa: FakePSA) -> None:
    state = start(ledger)
    psa.tickets[TICKET].record_type = "ProjectTicket"

    with pytest.raises(Exception) as raised:
        writeback_steps.run("prepare", state.to_json())

    error = entry_of(ledger, state).last_error
    assert error is not None and error.code == getattr(raised.value, "code", None) == "psa_ticket_not_service_ticket"
    assert error.step == "prepare" and error.status == 422
    assert psa.made("post_note") == []


# --- abandoned: a healed lock sends nothing more -----------------------------------------------------


def abandon(ledger: FakeLedger, state: WritebackState) -> None:
    entry = entry_of(ledger, state)
    assert ledger.abandon(ACCOUNT, SESSION, entry, reason="never_started", pending=entry.pending_note(), now="t")


def test_a_write_back_abandoned_before_it_started_touches_no_ticket(ledger: FakeLedger, psa: FakePSA) -> None:
    state = start(ledger)
    abandon(ledger, state)

    with pytest.raises(FlowPilotError) as raised:
        step("prepare", state)

    assert (raised.value.code, raised.value.status) == ("writeback_abandoned", 409)
    assert psa.calls == []


def test_a_write_back_abandoned_before_its_post_posts_nothing_and_records_no_failure(
    ledger: FakeLedger, psa: FakePSA
) -> None:
    state = step("prepare", start(ledger))
    abandon(ledger, state)

    with pytest.raises(FlowPilotError, match="abandoned") as raised:
        step("post_note", state)
    step("record_failure", failing(state, raised.value))

    assert psa.made("post_note") == [] and psa.notes_on(TICKET) == []
    assert entry_of(ledger, state).state == "abandoned"
    assert "release_session" not in ledger.calls


# --- what prepare settles before anything is posted (every provider) ------------------------------------


def test_note_settings_the_psa_cannot_give_are_a_422_before_anything_is_posted(
    ledger: FakeLedger, psa: FakePSA
) -> None:
    psa.note_settings_error = PSAVisibilityUnknown("publish labels are ambiguous: 1 Internal A, 2 Internal B")
    state = start(ledger)
    with pytest.raises(FlowPilotError) as raised:
        step("prepare", state)
    assert (raised.value.status, raised.value.code) == (422, "psa_visibility_unknown")
    assert ("check_note_settings", NoteKind.resolution) in psa.calls
    assert psa.notes.get(TICKET, []) == []
    assert not any(call[0] == "post_note" for call in psa.calls)
    last_error = entry_of(ledger, state).last_error
    assert last_error is not None and last_error.code == "psa_visibility_unknown"


def test_prepare_asks_for_the_escalation_notes_settings(ledger: FakeLedger, psa: FakePSA) -> None:
    step("prepare", start(ledger, kind=WritebackKind.escalate))
    assert ("check_note_settings", NoteKind.internal_analysis) in psa.calls


@pytest.mark.parametrize(
    ("provider", "preferences", "expected"),
    [
        ("autotask", Preferences(autotask_resolved_status_id=5, cw_resolved_status_id=7), 5),
        ("halopsa", Preferences(halo_resolved_status_id=9, cw_resolved_status_id=7), 9),
        ("connectwise", Preferences(cw_resolved_status_id=7, cw_resolved_status_ids_by_board={"10": 8}), 8),
        ("connectwise", Preferences(cw_resolved_status_id=7, cw_resolved_status_ids_by_board={"11": 8}), 7),
    ],
)
def test_each_provider_reads_its_own_target_status(provider: str, preferences: Preferences, expected: int) -> None:
    assert preferences.target_status(provider, "resolve", 10) == expected
    assert preferences.target_status(provider, "escalate", 10) is None


@pytest.mark.parametrize(
    ("provider", "setting"),
    [("autotask", "autotask_resolved_status_id"), ("halopsa", "halo_resolved_status_id")],
)
def test_a_skipped_transition_names_the_providers_setting(
    ledger: FakeLedger, psa: FakePSA, provider: str, setting: str
) -> None:
    state = start(ledger, preferences=Preferences(cw_resolved_status_id=RESOLVED.id))
    state.ticket = TicketRef(provider=provider, ticket_id=TICKET)
    prepared = step("prepare", state)
    assert prepared.target_status_id is None
    assert prepared.status_transition_skipped_reason is not None
    assert setting in prepared.status_transition_skipped_reason
    assert "cw_" not in prepared.status_transition_skipped_reason
