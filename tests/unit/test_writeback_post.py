"""The post endpoint's own decisions (`flowpilot.writeback`), without AWS: how a write-back starts (fresh or
resuming an earlier note), which earlier internal notes it must guard, its summary, and how it answers."""

from __future__ import annotations

from typing import Any

import pytest

from flowpilot import writeback
from flowpilot.errors import FlowPilotError
from flowpilot.identity import Caller
from flowpilot.models import WritebackKind
from flowpilot.psa.base import note_marker
from flowpilot.writeback import (
    WritebackAccepted,
    _internal_notes_to_guard,
    _ledger_entry,
    first_line_summary,
    wait_for_result,
)
from flowpilot.writeback_state import GuardedNote, LedgerEntry, LedgerError, PendingNote, TicketRef
from tests.unit.writeback_fakes import FakeLedger

CALLER = Caller(account_id="acct-a", engineer_id="engineer-a")
CW_1001 = TicketRef(provider="connectwise", ticket_id="1001")


def entry_for(ticket: TicketRef | None, pending: PendingNote | None, writeback_id: str = "wb_new") -> LedgerEntry:
    return _ledger_entry(CALLER, "sess-1", writeback_id, WritebackKind.resolve, "Fixed.", "Fixed.", ticket, pending)


def pending(**fields: Any) -> PendingNote:
    return PendingNote.model_validate(
        {
            "writeback_id": "wb_old",
            "note_id": "501",
            "note_marker": note_marker("wb_old"),
            "ticket_id": "1001",
            "provider": "connectwise",
            **fields,
        }
    )


# --- _ledger_entry: fresh or resumed -----------------------------------------------------------------


def test_a_first_post_gets_its_own_marker_and_no_note() -> None:
    entry = entry_for(CW_1001, None)
    assert entry.note_marker == note_marker("wb_new")
    assert (entry.note_id, entry.note_reused_from, entry.post_attempted) == (None, None, False)
    assert (entry.state, entry.requested_markdown, entry.markdown) == ("running", "Fixed.", None)


@pytest.mark.parametrize("stored", ["1001", " 01001", "001001 "])
def test_a_re_post_to_the_same_ticket_resumes_the_earlier_note_whatever_its_spelling(stored: str) -> None:
    entry = entry_for(CW_1001, pending(ticket_id=stored))
    assert entry.note_marker == note_marker("wb_old") and entry.note_id == "501"
    assert entry.note_reused_from == "wb_old" and entry.post_attempted


def test_a_resume_without_a_note_id_still_searches_by_the_earlier_marker() -> None:
    entry = entry_for(CW_1001, pending(note_id=None))
    assert entry.note_id is None and entry.post_attempted and entry.note_marker == note_marker("wb_old")


@pytest.mark.parametrize(
    ("ticket", "left"),
    [
        (TicketRef(provider="connectwise", ticket_id="1002"), pending()),  # relinked to another ticket
        (CW_1001, pending(note_marker=None)),  # nothing to find the note by
        (CW_1001, pending(ticket_id="not-a-ticket")),  # no canonical spelling: never the same ticket
        (None, pending()),  # unlinked: a local write-back posts nothing
    ],
)
def test_no_resume_onto_another_ticket_or_without_a_marker(ticket: TicketRef | None, left: PendingNote) -> None:
    entry = entry_for(ticket, left)
    assert entry.note_marker == note_marker("wb_new")
    assert (entry.note_id, entry.note_reused_from, entry.post_attempted) == (None, None, False)


# --- _internal_notes_to_guard ------------------------------------------------------------------------


def session_with(*, escalation: PendingNote | None = None, guards: list[GuardedNote] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"status": "active"}
    if escalation is not None:
        item["pending_note_escalate"] = escalation.model_dump(mode="json")
    if guards:
        item["guard_internal_notes"] = [g.model_dump(mode="json") for g in guards]
    return item


@pytest.fixture(autouse=True)
def in_memory_ledger(monkeypatch: pytest.MonkeyPatch) -> FakeLedger:
    fake = FakeLedger()
    monkeypatch.setattr(writeback, "ledger", fake)
    return fake


def test_a_resolve_guards_the_failed_escalations_internal_note() -> None:
    raw = session_with(escalation=pending(ticket_id=" 01001"))
    assert _internal_notes_to_guard(WritebackKind.resolve, CW_1001, raw) == [
        GuardedNote(ticket_id="1001", note_id="501")
    ]


def test_an_escalation_of_the_same_ticket_settles_its_own_note_instead() -> None:
    raw = session_with(escalation=pending(ticket_id="01001"))
    assert _internal_notes_to_guard(WritebackKind.escalate, CW_1001, raw) == []


def test_an_escalation_after_a_relink_guards_the_note_left_on_the_old_ticket() -> None:
    raw = session_with(escalation=pending(ticket_id="1001"))
    moved = TicketRef(provider="connectwise", ticket_id="1002")
    assert _internal_notes_to_guard(WritebackKind.escalate, moved, raw) == [
        GuardedNote(ticket_id="1001", note_id="501")
    ]


def test_guards_are_kept_once_and_only_for_the_same_provider() -> None:
    kept = GuardedNote(ticket_id="1001", note_id="501")
    raw = session_with(escalation=pending(), guards=[kept, GuardedNote(ticket_id="1003", note_id="777")])
    assert _internal_notes_to_guard(WritebackKind.resolve, CW_1001, raw) == [
        kept,
        GuardedNote(ticket_id="1003", note_id="777"),
    ]
    other_psa = session_with(escalation=pending(provider="autotask"))
    assert _internal_notes_to_guard(WritebackKind.resolve, CW_1001, other_psa) == []


def test_an_unlinked_session_guards_nothing() -> None:
    assert _internal_notes_to_guard(WritebackKind.resolve, None, session_with(escalation=pending())) == []


# --- first_line_summary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "summary"),
    [
        ("## Resolution\nReinstalled the client.", "Resolution"),
        ("\n\n- **Reinstalled the VPN client**\n- then rebooted", "Reinstalled the VPN client"),
        ("> quoted first\nsecond", "quoted first"),
        ("1. Step one\n2. Step two", "Step one"),
        ("   \n#\n**Fixed**", "Fixed"),
    ],
)
def test_the_summary_is_the_first_line_with_words(markdown: str, summary: str) -> None:
    assert first_line_summary(markdown) == summary


def test_the_summary_is_at_most_500_characters() -> None:
    assert first_line_summary("x" * 600) == "x" * 500


# --- wait_for_result: 200, the error, or 202 ---------------------------------------------------------


def finished(ledger: FakeLedger, state: str, **fields: Any) -> None:
    key = ("acct-a", "sess-1", "wb_1")
    ledger.entries[key] = {
        "writeback_id": "wb_1",
        "session_id": "sess-1",
        "kind": "resolve",
        "state": state,
        "created_by": "engineer-a",
        "created_at": "t0",
        "updated_at": "t1",
        **fields,
    }
    ledger.mark_finished(*key, state)


def test_a_finished_write_back_answers_its_verified_outcome(in_memory_ledger: FakeLedger) -> None:
    finished(in_memory_ledger, "succeeded", outcome="resolved", external_id="501", verified_status_id=5)

    outcome = wait_for_result(CALLER, "sess-1", "wb_1", timeout=0)

    assert outcome.finished
    answer = outcome.answer.model_dump(mode="json")
    assert (answer["outcome"], answer["external_id"], answer["verified_status_id"]) == ("resolved", "501", 5)
    assert answer["drift_check"] == "pending"


def test_a_failed_write_back_raises_its_recorded_error_with_the_writeback_id(in_memory_ledger: FakeLedger) -> None:
    error = LedgerError(code="psa_status_not_applied", message="Not applied.", status=502, details={"note_id": "501"})
    finished(in_memory_ledger, "failed", error=error.model_dump(mode="json"))

    with pytest.raises(FlowPilotError) as raised:
        wait_for_result(CALLER, "sess-1", "wb_1", timeout=0)

    assert (raised.value.code, raised.value.status) == ("psa_status_not_applied", 502)
    assert raised.value.details == {"note_id": "501", "writeback_id": "wb_1"}


def test_a_write_back_still_running_at_the_deadline_answers_202_with_where_to_look() -> None:
    outcome = wait_for_result(CALLER, "sess-1", "wb_1", timeout=0)
    assert not outcome.finished
    assert outcome.answer == WritebackAccepted(writeback_id="wb_1", status_url="/ai-sessions/sess-1/writebacks/wb_1")
